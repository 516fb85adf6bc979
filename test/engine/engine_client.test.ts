// The engine in its worker thread, through EngineClient: streaming deltas, rejection errors,
// aborts and shutdown.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EngineClient } from '../../src/engine/engine_client.ts';
import type { RequestOutputDelta } from '../../src/engine/request.ts';
import { resolveSamplingParams } from '../../src/engine/sampling/sampling_params.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';

const golden = new Golden();

async function collect(stream: AsyncIterable<RequestOutputDelta>): Promise<RequestOutputDelta[]> {
  const out: RequestOutputDelta[] = [];
  for await (const d of stream) out.push(d);
  return out;
}

describe('EngineClient + engine worker', () => {
  let client: EngineClient;
  before(async () => {
    client = await EngineClient.start({
      modelDir: FIXTURE_DIR,
      engine: {
        runner: { blockSize: 16, numKvBlocks: 64 },
        scheduler: { maxNumSeqs: 8, maxNumBatchedTokens: 64, longPrefillTokenThreshold: 0, maxModelLen: 512, maxQueuedRequests: 4, maxQueuedTokens: 4096 },
        enablePrefixCaching: true,
      },
      checkIntegrity: true,
    });
  });
  after(async () => {
    await client.shutdown();
  });

  test('reports the model and streams golden greedy tokens for concurrent requests', async () => {
    assert.equal(client.info.vocabSize, 512);
    assert.equal(client.info.usesIndexer, true);
    const streams = await Promise.all(
      golden.json.prompts.map((prompt, p) =>
        client.addRequest({ requestId: `r${p}`, promptTokenIds: prompt, params: resolveSamplingParams({ temperature: 0, maxTokens: 16, ignoreEos: true }) }),
      ),
    );
    const results = await Promise.all(streams.map(collect));
    results.forEach((deltas, p) => {
      assert.deepEqual(
        deltas.flatMap((d) => d.newTokenIds),
        golden.greedyTokens(p),
      );
      assert.equal(deltas.at(-1)!.finishReason, 'length');
    });
  });

  test('refusals reject addRequest with the engine error code', async () => {
    const params = resolveSamplingParams({ maxTokens: 400 });
    await assert.rejects(client.addRequest({ requestId: 'long', promptTokenIds: golden.prompt(4), params }), { code: 'DSV_ERR_CONTEXT_LENGTH' });
    await assert.rejects(client.addRequest({ requestId: 'bad', promptTokenIds: [1, 99999], params: resolveSamplingParams({}) }), {
      code: 'DSV_ERR_INVALID_REQUEST',
    });
  });

  test('abort ends a stream with finish reason abort', async () => {
    const stream = await client.addRequest({
      requestId: 'ab',
      promptTokenIds: golden.prompt(3),
      params: resolveSamplingParams({ temperature: 0, maxTokens: 300, ignoreEos: true }),
    });
    const deltas: RequestOutputDelta[] = [];
    for await (const d of stream) {
      deltas.push(d);
      if (deltas.length === 3) client.abort(['ab']);
    }
    assert.equal(deltas.at(-1)!.finishReason, 'abort');
    assert.ok(deltas.length < 300);
  });

  test('stats arrive after steps', async () => {
    const stats = new Promise((resolve) => client.once('stats', resolve));
    await collect(await client.addRequest({ requestId: 'st', promptTokenIds: [5, 6, 7], params: resolveSamplingParams({ maxTokens: 2 }) }));
    const s = (await stats) as { numScheduledTokens: number };
    assert.ok(s.numScheduledTokens > 0);
  });
});

test('a bad model directory fails start-up with a message naming the file', async () => {
  await assert.rejects(
    EngineClient.start({
      modelDir: '/nonexistent-model-dir',
      engine: {
        runner: {},
        scheduler: { maxNumSeqs: 1, maxNumBatchedTokens: 8, longPrefillTokenThreshold: 0, maxModelLen: 8, maxQueuedRequests: 1, maxQueuedTokens: 8 },
        enablePrefixCaching: true,
      },
    }),
    /config\.json|nonexistent/,
  );
});
