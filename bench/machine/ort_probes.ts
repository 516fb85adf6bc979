// The machine's attainable limits through the same ONNX Runtime the engine uses: read bandwidth (a
// batch-1 MatMul streaming a 512 MiB weight, far larger than any last-level cache, so it measures DRAM the
// way decode reads weights) and fp32
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

/**
 * GB/s (1e9 bytes) per probe: x [1, K] @ W [K, N] with W a 512 MiB initializer, i.e. decode's own access
 * pattern (every weight byte read once per run, ORT's prepacked layout). A ReduceSum over a 512 MiB input,
 * the previous probe, reads slower than this kernel does (quiet, 2 threads: 36-37 vs 45-49 GB/s; 1 thread
 * ~21 vs ~20), so it understated the decode floor.
 */
export async function probeReadBandwidth(numThreads: number, probes: number): Promise<number[]> {
  const K = 8192;
  const N = 16384; // 128 Mi floats = 512 MiB
  const g = new GraphBuilder('bandwidth');
  const x = g.input('x', DataType.FLOAT, [1, K]);
  g.markOutput(g.node('MatMul', [x, g.initializer(new Float32Array(K * N).fill(0.5), [K, N])]), 'y', DataType.FLOAT, [1, N]);
  const session = await GraphSession.create('bandwidth', g.build(), { numThreads });
  try {
    const feed = { x: floatTensor(new Float32Array(K).fill(1), [1, K]) };
    const seconds = await timedRuns(probes, async () => void (await session.run(feed, ['y'])));
    return seconds.map((s) => (K * N * 4) / s / 1e9);
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
