// Independent float64 reference forward pass for the DeepSeek V2 / V3 / V3.2 family, written directly from the
// specification in test/fixtures/tiny-dsv32/README.md and HF's DeepseekV2MoE / DeepseekV3MoE routing semantics,
// NOT from the engine. Plain loops, no KV cache, no absorption tricks: one full causal prefill from position 0.
//
// Weights come from `loadModel` (Float32Array, HF [out, in] layout, already dequantised); every float32 value is
// exact in float64, so all arithmetic below is float64 on the exact stored values.
import type {
  AttentionWeights,
  LayerWeights,
  LoadedModel,
  ModelConfig,
  MoeWeights,
  MtpWeights,
  SwiGluWeights,
  Tensor,
} from '../../src/engine/checkpoint/types.ts';

type Vec = Float64Array;

export interface ReferenceOptions {
  /** Skip the DSA indexer: plain dense causal attention even when the model has an indexer. */
  readonly skipIndexer?: boolean;
  /** Receives the last layer's output per position (before the final norm). */
  readonly onHidden?: (h: Float64Array[]) => void;
}

/** Smallest gaps at every discrete decision the forward pass took (Infinity when no such decision was taken). */
export interface ReferenceMargins {
  /** Indexer top-k boundary over all (layer, query row) pairs with more than index_topk visible keys: s_k - s_k+1. */
  indexerAbsGap: number;
  /** Same boundary, relative: (s_k - s_k+1) / max(|s_k|, |s_k+1|). */
  indexerRelGap: number;
  /** Same boundary, relative to the row's largest |score| (the scale of float32 rounding noise in that row). */
  indexerRowGap: number;
  /** Expert cut: k-th minus (k+1)-th choice score among the experts still eligible after group limiting. */
  routingExpertGap: number;
  /** Group cut: topk_group-th minus (topk_group+1)-th group score (only when groups are actually limited). */
  routingGroupGap: number;
}

export interface ReferenceResult {
  readonly vocab: number;
  /** [L, vocab]: row t = logits after token t (predicts token t+1). */
  readonly logits: Float64Array;
  /** Per layer: the ascending key positions selected by the indexer for the last position; null without indexer. */
  readonly lastSelections: number[][] | null;
  /** Per layer, per position: the selected key positions (ascending); null without indexer. */
  readonly selections: number[][][] | null;
  /** Per layer: raw indexer scores of the last position over keys 0..L-1; null without indexer. */
  readonly lastIndexerScores: Float64Array[] | null;
  /** Per layer, per position: the routed experts (ascending); null for dense layers. */
  readonly experts: (number[][] | null)[];
  readonly margins: ReferenceMargins;
}

// ---------------------------------------------------------------------------------------------------------------
// Basic ops

function linear(w: Tensor, x: ArrayLike<number>): Vec {
  const [out, inp] = w.shape as readonly [number, number];
  if (x.length !== inp) throw new Error(`linear: input ${x.length} != ${inp}`);
  const d = w.data;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    const base = o * inp;
    for (let i = 0; i < inp; i++) s += d[base + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Vec, w: Tensor, eps: number): Vec {
  let ms = 0;
  for (let i = 0; i < x.length; i++) ms += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = w.data[i]! * x[i]! * r;
  return y;
}

/** LayerNorm with biased variance (indexer k_norm; eps fixed at 1e-6 by the spec). */
function layerNorm(x: Vec, w: Tensor, b: Tensor, eps: number): Vec {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i]!;
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i]! - mean) ** 2;
  const r = 1 / Math.sqrt(v / n + eps);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = (x[i]! - mean) * r * w.data[i]! + b.data[i]!;
  return y;
}

const silu = (v: number): number => v / (1 + Math.exp(-v));
const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

function add(a: Vec, b: Vec): Vec {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i]!;
  return y;
}

