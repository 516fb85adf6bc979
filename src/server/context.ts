// What every route needs, built once in buildApp and passed explicitly (no globals).
import type { NonEmptyList } from '../config.ts';
import type { EngineClient } from '../engine/engine_client.ts';
import { EngineError } from '../common/errors.ts';
import { truncate } from './http_errors.ts';
import type { ServerLimits } from './limits.ts';
import type { RequestLimits } from './schemas/sampling.ts';
import type { ServerMetrics } from './metrics.ts';
import type { TextTokenizer } from './tokenizer/tokenizer.ts';

export interface ServerContext {
  readonly engine: EngineClient;
  readonly tokenizer: TextTokenizer | null;
  /** The first name is the one reported in responses. */
  readonly servedModelNames: NonEmptyList;
  /** The longest sequence served: --max-model-len, or less when the KV cache holds fewer tokens. */
  readonly maxModelLen: number;
  readonly maxLogprobs: number;
  /** How long a streamed response may wait for its client to drain the socket before it is aborted. */
  readonly streamWriteTimeoutMs: number;
  readonly limits: ServerLimits;
  readonly metrics: ServerMetrics;
  /** Set on SIGTERM: health turns 503 and new requests are refused. */
  readonly state: { draining: boolean };
  /** Aborts when the drain timeout expires: what still runs is aborted (clients get DSV_ERR_DRAINING). */
  readonly drainExpired: AbortSignal;
}

export function checkModelName(ctx: ServerContext, model: string | undefined): string {
  if (model !== undefined && !ctx.servedModelNames.includes(model)) {
    throw new EngineError('DSV_ERR_MODEL_NOT_FOUND', `The model \`${truncate(model, 128)}\` does not exist.`, { param: 'model' });
  }
  return ctx.servedModelNames[0];
}

export function checkNotDraining(ctx: ServerContext): void {
  if (ctx.state.draining) throw new EngineError('DSV_ERR_DRAINING', 'the server is shutting down; retry on another replica');
}

/** The limits requests are validated against (built once per route registration). */
export function requestLimits(ctx: ServerContext): RequestLimits {
  return { vocabSize: ctx.engine.info.vocabSize, maxLogprobs: ctx.maxLogprobs };
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (typeof stop === 'string' ? [stop] : stop).filter((s) => s.length > 0);
}
