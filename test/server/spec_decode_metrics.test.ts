// vLLM's speculative decoding counters from the engine's per-step counts; absent without speculation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyTimings } from '../../src/engine/step_profiler.ts';
import type { StepStats } from '../../src/engine/step_stats.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import { metricValue, parsePrometheus } from '../helpers/prometheus.ts';

function stats(specDecode: StepStats['specDecode']): StepStats {
  return {
    numRunning: 1,
    numWaiting: 0,
    numScheduledTokens: 3,
    numPrefillTokens: 3,
    numDecodeTokens: 0,
    numGeneratedTokens: 2,
    numGraphRuns: 0,
    graphRunMs: 0,
    numPreemptionsTotal: 0,
    kvCacheUsage: 0.1,
    kvCacheBytesInUse: { latent: 0, indexer: 0 },
    prefixCacheQueryTokens: 0,
    prefixCacheHitTokens: 0,
    stepMs: 1,
    timings: emptyTimings(),
    sparsity: { queries: 0, visibleKeys: 0, selectedKeys: 0 },
    ...(specDecode && { specDecode }),
  };
}

test('vllm:spec_decode_* count drafts, draft tokens and accepted tokens (per position); only with speculation', async () => {
  const m = new ServerMetrics('m', 2);
  const zero = parsePrometheus(await m.render());
  assert.equal(metricValue(zero.samples, 'vllm:spec_decode_num_accepted_tokens_per_pos_total', { model_name: 'm', position: '1' }), 0);
  m.onStepStats(stats({ numDrafts: 2, numDraftTokens: 4, numAcceptedTokens: 3, acceptedPerPos: [2, 1] }));
  m.onStepStats(stats({ numDrafts: 1, numDraftTokens: 2, numAcceptedTokens: 0, acceptedPerPos: [0, 0] }));
  const { samples, types } = parsePrometheus(await m.render());
  const v = (name: string, labels: Record<string, string> = {}) => metricValue(samples, name, { model_name: 'm', ...labels });
  assert.equal(v('vllm:spec_decode_num_drafts_total'), 3);
  assert.equal(v('vllm:spec_decode_num_draft_tokens_total'), 6);
  assert.equal(v('vllm:spec_decode_num_accepted_tokens_total'), 3);
  assert.equal(v('vllm:spec_decode_num_accepted_tokens_per_pos_total', { position: '0' }), 2);
  assert.equal(v('vllm:spec_decode_num_accepted_tokens_per_pos_total', { position: '1' }), 1);
  assert.equal(types.get('vllm:spec_decode_num_drafts_total'), 'counter');

  const plain = new ServerMetrics('m');
  plain.onStepStats(stats(undefined));
  assert.ok(!(await plain.render()).includes('spec_decode'));
});
