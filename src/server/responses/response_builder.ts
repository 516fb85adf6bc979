// Builds a Responses API answer from the generation's parsed output (text and tool calls), both
// whole and as the typed event stream the OpenAI SDK accumulates:
//   response.created, response.in_progress,
//   per output item: response.output_item.added, then for a message response.content_part.added,
//   response.output_text.delta..., response.output_text.done, response.content_part.done; for a
//   call response.function_call_arguments.delta..., response.function_call_arguments.done;
//   then response.output_item.done;
//   response.completed (or response.incomplete when max_output_tokens cut the output).
// Every event carries a sequence_number counting from 0.
import { randomUUID } from 'node:crypto';
import type { ToolParseEvent } from '../tools/tool_call_parser.ts';

export interface ResponseEcho {
  readonly model: string;
  readonly instructions: string | null;
  readonly maxOutputTokens: number | null;
  readonly temperature: number | null;
  readonly topP: number | null;
  readonly tools: readonly object[];
  readonly toolChoice: unknown;
  readonly parallelToolCalls: boolean;
  readonly text: object;
  readonly metadata: Readonly<Record<string, string>> | null;
  readonly user: string | null;
}

export interface ResponseUsage {
  readonly inputTokens: number;
  readonly cachedTokens: number;
  readonly outputTokens: number;
}

type OutputItem =
  | { id: string; type: 'message'; role: 'assistant'; status: ItemStatus; content: { type: 'output_text'; text: string; annotations: []; logprobs: [] }[] }
  | { id: string; type: 'function_call'; status: ItemStatus; call_id: string; name: string; arguments: string };
type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

export type ResponseEvent = { readonly type: string; readonly sequence_number: number } & Record<string, unknown>;

function shortId(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll('-', '')}`;
}

export class ResponseBuilder {
  readonly id = shortId('resp');
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private readonly output: OutputItem[] = [];
  /** The message item text is being appended to, if the last item is one. */
  private openMessage: Extract<OutputItem, { type: 'message' }> | null = null;
  private sequence = 0;

  constructor(private readonly echo: ResponseEcho) {}

  /** Events emitted so far (the next event's sequence_number). */
  get numEvents(): number {
    return this.sequence;
  }

  /** response.created + response.in_progress (streaming only). */
  start(): ResponseEvent[] {
    const snapshot = this.response('in_progress', null);
    return [this.event('response.created', { response: snapshot }), this.event('response.in_progress', { response: snapshot })];
  }

  /** The events for a piece of parsed output; also records it for the final response. */
  push(e: ToolParseEvent): ResponseEvent[] {
    if (e.type === 'content') return this.appendText(e.text);
    const events = this.closeMessage();
    if (e.type === 'call_start') {
      const item: OutputItem = { id: shortId('fc'), type: 'function_call', status: 'in_progress', call_id: e.id, name: e.name, arguments: '' };
      this.output.push(item);
      return [...events, this.event('response.output_item.added', { output_index: this.output.length - 1, item: { ...item } })];
    }
    const index = this.callOutputIndex(e.index);
    const item = this.output[index] as Extract<OutputItem, { type: 'function_call' }>;
    item.arguments += e.text;
    return [...events, this.event('response.function_call_arguments.delta', { item_id: item.id, output_index: index, delta: e.text })];
  }

  /** Closes every item and ends with response.completed, or response.incomplete when cut by the length limit. */
  finish(usage: ResponseUsage, truncated: boolean): ResponseEvent[] {
    const events = this.closeMessage(truncated);
    this.output.forEach((item, index) => {
      if (item.type !== 'function_call' || item.status !== 'in_progress') return;
      item.status = truncated ? 'incomplete' : 'completed';
      events.push(this.event('response.function_call_arguments.done', { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments }));
      events.push(this.event('response.output_item.done', { output_index: index, item: { ...item } }));
    });
    const final = this.final(usage, truncated);
    events.push(this.event(truncated ? 'response.incomplete' : 'response.completed', { response: final }));
    return events;
  }

  /** The whole response object (non-streamed answer, and the payload of the last event). */
  final(usage: ResponseUsage, truncated: boolean): object {
    return {
      ...this.response(truncated ? 'incomplete' : 'completed', truncated ? { reason: 'max_output_tokens' } : null),
      usage: {
        input_tokens: usage.inputTokens,
        input_tokens_details: { cached_tokens: usage.cachedTokens },
        output_tokens: usage.outputTokens,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: usage.inputTokens + usage.outputTokens,
      },
    };
  }

  private appendText(text: string): ResponseEvent[] {
    const events: ResponseEvent[] = [];
    if (!this.openMessage) {
      this.openMessage = { id: shortId('msg'), type: 'message', role: 'assistant', status: 'in_progress', content: [] };
      this.output.push(this.openMessage);
      const outputIndex = this.output.length - 1;
      events.push(this.event('response.output_item.added', { output_index: outputIndex, item: structuredClone(this.openMessage) }));
      this.openMessage.content.push({ type: 'output_text', text: '', annotations: [], logprobs: [] });
      events.push(
        this.event('response.content_part.added', {
          item_id: this.openMessage.id,
          output_index: outputIndex,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
        }),
      );
    }
    const part = this.openMessage.content[0]!; // pushed when the message was opened, above
    part.text += text;
    const outputIndex = this.output.indexOf(this.openMessage);
    events.push(
      this.event('response.output_text.delta', { item_id: this.openMessage.id, output_index: outputIndex, content_index: 0, delta: text, logprobs: [] }),
    );
    return events;
  }

  private closeMessage(truncated = false): ResponseEvent[] {
    const message = this.openMessage;
    if (!message) return [];
    this.openMessage = null;
    message.status = truncated ? 'incomplete' : 'completed';
    const outputIndex = this.output.indexOf(message);
    const part = message.content[0]!; // appendText opens a message together with its one text part
    return [
      this.event('response.output_text.done', { item_id: message.id, output_index: outputIndex, content_index: 0, text: part.text, logprobs: [] }),
      this.event('response.content_part.done', { item_id: message.id, output_index: outputIndex, content_index: 0, part: { ...part } }),
      this.event('response.output_item.done', { output_index: outputIndex, item: structuredClone(message) }),
    ];
  }

  /** Output index of the parser's n-th call. */
  private callOutputIndex(callIndex: number): number {
    let n = -1;
    for (const [i, item] of this.output.entries()) if (item.type === 'function_call' && ++n === callIndex) return i;
    throw new Error(`no function call ${callIndex} in the output`);
  }

  private response(status: 'in_progress' | 'completed' | 'incomplete', incompleteDetails: object | null): Record<string, unknown> {
    const e = this.echo;
    return {
      id: this.id,
      object: 'response',
      created_at: this.createdAt,
      status,
      error: null,
      incomplete_details: incompleteDetails,
      instructions: e.instructions,
      max_output_tokens: e.maxOutputTokens,
      model: e.model,
      output: structuredClone(this.output),
      parallel_tool_calls: e.parallelToolCalls,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      store: false,
      temperature: e.temperature,
      text: e.text,
      tool_choice: e.toolChoice,
      tools: e.tools,
      top_p: e.topP,
      truncation: 'disabled',
      usage: null,
      user: e.user,
      metadata: e.metadata ?? {},
    };
  }

  private event(type: string, fields: Record<string, unknown>): ResponseEvent {
    return { type, sequence_number: this.sequence++, ...fields };
  }
}
