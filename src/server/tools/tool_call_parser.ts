// Turns generated text into OpenAI tool calls, incrementally: push() takes each text delta and
// returns what can be said for certain so far (content, a call's start with its id and name,
// fragments of its arguments), holding back only text that may still turn out to be markup.
// The non-streamed parse is the same machine fed the whole text, so both paths agree.
// Both DeepSeek markups are read (deepseek_markup.ts): after <｜tool▁sep｜>, a head of "function"
// means V3 (name, then a ```json fence), anything else is a V3.1 name.
import { randomUUID } from 'node:crypto';
import { TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_SEP, V3_ARGS_CLOSE } from './deepseek_markup.ts';

export type ToolParseEvent =
  | { readonly type: 'content'; readonly text: string }
  | { readonly type: 'call_start'; readonly index: number; readonly id: string; readonly name: string }
  | { readonly type: 'call_arguments'; readonly index: number; readonly text: string };

export interface ParsedToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: string;
}

type State = 'content' | 'between_calls' | 'head' | 'v3_name' | 'v3_fence' | 'arguments' | 'after_calls';

const V3_FENCE = '```json';
/** How a call's arguments may end (the V3 fence close is optional for robustness). */
const ARGUMENT_TERMINATORS = [`${V3_ARGS_CLOSE}${TOOL_CALL_END}`, `\`\`\`${TOOL_CALL_END}`, TOOL_CALL_END];

export function newToolCallId(): string {
  return `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
}

export class ToolCallStreamParser {
  private state: State = 'content';
  private buffer = '';
  private numCalls = 0;

  constructor(private readonly makeId: () => string = newToolCallId) {}

  get numToolCalls(): number {
    return this.numCalls;
  }

  push(delta: string): ToolParseEvent[] {
    this.buffer += delta;
    const events: ToolParseEvent[] = [];
    while (this.step(events));
    return events;
  }

  /**
   * End of output: held-back text is released as content. Inside a call's arguments, or between
   * calls, the held-back text is the start of markup (the output was cut off while closing a call
   * or opening the next): dropped.
   */
  finish(): ToolParseEvent[] {
    const events = this.push('');
    if (this.state === 'between_calls' || this.state === 'arguments') this.buffer = '';
    if (this.buffer.length > 0) {
      events.push({ type: 'content', text: this.buffer });
    }
    this.buffer = '';
    return events;
  }

  /** Advances by one piece of markup or text; false when it must wait for more text. */
  private step(events: ToolParseEvent[]): boolean {
    switch (this.state) {
      case 'content':
      case 'after_calls':
        return this.scanContent(events);
      case 'between_calls':
        return this.scanBetweenCalls();
      case 'head':
        return this.scanHead(events);
      case 'v3_name':
        return this.scanV3Name(events);
      case 'v3_fence':
        return this.scanV3Fence();
      case 'arguments':
        return this.scanArguments(events);
    }
  }

  private scanContent(events: ToolParseEvent[]): boolean {
    const at = this.state === 'content' ? this.buffer.indexOf(TOOL_CALLS_BEGIN) : -1;
    if (at >= 0) {
      this.emitContent(events, this.buffer.slice(0, at));
      this.consume(at + TOOL_CALLS_BEGIN.length, 'between_calls');
      return true;
    }
    const keep = this.state === 'content' ? heldBack(this.buffer, [TOOL_CALLS_BEGIN]) : 0;
    this.emitContent(events, this.buffer.slice(0, this.buffer.length - keep));
    this.buffer = this.buffer.slice(this.buffer.length - keep);
    return false;
  }

  private scanBetweenCalls(): boolean {
    const rest = this.buffer.trimStart();
    if (rest.startsWith(TOOL_CALL_BEGIN)) return this.consume(this.buffer.length - rest.length + TOOL_CALL_BEGIN.length, 'head');
    if (rest.startsWith(TOOL_CALLS_END)) return this.consume(this.buffer.length - rest.length + TOOL_CALLS_END.length, 'after_calls');
    if (rest.length === 0 || startsMarker(rest, TOOL_CALL_BEGIN) || startsMarker(rest, TOOL_CALLS_END)) return false;
    // Not markup after all: the model left the call list; what follows is content.
    this.state = 'after_calls';
    return true;
  }

  private scanHead(events: ToolParseEvent[]): boolean {
    const at = this.buffer.indexOf(TOOL_SEP);
    if (at < 0) return false;
    const head = this.buffer.slice(0, at).trim();
    if (head === 'function') return this.consume(at + TOOL_SEP.length, 'v3_name');
    this.startCall(events, head);
    return this.consume(at + TOOL_SEP.length, 'arguments');
  }

  private scanV3Name(events: ToolParseEvent[]): boolean {
    const at = this.buffer.indexOf('\n');
    if (at < 0) return false;
    this.startCall(events, this.buffer.slice(0, at).trim());
    return this.consume(at + 1, 'v3_fence');
  }

  /** The fence line "```json\n"; a call without it goes straight to its arguments. */
  private scanV3Fence(): boolean {
    const full = `${V3_FENCE}\n`;
    if (this.buffer.startsWith(full)) return this.consume(full.length, 'arguments');
    if (full.startsWith(this.buffer)) return false;
    this.state = 'arguments';
    return true;
  }

  private scanArguments(events: ToolParseEvent[]): boolean {
    const index = this.numCalls - 1;
    for (const terminator of ARGUMENT_TERMINATORS) {
      const at = this.buffer.indexOf(terminator);
      if (at < 0) continue;
      if (at > 0) events.push({ type: 'call_arguments', index, text: this.buffer.slice(0, at) });
      return this.consume(at + terminator.length, 'between_calls');
    }
    const keep = heldBack(this.buffer, ARGUMENT_TERMINATORS);
    if (this.buffer.length > keep) events.push({ type: 'call_arguments', index, text: this.buffer.slice(0, this.buffer.length - keep) });
    this.buffer = this.buffer.slice(this.buffer.length - keep);
    return false;
  }

  private startCall(events: ToolParseEvent[], name: string): void {
    events.push({ type: 'call_start', index: this.numCalls++, id: this.makeId(), name });
  }

  private emitContent(events: ToolParseEvent[], text: string): void {
    if (text.length > 0) events.push({ type: 'content', text });
  }

  private consume(length: number, next: State): true {
    this.buffer = this.buffer.slice(length);
    this.state = next;
    return true;
  }
}