function swiGlu(w: SwiGluWeights, x: Vec): Vec {
  const g = linear(w.gateProj, x);
  const u = linear(w.upProj, x);
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]!) * u[i]!;
  return linear(w.downProj, g);
}

/** Indices of the k largest values (ties: lower index first), in descending value order. */
function topkIndices(values: ArrayLike<number>, k: number, eligible?: (i: number) => boolean): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (!eligible || eligible(i)) idx.push(i);
  idx.sort((a, b) => values[b]! - values[a]! || a - b);
  return idx.slice(0, k);
}

/** values[order[k - 1]] - values[order[k]]: how far the k-th pick leads the best one left out. */
function gapAt(values: ArrayLike<number>, order: readonly number[], k: number): number {
  return values[order[k - 1]!]! - values[order[k]!]!;
}

// ---------------------------------------------------------------------------------------------------------------
// RoPE (README "RoPE frequencies")

const yarnMscale = (factor: number, mscale: number): number => (factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1);

/** th_i for i < d/2, d = qk_rope_head_dim, with the YaRN frequency correction when rope_scaling is configured. */
export function referenceRopeFrequencies(c: ModelConfig): Vec {
  const d = c.qkRopeHeadDim;
  const th = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) th[i] = Math.pow(c.ropeTheta, (-2 * i) / d);
  const y = c.ropeScaling;
  if (y === null) return th;
  // The spec scales nothing but the frequencies; HF would scale cos/sin by mscale(factor, mscale) / mscale(factor,
  // mscale_all_dim), which is 1 whenever the two agree (every DeepSeek release). Refuse the ambiguous case.
  if (Math.abs(yarnMscale(y.factor, y.mscale) / yarnMscale(y.factor, y.mscaleAllDim) - 1) > 1e-12) {
    throw new Error('reference: YaRN with mscale != mscale_all_dim (cos/sin magnitude scaling) is not specified');
  }
  const L0 = y.originalMaxPositionEmbeddings;
  const corr = (beta: number): number => (d * Math.log(L0 / (beta * 2 * Math.PI))) / (2 * Math.log(c.ropeTheta));
  const low = Math.max(Math.floor(corr(y.betaFast)), 0);
  let high = Math.min(Math.ceil(corr(y.betaSlow)), d - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < d / 2; i++) {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    th[i] = (th[i]! / y.factor) * ramp + th[i]! * (1 - ramp);
  }
  return th;
}

/** MLA layout: interleaved pairs (x[2i], x[2i+1]); rotates v[off .. off+d) in place. */
function ropeInterleaved(v: Vec, off: number, th: Vec, pos: number): void {
  for (let i = 0; i < th.length; i++) {
    const a = pos * th[i]!;
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x0 = v[off + 2 * i]!;
    const x1 = v[off + 2 * i + 1]!;
    v[off + 2 * i] = x0 * c - x1 * s;
    v[off + 2 * i + 1] = x0 * s + x1 * c;
  }
}

/** Indexer layout: half split (rotate_half), pairs (x[i], x[i + d/2]); rotates v[off .. off+d) in place. */
function ropeHalf(v: Vec, off: number, th: Vec, pos: number): void {
  const half = th.length;
  for (let i = 0; i < half; i++) {
    const a = pos * th[i]!;
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = v[off + i]!;
    const x2 = v[off + half + i]!;
    v[off + i] = x1 * c - x2 * s;
    v[off + half + i] = x1 * s + x2 * c;
  }
}

/** (nope + rope)^-0.5 * m^2, m = 0.1 * mscale_all_dim * ln(factor) + 1 with YaRN (factor > 1), else 1. */
export function referenceSoftmaxScale(c: ModelConfig): number {
  const base = 1 / Math.sqrt(c.qkNopeHeadDim + c.qkRopeHeadDim);
  const y = c.ropeScaling;
  const m = y === null ? 1 : yarnMscale(y.factor, y.mscaleAllDim);
  return base * m * m;
}

