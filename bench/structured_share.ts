// Grammar work as a share of step time at 16 concurrent constrained requests (issue 13's target:
// <= 10%), against the same batch unconstrained.
//
//   node --import tsx bench/structured_share.ts [--model DIR] [--steps N] [--rounds N]
//
// Both runs decode 16 requests through EngineCore (the serving path); only steps where all 16
// decode are counted; the two alternate for --rounds rounds and medians are reported (the machine
// is shared). "grammar" is the profiler part that fills the next-token bitmasks; applying them
// and advancing the matchers happen inside "sampling", so the sampling difference between the runs
// counts too. A separate loop times the three pieces of grammar work on the same grammar and 16
// matchers (random logits): fill (XGrammar's next-token bitmask), apply (the sampler's -inf pass),
// accept (advancing the matcher).
// Why the fill is not overlapped with the forward pass: onnxruntime-node runs a session
// synchronously on the JS thread (inside a setImmediate), so masks filled "during" the forward
// pass only move into its time; hiding them needs a second thread and a spare core.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EngineCore } from '../src/engine/engine_core.ts';
import { resolveSamplingParams } from '../src/engine/sampling/sampling_params.ts';
import type { StructuredOutputSpec } from '../src/engine/structured/grammar_spec.ts';
import type { StepStats } from '../src/engine/step_stats.ts';
import { loadAverage1 } from './machine/load.ts';
import { StructuredOutputCompiler } from '../src/engine/structured/grammar_compiler.ts';
import { applyTokenBitmask } from '../src/engine/structured/token_bitmask.ts';
import { readEncodedVocab } from '../src/engine/structured/tokenizer_vocab.ts';
import { argmax } from '../src/common/select.ts';
import { readModelConfig } from '../src/engine/checkpoint/config.ts';

const CONCURRENT = 16;
const DEFAULT_MODEL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../models/default');

/** Keeps every request inside the grammar for as long as the run lasts (an open-ended array). */
const SPEC: StructuredOutputSpec = {
  param: 'bench',
  grammar: {
    kind: 'json_schema',
    schema: JSON.stringify({
      type: 'array',
      items: { type: 'object', properties: { verse: { type: 'string' }, n: { type: 'integer' } }, required: ['verse', 'n'] },
    }),
  },
};

interface RunFigures {
  steps: number;
  stepMs: number;
  grammarMs: number;
  samplingMs: number;
}

async function run(modelDir: string, constrained: boolean, maxTokens: number): Promise<RunFigures> {
  const core = await EngineCore.create(modelDir, {
    runner: { blockSize: 64, numKvBlocks: 64 },
    scheduler: { maxNumSeqs: CONCURRENT, maxNumBatchedTokens: 2048, longPrefillTokenThreshold: 0, maxQueuedRequests: 64, maxQueuedTokens: 1 << 20 },
    enablePrefixCaching: false,
  });
  const params = resolveSamplingParams({ temperature: 0, maxTokens, ...(constrained ? {} : { ignoreEos: true }) }, { vocabSize: core.config.vocabSize });
  for (let i = 0; i < CONCURRENT; i++) {
    const init = { requestId: `r${i}`, promptTokenIds: [0, 5 + i, 100 + i, 200 + i], params };
    await core.addRequestAsync(constrained ? { ...init, structuredOutput: SPEC } : init);
  }
  const counted: StepStats[] = [];
  while (core.hasWork()) {
    const { stats } = await core.step();
    if (stats.numDecodeTokens === CONCURRENT && stats.numPrefillTokens === 0) counted.push(stats);
  }
  await core.dispose();
  const mean = (f: (s: StepStats) => number) => counted.reduce((a, s) => a + f(s), 0) / Math.max(1, counted.length);
  return { steps: counted.length, stepMs: mean((s) => s.stepMs), grammarMs: mean((s) => s.timings.grammar), samplingMs: mean((s) => s.timings.sampling) };
}

interface PartFigures {
  fillMs: number;
  applyMs: number;
  acceptMs: number;
}

