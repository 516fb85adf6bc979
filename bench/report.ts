// The bench report: its JSON shape, the Markdown tables and the PNG plots.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { MachineLimits } from './probe.ts';
import type { ServingLevelResult } from './serving.ts';
import type { SingleStreamResult } from './single_stream.ts';
import type { ThroughputResult } from './throughput.ts';
import type { TargetResult } from './targets.ts';
import { renderLineChart, type Series } from './plot/chart.ts';

export interface KvRow {
  readonly model: string;
  readonly cache: string;
  readonly bytesPerToken: number | null;
  readonly source: string;
  /** Sequences of `budget.tokensPerSequence` tokens that fit in `budget.bytes`. */
  readonly maxSequences: number | null;
}

export interface BenchReport {
  readonly date: string;
  readonly mode: 'smoke' | 'quick' | 'full';
  readonly seconds: number;
  readonly machine: { readonly cpu: string; readonly cores: number; readonly memoryGiB: number; readonly node: string; readonly loadAverageAtStart: number };
  readonly limits: MachineLimits;
  readonly threads: number;
  readonly singleStream: SingleStreamResult[];
  readonly serving: {
    readonly model: string;
    readonly ours: ServingLevelResult[];
    readonly ourServer: { readonly command: string; readonly flags: readonly string[] } | null;
  } | null;
  readonly kv: { readonly budget: { readonly bytes: number; readonly tokensPerSequence: number }; readonly rows: KvRow[] };
  readonly startup: { readonly oursSpawnToHealthMs: number | null; readonly oursExecutorLoadMs: number | null; readonly model: string };
  readonly profile: ThroughputResult | null;
  readonly targets: TargetResult[];
  readonly errors: { readonly part: string; readonly message: string }[];
  readonly plots: string[];
}

const f = (n: number | null | undefined, d = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));

/** Variant labels in a stable column order. */
function variants(rows: readonly SingleStreamResult[]): string[] {
  const order = ['ours DSA', 'ours dense'];
  return [...new Set(rows.map((r) => r.label))].sort((a, b) => order.indexOf(a) - order.indexOf(b));
}

function decodeTable(r: BenchReport): string[] {
  const out: string[] = [];
  const models = [...new Set(r.singleStream.map((s) => s.model))];
  for (const model of models) {
    const rows = r.singleStream.filter((s) => s.model === model);
    const labels = variants(rows);
    const weight = rows.find((s) => s.weightBytesPerDecodeToken)?.weightBytesPerDecodeToken ?? null;
    const ceiling = weight ? (r.limits.readBandwidthGBs * 1e9) / weight : null;
    out.push(
      '',
      `**${model}** batch-1 decode, tok/s (bandwidth ceiling = ${f(r.limits.readBandwidthGBs)} GB/s / ${f(weight ? weight / 1e6 : null)} MB of weights per token = ${f(ceiling)} tok/s)`,
      '',
    );
    out.push(`| context | ${labels.join(' | ')} | ours DSA / ceiling |`, `|---|${labels.map(() => '---').join('|')}|---|`);
    const contexts = [...new Set(rows.flatMap((s) => s.decode.map((d) => d.context)))].sort((a, b) => a - b);
    for (const c of contexts) {
      const v = (label: string): number | null => rows.find((s) => s.label === label)?.decode.find((d) => d.context === c)?.tokensPerSecond ?? null;
      const ours = v('ours DSA');
      out.push(`| ${c} | ${labels.map((l) => f(v(l))).join(' | ')} | ${ours && ceiling ? `${f((100 * ours) / ceiling, 0)}%` : '-'} |`);
    }
    const lens = [...new Set(rows.flatMap((s) => s.prefill.map((p) => p.tokens)))].sort((a, b) => a - b);
    if (lens.length) {
      const gemmCeiling = weight ? (r.limits.gemmGflops * 1e9) / (2 * (weight / 4)) : null;
      out.push(
        '',
        `**${model}** prefill, tok/s (GEMM ceiling, weights only = ${f(r.limits.gemmGflops, 0)} GFLOP/s / ${f(weight ? (2 * weight) / 4 / 1e6 : null, 0)} MFLOP per token = ${f(gemmCeiling, 0)} tok/s)`,
        '',
      );
      out.push(`| prompt tokens | ${labels.join(' | ')} |`, `|---|${labels.map(() => '---').join('|')}|`);
      for (const L of lens) {
        const v = (label: string): number | null => rows.find((s) => s.label === label)?.prefill.find((p) => p.tokens === L)?.tokensPerSecond ?? null;
        out.push(`| ${L} | ${labels.map((l) => f(v(l), 0)).join(' | ')} |`);
      }
    }
  }
  return out;
}