// ---------------------------------------------------------------------------------------------------------------
// Attention (MLA + optional lightning indexer) over the whole sequence

interface AttentionOut {
  readonly out: Vec[];
  readonly selections: number[][] | null;
  readonly lastScores: Vec | null;
}

function attention(c: ModelConfig, a: AttentionWeights, xs: Vec[], th: Vec, useIndexer: boolean, margins: ReferenceMargins): AttentionOut {
  const L = xs.length;
  const H = c.numAttentionHeads;
  const nope = c.qkNopeHeadDim;
  const rope = c.qkRopeHeadDim;
  const vd = c.vHeadDim;
  const kvl = c.kvLoraRank;
  const qkd = nope + rope;
  const scale = referenceSoftmaxScale(c);

  const q: Vec[] = []; // [H * (nope + rope)], rope part rotated
  const qr: (Vec | null)[] = []; // q_a_layernorm output (indexer input)
  const kpe: Vec[] = []; // [rope], rotated
  const kv: Vec[] = []; // [H * (nope + v)]
  for (const [t, x] of xs.entries()) {
    let qt: Vec;
    if (a.query.kind === 'lora') {
      const r = rmsNorm(linear(a.query.qAProj, x), a.query.qALayernorm, c.rmsNormEps);
      qr.push(r);
      qt = linear(a.query.qBProj, r);
    } else {
      qr.push(null);
      qt = linear(a.query.qProj, x);
    }
    for (let h = 0; h < H; h++) ropeInterleaved(qt, h * qkd + nope, th, t);
    q.push(qt);
    const kva = linear(a.kvAProjWithMqa, x);
    const latent = rmsNorm(kva.subarray(0, kvl), a.kvALayernorm, c.rmsNormEps);
    const pe = kva.slice(kvl, kvl + rope);
    ropeInterleaved(pe, 0, th, t);
    kpe.push(pe);
    kv.push(linear(a.kvBProj, latent));
  }

  // Indexer selection per query row.
  let selections: number[][] | null = null;
  let lastScores: Vec | null = null;
  if (useIndexer) {
    const ix = a.indexer!;
    const cfg = c.indexer!;
    const nH = cfg.nHeads;
    const hd = cfg.headDim;
    const iq: Vec[] = [];
    const ik: Vec[] = [];
    const iw: Vec[] = [];
    for (const [t, x] of xs.entries()) {
      const qt = linear(ix.wqB, qr[t]!);
      for (let h = 0; h < nH; h++) ropeHalf(qt, h * hd, th, t); // [rope | nope] per head
      iq.push(qt);
      const kt = layerNorm(linear(ix.wk, x), ix.kNormWeight, ix.kNormBias, 1e-6);
      ropeHalf(kt, 0, th, t);
      ik.push(kt);
      const wt = linear(ix.weightsProj, x);
      for (let h = 0; h < nH; h++) wt[h]! *= 1 / Math.sqrt(nH) / Math.sqrt(hd);
      iw.push(wt);
    }
    selections = [];
    for (let t = 0; t < L; t++) {
      const visible = t + 1;
      const scores = new Float64Array(visible);
      const qt = iq[t]!;
      const wt = iw[t]!;
      for (let s = 0; s < visible; s++) {
        const ks = ik[s]!;
        let sc = 0;
        for (let h = 0; h < nH; h++) {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += qt[h * hd + i]! * ks[i]!;
          sc += wt[h]! * Math.max(dot, 0);
        }
        scores[s] = sc;
      }
      if (t === L - 1) lastScores = scores;
      if (visible <= cfg.topk) {
        selections.push(Array.from({ length: visible }, (_, s) => s));
        continue;
      }
      const order = topkIndices(scores, cfg.topk + 1);
      const sk = scores[order[cfg.topk - 1]!]!;
      const sk1 = scores[order[cfg.topk]!]!;
      margins.indexerAbsGap = Math.min(margins.indexerAbsGap, sk - sk1);
      margins.indexerRelGap = Math.min(margins.indexerRelGap, (sk - sk1) / Math.max(Math.abs(sk), Math.abs(sk1)));
      let rowMax = 0;
      for (let s = 0; s < visible; s++) rowMax = Math.max(rowMax, Math.abs(scores[s]!));
      margins.indexerRowGap = Math.min(margins.indexerRowGap, (sk - sk1) / rowMax);
      selections.push(order.slice(0, cfg.topk).sort((x, y) => x - y));
    }
  }

  const out: Vec[] = [];
  for (let t = 0; t < L; t++) {
    const keys = selections ? selections[t]! : Array.from({ length: t + 1 }, (_, s) => s);
    const qt = q[t]!;
    const o = new Float64Array(H * vd);
    for (let h = 0; h < H; h++) {
      const qo = h * qkd;
      const ko = h * (nope + vd);
      const sc = keys.map((s) => {
        const kvs = kv[s]!;
        const pe = kpe[s]!;
        let d = 0;
        for (let i = 0; i < nope; i++) d += qt[qo + i]! * kvs[ko + i]!;
        for (let i = 0; i < rope; i++) d += qt[qo + nope + i]! * pe[i]!;
        return d * scale;
      });
      const mx = Math.max(...sc);
      const p = sc.map((v) => Math.exp(v - mx));
      const z = p.reduce((u, v) => u + v, 0);
      keys.forEach((s, j) => {
        const kvs = kv[s]!;
        for (let i = 0; i < vd; i++) o[h * vd + i]! += (p[j]! / z) * kvs[ko + nope + i]!;
      });
    }
    out.push(linear(a.oProj, o));
  }
  return { out, selections, lastScores };
}

