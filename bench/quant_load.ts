// Start-up of one model at one --quantization, measured in this process (run it once per case, in a
// fresh process, so the peak RSS is the load's own): seconds to ready (checkpoint headers, memory
// plan, streaming + quantising or reading the cache, compiling every graph), peak RSS (VmHWM), RSS once
// ready, the main thread's and the whole process's CPU seconds to ready (on a shared machine the main
// thread's is the steadier figure: bench/machine/thread_cpu.ts), then batch-1 decode. Prints one JSON
// line. bench/lite_run.ts drives it for bench-lite.
//   node --import tsx bench/quant_load.ts --model DIR --quantization int4 [--cache DIR] [--kv 256MiB] [--decode 32]
import { processMemory } from './machine/process_memory.ts';
import { mainThreadCpu } from './machine/thread_cpu.ts';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { parseByteSize } from '../src/config.ts';
import type { QuantizationMode } from '../src/engine/quant/quant_mode.ts';
import { openBenchEngine, timeDecode } from './engine_runs.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      quantization: { type: 'string', default: 'int4' },
      cache: { type: 'string' },
      kv: { type: 'string', default: '256MiB' },
      decode: { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
    },
  });
  if (!values.model) throw new Error('usage: quant_load.ts --model DIR [--quantization none|int8|int4] [--cache DIR] [--kv BYTES] [--decode N]');
  const load0 = loadavg()[0]!;
  const t0 = performance.now();
  const engine = await openBenchEngine(values.model, {
    quantization: values.quantization as QuantizationMode,
    quantizedWeightsDir: values.cache ?? null,
    kvCacheMemory: parseByteSize(values.kv) ?? 2 ** 28,
    numThreads: Number(values.threads),
  });
  const readySeconds = (performance.now() - t0) / 1000;
  const mainCpu = mainThreadCpu();
  const processCpu = process.cpuUsage();
  const peakRssLoad = processMemory('VmHWM');
  const rssReady = processMemory('VmRSS');
  const info = engine.core.runner.loaded;
  let decodeTokS: number | null = null;
  let decodeSplitMs: Record<string, number> | null = null;
  const steps = Number(values.decode);
  if (steps > 0) {
    const prompt = Array.from({ length: 16 }, (_, i) => 2 + ((i * 37) % 1000));
    const d = await timeDecode(engine, prompt, 4, steps);
    decodeTokS = 1000 / d.msPerToken;
    decodeSplitMs = Object.fromEntries(Object.entries(d.split).map(([k, v]) => [k, Math.round(v * 100) / 100]));
  }
  await engine.dispose();
  const out = {
    model: values.model,
    quantization: info.quantization,
    cache: values.cache ?? null,
    parameters: info.numParameters,
    readySeconds,
    mainThreadCpuSeconds: { user: mainCpu.user, sys: mainCpu.sys },
    processCpuSeconds: { user: processCpu.user / 1e6, sys: processCpu.system / 1e6 },
    peakRssLoadGiB: peakRssLoad / 2 ** 30,
    rssReadyGiB: rssReady / 2 ** 30,
    peakRssGiB: processMemory('VmHWM') / 2 ** 30,
    planTotalGiB: info.memoryPlan.total / 2 ** 30,
    planWeightsGiB: info.memoryPlan.weights / 2 ** 30,
    decodeTokS,
    decodeSplitMs,
    warnings: info.loadWarnings,
    loadAverage: [load0, loadavg()[0]!],
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

await main();
