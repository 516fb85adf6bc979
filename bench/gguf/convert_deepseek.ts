// HF DeepSeek V2/V3/V3.2 checkpoint (through the engine's own loadModel) -> GGUF for llama.cpp's `deepseek2`
// (MLA + MoE, dense attention) or `deepseek32` (the same plus the DSA lightning indexer) architectures.
//
// Conventions followed (llama.cpp's converter and model loader are the reference for these facts):
// - MLA "absorbed" layout: kv_b_proj [heads*(nope+v), kv_lora] is viewed [heads, nope+v, kv_lora] and split
//   per head into k_b [heads, nope, kv_lora] and v_b [heads, v, kv_lora]; k_b is stored transposed per head,
//   [heads, kv_lora, nope] (ggml ne {nope, kv_lora, heads}); v_b as is (ne {kv_lora, v, heads}).
// - The latent cache is MQA with one "head": head_count_kv = 1, key_length = kv_lora + rope,
//   value_length = kv_lora; the per-head sizes go to key_length_mla = nope + rope, value_length_mla = v.
// - Routed experts are stacked into one 3-D tensor per projection: [n_expert, out, in].
// - e_score_correction_bias is `exp_probs_b.bias`; the indexer k_norm has `.weight` and `.bias`.
// - YaRN: rope.scaling.{type,factor,original_context_length,yarn_beta_fast,yarn_beta_slow} and
//   rope.scaling.yarn_log_multiplier = 0.1 * mscale_all_dim (llama.cpp divides the 0.1 back out and uses
//   mscale = 1 + 0.1 * mscale_all_dim * ln(factor) squared in the softmax scale, like HF).
// - Linear weights keep the HF [out, in] layout, which is ggml's {in, out}: no transposes besides k_b.
//
// The bench checkpoints have no tokenizer, so a synthetic byte-level BPE vocabulary ("gpt2" model, no merges)
// of exactly vocab_size tokens is written; the bench feeds token ids directly.
//
// CLI: node --import tsx bench/gguf/convert_deepseek.ts <checkpoint dir> <out.gguf> [--type F32|F16|Q8_0|Q4_0] [--arch deepseek2|deepseek32]
import { statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import type { LoadedModel, ModelConfig, SwiGluWeights, Tensor } from '../../src/engine/checkpoint/types.ts';
import { GgmlType, GgufValueType, GgufWriter, gguf, type GgufWriteResult } from './gguf_writer.ts';

export type GgufArch = 'deepseek2' | 'deepseek32';
/**
 * Type of the 2-D/3-D weights. Q8_0 / Q4_0 hold the engine's --quantization int8 / int4 weights (same
 * quantiser, same blocks); the token embedding is F16 in both, as the engine keeps it as float16 rows.
 */
export type GgufDtype = 'F32' | 'F16' | 'Q8_0' | 'Q4_0';

/** llama_ftype of each dtype (general.file_type). */
const FILE_TYPE: Record<GgufDtype, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

export interface ConvertOptions {
  /** 'auto' (default): deepseek32 when the checkpoint has a DSA indexer, else deepseek2. */
  readonly arch?: GgufArch | 'auto';
  /** Type of the 2-D/3-D weights (norms, biases and the router stay F32). Default F32. */
  readonly dtype?: GgufDtype;
  /** general.name */
  readonly name?: string;
}

export interface ConvertPlan {
  readonly writer: GgufWriter;
  readonly arch: GgufArch;
  readonly dtype: GgufDtype;
  /** True when the checkpoint has an indexer that the chosen architecture does not use (deepseek2). */
  readonly indexerDropped: boolean;
  /** Departures from the checkpoint's exact semantics that llama.cpp cannot express (empty when exact). */
  readonly warnings: readonly string[];
}

export interface ConvertResult extends GgufWriteResult {
  readonly arch: GgufArch;
  readonly dtype: GgufDtype;
  readonly indexerDropped: boolean;
  readonly warnings: readonly string[];
}

/** llama_expert_gating_func_type */
export const EXPERT_GATING_FUNC = { softmax: 1, sigmoid: 2 } as const;

/** llama_token_type */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** GPT-2's byte -> printable unicode mapping (what byte-level BPE vocabularies store). */
export function byteLevelAlphabet(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = keep.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return out;
}

export interface SyntheticVocab {
  readonly tokens: string[];
  readonly types: number[];
}

/**
 * A vocabulary llama.cpp accepts for a model without a tokenizer: special ids (bos/eos) are control tokens,
 * then the 256 byte-level tokens (so any text tokenizes, "\n" included), then unique placeholders "<tN>".
 */
export function syntheticVocab(vocabSize: number, specialIds: readonly number[]): SyntheticVocab {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new Error(`bad vocab size ${vocabSize}`);
  const special = new Set(specialIds.filter((id) => id >= 0 && id < vocabSize));
  const bytes = byteLevelAlphabet();
  const tokens: string[] = [];
  const types: number[] = [];
  let nextByte = 0;
  for (let id = 0; id < vocabSize; id++) {
    if (special.has(id)) {
      tokens.push(`<|special_${id}|>`);
      types.push(TOKEN_TYPE.control);
    } else if (nextByte < 256) {
      tokens.push(bytes[nextByte++]!);
      types.push(TOKEN_TYPE.normal);
    } else {
      tokens.push(`<t${id}>`);
      types.push(TOKEN_TYPE.normal);
    }
  }
  return { tokens, types };
}

/**
 * Splits kv_b_proj [heads*(nope+v), kvLora] into llama.cpp's absorbed-MLA tensors:
 * kB [heads, kvLora, nope] (per-head transpose of the k_nope rows) and vB [heads, v, kvLora].
 */
export function splitKvB(kvB: Tensor, heads: number, nope: number, v: number): { kB: Float32Array; vB: Float32Array } {
  const [rows, kvLora] = kvB.shape as readonly [number, number];
  if (rows !== heads * (nope + v)) throw new Error(`kv_b_proj has ${rows} rows, expected heads*(nope+v) = ${heads * (nope + v)}`);
  const src = kvB.data;
  const kB = new Float32Array(heads * kvLora * nope);
  const vB = new Float32Array(heads * v * kvLora);
  for (let h = 0; h < heads; h++) {
    const base = h * (nope + v) * kvLora;
    for (let d = 0; d < nope; d++) {
      const row = base + d * kvLora;
      for (let c = 0; c < kvLora; c++) kB[(h * kvLora + c) * nope + d] = src[row + c]!;
    }
    vB.set(src.subarray(base + nope * kvLora, base + (nope + v) * kvLora), h * v * kvLora);
  }
  return { kB, vB };
}

/** Stacks same-shaped [out, in] matrices into [n, out, in]. */
export function stackMatrices(mats: readonly Tensor[]): Float32Array {
  const size = mats[0]!.data.length;
  const out = new Float32Array(mats.length * size);
  mats.forEach((m, i) => {
    if (m.data.length !== size) throw new Error('cannot stack matrices of different sizes');
    out.set(m.data, i * size);
  });
  return out;
}

function yarnMscale(factor: number, mscale: number): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}