// ---------------------------------------------------------------------------------------------------------------
// MoE (README "MoE layer" for noaux_tc; HF DeepseekV2MoE for greedy / group_limited_greedy)

function moe(c: ModelConfig, w: MoeWeights, x: Vec, margins: ReferenceMargins): { y: Vec; experts: number[] } {
  const m = c.moe!;
  const E = m.nRoutedExperts;
  const logits = linear(w.gate, x);
  const s = new Float64Array(E);
  if (m.scoringFunc === 'sigmoid') {
    for (let e = 0; e < E; e++) s[e] = sigmoid(logits[e]!);
  } else {
    const mx = Math.max(...logits);
    let z = 0;
    for (let e = 0; e < E; e++) z += s[e] = Math.exp(logits[e]! - mx);
    for (let e = 0; e < E; e++) s[e]! /= z;
  }
  // Choice scores: the correction bias is for selection only (noaux_tc).
  const choice = new Float64Array(E);
  for (let e = 0; e < E; e++) choice[e] = s[e]! + (m.topkMethod === 'noaux_tc' && w.eScoreCorrectionBias ? w.eScoreCorrectionBias.data[e]! : 0);

  let eligible: ((e: number) => boolean) | undefined;
  if (m.topkMethod !== 'greedy' && m.topkGroup < m.nGroup) {
    const per = E / m.nGroup;
    const groupScore = new Float64Array(m.nGroup);
    for (let g = 0; g < m.nGroup; g++) {
      const members = Array.from(choice.subarray(g * per, (g + 1) * per)).sort((u, v) => v - u);
      // noaux_tc: sum of the top-2 choice scores; group_limited_greedy: the max score.
      const top = members[0]!;
      groupScore[g] = m.topkMethod === 'noaux_tc' ? top + (members[1] ?? 0) : top;
    }
    const order = topkIndices(groupScore, m.topkGroup + 1);
    margins.routingGroupGap = Math.min(margins.routingGroupGap, gapAt(groupScore, order, m.topkGroup));
    const kept = new Set(order.slice(0, m.topkGroup));
    eligible = (e: number) => kept.has(Math.floor(e / per));
  }
  const k = m.numExpertsPerTok;
  const order = topkIndices(choice, k + 1, eligible);
  if (order.length > k) margins.routingExpertGap = Math.min(margins.routingExpertGap, gapAt(choice, order, k));
  const picked = order.slice(0, k);

  const weights = picked.map((e) => s[e]!);
  const sum = weights.reduce((u, v) => u + v, 0);
  if (m.topkMethod === 'noaux_tc') {
    // V3: normalise if asked, then always scale.
    for (let j = 0; j < k; j++) weights[j] = (m.normTopkProb ? weights[j]! / (sum + 1e-20) : weights[j]!) * m.routedScalingFactor;
  } else if (k > 1 && m.normTopkProb) {
    // V2: normalise (and no routed_scaling_factor) ...
    for (let j = 0; j < k; j++) weights[j]! /= sum + 1e-20;
  } else {
    // ... or scale.
    for (let j = 0; j < k; j++) weights[j]! *= m.routedScalingFactor;
  }

  let y: Vec = w.sharedExperts ? swiGlu(w.sharedExperts, x) : new Float64Array(x.length);
  picked.forEach((e, j) => {
    const ye = swiGlu(w.experts[e]!, x);
    for (let i = 0; i < y.length; i++) y[i]! += weights[j]! * ye[i]!;
  });
  return { y, experts: [...picked].sort((u, v) => u - v) };
}

