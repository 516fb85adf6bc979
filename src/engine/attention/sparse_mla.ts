// One attention group of one layer: DSA key selection (IDX 5-6, model/indexer.ts), then absorbed
// MLA (MLA 5, model/mla.ts) over the paged latent cache.
//
// Per query row at position p the visible keys are positions 0..p (causal, the row itself included).
// With an indexer and more than index_topk visible keys, only the index_topk best-scored keys are
// attended; otherwise all visible keys are (README "Lightning indexer"). Decode groups (S = 1) over float32
// or bfloat16 caches run in C (native/decode_layer.c attendRows: scores, top-k and attention, one call per
// group), and so do longer chunks over contexts up to NATIVE_CHUNK_MAX_CONTEXT; everything else runs the
// graphs, where scores, top-k and masks are computed, and this file only slices runs and gathers the
// selected slots.
// Decode groups (S = 1) gather only the selected rows (cost ~ topk, flat in context length), and so do
// groups of short chunks (verification chunks, S <= MAX_GROUPED_QUERY_LEN, one run per slice of sequences);
// prefill chunks over a context longer than GATHERED_PREFILL_MIN_CONTEXT x topk gather each row's
// selected rows too (cost ~ S * topk); over shorter contexts they score the whole context once and mask
// per row (cost ~ S * T), which is cheaper there.
import { floatTensor, int32Tensor, type Feed, type GraphSession } from '../onnx/session.ts';
import type { StepProfiler } from '../step_profiler.ts';
import type { NativeDecodeKernels } from '../native/native_kernels.ts';
import { MAX_GROUPED_QUERY_LEN, type AttentionGroup } from '../model/step_plan.ts';

export const DEFAULT_MAX_SCORE_ELEMENTS = 1 << 25; // 128 MiB of float32 scores per attention run

/**
 * DSA prefill attends only the selected keys (each row gathers its topk latent rows) once the context is
 * longer than this many times topk; below it, scoring the whole context and masking is cheaper than the
 * per-row gather. Measured on bench-mini-dsa (topk 256, H 8, C 288; CPU time of a whole prefill, loaded
 * machine): 640 tokens gathered 1.09-1.13 s vs masked 0.82-0.87 s; 4096 tokens gathered 10.1 s vs masked
 * 18.0 s (attention part 5.4 vs 25.9 s wall): break-even near 3.2 x topk.
 */
export const GATHERED_PREFILL_MIN_CONTEXT = 3;

/**
 * Batch-1 DSA decode scores the indexer keys in place over the span of slots holding them (no gather) while
 * the span is at most this many times the context. Break-even measured on bench-mini-dsa's decode graph
 * (kv_cache_graph.ts indexerKeySpanInput): gathering T keys costs as much as scoring 1.3 T in place at 16k,
 * 1.9 T at 64k.
 */
export const KEY_SPAN_MAX_FACTOR = 1.25;

export interface AttentionLayerInputs {
  readonly q: Float32Array; // [N, H, C] all rows of the step
  readonly iq: Float32Array | null; // [N, Hi, Di]
  readonly iw: Float32Array | null; // [N, Hi]
  readonly latentCache: Feed; // the layer's latent pool [P, C] in its stored dtype (model/kv_cache_graph.ts)
  readonly indexerCache: Feed | null; // the layer's indexer key pool [P, Di]
  /** The indexer keys of slots first .. first + count - 1 as a zero-copy view (model/kv_cache_graph.ts indexerKeySpanFeed). */
  readonly indexerKeySpan: ((first: number, count: number) => Feed) | null;
  /** The latent pool's rows [P, C] when the cache is float32 or bfloat16 (bits; the native kernels read them in place), else null. */
  readonly latentRows: Float32Array | Uint16Array | null;
  /** The indexer key pool's rows [P, Di] when float32 or bfloat16, else null. */
  readonly indexerKeyRows: Float32Array | Uint16Array | null;
}

