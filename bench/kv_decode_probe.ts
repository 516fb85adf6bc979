// How should a graph widen e4m3 cache codes (onnxruntime-node passes them as UINT8) to float32?
// Each variant gathers rows of a uint8 plane [P, D] by idx [B, T], decodes them, and multiplies by a
// query [B, D, H] (the indexer's score MatMul, or the MLA latent scores): the decode is measured where it
// is consumed. Variants:
//   f32     a float32 plane gathered as is (the target to match)
//   bits    sign << 24 | magnitude << 20 with BitwiseAnd / BitShift, bit-cast to float, * 2^120 (the
//           emitter before this probe)
//   lut32   Cast(codes, INT32) -> Gather(256-entry float32 table)
//   lut64   Cast(codes, INT64) -> Gather(256-entry float32 table)
//   ge32    GatherElements from a [256, 1] table
//   pair    the plane viewed as UINT16 (two codes per index) -> Cast INT32 -> Gather([65536, 2] table)
//   pairge  the same through GatherElements
//   f8cast  BitCast(codes, FLOAT8E4M3FN) -> Cast FLOAT (ONNX opset 26; exists only if ORT's CPU BitCast has float8)
//   f8value Cast(float, FLOAT8E4M3FN) -> Cast FLOAT on float32 input: the cost of ORT's float8 Cast itself
//           (not a usable decode: nothing turns the UINT8 codes into a float8 tensor; it shows what one would cost)
//   flt32 / flt16 / clip32 / dq   the bits built with float arithmetic (decodeFloat, decodeDq below);
//           dq is what kv_cache_graph.ts emits
// Every decode variant is checked bit-exact against the JS table (fp8_e4m3.ts) before it is timed.
// Usage: node --import tsx bench/kv_decode_probe.ts [--reps 21] [--only f32,bits,dq]
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { E4M3_VALUES } from '../src/common/numeric/fp8_e4m3.ts';
import { BITCAST_OPSET, DataType, type GraphBuilder, GraphBuilder as Builder } from '../src/engine/onnx/graph_builder.ts';
import { floatTensor, GraphSession, int32Tensor, uint16Tensor, uint8Tensor, type Feed } from '../src/engine/onnx/session.ts';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '21' }, only: { type: 'string' } } });
const REPS = Number(values.reps);

type Variant = 'f32' | 'bits' | 'lut32' | 'lut64' | 'ge32' | 'pair' | 'pairge' | 'f8cast' | 'f8value' | 'flt32' | 'flt16' | 'clip32' | 'dq' | 'dq8';
const ALL: readonly Variant[] = ['f32', 'bits', 'lut32', 'lut64', 'ge32', 'pair', 'pairge', 'f8cast', 'f8value', 'flt32', 'flt16', 'clip32', 'dq', 'dq8'];
const VARIANTS: readonly Variant[] = values.only ? (values.only.split(',') as Variant[]) : ALL;

/** Float32 values of every code pair, little-endian: index lo | hi << 8 -> [value(lo), value(hi)]. */
function pairTable(): Float32Array {
  const t = new Float32Array(65536 * 2);
  for (let i = 0; i < 65536; i++) {
    t[2 * i] = E4M3_VALUES[i & 0xff]!;
    t[2 * i + 1] = E4M3_VALUES[i >> 8]!;
  }
  return t;
}

function decodeBits(g: GraphBuilder, codes: string): string {
  const u32 = (v: number): string => g.node('Cast', [g.initializer(Int32Array.of(v), [])], { to: DataType.UINT32 });
  const c = g.node('Cast', [codes], { to: DataType.UINT32 });
  const sign = g.node('BitShift', [g.node('BitwiseAnd', [c, u32(0x80)]), u32(24)], { direction: 'LEFT' });
  const magnitude = g.node('BitShift', [g.node('BitwiseAnd', [c, u32(0x7f)]), u32(20)], { direction: 'LEFT' });
  return g.node('Mul', [g.node('BitCast', [g.node('BitwiseOr', [sign, magnitude])], { to: DataType.FLOAT }), g.scalar(2 ** 120)]);
}

