// Small helpers shared by the generation routes.
import type { FastifyRequest } from 'fastify';
import { clientSignal } from '../client_signal.ts';
import type { ServerContext } from '../context.ts';
import type { Generation, GenerationOptions } from '../generation.ts';

export function usageBody(g: Generation): object {
  const { promptTokens, completionTokens, cachedTokens } = g.usage;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** How a route's generation is observed (metrics) and stopped (client gone, drain expired). */
export function generationOptions(ctx: ServerContext, request: FastifyRequest): GenerationOptions {
  return { observer: ctx.metrics.observer(), clientSignal: clientSignal(request), shutdownSignal: ctx.drainExpired };
}
