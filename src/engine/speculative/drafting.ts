// After a step's tokens are appended: which requests the MTP module runs over and how many drafts each
// gets, the draft choice per row (argmax for greedy requests, a draw from q = the processed draft row
// otherwise, q kept for the accept test), and the drafts stored on the requests for the next schedule().
import { isFinished, type Request } from '../request.ts';
import type { ModelRunner } from '../model_runner.ts';
import { drawFromDistribution, processedDistribution } from '../sampling/distribution.ts';
import type { SamplerWorkspace } from '../sampling/sampler.ts';
import { isGreedy } from '../sampling/sampling_params.ts';
import type { Scheduler, SchedulerOutput } from '../scheduler.ts';
import type { StepProfiler } from '../step_profiler.ts';
import type { DraftSequence } from './mtp_proposer.ts';

export interface DraftingContext {
  readonly runner: ModelRunner;
  readonly scheduler: Scheduler;
  readonly numSpeculativeTokens: number;
  /** Requests that never speculate (a grammar decides their tokens). */
  readonly excluded: (request: Request) => boolean;
  readonly workspace: SamplerWorkspace;
  /** Observer of each draft row (tests): may replace a greedy request's draft (sampled ones must be drawn from q). */
  readonly onDraft?: DraftObserver;
}

/** The module's logits row at `position` (predicting position + 2) and the draft chosen; returns the draft to use. */
export type DraftObserver = (requestId: string, position: number, logits: Float32Array, draft: number) => number;

/**
 * Runs the MTP module over the rows each scheduled request kept in this step and proposes drafts for
 * the requests now decoding. Steps without speculation (disabled by batch size) run nothing, so the
 * module's cache has no rows for those positions: later drafts are worse, the output is unaffected.
 */
export async function proposeDrafts(ctx: DraftingContext, output: SchedulerOutput, speculating: boolean, profiler: StepProfiler): Promise<void> {
  if (!speculating) return;
  const seqs: DraftSequence[] = [];
  const owners: Request[] = [];
  output.scheduled.forEach((s, stepIndex) => {
    const request = s.request;
    const numKept = request.numComputedTokens - s.numComputedTokens;
    if (isFinished(request.status) || ctx.excluded(request) || numKept <= 0) return;
    const decoding = request.numComputedTokens === request.numTokens - 1;
    const room = Math.min(
      ctx.numSpeculativeTokens,
      request.params.maxTokens - request.numOutputTokens - 1,
      ctx.scheduler.config.maxModelLen - request.numTokens,
    );
    const numDrafts = decoding && room > 0 ? 1 + ctx.scheduler.reserveDraftSlots(request, room - 1) : 0;
    seqs.push({
      stepIndex,
      start: s.numComputedTokens,
      nextTokenIds: request.tokenIds.slice(s.numComputedTokens + 1, request.numComputedTokens + 1),
      blockTable: s.blockTable,
      numDrafts,
    });
    owners.push(request);
  });
  const probs: (Float64Array | null)[][] = owners.map(() => []);
  const choose = (j: number, position: number, row: Float32Array): number => {
    const request = owners[j]!;
    const q = processedDistribution(row, request.params, request.sampling, ctx.workspace);
    const greedy = isGreedy(request.params);
    probs[j]!.push(greedy ? null : q);
    const draft = greedy ? q.indexOf(1) : drawFromDistribution(q, request.draftRng.nextFloat());
    const chosen = ctx.onDraft?.(request.requestId, position, row, draft) ?? draft;
    return greedy ? chosen : draft;
  };
  const drafts = await ctx.runner.propose(seqs, choose, profiler);
  if (drafts === null) return;
  owners.forEach((request, j) => {
    if (drafts[j]!.length > 0 && !isFinished(request.status)) request.setDrafts(drafts[j]!, probs[j]!);
  });
}
