// The machine's attainable limits through the same ONNX Runtime the engine uses: read bandwidth (a
// ReduceSum streaming a 512 MiB tensor, far larger than any last-level cache, so it measures DRAM) and fp32
// GEMM throughput (MatMul [512, 2048] x [2048, 2048]). Each returns one figure per probe: one timed run after
// one untimed warm-up; the caller takes the median (ceilings.ts).
import { DataType, GraphBuilder } from '../../src/engine/onnx/graph_builder.ts';
import { floatTensor, GraphSession } from '../../src/engine/onnx/session.ts';

async function timedRuns(probes: number, fn: () => Promise<void>): Promise<number[]> {
  await fn();
  const seconds: number[] = [];
  for (let i = 0; i < probes; i++) {
    const t0 = performance.now();
    await fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return seconds;
}

/** GB/s (1e9 bytes) per probe. */
export async function probeReadBandwidth(numThreads: number, probes: number): Promise<number[]> {
  const rows = 1 << 17;
  const cols = 1024; // 128 Mi floats = 512 MiB
  const g = new GraphBuilder('bandwidth');
  const x = g.input('x', DataType.FLOAT, [rows, cols]);
  g.markOutput(g.node('ReduceSum', [x, g.int64s([1])], { keepdims: 0 }), 'y', DataType.FLOAT, [rows]);
  const session = await GraphSession.create('bandwidth', g.build(), { numThreads });
  try {
    const data = new Float32Array(rows * cols).fill(1);
    const feed = { x: floatTensor(data, [rows, cols]) };
    const seconds = await timedRuns(probes, async () => void (await session.run(feed, ['y'])));
    return seconds.map((s) => data.byteLength / s / 1e9);
  } finally {
    await session.release();
  }
}

/** GFLOP/s (2 M K N per run) per probe. */
export async function probeGemm(numThreads: number, probes: number): Promise<number[]> {
  const M = 512;
  const K = 2048;
  const N = 2048;
  const g = new GraphBuilder('gemm');
  const a = g.input('a', DataType.FLOAT, [M, K]);
  const b = g.initializer(new Float32Array(K * N).fill(0.5), [K, N]);
  g.markOutput(g.node('MatMul', [a, b]), 'c', DataType.FLOAT, [M, N]);
  const session = await GraphSession.create('gemm', g.build(), { numThreads });
  try {
    const feed = { a: floatTensor(new Float32Array(M * K).fill(1), [M, K]) };
    const seconds = await timedRuns(probes, async () => void (await session.run(feed, ['c'])));
    return seconds.map((s) => (2 * M * K * N) / s / 1e9);
  } finally {
    await session.release();
  }
}
