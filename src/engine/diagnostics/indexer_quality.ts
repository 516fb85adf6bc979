// Indexer quality of a DSA model on one token sequence: per layer, the KL divergence between the
// lightning indexer's distribution and the main attention's (the DeepSeek-V3.2 indexer training loss,
// MaxText `calculate_indexer_loss`, fixture README (e)), dense and sparse variants, and the recall of
// the selection (the share of the dense attention mass that falls on the selected top-k keys).
//
// The sequence runs through the offline driver (the serving path: DSA on, chunked prefill as asked); an
// observer captures each layer's pre-attention outputs, from which, per layer and query row t:
//   z[h, s]  = q[t, h] . kv[s]          main-attention logits (the absorbed q carries softmax_scale)
//   I[s]     = sum_h iw[t, h] * relu(iq[t, h] . ik[s])   indexer score
//   sel(t)   = all s <= t if t + 1 <= index_topk, else the index_topk best I (engine tie rule: lower position)
//   A        = sum_h softmax_M(z[h]),  A <- A / (sum_s A + 1e-8);   P = softmax_M(I)
//   KL_t     = sum_s A[s] * (log(A[s] + 1e-8) - log(P[s] + 1e-8))
// with M = the causal mask (dense variant) or sel(t) (sparse variant); loss = mean over t. Recall_t =
// sum over sel(t) of the dense (causal) A. Computed in float64 from the float32 engine tensors.
import { EngineError } from '../../common/errors.ts';
import type { LayerCapture } from '../model/deepseek_model.ts';
import type { ModelRunnerOptions } from '../model_runner.ts';
import { OfflineEngine } from '../offline.ts';
import { selectTopK } from '../../common/select.ts';

const EPS = 1e-8;

export interface IndexerQualityLayer {
  readonly layer: number;
  /** KL(A || P_idx) over causal keys, mean over query rows. */
  readonly klDense: number;
  /** The same restricted to the indexer's selection (what DSA training minimises in the sparse stage). */
  readonly klSparse: number;
  /** Mean over all query rows of the dense attention mass on the selected keys (1 where all keys are selected). */
  readonly recall: number;
  /** Mean recall over the rows that see more than index_topk keys (null when there are none). */
  readonly recallSparseRows: number | null;
}

export interface IndexerQualityResult {
  readonly numTokens: number;
  readonly indexTopk: number;
  /** Query rows with more than index_topk visible keys (where selection drops keys). */
  readonly sparseRows: number;
  readonly layers: readonly IndexerQualityLayer[];
}

export interface IndexerQualityOptions {
  /** Prefill chunk size (default: the whole sequence in one step). */
  readonly chunkSize?: number;
  readonly runner?: ModelRunnerOptions;
}

/** Per-layer tensors of all T positions, assembled from the step captures. */
interface LayerRows {
  q: Float32Array; // [T, H, C]
  kv: Float32Array; // [T, C]
  iq: Float32Array; // [T, Hi, Di]
  ik: Float32Array; // [T, Di]
  iw: Float32Array; // [T, Hi]
}

export async function indexerQuality(modelDir: string, tokenIds: readonly number[], options: IndexerQualityOptions = {}): Promise<IndexerQualityResult> {
  const T = tokenIds.length;
  if (T < 1) throw new EngineError('DSV_ERR_CONFIG', 'indexer quality needs at least one token');
  let rows: LayerRows[] | null = null;
  let dims: Dims | null = null;
  const onLayer = (l: number, cap: LayerCapture): void => {
    if (!rows || !dims) return;
    if (!cap.iq || !cap.ik || !cap.iw) throw new EngineError('DSV_ERR_INTERNAL', 'the forward pass produced no indexer outputs');
    captureRows(rows[l]!, cap, dims);
  };
  const engine = await OfflineEngine.create(modelDir, {
    runner: options.runner ?? {},
    scheduler: { ...(options.chunkSize !== undefined && { longPrefillTokenThreshold: options.chunkSize }) },
    enablePrefixCaching: false,
    onLayer,
  });
  try {
    const config = engine.core.config;
    const indexer = engine.core.runner.model.indexer;
    if (!indexer) throw new EngineError('DSV_ERR_CONFIG', 'indexer quality needs a model with a DSA indexer and sparse attention enabled');
    const d: Dims = { H: config.numAttentionHeads, C: config.kvLoraRank + config.qkRopeHeadDim, Hi: indexer.nHeads, Di: indexer.headDim, topk: indexer.topk };
    dims = d;
    rows = Array.from({ length: config.numHiddenLayers }, () => ({
      q: new Float32Array(T * d.H * d.C),
      kv: new Float32Array(T * d.C),
      iq: new Float32Array(T * d.Hi * d.Di),
      ik: new Float32Array(T * d.Di),
      iw: new Float32Array(T * d.Hi),
    }));
    const [out] = await engine.generate([{ promptTokenIds: tokenIds, params: { temperature: 0, maxTokens: 1, ignoreEos: true } }]);
    if (out?.errorMessage) throw new EngineError('DSV_ERR_INTERNAL', out.errorMessage);
    const layers = rows.map((r, l) => layerQuality(l, r, T, d));
    return { numTokens: T, indexTopk: d.topk, sparseRows: Math.max(0, T - d.topk), layers };
  } finally {
    await engine.dispose();
  }
}

