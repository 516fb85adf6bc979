// The mutable per-request part of sampling: the RNG and the token statistics the penalties read.
// The request owns one SamplingState; sampleToken() advances its RNG, and the request calls
// appendToken() once per token it keeps, so penalties cost O(distinct tokens) per step rather
// than O(sequence length).
import { assert } from '../../common/errors.ts';
import { Rng, type RngState } from './rng.ts';
import type { SamplingParams } from './sampling_params.ts';

/** Counts of generated tokens, updated incrementally. */
export class OutputTokenCounts {
  private readonly counts = new Map<number, number>();
  private total = 0;

  /** All generated tokens, repeats included. */
  get numTokens(): number {
    return this.total;
  }

  get numDistinct(): number {
    return this.counts.size;
  }

  add(tokenId: number): void {
    this.counts.set(tokenId, (this.counts.get(tokenId) ?? 0) + 1);
    this.total++;
  }

  /** Undoes one add(tokenId). */
  remove(tokenId: number): void {
    const c = this.counts.get(tokenId) ?? 0;
    assert(c > 0, `token ${tokenId} was never added`);
    if (c === 1) this.counts.delete(tokenId);
    else this.counts.set(tokenId, c - 1);
    this.total--;
  }

  count(tokenId: number): number {
    return this.counts.get(tokenId) ?? 0;
  }

  /** (tokenId, count) in first-seen order. */
  entries(): IterableIterator<[number, number]> {
    return this.counts.entries();
  }
}

/** Plain data for a SamplingState, safe to post across worker_threads. */
export interface SamplingStateData {
  readonly rng: RngState;
  /** Masked until minTokens are generated (stop ids, plus EOS unless ignoreEos). */
  readonly minTokensMaskIds: readonly number[];
  /** Distinct prompt ∪ output ids; null when the request has no repetition penalty. */
  readonly repetitionTokenIds: readonly number[] | null;
  readonly outputTokenIds: readonly number[];
  readonly outputTokenCounts: readonly number[];
}

export class SamplingState {
  readonly outputCounts = new OutputTokenCounts();

  private constructor(
    readonly rng: Rng,
    readonly minTokensMaskIds: readonly number[],
    /** Distinct prompt ∪ output ids (repetition penalty); null when the penalty is off. */
    readonly repetitionTokenIds: Set<number> | null,
  ) {}

  /**
   * @param promptTokenIds the request's prompt, for the repetition penalty
   * @param eosTokenIds the model's EOS ids (masked by minTokens unless ignoreEos)
   */
  static create(params: SamplingParams, promptTokenIds: ArrayLike<number>, eosTokenIds: readonly number[]): SamplingState {
    const rng = params.seed === null ? Rng.fromEntropy() : Rng.fromSeed(params.seed);
    const maskIds = new Set(params.stopTokenIds);
    if (!params.ignoreEos) for (const id of eosTokenIds) maskIds.add(id);
    let repetition: Set<number> | null = null;
    if (params.repetitionPenalty !== 1) {
      repetition = new Set<number>();
      for (let i = 0; i < promptTokenIds.length; i++) repetition.add(promptTokenIds[i]!);
    }
    return new SamplingState(rng, [...maskIds], repetition);
  }

  static fromData(data: SamplingStateData): SamplingState {
    assert(data.outputTokenIds.length === data.outputTokenCounts.length, 'SamplingStateData output ids/counts length mismatch');
    const repetition = data.repetitionTokenIds === null ? null : new Set(data.repetitionTokenIds);
    const state = new SamplingState(Rng.fromState(data.rng), [...data.minTokensMaskIds], repetition);
    data.outputTokenIds.forEach((id, i) => {
      for (let c = 0; c < data.outputTokenCounts[i]!; c++) state.outputCounts.add(id);
    });
    return state;
  }

  get numOutputTokens(): number {
    return this.outputCounts.numTokens;
  }

  /**
   * Records a generated token; call once per token the request keeps. Returns an undo token for
   * removeToken (speculative verification scores a row as if the drafts before it were kept).
   */
  appendToken(tokenId: number): { readonly tokenId: number; readonly newForRepetition: boolean } {
    this.outputCounts.add(tokenId);
    const newForRepetition = this.repetitionTokenIds !== null && !this.repetitionTokenIds.has(tokenId);
    if (newForRepetition) this.repetitionTokenIds!.add(tokenId);
    return { tokenId, newForRepetition };
  }

  /** Undoes appendToken calls, latest first. */
  removeToken(undo: { readonly tokenId: number; readonly newForRepetition: boolean }): void {
    this.outputCounts.remove(undo.tokenId);
    if (undo.newForRepetition) this.repetitionTokenIds!.delete(undo.tokenId);
  }

  toData(): SamplingStateData {
    const ids: number[] = [];
    const counts: number[] = [];
    for (const [id, count] of this.outputCounts.entries()) {
      ids.push(id);
      counts.push(count);
    }
    return {
      rng: this.rng.state,
      minTokensMaskIds: [...this.minTokensMaskIds],
      repetitionTokenIds: this.repetitionTokenIds === null ? null : [...this.repetitionTokenIds],
      outputTokenIds: ids,
      outputTokenCounts: counts,
    };
  }
}
