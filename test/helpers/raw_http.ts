// Raw-socket HTTP for tests of what Node answers before fastify routes a request.
import assert from 'node:assert/strict';
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes raw bytes to the server and parses the first HTTP response that comes back. */
export function rawRequest(address: string, data: string | Buffer, waitMs = 3000): Promise<RawResponse> {
  const url = new URL(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname);
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const [head = '', ...rest] = received.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? NaN);
      if (Number.isNaN(status)) reject(new Error(`no HTTP response: ${JSON.stringify(received.slice(0, 200))}`));
      const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      resolve({ status, headers, body: rest.join('\r\n\r\n') });
    };
    const timer = setTimeout(done, waitMs);
    socket.on('data', (d) => (received += d));
    socket.on('close', done);
    socket.on('error', () => {});
    socket.write(data);
  });
}

export function assertOpenAiError(res: { status: number; body: string }, status: number, code: string, message?: RegExp): void {
  assert.equal(res.status, status, res.body);
  const body = JSON.parse(res.body) as { error: Record<string, unknown> };
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'], res.body);
  assert.equal(body.error.code, code, res.body);
  if (message) assert.match(String(body.error.message), message);
}
