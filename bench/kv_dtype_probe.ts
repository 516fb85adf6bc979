// Where should KV quantisation run? Measures, for --kv-cache-dtype float32 / bfloat16 / fp8:
// (a) write: quantising a step's new cache rows in JS (PagedKVStorage.write*, per token) against doing it
//     inside a graph (the pre-attention graph would emit codes: Cast to BFLOAT16 + BitCast, or for e4m3
//     Cast + an arithmetic re-encoding, since ORT's CPU provider cannot BitCast float8);
// (b) read: the decode-time indexer score graph over all T keys and the sparse-MLA graph over K selected
//     rows, reading each pool dtype in place (kv_cache_graph.ts), against widening the rows in JS first.
// Usage: node --import tsx bench/kv_dtype_probe.ts [--quick]   (prints a markdown report; label it loaded
// or not from the load averages it prints)
import { cpus, loadavg } from 'node:os';
import { hadamardMatrix } from '../src/common/numeric/hadamard.ts';
import { buildIndexerSelectGraph } from '../src/engine/model/indexer.ts';
import { indexerKeyPoolFeed, latentPoolFeed } from '../src/engine/model/kv_cache_graph.ts';
import { buildAttentionGraph } from '../src/engine/model/mla.ts';
import { BITCAST_OPSET, DataType, GraphBuilder } from '../src/engine/onnx/graph_builder.ts';
import { floatTensor, GraphSession, int32Tensor, type Feed } from '../src/engine/onnx/session.ts';
import type { ModelConfig } from '../src/engine/checkpoint/types.ts';
import { KV_CACHE_DTYPES, type KVCacheDtype } from '../src/kvcache/kv_dtype.ts';
import { PagedKVStorage } from '../src/kvcache/paged_kv_storage.ts';
import type { PagedKVStorageOptions } from '../src/kvcache/types.ts';

const quick = process.argv.includes('--quick');
const REPS = quick ? 5 : 21;

interface Shape {
  readonly name: string;
  readonly layers: number;
  readonly heads: number;
  readonly L: number;
  readonly dr: number;
  readonly Hi: number;
  readonly Di: number;
  readonly topk: number;
}
const BENCH_MINI_DSA: Shape = { name: 'bench-mini-dsa', layers: 8, heads: 8, L: 256, dr: 32, Hi: 8, Di: 64, topk: 256 };
const V32_LAYER: Shape = { name: 'V3.2 dims (16 heads)', layers: 8, heads: 16, L: 512, dr: 64, Hi: 64, Di: 128, topk: 2048 };

/** Wall and process CPU milliseconds of one call (median wall of `reps`, mean CPU): on a shared machine CPU time is the steadier figure. */
interface Timing {
  readonly wall: number;
  readonly cpu: number;
}

async function median(fn: () => Promise<void> | void, reps = REPS): Promise<Timing> {
  await fn();
  const times: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  const c = process.cpuUsage(c0);
  return { wall: times.sort((a, b) => a - b)[Math.floor(reps / 2)]!, cpu: (c.user + c.system) / 1000 / reps }; // reps >= 1 times
}

function randomRows(n: number, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

function makeStorage(shape: Shape, dtype: KVCacheDtype, numBlocks: number, layers = shape.layers): PagedKVStorage {
  const options = { numLayers: layers, numBlocks, blockSize: 64, latentDim: shape.L + shape.dr, ropeDim: shape.dr, indexerDim: shape.Di, dtype };
  return new PagedKVStorage(options as PagedKVStorageOptions);
}

function modelConfig(shape: Shape): ModelConfig {
  return {
    numAttentionHeads: shape.heads,
    kvLoraRank: shape.L,
    qkRopeHeadDim: shape.dr,
    indexer: { nHeads: shape.Hi, headDim: shape.Di, topk: shape.topk },
  } as unknown as ModelConfig;
}

/** Slots of B sequences of T tokens each, laid out block by block in a shuffled block order. */
function slotTable(B: number, T: number): Int32Array {
  const blocks = Math.ceil(T / 64);
  const order = Array.from({ length: B * blocks }, (_, i) => i).sort((a, b) => ((a * 7919) % 1009) - ((b * 7919) % 1009));
  const idx = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) idx[b * T + t] = order[b * blocks + Math.floor(t / 64)]! * 64 + (t % 64); // index < B * blocks
  return idx;
}