/** Builds the GGUF (metadata + lazily produced tensors) for a loaded checkpoint; call writer.write(path). */
export function planDeepseekGguf(model: LoadedModel, options: ConvertOptions = {}): ConvertPlan {
  const c: ModelConfig = model.config;
  const w = model.weights;
  const arch: GgufArch = options.arch === undefined || options.arch === 'auto' ? (c.indexer ? 'deepseek32' : 'deepseek2') : options.arch;
  const dtype: GgufDtype = options.dtype ?? 'F32';
  const big = { F32: GgmlType.F32, F16: GgmlType.F16, Q8_0: GgmlType.Q8_0, Q4_0: GgmlType.Q4_0 }[dtype];
  const embedType = dtype === 'Q8_0' || dtype === 'Q4_0' ? GgmlType.F16 : big;
  const warnings: string[] = [];

  if (arch === 'deepseek32' && !c.indexer) throw new Error('deepseek32 needs a checkpoint with a DSA indexer (index_n_heads/index_head_dim/index_topk)');
  if (arch === 'deepseek32' && c.qLoraRank === null) throw new Error("llama.cpp's deepseek32 requires q_lora_rank (no direct q_proj)");
  const moe = c.moe;
  if (moe) {
    if (moe.moeLayerFreq !== 1)
      throw new Error(`llama.cpp's ${arch} makes every layer >= first_k_dense_replace MoE; moe_layer_freq ${moe.moeLayerFreq} is not expressible`);
    if (moe.nSharedExperts < 1) throw new Error(`llama.cpp's ${arch} requires shared experts (n_shared_experts >= 1)`);
    if (moe.topkMethod === 'group_limited_greedy' && moe.nGroup > 1)
      warnings.push('topk_method group_limited_greedy (group score = max) is run by llama.cpp as noaux_tc (group score = sum of top-2)');
  }
  if (c.ropeScaling) {
    const rs = c.ropeScaling;
    // llama.cpp assumes mscale = 1 (deepseek2: mscale = mscale_all_dim when that is not 1) for the rope magnitude.
    const assumedMscale = arch === 'deepseek2' && rs.mscaleAllDim !== 1 ? rs.mscaleAllDim : 1;
    const hf = yarnMscale(rs.factor, rs.mscale) / yarnMscale(rs.factor, rs.mscaleAllDim);
    const llama = yarnMscale(rs.factor, assumedMscale) / yarnMscale(rs.factor, rs.mscaleAllDim);
    if (Math.abs(hf - llama) > 1e-6)
      warnings.push(`YaRN rope magnitude: checkpoint ${hf}, llama.cpp ${llama} (mscale ${rs.mscale}, mscale_all_dim ${rs.mscaleAllDim})`);
  }

  const writer = new GgufWriter();
  const a = (key: string): string => `${arch}.${key}`;
  const nope = c.qkNopeHeadDim;
  const rope = c.qkRopeHeadDim;
  writer.set('general.architecture', gguf.str(arch));
  writer.set('general.name', gguf.str(options.name ?? path.basename(path.resolve(model.dir))));
  writer.set('general.file_type', gguf.u32(FILE_TYPE[dtype]));
  writer.set(a('vocab_size'), gguf.u32(c.vocabSize));
  writer.set(a('context_length'), gguf.u32(c.maxPositionEmbeddings));
  writer.set(a('embedding_length'), gguf.u32(c.hiddenSize));
  writer.set(a('block_count'), gguf.u32(c.numHiddenLayers));
  writer.set(a('feed_forward_length'), gguf.u32(c.intermediateSize));
  writer.set(a('attention.head_count'), gguf.u32(c.numAttentionHeads));
  writer.set(a('attention.head_count_kv'), gguf.u32(1));
  writer.set(a('attention.layer_norm_rms_epsilon'), gguf.f32(c.rmsNormEps));
  writer.set(a('rope.freq_base'), gguf.f32(c.ropeTheta));
  writer.set(a('rope.dimension_count'), gguf.u32(rope));
  if (c.qLoraRank !== null) writer.set(a('attention.q_lora_rank'), gguf.u32(c.qLoraRank));
  writer.set(a('attention.kv_lora_rank'), gguf.u32(c.kvLoraRank));
  writer.set(a('attention.key_length'), gguf.u32(c.kvLoraRank + rope));
  writer.set(a('attention.value_length'), gguf.u32(c.kvLoraRank));
  writer.set(a('attention.key_length_mla'), gguf.u32(nope + rope));
  writer.set(a('attention.value_length_mla'), gguf.u32(c.vHeadDim));
  writer.set(a('leading_dense_block_count'), gguf.u32(moe ? moe.firstKDenseReplace : c.numHiddenLayers));
  if (moe) {
    writer.set(a('expert_count'), gguf.u32(moe.nRoutedExperts));
    writer.set(a('expert_used_count'), gguf.u32(moe.numExpertsPerTok));
    writer.set(a('expert_shared_count'), gguf.u32(moe.nSharedExperts));
    writer.set(a('expert_feed_forward_length'), gguf.u32(moe.moeIntermediateSize));
    writer.set(a('expert_weights_scale'), gguf.f32(moe.routedScalingFactor));
    writer.set(a('expert_weights_norm'), gguf.bool(moe.normTopkProb));
    writer.set(a('expert_gating_func'), gguf.u32(EXPERT_GATING_FUNC[moe.scoringFunc]));
    if (moe.topkMethod !== 'greedy') {
      writer.set(a('expert_group_count'), gguf.u32(moe.nGroup));
      writer.set(a('expert_group_used_count'), gguf.u32(moe.topkGroup));
    }
  } else {
    // the deepseek2/32 loaders read these unconditionally; a dense model gets zero experts
    writer.set(a('expert_shared_count'), gguf.u32(0));
    writer.set(a('expert_feed_forward_length'), gguf.u32(c.intermediateSize));
    if (arch === 'deepseek32') writer.set(a('expert_gating_func'), gguf.u32(EXPERT_GATING_FUNC.sigmoid));
  }
  if (c.ropeScaling) {
    const rs = c.ropeScaling;
    writer.set(a('rope.scaling.type'), gguf.str('yarn'));
    writer.set(a('rope.scaling.factor'), gguf.f32(rs.factor));
    writer.set(a('rope.scaling.original_context_length'), gguf.u32(rs.originalMaxPositionEmbeddings));
    writer.set(a('rope.scaling.yarn_beta_fast'), gguf.f32(rs.betaFast));
    writer.set(a('rope.scaling.yarn_beta_slow'), gguf.f32(rs.betaSlow));
    writer.set(a('rope.scaling.yarn_log_multiplier'), gguf.f32(0.1 * rs.mscaleAllDim));
  }
  writer.set(a('nextn_predict_layers'), gguf.u32(0));
  if (arch === 'deepseek32' && c.indexer) {
    writer.set(a('attention.indexer.head_count'), gguf.u32(c.indexer.nHeads));
    writer.set(a('attention.indexer.key_length'), gguf.u32(c.indexer.headDim));
    writer.set(a('attention.indexer.top_k'), gguf.u32(c.indexer.topk));
  }

  // tokenizer
  const specials = [...(c.bosTokenId !== null ? [c.bosTokenId] : []), ...c.eosTokenIds];
  const vocab = syntheticVocab(c.vocabSize, specials);
  writer.set('tokenizer.ggml.model', gguf.str('gpt2'));
  writer.set('tokenizer.ggml.pre', gguf.str('default'));
  writer.set('tokenizer.ggml.tokens', gguf.arr(GgufValueType.STRING, vocab.tokens));
  writer.set('tokenizer.ggml.token_type', gguf.arr(GgufValueType.INT32, vocab.types));
  writer.set('tokenizer.ggml.merges', gguf.arr(GgufValueType.STRING, []));
  if (c.bosTokenId !== null && c.bosTokenId < c.vocabSize) writer.set('tokenizer.ggml.bos_token_id', gguf.u32(c.bosTokenId));
  if (c.eosTokenIds.length > 0 && c.eosTokenIds[0]! < c.vocabSize) writer.set('tokenizer.ggml.eos_token_id', gguf.u32(c.eosTokenIds[0]!));
  writer.set('tokenizer.ggml.add_bos_token', gguf.bool(false));
  writer.set('tokenizer.ggml.add_eos_token', gguf.bool(false));

  // tensors
  const put = (name: string, t: Tensor, type: GgmlType = big): void => {
    writer.addTensor({ name, shape: t.shape, type: t.shape.length === 1 ? GgmlType.F32 : type, data: () => t.data });
  };
  const swiGlu = (p: string, s: SwiGluWeights, suffix: string): void => {
    put(`${p}ffn_gate${suffix}.weight`, s.gateProj);
    put(`${p}ffn_up${suffix}.weight`, s.upProj);
    put(`${p}ffn_down${suffix}.weight`, s.downProj);
  };
  put('token_embd.weight', w.embedTokens, embedType);
  put('output_norm.weight', w.norm);
  put('output.weight', w.lmHead);
  const heads = c.numAttentionHeads;
  w.layers.forEach((layer, i) => {
    const p = `blk.${i}.`;
    const at = layer.attn;
    put(`${p}attn_norm.weight`, layer.inputLayernorm);
    if (at.query.kind === 'lora') {
      put(`${p}attn_q_a.weight`, at.query.qAProj);
      put(`${p}attn_q_a_norm.weight`, at.query.qALayernorm);
      put(`${p}attn_q_b.weight`, at.query.qBProj);
    } else {
      put(`${p}attn_q.weight`, at.query.qProj);
    }
    put(`${p}attn_kv_a_mqa.weight`, at.kvAProjWithMqa);
    put(`${p}attn_kv_a_norm.weight`, at.kvALayernorm);
    let split: { kB: Float32Array; vB: Float32Array } | null = null;
    const kvSplit = (): { kB: Float32Array; vB: Float32Array } => (split ??= splitKvB(at.kvBProj, heads, nope, c.vHeadDim));
    writer.addTensor({ name: `${p}attn_k_b.weight`, shape: [heads, c.kvLoraRank, nope], type: big, data: () => kvSplit().kB });
    writer.addTensor({
      name: `${p}attn_v_b.weight`,
      shape: [heads, c.vHeadDim, c.kvLoraRank],
      type: big,
      data: () => {
        const vB = kvSplit().vB;
        split = null;
        return vB;
      },
    });
    put(`${p}attn_output.weight`, at.oProj);
    if (arch === 'deepseek32' && at.indexer) {
      put(`${p}indexer.attn_q_b.weight`, at.indexer.wqB);
      put(`${p}indexer.attn_k.weight`, at.indexer.wk);
      put(`${p}indexer.k_norm.weight`, at.indexer.kNormWeight);
      put(`${p}indexer.k_norm.bias`, at.indexer.kNormBias);
      put(`${p}indexer.proj.weight`, at.indexer.weightsProj);
    }
    put(`${p}ffn_norm.weight`, layer.postAttentionLayernorm);
    if (layer.mlp.kind === 'dense') {
      swiGlu(p, layer.mlp.weights, '');
    } else {
      const m = layer.mlp.weights;
      if (!moe || i < moe.firstKDenseReplace) throw new Error(`layer ${i}: MoE layer where llama.cpp expects a dense one`);
      put(`${p}ffn_gate_inp.weight`, m.gate, GgmlType.F32);
      if (m.eScoreCorrectionBias) put(`${p}exp_probs_b.bias`, m.eScoreCorrectionBias);
      const e = m.experts;
      const [inter, hidden] = e[0]!.gateProj.shape as readonly [number, number];
      writer.addTensor({ name: `${p}ffn_gate_exps.weight`, shape: [e.length, inter, hidden], type: big, data: () => stackMatrices(e.map((x) => x.gateProj)) });
      writer.addTensor({ name: `${p}ffn_up_exps.weight`, shape: [e.length, inter, hidden], type: big, data: () => stackMatrices(e.map((x) => x.upProj)) });
      writer.addTensor({ name: `${p}ffn_down_exps.weight`, shape: [e.length, hidden, inter], type: big, data: () => stackMatrices(e.map((x) => x.downProj)) });
      if (m.sharedExperts) swiGlu(p, m.sharedExperts, '_shexp');
    }
    if (layer.mlp.kind === 'dense' && moe && i >= moe.firstKDenseReplace) throw new Error(`layer ${i}: dense layer where llama.cpp expects MoE`);
  });
  return { writer, arch, dtype, indexerDropped: c.indexer !== null && arch === 'deepseek2', warnings };
}

