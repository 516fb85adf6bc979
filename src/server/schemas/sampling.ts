// The sampling fields of /v1/completions and /v1/chat/completions: one set of limits, and the one
// map from their OpenAI/vLLM snake_case names to the engine's SamplingParams. Equivalent spellings
// are normalised here (top_k -1 -> 0, temperature < 1e-5 -> 0, zero biases dropped, duplicate
// stop ids merged), so the engine receives exactly what it asserts (sampling_params.ts).
import { z } from 'zod';
import { EngineError } from '../../common/errors.ts';
import { defaultSamplingParams as d, GREEDY_TEMPERATURE, type SamplingParams } from '../../engine/sampling/sampling_params.ts';

/** What the request limits depend on: the loaded model and the server's flags. */
export interface RequestLimits {
  readonly vocabSize: number;
  /** --max-logprobs: the most logprobs / top_logprobs a request may ask for. */
  readonly maxLogprobs: number;
}

export const tokenId = z.number().int().nonnegative();

/** A token id the model knows. */
function vocabTokenId(vocabSize: number) {
  return tokenId.max(vocabSize - 1, { error: (iss) => `token id ${String(iss.input)} is outside the vocabulary [0, ${vocabSize})` });
}

/** logprobs (completions) / top_logprobs (chat). */
export function logprobsCount(limits: RequestLimits) {
  return z
    .number()
    .int()
    .min(0)
    .max(limits.maxLogprobs, {
      error: (iss) => `at most ${limits.maxLogprobs} logprobs may be requested (the server's --max-logprobs), got ${String(iss.input)}`,
    });
}

/** Sampling fields whose limits depend only on the API (shared by both routes). */
const staticFields = {
  temperature: z.number().min(0).max(100).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(-1).optional(),
  min_p: z.number().min(0).max(1).optional(),
  seed: z.number().int().optional(),
  n: z.number().int().min(1).max(64).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  repetition_penalty: z.number().gt(0).max(100).optional(),
  ignore_eos: z.boolean().optional(),
  min_tokens: z.number().int().nonnegative().optional(),
};

/** Every sampling field, with the limits of this model and server. */
export function samplingFields(limits: RequestLimits) {
  const vocabId = vocabTokenId(limits.vocabSize);
  return {
    ...staticFields,
    stop_token_ids: z.array(vocabId).max(64).nullish(),
    logit_bias: z
      .record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100))
      .superRefine((bias, ctx) => {
        for (const key of Object.keys(bias)) {
          const r = vocabId.safeParse(Number(key));
          if (!r.success) ctx.addIssue({ code: 'custom', path: [key], message: r.error.issues[0]?.message ?? 'not a token id' });
        }
      })
      .nullish(),
  };
}

type SamplingFieldValues = z.infer<z.ZodObject<ReturnType<typeof samplingFields>>>;

/** SamplingParams before max_tokens is known (chat's default depends on the prompt length). */
export type SamplingParamsDraft = Omit<SamplingParams, 'maxTokens'>;

/** The one snake_case -> camelCase map. */
export function toSamplingParamsDraft(f: SamplingFieldValues, logprobs: { logprobs: number | null; promptLogprobs: number | null }): SamplingParamsDraft {
  const temperature = f.temperature ?? d.temperature;
  const bias = Object.entries(f.logit_bias ?? {}).filter(([, b]) => b !== 0);
  return {
    temperature: temperature < GREEDY_TEMPERATURE ? 0 : temperature,
    topP: f.top_p ?? d.topP,
    topK: f.top_k === undefined || f.top_k === -1 ? d.topK : f.top_k,
    minP: f.min_p ?? d.minP,
    seed: f.seed ?? d.seed,
    presencePenalty: f.presence_penalty ?? d.presencePenalty,
    frequencyPenalty: f.frequency_penalty ?? d.frequencyPenalty,
    repetitionPenalty: f.repetition_penalty ?? d.repetitionPenalty,
    logitBias: bias.length === 0 ? null : new Map(bias.map(([id, b]) => [Number(id), b])),
    minTokens: f.min_tokens ?? d.minTokens,
    stopTokenIds: Object.freeze([...new Set(f.stop_token_ids ?? [])]),
    ignoreEos: f.ignore_eos ?? d.ignoreEos,
    n: f.n ?? d.n,
    logprobs: logprobs.logprobs,
    promptLogprobs: logprobs.promptLogprobs,
  };
}

/** Completes the draft with the request's max_tokens (given or defaulted); the result is frozen. */
export function withMaxTokens(draft: SamplingParamsDraft, maxTokens: number): SamplingParams {
  if (draft.minTokens > maxTokens) {
    throw new EngineError('DSV_ERR_INVALID_REQUEST', `min_tokens: must not exceed max_tokens (${maxTokens}), got ${draft.minTokens}`, { param: 'min_tokens' });
  }
  return Object.freeze({ ...draft, maxTokens });
}
