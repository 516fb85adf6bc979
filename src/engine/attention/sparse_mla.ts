// One attention group of one layer: DSA key selection, then absorbed MLA over the paged latent cache.
//
// Per query row at position p the visible keys are positions 0..p (causal, the row itself included).
// With an indexer and more than index_topk visible keys, only the index_topk best-scored keys are
// attended; otherwise all visible keys are (README "Lightning indexer").
// Decode groups (S = 1) gather only the selected rows (cost ~ topk, flat in context length);
// prefill chunks gather the whole context once and mask per row (cost ~ S * T).
import { floatTensor, int32Tensor, type GraphSession } from '../onnx/session.ts';
import type { SparsityCounters, StepProfiler } from '../step_profiler.ts';
import type { AttentionGroup } from '../model/step_plan.ts';
import { selectTopK } from '../../common/select.ts';

const MASKED = -1e30; // finite, so a fully masked (padding) row can never turn into NaN
export const DEFAULT_MAX_SCORE_ELEMENTS = 1 << 25; // 128 MiB of float32 scores per attention run

export interface AttentionLayerInputs {
  readonly q: Float32Array; // [N, H, C] all rows of the step
  readonly iq: Float32Array | null; // [N, Hi, Di]
  readonly iw: Float32Array | null; // [N, Hi]
  readonly latentCache: Float32Array; // [P, C]
  readonly indexerCache: Float32Array | null; // [P, Di]
}

export interface AttentionShapes {
  readonly numHeads: number; // H
  readonly latentDim: number; // C = L + dr
  readonly kvLoraRank: number; // L
  readonly indexerHeads: number; // Hi
  readonly indexerDim: number; // Di
  readonly indexTopk: number; // 0 when the indexer is off (dense attention)
  readonly maxScoreElements: number; // bound on one attention run's [B, S * H, K] scores
}

export interface AttentionSessions {
  readonly attention: GraphSession;
  readonly indexer: GraphSession | null; // prefill chunks
  readonly indexerDecode: GraphSession | null; // one query row per sequence
}

/** Per-step context: where time and sparsity are counted, and whether selections are recorded. */
export interface AttendContext {
  readonly profiler: StepProfiler;
  readonly recordSelections: boolean;
}

/** The keys one group attends: slot indices [B, K] and an additive mask [B, S, K]. */
interface GroupKeys {
  readonly idx: Int32Array;
  readonly mask: Float32Array;
  readonly K: number;
}

/** Writes the attended positions of row (b, i) into `out`, returns how many; counts sparsity. */
type Selector = (b: number, i: number, out: Int32Array) => number;

function makeSelector(group: AttentionGroup, scores: Float32Array | null, topk: number, sparsity: SparsityCounters): Selector {
  const { queryLen: S, maxContext: T, startPos } = group;
  return (b, i, out) => {
    const visible = startPos[b] + i + 1;
    for (let s = 0; s < visible; s++) out[s] = s;
    // Quickselect (ties to the lower position) leaves the topk best positions in out[0 .. n).
    const row = (b * S + i) * T;
    const n = !scores || visible <= topk ? visible : selectTopK(scores.subarray(row, row + visible), out, visible, topk);
    sparsity.queries++;
    sparsity.visibleKeys += visible;
    sparsity.selectedKeys += n;
    return n;
  };
}

/** Decode (S = 1): gather only the chosen rows; each row is padded to K with masked copies of its first key. */
function decodeKeys(group: AttentionGroup, select: Selector, lastSelections: Int32Array[] | null): GroupKeys {
  const { numSeqs: B, maxContext: T } = group;
  const chosen = new Int32Array(T);
  const picked = Array.from({ length: B }, (_, b) => chosen.slice(0, select(b, 0, chosen)));
  const K = Math.max(...picked.map((p) => p.length));
  const idx = new Int32Array(B * K);
  const mask = new Float32Array(B * K).fill(MASKED);
  picked.forEach((positions, b) => {
    const slots = group.keySlots.subarray(b * T, (b + 1) * T);
    for (let j = 0; j < K; j++) idx[b * K + j] = slots[j < positions.length ? positions[j] : 0];
    mask.fill(0, b * K, b * K + positions.length);
    lastSelections?.push(positions.sort());
  });
  return { idx, mask, K };
}