function servingTable(r: BenchReport): string[] {
  const s = r.serving;
  if (!s) return [];
  const out = [
    '',
    `**Serving** (${s.model}; ${s.ours[0]?.promptTokens ?? '-'}-token prompts, ${s.ours[0]?.outputTokens ?? '-'} output tokens, ignore_eos, greedy; closed loop over HTTP/SSE)`,
    '',
  ];
  out.push('| concurrency | requests | output tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms |', '|---|---|---|---|---|');
  for (const o of s.ours) {
    out.push(
      `| ${o.concurrency} | ${o.numRequests} | ${f(o.outputTokensPerSecond)} | ${f(o.ttftMs.p50, 0)} / ${f(o.ttftMs.p99, 0)} | ${f(o.itlMs.p50)} / ${f(o.itlMs.p99)} |`,
    );
  }
  return out;
}

function kvTable(r: BenchReport): string[] {
  const out = ['', `**KV cache per token** (F32; max sequences of ${r.kv.budget.tokensPerSequence} tokens in ${f(r.kv.budget.bytes / 2 ** 30, 2)} GiB)`, ''];
  out.push('| model | cache | bytes / token | max sequences | source |', '|---|---|---|---|---|');
  for (const k of r.kv.rows) out.push(`| ${k.model} | ${k.cache} | ${f(k.bytesPerToken, 0)} | ${k.maxSequences ?? '-'} | ${k.source} |`);
  return out;
}

function profileLines(r: BenchReport): string[] {
  const out = [
    '',
    '**Where our time goes** (ms; dense = pre/post-attention graphs + lm_head, indexer = scores + top-k, attention = sparse/dense MLA, experts = routing + routed experts)',
    '',
  ];
  const split = (s: Record<string, number> | undefined): string =>
    s
      ? Object.entries(s)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(', ')
      : '-';
  for (const s of r.singleStream) {
    const d = s.decode[s.decode.length - 1];
    const p = s.prefill[0];
    if (d)
      out.push(
        `- ${s.model}, ${s.label}: decode at ${d.context}: ${split(d.splitMs as unknown as Record<string, number>)} per token (${f(d.msPerToken, 2)} ms total)`,
      );
    if (p) out.push(`- ${s.model}, ${s.label}: prefill ${p.tokens}: ${split(p.splitMs as unknown as Record<string, number>)} (${f(p.ms, 0)} ms total)`);
  }
  if (r.profile)
    out.push(
      `- offline engine loop (no HTTP), ${r.profile.concurrency} concurrent, ${r.profile.numRequests} requests: mean step ${split(r.profile.stepSplitMs)}; decode-only steps ${f(r.profile.decodeTokensPerSecond)} tok/s at mean batch ${f(r.profile.meanDecodeBatch)}`,
    );
  return out;
}

const METHOD = [
  'Random F32 checkpoints (bench/models.ts); 2 ONNX Runtime threads, F32 weights and KV cache, token-id prompts, greedy. The comparison with llama.cpp on the same weights is `npm run bench:peer` (bench/compare/).',
  'Decode (batch 1): the offline driver over EngineCore; at context c a real prefill of c tokens, then warm-up steps (untimed) and timed greedy steps, wall time between step ends.',
  'Prefill: one prompt from an empty cache in 2048-token chunks (the server default); prompts <= 1024 tokens best of N after a warm-up, longer ones one run.',
  'Serving: closed loop (compare/load_generator.ts), N workers each sending its next request when the previous finished, distinct random prompts, a fixed output length (ignore_eos), streamed from a spawned server process over HTTP/SSE. TTFT = first chunk - request start; ITL = gaps between chunks; throughput = output tokens / (last finish - first start).',
  'KV bytes per token: PagedKVStorage.bytesPerToken; MHA = layers x heads x (nope + rope + v) x 4 B.',
  'Ceilings: bandwidth ceiling = measured read bandwidth / weight bytes one decode token reads (all but the embedding table and the unpicked experts); GEMM ceiling = measured GEMM GFLOP/s / (2 x those weights) per prompt token (attention not counted).',
  'Start-up: process spawn to the first 200 from GET /health.',
];

