// Per-request limits checked on the HTTP side before a request reaches the engine, so a request
// that can never be served gets a 400 naming the limit (not a 429 that invites retries, and not an
// error about a value the client never sent).
import { EngineError } from '../common/errors.ts';

export interface ServerLimits {
  /** --max-queued-requests: every choice of one request waits in the queue at once. */
  readonly maxQueuedRequests: number;
  /** --max-queued-tokens: prompt tokens waiting at once (each choice counts its prompt). */
  readonly maxQueuedTokens: number;
  /** --max-model-len as configured (or the checkpoint's). */
  readonly configuredMaxModelLen: number;
  /** Tokens the KV cache holds: numKvBlocks x blockSize. */
  readonly kvCapacityTokens: number;
}

/** The longest sequence this server can hold: max-model-len, or less when the KV cache is smaller. */
export function servableModelLen(limits: ServerLimits): number {
  return Math.min(limits.configuredMaxModelLen, limits.kvCapacityTokens);
}

/** The start-up warning when the KV cache cannot hold one max-model-len sequence; null when it can. */
export function kvCapacityWarning(maxModelLen: number, kvCapacityTokens: number): string | null {
  if (kvCapacityTokens >= maxModelLen) return null;
  return `the KV cache holds ${kvCapacityTokens} tokens, fewer than --max-model-len ${maxModelLen}: sequences are limited to ${kvCapacityTokens} tokens (raise --kv-cache-memory / --num-kv-blocks or lower --max-model-len)`;
}

/**
 * Refuses (400) a request whose n x prompts choices could never all wait in the queue together,
 * as the engine would refuse the last of them with 429 on an idle server too.
 */
export function checkAdmissible(limits: ServerLimits, prompts: readonly (readonly number[])[], n: number): void {
  const numChoices = prompts.length * n;
  if (numChoices > limits.maxQueuedRequests) {
    throw new EngineError(
      'DSV_ERR_INVALID_REQUEST',
      `this request asks for ${numChoices} choices (${prompts.length} prompt(s) x n ${n}), more than --max-queued-requests ${limits.maxQueuedRequests} can ever hold at once: send fewer prompts or a smaller n`,
      { param: 'n' },
    );
  }
  const numTokens = n * prompts.reduce((sum, p) => sum + p.length, 0);
  if (numTokens > limits.maxQueuedTokens) {
    throw new EngineError(
      'DSV_ERR_INVALID_REQUEST',
      `this request queues ${numTokens} prompt tokens over its ${numChoices} choice(s), more than --max-queued-tokens ${limits.maxQueuedTokens} can ever hold at once: send shorter or fewer prompts or a smaller n`,
      { param: 'prompt' },
    );
  }
}

/**
 * max_tokens for a request that did not send one: what fits after its longest prompt (at most
 * `cap`, OpenAI's 16 for completions). `param` names the field at fault (messages for chat). A prompt that leaves no room is a 400 about the prompt.
 */
export function defaultMaxTokens(limits: ServerLimits, prompts: readonly (readonly number[])[], options: { cap?: number; param?: string } = {}): number {
  const maxLen = servableModelLen(limits);
  let longest = 0;
  let promptLen = 0;
  for (const [i, p] of prompts.entries()) if (p.length > promptLen) [longest, promptLen] = [i, p.length];
  if (promptLen >= maxLen) {
    const which = prompts.length > 1 ? `prompt ${longest}` : 'the prompt';
    const kv = limits.kvCapacityTokens < limits.configuredMaxModelLen ? `, limited by the KV cache of ${limits.kvCapacityTokens} tokens` : '';
    throw new EngineError(
      'DSV_ERR_CONTEXT_LENGTH',
      `${which} has ${promptLen} tokens; this server holds at most ${maxLen} tokens per sequence (max-model-len ${limits.configuredMaxModelLen}${kv}), which leaves no room for output`,
      { param: options.param ?? 'prompt' },
    );
  }
  return Math.min(options.cap ?? Infinity, maxLen - promptLen);
}