/**
 * Native DSA decode (decode_layer.c dsa_decode) takes batch-1 decode at every context length, over float32
 * or bfloat16 pools, for indexers of up to this many heads. Its scoring puts the heads on vector lanes (up
 * to 128; measured 4.5x its per-head dot form at 64 heads x 128 dims), but beyond 16 heads it has not been
 * measured against ONNX Runtime's key MatMul, which is efficient at that width (N = 64), so wider indexers
 * keep the graph. Per decode step of bench-mini-dsa-128k (8 layers, 8 indexer heads x 64 dims, topk 256),
 * quiet, attention part native vs graph: 512 keys 0.80 vs 2.45-2.70 ms, 16k 2.65-3.00 vs 6.40-6.58 ms, 64k
 * 7.91-8.76 vs 10.81-11.69 ms.
 */
export const NATIVE_DSA_MAX_INDEXER_HEADS = 16;

/**
 * Chunks (S > 1) attend in C (decode_layer.c attendRows) while their context is at most this long. Each row
 * reads its own keys (its whole prefix, or with DSA the indexer keys of its prefix and its topk latent rows), so
 * the key traffic grows as S x T where the graphs' products share each key among the rows of a run. Measured
 * (2 threads, quiet, runs alternated): bench-mini, waves of 16 prompts of 256 tokens (no selection) attention
 * 309-394 ms per wave against 501-582 in the graph; one 512-token prompt (DSA, topk 256) indexer + attention
 * 61-85 ms against 160-215, the prompt 1.25-1.65k tok/s against 0.96-1.15k; bench-mini-dsa, 4096 tokens
 * (bench/dsa_prefill.ts, 5 rounds, against its previous run): DSA indexer + attention 1101 ms against 3115 (time to
 * first token 2322 against 4325 ms), dense attention 3316-3775 against 4412 ms. Longer contexts are not measured
 * and keep the graphs.
 */
export const NATIVE_CHUNK_MAX_CONTEXT = 4096;

export interface AttentionShapes {
  readonly numHeads: number; // H
  readonly latentDim: number; // C = L + dr
  readonly kvLoraRank: number; // L
  readonly indexerHeads: number; // Hi
  readonly indexerDim: number; // Di
  readonly indexTopk: number; // 0 when the indexer is off (dense attention)
  readonly maxScoreElements: number; // bound on one run's [B, S * max(H, Hi), K] scores
}

export interface AttentionSessions {
  readonly dense: GraphSession; // every visible key
  readonly prefillSelected: GraphSession | null; // DSA prefill: causal AND selected, masked over the whole context
  readonly prefillGathered: GraphSession | null; // DSA prefill: each row gathers only its selected keys
  readonly dsaDecode: GraphSession | null; // DSA decode: IDX 5-6 + MLA 5 over only the selected rows, one run
  readonly dsaDecodeKeySpan: GraphSession | null; // the same for one sequence, its keys scored in place over a span of slots
  readonly dsaRows: GraphSession | null; // as dsaDecode for groups of short chunks (S > 1 rows per sequence)
  readonly indexer: GraphSession | null; // IDX 5-6, prefill form
}

/** Per-step context: where time and sparsity are counted, and whether selections are recorded. */
export interface AttendContext {
  readonly profiler: StepProfiler;
  readonly recordSelections: boolean;
}

/** DSA key selection (IDX 5-6, indexer.ts) and sparse absorbed MLA (MLA 5, mla.ts) for one layer's groups. */
export class SparseMlaAttention {
  constructor(
    private readonly shapes: AttentionShapes,
    private readonly sessions: AttentionSessions,
    /** Batch-1 decode attention (and DSA selection) without a graph run, over float32 or bfloat16 pools (null: always ONNX Runtime). */
    private readonly native: NativeDecodeKernels | null = null,
  ) {}

