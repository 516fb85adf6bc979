// Check CLI: greedy generation from prompt token ids, printed as JSON with top-N logprobs.
//   npm run check -- --model DIR --prompt 1,2,3 [--max-tokens 16] [--chunk-size 13] [--dense-attention]
// Exit code 1 with a one-line message on any error (bad flags, bad checkpoint, ...).
import { parseArgs } from 'node:util';
import { OfflineEngine } from '../engine/offline.ts';
import { positiveInt, promptTokenIds } from './args.ts';

const USAGE = 'usage: check --model DIR --prompt ID,ID,... [--max-tokens N] [--chunk-size N] [--top N] [--block-size N] [--dense-attention] [--threads N]';

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      'chunk-size': { type: 'string' },
      top: { type: 'string' },
      'block-size': { type: 'string' },
      threads: { type: 'string' },
      'dense-attention': { type: 'boolean', default: false },
    },
  });
  if (!values.model || !values.prompt) throw new Error(USAGE);
  const prompt = promptTokenIds(values.model, { prompt: values.prompt }, USAGE);
  const top = positiveInt('top', values.top, 5);
  const blockSize = positiveInt('block-size', values['block-size']);
  const numThreads = positiveInt('threads', values.threads);
  const chunkSize = positiveInt('chunk-size', values['chunk-size']);
  const engine = await OfflineEngine.create(values.model, {
    runner: { denseAttention: values['dense-attention'], kvCacheMemory: 256 * 2 ** 20, ...(blockSize && { blockSize }), ...(numThreads && { numThreads }) },
    scheduler: { ...(chunkSize && { longPrefillTokenThreshold: chunkSize }) },
  });
  try {
    const maxTokens = positiveInt('max-tokens', values['max-tokens'], 16);
    const [result] = await engine.generate([{ promptTokenIds: prompt, params: { temperature: 0, maxTokens, ignoreEos: true, logprobs: top } }]);
    if (!result || result.errorMessage) throw new Error(result?.errorMessage ?? 'no result');
    const steps = result.logprobs.map((lp) => ({
      token: lp.tokenId,
      logprob: lp.logprob,
      top_logprobs: lp.topLogprobs.map((a) => ({ token: a.tokenId, logprob: a.logprob })),
    }));
    process.stdout.write(
      `${JSON.stringify({ model: values.model, prompt, dense_attention: values['dense-attention'], tokens: result.tokenIds, steps }, null, 1)}\n`,
    );
  } finally {
    await engine.dispose();
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