/** Per step of 16 requests: the three pieces of grammar work, on random logits (steps of live matchers only). */
async function grammarParts(modelDir: string, steps: number): Promise<PartFigures> {
  const config = readModelConfig(modelDir);
  const compiler = await StructuredOutputCompiler.create(readEncodedVocab(path.join(modelDir, 'tokenizer.json'), config.vocabSize), config.eosTokenIds);
  const matchers = await Promise.all(Array.from({ length: CONCURRENT }, () => compiler.createMatcher(SPEC)));
  const row = new Float32Array(config.vocabSize);
  const sum = { fillMs: 0, applyMs: 0, acceptMs: 0 };
  let seed = 1;
  for (let step = 0; step < steps; step++) {
    for (const m of matchers) {
      if (m.isTerminated) continue;
      for (let i = 0; i < row.length; i++) row[i] = (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
      const t0 = performance.now();
      const mask = await m.nextTokenBitmask();
      const t1 = performance.now();
      applyTokenBitmask(row, mask);
      const t2 = performance.now();
      if (!m.acceptToken(argmax(row))) throw new Error('the grammar rejected a token its mask allowed');
      const t3 = performance.now();
      [sum.fillMs, sum.applyMs, sum.acceptMs] = [sum.fillMs + t1 - t0, sum.applyMs + t2 - t1, sum.acceptMs + t3 - t2];
    }
  }
  for (const m of matchers) m.dispose();
  compiler.dispose();
  return { fillMs: sum.fillMs / steps, applyMs: sum.applyMs / steps, acceptMs: sum.acceptMs / steps };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = (i: number): number => s[i] ?? Number.NaN; // NaN for an empty list
  return s.length % 2 ? mid(s.length >> 1) : (mid(s.length / 2 - 1) + mid(s.length / 2)) / 2;
}

function medianRun(runs: readonly RunFigures[]): RunFigures {
  return {
    steps: median(runs.map((r) => r.steps)),
    stepMs: median(runs.map((r) => r.stepMs)),
    grammarMs: median(runs.map((r) => r.grammarMs)),
    samplingMs: median(runs.map((r) => r.samplingMs)),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, steps: { type: 'string' }, rounds: { type: 'string' } } });
  const modelDir = values.model ?? DEFAULT_MODEL;
  const maxTokens = Number(values.steps ?? 64);
  const rounds = Number(values.rounds ?? 3);
  const load = [loadAverage1()];
  await run(modelDir, false, maxTokens); // warm-up: the first engine in a process runs slower
  const plainRuns: RunFigures[] = [];
  const grammarRuns: RunFigures[] = [];
  for (let r = 0; r < rounds; r++) {
    plainRuns.push(await run(modelDir, false, maxTokens));
    grammarRuns.push(await run(modelDir, true, maxTokens));
  }
  const parts = await grammarParts(modelDir, 200);
  load.push(loadAverage1());
  const [plain, grammar] = [medianRun(plainRuns), medianRun(grammarRuns)];
  const f = (x: number) => x.toFixed(2);
  const pct = (x: number) => `${((100 * x) / grammar.stepMs).toFixed(1)}%`;
  console.log(
    `${modelDir}, ${CONCURRENT} concurrent requests, decode steps with all ${CONCURRENT} decoding, medians of ${rounds} alternating rounds; load average ${load.map(f).join(' -> ')} on ${os.cpus().length} CPUs`,
  );
  console.log('| run | steps | step ms | grammar ms | sampling ms |\n|---|---|---|---|---|');
  for (const [name, r] of [
    ['unconstrained', plain],
    ['json_schema', grammar],
  ] as const)
    console.log(`| ${name} | ${r.steps} | ${f(r.stepMs)} | ${f(r.grammarMs)} | ${f(r.samplingMs)} |`);
  const work = parts.fillMs + parts.applyMs + parts.acceptMs;
  console.log(
    `\ngrammar work per step of ${CONCURRENT} (separate loop): fill ${f(parts.fillMs)} ms + apply ${f(parts.applyMs)} ms + accept ${f(parts.acceptMs)} ms = ${f(work)} ms = ${pct(work)} of the constrained step`,
  );
  const exposed = grammar.grammarMs + Math.max(0, grammar.samplingMs - plain.samplingMs);
  console.log(
    `grammar time in the engine (grammar part + extra sampling) = ${f(exposed)} ms = ${pct(exposed)}; constrained - unconstrained step = ${f(grammar.stepMs - plain.stepMs)} ms`,
  );
}

await main();
