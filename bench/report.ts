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
  readonly peer: {
    readonly available: boolean;
    readonly reason: string | null;
    readonly versions: { nodeLlamaCpp: string; binary: string; llamaCppRelease: string } | null;
    readonly kvCacheType: 'F16' | 'F32';
    readonly flashAttention: boolean;
    readonly runtimeInitMs: number | null;
  };
  readonly singleStream: SingleStreamResult[];
  readonly serving: {
    readonly model: string;
    readonly ours: ServingLevelResult[];
    readonly peer: ServingLevelResult[] | null;
    readonly ourServer: { readonly command: string; readonly flags: readonly string[] } | null;
  } | null;
  readonly kv: { readonly budget: { readonly bytes: number; readonly tokensPerSequence: number }; readonly rows: KvRow[] };
  readonly startup: { readonly oursSpawnToHealthMs: number | null; readonly oursExecutorLoadMs: number | null; readonly peerLoadMs: number | null; readonly peerRuntimeInitMs: number | null; readonly model: string };
  readonly profile: ThroughputResult | null;
  readonly targets: TargetResult[];
  readonly errors: { readonly part: string; readonly message: string }[];
  readonly plots: string[];
}

const f = (n: number | null | undefined, d = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));

/** Variant labels in a stable column order. */
function variants(rows: readonly SingleStreamResult[]): string[] {
  const order = ['ours DSA', 'ours dense', 'llama.cpp deepseek32', 'llama.cpp deepseek2 (dense)', 'llama.cpp deepseek32, 1 thread', 'llama.cpp deepseek32, flash attn + F16 cache'];
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
    out.push('', `**${model}** batch-1 decode, tok/s (bandwidth ceiling = ${f(r.limits.readBandwidthGBs)} GB/s / ${f(weight ? weight / 1e6 : null)} MB of weights per token = ${f(ceiling)} tok/s)`, '');
    out.push(`| context | ${labels.join(' | ')} | ours DSA / llama.cpp deepseek32 | ours DSA / ceiling |`, `|---|${labels.map(() => '---').join('|')}|---|---|`);
    const contexts = [...new Set(rows.flatMap((s) => s.decode.map((d) => d.context)))].sort((a, b) => a - b);
    for (const c of contexts) {
      const v = (label: string): number | null => rows.find((s) => s.label === label)?.decode.find((d) => d.context === c)?.tokensPerSecond ?? null;
      const ours = v('ours DSA');
      const peer = v('llama.cpp deepseek32');
      out.push(`| ${c} | ${labels.map((l) => f(v(l))).join(' | ')} | ${ours && peer ? `${f(ours / peer, 2)}x` : '-'} | ${ours && ceiling ? `${f((100 * ours) / ceiling, 0)}%` : '-'} |`);
    }
    const lens = [...new Set(rows.flatMap((s) => s.prefill.map((p) => p.tokens)))].sort((a, b) => a - b);
    if (lens.length) {
      const gemmCeiling = weight ? (r.limits.gemmGflops * 1e9) / (2 * (weight / 4)) : null;
      out.push('', `**${model}** prefill, tok/s (GEMM ceiling, weights only = ${f(r.limits.gemmGflops, 0)} GFLOP/s / ${f(weight ? (2 * weight) / 4 / 1e6 : null, 0)} MFLOP per token = ${f(gemmCeiling, 0)} tok/s)`, '');
      out.push(`| prompt tokens | ${labels.join(' | ')} | ours DSA / llama.cpp deepseek32 |`, `|---|${labels.map(() => '---').join('|')}|---|`);
      for (const L of lens) {
        const v = (label: string): number | null => rows.find((s) => s.label === label)?.prefill.find((p) => p.tokens === L)?.tokensPerSecond ?? null;
        const ours = v('ours DSA');
        const peer = v('llama.cpp deepseek32');
        out.push(`| ${L} | ${labels.map((l) => f(v(l), 0)).join(' | ')} | ${ours && peer ? `${f(ours / peer, 2)}x` : '-'} |`);
      }
    }
  }
  return out;
}

