// Does the engine's batch-1 decode need kernels of its own? Times one GEMV y = W x (batch 1, decode's
// shape) as the engine runs it today (a one-node ONNX Runtime graph: MatMulNBits at the engine's accuracy
// level for int4, Gemm for float32) against bench/native/gemv.c (AVX-512, the engine's int4 layout read
// as stored: 20 bytes per 32 weights against the 24 MatMulNBits holds), on the weight shapes of
// bench-lite (DeepSeek-V2-Lite) and bench-mini, interleaved in rounds; medians (min-max) and the GB/s
// each reaches over the bytes it must read. A probe for a decision, not a target: nothing here runs in
// the server or in CI.
// Writes bench/results/latest-native-gemv.md (and stdout).
//   node --import tsx bench/native_gemv.ts [--rounds 7] [--threads 1,2]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchCacheRoot } from './cache_dir.ts';
import { LoadMonitor, loadVerdict } from './machine/load.ts';
import { formatSpread, spread } from './stats.ts';
import { blobBytes, kBlocks, type QuantizedMatrix } from '../src/common/quantized.ts';
import { DataType, GraphBuilder } from '../src/engine/onnx/graph_builder.ts';
import { linear, QUANT_ACCURACY_LEVEL, withAccuracyLevel } from '../src/engine/onnx/ops.ts';
import { floatTensor, GraphSession } from '../src/engine/onnx/session.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, threads: { type: 'string', default: '1,2' } } });
const ROUNDS = Number(values.rounds);
const THREAD_COUNTS = values.threads.split(',').map(Number);
const RESULT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest-native-gemv.md');

interface NativeGemv {
  gemvQ4(packed: Uint8Array, scales: Float32Array, x: Float32Array, y: Float32Array, rows: number, cols: number, threads: number): void;
  gemvQ4Vnni(packed: Uint8Array, scales: Float32Array, x: Float32Array, y: Float32Array, rows: number, cols: number, threads: number): void;
  gemvF32(w: Float32Array, x: Float32Array, y: Float32Array, rows: number, cols: number, threads: number): void;
}

