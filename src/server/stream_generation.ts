// The streaming half of both generation routes: the one place the SSE protocol is written.
//   1. leading chunks (chat: one role delta per choice);
//   2. one chunk per choice event, skipping events that show nothing (below); the event that
//      finishes a choice carries its finish_reason;
//   3. an error after the stream started goes out as a `data: {"error": ...}` chunk (the status
//      line is already sent), in the same shape as every other error body;
//   4. with stream_options.include_usage: `usage: null` on every chunk, then one usage chunk with
//      empty choices; with continuous_usage_stats too (vLLM's), every choice chunk carries its
//      choice's running usage instead of null (prompt_tokens of its prompt, completion_tokens so
//      far, counting tokens of skipped events; the chat role chunk counts 0);
//   5. `data: [DONE]`.
// Output is pulled only as fast as the client reads (SseStream.send waits for 'drain'); a client
// that stops reading for --stream-write-timeout, or disconnects, aborts every choice.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { clientSignal } from './client_signal.ts';
import type { ServerContext } from './context.ts';
import type { ChoiceEvent, Generation } from './generation.ts';
import { errorBody } from './http_errors.ts';
import { usageBody } from './routes/shared.ts';
import { SseStream } from './sse.ts';

/** What one choice event adds, in the route's shape. */
export interface StreamPiece {
  /** Text shown by this event ('' when none). */
  readonly text: string;
  /** Logprob entries this event carries (sampled and, with echo, prompt ones). */
  readonly numLogprobs: number;
  /** The route's choice fields between `index` and `finish_reason` ({text, logprobs} or {delta, logprobs}). */
  readonly fields: Readonly<Record<string, unknown>>;
  /** Something other than text is shown (chat: a delta carrying only tool calls). */
  readonly showsSomething?: boolean;
  /** The finish_reason to send instead of the engine's (chat: "tool_calls"). */
  readonly finishReason?: string | null;
}

export interface StreamUsage {
  readonly final: boolean;
  readonly continuous: boolean;
}

/** The usage a stream asked for (the schema refuses continuous_usage_stats without include_usage). */
export function streamUsage(options: { include_usage?: boolean; continuous_usage_stats?: boolean } | null | undefined): StreamUsage {
  const final = options?.include_usage ?? false;
  return { final, continuous: final && (options?.continuous_usage_stats ?? false) };
}

export interface StreamFormat {
  readonly id: string;
  readonly object: 'text_completion' | 'chat.completion.chunk';
  readonly created: number;
  readonly model: string;
  /** stream_options as parsed: usage at the end, and (continuous) running usage in every chunk. */
  readonly usage: StreamUsage;
  /** Choices sent before any event. */
  readonly leadingChoices: readonly { readonly index: number }[];
  /** Called for every event in order (also for those then skipped: it may keep per-choice state). */
  piece(e: ChoiceEvent): StreamPiece;
}

/**
 * The skip rule: an event that adds no text, no logprobs and no finish shows nothing. Without a
 * tokenizer the text is always '', so an event with new tokens is still sent: it is the only
 * sign of progress a token-id client gets.
 */
function showsNothing(e: ChoiceEvent, p: StreamPiece, hasTokenizer: boolean): boolean {
  return p.text === '' && p.numLogprobs === 0 && e.finishReason === null && (hasTokenizer || e.tokenIds.length === 0);
}

export async function streamGeneration(
  ctx: ServerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  generation: Generation,
  format: StreamFormat,
): Promise<FastifyReply> {
  const sse = SseStream.open(request, reply, {
    writeTimeoutMs: ctx.streamWriteTimeoutMs,
    clientSignal: clientSignal(request),
    onClose: (reason) => {
      generation.abort();
      if (reason === 'write-timeout') {
        request.log.warn(
          { stream_write_timeout_s: ctx.streamWriteTimeoutMs / 1000, choices: generation.numChoices },
          'the client read nothing for the stream write timeout: aborted',
        );
      }
    },
  });
  const { id, object, created, model, usage } = format;
  const numTokens = new Array<number>(generation.numChoices).fill(0); // per choice, so far
  const chunkUsage = (index: number) => {
    if (!usage.continuous) return usage.final ? { usage: null } : {};
    const promptTokens = generation.promptTokensOf(index);
    const completionTokens = numTokens[index] ?? 0;
    return { usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } };
  };
  const chunk = (choice: { readonly index: number; readonly [field: string]: unknown }) => ({
    id,
    object,
    created,
    model,
    choices: [choice],
    ...chunkUsage(choice.index),
  });

  for (const choice of format.leadingChoices) await sse.send(chunk(choice));
  for await (const e of generation.events()) {
    if (sse.isClosed) break;
    numTokens[e.index] = (numTokens[e.index] ?? 0) + e.tokenIds.length;
    const p = format.piece(e);
    if (!p.showsSomething && showsNothing(e, p, ctx.tokenizer !== null)) continue;
    await sse.send(
      chunk({ index: e.index, ...p.fields, finish_reason: p.finishReason !== undefined ? p.finishReason : e.finishReason, stop_reason: e.stopReason }),
    );
  }
  if (sse.isClosed) return reply;
  if (generation.failure) await sse.send(errorBody(generation.failure.code, generation.failure.message));
  if (usage.final) await sse.send({ id, object, created, model, choices: [], usage: usageBody(generation) });
  sse.end();
  return reply;
}
