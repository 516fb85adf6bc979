// The engine's side of structured outputs: one grammar matcher per constrained request, keyed by
// request id, and the per-step bitmasks. Unconstrained requests pay nothing: with no constrained
// request in flight, nothing here runs. XGrammar loads on the first constrained request (its
// TokenizerInfo costs ~0.2 s for a 4k vocabulary, seconds for DeepSeek-V3's 129k), so a server
// that never sees one never pays for it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError } from '../../common/errors.ts';
import { StructuredOutputCompiler } from './grammar_compiler.ts';
import type { GrammarMatcher } from './grammar_matcher.ts';
import type { StructuredOutputSpec } from './grammar_spec.ts';
import { readEncodedVocab } from './tokenizer_vocab.ts';

export class StructuredOutputs {
  private compiler: Promise<StructuredOutputCompiler> | null = null;
  private readonly matchers = new Map<string, GrammarMatcher>();

  constructor(
    private readonly modelDir: string,
    /** The logits width (config.json vocab_size). */
    private readonly vocabSize: number,
    private readonly eosTokenIds: readonly number[],
  ) {}

  /** A matcher for a request about to be added; throws a 400 EngineError if the spec does not compile. */
  async createMatcher(spec: StructuredOutputSpec): Promise<GrammarMatcher> {
    return (await this.getCompiler(spec.param)).createMatcher(spec);
  }

  /** The request owns the matcher from here on; it is disposed when the request finishes. */
  attach(requestId: string, matcher: GrammarMatcher): void {
    this.matchers.get(requestId)?.dispose();
    this.matchers.set(requestId, matcher);
  }

  matcherOf(requestId: string): GrammarMatcher | undefined {
    return this.matchers.get(requestId);
  }

  get numActive(): number {
    return this.matchers.size;
  }

  /** Frees the matchers of finished requests (ids of unconstrained requests are ignored). */
  release(requestIds: Iterable<string>): void {
    if (this.matchers.size === 0) return;
    for (const id of requestIds) {
      this.matchers.get(id)?.dispose();
      this.matchers.delete(id);
    }
  }

  async dispose(): Promise<void> {
    this.release([...this.matchers.keys()]);
    if (this.compiler) (await this.compiler.catch(() => null))?.dispose();
    this.compiler = null;
  }

  private getCompiler(param: string): Promise<StructuredOutputCompiler> {
    if (this.compiler) return this.compiler;
    const path = join(this.modelDir, 'tokenizer.json');
    if (!existsSync(path)) {
      return Promise.reject(
        new EngineError('DSV_ERR_INVALID_REQUEST', `${param}: structured outputs need the model's tokenizer.json, which ${this.modelDir} does not have`, {
          param,
        }),
      );
    }
    this.compiler = StructuredOutputCompiler.create(readEncodedVocab(path, this.vocabSize), this.eosTokenIds);
    this.compiler.catch(() => (this.compiler = null)); // a failed load is retried by the next request
    return this.compiler;
  }
}
