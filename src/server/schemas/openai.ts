// zod schemas for the OpenAI-compatible request bodies (and vLLM's extensions). Validation happens
// here, at the edge; handlers receive typed, readonly data. Unknown fields are refused with a 400
// naming them (strict objects): a field the server does not honour is never silently ignored.
import { z } from 'zod';
import { structuredOutputFields } from '../structured/request_grammar.ts';
import { chatMessageSchema, chatToolFields } from '../tools/chat_tools.ts';

const tokenId = z.number().int().nonnegative();
const tokenIds = z.array(tokenId).min(1, 'must not be empty');

/** Sampling fields shared by /v1/completions and /v1/chat/completions. */
const sampling = {
  model: z.string().optional(),
  temperature: z.number().min(0).max(100).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(-1).optional(),
  min_p: z.number().min(0).max(1).optional(),
  seed: z.number().int().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(64)]).nullish(),
  stop_token_ids: z.array(tokenId).max(64).nullish(),
  n: z.number().int().min(1).max(64).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  repetition_penalty: z.number().gt(0).max(100).optional(),
  logit_bias: z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullish(),
  ignore_eos: z.boolean().optional(),
  min_tokens: z.number().int().nonnegative().optional(),
  user: z.string().max(256).optional(),
  stream: z.boolean().optional(),
  stream_options: z
    .strictObject({ include_usage: z.boolean().optional(), continuous_usage_stats: z.literal(false, 'not supported: continuous_usage_stats (usage comes in the last chunk)').optional() })
    .nullish(),
  return_tokens_as_token_ids: z.boolean().optional(),
  skip_special_tokens: z.boolean().optional(),
  include_stop_str_in_output: z.boolean().optional(),
  cache_salt: z.string().min(1).max(256).optional(),
};

export const completionRequestSchema = z.strictObject({
  ...sampling,
  ...structuredOutputFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1).max(256), tokenIds, z.array(tokenIds).min(1).max(256)]),
  max_tokens: z.number().int().min(1).nullish(),
  logprobs: z.number().int().min(0).nullish(),
  echo: z.boolean().optional(),
  suffix: z.unknown().refine((v) => v === undefined || v === null, { message: 'not supported: this model has no fill-in-the-middle template' }),
  best_of: z.number().int().min(1).max(1, 'not supported: best_of > 1 (use n with logprobs and rank the choices)').nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const messages = z.array(chatMessageSchema).min(1, 'must contain at least one message').max(4096);

export const chatCompletionRequestSchema = z.strictObject({
  ...sampling,
  ...structuredOutputFields,
  ...chatToolFields,
  messages,
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().optional(),
  top_logprobs: z.number().int().min(0).nullish(),
  add_generation_prompt: z.boolean().optional(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

export const tokenizeRequestSchema = z.union([
  z.strictObject({ model: z.string().optional(), prompt: z.string(), add_special_tokens: z.boolean().optional() }),
  z.strictObject({ model: z.string().optional(), messages, ...chatToolFields, add_generation_prompt: z.boolean().optional(), chat_template_kwargs: z.record(z.string(), z.unknown()).nullish() }),
]);

export const detokenizeRequestSchema = z.strictObject({ model: z.string().optional(), tokens: z.array(tokenId) });
