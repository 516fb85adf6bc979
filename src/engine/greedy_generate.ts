// Greedy generation for a fixed set of prompts, batched: each step runs every unfinished sequence
// (its next prefill chunk or one decode token) in one model call. Used by the check CLI and the
// parity tests; the serving engine has its own scheduler and sampler.
import { EngineError } from '../common/errors.ts';
import type { ModelExecutor } from './model_executor.ts';
import type { StepSequence } from './model/step_plan.ts';

export interface GreedyOptions {
  readonly maxTokens: number;
  /** Prefill chunk size (default: the whole prompt in one step). */
  readonly chunkSize?: number;
  /** Also return the logits of every prompt position. */
  readonly promptLogits?: boolean;
  /** Record the indexer selection of the last prompt position, per layer. */
  readonly recordSelections?: boolean;
}

export interface GreedyResult {
  readonly tokens: number[];
  /** stepLogits[n]: the logits that chose tokens[n] ([vocab] each). */
  readonly stepLogits: Float32Array[];
  /** [promptLen, vocab] when promptLogits was set. */
  readonly promptLogits: Float32Array | null;
  /** selections[layer]: ascending key positions attended by the last prompt token. */
  readonly selections: Int32Array[] | null;
}

interface SeqState {
  readonly id: string;
  readonly prompt: readonly number[];
  readonly tokens: number[];
  numComputed: number;
  readonly result: GreedyResult;
}

export async function generateGreedy(exec: ModelExecutor, prompts: readonly (readonly number[])[], options: GreedyOptions): Promise<GreedyResult[]> {
  const vocab = exec.loaded.config.vocabSize;
  const states: SeqState[] = prompts.map((prompt, i) => ({
    id: `greedy-${i}-${Math.random().toString(36).slice(2)}`,
    prompt,
    tokens: [...prompt],
    numComputed: 0,
    result: {
      tokens: [],
      stepLogits: [],
      promptLogits: options.promptLogits ? new Float32Array(prompt.length * vocab) : null,
      selections: options.recordSelections ? [] : null,
    },
  }));
  try {
    for (;;) {
      const active = states.filter((s) => s.result.tokens.length < options.maxTokens);
      if (active.length === 0) break;
      const seqs = active.map((s) => scheduleNext(exec, s, options));
      const out = await exec.model.step(seqs, { recordSelections: options.recordSelections });
      active.forEach((s, i) => absorb(s, seqs[i], out.logits.subarray(out.logitOffsets[i] * vocab, out.logitOffsets[i + 1] * vocab), vocab, out.selections?.map((l) => l[i]) ?? null));
    }
  } finally {
    for (const s of states) exec.kvCache.free(s.id);
  }
  return states.map((s) => s.result);
}

function scheduleNext(exec: ModelExecutor, s: SeqState, options: GreedyOptions): StepSequence {
  const inPrompt = s.numComputed < s.prompt.length;
  const n = inPrompt ? Math.min(options.chunkSize ?? Infinity, s.prompt.length - s.numComputed) : 1;
  if (exec.kvCache.allocateSlots(s.id, s.numComputed + n) === null) {
    throw new EngineError('DSV_ERR_OUT_OF_BLOCKS', `KV cache full: ${s.numComputed + n} tokens do not fit`);
  }
  return {
    tokenIds: s.tokens.slice(s.numComputed, s.numComputed + n),
    numComputedTokens: s.numComputed,
    blockTable: exec.kvCache.getBlockTable(s.id),
    logits: inPrompt && options.promptLogits ? 'all' : 'last',
  };
}

function absorb(s: SeqState, seq: StepSequence, logits: Float32Array, vocab: number, selections: Int32Array[] | null): void {
  const start = s.numComputed;
  s.numComputed += seq.tokenIds.length;
  const wasPrompt = start < s.prompt.length;
  if (wasPrompt && s.result.promptLogits) s.result.promptLogits.set(logits, start * vocab);
  if (s.numComputed < s.prompt.length) return; // mid-prefill: nothing to sample yet
  if (wasPrompt && selections) s.result.selections!.push(...selections);
  const row = logits.subarray(logits.length - vocab);
  let best = 0;
  for (let v = 1; v < vocab; v++) if (row[v] > row[best]) best = v;
  s.result.tokens.push(best);
  s.result.stepLogits.push(row.slice());
  s.tokens.push(best);
}