/**
 * Float arithmetic instead of bitwise ops (ORT's CPU Cast and float Mul/Add/Floor are vectorised; its
 * BitwiseAnd/BitShift are not). With c the code as a float and s = floor(c / 128) its sign bit:
 *   flt32: float32 bits 2^20 * (c + 1920 s) = s << 31 | (c & 0x7f) << 20, the value * 2^-120
 *   flt16: float16 bits 128 * (c + 128 s) = s << 15 | (c & 0x7f) << 7, the value * 2^-8
 *   clip32: as flt32 with s = Clip(c - 127, 0, 1)
 */
function decodeFloat(g: GraphBuilder, codes: string, variant: 'flt32' | 'flt16' | 'clip32'): string {
  const c = g.node('Cast', [codes], { to: DataType.FLOAT });
  const s =
    variant === 'clip32'
      ? g.node('Clip', [g.node('Sub', [c, g.scalar(127)]), g.scalar(0), g.scalar(1)])
      : g.node('Floor', [g.node('Mul', [c, g.scalar(1 / 128)])]);
  if (variant === 'flt16') {
    const bits = g.node('Mul', [g.node('Add', [c, g.node('Mul', [s, g.scalar(128)])]), g.scalar(128)]);
    const half = g.node('BitCast', [g.node('Cast', [bits], { to: DataType.UINT16 })], { to: 10 /* FLOAT16 */ });
    return g.node('Mul', [g.node('Cast', [half], { to: DataType.FLOAT }), g.scalar(256)]);
  }
  const bits = g.node('Mul', [g.node('Add', [c, g.node('Mul', [s, g.scalar(1920)])]), g.scalar(2 ** 20)]);
  return g.node('Mul', [g.node('BitCast', [g.node('Cast', [bits], { to: DataType.UINT32 })], { to: DataType.FLOAT }), g.scalar(2 ** 120)]);
}

/**
 * dq: the flt32 bits from two DequantizeLinear nodes (uint8 -> float in one vectorised pass each):
 * 2^20 c + Clip(K (c - 127), 0, K) with K = 1920 * 2^20, i.e. 2^20 (c + 1920 s) for integer codes c.
 */
function decodeDq(g: GraphBuilder, codes: string, clipCodes = false): string {
  const K = 1920 * 2 ** 20;
  const zero = g.initializer(Uint8Array.of(0), []);
  const high = g.node('DequantizeLinear', [codes, g.scalar(2 ** 20), zero]);
  const u8 = (v: number): string => g.initializer(Uint8Array.of(v), []);
  const sign = clipCodes
    ? g.node('DequantizeLinear', [g.node('Clip', [codes, u8(127), u8(128)]), g.scalar(K), u8(127)])
    : g.node('Clip', [g.node('DequantizeLinear', [codes, g.scalar(K), u8(127)]), g.scalar(0), g.scalar(K)]);
  const bits = g.node('Cast', [g.node('Add', [high, sign])], { to: DataType.UINT32 });
  return g.node('Mul', [g.node('BitCast', [bits], { to: DataType.FLOAT }), g.scalar(2 ** 120)]);
}

