// A streaming client that never reads must not make the server buffer its output: the stream
// pauses at the socket's high-water mark, and after --stream-write-timeout its engine requests
// are aborted (blocks freed) while other clients keep streaming.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { metricValue, parsePrometheus } from '../helpers/prometheus.ts';
import { parseSse, startTestServer } from '../helpers/server.ts';

const N = 64;
const MAX_TOKENS = 500;
// Measured without backpressure (the previous SSE writer): 21.6 MB buffered in user space for
// this request (n 64 x 400 tokens, logprobs 20) on this fixture. With it: below 0.1 MB.
const MAX_BUFFERED_BYTES = 1e6;

async function metric(server: RunningServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(parsePrometheus(await (await fetch(`${server.address}/metrics`)).text()).samples, name, labels);
}

/** Sends a streamed completion on a raw socket and never reads the response. */
function openStalledStream(server: RunningServer, body: object): net.Socket {
  const url = new URL(server.address);
  const json = JSON.stringify(body);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.write(
    `POST /v1/completions HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
  );
  socket.pause();
  return socket;
}

describe('SSE backpressure', () => {
  let server: RunningServer;
  const serverSockets = new Set<net.Socket>();
  before(async () => {
    server = await startTestServer(FIXTURE_DIR, ['--num-kv-blocks', '2048', '--max-num-seqs', '80', '--stream-write-timeout', '1']);
    server.app.server.on('connection', (s: net.Socket) => {
      serverSockets.add(s);
      s.on('close', () => serverSockets.delete(s));
    });
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('a client that never reads n=64 logprob streams is paused, then aborted; another client streams on', async () => {
    const abortedBefore = await metric(server, 'vllm:request_success_total', { finished_reason: 'abort' });
    const stalled = openStalledStream(server, {
      prompt: [5, 6, 7, 8],
      n: N,
      max_tokens: MAX_TOKENS,
      logprobs: 20,
      temperature: 1,
      seed: 3,
      ignore_eos: true,
      stream: true,
    });
    let maxBuffered = 0;
    const sampler = setInterval(() => {
      let buffered = 0;
      for (const s of serverSockets) buffered += s.writableLength;
      maxBuffered = Math.max(maxBuffered, buffered);
    }, 20);

    const reader = fetch(`${server.address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: [9, 10, 11], max_tokens: 40, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
    }).then(async (res) => parseSse(await res.text()).events);

    const deadline = Date.now() + 30_000;
    while (server.ctx.engine.numInFlight < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    while (server.ctx.engine.numInFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    clearInterval(sampler);
    assert.ok(maxBuffered < MAX_BUFFERED_BYTES, `server buffered ${maxBuffered} bytes for a client that reads nothing`);
    assert.equal(server.ctx.engine.numInFlight, 0);
    assert.equal(
      (await metric(server, 'vllm:request_success_total', { finished_reason: 'abort' })) - abortedBefore,
      N,
      'every choice of the stalled request was aborted',
    );
    assert.equal(await metric(server, 'vllm:kv_cache_usage_perc'), 0);

    const events = await reader;
    assert.equal(events.at(-1), '[DONE]');
    assert.equal((events.at(-2) as { usage: { completion_tokens: number } }).usage.completion_tokens, 40);

    // What the stalled client finds once it reads: the stream cut off, without [DONE].
    let received = '';
    stalled.on('data', (d: Buffer) => (received += d.toString('latin1')));
    stalled.on('error', () => {}); // a reset is as good as an end here
    const closed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
    stalled.resume();
    await closed;
    assert.match(received, /^HTTP\/1\.1 200/);
    assert.ok(!received.includes('data: [DONE]'));
  });
});
