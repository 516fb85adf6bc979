// Where does an fp8 decode step's extra time go at 16 concurrent sequences? Times one layer's DSA decode
// graph (dsa_decode.ts: indexer selection + sparse MLA over the selected latent rows) and its two halves
// on their own, for each --kv-cache-dtype, on bench-mini-dsa shapes with pools filled through the cache
// writers (so the fp8 codes and scales are what the server stores). The variants run interleaved, one
// repetition of each per round, so load from other processes hits them alike; medians of session.run
// wall time per graph. A probe, not a target: the engine bench is bench/kv_dtype_decode.ts.
//   node --import tsx bench/kv_dsa_decode_probe.ts [--batch 16] [--context 1056] [--rounds 41]
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { parseModelConfig } from '../src/engine/checkpoint/config.ts';
import { buildDsaDecodeGraph } from '../src/engine/model/dsa_decode.ts';
import { buildIndexerSelectGraph } from '../src/engine/model/indexer.ts';
import { buildAttentionGraph } from '../src/engine/model/mla.ts';
import { indexerKeyPoolFeed, latentPoolFeed } from '../src/engine/model/kv_cache_graph.ts';
import { floatTensor, GraphSession, int32Tensor, type Feed } from '../src/engine/onnx/session.ts';
import { allocateIndexerKeyPool, allocateLatentPool, KV_CACHE_DTYPES, type KVCacheDtype } from '../src/kvcache/kv_dtype.ts';
import { writeIndexerKeyRows, writeLatentRows } from '../src/kvcache/kv_row_codec.ts';
import { benchModel } from './models.ts';

const { values } = parseArgs({
  options: { batch: { type: 'string', default: '16' }, context: { type: 'string', default: '1056' }, rounds: { type: 'string', default: '41' } },
});
const B = Number(values.batch);
const T = Number(values.context);
const ROUNDS = Number(values.rounds);
const config = parseModelConfig(benchModel('bench-mini-dsa'));
const indexer = config.indexer!;
const { numAttentionHeads: H, kvLoraRank: L, qkRopeHeadDim: dr } = config;
const C = L + dr;
const { nHeads: Hi, headDim: Di, topk } = indexer;

function gaussian(n: number, seed: number, scale = 1): Float32Array {
  let s = seed;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return Float32Array.from({ length: n }, () => scale * Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next()));
}

const P = B * T;
const slots = Int32Array.from({ length: P }, (_, i) => i);
const latentRows = gaussian(P * C, 1, 0.5);
const keyRows = gaussian(P * Di, 2);

function pools(dtype: KVCacheDtype): Feed {
  const latent = allocateLatentPool(dtype, { kvLoraRank: L, qkRopeHeadDim: dr, indexerDim: Di }, P);
  writeLatentRows(latent, config, P, slots, latentRows);
  const keys = allocateIndexerKeyPool(dtype, Di, P);
  writeIndexerKeyRows(keys, Di, P, slots, keyRows, dtype === 'fp8');
  return { ...latentPoolFeed(latent, config), ...indexerKeyPoolFeed(keys, Di) };
}

// Sequence b owns slots b*T .. b*T + T - 1 and decodes its position T - 1; the attention half attends
// topk of them (the indexer's choice does not change the cost).
const idx = int32Tensor(
  Int32Array.from({ length: B * T }, (_, i) => i),
  [B, T],
);
const qpos = int32Tensor(
  Int32Array.from({ length: B }, () => T - 1),
  [B, 1],
);
const selectedSlots = int32Tensor(
  Int32Array.from({ length: B * topk }, (_, i) => Math.floor(i / topk) * T + (((i % topk) * 3) % T)),
  [B, topk],
);
const q = floatTensor(gaussian(B * H * C, 3), [B, 1, H, C]);
const iq = floatTensor(gaussian(B * Hi * Di, 4), [B, 1, Hi, Di]);
const iw = floatTensor(gaussian(B * Hi, 5), [B, 1, Hi]);

interface Probe {
  readonly name: string;
  readonly session: GraphSession;
  readonly feed: Feed;
  readonly outputs: readonly string[];
  readonly ms: number[];
}

const probes: Probe[] = [];
for (const dtype of KV_CACHE_DTYPES) {
  const pool = pools(dtype);
  const add = async (part: string, model: Uint8Array, feed: Feed, outputs: readonly string[]) =>
    probes.push({ name: `${dtype} ${part}`, session: await GraphSession.create(`${dtype}_${part}`, model, { numThreads: 2 }), feed, outputs, ms: [] });
  await add('dsa_decode', buildDsaDecodeGraph(config, indexer, dtype), { ...pool, q, iq, iw, idx, qpos }, ['o', 'sel']);
  await add('indexer', buildIndexerSelectGraph(indexer, true, dtype), { ...pool, iq, iw, idx, qpos }, ['sel']);
  // mla.ts's attention over gathered rows (prefill and the other graphs; dsa_decode reads fp8 rows in parts).
  await add('attention', buildAttentionGraph(config, 'dense', dtype), { ...pool, q, idx: selectedSlots, qpos }, ['o']);
}

const load0 = loadavg()[0]!;
for (let r = 0; r < ROUNDS; r++) {
  for (const p of probes) {
    const t0 = performance.now();
    await p.session.runTyped(p.feed, p.outputs);
    if (r > 0) p.ms.push(performance.now() - t0);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const lines = [
  `# One layer's DSA decode by KV dtype: bench-mini-dsa, B ${B}, context ${T}, topk ${topk} (median ms of ${ROUNDS - 1} interleaved rounds)`,
  `CPU ${cpus()[0]?.model} x ${cpus().length}; load average ${load0.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after (LOADED if well above 0)`,
  '',
  '| graph | float32 | bfloat16 | fp8 | fp8 / float32 |',
  '| --- | --- | --- | --- | --- |',
];
for (const part of ['dsa_decode', 'indexer', 'attention']) {
  const m = KV_CACHE_DTYPES.map((d) => median(probes.find((p) => p.name === `${d} ${part}`)!.ms));
  lines.push(`| ${part} | ${m.map((x) => x.toFixed(2)).join(' | ')} | ${(m[2]! / m[0]!).toFixed(2)} |`);
}
process.stdout.write(`${lines.join('\n')}\n`);
