// A chat request reduced to what the template, the grammar and the tool-call parser need, shared by
// /v1/chat/completions and /v1/responses; and the conversation rules both enforce (400s naming the
// field): unique tool names, a tool_choice that names a listed tool, tool results that answer an
// earlier call.
import { EngineError } from '../../common/errors.ts';
import type { FunctionTool } from './tool_grammar.ts';

export interface TemplateToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: string };
}

/** A message as chat templates read it (developer is already system). A type, not an interface, so it is a template ChatMessage. */
export type TemplateMessage = {
  readonly role: 'system' | 'user' | 'assistant' | 'tool';
  readonly content: string;
  readonly tool_calls?: readonly TemplateToolCall[];
  readonly tool_call_id?: string;
  readonly name?: string;
};

export interface ToolDefinition extends FunctionTool {
  readonly description: string | null;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { readonly name: string };

export interface ToolRequest {
  readonly tools: readonly ToolDefinition[];
  readonly choice: ToolChoice;
  readonly parallel: boolean;
}

/** The `tools` template variable: OpenAI's chat shape, as DeepSeek's templates print it. */
export function templateTools(tools: readonly ToolDefinition[]): object[] {
  return tools.map((t) => ({
    type: 'function',
    function: { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters ?? { type: 'object', properties: {} } },
  }));
}

function invalid(param: string, message: string): never {
  throw new EngineError('DSV_ERR_INVALID_REQUEST', `${param}: ${message}`, { param });
}

/** Throws a 400 for colliding names or a tool_choice naming a tool that is not listed. */
export function checkTools(request: ToolRequest, toolsParam = 'tools', choiceParam = 'tool_choice'): void {
  const seen = new Set<string>();
  request.tools.forEach((t, i) => {
    if (seen.has(t.name)) invalid(`${toolsParam}[${i}]`, `duplicate function name "${t.name}"`);
    seen.add(t.name);
  });
  const { choice } = request;
  if (typeof choice === 'object' && !seen.has(choice.name)) invalid(choiceParam, `names function "${choice.name}", which is not in ${toolsParam}`);
  if (choice === 'required' && request.tools.length === 0) invalid(choiceParam, `"required" needs at least one function in ${toolsParam}`);
}

/**
 * Every tool message must answer a call made by an earlier assistant message, once; a tool
 * message's optional `name` (LangChain sends it) must be that call's function.
 */
export function checkToolResults(messages: readonly TemplateMessage[], messagesParam = 'messages'): void {
  const open = new Map<string, string>(); // call id -> function name
  const answered = new Set<string>();
  messages.forEach((m, i) => {
    if (m.role === 'assistant') for (const call of m.tool_calls ?? []) open.set(call.id, call.function.name);
    if (m.role !== 'tool') return;
    const id = m.tool_call_id;
    if (id === undefined) invalid(`${messagesParam}[${i}].tool_call_id`, 'a tool message needs the id of the call it answers');
    const called = open.get(id);
    if (called === undefined) invalid(`${messagesParam}[${i}].tool_call_id`, `"${id}" matches no tool call of an earlier assistant message`);
    if (m.name !== undefined && m.name !== called) invalid(`${messagesParam}[${i}].name`, `"${m.name}" is not the function of call "${id}" ("${called}")`);
    if (answered.has(id)) invalid(`${messagesParam}[${i}].tool_call_id`, `call "${id}" was already answered`);
    answered.add(id);
  });
}