/** Prefill chunk (B = 1): the whole context gathered once, masked per query row (causal AND selected). */
function prefillKeys(group: AttentionGroup, select: Selector, lastSelections: Int32Array[] | null): GroupKeys {
  const { queryLen: S, maxContext: T, startPos } = group;
  const chosen = new Int32Array(T);
  const mask = new Float32Array(S * T).fill(MASKED);
  for (let i = 0; i < S; i++) {
    const n = select(0, i, chosen);
    if (n === startPos[0] + i + 1) mask.fill(0, i * T, i * T + n);
    else for (let j = 0; j < n; j++) mask[i * T + chosen[j]] = 0;
    if (i === S - 1) lastSelections?.push(chosen.slice(0, n).sort());
  }
  return { idx: group.keySlots, mask, K: T };
}

/** DSA key selection (IDX 5-6, indexer.ts) and sparse absorbed MLA (MLA 5, mla.ts) for one layer's groups. */
export class SparseMlaAttention {
  constructor(
    private readonly shapes: AttentionShapes,
    private readonly sessions: AttentionSessions,
  ) {}

  /** Attends one group; returns o [B * S, H, L] and, if recorded, the selected positions of each sequence's last row. */
  async attend(group: AttentionGroup, inp: AttentionLayerInputs, ctx: AttendContext): Promise<{ o: Float32Array; lastSelections: Int32Array[] | null }> {
    const { profiler } = ctx;
    const scores = await profiler.timeAsync('indexer', () => indexerScores(group, inp, this.shapes, this.sessions));
    const select = makeSelector(group, scores, this.shapes.indexTopk, profiler.sparsity);
    const lastSelections: Int32Array[] | null = ctx.recordSelections ? [] : null;
    // Top-k selection runs inside the key building: it is indexer time when there were scores.
    const keys = profiler.time(scores ? 'indexer' : 'attention', () =>
      group.queryLen === 1 ? decodeKeys(group, select, lastSelections) : prefillKeys(group, select, lastSelections),
    );
    const o = await profiler.timeAsync('attention', () => runAttention(group, inp, this.shapes, this.sessions.attention, keys));
    return { o, lastSelections };
  }
}

/**
 * The attention graph materialises scores [B, S * H, K]; a long prefill chunk over a long context
 * would make that gigabytes, so query rows go in slices of at most shapes.maxScoreElements scores.
 */
async function runAttention(group: AttentionGroup, inp: AttentionLayerInputs, shapes: AttentionShapes, session: GraphSession, keys: GroupKeys): Promise<Float32Array> {
  const { numSeqs: B, queryLen: S, rowStart } = group;
  const { numHeads: H, latentDim: C, kvLoraRank: L } = shapes;
  const { idx, mask, K } = keys;
  const cache = floatTensor(inp.latentCache, [inp.latentCache.length / C, C]);
  const rowsPerRun = B > 1 ? S : Math.max(1, Math.min(S, Math.floor(shapes.maxScoreElements / (H * K))));
  const o = rowsPerRun === S ? null : new Float32Array(S * H * L);
  for (let i0 = 0; i0 < S; i0 += rowsPerRun) {
    const n = Math.min(rowsPerRun, S - i0);
    const first = rowStart + i0;
    const [part] = await session.run(
      {
        q: floatTensor(inp.q.subarray(first * H * C, (first + B * n) * H * C), [B, n, H, C]),
        cache,
        idx: int32Tensor(idx, [B, K]),
        mask: floatTensor(mask.subarray(i0 * K, (i0 + B * n) * K), [B, n, K]),
      },
      ['o'],
    );
    if (!o) return part;
    o.set(part, i0 * H * L);
  }
  return o!;
}

/** Indexer scores [B, S, T] when some row of the group has more visible keys than index_topk, else null. */
async function indexerScores(group: AttentionGroup, inp: AttentionLayerInputs, shapes: AttentionShapes, sessions: AttentionSessions): Promise<Float32Array | null> {
  const { numSeqs: B, queryLen: S, maxContext: T } = group;
  if (!sessions.indexer || !inp.iq || !inp.iw || !inp.indexerCache || shapes.indexTopk === 0) return null;
  if (Math.max(...group.startPos) + S <= shapes.indexTopk) return null;
  const { indexerHeads: Hi, indexerDim: Di } = shapes;
  const r0 = group.rowStart;
  const rows = B * S;
  const session = S === 1 && sessions.indexerDecode ? sessions.indexerDecode : sessions.indexer;
  const [scores] = await session.run(
    {
      iq: floatTensor(inp.iq.subarray(r0 * Hi * Di, (r0 + rows) * Hi * Di), [B, S, Hi, Di]),
      cache: floatTensor(inp.indexerCache, [inp.indexerCache.length / Di, Di]),
      idx: int32Tensor(group.keySlots, [B, T]),
      iw: floatTensor(inp.iw.subarray(r0 * Hi, (r0 + rows) * Hi), [B, S, Hi]),
    },
    ['scores'],
  );
  return scores;
}
