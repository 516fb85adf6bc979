// Client disconnects, bursts past the queue limit, /metrics, and SIGTERM draining of a real process.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RunningServer } from '../../src/server/serve.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { metricValue, parsePrometheus } from '../helpers/prometheus.ts';
import { startTestServer } from '../helpers/server.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LONG = { prompt: [5, 6, 7, 8], max_tokens: 400, temperature: 0, ignore_eos: true };

async function metrics(server: RunningServer) {
  return parsePrometheus(await (await fetch(`${server.address}/metrics`)).text()).samples;
}

async function waitFor(condition: () => Promise<boolean>, what: string, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('request lifecycle', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(FIXTURE_DIR, ['--max-num-seqs', '2', '--max-queued-requests', '2']);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('/metrics parses and the counters move as requests complete', async () => {
    const before = await metrics(server);
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:kv_cache_usage_perc',
      'vllm:prefix_cache_queries_total',
      'vllm:prefix_cache_hits_total',
      'vllm:num_preemptions_total',
      'vllm:time_to_first_token_seconds_count',
      'vllm:inter_token_latency_seconds_count',
      'vllm:e2e_request_latency_seconds_count',
      'vllm:request_queue_time_seconds_count',
      'vllm:request_prefill_time_seconds_count',
      'vllm:request_decode_time_seconds_count',
      'vllm:iteration_tokens_total_count',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      assert.ok(
        before.some((s) => s.name === name),
        `${name} is exported`,
      );
    }
    const res = await fetch(`${server.address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: [9, 10, 11], max_tokens: 6, temperature: 0, ignore_eos: true }),
    });
    assert.equal(res.status, 200);
    const after = await metrics(server);
    const delta = (name: string, labels = {}) => metricValue(after, name, labels) - metricValue(before, name, labels);
    assert.equal(delta('vllm:generation_tokens_total'), 6);
    assert.equal(delta('vllm:prompt_tokens_total'), 3);
    assert.equal(delta('vllm:request_success_total', { finished_reason: 'length' }), 1);
    assert.equal(delta('vllm:e2e_request_latency_seconds_count'), 1);
    assert.equal(delta('vllm:inter_token_latency_seconds_count'), 5);
    assert.ok(delta('dsv:dsa_queries_total') > 0);
    assert.ok(metricValue(after, 'vllm:num_requests_running', { model_name: 'tiny-dsv32' }) === 0);
  });

  test('a client that disconnects mid-stream is aborted and its blocks are freed', async () => {
    const controller = new AbortController();
    const res = await fetch(`${server.address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...LONG, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    assert.ok(server.ctx.engine.numInFlight >= 1);
    controller.abort();
    await waitFor(async () => server.ctx.engine.numInFlight === 0, 'the engine to drop the request');
    await waitFor(async () => metricValue(await metrics(server), 'vllm:kv_cache_usage_perc') === 0, 'kv usage back to 0');
    assert.equal(metricValue(await metrics(server), 'vllm:request_success_total', { finished_reason: 'abort' }), 1);
  });

  test('a burst past the queue limit gets 429s; everything accepted completes', async () => {
    // 200 tokens each: the first requests must still be running when the last of the burst arrive (at 20 the
    // native kernels finished some first on a fresh CI checkout, and all 10 were accepted)
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        fetch(`${server.address}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: [5 + i, 6, 7], max_tokens: 200, temperature: 0, ignore_eos: true }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error: { code: string }; usage: { completion_tokens: number } } })),
      ),
    );
    const rejected = results.filter((r) => r.status === 429);
    const ok = results.filter((r) => r.status === 200);
    assert.ok(rejected.length > 0, 'some requests were refused');
    assert.ok(ok.length >= 2, 'some were served');
    assert.equal(rejected.length + ok.length, 10);
    for (const r of rejected) assert.equal(r.body.error.code, 'DSV_ERR_QUEUE_FULL');
    for (const r of ok) assert.equal(r.body.usage.completion_tokens, 200);
  });
});

/** Starts `node src/main.ts` on a free port; resolves with the process and its address. */
async function startProcess(flags: string[]): Promise<{ child: ChildProcess; address: string; log: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--model', FIXTURE_DIR, '--port', '0', ...flags], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      log += d;
      const address = /"address":"(http:\/\/[^"]+)"/.exec(log)?.[1];
      if (address !== undefined) resolve(address);
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${log}`)));
  });
  return { child, address, log: () => log };
}

