// When does the Hadamard rotation of fp8 indexer keys matter? Top-k recall of the indexer's selection
// (score = sum_h w_h relu(q_h . k), IDX 5) over keys stored in fp8 with and without the rotation, against
// the float32 keys, for gaussian keys with one outlier channel of growing magnitude. e4m3 is a
// floating-point grid with one scale per key (amax / 448), so an outlier only costs precision once it
// pushes the other values below e4m3's normal range (2^-6 of 448, i.e. outliers > ~64x the others) into
// its 3-bit subnormals; the rotation spreads the outlier over all Di values first.
// Deterministic (seeded), pure JS through the storage codec (kv_row_codec.ts); no timing.
//   node --import tsx bench/kv_rotation_recall.ts [--keys 4096] [--topk 256]
import { parseArgs } from 'node:util';
import { PagedKVStorage } from '../src/kvcache/paged_kv_storage.ts';
import type { PagedKVStorageOptions } from '../src/kvcache/types.ts';

const { values } = parseArgs({ options: { keys: { type: 'string', default: '4096' }, topk: { type: 'string', default: '256' } } });
const T = Number(values.keys);
const TOPK = Number(values.topk);
const DI = 64;
const HEADS = 8;
const QUERIES = 16;
const OUTLIERS = [0, 10, 100, 1000, 10000];

function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()));
}

/** Keys [T, DI] as the storage reads them back (model basis) after an fp8 write with or without the rotation. */
function fp8RoundTrip(keys: Float32Array, rotate: boolean): Float32Array {
  const options = { numLayers: 1, numBlocks: T / 64, blockSize: 64, latentDim: 8, ropeDim: 0, indexerDim: DI, dtype: 'fp8', rotateIndexerKeys: rotate };
  const storage = new PagedKVStorage(options as PagedKVStorageOptions);
  const slots = Int32Array.from({ length: T }, (_, i) => i);
  storage.writeIndexerKey(0, slots, keys);
  return storage.readIndexerKey(0, slots);
}

/** The TOPK best keys for one query: q [HEADS, DI], w [HEADS]. */
function topk(keys: Float32Array, q: Float32Array, w: Float32Array): Set<number> {
  const scores = Float64Array.from({ length: T }, (_, t) => {
    let score = 0;
    for (let h = 0; h < HEADS; h++) {
      let dot = 0;
      for (let d = 0; d < DI; d++) dot += q[h * DI + d]! * keys[t * DI + d]!;
      score += w[h]! * Math.max(dot, 0);
    }
    return score;
  });
  const order = Array.from({ length: T }, (_, t) => t).sort((a, b) => scores[b]! - scores[a]! || a - b);
  return new Set(order.slice(0, TOPK));
}

function recall(ref: Set<number>, got: Set<number>): number {
  let hit = 0;
  for (const t of got) if (ref.has(t)) hit++;
  return hit / ref.size;
}

const lines = [
  `# fp8 indexer keys: top-${TOPK} recall of ${T} keys (Di ${DI}, ${HEADS} heads, ${QUERIES} queries) vs float32`,
  '',
  '| outlier channel (x the others RMS) | fp8 with the Hadamard rotation | fp8 without |',
  '| --- | --- | --- |',
];
for (const outlier of OUTLIERS) {
  const keys = gaussian(T * DI, 11);
  if (outlier > 0) for (let t = 0; t < T; t++) keys[t * DI + 5] = outlier * (t % 2 === 0 ? 1 : -1);
  const rotated = fp8RoundTrip(keys, true);
  const plain = fp8RoundTrip(keys, false);
  let [withRotation, without] = [0, 0];
  for (let i = 0; i < QUERIES; i++) {
    const q = gaussian(HEADS * DI, 100 + i);
    const w = gaussian(HEADS, 200 + i).map(Math.abs);
    const ref = topk(keys, q, w);
    withRotation += recall(ref, topk(rotated, q, w)) / QUERIES;
    without += recall(ref, topk(plain, q, w)) / QUERIES;
  }
  lines.push(`| ${outlier === 0 ? 'none' : outlier} | ${withRotation.toFixed(4)} | ${without.toFixed(4)} |`);
}
console.log(lines.join('\n'));
