// /v1/responses onto the chat pipeline: instructions and input items become chat messages
// (developer = system; function_call items become the assistant's tool_calls; function_call_output
// items become tool messages), text.format becomes the output grammar, tools/tool_choice carry over.
import { EngineError } from '../../common/errors.ts';
import type { GrammarSpec, StructuredOutputSpec } from '../../engine/structured/grammar_spec.ts';
import { checkToolResults, checkTools, type TemplateMessage, type TemplateToolCall, type ToolRequest } from '../tools/conversation.ts';
import type { ResponsesInputItem, ResponsesRequest } from './schema.ts';

export interface ResponsesAsChat {
  readonly messages: readonly TemplateMessage[];
  readonly tools: ToolRequest;
  /** From text.format; null for plain text. */
  readonly format: StructuredOutputSpec | null;
  readonly maxTokens: number | null;
  readonly temperature: number | null;
  readonly topP: number | null;
}

export function responsesToChat(body: ResponsesRequest): ResponsesAsChat {
  const messages: TemplateMessage[] = [];
  if (body.instructions) messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') messages.push({ role: 'user', content: body.input });
  else body.input.forEach((item, i) => addItem(messages, item, i));
  checkToolResults(messages, 'input');
  const tools: ToolRequest = {
    tools: (body.tools ?? []).map((t) => ({ name: t.name, description: t.description ?? null, parameters: t.parameters ?? null })),
    choice: typeof body.tool_choice === 'object' ? { name: body.tool_choice.name } : (body.tool_choice ?? 'auto'),
    parallel: body.parallel_tool_calls ?? true,
  };
  checkTools(tools);
  const format = textFormat(body);
  if (format && tools.tools.length > 0 && (tools.choice === 'required' || typeof tools.choice === 'object')) {
    throw new EngineError('DSV_ERR_INVALID_REQUEST', 'text.format: cannot constrain the output while tool_choice forces a tool call', { param: 'text.format' });
  }
  return { messages, tools, format, maxTokens: body.max_output_tokens ?? null, temperature: body.temperature ?? null, topP: body.top_p ?? null };
}

function textFormat(body: ResponsesRequest): StructuredOutputSpec | null {
  const format = body.text?.format;
  if (!format || format.type === 'text') return null;
  const grammar: GrammarSpec = format.type === 'json_object' ? { kind: 'json_object' } : { kind: 'json_schema', schema: JSON.stringify(format.schema) };
  return { grammar, param: 'text.format' };
}

function itemText(content: string | readonly { text: string }[]): string {
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

/** Appends one input item; consecutive function calls join one assistant message. */
function addItem(messages: TemplateMessage[], item: ResponsesInputItem, index: number): void {
  if (item.type === 'function_call') {
    const call: TemplateToolCall = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } };
    const last = messages[messages.length - 1];
    if (last?.role === 'assistant') messages[messages.length - 1] = { ...last, tool_calls: [...(last.tool_calls ?? []), call] };
    else messages.push({ role: 'assistant', content: '', tool_calls: [call] });
    return;
  }
  if (item.type === 'function_call_output') {
    messages.push({ role: 'tool', content: itemText(item.output), tool_call_id: item.call_id });
    return;
  }
  const role = item.role === 'developer' ? 'system' : item.role;
  if (typeof item.content !== 'string') {
    const wrong = item.content.findIndex((p) => (p.type === 'output_text') !== (role === 'assistant'));
    if (wrong >= 0) {
      const param = `input[${index}].content[${wrong}].type`;
      throw new EngineError('DSV_ERR_INVALID_REQUEST', `${param}: ${role} messages take ${role === 'assistant' ? 'output_text' : 'input_text'} parts`, {
        param,
      });
    }
  }
  messages.push({ role, content: itemText(item.content) });
}
