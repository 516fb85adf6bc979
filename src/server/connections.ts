// Bounds on client connections, so no client can hold file descriptors until every new
// connection is reset: a count limit answered with a clear 503 before any byte is parsed, and a
// deadline for receiving each request (Node's requestTimeout/headersTimeout, answered with 408 by
// node_errors.ts).
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { refuseOnSocket } from './node_errors.ts';

/** File descriptors kept for everything but client connections (model files, worker, logs, refusals in flight). */
const RESERVED_FDS = 128;
const MAX_AUTO_CONNECTIONS = 4096;
/** Assumed soft open-file limit when /proc/self/limits cannot be read (the usual Linux default). */
const DEFAULT_OPEN_FILE_LIMIT = 1024;

/** The soft open-file limit of this process (Linux /proc/self/limits), or null when unknown. */
export function openFileLimit(limitsText: string | null = readLimits()): number | null {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limitsText ?? '');
  if (!m) return null;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

function readLimits(): string | null {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
}

/** --max-connections "auto": what the open-file limit leaves after RESERVED_FDS, at most 4096. */
export function autoMaxConnections(fileLimit: number | null = openFileLimit()): number {
  return Math.max(16, Math.min(MAX_AUTO_CONNECTIONS, (fileLimit ?? DEFAULT_OPEN_FILE_LIMIT) - RESERVED_FDS));
}

/**
 * Puts a gate in front of the HTTP server's connection handling: past `maxConnections` open
 * sockets, a new one gets a complete 503 (OpenAI error body, Retry-After, Connection: close)
 * before the HTTP parser sees it, and is closed.
 */
export function limitConnections(server: Server, maxConnections: number, log: FastifyBaseLogger): void {
  // http.Server parses a socket in its own 'connection' listener; the gate decides whether it gets to.
  const httpListeners = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  let numOpen = 0;
  let numRefused = 0;
  server.on('connection', (socket: Socket) => {
    if (numOpen >= maxConnections) {
      if (numRefused++ % 1000 === 0)
        log.warn({ max_connections: maxConnections, refused_total: numRefused }, 'connection limit reached: refusing new connections with 503');
      socket.on('error', () => {});
      refuseOnSocket(
        socket,
        'DSV_ERR_TOO_MANY_CONNECTIONS',
        `the server holds ${maxConnections} connections (--max-connections); retry shortly`,
        'Retry-After: 1\r\n',
      );
      return;
    }
    numOpen++;
    socket.once('close', () => numOpen--);
    for (const listener of httpListeners) listener.call(server, socket);
  });
}

/**
 * Node's receive deadlines, in milliseconds: requestTimeout for headers and body, headersTimeout
 * no later, and a check interval fine enough that a deadline of a few seconds is kept to within
 * a quarter of it (Node checks every 30 s by default).
 */
export function requestTimeoutOptions(
  requestTimeoutSeconds: number,
): { requestTimeout: number; headersTimeout: number; connectionsCheckingInterval: number } | null {
  if (requestTimeoutSeconds <= 0) return null;
  const ms = Math.ceil(requestTimeoutSeconds * 1000);
  return { requestTimeout: ms, headersTimeout: Math.min(60_000, ms), connectionsCheckingInterval: Math.min(5000, Math.max(100, Math.floor(ms / 4))) };
}
