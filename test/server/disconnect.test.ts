// Connections that end early or ask to end: a client that resets right after sending its request
// is noticed even while the engine is busy, and `Connection: close` closes a streamed response's
// socket after [DONE].
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { metricValue, parsePrometheus } from '../helpers/prometheus.ts';
import { startTestServer } from '../helpers/server.ts';

async function metric(server: RunningServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(parsePrometheus(await (await fetch(`${server.address}/metrics`)).text()).samples, name, labels);
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function rawRequest(server: RunningServer, body: object, headers: Record<string, string> = {}): net.Socket {
  const url = new URL(server.address);
  const json = JSON.stringify(body);
  const head = Object.entries({ host: url.host, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)), ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => {}); // resets are what these tests provoke
  socket.write(`POST /v1/completions HTTP/1.1\r\n${head}\r\n${json}`);
  return socket;
}

function post(server: RunningServer, body: object): Promise<Response> {
  return fetch(`${server.address}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('disconnects and Connection: close', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(FIXTURE_DIR, ['--num-kv-blocks', '512', '--max-num-batched-tokens', '1024']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('a client that resets right after sending is aborted while the engine is busy (streamed and not)', async () => {
    const aborted0 = await metric(server, 'vllm:request_success_total', { finished_reason: 'abort' });
    const length0 = await metric(server, 'vllm:request_success_total', { finished_reason: 'length' });
    const tokens0 = await metric(server, 'vllm:generation_tokens_total');
    // Busy: four long prompts whose prefill chunks fill every step.
    const busy = Array.from({ length: 4 }, (_, i) =>
      post(server, { prompt: Array.from({ length: 400 }, (_, t) => 2 + ((t * 7 + i) % 500)), max_tokens: 100, temperature: 0, ignore_eos: true }),
    );
    await waitFor(() => server.ctx.engine.numInFlight === 4, 'the busy requests to be admitted');
    for (const stream of [true, false]) {
      const socket = rawRequest(server, { prompt: [5, 6, 7, 8], max_tokens: 400, temperature: 0, ignore_eos: true, stream });
      socket.once('connect', () => setImmediate(() => socket.resetAndDestroy()));
    }
    for (const res of await Promise.all(busy)) assert.equal(res.status, 200);
    await waitFor(() => server.ctx.engine.numInFlight === 0, 'the engine to go idle');
    assert.equal((await metric(server, 'vllm:request_success_total', { finished_reason: 'length' })) - length0, 4, 'only the busy requests ran to max_tokens');
    assert.equal((await metric(server, 'vllm:request_success_total', { finished_reason: 'abort' })) - aborted0, 2, 'both reset requests were aborted');
    const generated = (await metric(server, 'vllm:generation_tokens_total')) - tokens0;
    assert.ok(generated < 4 * 100 + 400, `the reset requests generated ${generated - 400} tokens of their 800`);
    assert.equal(await metric(server, 'vllm:kv_cache_usage_perc'), 0);
  });

  test('a streamed response to `Connection: close` closes the socket right after [DONE]', async () => {
    const socket = rawRequest(server, { prompt: [5, 6, 7], max_tokens: 5, temperature: 0, ignore_eos: true, stream: true }, { connection: 'close' });
    let received = '';
    let doneAt = 0;
    socket.on('data', (d: Buffer) => {
      received += d.toString('utf8');
      if (doneAt === 0 && received.includes('data: [DONE]')) doneAt = Date.now();
    });
    const ended = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
    const closedAt = await Promise.race([ended, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000))]);
    socket.destroy();
    assert.ok(doneAt > 0, `no [DONE] in ${JSON.stringify(received.slice(0, 300))}`);
    assert.match(received, /\r\nconnection: close\r\n/i);
    assert.ok(closedAt > 0, 'the server kept the socket open after [DONE]');
    assert.ok(closedAt - doneAt < 1000, `socket closed ${closedAt - doneAt} ms after [DONE]`);
  });
});
