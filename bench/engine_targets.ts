// The engine-core and engine-loop issues' targets in one short run (`npm run bench:engine`, ~2 min):
// batch-1 decode vs the bandwidth floor, 512-token prefill, and batched decode at 16 concurrent
// sequences vs batch 1, with the per-step time split and the scheduling share.
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { benchEngineCore } from './engine_core.ts';
import { probeMachine } from './probe.ts';
import { benchThroughput } from './throughput.ts';

const limits = await probeMachine();
const dir = ensureBenchCheckpoint('bench-mini');
const core = await benchEngineCore(dir, 'bench-mini', { quick: false });
const floorMs = (core.weightBytesPerDecodeToken / (limits.readBandwidthGBs * 1e9)) * 1000;
const runner = { kvCacheMemory: 2 * 2 ** 30 };
const batch1 = await benchThroughput(dir, runner, { concurrency: 1, numRequests: 2, promptTokens: 256, outputTokens: 128 });
const batch16 = await benchThroughput(dir, runner, { concurrency: 16, numRequests: 32, promptTokens: 256, outputTokens: 128 });
const result = {
  date: new Date().toISOString(),
  readBandwidthGBs: limits.readBandwidthGBs,
  weightBytesPerDecodeToken: core.weightBytesPerDecodeToken,
  floorMsPerToken: floorMs,
  decodeTokensPerSecond: core.decodeTokensPerSecond,
  decodeShareOfFloor: floorMs / core.decodeMsPerToken, // target >= 0.5
  decodeSplitMs: core.decodeSplitMs,
  prefill512TokensPerSecond: core.prefillTokensPerSecond,
  decode1TokensPerSecond: batch1.decodeTokensPerSecond,
  decode16TokensPerSecond: batch16.decodeTokensPerSecond,
  decode16OverDecode1: batch16.decodeTokensPerSecond / batch1.decodeTokensPerSecond, // target >= 4
  meanDecodeBatch: batch16.meanDecodeBatch,
  endToEnd16OutputTokensPerSecond: batch16.outputTokensPerSecond,
  stepSplitMsAt16: batch16.stepSplitMs,
  schedulingShare: Math.max(batch1.schedulingShare, batch16.schedulingShare), // target < 0.05
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
