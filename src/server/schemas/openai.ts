// zod schemas for the OpenAI-compatible request bodies (and vLLM's extensions). Validation happens
// here, at the edge; handlers receive typed, readonly data. Unknown fields are refused with a 400
// naming them (strict objects): a field the server does not honour is never silently ignored.
import { z } from 'zod';
import { structuredOutputFields } from '../structured/request_grammar.ts';
import { chatMessageSchema, chatToolFields } from '../tools/chat_tools.ts';
import { logprobsCount, samplingFields, tokenId, toSamplingParamsDraft, type RequestLimits } from './sampling.ts';

const tokenIds = z.array(tokenId).min(1, 'must not be empty');

/** Fields shared by /v1/completions and /v1/chat/completions, besides the sampling ones. */
const common = {
  model: z.string().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(64)]).nullish(),
  user: z.string().max(256).optional(),
  stream: z.boolean().optional(),
  // vLLM's continuous_usage_stats only takes effect with include_usage; alone it would be ignored, so it is refused.
  stream_options: z
    .strictObject({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() })
    .refine((o) => !o.continuous_usage_stats || o.include_usage === true, {
      message: 'continuous_usage_stats needs include_usage: true',
      path: ['continuous_usage_stats'],
    })
    .nullish(),
  return_tokens_as_token_ids: z.boolean().optional(),
  skip_special_tokens: z.boolean().optional(),
  include_stop_str_in_output: z.boolean().optional(),
  cache_salt: z.string().min(1).max(256).optional(),
};

const maxTokens = z.number().int().min(1).nullish();

function completionFields(limits: RequestLimits) {
  return {
    ...common,
    ...samplingFields(limits),
    ...structuredOutputFields,
    prompt: z.union([z.string(), z.array(z.string()).min(1).max(256), tokenIds, z.array(tokenIds).min(1).max(256)]),
    max_tokens: maxTokens,
    logprobs: logprobsCount(limits).nullish(),
    echo: z.boolean().optional(),
    suffix: z.unknown().refine((v) => v === undefined || v === null, { message: 'not supported: this model has no fill-in-the-middle template' }),
    best_of: z.number().int().min(1).max(1, 'not supported: best_of > 1 (use n with logprobs and rank the choices)').nullish(),
  };
}
export type CompletionRequest = z.infer<z.ZodObject<ReturnType<typeof completionFields>>>;

/** Parses a completion request to its fields and the engine's sampling parameters (max_tokens still to apply). */
export function completionRequestSchema(limits: RequestLimits) {
  return z.strictObject(completionFields(limits)).transform((body) => {
    const logprobs = body.logprobs ?? null;
    return { body, sampling: toSamplingParamsDraft(body, { logprobs, promptLogprobs: body.echo && logprobs !== null ? logprobs : null }) };
  });
}

const messages = z.array(chatMessageSchema).min(1, 'must contain at least one message').max(4096);

function chatCompletionFields(limits: RequestLimits) {
  return {
    ...common,
    ...samplingFields(limits),
    ...structuredOutputFields,
    ...chatToolFields,
    messages,
    max_tokens: maxTokens,
    max_completion_tokens: maxTokens,
    logprobs: z.boolean().optional(),
    top_logprobs: logprobsCount(limits).nullish(),
    add_generation_prompt: z.boolean().optional(),
    chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  };
}
export type ChatCompletionRequest = z.infer<z.ZodObject<ReturnType<typeof chatCompletionFields>>>;

/** Parses a chat completion request to its fields and the engine's sampling parameters (max_tokens still to apply). */
export function chatCompletionRequestSchema(limits: RequestLimits) {
  return z.strictObject(chatCompletionFields(limits)).transform((body) => ({
    body,
    sampling: toSamplingParamsDraft(body, { logprobs: body.logprobs ? (body.top_logprobs ?? 0) : null, promptLogprobs: null }),
  }));
}

export const tokenizeRequestSchema = z.union([
  z.strictObject({ model: z.string().optional(), prompt: z.string(), add_special_tokens: z.boolean().optional() }),
  z.strictObject({
    model: z.string().optional(),
    messages,
    ...chatToolFields,
    add_generation_prompt: z.boolean().optional(),
    chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  }),
]);

export const detokenizeRequestSchema = z.strictObject({ model: z.string().optional(), tokens: z.array(tokenId) });
