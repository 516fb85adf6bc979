// zod schemas for the OpenAI-compatible request bodies (and vLLM's extensions). Validation happens
// here, at the edge; handlers receive typed, readonly data. Unknown fields are ignored (as vLLM does).
import { z } from 'zod';

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
  stream_options: z.object({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() }).nullish(),
  return_tokens_as_token_ids: z.boolean().optional(),
  skip_special_tokens: z.boolean().optional(),
  include_stop_str_in_output: z.boolean().optional(),
  cache_salt: z.string().min(1).max(256).optional(),
};

export const completionRequestSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).min(1).max(256), tokenIds, z.array(tokenIds).min(1).max(256)]),
  max_tokens: z.number().int().min(1).nullish(),
  logprobs: z.number().int().min(0).nullish(),
  echo: z.boolean().optional(),
  suffix: z.null().optional(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(textPart).max(1024), z.null()]).optional(),
  name: z.string().optional(),
});

export const chatCompletionRequestSchema = z.object({
  ...sampling,
  messages: z.array(message).min(1, 'must contain at least one message').max(4096),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().optional(),
  top_logprobs: z.number().int().min(0).nullish(),
  add_generation_prompt: z.boolean().optional(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;
export type ChatMessage = z.infer<typeof message>;

export const tokenizeRequestSchema = z.union([
  z.object({ model: z.string().optional(), prompt: z.string(), add_special_tokens: z.boolean().optional() }),
  z.object({ model: z.string().optional(), messages: z.array(message).min(1), add_generation_prompt: z.boolean().optional(), chat_template_kwargs: z.record(z.string(), z.unknown()).nullish() }),
]);

export const detokenizeRequestSchema = z.object({ model: z.string().optional(), tokens: z.array(tokenId) });

/** Flattens a message's content (string or text parts) to a string. */
export function messageText(m: ChatMessage): string {
  if (typeof m.content === 'string') return m.content;
  return (m.content ?? []).map((p) => p.text).join('');
}
