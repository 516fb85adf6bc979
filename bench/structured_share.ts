// Grammar work as a share of step time at 16 concurrent constrained requests (issue 13's target:
// <= 10%), against the same batch unconstrained.
//
//   node --import tsx bench/structured_share.ts [--model DIR] [--steps N]
//
// Both runs decode 16 requests through EngineCore (the serving path); only steps where all 16
// decode are counted. "grammar" is the profiler part that fills the next-token bitmasks; applying
// them and advancing the matchers happen inside "sampling", so the sampling difference between
// the runs is reported too.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EngineCore } from '../src/engine/engine_core.ts';
import { resolveSamplingParams } from '../src/engine/sampling/sampling_params.ts';
import type { StructuredOutputSpec } from '../src/engine/structured/grammar_spec.ts';
import type { StepStats } from '../src/engine/step_stats.ts';
import { loadAverage1 } from './machine/load.ts';

const CONCURRENT = 16;
const DEFAULT_MODEL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../models/default');

/** Keeps every request inside the grammar for as long as the run lasts (an open-ended array). */
const SPEC: StructuredOutputSpec = {
  param: 'bench',
  grammar: { kind: 'json_schema', schema: JSON.stringify({ type: 'array', items: { type: 'object', properties: { verse: { type: 'string' }, n: { type: 'integer' } }, required: ['verse', 'n'] } }) },
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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, steps: { type: 'string' } } });
  const modelDir = values.model ?? DEFAULT_MODEL;
  const maxTokens = Number(values.steps ?? 64);
  const load = [loadAverage1()];
  await run(modelDir, false, maxTokens); // warm-up: the first engine in a process runs slower
  const plain = await run(modelDir, false, maxTokens);
  const grammar = await run(modelDir, true, maxTokens);
  load.push(loadAverage1());
  const f = (x: number) => x.toFixed(2);
  console.log(`${modelDir}, ${CONCURRENT} concurrent requests, decode steps with all ${CONCURRENT} decoding; load average ${load.map(f).join(' -> ')} on ${os.cpus().length} CPUs`);
  console.log('| run | steps | step ms | grammar ms | sampling ms |\n|---|---|---|---|---|');
  for (const [name, r] of [['unconstrained', plain], ['json_schema', grammar]] as const) console.log(`| ${name} | ${r.steps} | ${f(r.stepMs)} | ${f(r.grammarMs)} | ${f(r.samplingMs)} |`);
  const work = grammar.grammarMs + Math.max(0, grammar.samplingMs - plain.samplingMs);
  console.log(`\ngrammar work (bitmask fill + extra sampling) = ${f(work)} ms per step = ${((100 * work) / grammar.stepMs).toFixed(1)}% of the constrained step`);
}

await main();