/** Converts a loaded checkpoint and writes the GGUF file. */
export function convertDeepseekToGguf(model: LoadedModel, outPath: string, options: ConvertOptions = {}): ConvertResult {
  const plan = planDeepseekGguf(model, options);
  const res = plan.writer.write(outPath);
  return { ...res, arch: plan.arch, dtype: plan.dtype, indexerDropped: plan.indexerDropped, warnings: plan.warnings };
}

/** Converts `checkpointDir` to `outPath` unless outPath exists and is newer than the checkpoint's weights. */
export function ensureGguf(checkpointDir: string, outPath: string, options: ConvertOptions = {}): { path: string; converted: boolean } {
  const newest = (p: string): number => {
    try {
      return statSync(p).mtimeMs;
    } catch {
      return -1;
    }
  };
  const src = Math.max(newest(`${checkpointDir}/model.safetensors`), newest(`${checkpointDir}/config.json`));
  if (newest(outPath) > src && src > 0) return { path: outPath, converted: false };
  convertDeepseekToGguf(loadModel(checkpointDir), outPath, options);
  return { path: outPath, converted: true };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { type: { type: 'string', default: 'F32' }, arch: { type: 'string', default: 'auto' } },
  });
  if (positionals.length !== 2 || !['auto', 'deepseek2', 'deepseek32'].includes(values.arch) || !(values.type in FILE_TYPE)) {
    throw new Error('usage: convert_deepseek.ts <checkpoint dir> <out.gguf> [--type F32|F16|Q8_0|Q4_0] [--arch auto|deepseek2|deepseek32]');
  }
  const t0 = performance.now();
  const model = loadModel(positionals[0]!);
  const res = convertDeepseekToGguf(model, positionals[1]!, { arch: values.arch as GgufArch | 'auto', dtype: values.type as GgufDtype });
  process.stdout.write(
    `${res.path}: ${res.arch} ${res.dtype}, ${res.tensorCount} tensors, ${res.kvCount} keys, ${(res.bytes / 2 ** 20).toFixed(1)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s${res.indexerDropped ? ' (indexer dropped: dense attention)' : ''}\n`,
  );
  for (const warning of res.warnings) process.stdout.write(`warning: ${warning}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
