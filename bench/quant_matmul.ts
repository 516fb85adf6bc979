// MatMulNBits vs float32 Gemm on one weight: time (median) and relative error against the Gemm of the
// dequantised weight, for bits 4/8, accuracy_level 0/4, M = 1 (decode) and M = 256 (prefill).
// Picks the accuracy level the model graphs use (see onnx/ops.ts QUANT_ACCURACY_LEVEL) and records the CPU.
//   node --import tsx bench/quant_matmul.ts [--n 2048] [--k 2048] [--reps 30] [--threads 2]
import { parseArgs } from 'node:util';
import { DataType, GraphBuilder } from '../src/engine/onnx/graph_builder.ts';
import { linear, quantizedLinear, type AccuracyLevel } from '../src/engine/onnx/ops.ts';
import { floatTensor, GraphSession } from '../src/engine/onnx/session.ts';
import { dequantizeMatrix, quantizeMatrix, type QuantBits } from '../src/engine/quant/block_quant.ts';
import { seededRandom } from '../tools/checkpoint/random_weights.ts';
import { cpuSummary } from './cpu.ts';
import { percentile } from './stats.ts';
import { loadAverage1 } from './machine/load.ts';

interface Row {
  readonly kind: string;
  readonly m: number;
  readonly ms: number;
  readonly relError: number;
}

async function timeGraph(model: Uint8Array, x: Float32Array, m: number, k: number, reps: number, threads: number): Promise<{ ms: number; y: Float32Array }> {
  const session = await GraphSession.create('bench', model, { numThreads: threads });
  const feed = { x: floatTensor(x, [m, k]) };
  let y: Float32Array = new Float32Array(0);
  const times: number[] = [];
  for (let i = 0; i < reps + 3; i++) {
    const t0 = performance.now();
    const [out] = await session.run(feed, ['y']);
    if (!out) throw new Error('the graph returned no output y');
    y = out;
    if (i >= 3) times.push(performance.now() - t0);
  }
  await session.release();
  return { ms: percentile(times, 50), y };
}

function graph(k: number, n: number, apply: (g: GraphBuilder, x: string) => string): Uint8Array {
  const g = new GraphBuilder('mm');
  const x = g.input('x', DataType.FLOAT, ['M', k]);
  g.markOutput(apply(g, x), 'y', DataType.FLOAT, ['M', n]);
  return g.build();
}

function relError(got: Float32Array, want: Float32Array): number {
  let e = 0;
  let r = 0;
  if (got.length !== want.length) throw new Error(`relError: ${got.length} vs ${want.length} values`);
  for (const [i, w] of want.entries()) {
    e += (got[i]! - w) ** 2;
    r += w ** 2;
  }
  return Math.sqrt(e / r);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '2048' },
      k: { type: 'string', default: '2048' },
      reps: { type: 'string', default: '30' },
      threads: { type: 'string', default: '2' },
    },
  });
  const [n, k, reps, threads] = [Number(values.n), Number(values.k), Number(values.reps), Number(values.threads)];
  const rng = seededRandom(1);
  const w = Float32Array.from({ length: n * k }, () => rng.normal() / Math.sqrt(k));
  const load0 = loadAverage1();
  const rows: Row[] = [];
  for (const m of [1, 256]) {
    const x = Float32Array.from({ length: m * k }, () => rng.normal());
    const f32 = await timeGraph(
      graph(k, n, (g, xi) => linear(g, xi, { data: w, shape: [n, k] })),
      x,
      m,
      k,
      reps,
      threads,
    );
    rows.push({ kind: 'f32 Gemm', m, ms: f32.ms, relError: 0 });
    for (const bits of [8, 4] as const satisfies readonly QuantBits[]) {
      const q = quantizeMatrix(w, n, k, bits);
      const ref = await timeGraph(
        graph(k, n, (g, xi) => linear(g, xi, { data: dequantizeMatrix(q), shape: [n, k] })),
        x,
        m,
        k,
        1,
        threads,
      );
      for (const level of [0, 4] as const satisfies readonly AccuracyLevel[]) {
        // bits 8 at level 0 dequantises the whole weight on every call: few repetitions suffice.
        const r = bits === 8 && level === 0 ? Math.min(reps, 5) : reps;
        const res = await timeGraph(
          graph(k, n, (g, xi) => quantizedLinear(g, xi, q, level)),
          x,
          m,
          k,
          r,
          threads,
        );
        rows.push({ kind: `int${bits} accuracy_level ${level}`, m, ms: res.ms, relError: relError(res.y, ref.y) });
      }
    }
  }
  const load1 = loadAverage1();
  process.stdout.write(`MatMulNBits, weight [N=${n}, K=${k}], ${threads} threads, median of ${reps}; ${cpuSummary()}\n`);
  process.stdout.write(
    `load average ${load0.toFixed(2)} -> ${load1.toFixed(2)}${load0 > 0.5 || load1 > 0.5 ? ' (LOADED machine: times are indicative only)' : ''}\n\n`,
  );
  process.stdout.write('| weight | M | ms | vs f32 | rel. error vs dequantised f32 |\n|---|---|---|---|---|\n');
  for (const row of rows) {
    const f32 = rows.find((r) => r.kind === 'f32 Gemm' && r.m === row.m)!;
    process.stdout.write(`| ${row.kind} | ${row.m} | ${row.ms.toFixed(3)} | ${(f32.ms / row.ms).toFixed(2)}x | ${row.relError.toExponential(1)} |\n`);
  }
}

await main();
