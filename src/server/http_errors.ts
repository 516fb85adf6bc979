// Maps every error to OpenAI's error body, {"error": {"message", "type", "param", "code"}}, with the
// HTTP status from the one table below (codes are defined in src/common/errors.ts). A 500 never
// carries a stack trace.
import type { FastifyError } from 'fastify';
import { z } from 'zod';
import { EngineError, type ErrorCode } from '../common/errors.ts';

/** The one table from error code to HTTP status and OpenAI error type. */
export const HTTP_ERRORS = {
  DSV_ERR_CONFIG: { status: 500, type: 'server_error' },
  DSV_ERR_CHECKPOINT: { status: 500, type: 'server_error' },
  DSV_ERR_INVALID_REQUEST: { status: 400, type: 'invalid_request_error' },
  DSV_ERR_CONTEXT_LENGTH: { status: 400, type: 'invalid_request_error' },
  DSV_ERR_QUEUE_FULL: { status: 429, type: 'rate_limit_error' },
  DSV_ERR_OUT_OF_BLOCKS: { status: 503, type: 'server_error' },
  DSV_ERR_INTERNAL: { status: 500, type: 'server_error' },
  DSV_ERR_UNAUTHORIZED: { status: 401, type: 'authentication_error' },
  DSV_ERR_NOT_FOUND: { status: 404, type: 'not_found_error' },
  DSV_ERR_MODEL_NOT_FOUND: { status: 404, type: 'not_found_error' },
  DSV_ERR_BODY_TOO_LARGE: { status: 413, type: 'invalid_request_error' },
  DSV_ERR_NO_TOKENIZER: { status: 400, type: 'invalid_request_error' },
  DSV_ERR_DRAINING: { status: 503, type: 'server_error' },
  DSV_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, type: 'invalid_request_error' },
  DSV_ERR_HEADERS_TOO_LARGE: { status: 431, type: 'invalid_request_error' },
  DSV_ERR_REQUEST_TIMEOUT: { status: 408, type: 'invalid_request_error' },
  DSV_ERR_TOO_MANY_CONNECTIONS: { status: 503, type: 'server_error' },
} as const satisfies Record<ErrorCode, { status: number; type: string }>;

export function httpStatus(code: ErrorCode): number {
  return HTTP_ERRORS[code].status;
}

export interface ErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: ErrorCode };
}

/** Messages may quote user input (a model name, a path): never more than this much of it goes back. */
export const MAX_ERROR_MESSAGE_CHARS = 512;

export function errorBody(code: ErrorCode, message: string, param: string | null = null): ErrorBody {
  return { error: { message: truncate(message, MAX_ERROR_MESSAGE_CHARS), type: HTTP_ERRORS[code].type, param: param && truncate(param, 64), code } };
}

/** `text` cut to `max` characters, saying how much was left out. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length - max} more characters)`;
}

/** Normalises anything thrown in a handler (or by fastify itself) to [status, body]. */
export function toHttpError(err: unknown): [number, ErrorBody] {
  if (err instanceof EngineError) return [httpStatus(err.code), errorBody(err.code, err.message, err.param)];
  if (err instanceof z.ZodError) {
    const [issue] = err.issues;
    const param = issue !== undefined && issue.path.length > 0 ? issue.path.map(String).join('.') : null;
    return [400, errorBody('DSV_ERR_INVALID_REQUEST', `${param ?? 'body'}: ${issue?.message ?? 'invalid request'}`, param)];
  }
  const fe = err as Partial<FastifyError>;
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return [413, errorBody('DSV_ERR_BODY_TOO_LARGE', 'request body is too large')];
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return [415, errorBody('DSV_ERR_UNSUPPORTED_MEDIA_TYPE', 'unsupported content-type: send the body as application/json')];
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code: ErrorCode = fe.statusCode === 404 ? 'DSV_ERR_NOT_FOUND' : 'DSV_ERR_INVALID_REQUEST';
    return [fe.statusCode === 404 ? 404 : 400, errorBody(code, fe.message ?? 'bad request')];
  }
  return [500, errorBody('DSV_ERR_INTERNAL', 'internal server error')];
}