// ---------------------------------------------------------------------------------------------------------------

/** One decoder layer over every position: h + MLA, then + FFN (dense or MoE by the layer index). */
function decoderLayer(
  c: ModelConfig,
  lw: LayerWeights,
  l: number,
  h: Vec[],
  th: Vec,
  useIndexer: boolean,
  margins: ReferenceMargins,
): { h: Vec[]; att: AttentionOut; experts: number[][] | null } {
  const isMoe = c.moe !== null && l >= c.moe.firstKDenseReplace && l % c.moe.moeLayerFreq === 0;
  if (isMoe !== (lw.mlp.kind === 'moe')) throw new Error(`layer ${l}: loaded mlp kind ${lw.mlp.kind} disagrees with the config`);
  const xs = h.map((v) => rmsNorm(v, lw.inputLayernorm, c.rmsNormEps));
  const att = attention(c, lw.attn, xs, th, useIndexer, margins);
  h = h.map((v, t) => add(v, att.out[t]!));
  const ys = h.map((v) => rmsNorm(v, lw.postAttentionLayernorm, c.rmsNormEps));
  const mlp = lw.mlp;
  if (mlp.kind === 'dense') return { h: h.map((v, t) => add(v, swiGlu(mlp.weights, ys[t]!))), att, experts: null };
  const chosen: number[][] = [];
  h = h.map((v, t) => {
    const r = moe(c, mlp.weights, ys[t]!, margins);
    chosen.push(r.experts);
    return add(v, r.y);
  });
  return { h, att, experts: chosen };
}

/**
 * DeepSeek's MTP module over a whole sequence, in float64 (vLLM's deepseek_mtp.py semantics): row p
 * (p = 0 .. L-2) takes the main model's last hidden state h_p (before the final norm) and the token
 * t_{p+1}, x_p = eh_proj([enorm(embed(t_{p+1})); hnorm(h_p)]) with the embedding zeroed at position 0,
 * runs one decoder layer (index numHiddenLayers) causally over x_0 .. x_{L-2}, and returns
 * shared_head.head(shared_head.norm(y_p)) [L-1, vocab] (row p predicts t_{p+2}).
 */
