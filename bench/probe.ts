// Machine limits measured at the start of every bench run, through the same ONNX Runtime the
// engine uses: read bandwidth (a ReduceSum streaming a 512 MiB tensor) and fp32 GEMM throughput.
import { DataType, GraphBuilder } from '../src/engine/onnx/graph_builder.ts';
import { floatTensor, GraphSession } from '../src/engine/onnx/session.ts';

export interface MachineLimits {
  readonly readBandwidthGBs: number;
  readonly gemmGflops: number;
}

async function bestOf(reps: number, fn: () => Promise<void>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best / 1000;
}

export async function probeMachine(numThreads = 2): Promise<MachineLimits> {
  const rows = 1 << 17;
  const cols = 1024; // 128 Mi floats = 512 MiB
  const g = new GraphBuilder('bandwidth');
  const x = g.input('x', DataType.FLOAT, [rows, cols]);
  g.markOutput(g.node('ReduceSum', [x, g.int64s([1])], { keepdims: 0 }), 'y', DataType.FLOAT, [rows]);
  const bw = await GraphSession.create('bandwidth', g.build(), { numThreads });
  const data = new Float32Array(rows * cols).fill(1);
  const feed = { x: floatTensor(data, [rows, cols]) };
  const readSeconds = await bestOf(5, async () => void (await bw.run(feed, ['y'])));
  await bw.release();

  const M = 512;
  const K = 2048;
  const N = 2048;
  const mm = new GraphBuilder('gemm');
  const a = mm.input('a', DataType.FLOAT, [M, K]);
  const b = mm.initializer(new Float32Array(K * N).fill(0.5), [K, N]);
  mm.markOutput(mm.node('MatMul', [a, b]), 'c', DataType.FLOAT, [M, N]);
  const gemm = await GraphSession.create('gemm', mm.build(), { numThreads });
  const aFeed = { a: floatTensor(new Float32Array(M * K).fill(1), [M, K]) };
  const gemmSeconds = await bestOf(5, async () => void (await gemm.run(aFeed, ['c'])));
  await gemm.release();
  return { readBandwidthGBs: data.byteLength / readSeconds / 1e9, gemmGflops: (2 * M * K * N) / gemmSeconds / 1e9 };
}
