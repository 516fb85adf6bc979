// Serving, ours vs llama-server, both separate processes up at the same time, driven by ONE load generator
// (load_generator.ts) in interleaved rounds: for each concurrency c, every round sends a batch of requests
// to each server in turn (ours, then each llama-server configuration), closed loop with c in flight. A
// round's output tok/s is its batch's tokens over its wall time; the reported figure is the median over
// rounds with its range, and ours / peer is taken within each round. TTFT and ITL percentiles pool every
// request of every round (>= `minRequests` per point, so p99 rests on enough requests).
import { spread, percentile, roundRatios, type Spread } from '../stats.ts';
import { byteLevelAlphabet, syntheticVocab } from '../gguf/convert_deepseek.ts';
import { closedLoop, requestMetrics, streamRequest, type RequestRecord, type RequestShape, type ServerTarget } from './load_generator.ts';
import { interleavedSchedule, runInterleaved } from './schedule.ts';

export interface ServingPlan {
  readonly concurrency: readonly number[];
  readonly promptTokens: number;
  readonly outputTokens: number;
  readonly minRequests: number;
  readonly rounds: number;
  /** Token ids both servers are asked never to emit (load_generator.ts says why). */
  readonly bannedTokenIds: readonly number[];
}

export interface Percentiles {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
}

export interface ServingPointResult {
  readonly serverId: string;
  readonly concurrency: number;
  readonly requests: number;
  readonly outputTokensPerSecond: Spread;
  readonly ttftMs: Percentiles;
  readonly itlMs: Percentiles;
  readonly tokensPerChunk: number;
  /** ours / this server per round (absent for ours itself). */
  readonly oursRatio: Spread | null;
}

/** Requests per server per round: enough for `minRequests` over all rounds, and at least 2c so the batch keeps c in flight for a while. */
export function requestsPerRound(plan: ServingPlan, concurrency: number): number {
  return Math.max(Math.ceil(plan.minRequests / plan.rounds), 2 * concurrency);
}

function percentiles(values: readonly number[]): Percentiles {
  return { n: values.length, p50: percentile(values, 50), p99: percentile(values, 99) };
}

/** Ids of the bench vocabulary's byte tokens 0x80-0xFF (bench/gguf's synthetic vocabulary): alone they are not valid UTF-8. */
export function nonUtf8ByteTokenIds(vocabSize: number, specialIds: readonly number[]): number[] {
  const { tokens } = syntheticVocab(vocabSize, specialIds);
  const high = new Set(byteLevelAlphabet().slice(0x80));
  return tokens.flatMap((t, id) => (high.has(t) ? [id] : []));
}

/** Synthetic prompt of request `i`: distinct per request (no prefix-cache hits on either server), ids in [2, vocab). */
export function servingPrompt(i: number, length: number, vocab: number): number[] {
  return Array.from({ length }, (_, k) => ((i * 7907 + k * 104729 + 13) % (vocab - 2)) + 2);
}

export async function compareServing(
  servers: readonly ServerTarget[],
  plan: ServingPlan,
  vocab: number,
  log: (s: string) => void,
): Promise<ServingPointResult[]> {
  const out: ServingPointResult[] = [];
  const shape: RequestShape = { outputTokens: plan.outputTokens, bannedTokenIds: plan.bannedTokenIds };
  for (const c of plan.concurrency) {
    const perRound = requestsPerRound(plan, c);
    for (const s of servers) await closedLoop(c, Math.min(c, 4), (i) => streamRequest(s, servingPrompt(900_000 + i, plan.promptTokens, vocab), shape)); // warm-up
    const results = await runInterleaved(interleavedSchedule(servers, plan.rounds), async ({ round, participant }) => {
      const base = (c * 1000 + round) * 10_000; // the same prompts for every server in a round
      const records = await closedLoop(c, perRound, (i) => streamRequest(participant, servingPrompt(base + i, plan.promptTokens, vocab), shape));
      const m = requestMetrics(records);
      log(
        `    c=${c} round ${round + 1}/${plan.rounds} ${participant.id}: ${m.outputTokensPerSecond.toFixed(1)} tok/s, TTFT p50 ${percentile(m.ttftMs, 50).toFixed(0)} ms, ITL p50 ${percentile(m.itlMs, 50).toFixed(1)} ms`,
      );
      return records;
    });
    const roundTput = (id: string): number[] =>
      (results.get(servers.find((s) => s.id === id) as ServerTarget) ?? []).map((r) => requestMetrics(r).outputTokensPerSecond);
    const [ours] = servers;
    if (!ours) throw new Error('compareServing: no servers');
    const oursTput = roundTput(ours.id);
    for (const s of servers) {
      const rounds: readonly RequestRecord[][] = results.get(s) ?? [];
      const all = rounds.flat();
      const m = requestMetrics(all);
      const tput = roundTput(s.id);
      out.push({
        serverId: s.id,
        concurrency: c,
        requests: all.length,
        outputTokensPerSecond: spread(tput),
        ttftMs: percentiles(m.ttftMs),
        itlMs: percentiles(m.itlMs),
        tokensPerChunk: m.tokensPerChunk,
        oursRatio: s === ours ? null : spread(roundRatios(oursTput, tput)),
      });
    }
  }
  return out;
}
