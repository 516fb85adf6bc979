// HF tensor name -> loaded tensor, walked independently of the loader's own naming code, so tests
// can compare a loaded model against the tensors that were written.
import type { LoadedModel, SwiGluWeights, Tensor } from '../../src/engine/checkpoint/types.ts';

/** HF name -> tensor, walked independently of the loader's naming code. */
export function namedTensors(model: LoadedModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const put = (name: string, t: Tensor | null): void => {
    if (t !== null) out.set(name, t);
  };
  const swiglu = (p: string, w: SwiGluWeights): void => {
    put(`${p}gate_proj.weight`, w.gateProj);
    put(`${p}up_proj.weight`, w.upProj);
    put(`${p}down_proj.weight`, w.downProj);
  };
  const w = model.weights;
  put('model.embed_tokens.weight', w.embedTokens);
  put('model.norm.weight', w.norm);
  put('lm_head.weight', w.lmHead);
  w.layers.forEach((layer, l) => {
    const p = `model.layers.${l}.`;
    const a = `${p}self_attn.`;
    put(`${p}input_layernorm.weight`, layer.inputLayernorm);
    put(`${p}post_attention_layernorm.weight`, layer.postAttentionLayernorm);
    const q = layer.attn.query;
    if (q.kind === 'lora') {
      put(`${a}q_a_proj.weight`, q.qAProj);
      put(`${a}q_a_layernorm.weight`, q.qALayernorm);
      put(`${a}q_b_proj.weight`, q.qBProj);
    } else {
      put(`${a}q_proj.weight`, q.qProj);
    }
    put(`${a}kv_a_proj_with_mqa.weight`, layer.attn.kvAProjWithMqa);
    put(`${a}kv_a_layernorm.weight`, layer.attn.kvALayernorm);
    put(`${a}kv_b_proj.weight`, layer.attn.kvBProj);
    put(`${a}o_proj.weight`, layer.attn.oProj);
    const ix = layer.attn.indexer;
    if (ix !== null) {
      put(`${a}indexer.wq_b.weight`, ix.wqB);
      put(`${a}indexer.wk.weight`, ix.wk);
      put(`${a}indexer.k_norm.weight`, ix.kNormWeight);
      put(`${a}indexer.k_norm.bias`, ix.kNormBias);
      put(`${a}indexer.weights_proj.weight`, ix.weightsProj);
    }
    if (layer.mlp.kind === 'dense') return swiglu(`${p}mlp.`, layer.mlp.weights);
    const m = layer.mlp.weights;
    put(`${p}mlp.gate.weight`, m.gate);
    put(`${p}mlp.gate.e_score_correction_bias`, m.eScoreCorrectionBias);
    m.experts.forEach((e, j) => swiglu(`${p}mlp.experts.${j}.`, e));
    if (m.sharedExperts !== null) swiglu(`${p}mlp.shared_experts.`, m.sharedExperts);
  });
  return out;
}
