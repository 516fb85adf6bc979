// bench/compare: interleaved rounds, judging under load, the better thread count, and the
// parsing of llama-bench's and both servers' outputs. Nothing here builds or runs llama.cpp.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { benchTests, testKey } from '../../bench/compare/bench_test.ts';
import { judgeTargets, type JudgedSpec } from '../../bench/compare/judge.ts';
import { llamaBenchArgs, parseLlamaBenchJson, PEER_CONFIGS, rowTest } from '../../bench/compare/llama_bench.ts';
import { chunkTokens, requestBody, requestMetrics, type RequestRecord } from '../../bench/compare/load_generator.ts';
import { interleavedSchedule, MIN_ROUNDS, runInterleaved } from '../../bench/compare/schedule.ts';
import { nonUtf8ByteTokenIds, requestsPerRound } from '../../bench/compare/serving.ts';
import { bestPeers, type ParticipantResult } from '../../bench/compare/single_stream.ts';
import { spread } from '../../bench/stats.ts';
import { at } from '../helpers/at.ts';

describe('interleaved rounds', () => {
  it('runs ours, peer, ours, peer, ... in a fixed order per round', () => {
    const s = interleavedSchedule(['ours', 'peerA', 'peerB'], 5);
    assert.equal(s.length, 15);
    assert.deepEqual(
      s.slice(0, 6).map((x) => `${x.round}:${x.participant}`),
      ['0:ours', '0:peerA', '0:peerB', '1:ours', '1:peerA', '1:peerB'],
    );
    assert.deepEqual(
      s.filter((x) => x.participant === 'ours').map((x) => x.round),
      [0, 1, 2, 3, 4],
    );
  });
  it('refuses fewer than the minimum rounds, no participants or duplicates', () => {
    assert.equal(MIN_ROUNDS, 5);
    assert.throws(() => interleavedSchedule(['ours', 'peer'], 4), RangeError);
    assert.throws(() => interleavedSchedule([], 5), RangeError);
    assert.throws(() => interleavedSchedule(['ours', 'ours'], 5), RangeError);
  });
  it("collects each participant's figures in round order, measured in schedule order", async () => {
    const calls: string[] = [];
    const out = await runInterleaved(interleavedSchedule(['ours', 'peer'], 5), async ({ round, participant }) => {
      calls.push(`${participant}${round}`);
      return participant === 'ours' ? round : 10 * round;
    });
    assert.deepEqual(calls, ['ours0', 'peer0', 'ours1', 'peer1', 'ours2', 'peer2', 'ours3', 'peer3', 'ours4', 'peer4']);
    assert.deepEqual(out.get('ours'), [0, 1, 2, 3, 4]);
    assert.deepEqual(out.get('peer'), [0, 10, 20, 30, 40]);
  });
});

describe('judging targets', () => {
  const spec = (value: number, shapeMismatch: string | null = null): JudgedSpec => ({ id: 'x', name: 'x', value, direction: '>=', target: 1.2, shapeMismatch });
  it("a quiet run of the target's shape judges", () => {
    const [met, missed] = judgeTargets([spec(1.5), spec(0.6)], { loaded: false, reasons: [] });
    assert.ok(met && missed, 'one judgement per target');
    assert.equal(met.met, true);
    assert.equal(missed.met, false);
  });
  it('a loaded run marks nothing met, even a ratio above the target', () => {
    const [r] = judgeTargets([spec(3.0)], { loaded: true, reasons: ['load average 8 before the start'] });
    assert.ok(r, 'one judgement per target');
    assert.equal(r.met, null);
    assert.match(r.verdict, /not judged \(loaded run\): measured 3\.00/);
    assert.equal(r.value, 3.0);
  });
  it('a run of another shape marks nothing met either; an unmeasured target stays unmeasured', () => {
    const [r, none] = judgeTargets([spec(3.0, 'quick run: 64/32-token requests'), { ...spec(1), value: null }], { loaded: false, reasons: [] });
    assert.ok(r && none, 'one judgement per target');
    assert.equal(r.met, null);
    assert.match(r.verdict, /quick run/);
    assert.equal(none.verdict, 'not measured');
  });
});