/** Graph: rows = decode(Gather(plane, idx)) [B, T, D]; out = rows @ q [B, T, H]. */
function buildGraph(variant: Variant, D: number, H: number, output: 'rows' | 'out'): Uint8Array {
  const g = new Builder(`probe_${variant}`, BITCAST_OPSET);
  const idx = g.input('idx', DataType.INT32, ['B', 'T']);
  const q = g.input('q', DataType.FLOAT, ['B', D, H]);
  let rows: string;
  if (variant === 'f32' || variant === 'f8value') {
    const plane = g.input('plane', DataType.FLOAT, ['P', D]);
    rows = g.node('Gather', [plane, idx], { axis: 0 });
    if (variant === 'f8value') rows = g.node('Cast', [g.node('Cast', [rows], { to: DataType.FLOAT8E4M3FN })], { to: DataType.FLOAT });
  } else if (variant === 'pair' || variant === 'pairge') {
    const plane = g.input('plane', DataType.UINT16, ['P', D / 2]);
    const codes = g.node('Cast', [g.node('Gather', [plane, idx], { axis: 0 })], { to: DataType.INT32 });
    const table = g.initializer(pairTable(), [65536, 2]);
    const values =
      variant === 'pair'
        ? g.node('Gather', [table, codes], { axis: 0 })
        : g.node('GatherElements', [table, g.node('Expand', [g.node('Reshape', [codes, g.int64s([-1, 1])]), g.int64s([1, 2])])], { axis: 0 });
    rows = g.node('Reshape', [values, g.node('Concat', [g.node('Shape', [idx]), g.int64s([D])], { axis: 0 })]);
  } else if (variant === 'ge32') {
    const plane = g.input('plane', DataType.UINT8, ['P', D]);
    const codes = g.node('Cast', [g.node('Gather', [plane, idx], { axis: 0 })], { to: DataType.INT32 });
    const table = g.initializer(E4M3_VALUES.slice(), [256, 1]);
    const values = g.node('GatherElements', [table, g.node('Reshape', [codes, g.int64s([-1, 1])])], { axis: 0 });
    rows = g.node('Reshape', [values, g.node('Concat', [g.node('Shape', [idx]), g.int64s([D])], { axis: 0 })]);
  } else {
    const plane = g.input('plane', DataType.UINT8, ['P', D]);
    const codes = g.node('Gather', [plane, idx], { axis: 0 });
    if (variant === 'bits') rows = decodeBits(g, codes);
    else if (variant === 'dq' || variant === 'dq8') rows = decodeDq(g, codes, variant === 'dq8');
    else if (variant === 'flt32' || variant === 'flt16' || variant === 'clip32') rows = decodeFloat(g, codes, variant);
    else if (variant === 'f8cast') rows = g.node('Cast', [g.node('BitCast', [codes], { to: DataType.FLOAT8E4M3FN })], { to: DataType.FLOAT });
    else {
      const table = g.initializer(E4M3_VALUES.slice(), [256]);
      rows = g.node('Gather', [table, g.node('Cast', [codes], { to: variant === 'lut32' ? DataType.INT32 : DataType.INT64 })], { axis: 0 });
    }
  }
  if (output === 'rows') g.markOutput(rows, 'rows', DataType.FLOAT, ['B', 'T', D]);
  else g.markOutput(g.node('MatMul', [rows, q]), 'out', DataType.FLOAT, ['B', 'T', H]);
  return g.build();
}

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

interface Case {
  readonly name: string;
  readonly B: number;
  readonly T: number;
  readonly D: number;
  readonly H: number;
}
const CASES: readonly Case[] = [
  { name: 'indexer 1 x 16384 (Di 64, Hi 8)', B: 1, T: 16384, D: 64, H: 8 },
  { name: 'indexer 16 x 4096 (Di 64, Hi 8)', B: 16, T: 4096, D: 64, H: 8 },
  { name: 'latent K=256 B=1 (L 256, H 8)', B: 1, T: 256, D: 256, H: 8 },
  { name: 'latent K=256 B=16 (L 256, H 8)', B: 16, T: 256, D: 256, H: 8 },
  { name: 'V3.2 indexer 1 x 16384 (Di 128, Hi 64)', B: 1, T: 16384, D: 128, H: 64 },
  { name: 'V3.2 latent K=2048 B=1 (L 512, H 16)', B: 1, T: 2048, D: 512, H: 16 },
];

function feedFor(variant: Variant, c: Case, codes: Uint8Array, idx: Int32Array, q: Float32Array): Feed {
  const P = codes.length / c.D;
  const common = { idx: int32Tensor(idx, [c.B, c.T]), q: floatTensor(q, [c.B, c.D, c.H]) };
  if (variant === 'f32' || variant === 'f8value')
    return {
      ...common,
      plane: floatTensor(
        Float32Array.from(codes, (b) => E4M3_VALUES[b]!),
        [P, c.D],
      ),
    };
  if (variant === 'pair' || variant === 'pairge')
    return { ...common, plane: uint16Tensor(new Uint16Array(codes.buffer, codes.byteOffset, codes.length / 2), [P, c.D / 2]) };
  return { ...common, plane: uint8Tensor(codes, [P, c.D]) };
}

