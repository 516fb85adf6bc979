// Our engine measured the way llama-bench measures llama.cpp (bench_test.ts has the semantics), as a
// separate process like llama-bench, so both sides start cold, hold only their own memory and are timed the
// same way:
//   node --import tsx bench/compare/ours_bench.ts --model DIR -p 512 -n 128 -d 0,4096 -r 5 -t 2 [--dense-attention]
//     [--kv-cache-dtype float32|bfloat16|fp8]
// prints { "samples": [{ "test": {...}, "samplesTs": [...], "graphRunsPerToken"?: n }, ...], "weightBytesPerDecodeToken": n }
// on stdout (graphRunsPerToken: ONNX Runtime graph runs per decode token, tg tests only).
//
// measureOurs() is the one place that drives the engine: the offline driver over EngineCore (the
// serving path: scheduler, chunked prefill at the server's default 2048-token budget, sampler, paged
// caches). tg N at depth d = a real prefill of d tokens, then N timed greedy steps after one untimed
// one; pp P at depth d = the first d tokens served from the prefix cache (filled by an untimed run),
// the P new ones timed to the first token (llama-bench: a prompt of P on a context of d).
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { OfflineEngine } from '../../src/engine/offline.ts';
import { seededRandom } from '../../tools/checkpoint/random_weights.ts';
import { weightBytesPerDecodeToken } from '../engine_core.ts';
import { PREFILL_CHUNK, timeDecode, timePrefill } from '../engine_runs.ts';
import { benchTests, type BenchTest, type TestSamples } from './bench_test.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../../src/kvcache/kv_dtype.ts';

const BLOCK_SIZE = 64;

export interface OursBenchOptions {
  readonly threads: number;
  readonly reps: number;
  readonly denseAttention?: boolean;
  readonly kvCacheDtype?: KVCacheDtype;
}

async function runTest(engine: OfflineEngine, test: BenchTest, reps: number, seed: number): Promise<TestSamples> {
  const rng = seededRandom(seed);
  const vocab = engine.core.config.vocabSize;
  const randomTokens = (n: number): number[] => Array.from({ length: n }, () => 2 + Math.floor(rng.uniform() * (vocab - 2)));
  const samplesTs: number[] = [];
  if (test.kind === 'tg') {
    let graphRunsPerToken = 0;
    for (let r = 0; r < reps; r++) {
      const d = await timeDecode(engine, randomTokens(Math.max(test.depth, 1)), 1, test.tokens);
      samplesTs.push(1000 / d.msPerToken);
      graphRunsPerToken = d.graphRunsPerToken;
    }
    return { test, samplesTs, graphRunsPerToken };
  }
  const context = randomTokens(test.depth);
  if (test.depth > 0) await timePrefill(engine, context); // fills the prefix cache with the depth
  for (let r = 0; r < reps + 1; r++) {
    const { ms } = await timePrefill(engine, [...context, ...randomTokens(test.tokens)]);
    if (r > 0) samplesTs.push((test.tokens / ms) * 1000); // the first run warms up, as llama-bench's
  }
  return { test, samplesTs };
}

export interface OursBenchResult {
  readonly samples: readonly TestSamples[];
  /** Weight bytes one decode token reads (for the bandwidth floor). */
  readonly weightBytesPerDecodeToken: number;
}

/** Each test's per-repetition tokens/s on the checkpoint in `modelDir`. */
export async function measureOurs(modelDir: string, tests: readonly BenchTest[], opts: OursBenchOptions): Promise<OursBenchResult> {
  const maxLen = Math.max(...tests.map((t) => t.depth + t.tokens + 4));
  const engine = await OfflineEngine.create(modelDir, {
    runner: {
      numThreads: opts.threads,
      denseAttention: opts.denseAttention ?? false,
      ...(opts.kvCacheDtype && { kvCacheDtype: opts.kvCacheDtype }),
      blockSize: BLOCK_SIZE,
      numKvBlocks: 2 * Math.ceil(maxLen / BLOCK_SIZE) + 2,
    },
    scheduler: { maxNumSeqs: 1, maxNumBatchedTokens: PREFILL_CHUNK },
    enablePrefixCaching: true, // pp at depth d reuses the d cached tokens; random prompts never hit otherwise
  });
  try {
    const samples: TestSamples[] = [];
    for (const [i, test] of tests.entries()) samples.push(await runTest(engine, test, opts.reps, 1000 + i));
    return { samples, weightBytesPerDecodeToken: weightBytesPerDecodeToken(engine.core.runner.loaded) };
  } finally {
    await engine.dispose();
  }
}

function positiveInts(s: string, flag: string, allowZero: boolean): number[] {
  const out = s.split(',').map((x) => Number(x.trim()));
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < (allowZero ? 0 : 1)))
    throw new Error(`${flag} must be ${allowZero ? 'non-negative' : 'positive'} integers, got "${s}"`);
  return out;
}

function positiveInt(s: string, flag: string, allowZero: boolean): number {
  const [n, ...more] = positiveInts(s, flag, allowZero);
  if (n === undefined || more.length > 0) throw new Error(`${flag} must be one ${allowZero ? 'non-negative' : 'positive'} integer, got "${s}"`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      p: { type: 'string', default: '512' },
      n: { type: 'string', default: '128' },
      d: { type: 'string', default: '0' },
      r: { type: 'string', default: '5' },
      t: { type: 'string', default: '2' },
      'dense-attention': { type: 'boolean', default: false },
      'kv-cache-dtype': { type: 'string' },
    },
  });
  const kvCacheDtype = values['kv-cache-dtype'] as KVCacheDtype | undefined;
  if (kvCacheDtype !== undefined && !KV_CACHE_DTYPES.includes(kvCacheDtype)) throw new Error(`--kv-cache-dtype: one of ${KV_CACHE_DTYPES.join(', ')}`);
  if (!values.model) throw new Error('--model <checkpoint dir> is required');
  const prompt = positiveInt(values.p, '-p', true);
  const gen = positiveInt(values.n, '-n', true);
  const reps = positiveInt(values.r, '-r', false);
  const threads = positiveInt(values.t, '-t', false);
  const tests = benchTests(prompt, gen, positiveInts(values.d, '-d', true));
  if (tests.length === 0) throw new Error('nothing to measure: -p and -n are both 0');
  const result = await measureOurs(values.model, tests, { threads, reps, denseAttention: values['dense-attention'], ...(kvCacheDtype && { kvCacheDtype }) });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    process.stderr.write(`ours_bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
