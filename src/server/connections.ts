// Bounds on client connections, so no client can hold file descriptors until every new
// connection is reset: a deadline for receiving each request (Node's requestTimeout /
// headersTimeout, answered with 408 by node_errors.ts).

/**
 * Node's receive deadlines, in milliseconds: requestTimeout for headers and body, headersTimeout
 * no later, and a check interval fine enough that a deadline of a few seconds is kept to within
 * a quarter of it (Node checks every 30 s by default).
 */
export function requestTimeoutOptions(requestTimeoutSeconds: number): { requestTimeout: number; headersTimeout: number; connectionsCheckingInterval: number } | null {
  if (requestTimeoutSeconds <= 0) return null;
  const ms = Math.ceil(requestTimeoutSeconds * 1000);
  return { requestTimeout: ms, headersTimeout: Math.min(60_000, ms), connectionsCheckingInterval: Math.min(5000, Math.max(100, Math.floor(ms / 4))) };
}