function servingTable(r: BenchReport): string[] {
  const s = r.serving;
  if (!s) return [];
  const out = ['', `**Serving** (${s.model}; ${s.ours[0]?.promptTokens ?? '-'}-token prompts, ${s.ours[0]?.outputTokens ?? '-'} output tokens, ignore_eos, greedy; closed loop; ours over HTTP/SSE, llama.cpp through node-llama-cpp's batched sequences in process)`, ''];
  out.push('| concurrency | requests | ours output tok/s | llama.cpp output tok/s | ours / llama.cpp | TTFT p50 / p99 ms ours | TTFT p50 / p99 ms llama.cpp | ITL p50 / p99 ms ours | ITL p50 / p99 ms llama.cpp |', '|---|---|---|---|---|---|---|---|---|');
  for (const o of s.ours) {
    const p = s.peer?.find((x) => x.concurrency === o.concurrency) ?? null;
    out.push(`| ${o.concurrency} | ${o.numRequests} | ${f(o.outputTokensPerSecond)} | ${f(p?.outputTokensPerSecond)} | ${p ? `${f(o.outputTokensPerSecond / p.outputTokensPerSecond, 2)}x` : '-'} | ${f(o.ttftMs.p50, 0)} / ${f(o.ttftMs.p99, 0)} | ${p ? `${f(p.ttftMs.p50, 0)} / ${f(p.ttftMs.p99, 0)}` : '-'} | ${f(o.itlMs.p50)} / ${f(o.itlMs.p99)} | ${p ? `${f(p.itlMs.p50)} / ${f(p.itlMs.p99)}` : '-'} |`);
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
  const out = ['', '**Where our time goes** (ms; dense = pre/post-attention graphs + lm_head, indexer = scores + top-k, attention = sparse/dense MLA, experts = routing + routed experts)', ''];
  const split = (s: Record<string, number> | undefined): string => (s ? Object.entries(s).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') : '-');
  for (const s of r.singleStream.filter((x) => x.engine === 'ours')) {
    const d = s.decode[s.decode.length - 1];
    const p = s.prefill[0];
    if (d) out.push(`- ${s.model}, ${s.label}: decode at ${d.context}: ${split(d.splitMs as unknown as Record<string, number>)} per token (${f(d.msPerToken, 2)} ms total)`);
    if (p) out.push(`- ${s.model}, ${s.label}: prefill ${p.tokens}: ${split(p.splitMs as unknown as Record<string, number>)} (${f(p.ms, 0)} ms total)`);
  }
  if (r.profile) out.push(`- offline engine loop (no HTTP), ${r.profile.concurrency} concurrent, ${r.profile.numRequests} requests: mean step ${split(r.profile.stepSplitMs)}; decode-only steps ${f(r.profile.decodeTokensPerSecond)} tok/s at mean batch ${f(r.profile.meanDecodeBatch)}`);
  return out;
}

const METHOD = [
  'Same weights: random F32 checkpoints (bench/models.ts) converted to GGUF by bench/gguf (deepseek32 = with the DSA indexer, deepseek2 = dense attention); both engines 2 threads, F32 weights and KV cache, token-id prompts, greedy.',
  'Decode (batch 1): ours = model.step of one token at positions c, c+1, ... (warm-up steps untimed) with the KV storage pre-filled with random values instead of a prefill (cost depends on the count, not the values); llama.cpp = one sequence extended by an incremental prefill to each context in ascending order, then greedy steps timed through controlledEvaluate, then truncated back.',
  'Prefill: one prompt from an empty cache; ours in 2048-token chunks (the server default), llama.cpp in 512-token ubatches; prompts <= 1024 tokens best of N after a warm-up, longer ones one run (llama.cpp: the sum of the incremental extensions).',
  'Serving: closed loop, N workers each sending its next request when the previous finished, 256-token distinct random prompts, 128 output tokens (ignore_eos), streamed. Ours: a spawned server process, POST /v1/completions over HTTP/SSE from the bench process. llama.cpp: one node-llama-cpp context with N sequences; each worker owns one sequence and iterates sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true}); node-llama-cpp decodes all pending sequences together in one llama_decode per event-loop cycle. TTFT = first token - request start; ITL = gaps between tokens; throughput = output tokens / (last finish - first start).',
  "KV bytes per token: ours from PagedKVStorage.bytesPerToken; llama.cpp from the 'llama_kv_cache: size = ...' lines it logs when the context is created (F32 cache); MHA = layers x heads x (nope + rope + v) x 4 B.",
  'Ceilings: bandwidth ceiling = measured read bandwidth / weight bytes one decode token reads (all but the embedding table and the unpicked experts); GEMM ceiling = measured GEMM GFLOP/s / (2 x those weights) per prompt token (attention not counted).',
  'Start-up: ours = process spawn to the first 200 from GET /health; llama.cpp = loadModel + createContext in an already running process.',
];

/** Flags llama.cpp decoding faster on 1 thread than on 2 (seen on this 2-vCPU VM). */
function threadNote(r: BenchReport): string[] {
  const one = r.singleStream.find((s) => s.label === 'llama.cpp deepseek32, 1 thread');
  const two = r.singleStream.find((s) => s.model === one?.model && s.label === 'llama.cpp deepseek32');
  const d1 = one?.decode.find((d) => d.context === 0)?.tokensPerSecond;
  const d2 = two?.decode.find((d) => d.context === 0)?.tokensPerSecond;
  if (!d1 || !d2 || d1 <= d2) return [];
  return ['', `Note: llama.cpp decodes faster on 1 thread than on ${r.threads} here (${f(d1)} vs ${f(d2)} tok/s at context 0 on ${one!.model}). A likely cause (not profiled): with ${r.threads} threads on ${r.machine.cores} cores, ggml's spin-waiting worker competes with the Node.js threads that drive node-llama-cpp between and during graph runs; observed per-token times jump between ~6 and 10-45 ms. The issue asks for ${r.threads} threads, so those are the main columns; the "faster thread count" targets compare against the better of the two.`];
}

export function markdown(r: BenchReport): string {
  const peer = r.peer.available && r.peer.versions
    ? `llama.cpp release ${r.peer.versions.llamaCppRelease} via node-llama-cpp ${r.peer.versions.nodeLlamaCpp} (prebuilt CPU binary), ${r.threads} threads, F32 weights (same random weights, converted by bench/gguf), ${r.peer.kvCacheType} KV cache, flash attention ${r.peer.flashAttention ? 'on' : 'off'}`
    : `llama.cpp: SKIPPED (${r.peer.reason ?? 'unknown'})`;
  const lines = [
    `# Benchmark (${r.mode} run, ${r.date}, ${f(r.seconds, 0)} s)`,
    '',
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; measured read bandwidth ${f(r.limits.readBandwidthGBs)} GB/s, fp32 GEMM ${f(r.limits.gemmGflops, 0)} GFLOP/s. Ours: ${r.threads} ONNX Runtime threads, F32. Peer: ${peer}.`,
    '',
    ...(r.machine.loadAverageAtStart > 0.7 ? [`WARNING: the 1-minute load average was ${f(r.machine.loadAverageAtStart, 2)} when the run started: other work may have shared the ${r.machine.cores} cores at first. llama.cpp's spin-waiting threads suffer far more from competing work than ONNX Runtime does (seen while a training job ran: 10-100x slower), so compare with a run on an idle machine.`, ''] : []),
    '**Targets (issue 7)**',
    '',
    '| target | measured | wanted | met | verdict | from |',
    '|---|---|---|---|---|---|',
    ...r.targets.map((t) => `| ${t.name} | ${t.value === null ? '-' : t.value.toFixed(2)} | ${t.direction} ${t.target} | ${t.met === null ? '-' : t.met ? 'yes' : 'NO'} | ${t.verdict} | ${t.detail ?? ''} |`),
    ...threadNote(r),
    ...decodeTable(r),
    ...servingTable(r),
    ...kvTable(r),
    '',
    `**Start-up** (${r.startup.model}): ours ${f(r.startup.oursSpawnToHealthMs ? r.startup.oursSpawnToHealthMs / 1000 : null, 2)} s from process spawn to /health 200 (in-process executor load ${f(r.startup.oursExecutorLoadMs ? r.startup.oursExecutorLoadMs / 1000 : null, 2)} s); llama.cpp ${f(r.startup.peerLoadMs ? r.startup.peerLoadMs / 1000 : null, 2)} s loadModel + createContext (+ ${f(r.startup.peerRuntimeInitMs ? r.startup.peerRuntimeInitMs / 1000 : null, 2)} s one-time runtime/addon init)`,
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
  if (byCount.length) {
    const model = byCount[0].m;
    const rows = r.singleStream.filter((s) => s.model === model);
    const contexts = [...new Set(rows.flatMap((s) => s.decode.map((d) => d.context)))].sort((a, b) => a - b);
    const series: Series[] = variants(rows).map((label) => ({
      name: label,
      values: contexts.map((c) => rows.find((s) => s.label === label)?.decode.find((d) => d.context === c)?.tokensPerSecond ?? null),
      dashed: label.includes('llama.cpp'),
    }));
    write('decode-vs-context', renderLineChart({ title: `Batch-1 decode tok/s vs context (${model})`, xLabel: 'context (tokens)', yLabel: 'decode tok/s', categories: contexts.map(String), series, note }).png());
  }
  const s = r.serving;
  if (s && s.ours.length) {
    const cats = s.ours.map((o) => String(o.concurrency));
    const peerVal = (c: number, pick: (x: ServingLevelResult) => number): number | null => {
      const p = s.peer?.find((x) => x.concurrency === c);
      return p ? pick(p) : null;
    };
    const series = (pick: (x: ServingLevelResult) => number): Series[] => [
      { name: 'ours (HTTP server)', values: s.ours.map(pick) },
      ...(s.peer ? [{ name: 'llama.cpp (batched API)', values: s.ours.map((o) => peerVal(o.concurrency, pick)), dashed: true }] : []),
    ];
    write('throughput-vs-concurrency', renderLineChart({ title: `Aggregate output tok/s vs concurrency (${s.model})`, xLabel: 'concurrent requests', yLabel: 'output tok/s', categories: cats, series: series((x) => x.outputTokensPerSecond), note }).png());
    write('itl-p99-vs-concurrency', renderLineChart({ title: `p99 inter-token latency vs concurrency (${s.model})`, xLabel: 'concurrent requests', yLabel: 'p99 ITL (ms)', categories: cats, series: series((x) => x.itlMs.p99), note }).png());
  }
  return out;
}