/**
 * `text` is a proper prefix of `marker`, or one cut off at the end of output: the detokenizer's
 * final flush spells a character whose bytes were cut off as U+FFFD ("<｜tool▁call" + U+FFFD, seen
 * when max_tokens ended a call on random weights). Markers start with ASCII, so at least one
 * whole character precedes such a U+FFFD.
 */
function startsMarker(text: string, marker: string): boolean {
  const whole = text.replace(/\uFFFD+$/, '');
  if (whole.length === text.length) return text.length < marker.length && marker.startsWith(text);
  return whole.length > 0 && whole.length < marker.length && marker.startsWith(whole);
}

/** Length of the longest suffix of `text` that starts one of the markers (startsMarker). */
function heldBack(text: string, markers: readonly string[]): number {
  const trailingCut = text.length - text.replace(/\uFFFD+$/, '').length;
  const longest = Math.max(...markers.map((m) => m.length)) - 1 + trailingCut;
  for (let n = Math.min(longest, text.length); n > 0; n--) {
    const tail = text.slice(text.length - n);
    if (markers.some((m) => startsMarker(tail, m))) return n;
  }
  return 0;
}

/** Whole-output parse: content (null when empty) and the calls in order. */
export function parseToolCalls(text: string, makeId?: () => string): { content: string | null; toolCalls: ParsedToolCall[] } {
  const parser = new ToolCallStreamParser(makeId);
  const events = [...parser.push(text), ...parser.finish()];
  let content = '';
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const e of events) {
    if (e.type === 'content') content += e.text;
    else if (e.type === 'call_start') calls.push({ id: e.id, name: e.name, arguments: '' });
    else calls[e.index]!.arguments += e.text; // the parser numbers calls in call_start order
  }
  return { content: content.length > 0 ? content : null, toolCalls: calls };
}