export function referenceMtp(
  model: Pick<LoadedModel, 'config' | 'weights'>,
  mtp: MtpWeights,
  tokens: readonly number[],
  opts: ReferenceOptions = {},
): Float64Array {
  const { config: c, weights: W } = model;
  const D = c.hiddenSize;
  let hidden: Vec[] = [];
  referenceForward(model, tokens, { ...opts, onHidden: (h) => (hidden = h) });
  const xs = hidden.slice(0, -1).map((h, p) => {
    const id = tokens[p + 1]!;
    const e = p === 0 ? new Float64Array(D) : Float64Array.from(W.embedTokens.data.subarray(id * D, (id + 1) * D));
    const cat = new Float64Array(2 * D);
    cat.set(rmsNorm(e, mtp.enorm, c.rmsNormEps), 0);
    cat.set(rmsNorm(h, mtp.hnorm, c.rmsNormEps), D);
    return linear(mtp.ehProj, cat);
  });
  const margins = noMarginsYet();
  const useIndexer = c.indexer !== null && !opts.skipIndexer;
  const y = decoderLayer(c, mtp.layer, c.numHiddenLayers, xs, referenceRopeFrequencies(c), useIndexer, margins).h;
  const V = c.vocabSize;
  const logits = new Float64Array(y.length * V);
  y.forEach((v, p) => logits.set(linear(mtp.sharedHead, rmsNorm(v, mtp.sharedHeadNorm, c.rmsNormEps)), p * V));
  return logits;
}

/** Margins before any decision is seen: every gap infinite, lowered as the forward pass decides. */
function noMarginsYet(): ReferenceMargins {
  return { indexerAbsGap: Infinity, indexerRelGap: Infinity, indexerRowGap: Infinity, routingExpertGap: Infinity, routingGroupGap: Infinity };
}

/** Full causal prefill of `tokens` from position 0, in float64. */
export function referenceForward(model: Pick<LoadedModel, 'config' | 'weights'>, tokens: readonly number[], opts: ReferenceOptions = {}): ReferenceResult {
  const { config: c, weights: W } = model;
  const L = tokens.length;
  const D = c.hiddenSize;
  const th = referenceRopeFrequencies(c);
  const useIndexer = c.indexer !== null && !opts.skipIndexer;
  const margins = noMarginsYet();

  let h: Vec[] = tokens.map((id) => {
    if (!(id >= 0 && id < c.vocabSize)) throw new Error(`token ${id} out of range`);
    return Float64Array.from(W.embedTokens.data.subarray(id * D, (id + 1) * D));
  });
  const selections: number[][][] = [];
  const lastScores: Float64Array[] = [];
  const experts: (number[][] | null)[] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const out = decoderLayer(c, W.layers[l]!, l, h, th, useIndexer, margins);
    h = out.h;
    if (out.att.selections) selections.push(out.att.selections);
    if (out.att.lastScores) lastScores.push(out.att.lastScores);
    experts.push(out.experts);
  }
  if (opts.onHidden) opts.onHidden(h);
  const V = c.vocabSize;
  const logits = new Float64Array(L * V);
  h.forEach((v, t) => logits.set(linear(W.lmHead, rmsNorm(v, W.norm, c.rmsNormEps)), t * V));
  return {
    vocab: V,
    logits,
    lastSelections: useIndexer ? selections.map((perRow) => perRow[L - 1]!) : null,
    selections: useIndexer ? selections : null,
    lastIndexerScores: useIndexer ? lastScores : null,
    experts,
    margins,
  };
}

/** Index of the largest entry of logits row t (ties: lowest index). */
export function argmaxRow(logits: ArrayLike<number>, vocab: number, t: number): number {
  let best = 0;
  for (let v = 1; v < vocab; v++) if (logits[t * vocab + v]! > logits[t * vocab + best]!) best = v;
  return best;
}

/** Smallest top1 - top2 logit gap over the given rows. */
export function minArgmaxGap(logits: ArrayLike<number>, vocab: number, rows: Iterable<number>): number {
  let min = Infinity;
  for (const t of rows) {
    let a = -Infinity;
    let b = -Infinity;
    for (let v = 0; v < vocab; v++) {
      const x = logits[t * vocab + v]!;
      if (x > a) [a, b] = [x, a];
      else if (x > b) b = x;
    }
    min = Math.min(min, a - b);
  }
  return min;
}