export function markdown(r: BenchReport): string {
  const lines = [
    `# Benchmark (${r.mode} run, ${r.date}, ${f(r.seconds, 0)} s)`,
    '',
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; measured read bandwidth ${f(r.limits.readBandwidthGBs)} GB/s, fp32 GEMM ${f(r.limits.gemmGflops, 0)} GFLOP/s. ${r.threads} ONNX Runtime threads, F32.`,
    '',
    ...(r.machine.loadAverageAtStart > 0.7
      ? [
          `WARNING: the 1-minute load average was ${f(r.machine.loadAverageAtStart, 2)} when the run started: other work may have shared the ${r.machine.cores} cores at first, so compare with a run on an idle machine.`,
          '',
        ]
      : []),
    '**Targets (issue 7)**',
    '',
    '| target | measured | wanted | met | verdict | from |',
    '|---|---|---|---|---|---|',
    ...r.targets.map(
      (t) =>
        `| ${t.name} | ${t.value === null ? '-' : t.value.toFixed(2)} | ${t.direction} ${t.target} | ${t.met === null ? '-' : t.met ? 'yes' : 'NO'} | ${t.verdict} | ${t.detail ?? ''} |`,
    ),
    ...decodeTable(r),
    ...servingTable(r),
    ...kvTable(r),
    '',
    `**Start-up** (${r.startup.model}): ours ${f(r.startup.oursSpawnToHealthMs ? r.startup.oursSpawnToHealthMs / 1000 : null, 2)} s from process spawn to /health 200 (in-process executor load ${f(r.startup.oursExecutorLoadMs ? r.startup.oursExecutorLoadMs / 1000 : null, 2)} s)`,
    ...profileLines(r),
  ];
  lines.push('', '**Method**', '', ...METHOD.map((m) => `- ${m}`));
  if (r.plots.length) lines.push('', '**Plots**', '', ...r.plots.map((p) => `![${path.basename(p)}](${path.basename(p)})`));
  if (r.errors.length) lines.push('', '**Errors**', '', ...r.errors.map((e) => `- ${e.part}: ${e.message}`));
  lines.push('');
  return lines.join('\n');
}

/** Writes the PNG plots next to the Markdown as <prefix>-*.png; returns their paths. */
export function writePlots(r: BenchReport, dir: string, prefix: string): string[] {
  const out: string[] = [];
  const write = (name: string, png: Buffer): void => {
    const p = path.join(dir, `${prefix}-${name}.png`);
    writeFileSync(p, png);
    out.push(p);
  };
  const note = `${r.machine.cpu}, ${r.threads} threads, F32 weights; ${r.mode} run ${r.date}`;
  // decode vs context: the model with the most contexts
  const models = [...new Set(r.singleStream.map((s) => s.model))];
  const byCount = models.map((m) => ({ m, n: Math.max(...r.singleStream.filter((s) => s.model === m).map((s) => s.decode.length)) })).sort((a, b) => b.n - a.n);
  const model = byCount[0]?.m;
  if (model !== undefined) {
    const rows = r.singleStream.filter((s) => s.model === model);
    const contexts = [...new Set(rows.flatMap((s) => s.decode.map((d) => d.context)))].sort((a, b) => a - b);
    const series: Series[] = variants(rows).map((label) => ({
      name: label,
      values: contexts.map((c) => rows.find((s) => s.label === label)?.decode.find((d) => d.context === c)?.tokensPerSecond ?? null),
    }));
    write(
      'decode-vs-context',
      renderLineChart({
        title: `Batch-1 decode tok/s vs context (${model})`,
        xLabel: 'context (tokens)',
        yLabel: 'decode tok/s',
        categories: contexts.map(String),
        series,
        note,
      }).png(),
    );
  }
  const s = r.serving;
  if (s && s.ours.length) {
    const cats = s.ours.map((o) => String(o.concurrency));
    const series = (pick: (x: ServingLevelResult) => number): Series[] => [{ name: 'ours (HTTP server)', values: s.ours.map(pick) }];
    write(
      'throughput-vs-concurrency',
      renderLineChart({
        title: `Aggregate output tok/s vs concurrency (${s.model})`,
        xLabel: 'concurrent requests',
        yLabel: 'output tok/s',
        categories: cats,
        series: series((x) => x.outputTokensPerSecond),
        note,
      }).png(),
    );
    write(
      'itl-p99-vs-concurrency',
      renderLineChart({
        title: `p99 inter-token latency vs concurrency (${s.model})`,
        xLabel: 'concurrent requests',
        yLabel: 'p99 ITL (ms)',
        categories: cats,
        series: series((x) => x.itlMs.p99),
        note,
      }).png(),
    );
  }
  return out;
}
