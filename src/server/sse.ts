// Server-sent events exactly as OpenAI/vLLM frame them: `data: {json}\n\n` chunks, then
// `data: [DONE]\n\n`. Writes go straight to the socket (the reply is hijacked from fastify) and
// honour backpressure: when the socket's buffer is full, send() waits for 'drain' before it
// returns, so the caller stops pulling output; a client that does not drain within the write
// timeout has its connection destroyed (Node then buffers at most ~one highWaterMark per stream).
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Why a stream closed before end(): the client went away, or it stopped reading for too long. */
export type SseCloseReason = 'client-closed' | 'write-timeout';

export interface SseOptions {
  /** How long one write may wait for the client to drain the socket. */
  readonly writeTimeoutMs: number;
  /** Aborts when the client's connection closes (client_signal.ts). */
  readonly clientSignal: AbortSignal;
  /** Runs once if the stream closes before end() (the caller aborts the generation). */
  readonly onClose: (reason: SseCloseReason) => void;
}

export class SseStream {
  private closed = false;

  private constructor(
    private readonly reply: FastifyReply,
    private readonly options: SseOptions,
  ) {}

  /**
   * Sends the status line and headers, then the stream is open for send(). The Connection header
   * is Node's choice: keep-alive unless the client sent `Connection: close`, in which case the
   * socket closes after end().
   */
  static open(request: FastifyRequest, reply: FastifyReply, options: SseOptions): SseStream {
    const s = new SseStream(reply, options);
    reply.hijack();
    if (options.clientSignal.aborted) {
      s.close('client-closed');
      return s;
    }
    options.clientSignal.addEventListener('abort', () => s.close('client-closed'), { once: true });
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-request-id': String(request.id),
    });
    return s;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Writes one event. Resolves true once the socket can take more (at once unless its buffer is
   * full), false if the stream is or became closed: the caller stops producing.
   */
  async send(payload: unknown): Promise<boolean> {
    if (this.closed) return false;
    if (this.reply.raw.write(`data: ${JSON.stringify(payload)}\n\n`)) return true;
    return this.waitForDrain();
  }

  /** Writes [DONE] and ends the response (the final write is flushed by Node, not awaited). */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.reply.raw.end('data: [DONE]\n\n');
  }

  private waitForDrain(): Promise<boolean> {
    const res = this.reply.raw;
    return new Promise((resolve) => {
      const settle = (drained: boolean) => {
        clearTimeout(timer);
        res.off('drain', onDrain);
        res.off('close', onClosed);
        resolve(drained && !this.closed);
      };
      const onDrain = () => settle(true);
      const onClosed = () => settle(false);
      const timer = setTimeout(() => {
        this.close('write-timeout');
        res.destroy(); // frees what Node buffered for this socket; the client sees the stream cut off
        settle(false);
      }, this.options.writeTimeoutMs);
      res.once('drain', onDrain);
      res.once('close', onClosed);
    });
  }

  private close(reason: SseCloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.options.onClose(reason);
  }
}
