// The engine worker's XGrammar: one TokenizerInfo for the model's vocabulary, compiled grammars
// cached by their spec (an LRU bounded in count; XGrammar's own unbounded cache is off), and a
// matcher per constrained request.
import { EngineError } from '../../common/errors.ts';
import { GrammarChecker } from './grammar_checker.ts';
import { choiceFormat, grammarKey, structuralTagJson, type GrammarSpec, type StructuredOutputSpec } from './grammar_spec.ts';
import { GrammarMatcher } from './grammar_matcher.ts';
import { JSON_SCHEMA_OPTIONS, withBoundedJson } from './json_schema_options.ts';
import { patchGrammarSpec } from './json_schema_patch.ts';
import type { EncodedVocab } from './tokenizer_vocab.ts';
import { loadXGrammar, type LoadedXGrammar, type XgCompiledGrammar, type XgGrammarCompiler, type XgTokenizerInfo } from './xgrammar_module.ts';

export const DEFAULT_MAX_CACHED_GRAMMARS = 128;

export interface GrammarCompilerStats {
  readonly numCompiles: number;
  readonly numCacheHits: number;
  readonly compileSeconds: number;
}

export class StructuredOutputCompiler {
  /** Insertion order = recency (a hit is re-inserted); the first key is evicted first. */
  private readonly cache = new Map<string, XgCompiledGrammar>();
  private readonly checker = new GrammarChecker();
  private stats = { numCompiles: 0, numCacheHits: 0, compileSeconds: 0 };

  private constructor(
    private readonly xg: LoadedXGrammar,
    private readonly tokenizerInfo: XgTokenizerInfo,
    private readonly compiler: XgGrammarCompiler,
    /** The logits width; bitmasks have ceil(vocabSize / 32) words. */
    readonly vocabSize: number,
    private readonly maxCached: number,
  ) {}

  /**
   * @param stopTokenIds the model's EOS ids: the only tokens allowed once a grammar is complete
   */
  static async create(vocab: EncodedVocab, stopTokenIds: readonly number[], maxCached = DEFAULT_MAX_CACHED_GRAMMARS): Promise<StructuredOutputCompiler> {
    const xg = loadXGrammar();
    const info = await xg.api.TokenizerInfo.createTokenizerInfo([...vocab.tokens], vocab.vocabType, vocab.prependSpace, vocab.tokens.length, [...stopTokenIds]);
    const compiler = await xg.api.GrammarCompiler.createGrammarCompiler(info, false);
    return new StructuredOutputCompiler(xg, info, compiler, vocab.tokens.length, maxCached);
  }

  get compilerStats(): GrammarCompilerStats {
    return { ...this.stats };
  }

  get numCached(): number {
    return this.cache.size;
  }

  /** A matcher at the grammar's start. Throws a 400 EngineError if the spec does not compile. */
  async createMatcher(spec: StructuredOutputSpec): Promise<GrammarMatcher> {
    const compiled = await this.compile(spec);
    const matcher = await this.xg.api.GrammarMatcher.createGrammarMatcher(compiled);
    return new GrammarMatcher(matcher, this.vocabSize);
  }

  private async compile(spec: StructuredOutputSpec): Promise<XgCompiledGrammar> {
    const key = grammarKey(spec.grammar);
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      this.stats.numCacheHits++;
      return hit;
    }
    const grammar = patchGrammarSpec(spec.grammar);
    await this.checker.check({ grammar, param: spec.param });
    const t0 = performance.now();
    let compiled: XgCompiledGrammar;
    try {
      compiled = await this.compileChecked(grammar);
    } catch (err) {
      // The checker accepted it, so this is XGrammar failing on a valid grammar.
      const reason = this.xg.takeMessages().join(' ') || (err instanceof Error ? err.message : String(err));
      throw new EngineError('DSV_ERR_INVALID_REQUEST', `${spec.param}: XGrammar failed to compile the grammar: ${reason}`, { param: spec.param });
    }
    this.stats.numCompiles++;
    this.stats.compileSeconds += (performance.now() - t0) / 1000;
    this.cache.set(key, compiled);
    if (this.cache.size > this.maxCached) this.evictOldest();
    return compiled;
  }

  private async compileChecked(grammar: GrammarSpec): Promise<XgCompiledGrammar> {
    const c = this.compiler;
    const o = JSON_SCHEMA_OPTIONS;
    switch (grammar.kind) {
      case 'json_object':
        return c.compileBuiltinJSONGrammar();
      case 'json_schema':
        return c.compileJSONSchema(grammar.schema, o.anyWhitespace, o.indent, o.separators, o.strictMode, o.maxWhitespaceCount);
      case 'regex':
        return c.compileStructuralTag(structuralTagJson({ type: 'regex', pattern: grammar.pattern }));
      case 'choice':
        return c.compileStructuralTag(structuralTagJson(choiceFormat(grammar.choices)));
      case 'ebnf':
        return c.compileGrammar(grammar.grammar);
      case 'structural_tag':
        return c.compileStructuralTag(structuralTagJson(await withBoundedJson(this.xg.api, grammar.format)));
    }
  }

  /** Matchers keep their own reference to the compiled grammar, so eviction never breaks one. */
  private evictOldest(): void {
    const oldest = this.cache.keys().next();
    if (oldest.done) return;
    this.cache.get(oldest.value)?.dispose();
    this.cache.delete(oldest.value);
  }

  dispose(): void {
    for (const compiled of this.cache.values()) compiled.dispose();
    this.cache.clear();
    this.compiler.dispose();
    this.tokenizerInfo.dispose();
  }
}
