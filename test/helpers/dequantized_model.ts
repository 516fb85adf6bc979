// The float32 weights the engine computes with under --quantization int8/int4 (at MatMulNBits accuracy
// level 0, which is exact against them), written independently of the engine's graph code from the rules
// in src/engine/quant/weight_stream.ts and src/engine/model/absorbed.ts:
// - every linear weight W: dequant(quant(W)) with blocks of 32 along its input dimension;
// - kv_b_proj: per head, the qk_nope rows (W_UK, applied along qk_nope) quantised transposed, i.e. along
//   qk_nope; the v rows (W_UV) along kv_lora, as stored;
// - the embedding: float16 (round to nearest even); norms, biases and the router gate: unchanged.
import type { LoadedModel, ModelConfig, SwiGluWeights, Tensor } from '../../src/engine/checkpoint/types.ts';
import { f16ToFloat32, float32ToF16 } from '../../src/engine/checkpoint/dtype.ts';
import { dequantizeMatrix, quantizeMatrix, type QuantBits } from '../../src/engine/quant/block_quant.ts';

function roundTrip(t: Tensor, bits: QuantBits): Tensor {
  const [rows, cols] = t.shape as [number, number];
  return { data: dequantizeMatrix(quantizeMatrix(t.data, rows, cols, bits)), shape: t.shape };
}

function kvB(c: ModelConfig, t: Tensor, bits: QuantBits): Tensor {
  const { numAttentionHeads: H, qkNopeHeadDim: dn, vHeadDim: dv, kvLoraRank: L } = c;
  const out = new Float32Array(t.data.length);
  for (let h = 0; h < H; h++) {
    const base = h * (dn + dv);
    const wukT = new Float32Array(L * dn); // [L, dn]
    for (let d = 0; d < dn; d++) for (let k = 0; k < L; k++) wukT[k * dn + d] = t.data[(base + d) * L + k]!;
    const back = dequantizeMatrix(quantizeMatrix(wukT, L, dn, bits));
    for (let d = 0; d < dn; d++) for (let k = 0; k < L; k++) out[(base + d) * L + k] = back[k * dn + d]!;
    const v = roundTrip({ data: t.data.slice((base + dn) * L, (base + dn + dv) * L), shape: [dv, L] }, bits);
    out.set(v.data, (base + dn) * L);
  }
  return { data: out, shape: t.shape };
}

export function dequantizedModel(model: LoadedModel, bits: QuantBits): LoadedModel {
  const c = model.config;
  const q = (t: Tensor): Tensor => roundTrip(t, bits);
  const swiGlu = (s: SwiGluWeights): SwiGluWeights => ({ gateProj: q(s.gateProj), upProj: q(s.upProj), downProj: q(s.downProj) });
  const w = model.weights;
  const layers = w.layers.map((layer) => {
    const a = layer.attn;
    const query = a.query.kind === 'lora' ? { ...a.query, qAProj: q(a.query.qAProj), qBProj: q(a.query.qBProj) } : { ...a.query, qProj: q(a.query.qProj) };
    const indexer = a.indexer && { ...a.indexer, wqB: q(a.indexer.wqB), wk: q(a.indexer.wk), weightsProj: q(a.indexer.weightsProj) };
    const attn = { ...a, query, kvAProjWithMqa: q(a.kvAProjWithMqa), kvBProj: kvB(c, a.kvBProj, bits), oProj: q(a.oProj), indexer };
    const m = layer.mlp;
    const mlp =
      m.kind === 'dense'
        ? { kind: 'dense' as const, weights: swiGlu(m.weights) }
        : {
            kind: 'moe' as const,
            weights: { ...m.weights, experts: m.weights.experts.map(swiGlu), sharedExperts: m.weights.sharedExperts && swiGlu(m.weights.sharedExperts) },
          };
    return { ...layer, attn, mlp };
  });
  const embedTokens = { data: w.embedTokens.data.map((v) => f16ToFloat32(float32ToF16(v))), shape: w.embedTokens.shape };
  return { ...model, weights: { ...w, embedTokens, lmHead: q(w.lmHead), layers } };
}
