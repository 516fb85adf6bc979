// Errors Node's HTTP parser raises before fastify routes a request (a bad request line, headers
// over the size limit, a malformed chunked body, a request that took too long to arrive). They
// are answered on the raw socket, in the same OpenAI error shape as everything else, and the
// connection is closed: after a parse error the byte stream cannot be trusted.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import type { ErrorCode } from '../common/errors.ts';
import { errorBody, HTTP_ERRORS } from './http_errors.ts';

/** How long a refused socket may keep delivering what the client already sent before it is destroyed. */
const LINGER_MS = 1000;

/** llhttp error codes -> what the client did wrong. */
const PARSE_ERRORS: Readonly<Record<string, string>> = {
  HPE_INVALID_CHUNK_SIZE: 'malformed chunked body (invalid chunk size)',
  HPE_STRICT: 'malformed chunked body',
  HPE_INVALID_CONTENT_LENGTH: 'invalid Content-Length header',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'both Content-Length and Transfer-Encoding are set',
  HPE_INVALID_TRANSFER_ENCODING: 'invalid Transfer-Encoding header',
  HPE_INVALID_METHOD: 'malformed HTTP request (unknown method)',
  HPE_INVALID_URL: 'malformed HTTP request (invalid URL)',
  HPE_INVALID_VERSION: 'malformed HTTP request (invalid HTTP version)',
  HPE_INVALID_HEADER_TOKEN: 'malformed HTTP request (invalid header)',
};

function classify(err: NodeJS.ErrnoException): [ErrorCode, string] {
  const code = err.code ?? '';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return ['DSV_ERR_REQUEST_TIMEOUT', 'the request did not arrive within --request-timeout; the connection is closed'];
  if (code === 'HPE_HEADER_OVERFLOW') return ['DSV_ERR_HEADERS_TOO_LARGE', 'request headers exceed the 16 KiB limit'];
  return ['DSV_ERR_INVALID_REQUEST', PARSE_ERRORS[code] ?? `malformed HTTP request (${code || 'parse error'})`];
}

/** Writes `code`'s OpenAI error as a complete HTTP/1.1 response with Connection: close, then ends the socket. */
export function refuseOnSocket(socket: Socket, code: ErrorCode, message: string, extraHeaders = ''): void {
  const status = HTTP_ERRORS[code].status;
  const body = JSON.stringify(errorBody(code, message));
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extraHeaders}\r\n`;
  socket.end(head + body);
  // Reading on lets the response reach a client that is still sending; the timer bounds it.
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** fastify's clientErrorHandler: the OpenAI shape for 400/408/431 raised by Node's HTTP parser. */
export function clientErrorHandler(log: FastifyBaseLogger): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // A response already under way cannot be replaced by another one: drop the connection.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const [code, message] = classify(err);
    log.info({ code, parse_error: err.code }, message);
    refuseOnSocket(socket, code, message);
  };
}