// ---------- (a) write ----------

async function jsWrite(shape: Shape, dtype: KVCacheDtype, N: number): Promise<Timing> {
  const storage = makeStorage(shape, dtype, Math.ceil(N / 64));
  const rows = randomRows(N * (shape.L + shape.dr));
  const keys = randomRows(N * shape.Di, 2);
  const slots = Int32Array.from({ length: N }, (_, i) => i);
  return median(() => {
    for (let l = 0; l < shape.layers; l++) {
      storage.writeLatent(l, slots, rows);
      storage.writeIndexerKey(l, slots, keys);
    }
  });
}

/** e4m3 code (UINT8) of float32 values r already rounded to e4m3 (Cast -> FLOAT8E4M3FN -> FLOAT). */
function e4m3CodeOf(g: GraphBuilder, r: string): string {
  const u32 = (v: number): string => g.node('Cast', [g.initializer(Int32Array.of(v), [])], { to: DataType.UINT32 });
  const bits = g.node('BitCast', [r], { to: DataType.UINT32 });
  const a = g.node('Abs', [r]);
  const abits = g.node('BitCast', [a], { to: DataType.UINT32 });
  const normal = g.node('Sub', [
    g.node('Cast', [g.node('BitShift', [abits, u32(20)], { direction: 'RIGHT' })], { to: DataType.INT32 }),
    g.initializer(Int32Array.of(960), []),
  ]);
  const sub = g.node('Cast', [g.node('Mul', [a, g.scalar(512)])], { to: DataType.INT32 });
  const mag = g.node('Where', [g.node('Less', [a, g.scalar(2 ** -6)]), sub, normal]);
  const sign = g.node('Cast', [g.node('BitShift', [bits, u32(31)], { direction: 'RIGHT' })], { to: DataType.INT32 });
  const code = g.node('Add', [mag, g.node('Mul', [sign, g.initializer(Int32Array.of(128), [])])]);
  return g.node('Cast', [code], { to: DataType.UINT8 });
}

/** A graph turning new rows x [N, C] and keys k [N, Di] into the stored planes (what pre-attention would emit). */
function quantiseGraph(shape: Shape, dtype: 'bfloat16' | 'fp8'): Uint8Array {
  const { L, dr, Di } = shape;
  const g = new GraphBuilder(`quantise_${dtype}`, BITCAST_OPSET);
  const x = g.input('x', DataType.FLOAT, ['N', L + dr]);
  const k = g.input('k', DataType.FLOAT, ['N', Di]);
  const bf16 = (v: string): string => g.node('BitCast', [g.node('Cast', [v], { to: DataType.BFLOAT16 })], { to: DataType.UINT16 });
  if (dtype === 'bfloat16') {
    g.markOutput(bf16(x), 'latent', DataType.UINT16, ['N', L + dr]);
    g.markOutput(bf16(k), 'keys', DataType.UINT16, ['N', Di]);
    return g.build();
  }
  const fp8 = (v: string, groupShape: number[], outShape: number[]): { codes: string; scale: string } => {
    const grouped = g.node('Reshape', [v, g.int64s(groupShape)]);
    const amax = g.node('ReduceMax', [g.node('Abs', [grouped]), g.int64s([-1])], { keepdims: 1 });
    const raw = g.node('Div', [amax, g.scalar(448)]);
    const scale = g.node('Where', [g.node('Greater', [raw, g.scalar(0)]), raw, g.scalar(1)]);
    const r = g.node('Cast', [g.node('Cast', [g.node('Div', [grouped, scale])], { to: DataType.FLOAT8E4M3FN })], { to: DataType.FLOAT });
    return { codes: g.node('Reshape', [e4m3CodeOf(g, r), g.int64s(outShape)]), scale };
  };
  const [nope, rope] = g.nodeN('Split', [x, g.int64s([L, dr])], 2, { axis: 1 });
  if (nope === undefined || rope === undefined) throw new Error('Split gave fewer than 2 outputs');
  const lat = fp8(nope, [0, L / 128, 128], [0, L]);
  g.markOutput(lat.codes, 'nope', DataType.UINT8, ['N', L]);
  g.markOutput(lat.scale, 'nope_scale', DataType.FLOAT, ['N', L / 128, 1]);
  g.markOutput(bf16(rope), 'rope', DataType.UINT16, ['N', dr]);
  const rotated = g.node('MatMul', [k, g.initializer(hadamardMatrix(Di), [Di, Di])]);
  const key = fp8(rotated, [0, 1, Di], [0, Di]);
  g.markOutput(key.codes, 'keys', DataType.UINT8, ['N', Di]);
  g.markOutput(key.scale, 'key_scale', DataType.FLOAT, ['N', 1, 1]);
  return g.build();
}

