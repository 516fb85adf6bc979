// Checks a GrammarSpec before the serving XGrammar instance compiles it. XGrammar reports a bad
// schema, regex or grammar by abort()ing its WASM instance in the middle of C++ code (leaking
// whatever was allocated, and leaving no guarantee about the instance's state). The checker is a
// second, disposable instance: it parses the spec without a tokenizer (cheap), and when it aborts
// we read XGrammar's message, throw a 400 naming the request field, and drop the instance (a fresh
// one is loaded on the next check). The serving instance only ever sees specs that parsed here.
import { EngineError } from '../../common/errors.ts';
import type { GrammarSpec, StructuralTagFormat, StructuredOutputSpec } from './grammar_spec.ts';
import { choiceFormat, structuralTagJson } from './grammar_spec.ts';
import { JSON_SCHEMA_OPTIONS } from './json_schema_options.ts';
import { loadXGrammar, type LoadedXGrammar, type XgGrammar as Grammar } from './xgrammar_module.ts';

export class GrammarChecker {
  private instance: LoadedXGrammar | null = null;

  /** Throws EngineError(DSV_ERR_INVALID_REQUEST) naming spec.param and XGrammar's reason. */
  async check(spec: StructuredOutputSpec): Promise<void> {
    const structural = spec.grammar.kind === 'structural_tag' ? spec.grammar.format : null;
    // Check each schema of a structural tag on its own first: the whole-tag parse reports
    // failures as bare C++ exceptions without a message.
    if (structural) for (const schema of jsonSchemasIn(structural)) await this.parse(spec.param, { kind: 'json_schema', schema: JSON.stringify(schema) });
    await this.parse(spec.param, spec.grammar);
  }

  private async parse(param: string, grammar: GrammarSpec): Promise<void> {
    const xg = (this.instance ??= loadXGrammar());
    let parsed: Grammar | null = null;
    try {
      parsed = await parseGrammar(xg, grammar);
      // XGrammar warns, then ignores, schema keywords it does not support: refuse instead.
      const ignored = xg.takeMessages().find((m) => /\[WARNING\].*(not supported|ignor)/i.test(m));
      if (ignored)
        throw new EngineError('DSV_ERR_INVALID_REQUEST', `${param}: XGrammar would ignore part of this ${kindName(grammar)}: ${stripLocation(ignored)}`, {
          param,
        });
    } catch (err) {
      if (err instanceof EngineError) throw err;
      const fatal = fatalMessage(xg.takeMessages());
      // A JSON syntax error is ours; anything else came out of the WASM instance.
      if (!(err instanceof SyntaxError)) this.instance = null;
      const reason = fatal ?? describe(err);
      throw new EngineError('DSV_ERR_INVALID_REQUEST', `${param}: XGrammar cannot compile this ${kindName(grammar)}: ${reason}`, { param });
    } finally {
      parsed?.dispose();
    }
  }
}

function parseGrammar(xg: LoadedXGrammar, grammar: GrammarSpec): Promise<Grammar> {
  const { Grammar } = xg.api;
  const o = JSON_SCHEMA_OPTIONS;
  switch (grammar.kind) {
    case 'json_object':
      return Grammar.builtinJSONGrammar();
    case 'json_schema':
      // Invalid JSON aborts inside XGrammar too; parsing here gives the clearer message.
      JSON.parse(grammar.schema);
      return Grammar.fromJSONSchema(grammar.schema, o.anyWhitespace, o.indent, o.separators, o.strictMode, o.maxWhitespaceCount);
    case 'regex':
      return Grammar.fromStructuralTag(structuralTagJson({ type: 'regex', pattern: grammar.pattern }));
    case 'choice':
      return Grammar.fromStructuralTag(structuralTagJson(choiceFormat(grammar.choices)));
    case 'ebnf':
      return Grammar.fromEBNF(grammar.grammar);
    case 'structural_tag':
      return Grammar.fromStructuralTag(structuralTagJson(grammar.format));
  }
}

function* jsonSchemasIn(format: StructuralTagFormat): Generator<unknown> {
  switch (format.type) {
    case 'json_schema':
      yield format.json_schema;
      return;
    case 'sequence':
    case 'or':
      for (const e of format.elements) yield* jsonSchemasIn(e);
      return;
    case 'tag':
      yield* jsonSchemasIn(format.content);
      return;
    case 'tags_with_separator':
      for (const t of format.tags) yield* jsonSchemasIn(t);
      return;
    default:
      return;
  }
}

/** XGrammar prints "[FATAL] /path/file.cc:123: reason" before aborting. */
function fatalMessage(lines: readonly string[]): string | null {
  const fatal = lines.find((l) => l.includes('[FATAL]'));
  if (!fatal) return null;
  return stripLocation(fatal);
}

function stripLocation(line: string): string {
  return line.replace(/^.*\[(FATAL|WARNING)\]\s*\S+?:\d+:\s*/, '').trim();
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  // C++ exceptions surface as a bare pointer (a number).
  return typeof err === 'number' ? 'the grammar was rejected (no reason given)' : String(err);
}

function kindName(grammar: GrammarSpec): string {
  return grammar.kind === 'ebnf' ? 'EBNF grammar' : grammar.kind === 'json_schema' ? 'JSON schema' : grammar.kind.replace('_', ' ');
}
