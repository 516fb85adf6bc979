// Draft proposals from the MTP module after a step. For each sequence the module first runs over the
// rows the step computed and kept (position p with the main model's hidden state h_p and the next
// token t_{p+1}), which fills its cache layer and, at the last kept row, predicts the first draft;
// further drafts chain the module on its own output (vLLM's deepseek_mtp with one module, k > 1).
import { planStep, sequenceRowStarts, type StepPlan, type StepSequence } from '../model/step_plan.ts';
import type { DeepseekModel } from '../model/deepseek_model.ts';
import type { MtpModule } from '../model/mtp.ts';
import type { StepProfiler } from '../step_profiler.ts';

export interface DraftSequence {
  /** Index of the sequence in the last step's plan. */
  readonly stepIndex: number;
  /** Position of the sequence's first row in the last step. */
  readonly start: number;
  /** t_{p+1} for each kept row p = start .. start + nextTokenIds.length - 1. */
  readonly nextTokenIds: readonly number[];
  /** Covers positions up to start + nextTokenIds.length + numDrafts - 2 (chained rows write the module's cache). */
  readonly blockTable: readonly number[];
  /** Drafts wanted; 0 only fills the module's cache (a prefill chunk, or a request that does not draft). */
  readonly numDrafts: number;
}

/**
 * Picks the draft token of sequence `seq` (an index into the DraftSequence list) from the module's
 * logits row at `position` (it predicts the token at position + 2).
 */
export type DraftChooser = (seq: number, position: number, logits: Float32Array) => number;

export interface LastStep {
  readonly plan: StepPlan;
  /** [N, hidden] main model output before the final norm, execution order of `plan`. */
  readonly hidden: Float32Array;
  readonly numSeqs: number;
}

export class MtpProposer {
  constructor(
    private readonly model: DeepseekModel,
    private readonly mtp: MtpModule,
    private readonly blockSize: number,
  ) {}

  /** Returns the drafts of each sequence (numDrafts or fewer tokens). */
  async propose(last: LastStep, seqs: readonly DraftSequence[], choose: DraftChooser, profiler: StepProfiler): Promise<number[][]> {
    const drafts: number[][] = seqs.map(() => []);
    if (seqs.length === 0) return drafts;
    const D = this.model.config.hiddenSize;
    const maxPos = this.model.config.maxPositionEmbeddings;
    const mainStarts = sequenceRowStarts(last.plan, last.numSeqs);
    const first: StepSequence[] = seqs.map((s) => ({
      tokenIds: s.nextTokenIds,
      numComputedTokens: s.start,
      blockTable: s.blockTable,
      logits: s.numDrafts > 0 ? 'last' : 'none',
    }));
    const plan = planStep(first, this.blockSize, maxPos);
    const starts = sequenceRowStarts(plan, seqs.length);
    const prev = new Float32Array(plan.numTokens * D);
    seqs.forEach((s, j) => {
      const from = mainStarts[s.stepIndex]! * D;
      prev.set(last.hidden.subarray(from, from + s.nextTokenIds.length * D), starts[j]! * D);
    });
    let out = await this.mtp.forward(this.model, plan, prev, profiler);
    // Per drafting sequence: its index and the module's hidden row behind its latest draft.
    let active = seqs.flatMap((s, j) => (s.numDrafts > 0 ? [j] : []));
    let lastRows = active.map((j) => out.hidden.subarray((starts[j]! + seqs[j]!.nextTokenIds.length - 1) * D, (starts[j]! + seqs[j]!.nextTokenIds.length) * D));
    const V = this.model.config.vocabSize;
    const positionOf = (j: number, step: number): number => seqs[j]!.start + seqs[j]!.nextTokenIds.length - 1 + step;
    active.forEach((j, r) => drafts[j]!.push(choose(j, positionOf(j, 0), out.logits.subarray(r * V, (r + 1) * V))));
    for (let step = 1; ; step++) {
      const keep = active.map((j, r) => [j, r] as const).filter(([j]) => seqs[j]!.numDrafts > step);
      if (keep.length === 0) break;
      const chain: StepSequence[] = keep.map(([j]) => {
        const s = seqs[j]!;
        return { tokenIds: [drafts[j]![step - 1]!], numComputedTokens: positionOf(j, step), blockTable: s.blockTable, logits: 'last' };
      });
      const chainPlan = planStep(chain, this.blockSize, maxPos);
      const h = new Float32Array(keep.length * D);
      keep.forEach(([, r], i) => h.set(lastRows[r]!, i * D)); // one-row sequences: execution order = list order
      out = await this.mtp.forward(this.model, chainPlan, h, profiler);
      active = keep.map(([j]) => j);
      lastRows = keep.map((_, i) => out.hidden.subarray(i * D, (i + 1) * D));
      active.forEach((j, r) => drafts[j]!.push(choose(j, positionOf(j, step), out.logits.subarray(r * V, (r + 1) * V))));
    }
    return drafts;
  }
}
