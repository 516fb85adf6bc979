// Where the memory of a quantised load goes, phase by phase (issue 11: the plan underestimated bench-lite's
// peak). Loads a model in this process and records, at every group arrival and around every ORT session
// creation: VmRSS, the peak since the previous event (VmHWM, reset after each read), V8's heap and
// ArrayBuffer bytes, the bytes of the ModelProto handed to ORT, and (per layer) the glibc heaps in
// /proc/self/smaps (the main arena's [heap], 64 MiB-reserved thread arenas, other anonymous mappings).
// Prints one JSON line per event on stdout, then a summary line (the peak and the phase it ended).
//   node --expose-gc --import tsx bench/lite_memory.ts --model DIR --quantization int4 [--cache DIR]
//     [--load-threads N] [--kv 256MiB] [--events FILE]
// Environment matters and is recorded: MALLOC_ARENA_MAX, GLIBC_TUNABLES.
import { readFileSync } from 'node:fs';
import { processMemory, resetPeakRss } from './machine/process_memory.ts';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { parseByteSize } from '../src/config.ts';
import { GraphSession } from '../src/engine/onnx/session.ts';
import { GroupPool } from '../src/engine/quant/group_pool.ts';
import type { QuantizationMode } from '../src/engine/quant/quant_mode.ts';
import { openBenchEngine } from './engine_runs.ts';

const MiB = 2 ** 20;

/** Resident bytes of the process's anonymous mappings by kind (see the file comment). */
export function smapsSummary(): Record<string, number> {
  const text = readFileSync('/proc/self/smaps', 'utf8');
  const out = { heap: 0, arenas: 0, arenaCount: 0, anonLarge: 0, anonSmall: 0, files: 0 };
  let name = '';
  let size = 0;
  let start = 0n;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      start = BigInt(`0x${head[1]}`);
      size = Number(BigInt(`0x${head[2]}`) - start);
      name = head[3] ?? '';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (!rss) continue;
    const bytes = Number(rss[1]) * 1024;
    if (name === '[heap]') out.heap += bytes;
    else if (name.startsWith('/')) out.files += bytes;
    // glibc thread arenas are 64 MiB-aligned heaps (HEAP_MAX_SIZE); their used part is one mapping.
    else if (name === '' && (start & BigInt(64 * MiB - 1)) === 0n && size <= 64 * MiB) {
      out.arenas += bytes;
      out.arenaCount++;
    } else if (name === '' && size >= 64 * MiB) out.anonLarge += bytes;
    else if (name === '') out.anonSmall += bytes;
  }
  return out;
}

interface Event {
  readonly t: number;
  readonly what: string;
  readonly rss: number;
  /** Peak RSS since the previous event. */
  readonly peak: number;
  readonly heapUsed: number;
  readonly arrayBuffers: number;
  readonly extra?: Record<string, number | string>;
}

const events: Event[] = [];
let t0 = performance.now();

function mark(what: string, extra?: Record<string, number | string>): void {
  const [rss, hwm] = [processMemory('VmRSS'), processMemory('VmHWM')];
  const m = process.memoryUsage();
  const e: Event = {
    t: (performance.now() - t0) / 1000,
    what,
    rss: rss / MiB,
    peak: hwm / MiB,
    heapUsed: m.heapUsed / MiB,
    arrayBuffers: m.arrayBuffers / MiB,
    extra,
  };
  events.push(e);
  process.stdout.write(`${JSON.stringify(e)}\n`);
  resetPeakRss();
}

function instrument(): void {
  const create = GraphSession.create.bind(GraphSession);
  GraphSession.create = async (name, model, options) => {
    mark(`create ${name} start`, { modelMiB: model.byteLength / MiB });
    const s = await create(name, model, options);
    mark(`create ${name} end`);
    return s;
  };
  const group = GroupPool.prototype.group;
  GroupPool.prototype.group = async function (this: GroupPool, name: string) {
    mark(`wait ${name}`);
    const g = await group.call(this, name);
    const buffers = new Set<ArrayBufferLike>();
    for (const t of g.values()) for (const a of Object.values(t)) if (ArrayBuffer.isView(a)) buffers.add(a.buffer);
    let bytes = 0;
    for (const b of buffers) bytes += b.byteLength;
    mark(`got ${name}`, { groupMiB: bytes / MiB, ...(name.startsWith('layer.') ? smapsSummaryMiB() : {}) });
    return g;
  };
}

function smapsSummaryMiB(): Record<string, number> {
  const s = smapsSummary();
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, k === 'arenaCount' ? v : Math.round(v / MiB)]));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      quantization: { type: 'string', default: 'int4' },
      cache: { type: 'string' },
      kv: { type: 'string', default: '256MiB' },
      'load-threads': { type: 'string' },
      threads: { type: 'string', default: '2' },
    },
  });
  if (!values.model) throw new Error('usage: lite_memory.ts --model DIR [--quantization int4] [--cache DIR] [--load-threads N]');
  instrument();
  const env = { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '-', GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? '-' };
  mark('start', { loadavg: loadavg()[0]!.toFixed(2), ...env });
  t0 = performance.now();
  const engine = await openBenchEngine(values.model, {
    quantization: values.quantization as QuantizationMode,
    quantizedWeightsDir: values.cache ?? null,
    kvCacheMemory: parseByteSize(values.kv) ?? 256 * MiB,
    numThreads: Number(values.threads),
    ...(values['load-threads'] !== undefined && { loadThreads: Number(values['load-threads']) }),
  });
  mark('ready', { planGiB: engine.core.runner.loaded.memoryPlan.total / 2 ** 30, ...smapsSummaryMiB() });
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 1000));
  mark('ready+gc', smapsSummaryMiB());
  await engine.dispose();
  const peak = Math.max(...events.map((e) => e.peak));
  const at = events.find((e) => e.peak === peak)!;
  process.stdout.write(`${JSON.stringify({ summary: true, peakMiB: peak, peakBefore: at.what, at: at.t, loadavg: loadavg()[0]!, ...env })}\n`);
}

await main();