  /** Attends one group; returns o [B * S, H, L] and, if recorded, the selected positions of each sequence's last row. */
  async attend(group: AttentionGroup, inp: AttentionLayerInputs, ctx: AttendContext): Promise<{ o: Float32Array; lastSelections: Int32Array[] | null }> {
    const { indexTopk } = this.shapes;
    const { queryLen: S, startPos } = group;
    const sparse = indexTopk > 0 && inp.iq !== null && Math.max(...startPos) + S > indexTopk;
    countSparsity(group, sparse ? indexTopk : Infinity, ctx.profiler);
    const nativeRows = inp.latentRows !== null && (!sparse || (inp.indexerKeyRows !== null && this.shapes.indexerHeads <= NATIVE_DSA_MAX_INDEXER_HEADS));
    if (this.native && nativeRows && (S === 1 || group.maxContext <= NATIVE_CHUNK_MAX_CONTEXT))
      return ctx.profiler.time('attention', () => this.attendNative(group, inp, sparse, ctx.recordSelections));
    if (!sparse) {
      const o = await ctx.profiler.timeAsync('attention', () => this.runDense(group, inp));
      return { o, lastSelections: ctx.recordSelections ? allVisible(group) : null };
    }
    if (S === 1) return this.attendDecode(group, inp, ctx);
    return S <= MAX_GROUPED_QUERY_LEN ? this.attendRows(group, inp, ctx) : this.attendPrefill(group, inp, ctx);
  }

  /**
   * The group's rows in C (decode_layer.c attendRows), spread over the kernels' pool: each row attends as a
   * decode row at its position does, every key up to it or with DSA and more of them than topk the indexer's
   * selection, over its own causal prefix: no [S, T] scores or masks, nothing past a row's position computed.
   */
  private attendNative(
    group: AttentionGroup,
    inp: AttentionLayerInputs,
    sparse: boolean,
    recordSelections: boolean,
  ): { o: Float32Array; lastSelections: Int32Array[] | null } {
    const { numSeqs: B, queryLen: S, rowStart: first } = group;
    const { numHeads: H, latentDim: C, kvLoraRank: L, indexerHeads: Hi, indexerDim: Di, indexTopk } = this.shapes;
    const k = Math.max(1, indexTopk);
    const R = B * S;
    const o = new Float32Array(R * H * L);
    const sel = new Int32Array(B * k);
    this.native!.attendRows(
      inp.q.subarray(first * H * C, (first + R) * H * C),
      sparse ? inp.iq!.subarray(first * Hi * Di, (first + R) * Hi * Di) : null,
      sparse ? inp.iw!.subarray(first * Hi, (first + R) * Hi) : null,
      inp.latentRows!,
      sparse ? inp.indexerKeyRows! : null,
      group.keySlots,
      group.startPos,
      S,
      o,
      sel,
      L,
    );
    if (!recordSelections) return { o, lastSelections: null };
    const lastSelections = Array.from(group.startPos, (p0, b) => {
      const n = p0 + S;
      return sparse && n > k ? sel.subarray(b * k, (b + 1) * k).filter((s) => s >= 0) : Int32Array.from({ length: n }, (_, j) => j);
    });
    return { o, lastSelections };
  }

