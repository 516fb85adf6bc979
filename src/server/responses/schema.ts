// zod schema of POST /v1/responses (the OpenAI Responses API, stateless as vLLM serves it). Every
// field of the OpenAI request is listed: honoured, accepted in the one value that describes what
// this server does (store: responses are never stored), or refused with a 400 naming it. Unknown
// fields are refused too (strict objects).
import { z } from 'zod';

const text = z.string();

/** Fields this server cannot honour: only absent, null (or the value meaning "off") passes. */
const refused = (why: string, allowed: readonly unknown[] = []) =>
  z
    .unknown()
    .refine((v) => v === undefined || v === null || allowed.some((a) => JSON.stringify(a) === JSON.stringify(v)), { message: `not supported: ${why}` });

const inputText = z.strictObject({
  type: z.enum(['input_text', 'output_text']),
  text,
  annotations: z.array(z.unknown()).optional(),
  logprobs: z.array(z.unknown()).optional(),
});

const messageItem = z.strictObject({
  type: z.literal('message').optional(),
  id: z.string().optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([text, z.array(inputText).max(1024)]),
});

const functionCallItem = z.strictObject({
  type: z.literal('function_call'),
  id: z.string().optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: text,
});

const functionCallOutputItem = z.strictObject({
  type: z.literal('function_call_output'),
  id: z.string().optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
  call_id: z.string().min(1),
  output: z.union([text, z.array(inputText)]),
});

const inputItem = z.union([messageItem, functionCallItem, functionCallOutputItem]);

export const functionToolSchema = z.strictObject({
  type: z.literal('function'),
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes'),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

const textFormat = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/),
    schema: z.record(z.string(), z.unknown()),
    description: z.string().optional(),
    strict: z.boolean().nullish(),
  }),
]);

export const responsesRequestSchema = z.strictObject({
  model: z.string().optional(),
  input: z.union([text, z.array(inputItem).min(1).max(4096)]),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  tools: z.array(functionToolSchema).max(128).optional(),
  tool_choice: z.union([z.enum(['none', 'auto', 'required']), z.strictObject({ type: z.literal('function'), name: z.string() })]).optional(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z.strictObject({ format: textFormat.optional(), verbosity: refused('verbosity', ['medium']).optional() }).optional(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_obfuscation: z.boolean().optional() }).nullish(),
  /** Responses are never stored: accepted so stock clients work; the response says store: false. */
  store: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().max(256).optional(),
  safety_identifier: z.string().max(256).nullish(),
  /** Prefix caching is automatic; a routing key changes nothing here, so it is accepted and echoed. */
  prompt_cache_key: z.string().max(256).nullish(),
  service_tier: z.enum(['auto', 'default']).nullish(),
  truncation: z.literal('disabled').nullish(),
  include: z.array(z.string()).max(0, 'not supported: include (no reasoning, logprobs or tool sources to add)').nullish(),
  previous_response_id: refused('previous_response_id: this server is stateless (responses are not stored); send the whole conversation in input'),
  conversation: refused('conversation: this server is stateless; send the whole conversation in input'),
  background: refused('background responses', [false]),
  prompt: refused('prompt templates'),
  reasoning: refused('reasoning options (no reasoning model is served)', [{}, { effort: null }]),
  top_logprobs: refused('top_logprobs', [0]),
  context_management: refused('context_management', [[]]),
  moderation: refused('moderation'),
  prompt_cache_retention: refused('prompt_cache_retention other than in_memory', ['in_memory']),
  prompt_cache_options: refused('prompt_cache_options'),
});

export type ResponsesRequest = z.infer<typeof responsesRequestSchema>;
export type ResponsesInputItem = z.infer<typeof inputItem>;
export type FunctionToolParam = z.infer<typeof functionToolSchema>;
