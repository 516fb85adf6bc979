// Indexer-quality CLI: per layer, KL(dense attention || indexer) (dense and sparse variants, the DSA
// indexer training loss) and the recall of the indexer's top-k selection, printed as JSON.
//   node --import tsx src/cli/indexer_quality.ts --model DIR (--text TEXT | --file PATH | --prompt ID,ID,...)
//        [--max-tokens N] [--chunk-size N] [--threads N]
// --text / --file need the model's tokenizer (BOS added as the tokenizer config says). Exit code 1 with a
// one-line message on any error.
import { parseArgs } from 'node:util';
import { indexerQuality } from '../engine/diagnostics/indexer_quality.ts';
import { positiveInt, promptTokenIds } from './args.ts';

const USAGE = 'usage: indexer_quality --model DIR (--text TEXT | --file PATH | --prompt ID,ID,...) [--max-tokens N] [--chunk-size N] [--threads N]';

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      text: { type: 'string' },
      file: { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      'chunk-size': { type: 'string' },
      threads: { type: 'string' },
    },
  });
  if (!values.model) throw new Error(USAGE);
  let ids = promptTokenIds(values.model, values, USAGE);
  const maxTokens = positiveInt('max-tokens', values['max-tokens']);
  if (maxTokens !== undefined) ids = ids.slice(0, maxTokens);
  const numThreads = positiveInt('threads', values.threads);
  const chunkSize = positiveInt('chunk-size', values['chunk-size']);
  const runner = { kvCacheMemory: 256 * 2 ** 20, ...(numThreads !== undefined && { numThreads }) };
  const res = await indexerQuality(values.model, ids, { runner, ...(chunkSize !== undefined && { chunkSize }) });
  const mean = (f: (l: (typeof res.layers)[number]) => number | null): number | null => {
    const v = res.layers.map(f).filter((x): x is number => x !== null);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const out = {
    model: values.model,
    num_tokens: res.numTokens,
    index_topk: res.indexTopk,
    sparse_rows: res.sparseRows,
    layers: res.layers.map((l) => ({ layer: l.layer, kl_dense: l.klDense, kl_sparse: l.klSparse, recall: l.recall, recall_sparse_rows: l.recallSparseRows })),
    mean: {
      kl_dense: mean((l) => l.klDense),
      kl_sparse: mean((l) => l.klSparse),
      recall: mean((l) => l.recall),
      recall_sparse_rows: mean((l) => l.recallSparseRows),
    },
  };
  process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