async function graphWrite(shape: Shape, dtype: 'bfloat16' | 'fp8', N: number): Promise<Timing> {
  const session = await GraphSession.create('q', quantiseGraph(shape, dtype));
  const feed = { x: floatTensor(randomRows(N * (shape.L + shape.dr)), [N, shape.L + shape.dr]), k: floatTensor(randomRows(N * shape.Di, 2), [N, shape.Di]) };
  const outputs = dtype === 'bfloat16' ? ['latent', 'keys'] : ['nope', 'nope_scale', 'rope', 'keys', 'key_scale'];
  const ms = await median(async () => {
    for (let l = 0; l < shape.layers; l++) await session.runTyped(feed, outputs);
  });
  await session.release();
  return ms;
}

// ---------- (b) read ----------

async function indexerRead(shape: Shape, dtype: KVCacheDtype, B: number, T: number): Promise<Timing> {
  const storage = makeStorage(shape, dtype, Math.ceil((B * T) / 64) + 1, 1);
  const all = Int32Array.from({ length: storage.numSlots }, (_, i) => i);
  storage.writeIndexerKey(0, all, randomRows(storage.numSlots * shape.Di, 3));
  const session = await GraphSession.create('idx', buildIndexerSelectGraph(modelConfig(shape).indexer!, true, dtype));
  const feed: Feed = {
    ...indexerKeyPoolFeed(storage.indexerKeyPool(0), shape.Di),
    iq: floatTensor(randomRows(B * shape.Hi * shape.Di, 4), [B, 1, shape.Hi, shape.Di]),
    iw: floatTensor(randomRows(B * shape.Hi, 5), [B, 1, shape.Hi]),
    idx: int32Tensor(slotTable(B, T), [B, T]),
    qpos: int32Tensor(new Int32Array(B).fill(T - 1), [B, 1]),
  };
  const ms = await median(async () => void (await session.runInt32(feed, ['sel'])));
  await session.release();
  return ms;
}

