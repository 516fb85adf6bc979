// Connections cannot be hoarded: a request that does not arrive within --request-timeout gets a
// 408 and its connection is closed; past --max-connections a new connection gets a clear 503 and
// is closed; a 401 closes its connection. The server keeps serving throughout.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { autoMaxConnections, openFileLimit, requestTimeoutOptions } from '../../src/server/connections.ts';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { assertOpenAiError, rawRequest } from '../helpers/raw_http.ts';
import { startTestServer } from '../helpers/server.ts';

const REQUEST_TIMEOUT_S = 2;
const MAX_CONNECTIONS = 20;
const API_KEY = 'test-key';

interface Trickler {
  readonly socket: net.Socket;
  received: string;
  closedAt: number | null;
}

/** A connection that sends a request's headers, then one body byte every 100 ms, forever. */
function trickle(address: string, path = '/v1/completions'): Promise<Trickler> {
  const url = new URL(address);
  return new Promise((resolve) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"prompt": "`,
      );
      const timer = setInterval(() => socket.writable && socket.write('a'), 100);
      socket.on('close', () => {
        clearInterval(timer);
        t.closedAt = performance.now();
      });
      resolve(t);
    });
    const t: Trickler = { socket, received: '', closedAt: null };
    socket.on('data', (d) => (t.received += d));
    socket.on('error', () => {});
  });
}

async function healthWithin(server: RunningServer, ms: number): Promise<void> {
  const t0 = performance.now();
  const res = await fetch(`${server.address}/health`, { headers: { connection: 'close' } });
  assert.equal(res.status, 200);
  assert.ok(performance.now() - t0 < ms, `/health took ${(performance.now() - t0).toFixed(0)} ms`);
}

async function waitUntil(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('connection limits', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(FIXTURE_DIR, [
      '--request-timeout',
      String(REQUEST_TIMEOUT_S),
      '--max-connections',
      String(MAX_CONNECTIONS),
      '--api-key',
      API_KEY,
    ]);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('connections trickling their body are cut with a 408 after --request-timeout', async () => {
    const t0 = performance.now();
    const tricklers = await Promise.all(Array.from({ length: 10 }, () => trickle(server.address)));
    await healthWithin(server, 1000);
    await waitUntil(() => tricklers.every((t) => t.closedAt !== null), (REQUEST_TIMEOUT_S + 3) * 1000, 'the server to close every trickling connection');
    for (const t of tricklers) {
      const elapsed = (t.closedAt! - t0) / 1000;
      assert.ok(elapsed >= REQUEST_TIMEOUT_S - 0.1 && elapsed < REQUEST_TIMEOUT_S + 2, `closed after ${elapsed.toFixed(2)} s`);
      const [head = '', body = ''] = t.received.split('\r\n\r\n');
      assertOpenAiError({ status: Number(head.slice(9, 12)), body }, 408, 'DSV_ERR_REQUEST_TIMEOUT', /--request-timeout/);
    }
    await healthWithin(server, 1000);
  });

  test('past --max-connections a new connection gets a clear 503 and is closed; the server keeps serving', async () => {
    const held: net.Socket[] = [];
    const url = new URL(server.address);
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) {
        const s = net.connect(Number(url.port), url.hostname);
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        held.push(s);
      }
      const refused = await rawRequest(server.address, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      assertOpenAiError(refused, 503, 'DSV_ERR_TOO_MANY_CONNECTIONS', new RegExp(`${MAX_CONNECTIONS} connections.*--max-connections`));
      assert.equal(refused.headers.connection, 'close');
      assert.ok(Number(refused.headers['retry-after']) >= 1);
    } finally {
      for (const s of held) s.destroy();
    }
    // Once they are gone, new connections are served again.
    await new Promise((r) => setTimeout(r, 100));
    await healthWithin(server, 1000);
    const ok = await fetch(`${server.address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ prompt: [5, 6], max_tokens: 2 }),
    });
    assert.equal(ok.status, 200);
  });

  test('a 401 closes its connection', async () => {
    const t0 = performance.now();
    const res = await rawRequest(
      server.address,
      'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
      5000,
    );
    assertOpenAiError(res, 401, 'DSV_ERR_UNAUTHORIZED');
    assert.equal(res.headers.connection, 'close');
    assert.ok(performance.now() - t0 < 2000, 'the server closed the socket (the client did not wait for its own timeout)');
  });
});

test('--max-connections auto follows the open-file limit', () => {
  const limits = (soft: string) =>
    `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                1048576              files\n`;
  assert.equal(openFileLimit(limits('1024')), 1024);
  assert.equal(openFileLimit(null), null);
  assert.equal(autoMaxConnections(1024), 1024 - 128);
  assert.equal(autoMaxConnections(1048576), 4096);
  assert.equal(autoMaxConnections(null), 1024 - 128, 'unknown: the usual 1024');
  assert.equal(autoMaxConnections(100), 16);
});

test('--request-timeout maps to Node deadlines checked at a quarter of it', () => {
  assert.equal(requestTimeoutOptions(0), null);
  assert.deepEqual(requestTimeoutOptions(2), { requestTimeout: 2000, headersTimeout: 2000, connectionsCheckingInterval: 500 });
  assert.deepEqual(requestTimeoutOptions(300), { requestTimeout: 300_000, headersTimeout: 60_000, connectionsCheckingInterval: 5000 });
});
