// Every error the engine or server reports carries a stable code from this one table.
// The HTTP status lives here too, so the server maps errors without a second table.

export const ERROR_CODES = {
  DSV_ERR_CONFIG: { status: 500, type: 'server_error' }, // bad config.json / model dir at start-up
  DSV_ERR_CHECKPOINT: { status: 500, type: 'server_error' }, // bad/missing/corrupt safetensors
  DSV_ERR_INVALID_REQUEST: { status: 400, type: 'invalid_request_error' },
  DSV_ERR_CONTEXT_LENGTH: { status: 400, type: 'invalid_request_error' },
  DSV_ERR_QUEUE_FULL: { status: 429, type: 'rate_limit_error' },
  DSV_ERR_OUT_OF_BLOCKS: { status: 503, type: 'server_error' },
  DSV_ERR_INTERNAL: { status: 500, type: 'server_error' },
  // HTTP-surface errors (src/server): same table, so every code has exactly one status.
  DSV_ERR_UNAUTHORIZED: { status: 401, type: 'authentication_error' },
  DSV_ERR_NOT_FOUND: { status: 404, type: 'not_found_error' },
  DSV_ERR_MODEL_NOT_FOUND: { status: 404, type: 'not_found_error' },
  DSV_ERR_BODY_TOO_LARGE: { status: 413, type: 'invalid_request_error' },
  DSV_ERR_NO_TOKENIZER: { status: 400, type: 'invalid_request_error' },
  DSV_ERR_DRAINING: { status: 503, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

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
  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

/** Checkpoint/config problems found at start-up: the message names the file and the key or tensor. */
export class CheckpointError extends EngineError {
  constructor(code: 'DSV_ERR_CONFIG' | 'DSV_ERR_CHECKPOINT', readonly file: string, message: string) {
    super(code, `${file}: ${message}`);
    this.name = 'CheckpointError';
  }
}

/** Invariant check: throws on a broken internal invariant (never for user input). */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new EngineError('DSV_ERR_INTERNAL', `invariant violated: ${message}`);
}
