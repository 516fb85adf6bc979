// Online serving load, benchmark_serving-style: a fixed number of requests, at most `concurrency` in flight
// (a closed loop: `concurrency` workers each send their next request as soon as the previous one finished),
// distinct random token-id prompts (no prefix-cache hits), a fixed output length with ignore_eos, streamed.
// Per request: TTFT = first token's arrival - request start; ITL = gaps between token arrivals.
// Aggregate output tok/s = all output tokens / (last finish - first start).
//
// Ours: a real server process (`node [--import tsx] src/main.ts` or dist/src/main.js when the build is
// current) on a free local port, POST /v1/completions with a token-id prompt, stream: true, ignore_eos,
// temperature 0, stream_options.include_usage (for the exact completion token count). Start-up time = spawn
// to the first 200 from GET /health. The load generator runs in the bench process (node fetch, one HTTP
// connection per in-flight request).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gaps, summarize, type LatencySummary } from './stats.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface RequestTiming {
  /** performance.now() at the request's start, its first token and every token (or token chunk) arrival. */
  readonly start: number;
  readonly tokenTimes: readonly number[];
  readonly end: number;
  readonly outputTokens: number;
}

export interface LoadSpec {
  readonly concurrency: number;
  readonly numRequests: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
}

export interface ServingLevelResult extends LoadSpec {
  readonly engine: 'ours' | 'llama.cpp';
  readonly seconds: number;
  readonly totalOutputTokens: number;
  readonly outputTokensPerSecond: number;
  readonly requestsPerSecond: number;
  readonly ttftMs: LatencySummary;
  readonly itlMs: LatencySummary;
  /** Mean (request time - TTFT) / (output tokens - 1). */
  readonly tpotMs: number;
  /** Mean output tokens per streamed chunk (1 = one event per token). */
  readonly tokensPerChunk: number;
}

/** Synthetic prompt of request `i` (distinct per request; ids in [2, vocab)). */
export function servingPrompt(i: number, length: number, vocab: number): number[] {
  return Array.from({ length }, (_, k) => ((i * 7907 + k * 104729 + 13) % (vocab - 2)) + 2);
}

/** Closed-loop load: `concurrency` workers pull request indices until `numRequests` were sent. */
export async function runLoad(
  spec: LoadSpec,
  engine: 'ours' | 'llama.cpp',
  send: (requestIndex: number, worker: number) => Promise<RequestTiming>,
): Promise<ServingLevelResult> {
  let next = 0;
  const timings: RequestTiming[] = [];
  const worker = async (w: number): Promise<void> => {
    while (next < spec.numRequests) {
      const i = next++;
      timings.push(await send(i, w));
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.numRequests) }, (_, w) => worker(w)));
  return summarizeLoad(spec, engine, timings);
}

export function summarizeLoad(spec: LoadSpec, engine: 'ours' | 'llama.cpp', timings: readonly RequestTiming[]): ServingLevelResult {
  const t0 = Math.min(...timings.map((t) => t.start));
  const t1 = Math.max(...timings.map((t) => t.end));
  const seconds = (t1 - t0) / 1000;
  const totalOutputTokens = timings.reduce((s, t) => s + t.outputTokens, 0);
  const ttft = timings.filter((t) => t.tokenTimes.length > 0).map((t) => t.tokenTimes[0] - t.start);
  const itl = timings.flatMap((t) => gaps(t.tokenTimes));
  const tpot = timings.filter((t) => t.outputTokens > 1 && t.tokenTimes.length > 0).map((t) => (t.end - t.tokenTimes[0]) / (t.outputTokens - 1));
  const chunks = timings.reduce((s, t) => s + t.tokenTimes.length, 0);
  return {
    ...spec,
    engine,
    seconds,
    totalOutputTokens,
    outputTokensPerSecond: totalOutputTokens / seconds,
    requestsPerSecond: timings.length / seconds,
    ttftMs: summarize(ttft),
    itlMs: summarize(itl),
    tpotMs: tpot.length ? tpot.reduce((a, b) => a + b, 0) / tpot.length : Number.NaN,
    tokensPerChunk: chunks ? totalOutputTokens / chunks : Number.NaN,
  };
}

// ---- our server ----

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function newestMtime(dir: string): number {
  let m = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return m;
}

/** How to run the server: the built dist/ when it is newer than every file under src/, else the sources through tsx. */
export function serverCommand(): { args: string[]; how: string } {
  const dist = path.join(ROOT, 'dist', 'src', 'main.js');
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestMtime(path.join(ROOT, 'src')) && newestMtime(path.join(ROOT, 'dist', 'src')) >= newestMtime(path.join(ROOT, 'src'))) {
    return { args: [dist], how: 'node dist/src/main.js (build current)' };
  }
  return { args: ['--import', 'tsx', path.join(ROOT, 'src', 'main.ts')], how: 'node --import tsx src/main.ts (dist/ missing or older than src/)' };
}

