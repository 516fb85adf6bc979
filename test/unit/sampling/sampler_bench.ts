// Per-row cost of sampleToken (not a test): node --import tsx test/unit/sampling/sampler_bench.ts
import { resolveSamplingParams, type SamplingParamsInit } from '../../../src/engine/sampling/sampling_params.ts';
import { sampleToken } from '../../../src/engine/sampling/sampler.ts';
import { SamplingState } from '../../../src/engine/sampling/sampling_state.ts';
import { randomRow } from './helpers.ts';

const NUM_ROWS = 8;

/** LM-like rows: a N(0, 1.5) body with a few strong candidates on top. */
function peakedRows(vocab: number): Float32Array[] {
  return Array.from({ length: NUM_ROWS }, (_, r) => {
    const row = randomRow(vocab, 1000 + r, 1.5);
    for (let i = 0; i < 60; i++) row[(i * 7919 + r * 104729) % vocab]! += i === 0 ? 14 : i < 6 ? 10 : 6;
    return row;
  });
}

function flatRows(vocab: number): Float32Array[] {
  return Array.from({ length: NUM_ROWS }, (_, r) => randomRow(vocab, 2000 + r, 1));
}

function timePerRow(rows: Float32Array[], init: SamplingParamsInit, withHistory = false): number {
  const params = resolveSamplingParams({ seed: 1, ...init });
  const vocab = rows[0]!.length;
  const prompt = withHistory ? Array.from({ length: 4000 }, (_, i) => (i * 7) % vocab) : [];
  const state = SamplingState.create(params, prompt, [0]);
  if (withHistory) for (let i = 0; i < 1000; i++) state.appendToken((i * 13) % vocab);
  for (let i = 0; i < 50; i++) sampleToken(rows[i % NUM_ROWS]!, params, state);
  const iterations = Math.max(100, Math.round(4e7 / vocab));
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sampleToken(rows[i % NUM_ROWS]!, params, state);
  return Number(process.hrtime.bigint() - start) / 1e3 / iterations;
}

function fullSortPerRow(rows: Float32Array[]): number {
  const ids = new Int32Array(rows[0]!.length);
  const iterations = 20;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    const row = rows[i % NUM_ROWS]!;
    for (let j = 0; j < ids.length; j++) ids[j] = j;
    ids.sort((a, b) => row[b]! - row[a]! || a - b);
  }
  return Number(process.hrtime.bigint() - start) / 1e3 / iterations;
}

const CASES: [string, SamplingParamsInit, boolean?][] = [
  ['greedy', { temperature: 0 }],
  ['greedy + logprobs 5', { temperature: 0, logprobs: 5 }],
  ['temperature 0.8 (no filter)', { temperature: 0.8 }],
  ['top-k 50', { temperature: 0.8, topK: 50 }],
  ['top-k 1000', { temperature: 0.8, topK: 1000 }],
  ['top-k 10000 (quickselect)', { temperature: 0.8, topK: 10000 }],
  ['top-p 0.9', { temperature: 0.8, topP: 0.9 }],
  ['top-p 0.95 + top-k 50', { temperature: 0.8, topP: 0.95, topK: 50 }],
  ['min-p 0.05', { temperature: 0.8, minP: 0.05 }],
  [
    'top-p 0.9 + penalties (4000 prompt, 1000 output)',
    { temperature: 0.8, topP: 0.9, repetitionPenalty: 1.1, frequencyPenalty: 0.5, presencePenalty: 0.5 },
    true,
  ],
];

for (const vocab of [32000, 129280]) {
  for (const [label, rows] of [
    ['peaked', peakedRows(vocab)],
    ['flat N(0,1)', flatRows(vocab)],
  ] as const) {
    console.log(`\nvocab ${vocab}, ${label} logits: microseconds per row`);
    for (const [name, init, history] of CASES) console.log(`  ${name.padEnd(52)} ${timePerRow(rows, init, history).toFixed(0).padStart(6)}`);
    console.log(`  ${'(reference: full comparator sort of the vocab)'.padEnd(52)} ${fullSortPerRow(rows).toFixed(0).padStart(6)}`);
  }
}
