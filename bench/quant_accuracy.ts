// Accuracy of --quantization (issue 11's targets), printed as markdown:
// - teacher-forced golden-token logprobs on the public fixture (test/fixtures/tiny-dsv32): the sequence
//   prompt + golden greedy tokens is prefilled once; at every position the logprob of the golden next
//   token under our logits vs under the golden logits (golden.safetensors). Target: int8 MAE <= 0.03.
//   Where the int8 error comes from, graph by graph, and why 0.03 is out of reach on random weights:
//   src/engine/onnx/ops.ts (QUANT_ACCURACY_LEVEL).
// - held-out perplexity of the embedded default model (src/cli/perplexity.ts, DSA) at none / int8 / int4.
//   Targets: int8 within 1% of none, int4 within 6%. Needs the validation tokens (tools/data/kjv.sh, then
//   tools/train/tokenize.ts), given with --tokens.
//   node --import tsx bench/quant_accuracy.ts [--tokens /work/cache/quant-data/valid.u16] [--max-chunks N]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OfflineEngine } from '../src/engine/offline.ts';
import type { QuantizationMode } from '../src/engine/quant/quant_mode.ts';
import { Golden } from '../test/helpers/golden.ts';
import { cpuSummary } from './cpu.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = path.join(ROOT, 'test/fixtures/tiny-dsv32');
const MODES: readonly QuantizationMode[] = ['none', 'int8', 'int4'];

function logSoftmaxAt(row: Float32Array, token: number): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[token]! - max - Math.log(sum);
}

/** Mean |logprob_ours - logprob_golden| of the golden next token over every position of every prompt. */
async function fixtureMae(quantization: QuantizationMode): Promise<{ mae: number; max: number; n: number }> {
  const golden = new Golden(FIXTURE);
  const engine = await OfflineEngine.create(FIXTURE, {
    runner: { quantization, kvCacheMemory: 16 * 2 ** 20 },
    captureLogits: true,
    enablePrefixCaching: false,
  });
  let sum = 0;
  let max = 0;
  let n = 0;
  try {
    for (let p = 0; p < golden.numPrompts; p++) {
      const prompt = golden.json.prompts[p]!;
      const tokens = golden.ints(`greedy_tokens.p${p}`);
      const seq = [...prompt, ...tokens];
      const [r] = await engine.generate([{ promptTokenIds: seq, params: { temperature: 0, maxTokens: 1, promptLogprobs: 0 } }]);
      const ours = r!.promptLogits!;
      const prefill = golden.floats(`prefill_logits.p${p}`);
      const steps = golden.floats(`greedy_step_logits.p${p}`);
      const V = prefill.length / prompt.length;
      for (let j = 0; j + 1 < seq.length; j++) {
        // Golden row j: prefill rows up to the prompt's last, then the greedy steps' rows.
        const g = j < prompt.length - 1 ? prefill.subarray(j * V, (j + 1) * V) : steps.subarray((j - prompt.length + 1) * V, (j - prompt.length + 2) * V);
        const d = Math.abs(logSoftmaxAt(ours.subarray(j * V, (j + 1) * V), seq[j + 1]!) - logSoftmaxAt(g, seq[j + 1]!));
        sum += d;
        max = Math.max(max, d);
        n++;
      }
    }
  } finally {
    await engine.dispose();
  }
  return { mae: sum / n, max, n };
}

function perplexity(tokens: string, quantization: QuantizationMode, maxChunks: string | undefined): number {
  const args = [
    '--import',
    'tsx',
    path.join(ROOT, 'src/cli/perplexity.ts'),
    '--model',
    path.join(ROOT, 'models/default'),
    '--tokens',
    tokens,
    '--mode',
    'dsa',
    '--quantization',
    quantization,
  ];
  if (maxChunks !== undefined) args.push('--max-chunks', maxChunks);
  const out = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 })) as { results: { ppl: number }[] };
  return out.results[0]!.ppl;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { tokens: { type: 'string', default: '/work/cache/quant-data/valid.u16' }, 'max-chunks': { type: 'string' } } });
  const load0 = loadavg()[0]!;
  const lines = [`# --quantization accuracy (${new Date().toISOString()})`, '', `CPU: ${cpuSummary()}; MatMulNBits accuracy level 4 (the serving level).`, ''];
  lines.push(
    'Fixture (tiny-dsv32), teacher-forced golden-token logprobs, |ours - golden|:',
    '',
    '| mode | MAE | max | tokens | target |',
    '|---|---|---|---|---|',
  );
  for (const mode of MODES) {
    const r = await fixtureMae(mode);
    const target = mode === 'int8' ? `<= 0.03: ${r.mae <= 0.03 ? 'met' : 'MISSED'}` : '-';
    lines.push(`| ${mode} | ${r.mae.toFixed(5)} | ${r.max.toFixed(4)} | ${r.n} | ${target} |`);
  }
  if (existsSync(values.tokens)) {
    lines.push(
      '',
      `Held-out perplexity of models/default (DSA, ${values.tokens}${values['max-chunks'] ? `, first ${values['max-chunks']} chunks` : ', all chunks'}):`,
      '',
    );
    lines.push('| mode | perplexity | vs none | target |', '|---|---|---|---|');
    const ppl = new Map(MODES.map((m) => [m, perplexity(values.tokens, m, values['max-chunks'])]));
    for (const mode of MODES) {
      const ratio = ppl.get(mode)! / ppl.get('none')!;
      const bound = mode === 'int8' ? 1.01 : mode === 'int4' ? 1.06 : null;
      const target = bound === null ? '-' : `<= ${bound}: ${ratio <= bound ? 'met' : 'MISSED'}`;
      lines.push(`| ${mode} | ${ppl.get(mode)!.toFixed(3)} | ${ratio.toFixed(4)} | ${target} |`);
    }
  } else {
    lines.push('', `(perplexity skipped: ${values.tokens} not found; run tools/data/kjv.sh DIR and tools/train/tokenize.ts --data DIR)`);
  }
  const load1 = loadavg()[0]!;
  lines.push('', `Load average ${load0.toFixed(2)} -> ${load1.toFixed(2)} (accuracy does not depend on load).`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