async function attentionRead(shape: Shape, dtype: KVCacheDtype, B: number, K: number, widenInJs: boolean): Promise<Timing> {
  const C = shape.L + shape.dr;
  const storage = makeStorage(shape, dtype, Math.ceil((B * K * 4) / 64), 1);
  const all = Int32Array.from({ length: storage.numSlots }, (_, i) => i);
  storage.writeLatent(0, all, randomRows(storage.numSlots * C, 6));
  const idx = Int32Array.from({ length: B * K }, (_, i) => (i * 2654435761) % storage.numSlots);
  const session = await GraphSession.create('mla', buildAttentionGraph(modelConfig(shape), 'dense', widenInJs ? 'float32' : dtype));
  const common = {
    q: floatTensor(randomRows(B * shape.heads * C, 7), [B, 1, shape.heads, C]),
    qpos: int32Tensor(new Int32Array(B).fill(K), [B, 1]), // every gathered row visible, as a decode's topk rows
  };
  const ms = await median(async () => {
    // widenInJs: dequantise the K selected rows in JS into a compact float32 block, attend over that.
    const feed: Feed = widenInJs
      ? {
          ...common,
          cache: floatTensor(storage.readLatent(0, idx), [B * K, C]),
          idx: int32Tensor(
            Int32Array.from({ length: B * K }, (_, i) => i),
            [B, K],
          ),
        }
      : { ...common, ...latentPoolFeed(storage.latentPool(0), { kvLoraRank: shape.L, qkRopeHeadDim: shape.dr }), idx: int32Tensor(idx, [B, K]) };
    await session.run(feed, ['o']);
  });
  await session.release();
  return ms;
}

// ---------- report ----------

const ms = (v: number): string => v.toFixed(v < 1 ? 3 : 2);
const f = (t: Timing): string => `${ms(t.wall)} (${ms(t.cpu)})`;
const out: string[] = [];
const load0 = loadavg();
out.push(`# KV dtype placement probe (${new Date().toISOString()})`, '');
out.push(`CPU: ${cpus()[0]?.model} x ${cpus().length}; load average before: ${load0.map((v) => v.toFixed(2)).join(' ')}`, '');
out.push(`Cells: median wall ms of ${REPS} runs (mean process CPU ms per run, ORT threads included).`, '');

for (const shape of [BENCH_MINI_DSA, V32_LAYER]) {
  out.push(`## ${shape.name}: L ${shape.L}, dr ${shape.dr}, Hi ${shape.Hi}, Di ${shape.Di}, ${shape.layers} layers`, '');
  out.push('(a) write, ms for all layers: JS per-token quantise (PagedKVStorage.write*) vs a quantising graph run per layer', '');
  out.push('| rows N | dtype | JS ms | graph ms |', '| --- | --- | --- | --- |');
  for (const N of [16, 512]) {
    for (const dtype of KV_CACHE_DTYPES) {
      const js = await jsWrite(shape, dtype, N);
      const graph = dtype === 'float32' ? null : await graphWrite(shape, dtype, N);
      out.push(`| ${N} | ${dtype} | ${f(js)} | ${graph === null ? '-' : f(graph)} |`);
    }
  }
  out.push('', '(b1) indexer decode scores + top-k over all T keys, one layer, ms', '');
  out.push('| B x T | float32 | bfloat16 | fp8 |', '| --- | --- | --- | --- |');
  for (const [B, T] of quick
    ? ([[1, 4096]] as const)
    : ([
        [1, 4096],
        [1, 16384],
        [16, 4096],
      ] as const)) {
    const cells = [];
    for (const dtype of KV_CACHE_DTYPES) cells.push(f(await indexerRead(shape, dtype, B, T)));
    out.push(`| ${B} x ${T} | ${cells.join(' | ')} |`);
  }
  out.push('', `(b2) sparse MLA decode over K = ${shape.topk} selected rows, one layer, ms (in graph / rows widened in JS first)`, '');
  out.push('| B | float32 | bfloat16 | fp8 |', '| --- | --- | --- | --- |');
  for (const B of quick ? [1] : [1, 16]) {
    const cells = [];
    for (const dtype of KV_CACHE_DTYPES) {
      const inGraph = await attentionRead(shape, dtype, B, shape.topk, false);
      cells.push(dtype === 'float32' ? f(inGraph) : `${f(inGraph)} / ${f(await attentionRead(shape, dtype, B, shape.topk, true))}`);
    }
    out.push(`| ${B} | ${cells.join(' | ')} |`);
  }
  out.push('');
}
out.push(
  `load average after: ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')}`,
);
console.log(out.join('\n'));
