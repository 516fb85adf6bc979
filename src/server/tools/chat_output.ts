// One chat choice's output when tool calls may be in it: text goes through the tool-call parser, and
// comes out as stream deltas (content and/or delta.tool_calls) or as the final message. Without
// tools the text passes through unchanged.
import { chatDelta, chatMessage, toolFinishReason } from './chat_tools.ts';
import { ToolCallStreamParser, type ParsedToolCall, type ToolParseEvent } from './tool_call_parser.ts';

export type ChatDelta = { content?: string; tool_calls?: object[] };

export class ChatChoiceOutput {
  private readonly parser: ToolCallStreamParser | null;
  private content = '';
  private readonly calls: { id: string; name: string; arguments: string }[] = [];

  constructor(parseToolCalls: boolean) {
    this.parser = parseToolCalls ? new ToolCallStreamParser() : null;
  }

  /**
   * The delta for a piece of generated text; null when nothing can be shown yet. `last` (the
   * choice's final piece) also releases what the parser held back.
   */
  push(text: string, last = false): ChatDelta | null {
    if (!this.parser) {
      this.content += text;
      return text === '' ? null : { content: text };
    }
    const events = this.parser.push(text);
    if (last) events.push(...this.parser.finish());
    return this.absorb(events);
  }

  /** "tool_calls" when the model stopped after calling tools. */
  finishReason(reason: string | null): string | null {
    return toolFinishReason(reason, this.calls.length);
  }

  get toolCalls(): readonly ParsedToolCall[] {
    return this.calls;
  }

  /** The non-streamed message: content (null when only calls were made) and tool_calls. */
  message(): object {
    return chatMessage(this.calls.length > 0 && this.content === '' ? null : this.content, this.calls);
  }

  private absorb(events: readonly ToolParseEvent[]): ChatDelta | null {
    for (const e of events) {
      if (e.type === 'content') this.content += e.text;
      else if (e.type === 'call_start') this.calls.push({ id: e.id, name: e.name, arguments: '' });
      else this.calls[e.index]!.arguments += e.text;
    }
    return chatDelta(events);
  }
}