function loadNative(): NativeGemv {
  const source = path.join(path.dirname(fileURLToPath(import.meta.url)), 'native', 'gemv.c');
  // gemv.c includes the server's src/native/thread_pool.h: both are part of the key.
  const pool = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'native', 'thread_pool.h');
  const hash = createHash('sha256').update(readFileSync(source)).update(readFileSync(pool)).digest('hex').slice(0, 12);
  const dir = path.join(benchCacheRoot(), 'probes');
  const lib = path.join(dir, `gemv-${hash}.node`);
  if (!existsSync(lib)) {
    const include = [path.join(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node'].find((d) =>
      existsSync(path.join(d, 'node_api.h')),
    );
    if (include === undefined) throw new Error("node's headers (node_api.h) not found next to the node binary or in /usr/include/node");
    mkdirSync(dir, { recursive: true });
    const tmp = `${lib}.${process.pid}.tmp`;
    const res = spawnSync('gcc', ['-O3', '-march=native', '-shared', '-fPIC', '-pthread', `-I${include}`, source, '-o', tmp], { encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`gcc failed on ${source}: ${res.stderr || res.error}`);
    renameSync(tmp, lib);
  }
  return createRequire(import.meta.url)(lib) as NativeGemv;
}

let seed = 12345;
function random(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
}

function randomInt4(rows: number, cols: number): QuantizedMatrix {
  const blocks = rows * kBlocks(cols);
  const packed = new Uint8Array(blocks * blobBytes(4));
  for (let i = 0; i < packed.length; i++) packed[i] = (random() * 256) | 0;
  const scales = new Float32Array(blocks);
  for (let i = 0; i < blocks; i++) scales[i] = (random() - 0.5) * 0.02;
  return { bits: 4, rows, cols, packed, scales };
}

/** x with each block of 32 reordered [even 16, odd 16], as gemv.c reads it (zero-padded to whole blocks). */
function deinterleave(x: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(kBlocks(cols) * 32);
  for (let c = 0; c < cols; c++) out[Math.floor(c / 32) * 32 + ((c % 32) % 2) * 16 + Math.floor((c % 32) / 2)] = x[c]!;
  return out;
}

/** y[r] in float64 from the stored codes: the reference both sides are checked against. */
function referenceRow(w: QuantizedMatrix, x: Float32Array, r: number): number {
  const kb = kBlocks(w.cols);
  let y = 0;
  for (let b = 0; b < kb; b++)
    for (let i = 0; i < 16; i++) {
      const byte = w.packed[(r * kb + b) * 16 + i]!;
      const c = b * 32 + 2 * i;
      const s = w.scales[r * kb + b]!;
      if (c < w.cols) y += ((byte & 15) - 8) * s * x[c]!;
      if (c + 1 < w.cols) y += ((byte >> 4) - 8) * s * x[c + 1]!;
    }
  return y;
}

interface Case {
  readonly name: string;
  readonly bytesOrt: number;
  readonly bytesNative: number;
  readonly ort: () => Promise<Float32Array>;
  readonly native: () => Float32Array;
  /** int4 only: the kernel with int8 activations and VNNI dot products. */
  readonly nativeVnni: (() => Float32Array) | null;
  readonly check: (y: Float32Array) => number;
}

async function int4Case(name: string, rows: number, cols: number, native: NativeGemv, threads: number): Promise<Case> {
  const w = randomInt4(rows, cols);
  const x = Float32Array.from({ length: cols }, () => random() - 0.5);
  const g = new GraphBuilder(name, 21);
  const xin = g.input('x', DataType.FLOAT, [1, cols]);
  g.markOutput(
    withAccuracyLevel(QUANT_ACCURACY_LEVEL, () => linear(g, xin, w)),
    'y',
    DataType.FLOAT,
    [1, rows],
  );
  const session = await GraphSession.create(name, g.build(), { numThreads: threads });
  const feed = { x: floatTensor(x, [1, cols]) };
  const xd = deinterleave(x, cols);
  const y = new Float32Array(rows);
  const probeRows = [0, rows >> 1, rows - 1];
  return {
    name: `${name} int4 [${rows}, ${cols}], ${threads}t`,
    bytesOrt: rows * kBlocks(cols) * 24, // codes 16 + scale 4 + MLAS's block sum 4
    bytesNative: w.packed.length + w.scales.length * 4,
    ort: async () => (await session.run(feed, ['y']))[0],
    native: () => (native.gemvQ4(w.packed, w.scales, xd, y, rows, cols, threads), y),
    nativeVnni: () => (native.gemvQ4Vnni(w.packed, w.scales, x, y, rows, cols, threads), y),
    check: (out) => Math.max(...probeRows.map((r) => Math.abs(out[r]! - referenceRow(w, x, r)) / (Math.abs(referenceRow(w, x, r)) + 1e-3))),
  };
}

async function f32Case(name: string, rows: number, cols: number, native: NativeGemv, threads: number): Promise<Case> {
  const data = Float32Array.from({ length: rows * cols }, () => random() - 0.5);
  const x = Float32Array.from({ length: cols }, () => random() - 0.5);
  const g = new GraphBuilder(name, 21);
  const xin = g.input('x', DataType.FLOAT, [1, cols]);
  g.markOutput(linear(g, xin, { data, shape: [rows, cols] }), 'y', DataType.FLOAT, [1, rows]);
  const session = await GraphSession.create(name, g.build(), { numThreads: threads });
  const feed = { x: floatTensor(x, [1, cols]) };
  const y = new Float32Array(rows);
  const ref = (r: number): number => data.subarray(r * cols, (r + 1) * cols).reduce((a, v, c) => a + v * x[c]!, 0);
  return {
    name: `${name} f32 [${rows}, ${cols}], ${threads}t`,
    bytesOrt: rows * cols * 4,
    bytesNative: rows * cols * 4,
    ort: async () => (await session.run(feed, ['y']))[0],
    native: () => (native.gemvF32(data, x, y, rows, cols, threads), y),
    nativeVnni: null,
    check: (out) => Math.max(...[0, rows - 1].map((r) => Math.abs(out[r]! - ref(r)) / (Math.abs(ref(r)) + 1e-3))),
  };
}

const native = loadNative();
const cases: Case[] = [];
for (const t of THREAD_COUNTS)
  cases.push(
    await int4Case('bench-lite lm_head', 102400, 2048, native, t),
    await int4Case('bench-lite dense gate/up', 2 * 10944, 2048, native, t),
    await int4Case('bench-lite dense down', 2048, 10944, native, t),
    await int4Case('bench-lite expert gate/up', 2 * 1408, 2048, native, t),
    await f32Case('bench-mini lm_head', 32000, 512, native, t),
    await f32Case('bench-mini dense gate/up', 2 * 1408, 512, native, t),
    await f32Case('bench-mini q_b', 8 * 96, 256, native, t),
  );

const load0 = loadavg()[0]!;
const monitor = await LoadMonitor.afterIdleCheck();
const times = new Map<string, { ort: number[]; native: number[]; vnni: number[]; errOrt: number; errNative: number; errVnni: number }>();
for (const c of cases)
  times.set(c.name, {
    ort: [],
    native: [],
    vnni: [],
    errOrt: c.check(await c.ort()),
    errNative: c.check(c.native()),
    errVnni: c.nativeVnni ? c.check(c.nativeVnni()) : NaN,
  });
const REPS = 20;
for (let r = 0; r < ROUNDS; r++)
  for (const c of cases) {
    const t = times.get(c.name)!;
    let t0 = performance.now();
    for (let i = 0; i < REPS; i++) await c.ort();
    t.ort.push(((performance.now() - t0) / REPS) * 1000);
    t0 = performance.now();
    for (let i = 0; i < REPS; i++) c.native();
    t.native.push(((performance.now() - t0) / REPS) * 1000);
    if (c.nativeVnni) {
      t0 = performance.now();
      for (let i = 0; i < REPS; i++) c.nativeVnni();
      t.vnni.push(((performance.now() - t0) / REPS) * 1000);
    }
  }

function vnniColumns(c: Case, us: readonly number[], ortMedian: number): string {
  if (us.length === 0) return '- | - | -';
  const v = spread(us);
  return `${formatSpread(v, 0)} | ${(c.bytesNative / v.median / 1e3).toFixed(1)} | ${(ortMedian / v.median).toFixed(2)}`;
}

const load = monitor.stop();
const verdict = loadVerdict(load);
const lines = [
  `# Batch-1 GEMV: ONNX Runtime as the engine runs it vs a native AVX-512 kernel (${new Date().toISOString()})`,
  '',
  `CPU ${cpus()[0]?.model} x ${cpus().length}, ${THREAD_COUNTS.join(' and ')} thread(s) (the same count for ORT's pool and the native one; the native workers spin ~20k pauses before sleeping, ORT's do not spin: the engine's setting); load average ${load0.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after. ${ROUNDS} interleaved rounds of ${REPS} calls each; µs per call, median (min-max, n). int4: MatMulNBits accuracy level ${QUANT_ACCURACY_LEVEL}; GB/s over the bytes each must read (MatMulNBits 24 B per 32 weights, the native kernel 20).`,
  '',
  verdict.loaded
    ? `LOADED (${verdict.reasons.join('; ')}): ratios only, taken within rounds.`
    : `Quiet: other processes used ${(load.othersShare * 100).toFixed(0)}% of the CPUs during the run (worst ~5 s window ${(load.othersShareMaxWindow * 100).toFixed(0)}%).`,
  '',
  '"native" converts the int4 codes to float32 and multiplies by float32 activations (exact); "native int8" quantises the activations to int8 per block of 32 and uses VNNI dot products, as MatMulNBits level 4 and llama.cpp\'s Q4_0 x Q8_0 do.',
  '',
  '| weight | ORT µs | ORT GB/s | native µs | native GB/s | ORT / native | native int8 µs | native int8 GB/s | ORT / native int8 | max rel. error ORT, native, native int8 |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];
for (const c of cases) {
  const t = times.get(c.name)!;
  const o = spread(t.ort);
  const n = spread(t.native);
  lines.push(
    `| ${c.name} | ${formatSpread(o, 0)} | ${(c.bytesOrt / o.median / 1e3).toFixed(1)} | ${formatSpread(n, 0)} | ${(c.bytesNative / n.median / 1e3).toFixed(1)} | ${(o.median / n.median).toFixed(2)} | ${vnniColumns(c, t.vnni, o.median)} | ${t.errOrt.toExponential(1)}, ${t.errNative.toExponential(1)}, ${Number.isNaN(t.errVnni) ? '-' : t.errVnni.toExponential(1)} |`,
  );
}
writeFileSync(RESULT, `${lines.join('\n')}\n`);
process.stdout.write(`${lines.join('\n')}\n`);