  /**
   * A group of short chunks with DSA (model/dsa_rows.ts): selection and attention of every row in one run
   * per slice of sequences, each slice's gathered rows [b, S * topk, C] kept under maxScoreElements.
   */
  private async attendRows(
    group: AttentionGroup,
    inp: AttentionLayerInputs,
    ctx: AttendContext,
  ): Promise<{ o: Float32Array; lastSelections: Int32Array[] | null }> {
    const { numSeqs: B, queryLen: S } = group;
    const { numHeads: H, latentDim: C, kvLoraRank: L, indexerHeads: Hi, indexerDim: Di, indexTopk: k } = this.shapes;
    const seqsPerRun = Math.max(1, Math.floor(this.shapes.maxScoreElements / (S * k * Math.max(H, C))));
    const o = new Float32Array(B * S * H * L);
    const lastSelections: Int32Array[] | null = ctx.recordSelections ? [] : null;
    await ctx.profiler.timeAsync('attention', async () => {
      for (let b0 = 0; b0 < B; b0 += seqsPerRun) {
        const part = sequenceSlice(group, b0, Math.min(B, b0 + seqsPerRun));
        const { numSeqs: n, maxContext: T, rowStart: first } = part;
        const rows = n * S;
        const [po, sel] = await this.sessions.dsaRows!.runTyped(
          {
            q: floatTensor(inp.q.subarray(first * H * C, (first + rows) * H * C), [n, S, H, C]),
            iq: floatTensor(inp.iq!.subarray(first * Hi * Di, (first + rows) * Hi * Di), [n, S, Hi, Di]),
            iw: floatTensor(inp.iw!.subarray(first * Hi, (first + rows) * Hi), [n, S, Hi]),
            ...inp.latentCache,
            ...inp.indexerCache!,
            idx: int32Tensor(part.keySlots, [n, T]),
            qpos: int32Tensor(queryPositions(part, 0, S), [n, S]),
          },
          ['o', 'sel'],
        );
        if (!(po instanceof Float32Array) || !(sel instanceof Int32Array)) throw new Error('graph dsa_rows: unexpected output types');
        o.set(po, b0 * S * H * L);
        for (let b = 0; b < n; b++) {
          const last = sel.subarray((b * S + S - 1) * k, (b * S + S) * k);
          lastSelections?.push(visibleSorted(last, part.startPos[b]! + S - 1));
        }
      }
    });
    return { o, lastSelections };
  }

  /** Every visible key; a group of short chunks runs in slices of sequences whose scores [b, S * H, T] fit maxScoreElements. */
  private async runDense(group: AttentionGroup, inp: AttentionLayerInputs): Promise<Float32Array> {
    const { numSeqs: B, queryLen: S, maxContext: T } = group;
    const { numHeads: H, kvLoraRank: L } = this.shapes;
    const seqsPerRun = Math.max(1, Math.floor(this.shapes.maxScoreElements / (S * H * T)));
    if (S === 1 || seqsPerRun >= B) return this.runRows(this.sessions.dense, group, inp, {}, null);
    const o = new Float32Array(B * S * H * L);
    for (let b0 = 0; b0 < B; b0 += seqsPerRun) {
      const part = sequenceSlice(group, b0, Math.min(B, b0 + seqsPerRun));
      o.set(await this.runRows(this.sessions.dense, part, inp, {}, null), b0 * S * H * L);
    }
    return o;
  }

  /**
   * Decode with DSA: the indexer picks topk positions per sequence and only those rows are gathered, in one
   * graph run (model/dsa_decode.ts); its time counts as attention.
   */
  private async attendDecode(
    group: AttentionGroup,
    inp: AttentionLayerInputs,
    ctx: AttendContext,
  ): Promise<{ o: Float32Array; lastSelections: Int32Array[] | null }> {
    const { numSeqs: B, maxContext: T, rowStart: first } = group;
    const { numHeads: H, latentDim: C, indexerHeads: Hi, indexerDim: Di, indexTopk: k } = this.shapes;
    const span = group.keySlotSpan;
    const inPlace = span !== null && span.count <= KEY_SPAN_MAX_FACTOR * T && inp.indexerKeySpan !== null;
    return ctx.profiler.timeAsync('attention', async () => {
      const [o, sel] = await (inPlace ? this.sessions.dsaDecodeKeySpan! : this.sessions.dsaDecode!).runTyped(
        {
          q: floatTensor(inp.q.subarray(first * H * C, (first + B) * H * C), [B, 1, H, C]),
          iq: floatTensor(inp.iq!.subarray(first * Hi * Di, (first + B) * Hi * Di), [B, 1, Hi, Di]),
          iw: floatTensor(inp.iw!.subarray(first * Hi, (first + B) * Hi), [B, 1, Hi]),
          ...inp.latentCache,
          ...(inPlace ? inp.indexerKeySpan!(span.first, span.count) : inp.indexerCache!),
          idx: int32Tensor(group.keySlots, [B, T]),
          qpos: int32Tensor(queryPositions(group, 0, 1), [B, 1]),
        },
        ['o', 'sel'],
      );
      if (!(o instanceof Float32Array) || !(sel instanceof Int32Array)) throw new Error('graph dsa_decode: unexpected output types');
      return { o, lastSelections: ctx.recordSelections ? lastRows(group, sel, k) : null };
    });
  }

