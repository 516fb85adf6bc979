// Maps every error to OpenAI's error body, {"error": {"message", "type", "param", "code"}}, with the
// status from the one code table (src/engine/errors.ts). A 500 never carries a stack trace.
import type { FastifyError } from 'fastify';
import { z } from 'zod';
import { ERROR_CODES, EngineError, type ErrorCode } from '../engine/errors.ts';

export interface ErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: ErrorCode };
}

export function errorBody(code: ErrorCode, message: string, param: string | null = null): ErrorBody {
  return { error: { message, type: ERROR_CODES[code].type, param, code } };
}

/** Normalises anything thrown in a handler (or by fastify itself) to [status, body]. */
export function toHttpError(err: unknown): [number, ErrorBody] {
  if (err instanceof EngineError) return [err.status, errorBody(err.code, err.message, err.param)];
  if (err instanceof z.ZodError) {
    const issue = err.issues[0];
    const param = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
    return [400, errorBody('DSV_ERR_INVALID_REQUEST', `${param ?? 'body'}: ${issue.message}`, param)];
  }
  const fe = err as Partial<FastifyError>;
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return [413, errorBody('DSV_ERR_BODY_TOO_LARGE', 'request body is too large')];
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code: ErrorCode = fe.statusCode === 404 ? 'DSV_ERR_NOT_FOUND' : 'DSV_ERR_INVALID_REQUEST';
    return [fe.statusCode === 404 ? 404 : 400, errorBody(code, fe.message ?? 'bad request')];
  }
  return [500, errorBody('DSV_ERR_INTERNAL', 'internal server error')];
}
