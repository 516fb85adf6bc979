// Online serving load on our server alone (`npm run bench`), benchmark_serving-style: per level a fixed
// number of requests, at most `concurrency` in flight (closed loop), distinct random token-id prompts (no
// prefix-cache hits), a fixed output length with ignore_eos, streamed. The requests, their timing and the
// closed loop are the comparison's load generator (compare/load_generator.ts), so both benches measure
// the same way; this file only adds the per-level summary. The comparison with llama-server under the same
// load is compare/serving.ts (`npm run bench:peer`).
import { closedLoop, requestMetrics, streamRequest, type RequestRecord, type ServerTarget } from './compare/load_generator.ts';
import { servingPrompt } from './compare/serving.ts';
import { startOurServer } from './our_server.ts';
import { summarize, type LatencySummary } from './stats.ts';

export interface LoadSpec {
  readonly concurrency: number;
  readonly numRequests: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
}

export interface ServingLevelResult extends LoadSpec {
  readonly seconds: number;
  readonly totalOutputTokens: number;
  readonly outputTokensPerSecond: number;
  readonly requestsPerSecond: number;
  /** First chunk - request start. */
  readonly ttftMs: LatencySummary;
  /** Gaps between chunks. */
  readonly itlMs: LatencySummary;
  /** Mean (request time - TTFT) / (output tokens - 1). */
  readonly tpotMs: number;
  /** Mean output tokens per streamed chunk (1 = one event per token). */
  readonly tokensPerChunk: number;
}

/** One level's figures from its request records (output tok/s over the level's wall time). */
export function summarizeLevel(spec: LoadSpec, records: readonly RequestRecord[]): ServingLevelResult {
  const m = requestMetrics(records);
  const seconds = (Math.max(...records.map((r) => r.end)) - Math.min(...records.map((r) => r.start))) / 1000;
  const totalOutputTokens = records.reduce((s, r) => s + r.outputTokens, 0);
  const tpot = records.flatMap((r) => {
    const [first] = r.chunks;
    return first !== undefined && r.outputTokens > 1 ? [(r.end - first.t) / (r.outputTokens - 1)] : [];
  });
  return {
    ...spec,
    seconds,
    totalOutputTokens,
    outputTokensPerSecond: m.outputTokensPerSecond,
    requestsPerSecond: records.length / seconds,
    ttftMs: summarize(m.ttftMs),
    itlMs: summarize(m.itlMs),
    tpotMs: tpot.length > 0 ? tpot.reduce((a, b) => a + b, 0) / tpot.length : Number.NaN,
    tokensPerChunk: m.tokensPerChunk,
  };
}

export interface OursServingOptions {
  readonly levels: readonly LoadSpec[];
  readonly vocab: number;
  readonly serverFlags: readonly string[];
  readonly log?: (s: string) => void;
}

export async function oursServing(
  modelDir: string,
  opts: OursServingOptions,
): Promise<{ startupMs: number; command: string; flags: readonly string[]; levels: ServingLevelResult[] }> {
  const log = opts.log ?? ((): void => {});
  const server = await startOurServer(modelDir, opts.serverFlags);
  log(`    our server ready in ${(server.startupMs / 1000).toFixed(2)} s (${server.command})`);
  try {
    const target: ServerTarget = { id: 'ours', url: server.url, model: server.servedModelName };
    await streamRequest(target, servingPrompt(999_999, 16, opts.vocab), { outputTokens: 4, bannedTokenIds: [] }); // warm-up (graphs, JIT)
    const levels: ServingLevelResult[] = [];
    for (const spec of opts.levels) {
      const shape = { outputTokens: spec.outputTokens, bannedTokenIds: [] };
      const records = await closedLoop(spec.concurrency, spec.numRequests, (i) =>
        streamRequest(target, servingPrompt(i + spec.concurrency * 1000, spec.promptTokens, opts.vocab), shape),
      );
      const r = summarizeLevel(spec, records);
      log(
        `    ours c=${spec.concurrency}: ${r.outputTokensPerSecond.toFixed(1)} output tok/s, TTFT p50 ${r.ttftMs.p50.toFixed(0)} ms, ITL p50/p99 ${r.itlMs.p50.toFixed(1)}/${r.itlMs.p99.toFixed(1)} ms`,
      );
      levels.push(r);
    }
    return { startupMs: server.startupMs, command: server.command, flags: server.flags, levels };
  } finally {
    await server.stop();
  }
}
