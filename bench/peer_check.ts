// Conversion check: the same token ids through our engine and through llama.cpp (node-llama-cpp) on the GGUF
// written by bench/gguf/convert_deepseek.ts; the top-10 next-token ids must agree. Short contexts only
// (<= index_topk), where the DSA indexer selects every key and sparse == dense attention.
//
//   node --import tsx bench/peer_check.ts [--no-fixture] [--no-dense] [--f16-cache] [--beyond-topk] [--json FILE]
//
// Cases:
// - bench-mini as `deepseek32` (indexer converted) vs our engine with DSA;
// - bench-mini as `deepseek2` (indexer dropped) vs our engine with --dense-attention;
// - test/fixtures/tiny-dsv32 as `deepseek2` vs our engine and the fixture's float64 golden logits, on the golden
//   prompts no longer than index_topk (llama.cpp's deepseek32 needs index_head_dim to be a power of two >= 64
//   for its Hadamard rotation; the fixture's is 16). This one exercises YaRN (factor 8, mscale_all_dim 1) and
//   group-limited routing (n_group 4, topk_group 2).
// --beyond-topk adds an informational case (not part of the verdict): bench-mini DSA at 300 and 600 tokens,
// where the indexer really selects 256 of the keys. With random weights many indexer scores are exactly 0
// (every head's relu(q.k) is 0), so the top-k boundary falls among exact ties and each engine breaks them its
// own way; measured: ours matches the float64 reference (test/helpers/reference_model.ts) to 1.3e-5 at 300
// tokens with the same selections, llama.cpp differs from both by ~0.1 in log-probability.
// Logits are compared as log-softmax (llama.cpp hands out its softmax of the raw logits), i.e. up to the
// per-row constant: "max |dlogit|" below is max over the vocabulary of |dlog p|.
// Exit status: 0 all agree, 1 a disagreement, 3 the peer is not installed (bench/peer/install.sh).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OfflineEngine } from '../src/engine/offline.ts';
import { loadModel } from '../src/engine/checkpoint/weights.ts';
import { seededRandom } from '../tools/checkpoint/random_weights.ts';
import { BENCH_MODEL_ROOT, ensureBenchCheckpoint } from './checkpoints.ts';
import { convertDeepseekToGguf, type GgufArch } from './gguf/convert_deepseek.ts';
import {
  PeerLlama,
  disposePeerRuntime,
  expectedPeerKvBytesPerToken,
  logSoftmax,
  peerUnavailableReason,
  peerVersions,
  topK,
  type KvCacheReport,
} from './peer_llama.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE_DIR = path.join(ROOT, 'test', 'fixtures', 'tiny-dsv32');
const TOP = 10;

export interface PromptResult {
  readonly length: number;
  readonly oursTop: number[];
  readonly peerTop: number[];
  readonly goldenTop: number[] | null;
  readonly orderedMatch: boolean;
  readonly setMatch: boolean;
  /** Smallest gap between adjacent entries of our top-(k+1) logits: how close the ranking is to a tie. */
  readonly ourMinTopGap: number;
  readonly maxAbsLogprobDiff: number;
  readonly goldenMaxAbsLogprobDiff: number | null;
  readonly goldenMaxAbsLogprobDiffOurs: number | null;
}

export interface CaseResult {
  readonly name: string;
  readonly checkpoint: string;
  readonly arch: GgufArch;
  readonly ourAttention: 'dsa' | 'dense';
  readonly gguf: string;
  readonly ggufMiB: number;
  readonly kvCache: KvCacheReport | null;
  /** What the model's shapes imply for llama.cpp's caches (kvCache should match it within its uncertainty). */
  readonly expectedKvBytesPerToken: number;
  readonly prompts: PromptResult[];
  readonly agree: boolean;
  /** Not part of the verdict (see --beyond-topk). */
  readonly informational: boolean;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d; // NaN / Infinity propagate
  }
  return m;
}

function minAdjacentGap(values: ArrayLike<number>, order: readonly number[]): number {
  let g = Infinity;
  for (let i = 0; i + 1 < order.length; i++) g = Math.min(g, values[order[i]!]! - values[order[i + 1]!]!);
  return g;
}

function randomPrompts(vocab: number, lengths: readonly number[], seed: number): number[][] {
  const rng = seededRandom(seed);
  return lengths.map((n) => Array.from({ length: n }, () => 2 + Math.floor(rng.uniform() * (vocab - 2))));
}

interface CaseSpec {
  readonly name: string;
  readonly checkpointDir: string;
  readonly ggufDir: string;
  readonly arch: GgufArch;
  readonly prompts: number[][];
  /** float64 reference logits of each prompt's last position (the fixture's golden data), if any. */
  readonly golden?: (Float32Array | null)[];
  readonly informational?: boolean;
}

