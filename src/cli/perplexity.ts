// Held-out perplexity in the engine, with DSA (the indexer's top-k) and with dense attention, printed as JSON.
//   node --import tsx src/cli/perplexity.ts --model DIR (--tokens FILE.u16 | --file TEXT) [--context 512]
//        [--max-chunks N] [--mode both|dsa|dense] [--kv-cache-dtype float32|bfloat16|fp8] [--threads N]
//        [--quantization none|int8|int4]
// The token stream (--tokens: little-endian uint16 ids, as tools/train/tokenize.ts writes; --file: text
// encoded with the model's tokenizer, BOS added) is cut into consecutive, non-overlapping chunks of
// --context tokens (a shorter tail is dropped); each chunk is one full prefill from position 0 with logits
// at every row, and row j scores token j + 1. Reported: mean NLL (nats/token) and perplexity over all scored
// tokens, and over the tokens at positions > index_topk (the rows where DSA actually drops keys).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { OfflineEngine } from '../engine/offline.ts';
import { QUANTIZATION_MODES, type QuantizationMode } from '../engine/quant/quant_mode.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../kvcache/kv_dtype.ts';
import { loadTokenizer } from '../server/tokenizer/tokenizer.ts';
import { positiveInt } from './args.ts';

const USAGE =
  'usage: perplexity --model DIR (--tokens FILE.u16 | --file TEXT) [--context 512] [--max-chunks N] [--mode both|dsa|dense] [--kv-cache-dtype float32|bfloat16|fp8] [--threads N] [--quantization none|int8|int4]';

interface ModeResult {
  readonly mode: 'dsa' | 'dense';
  readonly kv_cache_dtype: KVCacheDtype;
  readonly chunks: number;
  readonly scored_tokens: number;
  readonly nll: number;
  readonly ppl: number;
  readonly scored_tokens_past_topk: number;
  readonly nll_past_topk: number;
  readonly ppl_past_topk: number;
  readonly seconds: number;
}

interface EvalOptions {
  readonly threads: number | undefined;
  readonly kvCacheDtype: KVCacheDtype;
  readonly quantization: QuantizationMode;
}

async function evaluate(model: string, chunks: number[][], dense: boolean, opts: EvalOptions): Promise<ModeResult> {
  const t0 = performance.now();
  const { threads, kvCacheDtype, quantization } = opts;
  const engine = await OfflineEngine.create(model, {
    runner: { denseAttention: dense, kvCacheMemory: 64 * 2 ** 20, kvCacheDtype, quantization, ...(threads !== undefined && { numThreads: threads }) },
    enablePrefixCaching: false,
  });
  const topk = engine.core.runner.model.indexer?.topk ?? Infinity;
  let nll = 0;
  let n = 0;
  let nllPast = 0;
  let nPast = 0;
  try {
    for (const chunk of chunks) {
      // Prompt logprobs through the serving path: entry j + 1 scores token j + 1 from row j.
      const [r] = await engine.generate([{ promptTokenIds: chunk, params: { temperature: 0, maxTokens: 1, promptLogprobs: 0 } }]);
      const scored = r?.promptLogprobs;
      if (!scored) throw new Error(r?.errorMessage ?? 'no prompt logprobs');
      for (let j = 0; j + 1 < chunk.length; j++) {
        const loss = -scored[j + 1]!.logprob;
        nll += loss;
        n++;
        // Row j attends j + 1 keys: DSA selects among them once j + 1 > index_topk.
        if (j + 1 > topk) {
          nllPast += loss;
          nPast++;
        }
      }
    }
  } finally {
    await engine.dispose();
  }
  return {
    mode: dense ? 'dense' : 'dsa',
    kv_cache_dtype: kvCacheDtype,
    chunks: chunks.length,
    scored_tokens: n,
    nll: nll / n,
    ppl: Math.exp(nll / n),
    scored_tokens_past_topk: nPast,
    nll_past_topk: nPast ? nllPast / nPast : NaN,
    ppl_past_topk: nPast ? Math.exp(nllPast / nPast) : NaN,
    seconds: (performance.now() - t0) / 1000,
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      tokens: { type: 'string' },
      file: { type: 'string' },
      context: { type: 'string' },
      'max-chunks': { type: 'string' },
      mode: { type: 'string', default: 'both' },
      threads: { type: 'string' },
      'kv-cache-dtype': { type: 'string', default: 'float32' },
      quantization: { type: 'string', default: 'none' },
    },
  });
  const dtype = values['kv-cache-dtype'] as KVCacheDtype;
  if (!KV_CACHE_DTYPES.includes(dtype)) throw new Error(`--kv-cache-dtype must be one of ${KV_CACHE_DTYPES.join(', ')}, got "${dtype}"`);
  const quantization = values.quantization as QuantizationMode;
  if (!QUANTIZATION_MODES.includes(quantization))
    throw new Error(`--quantization must be one of ${QUANTIZATION_MODES.join(', ')}, got "${values.quantization}"`);
  if (!values.model || (values.tokens === undefined) === (values.file === undefined)) throw new Error(USAGE);
  if (!['both', 'dsa', 'dense'].includes(values.mode!)) throw new Error(`--mode must be both, dsa or dense, got "${values.mode}"`);
  let ids: number[];
  if (values.tokens !== undefined) {
    const buf = readFileSync(values.tokens);
    ids = Array.from(new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength >> 1));
  } else {
    const tokenizer = loadTokenizer(values.model);
    if (!tokenizer) throw new Error(`${values.model} has no tokenizer.json: use --tokens`);
    ids = tokenizer.encode(readFileSync(values.file!, 'utf8'));
  }
  const context = positiveInt('context', values.context, 512);
  const chunks: number[][] = [];
  for (let i = 0; i + context <= ids.length; i += context) chunks.push(ids.slice(i, i + context));
  const maxChunks = positiveInt('max-chunks', values['max-chunks']);
  if (maxChunks !== undefined) chunks.splice(maxChunks);
  if (chunks.length === 0) throw new Error(`fewer than --context ${context} tokens`);
  const threads = positiveInt('threads', values.threads);
  const results: ModeResult[] = [];
  const opts = { threads, kvCacheDtype: dtype, quantization };
  if (values.mode !== 'dense') results.push(await evaluate(values.model, chunks, false, opts));
  if (values.mode !== 'dsa') results.push(await evaluate(values.model, chunks, true, opts));
  const dsa = results.find((r) => r.mode === 'dsa');
  const dense = results.find((r) => r.mode === 'dense');
  const out = {
    model: values.model,
    quantization,
    source: values.tokens ?? values.file,
    context,
    results,
    ...(dsa && dense ? { dsa_over_dense_ppl: dsa.ppl / dense.ppl, dsa_over_dense_ppl_past_topk: dsa.ppl_past_topk / dense.ppl_past_topk } : {}),
  };
  process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
