// Batch-1 decode with --quantization (issue 11's speed targets on bench-mini): ours at none / int8 / int4
// through the serving path (bench/engine_runs.ts timeDecode), against llama.cpp's llama-bench (tg at 1
// and 2 threads) on the same weights written as GGUF F32 / Q8_0 / Q4_0 by bench/gguf (the engine's own
// quantiser: identical codes and scales).
// Interleaved rounds (bench/compare/schedule.ts): every round runs each participant once, in a fixed
// order, so drift in the machine's state hits all of them; figures are medians over rounds with their
// range, and ratios are taken within a round. Our three engines stay open across rounds (one load each).
// Targets: int8 >= 2.2x our float32, int4 >= 3x; each >= 1.0x llama.cpp at its type (best of 1 and 2
// threads). A loaded run (bench/machine/load.ts) prints its figures but judges nothing.
//   node --import tsx bench/quant_decode.ts [--model bench-mini] [--rounds 5] [--steps 32] [--llama-bench PATH]
// ~3 minutes on 2 cores (GGUF files are written next to the checkpoint on the first run).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/engine/checkpoint/weights.ts';
import { decodeWeightBytes } from '../src/engine/memory_plan.ts';
import type { OfflineEngine } from '../src/engine/offline.ts';
import type { QuantizationMode } from '../src/engine/quant/quant_mode.ts';
import { ensureBenchCheckpoint } from './checkpoints.ts';
import { judgeTargets, type JudgedSpec } from './compare/judge.ts';
import { runLlamaBench } from './compare/llama_bench.ts';
import { interleavedSchedule, MIN_ROUNDS, runInterleaved } from './compare/schedule.ts';
import { cpuSummary } from './cpu.ts';
import { openBenchEngine, timeDecode } from './engine_runs.ts';
import { convertDeepseekToGguf, type GgufDtype } from './gguf/convert_deepseek.ts';
import { findLlamaBench } from './llama_bench_bin.ts';
import { LoadMonitor, loadVerdict } from './machine/load.ts';
import { formatSpread, median, roundRatios, spread } from './stats.ts';

const MODES: readonly QuantizationMode[] = ['none', 'int8', 'int4'];
const GGUF_TYPE: Record<QuantizationMode, GgufDtype> = { none: 'F32', int8: 'Q8_0', int4: 'Q4_0' };
const PROMPT = Array.from({ length: 16 }, (_, i) => 2 + ((i * 37) % 1000));

/** One participant of a round: our engine at a mode, or llama-bench at a type and thread count. */
type Participant = `ours ${QuantizationMode}` | `llama ${QuantizationMode} t${1 | 2}`;

function participants(withPeer: boolean): Participant[] {
  const out: Participant[] = MODES.map((m) => `ours ${m}` as const);
  if (withPeer) for (const m of MODES) out.push(`llama ${m} t1`, `llama ${m} t2`);
  return out;
}

function ggufPaths(dir: string, model: string, withPeer: boolean): Map<QuantizationMode, string> {
  const paths = new Map<QuantizationMode, string>();
  if (!withPeer) return paths;
  const weights = loadModel(dir);
  for (const mode of MODES) {
    const gguf = path.join(dir, `${model}-${GGUF_TYPE[mode].toLowerCase()}.gguf`);
    if (!existsSync(gguf)) convertDeepseekToGguf(weights, gguf, { dtype: GGUF_TYPE[mode] });
    paths.set(mode, gguf);
  }
  return paths;
}

