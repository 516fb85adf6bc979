// bench/stats.ts, bench/targets.ts and bench/kv_memory.ts: the pure helpers behind the bench's numbers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kvShape, maxSequences, mhaKvBytesPerToken, oursKvBytesPerToken, tokensPerGiB } from '../../bench/kv_memory.ts';
import { benchMini, benchBase, countParams } from '../../bench/models.ts';
import { formatSpread, mean, median, percentile, roundRatios, spread, summarize } from '../../bench/stats.ts';
import { evaluateTarget, evaluateTargets, ratio } from '../../bench/targets.ts';
import { closedLoop, type RequestRecord } from '../../bench/compare/load_generator.ts';
import { servingPrompt } from '../../bench/compare/serving.ts';
import { summarizeLevel } from '../../bench/serving.ts';

describe('percentile', () => {
  it('interpolates linearly between closest ranks (numpy default)', () => {
    const v = [15, 20, 35, 40, 50];
    assert.equal(percentile(v, 0), 15);
    assert.equal(percentile(v, 100), 50);
    assert.equal(percentile(v, 50), 35);
    assert.equal(percentile(v, 40), 29); // rank 1.6: 20 + 0.6 * 15
    assert.ok(Math.abs(percentile([1, 2, 3, 4], 99) - 3.97) < 1e-12);
    assert.equal(percentile([7], 99), 7);
    assert.ok(Number.isNaN(percentile([], 50)));
    assert.throws(() => percentile([1], 101), RangeError);
  });
  it('does not reorder its input; mean, summarize', () => {
    const v = [3, 1, 2];
    percentile(v, 50);
    assert.deepEqual(v, [3, 1, 2]);
    assert.equal(mean([1, 2, 3, 6]), 3);
    assert.deepEqual(summarize([1, 2, 3]), { count: 3, mean: 2, p50: 2, p99: 2.98 });
  });
});

describe('targets', () => {
  it('evaluates >= and <= targets with the margin', () => {
    const met = evaluateTarget({ id: 'a', name: 'a', value: 1.2, direction: '>=', target: 1.0 });
    assert.equal(met.met, true);
    assert.ok(Math.abs(met.margin! - 0.2) < 1e-12);
    assert.equal(met.verdict, 'met (+20%)');
    const missed = evaluateTarget({ id: 'b', name: 'b', value: 1.2, direction: '>=', target: 1.5 });
    assert.equal(missed.met, false);
    assert.ok(Math.abs(missed.margin! + 0.2) < 1e-12);
    assert.equal(missed.verdict, 'missed by 20% (1.20 vs >= 1.5)');
    const le = evaluateTarget({ id: 'c', name: 'c', value: 0.9, direction: '<=', target: 1.0 });
    assert.equal(le.met, true);
    assert.equal(le.verdict, 'met (+10%)');
    const leMissed = evaluateTarget({ id: 'd', name: 'd', value: 1.05, direction: '<=', target: 1.0 });
    assert.equal(leMissed.met, false);
    assert.equal(leMissed.verdict, 'missed by 5.0% (1.05 vs <= 1)');
    const exact = evaluateTarget({ id: 'e', name: 'e', value: 1, direction: '<=', target: 1 });
    assert.equal(exact.met, true);
  });
  it('reports unmeasured targets and computes ratios defensively', () => {
    const [n] = evaluateTargets([{ id: 'x', name: 'x', value: null, direction: '>=', target: 1 }]);
    assert.ok(n);
    assert.equal(n.met, null);
    assert.equal(n.verdict, 'not measured');
    assert.equal(evaluateTarget({ id: 'y', name: 'y', value: Number.NaN, direction: '>=', target: 1 }).met, null);
    assert.equal(ratio(3, 2), 1.5);
    assert.equal(ratio(null, 2), null);
    assert.equal(ratio(3, 0), null);
    assert.equal(ratio(3, undefined), null);
  });
});

