// What one ONNX Runtime session costs in resident memory beyond its weights: builds a graph with one
// large weight (f32 Gemm, or MatMulNBits int8/int4), creates a session with and without prepacking,
// and reports RSS and the peak (VmHWM, reset before each step) relative to the weight's bytes. Answers
// whether ORT keeps the raw initializer next to the prepacked copy, and how much the model buffer and
// session creation add at their peak.
//   node --import tsx bench/ort_memory.ts [--n 16384] [--k 8192]
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DataType, GraphBuilder } from '../src/engine/onnx/graph_builder.ts';
import { linear, quantizedLinear } from '../src/engine/onnx/ops.ts';
import { GraphSession } from '../src/engine/onnx/session.ts';
import { quantizeMatrix, quantizedBytes, type QuantBits } from '../src/engine/quant/block_quant.ts';
import { cpuSummary } from './cpu.ts';
import { loadAverage1 } from './machine/load.ts';
import { processMemory, resetPeakRss } from './machine/process_memory.ts';

const SCRIPT = fileURLToPath(import.meta.url);

/** Full GC, then a pause: V8 frees ArrayBuffer backing stores on a background sweeper. */
async function settle(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

type Kind = 'f32' | `int${QuantBits}`;

function buildModel(kind: Kind, n: number, k: number): { model: Uint8Array; weightBytes: number } {
  const w = new Float32Array(n * k);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i) * 0.02;
  const g = new GraphBuilder('mem');
  const x = g.input('x', DataType.FLOAT, ['M', k]);
  if (kind === 'f32') {
    g.markOutput(linear(g, x, { data: w, shape: [n, k] }), 'y', DataType.FLOAT, ['M', n]);
    return { model: g.build(), weightBytes: w.byteLength };
  }
  const bits: QuantBits = kind === 'int8' ? 8 : 4;
  g.markOutput(quantizedLinear(g, x, quantizeMatrix(w, n, k, bits), 4), 'y', DataType.FLOAT, ['M', n]);
  return { model: g.build(), weightBytes: quantizedBytes(n, k, bits) };
}

async function measure(kind: Kind, n: number, k: number, prepack: boolean, arena: boolean): Promise<string> {
  await settle();
  const rss0 = processMemory('VmRSS');
  let built: { model: Uint8Array; weightBytes: number } | null = buildModel(kind, n, k);
  const { weightBytes } = built;
  await settle();
  const withModel = processMemory('VmRSS') - rss0;
  resetPeakRss();
  const session = await GraphSession.create('mem', built.model, { numThreads: 1, disablePrepacking: !prepack, cpuMemArena: arena });
  const createPeak = processMemory('VmHWM') - rss0;
  built = null;
  await settle();
  const after = processMemory('VmRSS') - rss0;
  await session.release();
  await settle();
  const released = processMemory('VmRSS') - rss0;
  const x = (b: number): string => `${(b / weightBytes).toFixed(2)}x`;
  return `| ${kind} | ${prepack ? 'on' : 'off'} | ${arena ? 'on' : 'off'} | ${(weightBytes / 2 ** 20).toFixed(0)} | ${x(withModel)} | ${x(createPeak)} | ${x(after)} | ${x(released)} |`;
}

const KINDS = ['int4', 'int8', 'f32'] as const;

/** One configuration per process, so allocator state from one never shows in another's RSS. */
async function main(): Promise<void> {
  const { values } = parseArgs({ options: { n: { type: 'string', default: '16384' }, k: { type: 'string', default: '8192' }, one: { type: 'string' } } });
  const [n, k] = [Number(values.n), Number(values.k)];
  if (values.one !== undefined) {
    if (!(globalThis as { gc?: unknown }).gc) throw new Error('run with node --expose-gc');
    const [kind, prepack, arena] = values.one.split(':');
    process.stdout.write(`${await measure(kind as Kind, n, k, prepack === 'on', arena === 'on')}\n`);
    return;
  }
  const load0 = loadAverage1();
  const rows: string[] = [];
  for (const kind of KINDS) {
    for (const config of ['on:on', 'off:on', 'on:off', 'off:off']) {
      const args = [...process.execArgv, '--expose-gc', SCRIPT, '--n', String(n), '--k', String(k), '--one', `${kind}:${config}`];
      rows.push(execFileSync(process.execPath, args, { encoding: 'utf8' }).trim());
    }
  }
  process.stdout.write(`ORT session memory, one weight [${n}, ${k}], ${cpuSummary()}, load ${load0.toFixed(2)} -> ${loadAverage1().toFixed(2)}\n`);
  process.stdout.write('RSS relative to the weight bytes (codes + scales, or f32), measured from before the graph was built:\n\n');
  process.stdout.write('| weight | prepacking | arena | weight MiB | model buffer built | peak while creating | session, buffer dropped | after release |\n');
  process.stdout.write('|---|---|---|---|---|---|---|---|\n');
  process.stdout.write(`${rows.join('\n')}\n`);
}

await main();