describe('llama-bench', () => {
  const row = (n_prompt: number, n_gen: number, n_depth: number, samples: number[]) => ({
    build_commit: '80fb11a',
    n_threads: 2,
    type_k: 'f16',
    type_v: 'f16',
    flash_attn: -1,
    n_prompt,
    n_gen,
    n_depth,
    avg_ts: 1,
    samples_ts: samples,
    model_type: 'x',
  });
  it('parses its JSON output into pp/tg tests with their samples', () => {
    const rows = parseLlamaBenchJson(JSON.stringify([row(512, 0, 0, [1000, 1010]), row(0, 128, 4096, [90, 91])]));
    assert.deepEqual(rows.map(rowTest), [
      { kind: 'pp', tokens: 512, depth: 0 },
      { kind: 'tg', tokens: 128, depth: 4096 },
    ]);
    assert.deepEqual(at(rows, 1).samples_ts, [90, 91]);
    assert.throws(() => rowTest({ ...at(rows, 0), n_gen: 16 }), /mixes/);
    assert.throws(() => parseLlamaBenchJson('not json'), /no JSON/);
    assert.throws(() => parseLlamaBenchJson('[]'), /expected shape/);
    assert.throws(() => parseLlamaBenchJson(JSON.stringify([{ ...row(512, 0, 0, [1]), samples_ts: [] }])), /expected shape/);
  });
  it('names tests as llama-bench does and builds its command line per configuration', () => {
    assert.deepEqual(benchTests(512, 128, [0, 4096]).map(testKey), ['pp512', 'tg128', 'pp512 @ d4096', 'tg128 @ d4096']);
    assert.deepEqual(benchTests(0, 32, [0]).map(testKey), ['tg32']);
    const f32 = PEER_CONFIGS.find((c) => c.id === 'f32');
    assert.ok(f32);
    const args = llamaBenchArgs('m.gguf', 512, 32, [0], 1, 5, f32);
    assert.deepEqual(args, [
      '-m',
      'm.gguf',
      '-p',
      '512',
      '-n',
      '32',
      '-d',
      '0',
      '-t',
      '1',
      '-r',
      '5',
      '-o',
      'json',
      '-ctk',
      'f32',
      '-ctv',
      'f32',
      '-fa',
      'off',
    ]);
    const def = PEER_CONFIGS.find((c) => c.id === 'default');
    assert.deepEqual(def?.benchArgs, []); // its defaults: f16 cache, flash attention auto
  });
  it('picks the better thread count per configuration and takes ours / it per round', () => {
    const p = (id: string, configId: string | null, threads: number, rounds: number[]): ParticipantResult => ({
      id,
      label: id,
      threads,
      configId,
      tests: { tg32: { test: { kind: 'tg', tokens: 32, depth: 0 }, rounds, spread: spread(rounds), samples: rounds.map((r) => [r]) } },
    });
    const best = bestPeers([
      p('ours', null, 2, [100, 100, 100, 100, 100]),
      p('default-t1', 'default', 1, [90, 90, 90, 90, 90]),
      p('default-t2', 'default', 2, [120, 130, 125, 125, 125]),
      p('f32-t1', 'f32', 1, [80, 80, 80, 80, 80]),
      p('f32-t2', 'f32', 2, [50, 50, 50, 50, 50]),
    ]);
    assert.deepEqual(
      best.map((b) => `${b.configId}:${b.threads}`),
      ['default:2', 'f32:1'],
    );
    assert.equal(at(best, 0).ratio.median, 0.8);
    assert.equal(at(best, 1).ratio.median, 1.25);
  });
});

describe('load generator', () => {
  it('counts tokens per SSE chunk on both servers', () => {
    assert.equal(chunkTokens({ choices: [{ text: 'ab', finish_reason: null }] }, 0), 1); // llama-server: a chunk per token
    assert.equal(chunkTokens({ choices: [{ text: '', finish_reason: 'length' }], usage: { completion_tokens: 9 } }, 8), 0); // its final chunk, after a merge
    assert.equal(chunkTokens({ choices: [{ text: '', finish_reason: 'length' }] }, 9), 0);
    assert.equal(chunkTokens({ choices: [{ text: 'ab' }], tokens: [5, 6] }, 0), 2); // a server listing the token ids
    assert.equal(chunkTokens({ choices: [{ text: 'a' }], usage: { completion_tokens: 8 } }, 7), 1); // ours, continuous usage
    assert.equal(chunkTokens({ choices: [{ text: '' }], usage: { completion_tokens: 8 } }, 8), 0); // ours' finish chunk
    assert.equal(chunkTokens({ choices: [], usage: { completion_tokens: 8 } }, 8), 0); // the usage-only chunk
    assert.equal(chunkTokens({ choices: [{ text: 'a' }] }, 3), 1);
  });
  it('sends one body to both servers: greedy, forced length, the non-UTF-8 byte tokens banned', () => {
    const banned = nonUtf8ByteTokenIds(32000, [0, 1]);
    assert.equal(banned.length, 128);
    assert.deepEqual([banned[0], banned[127]], [2 + 0x80, 2 + 0xff]); // ids 0 and 1 are bos/eos, then bytes 0x00-0xff
    const body = requestBody('m', [5, 6], { outputTokens: 8, bannedTokenIds: banned });
    assert.equal(body.max_tokens, 8);
    assert.equal(body.ignore_eos, true);
    assert.equal(body.temperature, 0);
    assert.equal(body.stream, true);
    const bias = body.logit_bias as Record<string, number>;
    assert.equal(Object.keys(bias).length, 128);
    assert.equal(bias['130'], -100);
    assert.equal(requestBody('m', [5], { outputTokens: 8, bannedTokenIds: [] }).logit_bias, undefined);
  });
  it('derives TTFT, ITL and output tok/s from arrival times', () => {
    const r = (start: number, times: number[]): RequestRecord => ({
      start,
      chunks: times.map((t) => ({ t, tokens: 1 })),
      end: at(times, -1),
      outputTokens: times.length,
    });
    const m = requestMetrics([r(0, [100, 110, 130]), r(50, [200, 205, 250])]);
    assert.deepEqual(m.ttftMs, [100, 150]);
    assert.deepEqual(m.itlMs, [10, 20, 5, 45]);
    assert.equal(m.outputTokensPerSecond, 6 / 0.25);
    assert.equal(m.tokensPerChunk, 1);
  });
  it('sends enough requests per round for >= 100 per point and >= 2c per round', () => {
    const plan = { concurrency: [1, 16], promptTokens: 64, outputTokens: 32, minRequests: 100, rounds: 5, bannedTokenIds: [] };
    assert.equal(requestsPerRound(plan, 1), 20);
    assert.equal(requestsPerRound(plan, 16), 32);
    assert.equal(requestsPerRound({ ...plan, rounds: 6 }, 1) * 6 >= 100, true);
  });
});