describe('KV memory', () => {
  it('counts latent + indexer bytes, MHA bytes and sequences per budget', () => {
    const s = kvShape(benchMini);
    assert.equal(oursKvBytesPerToken(s, true), 8 * (256 + 32 + 64) * 4);
    assert.equal(oursKvBytesPerToken(s, false), 8 * (256 + 32) * 4);
    // bench-mini DSA tokens per GiB: bfloat16 2x float32, fp8 (V3.2 layout) >= 3.5x (the capacity targets).
    const f32 = tokensPerGiB(oursKvBytesPerToken(s, true));
    assert.equal(tokensPerGiB(oursKvBytesPerToken(s, true, 'bfloat16')) / f32, 2);
    assert.equal(oursKvBytesPerToken(s, true, 'fp8'), 8 * (256 + 2 * 4 + 32 * 2 + 64 + 4));
    assert.ok(tokensPerGiB(oursKvBytesPerToken(s, true, 'fp8')) / f32 >= 3.5);
    assert.equal(mhaKvBytesPerToken(s), 8 * 8 * (64 + 32 + 64) * 4);
    assert.equal(maxSequences(2 ** 30, 11264, 4096), Math.floor(2 ** 30 / (4096 * 11264)));
    assert.equal(maxSequences(1000, 1, 100, 64), 7); // 100 tokens take 2 blocks of 64
    assert.throws(() => maxSequences(1, 0, 1), RangeError);
  });
  it('sizes bench-base at ~3 GB of F32', () => {
    const bytes = countParams(benchBase) * 4;
    assert.ok(bytes > 2.8e9 && bytes < 3.2e9, String(bytes));
  });
});

describe('serving summary', () => {
  it('aggregates output tok/s, TTFT and ITL across requests', () => {
    const record = (start: number, times: number[], end: number): RequestRecord => ({
      start,
      chunks: times.map((t) => ({ t, tokens: 1 })),
      end,
      outputTokens: times.length,
    });
    const r = summarizeLevel({ concurrency: 2, numRequests: 2, promptTokens: 4, outputTokens: 3 }, [
      record(0, [100, 110, 130], 130),
      record(0, [200, 210, 220], 250),
    ]);
    assert.equal(r.totalOutputTokens, 6);
    assert.equal(r.seconds, 0.25);
    assert.equal(r.outputTokensPerSecond, 24);
    assert.equal(r.ttftMs.p50, 150);
    assert.deepEqual([r.itlMs.count, r.itlMs.p50], [4, 10]);
    assert.equal(r.tpotMs, (15 + 25) / 2);
    assert.equal(r.tokensPerChunk, 1);
  });
});

describe('closed-loop load', () => {
  it('keeps at most `concurrency` requests in flight and sends each request once', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const seen: number[] = [];
    const workers = new Set<number>();
    const results = await closedLoop(3, 10, async (i, w) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      seen.push(i);
      workers.add(w);
      await new Promise((res) => setTimeout(res, 2 + (i % 3)));
      inFlight--;
      return i;
    });
    assert.equal(maxInFlight, 3);
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      [...Array(10).keys()],
    );
    assert.deepEqual(
      [...results].sort((a, b) => a - b),
      [...Array(10).keys()],
    );
    assert.deepEqual(
      [...workers].sort((a, b) => a - b),
      [0, 1, 2],
    );
  });
  it('makes distinct prompts in range', () => {
    const a = servingPrompt(0, 256, 32000);
    const b = servingPrompt(1, 256, 32000);
    assert.equal(a.length, 256);
    assert.notDeepEqual(a, b);
    assert.ok([...a, ...b].every((t) => t >= 2 && t < 32000));
  });
});

describe('median and spread', () => {
  it('takes the median of odd and even counts without reordering the input', () => {
    const v = [9, 1, 5];
    assert.equal(median(v), 5);
    assert.deepEqual(v, [9, 1, 5]);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });
  it('reports min, max and quartiles, and refuses empty or non-finite input', () => {
    const s = spread([10, 12, 11, 30, 9]);
    assert.deepEqual(s, { n: 5, median: 11, min: 9, max: 30, q1: 10, q3: 12 });
    assert.equal(formatSpread(s, 1), '11.0 (9.0-30.0, n 5)');
    assert.throws(() => spread([]), RangeError);
    assert.throws(() => spread([1, Number.NaN]), RangeError);
    assert.throws(() => spread([1, Infinity]), RangeError);
  });
  it('takes ratios within rounds, so a drifting machine cancels out', () => {
    // both slow down 2x in the last rounds: the per-round ratio stays 1.5; the ratio of medians would too only by luck
    const ours = [150, 150, 150, 75, 75];
    const peer = [100, 100, 100, 50, 50];
    assert.deepEqual(roundRatios(ours, peer), [1.5, 1.5, 1.5, 1.5, 1.5]);
    assert.throws(() => roundRatios([1, 2], [1]), RangeError);
  });
});