  /** Prefill chunk with DSA: per slice of query rows, the indexer's selection, then masked attention over the context. */
  private async attendPrefill(
    group: AttentionGroup,
    inp: AttentionLayerInputs,
    ctx: AttendContext,
  ): Promise<{ o: Float32Array; lastSelections: Int32Array[] | null }> {
    const { queryLen: S } = group;
    const { numHeads: H, kvLoraRank: L } = this.shapes;
    const k = this.shapes.indexTopk;
    const rowsPerRun = this.rowsPerRun(group);
    const o = new Float32Array(S * H * L);
    let last: Int32Array | null = null;
    const gathered = group.maxContext > GATHERED_PREFILL_MIN_CONTEXT * k;
    const gatherRows = Math.max(1, Math.floor(this.shapes.maxScoreElements / (k * Math.max(this.shapes.numHeads, this.shapes.latentDim))));
    for (let i0 = 0; i0 < S; i0 += rowsPerRun) {
      const n = Math.min(rowsPerRun, S - i0);
      const sel = await ctx.profiler.timeAsync('indexer', () => this.select(this.sessions.indexer!, group, inp, i0, n)); // [1, n, k]
      await ctx.profiler.timeAsync('attention', async () => {
        if (!gathered) {
          o.set(await this.runRows(this.sessions.prefillSelected!, group, inp, { sel: int32Tensor(sel, [1, n, k]) }, [i0, n]), i0 * H * L);
          return;
        }
        for (let j0 = 0; j0 < n; j0 += gatherRows) {
          const m = Math.min(gatherRows, n - j0);
          const part = sel.subarray(j0 * k, (j0 + m) * k);
          o.set(await this.runRows(this.sessions.prefillGathered!, group, inp, { sel: int32Tensor(part, [1, m, k]) }, [i0 + j0, m]), (i0 + j0) * H * L);
        }
      });
      if (i0 + n === S) last = sel.subarray((n - 1) * k, n * k);
    }
    const lastSelections = ctx.recordSelections && last ? [visibleSorted(last, group.startPos[0]! + S - 1)] : null;
    return { o, lastSelections };
  }

  /** IDX 5-6 for query rows i0 .. i0 + n - 1 of a prefill chunk: [1, n, topk] selected positions. */
  private async select(session: GraphSession, group: AttentionGroup, inp: AttentionLayerInputs, i0: number, n: number): Promise<Int32Array> {
    // Prefill chunks are single-sequence groups (step_plan.ts); decode selects inside dsa_decode.ts.
    const { maxContext: T } = group;
    const { indexerHeads: Hi, indexerDim: Di } = this.shapes;
    const first = group.rowStart + i0;
    const [sel] = await session.runInt32(
      {
        iq: floatTensor(inp.iq!.subarray(first * Hi * Di, (first + n) * Hi * Di), [1, n, Hi, Di]),
        ...inp.indexerCache!,
        idx: int32Tensor(group.keySlots, [1, T]),
        iw: floatTensor(inp.iw!.subarray(first * Hi, (first + n) * Hi), [1, n, Hi]),
        qpos: int32Tensor(queryPositions(group, i0, n), [1, n]),
      },
      ['sel'],
    );
    return sel;
  }

