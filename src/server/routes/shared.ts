// Small helpers shared by the generation routes.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Generation } from '../generation.ts';

export function usageBody(g: Generation): object {
  const { promptTokens, completionTokens, cachedTokens } = g.usage;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** Aborts the generation if the client disconnects before the response is sent; returns a detach. */
export function abortOnDisconnect(request: FastifyRequest, reply: FastifyReply, g: Generation): () => void {
  const onClose = () => {
    if (!reply.raw.writableEnded) g.abort();
  };
  request.raw.socket?.on('close', onClose);
  return () => request.raw.socket?.off('close', onClose);
}
