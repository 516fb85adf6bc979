// One constrained request's position in its grammar. The engine asks for the next-token bitmask
// before sampling, applies it to the logits row (token_bitmask.ts), and feeds the sampled token
// back with acceptToken. Preemption keeps the generated tokens, so the matcher never rolls back.
import type { XgGrammarMatcher as XgMatcher } from './xgrammar_module.ts';

export class GrammarMatcher {
  private disposed = false;

  constructor(
    private readonly matcher: XgMatcher,
    /** Bitmask bit i (word i >> 5, bit i & 31) = token i allowed; ceil(vocabSize / 32) words. */
    readonly vocabSize: number,
  ) {}

  /**
   * The tokens allowed next. XGrammar allocates a fresh Int32Array per call (async only because
   * its binding initialises lazily; the work is synchronous).
   */
  nextTokenBitmask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  /** False if the grammar rejects the token (the matcher state is then unchanged). */
  acceptToken(tokenId: number): boolean {
    return this.matcher.acceptToken(tokenId);
  }

  /** True once a stop token completed the grammar. */
  get isTerminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.matcher.dispose();
  }
}