async function runCase(spec: CaseSpec, kvCacheType: 'F16' | 'F32', log: (s: string) => void, flashAttention = false): Promise<CaseResult> {
  const model = loadModel(spec.checkpointDir);
  const vocab = model.config.vocabSize;
  const dense = spec.arch === 'deepseek2' && model.config.indexer !== null;
  mkdirSync(spec.ggufDir, { recursive: true });
  const gguf = path.join(spec.ggufDir, `${path.basename(spec.checkpointDir)}-${spec.arch}-f32.gguf`);
  const conv = convertDeepseekToGguf(model, gguf, { arch: spec.arch, dtype: 'F32' });
  for (const w of conv.warnings) log(`  conversion warning: ${w}`);

  const maxLen = Math.max(...spec.prompts.map((p) => p.length));
  const engine = await OfflineEngine.create(spec.checkpointDir, {
    runner: { denseAttention: dense, kvCacheMemory: 256 * 2 ** 20 },
    enablePrefixCaching: false,
    captureLogits: true,
  });
  let ours: Float64Array[];
  try {
    const res = await engine.generate(spec.prompts.map((promptTokenIds) => ({ promptTokenIds, params: { temperature: 0, maxTokens: 1, ignoreEos: true } })));
    ours = res.map((r) => logSoftmax(r.stepLogits[0]!));
  } finally {
    await engine.dispose();
  }

  const peer = await PeerLlama.load(gguf, vocab, { threads: 2, contextSize: Math.max(256, Math.ceil(maxLen / 256) * 256), kvCacheType, flashAttention });
  const prompts: PromptResult[] = [];
  try {
    for (let i = 0; i < spec.prompts.length; i++) {
      const theirs = await peer.nextTokenLogprobs(spec.prompts[i]!);
      const oursTop = topK(ours[i]!, TOP);
      const peerTop = topK(theirs, TOP);
      const golden = spec.golden?.[i] ? logSoftmax(spec.golden[i]!) : null;
      prompts.push({
        length: spec.prompts[i]!.length,
        oursTop,
        peerTop,
        goldenTop: golden ? topK(golden, TOP) : null,
        orderedMatch: oursTop.every((t, j) => t === peerTop[j]),
        setMatch: oursTop.every((t) => peerTop.includes(t)),
        ourMinTopGap: minAdjacentGap(ours[i]!, topK(ours[i]!, TOP + 1)),
        maxAbsLogprobDiff: maxAbsDiff(ours[i]!, theirs),
        goldenMaxAbsLogprobDiff: golden ? maxAbsDiff(golden, theirs) : null,
        goldenMaxAbsLogprobDiffOurs: golden ? maxAbsDiff(golden, ours[i]!) : null,
      });
    }
  } finally {
    await peer.dispose();
  }
  return {
    name: spec.name,
    checkpoint: path.relative(ROOT, spec.checkpointDir),
    arch: spec.arch,
    ourAttention: model.config.indexer !== null && !dense ? 'dsa' : 'dense',
    gguf: path.relative(ROOT, gguf),
    ggufMiB: conv.bytes / 2 ** 20,
    kvCache: peer.kvCache,
    expectedKvBytesPerToken: expectedPeerKvBytesPerToken(model.config, spec.arch, kvCacheType),
    prompts,
    agree: prompts.every((p) => p.orderedMatch),
    informational: spec.informational ?? false,
  };
}

export interface PeerCheckOptions {
  readonly fixture?: boolean;
  readonly dense?: boolean;
  readonly kvCacheType?: 'F16' | 'F32';
  /** llama.cpp flash attention (default off). */
  readonly flashAttention?: boolean;
  /** Add the informational sparse-selection case (prompts longer than index_topk). */
  readonly beyondTopk?: boolean;
  readonly log?: (line: string) => void;
}

/** Runs the conversion check; throws when the peer is not installed (see peerUnavailableReason). */
export async function runPeerCheck(options: PeerCheckOptions = {}): Promise<CaseResult[]> {
  const reason = peerUnavailableReason();
  if (reason !== null) throw new Error(reason);
  const log = options.log ?? ((): void => {});
  const kvCacheType = options.kvCacheType ?? 'F32';
  const miniDir = ensureBenchCheckpoint('bench-mini');
  const miniPrompts = randomPrompts(32000, [1, 7, 64, 200], 11);
  const specs: CaseSpec[] = [{ name: 'bench-mini, DSA', checkpointDir: miniDir, ggufDir: miniDir, arch: 'deepseek32', prompts: miniPrompts }];
  if (options.beyondTopk) {
    specs.push({
      name: 'bench-mini, DSA beyond index_topk (informational)',
      checkpointDir: miniDir,
      ggufDir: miniDir,
      arch: 'deepseek32',
      prompts: randomPrompts(32000, [300, 600], 5),
      informational: true,
    });
  }
  if (options.dense ?? true)
    specs.push({ name: 'bench-mini, dense attention', checkpointDir: miniDir, ggufDir: miniDir, arch: 'deepseek2', prompts: miniPrompts });
  if (options.fixture ?? true) {
    const { Golden } = await import('../test/helpers/golden.ts');
    const golden = new Golden(FIXTURE_DIR);
    const topk = loadModel(FIXTURE_DIR).config.indexer?.topk ?? Infinity;
    const vocab = 512;
    const use = golden.json.prompts.map((p, i) => ({ p, i })).filter(({ p }) => p.length <= topk);
    specs.push({
      name: 'tiny-dsv32 fixture (YaRN, grouped routing), dense = DSA at <= index_topk',
      checkpointDir: FIXTURE_DIR,
      ggufDir: path.join(BENCH_MODEL_ROOT, 'tiny-dsv32'),
      arch: 'deepseek2',
      prompts: use.map(({ p }) => p),
      golden: use.map(({ p, i }) => golden.floats(`prefill_logits.p${i}`).slice((p.length - 1) * vocab, p.length * vocab)),
    });
  }
  const results: CaseResult[] = [];
  try {
    for (const spec of specs) {
      log(`${spec.name}: ${spec.arch} GGUF of ${path.relative(ROOT, spec.checkpointDir)}, prompts of ${spec.prompts.map((p) => p.length).join(', ')} tokens`);
      results.push(await runCase(spec, kvCacheType, log, options.flashAttention ?? false));
    }
  } finally {
    await disposePeerRuntime();
  }
  return results;
}

