// Our engine measured the way llama-bench measures llama.cpp (bench_test.ts has the semantics), as a
// separate process like llama-bench, so both sides start cold, hold only their own memory and are timed the
// same way:
//   node --import tsx bench/compare/ours_bench.ts --model DIR -p 512 -n 128 -d 0,4096 -r 5 -t 2 [--dense-attention]
// prints { "samples": [{ "test": {...}, "samplesTs": [...] }, ...], "weightBytesPerDecodeToken": n } on stdout.
//
// measureOurs() is the one place that drives the engine. It runs the model's step() directly (one
// sequence, the block table of a KV-cache allocation, chunks of 2048 prompt tokens = the server's default
// --max-num-batched-tokens), which is today's path to the forward pass without the scheduler; when the
// offline driver of the engine-core refactor lands, repoint this function at it and nothing else changes.
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { createModelExecutor, type ModelExecutor } from '../../src/engine/model_executor.ts';
import { seededRandom } from '../../tools/checkpoint/random_weights.ts';
import { weightBytesPerDecodeToken } from '../engine_core.ts';
import { benchTests, type BenchTest, type TestSamples } from './bench_test.ts';

const CHUNK = 2048;
const BLOCK_SIZE = 64;

export interface OursBenchOptions {
  readonly threads: number;
  readonly reps: number;
  readonly denseAttention?: boolean;
}

type Step = (tokenIds: number[], numComputedTokens: number, logits: 'last' | 'none') => Promise<void>;

function stepper(exec: ModelExecutor, seqId: string): Step {
  const blockTable = exec.kvCache.getBlockTable(seqId);
  return async (tokenIds, numComputedTokens, logits) => void (await exec.model.step([{ tokenIds, numComputedTokens, blockTable, logits }]));
}

async function prefill(step: Step, tokens: readonly number[], from: number): Promise<void> {
  for (let done = 0; done < tokens.length; done += CHUNK) {
    const chunk = tokens.slice(done, done + CHUNK);
    await step(chunk, from + done, done + CHUNK >= tokens.length ? 'last' : 'none');
  }
}

async function runTest(exec: ModelExecutor, test: BenchTest, reps: number, seed: number): Promise<TestSamples> {
  const rng = seededRandom(seed);
  const vocab = exec.loaded.config.vocabSize;
  const randomTokens = (n: number): number[] => Array.from({ length: n }, () => Math.floor(rng.uniform() * vocab));
  const seqId = `bench-${seed}`;
  exec.kvCache.allocateSlots(seqId, test.depth + test.tokens + 1);
  try {
    const step = stepper(exec, seqId);
    if (test.depth > 0) await prefill(step, randomTokens(test.depth), 0);
    const timed = async (): Promise<number> => {
      const t0 = performance.now();
      if (test.kind === 'pp') await prefill(step, randomTokens(test.tokens), test.depth);
      else for (let i = 0; i < test.tokens; i++) await step(randomTokens(1), test.depth + i, 'last');
      return performance.now() - t0;
    };
    // warm-up as llama-bench: one untimed pp of P, or one untimed 1-token step
    if (test.kind === 'pp') await timed();
    else await step(randomTokens(1), test.depth, 'last');
    const samplesTs: number[] = [];
    for (let r = 0; r < reps; r++) samplesTs.push((test.tokens / (await timed())) * 1000);
    return { test, samplesTs };
  } finally {
    exec.kvCache.free(seqId);
  }
}

export interface OursBenchResult {
  readonly samples: readonly TestSamples[];
  /** Weight bytes one decode token reads (for the bandwidth floor). */
  readonly weightBytesPerDecodeToken: number;
}

/** Each test's per-repetition tokens/s on the checkpoint in `modelDir`. */
export async function measureOurs(modelDir: string, tests: readonly BenchTest[], opts: OursBenchOptions): Promise<OursBenchResult> {
  const maxLen = Math.max(...tests.map((t) => t.depth + t.tokens + 1));
  const exec = await createModelExecutor(modelDir, {
    numThreads: opts.threads, denseAttention: opts.denseAttention ?? false, blockSize: BLOCK_SIZE, numKvBlocks: Math.ceil(maxLen / BLOCK_SIZE) + 1, enablePrefixCaching: false,
  });
  try {
    const samples: TestSamples[] = [];
    for (const [i, test] of tests.entries()) samples.push(await runTest(exec, test, opts.reps, 1000 + i));
    return { samples, weightBytesPerDecodeToken: weightBytesPerDecodeToken(exec.loaded) };
  } finally {
    await exec.model.dispose();
  }
}

function positiveInts(s: string, flag: string, allowZero: boolean): number[] {
  const out = s.split(',').map((x) => Number(x.trim()));
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < (allowZero ? 0 : 1))) throw new Error(`${flag} must be ${allowZero ? 'non-negative' : 'positive'} integers, got "${s}"`);
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' }, p: { type: 'string', default: '512' }, n: { type: 'string', default: '128' }, d: { type: 'string', default: '0' },
      r: { type: 'string', default: '5' }, t: { type: 'string', default: '2' }, 'dense-attention': { type: 'boolean', default: false },
    },
  });
  if (!values.model) throw new Error('--model <checkpoint dir> is required');
  const [prompt] = positiveInts(values.p, '-p', true);
  const [gen] = positiveInts(values.n, '-n', true);
  const [reps] = positiveInts(values.r, '-r', false);
  const [threads] = positiveInts(values.t, '-t', false);
  const tests = benchTests(prompt, gen, positiveInts(values.d, '-d', true));
  if (tests.length === 0) throw new Error('nothing to measure: -p and -n are both 0');
  const result = await measureOurs(values.model, tests, { threads, reps, denseAttention: values['dense-attention'] });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    process.stderr.write(`ours_bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