/** Copies one step's rows to their absolute positions. */
function captureRows(r: LayerRows, cap: LayerCapture, d: Dims): void {
  const { H, C, Hi, Di } = d;
  cap.positions.forEach((p, n) => {
    r.q.set(cap.q.subarray(n * H * C, (n + 1) * H * C), p * H * C);
    r.kv.set(cap.kv.subarray(n * C, (n + 1) * C), p * C);
    r.iq.set(cap.iq!.subarray(n * Hi * Di, (n + 1) * Hi * Di), p * Hi * Di);
    r.ik.set(cap.ik!.subarray(n * Di, (n + 1) * Di), p * Di);
    r.iw.set(cap.iw!.subarray(n * Hi, (n + 1) * Hi), p * Hi);
  });
}

interface Dims {
  readonly H: number;
  readonly C: number;
  readonly Hi: number;
  readonly Di: number;
  readonly topk: number;
}

function layerQuality(layer: number, r: LayerRows, T: number, d: Dims): IndexerQualityLayer {
  const { H, C, Hi, Di, topk } = d;
  const z = new Float64Array(T); // one head's logits
  const A = new Float64Array(T); // dense target
  const As = new Float64Array(T); // sparse target
  const score = new Float64Array(T);
  const score32 = new Float32Array(T);
  const selected = new Uint8Array(T);
  const chosen = new Int32Array(T);
  let klDense = 0;
  let klSparse = 0;
  let recall = 0;
  let recallSparse = 0;
  for (let t = 0; t < T; t++) {
    const visible = t + 1;
    // Indexer scores and the selection.
    for (let s = 0; s < visible; s++) {
      let acc = 0;
      for (let h = 0; h < Hi; h++) {
        let dot = 0;
        const qo = (t * Hi + h) * Di;
        for (let k = 0; k < Di; k++) dot += r.iq[qo + k]! * r.ik[s * Di + k]!;
        if (dot > 0) acc += r.iw[t * Hi + h]! * dot;
      }
      score[s] = acc;
      score32[s] = acc;
    }
    selected.fill(0, 0, visible);
    for (let s = 0; s < visible; s++) chosen[s] = s;
    const n = visible <= topk ? visible : selectTopK(score32.subarray(0, visible), chosen, visible, topk);
    if (n === visible) selected.fill(1, 0, visible);
    else for (let j = 0; j < n; j++) selected[chosen[j]!] = 1;
    // Targets: sum over heads of softmax(z) over the causal keys and over the selected keys.
    A.fill(0, 0, visible);
    As.fill(0, 0, visible);
    for (let h = 0; h < H; h++) {
      const qo = (t * H + h) * C;
      let maxAll = -Infinity;
      let maxSel = -Infinity;
      for (let s = 0; s < visible; s++) {
        let dot = 0;
        for (let k = 0; k < C; k++) dot += r.q[qo + k]! * r.kv[s * C + k]!;
        z[s] = dot;
        if (dot > maxAll) maxAll = dot;
        if (selected[s] && dot > maxSel) maxSel = dot;
      }
      let sumAll = 0;
      let sumSel = 0;
      for (let s = 0; s < visible; s++) {
        sumAll += Math.exp(z[s]! - maxAll);
        if (selected[s]) sumSel += Math.exp(z[s]! - maxSel);
      }
      for (let s = 0; s < visible; s++) {
        A[s]! += Math.exp(z[s]! - maxAll) / sumAll;
        if (selected[s]) As[s]! += Math.exp(z[s]! - maxSel) / sumSel;
      }
    }
    normalise(A, visible, null);
    normalise(As, visible, selected);
    klDense += kl(A, score, visible, null);
    klSparse += kl(As, score, visible, selected);
    let mass = 0;
    for (let s = 0; s < visible; s++) if (selected[s]) mass += A[s]!;
    recall += mass;
    if (visible > topk) recallSparse += mass;
  }
  const sparseRows = Math.max(0, T - topk);
  return {
    layer,
    klDense: klDense / T,
    klSparse: klSparse / T,
    recall: recall / T,
    recallSparseRows: sparseRows > 0 ? recallSparse / sparseRows : null,
  };
}

/** a <- a / (sum a + 1e-8) over the allowed keys. */
function normalise(a: Float64Array, visible: number, allowed: Uint8Array | null): void {
  let sum = 0;
  for (let s = 0; s < visible; s++) if (!allowed || allowed[s]) sum += a[s]!;
  for (let s = 0; s < visible; s++) a[s]! /= sum + EPS;
}

/** sum_s A (log(A + eps) - log(P + eps)), P = softmax of the indexer scores over the allowed keys. */
function kl(target: Float64Array, score: Float64Array, visible: number, allowed: Uint8Array | null): number {
  let max = -Infinity;
  for (let s = 0; s < visible; s++) if ((!allowed || allowed[s]) && score[s]! > max) max = score[s]!;
  let sum = 0;
  for (let s = 0; s < visible; s++) if (!allowed || allowed[s]) sum += Math.exp(score[s]! - max);
  let out = 0;
  for (let s = 0; s < visible; s++) {
    if (allowed && !allowed[s]) continue; // A is 0 there: no contribution
    const p = Math.exp(score[s]! - max) / sum;
    out += target[s]! * (Math.log(target[s]! + EPS) - Math.log(p + EPS));
  }
  return out;
}