interface Prepared {
  readonly session: GraphSession | null;
  readonly feed: Feed | null;
  /** Why the variant is not timed (no ORT kernel, or not bit-exact). */
  readonly note: string;
}

const firstLine = (err: unknown): string => (err as Error).message.split('\n')[0]!.slice(0, 60);

/** Builds the variant's graphs, checks its decode bit-exact against the JS table, and returns the timed session. */
async function prepare(variant: Variant, c: Case, codes: Uint8Array, idx: Int32Array): Promise<Prepared> {
  const feed = feedFor(variant, c, codes, idx, random(c.B * c.D * c.H, 9));
  let check: GraphSession;
  try {
    check = await GraphSession.create(variant, buildGraph(variant, c.D, c.H, 'rows'));
  } catch (err) {
    return { session: null, feed: null, note: `n/a (${firstLine(err)})` };
  }
  try {
    const [rows] = await check.run(feed, ['rows']);
    for (let r = 0; r < c.B * c.T; r++) {
      for (let d = 0; d < c.D; d++) {
        const want = E4M3_VALUES[codes[idx[r]! * c.D + d]!]!;
        if (!Object.is(rows[r * c.D + d], want)) return { session: null, feed: null, note: `WRONG at row ${r} col ${d}: ${rows[r * c.D + d]} != ${want}` };
      }
    }
  } catch (err) {
    return { session: null, feed: null, note: `n/a (${firstLine(err)})` };
  } finally {
    await check.release();
  }
  return { session: await GraphSession.create(variant, buildGraph(variant, c.D, c.H, 'out')), feed, note: '' };
}

const median = (v: number[]): number => v.sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

/** Cells for one case: the variants run in interleaved rounds, so load drift hits all of them alike. */
async function timeCase(c: Case): Promise<string[]> {
  const P = c.B * c.T + 64;
  // Every finite code (NaN codes excluded: the storage writes them only into NaN-scaled groups).
  const codes = Uint8Array.from({ length: P * c.D }, (_, i) => {
    const b = (Math.imul(i, 2654435761) >>> 13) & 0xff;
    return (b & 0x7f) === 0x7f ? b ^ 1 : b;
  });
  const idx = Int32Array.from({ length: c.B * c.T }, (_, i) => (Math.imul(i, 40503) >>> 0) % P);
  const prepared: Prepared[] = [];
  for (const v of VARIANTS) prepared.push(await prepare(v, c, codes, idx));
  const wall: number[][] = prepared.map(() => []);
  const cpu: number[][] = prepared.map(() => []);
  for (let round = 0; round < REPS + 2; round++) {
    for (const [i, p] of prepared.entries()) {
      if (p.session === null || p.feed === null) continue;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await p.session.run(p.feed, ['out']);
      const t = performance.now() - t0;
      const used = process.cpuUsage(c0);
      if (round >= 2) {
        wall[i]!.push(t);
        cpu[i]!.push((used.user + used.system) / 1000);
      }
    }
  }
  for (const p of prepared) await p.session?.release();
  return prepared.map((p, i) => (p.session === null ? p.note : `${median(wall[i]!).toFixed(2)} (${median(cpu[i]!).toFixed(2)})`));
}

const out: string[] = [];
const load0 = loadavg();
out.push(`# e4m3 decode in a graph (${new Date().toISOString()})`, '');
out.push(`CPU ${cpus()[0]?.model} x ${cpus().length}; load average before ${load0.map((v) => v.toFixed(2)).join(' ')}`, '');
out.push(`Cells: median wall ms (median process CPU ms) of ${REPS} interleaved runs of Gather + decode + MatMul.`, '');
out.push(`| case | ${VARIANTS.join(' | ')} |`, `| --- |${VARIANTS.map(() => ' --- |').join('')}`);
for (const c of CASES) {
  out.push(`| ${c.name} | ${(await timeCase(c)).join(' | ')} |`);
  process.stderr.write(`${out[out.length - 1]}\n`);
}
out.push(
  '',
  `load average after ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')}`,
);
console.log(out.join('\n'));
