// Server-sent events exactly as OpenAI/vLLM frame them: `data: {json}\n\n` chunks, then
// `data: [DONE]\n\n`. Writes go straight to the socket (the reply is hijacked from fastify).
import type { FastifyReply, FastifyRequest } from 'fastify';

export class SseStream {
  private closed = false;

  private constructor(private readonly reply: FastifyReply) {}

  /** Starts the event stream; `onClose` runs if the client disconnects before end(). */
  static open(request: FastifyRequest, reply: FastifyReply, onClose: () => void): SseStream {
    const s = new SseStream(reply);
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': String(request.id),
    });
    reply.raw.on('close', () => {
      if (!s.closed) {
        s.closed = true;
        onClose();
      }
    });
    return s;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(payload: unknown): void {
    if (!this.closed) this.reply.raw.write(`data: ${JSON.stringify(payload)}\n\n`);
  }

  /** An error after the stream started goes out as a data chunk (the status line is already sent). */
  sendError(body: unknown): void {
    this.send(body);
  }

  end(): void {
    if (this.closed) return;
    this.reply.raw.write('data: [DONE]\n\n');
    this.closed = true;
    this.reply.raw.end();
  }
}
