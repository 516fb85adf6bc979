// Per-request sampling parameters as the engine reads them. Requests are validated and normalised
// at the edge (src/server/schemas/sampling.ts: zod produces this type directly); below it the
// engine only asserts.
import { assert } from '../../common/errors.ts';

export interface SamplingParams {
  /** 0 = greedy. Values below GREEDY_TEMPERATURE are treated as 0 (as vLLM does). */
  readonly temperature: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  readonly topP: number;
  /** Keep the k most likely tokens; 0 = off (-1 is accepted and normalised to 0). */
  readonly topK: number;
  /** Drop tokens with p < minP * pmax; 0 = off. */
  readonly minP: number;
  /** null = a random seed per request (drawn from node:crypto by the RNG). */
  readonly seed: number | null;
  /** OpenAI semantics over generated tokens: logit -= presence * [count > 0]. */
  readonly presencePenalty: number;
  /** OpenAI semantics over generated tokens: logit -= frequency * count. */
  readonly frequencyPenalty: number;
  /** HF/vLLM semantics over prompt + generated tokens: positive logits / r, negative * r; 1 = off. */
  readonly repetitionPenalty: number;
  /** token id -> bias added to the logit; null when empty. */
  readonly logitBias: ReadonlyMap<number, number> | null;
  readonly maxTokens: number;
  /** EOS and stopTokenIds are masked to -inf until this many tokens are generated. */
  readonly minTokens: number;
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  /** Parallel samples; the engine fans out, the sampler never reads it. */
  readonly n: number;
  /** Top alternatives returned per sampled token (0 = only the sampled token); null = none. */
  readonly logprobs: number | null;
  /** Top alternatives returned per prompt token; null = none. */
  readonly promptLogprobs: number | null;
}

/** What offline callers (tests, bench, CLIs) pass: any subset; the rest are defaults. */
export type SamplingParamsInit = Partial<SamplingParams>;

export interface SamplingLimits {
  /** When set, token ids in logitBias and stopTokenIds must be below it. */
  readonly vocabSize?: number;
  /** When set, logprobs and promptLogprobs must not exceed it. */
  readonly maxLogprobs?: number;
}

/** Temperatures below this are greedy (vLLM's _SAMPLING_EPS). */
export const GREEDY_TEMPERATURE = 1e-5;

export const defaultSamplingParams: SamplingParams = Object.freeze({
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  seed: null,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  logitBias: null,
  maxTokens: 16,
  minTokens: 0,
  stopTokenIds: Object.freeze([]) as readonly number[],
  ignoreEos: false,
  n: 1,
  logprobs: null,
  promptLogprobs: null,
});

/** The sampler takes the argmax (and draws no distribution) for these requests. */
export function isGreedy(params: SamplingParams): boolean {
  return params.temperature === 0 || params.topK === 1;
}

/** Fills defaults and asserts the invariants (below); the result is frozen. */
export function resolveSamplingParams(init: SamplingParamsInit = {}, limits: SamplingLimits = {}): SamplingParams {
  const params: SamplingParams = { ...defaultSamplingParams, ...init };
  assertSamplingParams(params, limits);
  return Object.freeze(params);
}

const isInt = (x: unknown, min: number): boolean => Number.isSafeInteger(x) && (x as number) >= min;
const isFinite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/**
 * The invariants the sampler relies on. User input is validated (and normalised: top_k -1 -> 0,
 * tiny temperature -> 0, zero biases dropped) at the edge, src/server/schemas/sampling.ts; a
 * violation here is a bug in the caller, reported as DSV_ERR_INTERNAL.
 */
export function assertSamplingParams(p: SamplingParams, limits: SamplingLimits = {}): void {
  const field = (name: keyof SamplingParams, ok: boolean, rule: string) => assert(ok, `sampling parameter '${name}' ${rule}, got ${String(p[name])}`);
  field('temperature', isFinite(p.temperature) && (p.temperature === 0 || p.temperature >= GREEDY_TEMPERATURE), `is 0 or >= ${GREEDY_TEMPERATURE}`);
  field('topP', isFinite(p.topP) && p.topP > 0 && p.topP <= 1, 'is in (0, 1]');
  field('topK', isInt(p.topK, 0), 'is an integer >= 0 (0 = off)');
  field('minP', isFinite(p.minP) && p.minP >= 0 && p.minP <= 1, 'is in [0, 1]');
  field('seed', p.seed === null || Number.isSafeInteger(p.seed), 'is a safe integer or null');
  field('presencePenalty', isFinite(p.presencePenalty), 'is finite');
  field('frequencyPenalty', isFinite(p.frequencyPenalty), 'is finite');
  field('repetitionPenalty', isFinite(p.repetitionPenalty) && p.repetitionPenalty > 0, 'is finite and > 0');
  field('maxTokens', isInt(p.maxTokens, 1), 'is an integer >= 1');
  field('minTokens', isInt(p.minTokens, 0) && p.minTokens <= p.maxTokens, 'is an integer in [0, maxTokens]');
  field('ignoreEos', typeof p.ignoreEos === 'boolean', 'is a boolean');
  field('n', isInt(p.n, 1), 'is an integer >= 1');
  const maxLogprobs = limits.maxLogprobs ?? Number.MAX_SAFE_INTEGER;
  const isCount = (x: number | null) => x === null || (isInt(x, 0) && x <= maxLogprobs);
  field('logprobs', isCount(p.logprobs), `is null or an integer in [0, ${maxLogprobs}]`);
  field('promptLogprobs', isCount(p.promptLogprobs), `is null or an integer in [0, ${maxLogprobs}]`);
  const vocabSize = limits.vocabSize ?? Number.MAX_SAFE_INTEGER;
  const isTokenId = (id: unknown) => isInt(id, 0) && (id as number) < vocabSize;
  field('stopTokenIds', Array.isArray(p.stopTokenIds) && p.stopTokenIds.every(isTokenId), `holds token ids below ${vocabSize}`);
  const bias = p.logitBias;
  field(
    'logitBias',
    bias === null || (bias instanceof Map && bias.size > 0 && [...bias].every(([id, b]) => isTokenId(id) && isFinite(b))),
    'is null or a non-empty map from token id to a finite bias',
  );
}

/**
 * Seed for the index-th parallel sample (n > 1) of a seeded request: seed + index, so the
 * children draw distinct, reproducible streams (stepping down instead at the top of the range).
 */
export function childSeed(seed: number, index: number): number {
  const up = seed + index;
  return Number.isSafeInteger(up) ? up : seed - index;
}
