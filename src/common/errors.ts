// Every error the engine or server reports carries a stable code. This file is the vocabulary
// every layer shares; how a code maps to an HTTP status lives in the server (src/server/http_errors.ts).

export const ERROR_CODE_LIST = [
  'DSV_ERR_CONFIG', // bad config.json / model dir / flags at start-up
  'DSV_ERR_CHECKPOINT', // bad/missing/corrupt safetensors
  'DSV_ERR_INVALID_REQUEST',
  'DSV_ERR_CONTEXT_LENGTH',
  'DSV_ERR_QUEUE_FULL',
  'DSV_ERR_OUT_OF_BLOCKS',
  'DSV_ERR_INTERNAL',
  // HTTP-surface errors (raised in src/server).
  'DSV_ERR_UNAUTHORIZED',
  'DSV_ERR_NOT_FOUND',
  'DSV_ERR_MODEL_NOT_FOUND',
  'DSV_ERR_BODY_TOO_LARGE',
  'DSV_ERR_NO_TOKENIZER',
  'DSV_ERR_DRAINING',
  'DSV_ERR_UNSUPPORTED_MEDIA_TYPE',
  'DSV_ERR_HEADERS_TOO_LARGE',
  'DSV_ERR_REQUEST_TIMEOUT',
  'DSV_ERR_TOO_MANY_CONNECTIONS',
] as const;

export type ErrorCode = (typeof ERROR_CODE_LIST)[number];

export class EngineError extends Error {
  readonly code: ErrorCode;
  /** The request field at fault, when there is one (OpenAI's error.param). */
  readonly param: string | null;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; param?: string }) {
    super(message, options);
    this.name = 'EngineError';
    this.code = code;
    this.param = options?.param ?? null;
  }
}

/** Checkpoint/config problems found at start-up: the message names the file and the key or tensor. */
export class CheckpointError extends EngineError {
  constructor(
    code: 'DSV_ERR_CONFIG' | 'DSV_ERR_CHECKPOINT',
    readonly file: string,
    message: string,
  ) {
    super(code, `${file}: ${message}`);
    this.name = 'CheckpointError';
  }
}

/** Invariant check: throws on a broken internal invariant (never for user input). */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new EngineError('DSV_ERR_INTERNAL', `invariant violated: ${message}`);
}