async function measure(
  p: Participant,
  engines: Map<QuantizationMode, OfflineEngine>,
  gguf: Map<QuantizationMode, string>,
  bin: string | null,
  steps: number,
): Promise<number> {
  const [who, mode, t] = p.split(' ') as ['ours' | 'llama', QuantizationMode, string | undefined];
  if (who === 'ours') return 1000 / (await timeDecode(engines.get(mode)!, PROMPT, 4, steps)).msPerToken;
  const args = ['-m', gguf.get(mode)!, '-t', t!.slice(1), '-p', '0', '-n', String(steps), '-r', '1', '-o', 'json'];
  const [tg] = await runLlamaBench(bin!, args);
  return median(tg!.samplesTs);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'bench-mini' },
      rounds: { type: 'string', default: String(MIN_ROUNDS) },
      steps: { type: 'string', default: '32' },
      'llama-bench': { type: 'string' },
    },
  });
  const [rounds, steps] = [Number(values.rounds), Number(values.steps)];
  const dir = ensureBenchCheckpoint(values.model, { log: (s) => process.stderr.write(`${s}\n`) });
  const config = loadModel(dir).config;
  const bin = findLlamaBench(values['llama-bench']);
  const gguf = ggufPaths(dir, values.model, bin !== null);
  const engines = new Map<QuantizationMode, OfflineEngine>();
  for (const mode of MODES) engines.set(mode, await openBenchEngine(dir, { quantization: mode, kvCacheMemory: 256 * 2 ** 20, numThreads: 2 }));
  const monitor = await LoadMonitor.afterIdleCheck(); // others' CPU use just before the start, not the lagging load average
  let results: Map<Participant, number[]>;
  try {
    results = await runInterleaved(interleavedSchedule(participants(bin !== null), rounds), (slot) => measure(slot.participant, engines, gguf, bin, steps));
  } finally {
    for (const e of engines.values()) await e.dispose();
  }
  const record = monitor.stop();
  const run = loadVerdict(record);
  process.stdout.write(`${report(values.model, config, results, bin, rounds, steps, run, record).join('\n')}\n`);
}

function report(
  model: string,
  config: ReturnType<typeof loadModel>['config'],
  r: Map<Participant, number[]>,
  bin: string | null,
  rounds: number,
  steps: number,
  run: ReturnType<typeof loadVerdict>,
  record: ReturnType<LoadMonitor['stop']>,
): string[] {
  const lines = [`# --quantization decode, ${model} (${new Date().toISOString()})`, ''];
  lines.push(
    `CPU: ${cpuSummary()}; ours: 2 ORT threads, MatMulNBits accuracy level 4, tg${steps} after a 16-token prompt; llama.cpp: ${bin ?? 'llama-bench not found (skipped)'}, tg${steps}; ${rounds} interleaved rounds, median (min-max).`,
  );
  lines.push(
    `Load average ${record.loadAverageBefore.toFixed(2)} -> ${record.loadAverageAfter.toFixed(2)}, others used ${(record.othersShare * 100).toFixed(0)}% of the CPUs${run.loaded ? `: LOADED (${run.reasons.join('; ')}), figures indicative only, nothing judged` : ': quiet'}.`,
    '',
  );
  lines.push(
    '| mode | weights read / token | ours tok/s | vs our f32 (per round) | llama.cpp type | t=1 tok/s | t=2 tok/s | ours / best llama.cpp (per round) |',
    '|---|---|---|---|---|---|---|---|',
  );
  const specs: JudgedSpec[] = [];
  const none = r.get('ours none')!;
  for (const mode of MODES) {
    const ours = r.get(`ours ${mode}`)!;
    const t1 = r.get(`llama ${mode} t1`);
    const t2 = r.get(`llama ${mode} t2`);
    const vsF32 = roundRatios(ours, none);
    const vsPeer =
      t1 && t2
        ? roundRatios(
            ours,
            t1.map((x, i) => Math.max(x, t2[i]!)),
          )
        : null;
    lines.push(
      `| ${mode} | ${(decodeWeightBytes(config, mode) / 1e6).toFixed(1)} MB | ${formatSpread(spread(ours))} | ${formatSpread(spread(vsF32), 2)} | ${GGUF_TYPE[mode]} | ${t1 ? formatSpread(spread(t1)) : '-'} | ${t2 ? formatSpread(spread(t2)) : '-'} | ${vsPeer ? formatSpread(spread(vsPeer), 2) : '-'} |`,
    );
    if (mode !== 'none') {
      specs.push({
        id: `${mode}-vs-f32`,
        name: `${mode} decode vs our float32`,
        value: median(vsF32),
        direction: '>=',
        target: mode === 'int8' ? 2.2 : 3,
        shapeMismatch: null,
      });
      specs.push({
        id: `${mode}-vs-llama`,
        name: `${mode} decode vs llama.cpp ${GGUF_TYPE[mode]}`,
        value: vsPeer ? median(vsPeer) : null,
        direction: '>=',
        target: 1,
        shapeMismatch: null,
      });
    }
  }
  lines.push('', '| target | verdict |', '|---|---|');
  for (const t of judgeTargets(specs, run)) lines.push(`| ${t.name} >= ${t.target}x | ${t.verdict} |`);
  return lines;
}

await main();