test('SIGTERM drains: readiness 503, in-flight requests finish, new ones are refused, exit 0', async () => {
  const { child, address, log } = await startProcess(['--drain-timeout', '20']);
  const inflight = fetch(`${address}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...LONG, max_tokens: 150 }),
  });
  await waitFor(
    async () => parsePrometheus(await (await fetch(`${address}/metrics`)).text()).samples.some((s) => s.name === 'vllm:num_requests_running' && s.value > 0),
    'the request to run',
  );
  child.kill('SIGTERM');
  await waitFor(async () => (await fetch(`${address}/health`)).status === 503, 'readiness 503');
  const refused = await fetch(`${address}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: [1, 2], max_tokens: 2 }),
  });
  assert.equal(refused.status, 503);
  const done = await inflight;
  assert.equal(done.status, 200);
  assert.equal(((await done.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 150);
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, log());
});

test('--drain-timeout is enforced: 20 long requests and an unread stream are aborted, the process exits soon after', async () => {
  const drainTimeout = 2;
  const { child, address, log } = await startProcess(['--drain-timeout', String(drainTimeout), '--max-num-seqs', '24']);
  const exited = once(child, 'exit');
  const long = (i: number) => ({ prompt: Array.from({ length: 40 }, (_, t) => 2 + ((t * 13 + i) % 500)), max_tokens: 450, temperature: 0, ignore_eos: true });
  const samples = async () => parsePrometheus(await (await fetch(`${address}/metrics`)).text()).samples;
  const url = new URL(address);
  const streamBody = JSON.stringify({ ...long(99), n: 16, logprobs: 20, stream: true });
  const stalled = net.connect(Number(url.port), url.hostname);
  stalled.on('error', () => {});
  stalled.write(
    `POST /v1/completions HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(streamBody)}\r\n\r\n${streamBody}`,
  );
  stalled.pause(); // holds an unread stream
  await waitFor(async () => metricValue(await samples(), 'vllm:num_requests_running') > 0, 'the stream to run');
  // 20 requests of 4 sequences each: more work than the drain can finish in its 2 s (20 single sequences of
  // 450 tokens sometimes all finished in time once the native kernels decoded them)
  const responses = Array.from({ length: 20 }, (_, i) =>
    fetch(`${address}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...long(i), n: 4 }) }).then(
      async (r) => ({
        status: r.status,
        body: (await r.json()) as { error?: { code: string } },
      }),
    ),
  );
  await waitFor(async () => metricValue(await samples(), 'vllm:num_requests_waiting') > 0, 'requests to queue up');

  const sigtermAt = Date.now();
  child.kill('SIGTERM');
  const bound = (drainTimeout + 15) * 1000;
  const timer = setTimeout(() => child.kill('SIGKILL'), bound);
  const [code, signal] = await exited;
  clearTimeout(timer);
  const seconds = (Date.now() - sigtermAt) / 1000;
  assert.equal(signal, null, `killed after ${bound / 1000} s: the drain never finished\n${log()}`);
  assert.equal(code, 0, log());
  assert.ok(seconds < drainTimeout + 4, `exited ${seconds.toFixed(1)} s after SIGTERM with --drain-timeout ${drainTimeout}`);

  const results = await Promise.all(responses);
  const aborted = results.filter((r) => r.status === 503);
  assert.ok(aborted.length > 0, 'some requests were still running at the deadline (else this test proves nothing)');
  for (const r of aborted) assert.equal(r.body.error?.code, 'DSV_ERR_DRAINING');
  assert.equal(aborted.length + results.filter((r) => r.status === 200).length, 20);
  stalled.destroy();
});

test('a listen failure after the model loaded exits non-zero at once, naming the address', async () => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const busyPort = (busy.address() as net.AddressInfo).port;
  const cases = [
    { flags: ['--port', String(busyPort)], expect: new RegExp(`127\\.0\\.0\\.1:${busyPort}.*(EADDRINUSE|in use)`) },
    { flags: ['--host', 'no-such-host.invalid'], expect: /no-such-host\.invalid.*(ENOTFOUND|EAI_AGAIN)/ },
    { flags: ['--host', '192.0.2.1'], expect: /192\.0\.2\.1.*EADDRNOTAVAIL/ },
  ];
  try {
    await Promise.all(
      cases.map(async ({ flags, expect }) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--model', FIXTURE_DIR, '--port', '0', ...flags], {
          cwd: REPO,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d) => (output += d));
        child.stderr.on('data', (d) => (output += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
        clearTimeout(timer);
        assert.equal(signal, null, `${flags.join(' ')}: hung and was killed: ${output}`);
        assert.equal(code, 1, `${flags.join(' ')}: ${output}`);
        assert.match(output, expect);
        assert.match(output, /cannot listen/);
      }),
    );
  } finally {
    busy.close();
  }
});
