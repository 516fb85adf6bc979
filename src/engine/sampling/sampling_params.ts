// Per-request sampling parameters: the engine-side guard. The server validates with zod first;
// this file fills defaults, normalises equivalent spellings (topK -1 -> 0, tiny temperature -> 0)
// and rejects anything the sampler cannot honour, naming the field.
import { EngineError } from '../../common/errors.ts';

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

/** What callers may pass: any subset, and logitBias also as an OpenAI-style record. */
export type SamplingParamsInit = Partial<Omit<SamplingParams, 'logitBias'>> & {
  readonly logitBias?: ReadonlyMap<number, number> | Readonly<Record<string, number>> | null;
};

export interface SamplingLimits {
  /** When set, token ids in logitBias and stopTokenIds must be below it. */
  readonly vocabSize?: number;
  /** Upper bound for logprobs and promptLogprobs (vLLM's max_logprobs default is 20). */
  readonly maxLogprobs?: number;
}

/** Temperatures below this are greedy (vLLM's _SAMPLING_EPS). */
export const GREEDY_TEMPERATURE = 1e-5;
export const DEFAULT_MAX_LOGPROBS = 20;

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

/**
 * Fills defaults and validates. Throws EngineError('DSV_ERR_INVALID_REQUEST') naming the first
 * invalid field. The result is frozen.
 */
export function resolveSamplingParams(init: SamplingParamsInit = {}, limits: SamplingLimits = {}): SamplingParams {
  const d = defaultSamplingParams;
  const maxLogprobs = limits.maxLogprobs ?? DEFAULT_MAX_LOGPROBS;
  const temperature = finiteIn('temperature', init.temperature ?? d.temperature, 0, Infinity);
  const maxTokens = integerIn('maxTokens', init.maxTokens ?? d.maxTokens, 1, Number.MAX_SAFE_INTEGER);
  const minTokens = integerIn('minTokens', init.minTokens ?? d.minTokens, 0, Number.MAX_SAFE_INTEGER);
  if (minTokens > maxTokens) invalid('minTokens', `must not exceed maxTokens (${maxTokens}), got ${minTokens}`);
  const topP = finiteIn('topP', init.topP ?? d.topP, 0, 1);
  if (topP === 0) invalid('topP', 'must be a finite number in (0, 1], got 0');
  const topK = integerIn('topK', init.topK ?? d.topK, -1, Number.MAX_SAFE_INTEGER);
  const repetitionPenalty = finiteIn('repetitionPenalty', init.repetitionPenalty ?? d.repetitionPenalty, 0, Infinity);
  if (repetitionPenalty === 0) invalid('repetitionPenalty', 'must be a finite number > 0, got 0');
  const seed = init.seed ?? null;
  if (seed !== null && !Number.isSafeInteger(seed)) invalid('seed', `must be a safe integer or null, got ${String(seed)}`);
  const ignoreEos = init.ignoreEos ?? d.ignoreEos;
  if (typeof ignoreEos !== 'boolean') invalid('ignoreEos', `must be a boolean, got ${String(ignoreEos)}`);
  const params: SamplingParams = {
    temperature: temperature < GREEDY_TEMPERATURE ? 0 : temperature,
    topP,
    topK: topK === -1 ? 0 : topK,
    minP: finiteIn('minP', init.minP ?? d.minP, 0, 1),
    seed,
    presencePenalty: finiteIn('presencePenalty', init.presencePenalty ?? d.presencePenalty, -2, 2),
    frequencyPenalty: finiteIn('frequencyPenalty', init.frequencyPenalty ?? d.frequencyPenalty, -2, 2),
    repetitionPenalty,
    logitBias: resolveLogitBias(init.logitBias ?? null, limits.vocabSize),
    maxTokens,
    minTokens,
    stopTokenIds: Object.freeze(resolveStopTokenIds(init.stopTokenIds ?? d.stopTokenIds, limits.vocabSize)),
    ignoreEos,
    n: integerIn('n', init.n ?? d.n, 1, Number.MAX_SAFE_INTEGER),
    logprobs: nullableIntegerIn('logprobs', init.logprobs ?? null, 0, maxLogprobs),
    promptLogprobs: nullableIntegerIn('promptLogprobs', init.promptLogprobs ?? null, 0, maxLogprobs),
  };
  return Object.freeze(params);
}

function resolveLogitBias(
  bias: ReadonlyMap<number, number> | Readonly<Record<string, number>> | null,
  vocabSize: number | undefined,
): ReadonlyMap<number, number> | null {
  if (bias === null) return null;
  const entries: [unknown, unknown][] = bias instanceof Map ? [...bias.entries()] : Object.entries(bias);
  const out = new Map<number, number>();
  for (const [key, value] of entries) {
    const tokenId = typeof key === 'string' && /^\d+$/.test(key) ? Number(key) : key;
    checkTokenId(`logitBias`, tokenId, vocabSize);
    if (typeof value !== 'number' || !Number.isFinite(value) || value < -100 || value > 100) {
      invalid(`logitBias[${String(key)}]`, `must be a number in [-100, 100], got ${String(value)}`);
    }
    if (value !== 0) out.set(tokenId, value);
  }
  return out.size === 0 ? null : out;
}

function resolveStopTokenIds(ids: readonly number[], vocabSize: number | undefined): number[] {
  if (!Array.isArray(ids)) invalid('stopTokenIds', 'must be an array of token ids');
  for (const id of ids) checkTokenId('stopTokenIds', id, vocabSize);
  return [...new Set(ids)];
}

function checkTokenId(field: string, id: unknown, vocabSize: number | undefined): asserts id is number {
  const max = vocabSize === undefined ? Number.MAX_SAFE_INTEGER : vocabSize - 1;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > max) {
    const range = vocabSize === undefined ? 'a non-negative integer' : `an integer in [0, ${max}]`;
    invalid(field, `token id must be ${range}, got ${String(id)}`);
  }
}

function finiteIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    invalid(field, `must be a finite number ${describeRange(min, max)}, got ${String(value)}`);
  }
  return value;
}

function integerIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalid(field, `must be an integer ${describeRange(min, max)}, got ${String(value)}`);
  }
  return value;
}

function describeRange(min: number, max: number): string {
  return max === Infinity || max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
}

function nullableIntegerIn(field: string, value: unknown, min: number, max: number): number | null {
  return value === null ? null : integerIn(field, value, min, max);
}

function invalid(field: string, message: string): never {
  throw new EngineError('DSV_ERR_INVALID_REQUEST', `sampling parameter '${field}' ${message}`, { param: field });
}
