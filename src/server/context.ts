// What every route needs, built once in buildApp and passed explicitly (no globals).
import type { EngineClient } from '../engine/engine_client.ts';
import { EngineError } from '../common/errors.ts';
import { resolveSamplingParams, type SamplingParams } from '../engine/sampling/sampling_params.ts';
import { truncate } from './http_errors.ts';
import type { ServerLimits } from './limits.ts';
import type { ServerMetrics } from './metrics.ts';
import type { TextTokenizer } from './tokenizer/tokenizer.ts';

export interface ServerContext {
  readonly engine: EngineClient;
  readonly tokenizer: TextTokenizer | null;
  /** The first name is the one reported in responses. */
  readonly servedModelNames: readonly string[];
  /** The longest sequence served: --max-model-len, or less when the KV cache holds fewer tokens. */
  readonly maxModelLen: number;
  readonly maxLogprobs: number;
  readonly limits: ServerLimits;
  readonly metrics: ServerMetrics;
  /** Set on SIGTERM: health turns 503 and new requests are refused. */
  readonly state: { draining: boolean };
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

/** Request fields shared by both generation endpoints, in OpenAI/vLLM spelling. */
export interface SamplingFields {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  seed?: number;
  stop_token_ids?: number[] | null;
  n?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  logit_bias?: Record<string, number> | null;
  ignore_eos?: boolean;
  min_tokens?: number;
}

/** The engine names fields in camelCase; API clients know them in snake_case. */
function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export function toSamplingParams(ctx: ServerContext, f: SamplingFields, extra: { maxTokens: number; logprobs: number | null; promptLogprobs: number | null }): SamplingParams {
  try {
    return resolveFields(ctx, f, extra);
  } catch (err) {
    if (!(err instanceof EngineError) || err.param === null) throw err;
    const param = snakeCase(err.param);
    throw new EngineError(err.code, err.message.replace(`'${err.param}'`, `'${param}'`), { param });
  }
}

function resolveFields(ctx: ServerContext, f: SamplingFields, extra: { maxTokens: number; logprobs: number | null; promptLogprobs: number | null }): SamplingParams {
  const vocabSize = ctx.engine.info.vocabSize;
  return resolveSamplingParams(
    {
      temperature: f.temperature,
      topP: f.top_p,
      topK: f.top_k,
      minP: f.min_p,
      seed: f.seed ?? null,
      presencePenalty: f.presence_penalty,
      frequencyPenalty: f.frequency_penalty,
      repetitionPenalty: f.repetition_penalty,
      logitBias: f.logit_bias ?? null,
      maxTokens: extra.maxTokens,
      minTokens: f.min_tokens,
      stopTokenIds: f.stop_token_ids ?? [],
      ignoreEos: f.ignore_eos,
      n: f.n,
      logprobs: extra.logprobs,
      promptLogprobs: extra.promptLogprobs,
    },
    { vocabSize, maxLogprobs: ctx.maxLogprobs },
  );
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (typeof stop === 'string' ? [stop] : stop).filter((s) => s.length > 0);
}