  /**
   * MLA 5 for the group's rows (all of them, or the slice [i0, i0 + n) of a single-sequence group).
   * The graph materialises scores [B, S * H, K]; a long prefill chunk over a long context would make
   * that gigabytes, so dense runs also go in slices of at most maxScoreElements scores.
   */
  private async runRows(
    session: GraphSession,
    group: AttentionGroup,
    inp: AttentionLayerInputs,
    extra: Feed,
    slice: [number, number] | null,
  ): Promise<Float32Array> {
    const { numSeqs: B, queryLen: S, maxContext: T, rowStart } = group;
    const { numHeads: H, latentDim: C, kvLoraRank: L } = this.shapes;
    const idx = extra.idx ?? int32Tensor(group.keySlots, [B, T]);
    const run = async (i0: number, n: number): Promise<Float32Array> => {
      const first = rowStart + i0;
      const feed: Feed = {
        q: floatTensor(inp.q.subarray(first * H * C, (first + B * n) * H * C), [B, n, H, C]),
        ...inp.latentCache,
        qpos: int32Tensor(queryPositions(group, i0, n), [B, n]),
        ...extra,
        idx,
      };
      return (await session.run(feed, ['o']))[0]!;
    };
    if (slice) return run(slice[0], slice[1]);
    const rowsPerRun = this.rowsPerRun(group);
    if (rowsPerRun >= S) return run(0, S);
    const o = new Float32Array(S * H * L);
    for (let i0 = 0; i0 < S; i0 += rowsPerRun) o.set(await run(i0, Math.min(rowsPerRun, S - i0)), i0 * H * L);
    return o;
  }

  /** Query rows per run so that one run's scores stay under maxScoreElements (multi-sequence groups run whole). */
  private rowsPerRun(group: AttentionGroup): number {
    const { numSeqs: B, queryLen: S, maxContext: T } = group;
    if (B > 1) return S;
    const heads = Math.max(this.shapes.numHeads, this.shapes.indexerHeads);
    return Math.max(1, Math.min(S, Math.floor(this.shapes.maxScoreElements / (heads * T))));
  }
}

/** Sequences b0 .. b1 - 1 of a group as a group of their own (their rows are contiguous). */
function sequenceSlice(group: AttentionGroup, b0: number, b1: number): AttentionGroup {
  if (b0 === 0 && b1 === group.numSeqs) return group;
  const { queryLen: S, maxContext: T } = group;
  return {
    rowStart: group.rowStart + b0 * S,
    numSeqs: b1 - b0,
    queryLen: S,
    seqIndex: group.seqIndex.subarray(b0, b1),
    startPos: group.startPos.subarray(b0, b1),
    maxContext: T,
    keySlots: group.keySlots.subarray(b0 * T, b1 * T),
    keySlotSpan: null, // the in-place key span is a batch-1 decode shortcut; slices gather
  };
}

/** Positions of query rows i0 .. i0 + n - 1 of every sequence: [B, n]. */
function queryPositions(group: AttentionGroup, i0: number, n: number): Int32Array {
  const { numSeqs: B, startPos } = group;
  const pos = new Int32Array(B * n);
  for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) pos[b * n + i] = startPos[b]! + i0 + i;
  return pos;
}

/** Sparsity counters in closed form: a row at position p sees p + 1 keys and attends min(p + 1, topk). */
function countSparsity(group: AttentionGroup, topk: number, profiler: StepProfiler): void {
  const sparsity = profiler.sparsity;
  for (let b = 0; b < group.numSeqs; b++) {
    for (let i = 0; i < group.queryLen; i++) {
      const visible = group.startPos[b]! + i + 1;
      sparsity.queries++;
      sparsity.visibleKeys += visible;
      sparsity.selectedKeys += Math.min(visible, topk);
    }
  }
}

/** Every visible position of each sequence's last row (no selection). */
function allVisible(group: AttentionGroup): Int32Array[] {
  return Array.from(group.startPos, (p) => Int32Array.from({ length: p + group.queryLen }, (_, j) => j));
}

/** The selections of decode rows [B, 1, k], each restricted to visible positions and sorted. */
function lastRows(group: AttentionGroup, sel: Int32Array, k: number): Int32Array[] {
  return Array.from(group.startPos, (p, b) => visibleSorted(sel.subarray(b * k, (b + 1) * k), p));
}

function visibleSorted(sel: Int32Array, lastPosition: number): Int32Array {
  return sel.filter((s) => s <= lastPosition).sort();
}
