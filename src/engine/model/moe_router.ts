// DeepSeek MoE routing (per token, over E routed experts), in TypeScript: E is small (<= 256)
// and the work is O(N * E), far below one expert's matmul.
//
// sigmoid + noaux_tc (V3/V3.2): s = sigmoid(logits); c = s + e_score_correction_bias (selection only);
//   group score = sum of the top-2 c in each of n_group contiguous groups; keep topk_group groups;
//   pick num_experts_per_tok by c; weights = s of the picked (/ their sum if norm_topk_prob) * routed_scaling_factor.
// softmax + greedy (V2-Lite) / group_limited_greedy (V2, group score = max s): weights = softmax probs;
//   V2 normalises when norm_topk_prob (and k > 1), otherwise scales by routed_scaling_factor.
import type { ModelConfig, MoeConfig } from '../checkpoint/types.ts';

export interface Routing {
  /** [N * k] expert id per (token, choice). */
  readonly experts: Int32Array;
  /** [N * k] routing weight per (token, choice). */
  readonly weights: Float32Array;
}

export function routeTokens(config: ModelConfig, moe: MoeConfig, logits: Float32Array, bias: Float32Array | null, numTokens: number): Routing {
  const E = moe.nRoutedExperts;
  const k = moe.numExpertsPerTok;
  const experts = new Int32Array(numTokens * k);
  const weights = new Float32Array(numTokens * k);
  const scores = new Float64Array(E);
  const choice = new Float64Array(E);
  const allowed = new Uint8Array(E);
  for (let t = 0; t < numTokens; t++) {
    scoreRow(moe, logits, t * E, E, scores);
    for (let e = 0; e < E; e++) choice[e] = scores[e]! + (bias ? bias[e]! : 0);
    allowGroups(moe, choice, allowed);
    let sum = 0;
    for (let j = 0; j < k; j++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (allowed[e] && (best < 0 || choice[e]! > choice[best]!)) best = e;
      allowed[best] = 0;
      experts[t * k + j] = best;
      weights[t * k + j] = scores[best]!;
      sum += scores[best]!;
    }
    const normalise = moe.normTopkProb && (config.modelType !== 'deepseek_v2' || k > 1);
    const scale = normalise ? 1 / (sum + 1e-20) : 1;
    const routed = config.modelType === 'deepseek_v2' && normalise ? 1 : moe.routedScalingFactor;
    for (let j = 0; j < k; j++) weights[t * k + j] = weights[t * k + j]! * scale * routed;
  }
  return { experts, weights };
}

function scoreRow(moe: MoeConfig, logits: Float32Array, offset: number, E: number, out: Float64Array): void {
  if (moe.scoringFunc === 'sigmoid') {
    for (let e = 0; e < E; e++) out[e] = 1 / (1 + Math.exp(-logits[offset + e]!));
    return;
  }
  let max = -Infinity;
  for (let e = 0; e < E; e++) max = Math.max(max, logits[offset + e]!);
  let sum = 0;
  for (let e = 0; e < E; e++) sum += out[e] = Math.exp(logits[offset + e]! - max);
  for (let e = 0; e < E; e++) out[e]! /= sum;
}

/** Marks the experts of the topk_group best groups (all experts for greedy routing). */
function allowGroups(moe: MoeConfig, choice: Float64Array, allowed: Uint8Array): void {
  const E = choice.length;
  if (moe.topkMethod === 'greedy' || moe.nGroup <= 1) {
    allowed.fill(1);
    return;
  }
  const size = E / moe.nGroup;
  const groupScore = new Float64Array(moe.nGroup);
  for (let gi = 0; gi < moe.nGroup; gi++) {
    let first = -Infinity;
    let second = -Infinity;
    for (let e = gi * size; e < (gi + 1) * size; e++) {
      const c = choice[e]!;
      if (c > first) {
        second = first;
        first = c;
      } else if (c > second) second = c;
    }
    groupScore[gi] = moe.topkMethod === 'noaux_tc' ? first + (size > 1 ? second : 0) : first;
  }
  allowed.fill(0);
  for (let j = 0; j < moe.topkGroup; j++) {
    let best = 0;
    for (let gi = 1; gi < moe.nGroup; gi++) if (groupScore[gi]! > groupScore[best]!) best = gi;
    groupScore[best] = -Infinity;
    allowed.fill(1, best * size, (best + 1) * size);
  }
}
