// Tool calling on /v1/chat/completions: the request fields (zod), the messages as the template reads
// them, the plan (render tools? force a call with a grammar? parse calls out of the text?), and the
// streamed deltas (delta.tool_calls with index, id and argument fragments, as OpenAI sends them).
import { z } from 'zod';
import { EngineError } from '../../common/errors.ts';
import type { StructuredOutputSpec } from '../../engine/structured/grammar_spec.ts';
import { checkToolResults, checkTools, templateTools, type TemplateMessage, type ToolRequest } from './conversation.ts';
import type { ToolCallFormat } from './deepseek_markup.ts';
import type { ParsedToolCall, ToolParseEvent } from './tool_call_parser.ts';
import { toolCallGrammar } from './tool_grammar.ts';

const functionName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes');
const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });
const content = z.union([z.string(), z.array(textPart).max(1024)]);

const toolCallSchema = z.strictObject({
  id: z.string().min(1),
  type: z.literal('function'),
  function: z.strictObject({ name: z.string().min(1), arguments: z.string() }),
});

export const chatMessageSchema = z.discriminatedUnion('role', [
  z.strictObject({ role: z.enum(['system', 'developer']), content, name: z.string().optional() }),
  z.strictObject({ role: z.literal('user'), content, name: z.string().optional() }),
  z.strictObject({
    role: z.literal('assistant'),
    content: content.nullish(),
    name: z.string().optional(),
    tool_calls: z.array(toolCallSchema).max(128).nullish(),
    refusal: z.string().nullish(),
  }),
  z.strictObject({ role: z.literal('tool'), content, tool_call_id: z.string().min(1), name: z.string().optional() }),
]);
export type ChatMessageInput = z.infer<typeof chatMessageSchema>;

const chatToolSchema = z.strictObject({
  type: z.literal('function'),
  function: z.strictObject({
    name: functionName,
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});

/** Spread into the chat request schema. */
export const chatToolFields = {
  tools: z.array(chatToolSchema).max(128).nullish(),
  tool_choice: z
    .union([z.enum(['none', 'auto', 'required']), z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: z.string() }) })])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
};
export type ChatToolFields = { [K in keyof typeof chatToolFields]?: z.infer<(typeof chatToolFields)[K]> };

function flatten(c: z.infer<typeof content> | null | undefined): string {
  return typeof c === 'string' ? c : (c ?? []).map((p) => p.text).join('');
}

/** Messages as the template reads them (developer = system), with the tool-result rule checked. */
export function templateMessages(messages: readonly ChatMessageInput[]): TemplateMessage[] {
  const out = messages.map((m): TemplateMessage => {
    switch (m.role) {
      case 'system':
      case 'developer':
        return { role: 'system', content: flatten(m.content) };
      case 'user':
        return { role: 'user', content: flatten(m.content) };
      case 'assistant':
        return { role: 'assistant', content: flatten(m.content), ...(m.tool_calls?.length ? { tool_calls: m.tool_calls } : {}) };
      case 'tool':
        return { role: 'tool', content: flatten(m.content), tool_call_id: m.tool_call_id, ...(m.name !== undefined ? { name: m.name } : {}) };
    }
  });
  checkToolResults(out);
  return out;
}

export function chatToolRequest(f: ChatToolFields): ToolRequest {
  const tools = (f.tools ?? []).map((t) => ({ name: t.function.name, description: t.function.description ?? null, parameters: t.function.parameters ?? null }));
  const choice = f.tool_choice;
  const request: ToolRequest = {
    tools,
    choice: typeof choice === 'object' && choice !== null ? { name: choice.function.name } : (choice ?? (tools.length > 0 ? 'auto' : 'none')),
    parallel: f.parallel_tool_calls ?? true,
  };
  checkTools(request);
  return request;
}

export interface ToolPlan {
  /** The `tools` template variable, or null when no tools are offered. */
  readonly templateTools: object[] | null;
  /** The grammar forcing a call (required / named), or null. */
  readonly grammar: StructuredOutputSpec | null;
  /** Whether the output is parsed for calls. */
  readonly parseCalls: boolean;
}

/**
 * @param format the markup the model's chat template teaches; null when it renders no tools
 */
export function planTools(request: ToolRequest, format: ToolCallFormat | null): ToolPlan {
  if (request.tools.length === 0 || request.choice === 'none') return { templateTools: null, grammar: null, parseCalls: false };
  if (format === null) {
    throw new EngineError('DSV_ERR_INVALID_REQUEST', "tools: this model's chat template does not render tool calls (no DeepSeek tool-call markup in it)", {
      param: 'tools',
    });
  }
  const choice = request.choice;
  const forced = choice === 'required' ? request.tools : typeof choice === 'object' ? request.tools.filter((t) => t.name === choice.name) : null;
  const parallel = typeof choice === 'object' ? false : request.parallel;
  return {
    templateTools: templateTools(request.tools),
    grammar: forced ? toolCallGrammar(format, forced, parallel) : null,
    parseCalls: true,
  };
}

/** One chunk's delta for a group of parser events: content and/or tool_calls entries; null if empty. */
export function chatDelta(events: readonly ToolParseEvent[]): { content?: string; tool_calls?: object[] } | null {
  let text = '';
  const calls: object[] = [];
  for (const e of events) {
    if (e.type === 'content') text += e.text;
    else if (e.type === 'call_start') calls.push({ index: e.index, id: e.id, type: 'function', function: { name: e.name, arguments: '' } });
    else calls.push({ index: e.index, function: { arguments: e.text } });
  }
  if (text === '' && calls.length === 0) return null;
  return { ...(text !== '' ? { content: text } : {}), ...(calls.length > 0 ? { tool_calls: calls } : {}) };
}

/** The message of a non-streamed choice. */
export function chatMessage(content: string | null, calls: readonly ParsedToolCall[]): object {
  if (calls.length === 0) return { role: 'assistant', content: content ?? '' };
  return { role: 'assistant', content, tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) };
}

/** OpenAI reports "tool_calls" when the model stopped after calling tools. */
export function toolFinishReason(reason: string | null, numCalls: number): string | null {
  return reason === 'stop' && numCalls > 0 ? 'tool_calls' : reason;
}
