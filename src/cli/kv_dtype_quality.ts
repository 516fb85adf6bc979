// What a narrower KV cache costs in accuracy, measured through the serving path (offline driver):
// for each --kv-cache-dtype against float32 on the same tokens, the teacher-forced logprob error (mean
// |log_softmax| difference over every position and vocabulary entry) and, for DSA models, the recall of
// the indexer's top-k sets (|S_dtype ∩ S_f32| / |S_f32| over the rows with more than index_topk visible
// keys, per layer). fp8 runs twice: with the Hadamard rotation of the indexer keys (DeepSeek-V3.2's
// layout, the default) and without it, to show what the rotation does.
//   node --import tsx src/cli/kv_dtype_quality.ts --model DIR (--prompt ID,ID,... | --file TEXT)
//        [--max-tokens N] [--dense-attention] [--threads N]
// Prefill runs one token per step, so every position's selection is recorded. Prints JSON.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { OfflineEngine } from '../engine/offline.ts';
import type { KVCacheDtype } from '../kvcache/kv_dtype.ts';
import { positiveInt, promptTokenIds } from './args.ts';

const USAGE = 'usage: kv_dtype_quality --model DIR (--prompt ID,ID,... | --file TEXT) [--max-tokens N] [--dense-attention] [--threads N]';

interface Variant {
  readonly name: string;
  readonly dtype: KVCacheDtype;
  readonly rotation: boolean;
}

const VARIANTS: readonly Variant[] = [
  { name: 'float32', dtype: 'float32', rotation: true },
  { name: 'bfloat16', dtype: 'bfloat16', rotation: true },
  { name: 'fp8', dtype: 'fp8', rotation: true },
  { name: 'fp8 without Hadamard rotation', dtype: 'fp8', rotation: false },
];

interface Run {
  readonly logprobs: Float64Array; // [T, vocab] log_softmax of every prompt row
  readonly selections: Int32Array[][]; // [position][layer]
}

async function run(model: string, ids: readonly number[], v: Variant, dense: boolean, threads: number | undefined): Promise<Run> {
  const selections: Int32Array[][] = [];
  const engine = await OfflineEngine.create(model, {
    runner: {
      kvCacheDtype: v.dtype,
      fp8IndexerRotation: v.rotation,
      denseAttention: dense,
      kvCacheMemory: 256 * 2 ** 20,
      ...(threads && { numThreads: threads }),
    },
    scheduler: { longPrefillTokenThreshold: 1 },
    enablePrefixCaching: false,
    captureLogits: true,
    onSelections: (_id, last, sel) => (selections[last] = sel.map((s) => Int32Array.from(s))),
  });
  try {
    const [out] = await engine.generate([{ promptTokenIds: ids, params: { temperature: 0, maxTokens: 1, promptLogprobs: 0 } }]);
    if (!out?.promptLogits) throw new Error(out?.errorMessage ?? 'no prompt logits');
    return { logprobs: logSoftmaxRows(out.promptLogits, engine.core.config.vocabSize), selections };
  } finally {
    await engine.dispose();
  }
}

function logSoftmaxRows(logits: Float32Array, vocab: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let r = 0; r < logits.length / vocab; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const lse = max + Math.log(sum);
    for (let j = 0; j < vocab; j++) out[r * vocab + j] = row[j]! - lse;
  }
  return out;
}

function meanAbsDiff(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

/** Per layer, mean recall of the reference sets over the positions where selection drops keys. */
function recallPerLayer(ref: Int32Array[][], got: Int32Array[][], topk: number): number[] {
  const numLayers = ref.find((r) => r)?.length ?? 0;
  return Array.from({ length: numLayers }, (_, l) => {
    let sum = 0;
    let rows = 0;
    ref.forEach((perLayer, pos) => {
      if (pos + 1 <= topk) return;
      const want = new Set(perLayer[l]);
      let hit = 0;
      for (const p of got[pos]![l]!) if (want.has(p)) hit++;
      sum += hit / want.size;
      rows++;
    });
    return rows ? sum / rows : NaN;
  });
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      file: { type: 'string' },
      'max-tokens': { type: 'string' },
      'dense-attention': { type: 'boolean', default: false },
      threads: { type: 'string' },
    },
  });
  if (!values.model) throw new Error(USAGE);
  const ids = promptTokenIds(values.model, values, USAGE).slice(0, positiveInt('max-tokens', values['max-tokens']));
  if (ids.length < 2) throw new Error('need at least two token ids');
  const dense = values['dense-attention']!;
  const threads = positiveInt('threads', values.threads);
  const topk = JSON.parse(readFileSync(`${values.model}/config.json`, 'utf8')).index_topk ?? Infinity;
  const variants = dense ? VARIANTS.filter((v) => v.rotation) : VARIANTS;
  const runs: Run[] = [];
  for (const v of variants) runs.push(await run(values.model, ids, v, dense, threads));
  const ref = runs[0]!;
  const results = variants.slice(1).map((v, i) => {
    const r = runs[i + 1]!;
    const recall = dense ? [] : recallPerLayer(ref.selections, r.selections, topk);
    return {
      kv_cache_dtype: v.name,
      logprob_mae_vs_float32: meanAbsDiff(r.logprobs, ref.logprobs),
      ...(!dense && { topk_recall_vs_float32: recall.reduce((a, b) => a + b, 0) / recall.length, topk_recall_per_layer: recall }),
    };
  });
  process.stdout.write(`${JSON.stringify({ model: values.model, num_tokens: ids.length, dense_attention: dense, index_topk: topk, results }, null, 1)}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
