// Loads XGrammar (the grammar engine of vLLM and SGLang) from its WASM build on npm,
// @mlc-ai/web-xgrammar. The only importer of that package.
//
// Its lib/index.js is a UMD bundle that reads `require` and `__filename`, while its package.json
// says "type": "module", so `import()` yields an empty module. We evaluate the bundle's text as
// CommonJS ourselves. Each evaluation is an independent WASM instance with its own memory, which
// is what makes a disposable checker instance possible (xgrammar_instance.ts): XGrammar reports
// a bad schema, regex or grammar by printing "[FATAL] ..." and calling abort(), so the message
// arrives on the module's console, which we capture per instance.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as XGrammar from '@mlc-ai/web-xgrammar';

export type XGrammarApi = typeof XGrammar;
export type XgGrammar = XGrammar.Grammar;
export type XgCompiledGrammar = XGrammar.CompiledGrammar;
export type XgGrammarCompiler = XGrammar.GrammarCompiler;
export type XgGrammarMatcher = XGrammar.GrammarMatcher;
export type XgTokenizerInfo = XGrammar.TokenizerInfo;

export interface LoadedXGrammar {
  readonly api: XGrammarApi;
  /** Lines the WASM module printed since the last call (its errors arrive here). */
  takeMessages(): string[];
}

const require = createRequire(import.meta.url);
let bundle: { readonly path: string; readonly source: string } | null = null;

function readBundle(): { readonly path: string; readonly source: string } {
  if (bundle) return bundle;
  const path = require.resolve('@mlc-ai/web-xgrammar');
  bundle = { path, source: readFileSync(path, 'utf8') };
  return bundle;
}

/** A fresh XGrammar instance (its WASM starts on first use). */
export function loadXGrammar(): LoadedXGrammar {
  const { path, source } = readBundle();
  const messages: string[] = [];
  const capture = (...args: unknown[]): void => {
    messages.push(args.map(String).join(' '));
  };
  const moduleConsole = { ...console, log: capture, info: capture, warn: capture, error: capture, debug: capture };
  const commonJsModule: { exports: Record<string, unknown> } = { exports: {} };
  // The CommonJS wrapper, plus `console` so the bundle's printing goes to `messages`.
  const evaluate = new Function('exports', 'module', 'require', '__filename', '__dirname', 'console', source) as (...args: unknown[]) => void;
  evaluate(commonJsModule.exports, commonJsModule, createRequire(path), path, path.slice(0, path.lastIndexOf('/')), moduleConsole);
  const api = commonJsModule.exports as unknown as XGrammarApi;
  if (typeof api.GrammarCompiler?.createGrammarCompiler !== 'function') {
    throw new Error(`${path}: not the expected @mlc-ai/web-xgrammar bundle (no GrammarCompiler export)`);
  }
  return { api, takeMessages: () => messages.splice(0) };
}