export interface OurServer {
  readonly url: string;
  readonly servedModelName: string;
  /** Process spawn to the first 200 from /health. */
  readonly startupMs: number;
  readonly command: string;
  readonly flags: readonly string[];
  stop(): Promise<void>;
}

export async function startOurServer(modelDir: string, flags: readonly string[], timeoutMs = 120_000): Promise<OurServer> {
  const port = await freePort();
  const { args, how } = serverCommand();
  const allFlags = ['--model', modelDir, '--host', '127.0.0.1', '--port', String(port), ...flags];
  const t0 = performance.now();
  const proc: ChildProcess = spawn(process.execPath, [...args, ...allFlags], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  const tail: string[] = [];
  const keep = (b: Buffer): void => {
    tail.push(...b.toString('utf8').split('\n').filter(Boolean));
    if (tail.length > 40) tail.splice(0, tail.length - 40);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  let exited: number | null = null;
  const exit = new Promise<void>((resolve) => proc.once('exit', (code) => { exited = code ?? -1; resolve(); }));
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (exited !== null) throw new Error(`our server exited (${exited}) before it was ready:\n${tail.join('\n')}`);
    if (performance.now() - t0 > timeoutMs) {
      proc.kill('SIGKILL');
      throw new Error(`our server was not ready within ${timeoutMs / 1000} s:\n${tail.join('\n')}`);
    }
    try {
      const res = await fetch(`${url}/health`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const startupMs = performance.now() - t0;
  const stop = async (): Promise<void> => {
    if (exited !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => { if (exited === null) proc.kill('SIGKILL'); }, 15_000);
    await exit;
    clearTimeout(timer);
  };
  return { url, servedModelName: path.basename(modelDir), startupMs, command: how, flags, stop };
}

/** One streamed completion; token arrival times from the SSE chunks that carry a choice. */
export async function streamCompletion(url: string, body: Record<string, unknown>): Promise<RequestTiming> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`POST /v1/completions: HTTP ${res.status} ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const times: number[] = [];
  let completionTokens: number | null = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const now = performance.now();
    buf += decoder.decode(value, { stream: true });
    for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6).trim();
        if (data === '[DONE]') continue;
        const j = JSON.parse(data) as { choices?: unknown[]; usage?: { completion_tokens: number } | null; error?: { message: string } };
        if (j.error) throw new Error(`stream error: ${j.error.message}`);
        if (j.choices && j.choices.length > 0) times.push(now);
        if (j.usage) completionTokens = j.usage.completion_tokens;
      }
    }
  }
  const end = performance.now();
  // a final chunk that only carries finish_reason is not a token
  if (completionTokens !== null && times.length > completionTokens) times.length = completionTokens;
  return { start, tokenTimes: times, end, outputTokens: completionTokens ?? times.length };
}

export interface OursServingOptions {
  readonly levels: readonly LoadSpec[];
  readonly vocab: number;
  readonly serverFlags: readonly string[];
  readonly log?: (s: string) => void;
}

export async function oursServing(modelDir: string, opts: OursServingOptions): Promise<{ startupMs: number; command: string; flags: readonly string[]; levels: ServingLevelResult[] }> {
  const log = opts.log ?? ((): void => {});
  const server = await startOurServer(modelDir, opts.serverFlags);
  log(`    our server ready in ${(server.startupMs / 1000).toFixed(2)} s (${server.command})`);
  try {
    const request = (prompt: number[], maxTokens: number) => streamCompletion(server.url, {
      model: server.servedModelName, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 0,
    });
    await request(servingPrompt(999_999, 16, opts.vocab), 4); // warm-up (graphs, JIT)
    const levels: ServingLevelResult[] = [];
    for (const spec of opts.levels) {
      const r = await runLoad(spec, 'ours', (i) => request(servingPrompt(i + spec.concurrency * 1000, spec.promptTokens, opts.vocab), spec.outputTokens));
      log(`    ours c=${spec.concurrency}: ${r.outputTokensPerSecond.toFixed(1)} output tok/s, TTFT p50 ${r.ttftMs.p50.toFixed(0)} ms, ITL p50/p99 ${r.itlMs.p50.toFixed(1)}/${r.itlMs.p99.toFixed(1)} ms`);
      levels.push(r);
    }
    return { startupMs: server.startupMs, command: server.command, flags: server.flags, levels };
  } finally {
    await server.stop();
  }
}