function report(results: readonly CaseResult[], kvCacheType: string): string {
  const fmt = (x: number | null): string => (x === null ? '-' : x.toExponential(2));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(
      '',
      `## ${r.name}${r.informational ? ' - not part of the verdict' : ''}`,
      `llama.cpp arch ${r.arch} (${r.gguf}, ${r.ggufMiB.toFixed(1)} MiB, F32 weights, ${kvCacheType} KV cache) vs ours (${r.ourAttention} attention)`,
    );
    const kv = r.kvCache;
    lines.push(
      kv
        ? `llama.cpp KV cache: reported ${kv.bytesPerToken.toFixed(0)} +- ${kv.bytesPerTokenUncertainty.toFixed(0)} B/token (${kv.caches.map((c) => `${c.mib} MiB ${c.type}`).join(' + ')} for ${kv.cells} cells), expected from the shapes ${r.expectedKvBytesPerToken} B/token`
        : `llama.cpp KV cache: not reported; expected from the shapes ${r.expectedKvBytesPerToken} B/token`,
    );
    lines.push(
      '',
      '| prompt tokens | top-10 ordered | top-10 set | max abs dlogp ours vs llama.cpp | vs golden: llama.cpp / ours | our min top-11 gap | our top-10 |',
      '|---|---|---|---|---|---|---|',
    );
    for (const p of r.prompts) {
      lines.push(
        `| ${p.length} | ${p.orderedMatch ? 'yes' : 'NO'} | ${p.setMatch ? 'yes' : 'NO'} | ${fmt(p.maxAbsLogprobDiff)} | ${fmt(p.goldenMaxAbsLogprobDiff)} / ${fmt(p.goldenMaxAbsLogprobDiffOurs)} | ${fmt(p.ourMinTopGap)} | ${p.oursTop.join(' ')} |`,
      );
      if (!p.orderedMatch) lines.push(`|  | llama.cpp top-10: ${p.peerTop.join(' ')} | | | | | |`);
    }
  }
  const all = results.every((r) => r.agree || r.informational);
  lines.push('', all ? 'RESULT: top-10 next-token ids agree on every prompt.' : 'RESULT: DISAGREEMENT (see NO above).', '');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'no-fixture': { type: 'boolean', default: false },
      'no-dense': { type: 'boolean', default: false },
      'f16-cache': { type: 'boolean', default: false },
      'flash-attention': { type: 'boolean', default: false },
      'beyond-topk': { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const reason = peerUnavailableReason();
  if (reason !== null) {
    process.stdout.write(`peer check skipped: ${reason}\n`);
    process.exitCode = 3;
    return;
  }
  const v = peerVersions()!;
  const kvCacheType = values['f16-cache'] ? 'F16' : 'F32';
  process.stdout.write(
    `node-llama-cpp ${v.nodeLlamaCpp}, @node-llama-cpp/linux-x64 ${v.binary} (llama.cpp release ${v.llamaCppRelease}), CPU, 2 threads, ${kvCacheType} KV cache, flash attention ${values['flash-attention'] ? 'on' : 'off'}\n`,
  );
  const t0 = performance.now();
  const results = await runPeerCheck({
    fixture: !values['no-fixture'],
    dense: !values['no-dense'],
    kvCacheType,
    flashAttention: values['flash-attention'],
    beyondTopk: values['beyond-topk'],
    log: (s) => process.stdout.write(`${s}\n`),
  });
  process.stdout.write(report(results, kvCacheType));
  process.stdout.write(`(${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ versions: v, kvCacheType, results }, null, 2)}\n`);
  if (!results.every((r) => r.agree || r.informational)) process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`peer check failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
