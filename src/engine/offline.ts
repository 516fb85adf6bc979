// The offline driver (vLLM's `LLM` shape): runs a set of prompts to completion through the same
// EngineCore step loop that serves traffic. Parity tests, CLIs, diagnostics and benchmarks use it,
// so what they check is the serving path: scheduler, chunked prefill, paged caches, sampler.
import type { SpeculativeConfig } from './speculative/speculative_config.ts';
import type { DraftObserver } from './speculative/drafting.ts';
import { EngineCore, type EngineObserver } from './engine_core.ts';
import type { LayerCapture } from './model/deepseek_model.ts';
import type { ModelRunnerOptions } from './model_runner.ts';
import type { FinishReason, RequestOutputDelta, SampledLogprobs } from './request.ts';
import { resolveSamplingParams, type SamplingParamsInit } from './sampling/sampling_params.ts';
import type { SchedulerConfig } from './scheduler.ts';
import type { StepStats } from './step_stats.ts';

const UNBOUNDED = Number.MAX_SAFE_INTEGER;

export interface OfflineOptions {
  readonly runner?: ModelRunnerOptions;
  /** Scheduler limits; defaults: no queue bounds, 256 sequences, 8192 tokens per step, the model's positions. */
  readonly scheduler?: Partial<SchedulerConfig>;
  readonly enablePrefixCaching?: boolean;
  /** Keep raw logits: prompt rows (requests asking for prompt logprobs) and the row behind each sampled token. */
  readonly captureLogits?: boolean;
  /** Keep, per layer, the indexer selection of each request's last prompt position. */
  readonly recordSelections?: boolean;
  /** Every step's selections, per request: per layer, the key positions of its last row (at lastPosition). */
  readonly onSelections?: (requestId: string, lastPosition: number, selections: readonly Int32Array[]) => void;
  /** Per layer, the pre-attention outputs of every step's rows (diagnostics). */
  readonly onLayer?: (layer: number, capture: LayerCapture) => void;
  /** Run the block manager's integrity check after every step (tests). */
  readonly checkIntegrity?: boolean;
  /** Speculative decoding with the checkpoint's MTP module (vLLM's speculative_config). */
  readonly speculative?: SpeculativeConfig | null;
  /** Speculative decoding: every MTP draft row; may replace a greedy request's draft (engine/speculative/drafting.ts). */
  readonly onDraft?: DraftObserver;
}

export interface OfflineRequest {
  readonly promptTokenIds: readonly number[];
  /** Defaults to greedy decoding of 16 tokens. */
  readonly params?: SamplingParamsInit;
  readonly cacheSalt?: string;
}

export interface OfflineOutput {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly tokenIds: number[];
  /** One entry per generated token when logprobs were requested. */
  readonly logprobs: SampledLogprobs[];
  readonly promptLogprobs: readonly (SampledLogprobs | null)[] | null;
  finishReason: FinishReason | null;
  errorMessage: string | null;
  numCachedTokens: number;
  /** captureLogits: [P, vocab] logits of every prompt position (requests with prompt logprobs). */
  promptLogits: Float32Array | null;
  /** captureLogits: stepLogits[n] is the [vocab] row that tokenIds[n] was sampled from. */
  readonly stepLogits: Float32Array[];
  /** recordSelections: per layer, ascending key positions attended by the last prompt position. */
  selections: readonly Int32Array[] | null;
}

export class OfflineEngine {
  private nextId = 0;
  private readonly outputs = new Map<string, OfflineOutput>();

  private constructor(
    readonly core: EngineCore,
    private readonly options: OfflineOptions,
  ) {}

  static async create(modelDir: string, options: OfflineOptions = {}): Promise<OfflineEngine> {
    const scheduler = {
      maxNumSeqs: 256,
      maxNumBatchedTokens: 8192,
      longPrefillTokenThreshold: 0,
      maxQueuedRequests: UNBOUNDED,
      maxQueuedTokens: UNBOUNDED,
      ...options.scheduler,
    };
    let engine: OfflineEngine | null = null;
    const observer: EngineObserver = {
      ...(options.captureLogits && { onLogits: (id: string, first: number, logits: Float32Array) => engine?.keepLogits(id, first, logits) }),
      ...((options.recordSelections || options.onSelections) && {
        onSelections: (id: string, last: number, sel: readonly Int32Array[]) => {
          if (options.recordSelections) engine?.keepSelections(id, last, sel);
          options.onSelections?.(id, last, sel);
        },
      }),
      ...(options.onLayer && { onLayer: options.onLayer }),
      ...(options.onDraft && { onDraft: options.onDraft }),
    };
    const core = await EngineCore.create(
      modelDir,
      { runner: options.runner ?? {}, scheduler, enablePrefixCaching: options.enablePrefixCaching ?? true, speculative: options.speculative ?? null },
      observer,
    );
    engine = new OfflineEngine(core, options);
    return engine;
  }

  /** Runs the requests (all queued at once, so they batch) until every one has finished. */
  async generate(requests: readonly OfflineRequest[], onStep?: (stats: StepStats) => void): Promise<OfflineOutput[]> {
    const vocabSize = this.core.config.vocabSize;
    const outs = requests.map((r) => {
      const requestId = `offline-${this.nextId++}`;
      const params = resolveSamplingParams({ temperature: 0, ...r.params }, { vocabSize, maxLogprobs: vocabSize });
      this.core.addRequest({ requestId, promptTokenIds: r.promptTokenIds, params, ...(r.cacheSalt !== undefined && { cacheSalt: r.cacheSalt }) });
      const out = emptyOutput(requestId, r.promptTokenIds, params.promptLogprobs !== null && this.options.captureLogits === true, vocabSize);
      this.outputs.set(requestId, out);
      return out;
    });
    try {
      while (outs.some((o) => o.finishReason === null)) {
        const { outputs, stats } = await this.core.step();
        if (this.options.checkIntegrity) this.core.checkIntegrity();
        for (const d of outputs) this.absorb(d);
        onStep?.(stats);
      }
    } finally {
      const open = outs.filter((o) => o.finishReason === null).map((o) => o.requestId);
      this.core.finishRequests(open);
      for (const o of outs) this.outputs.delete(o.requestId);
    }
    return outs;
  }

  async dispose(): Promise<void> {
    await this.core.dispose();
  }

  private absorb(d: RequestOutputDelta): void {
    const out = this.outputs.get(d.requestId);
    if (!out) return;
    out.tokenIds.push(...d.newTokenIds);
    if (d.logprobs) out.logprobs.push(...d.logprobs);
    if (d.promptLogprobs) (out as { promptLogprobs: OfflineOutput['promptLogprobs'] }).promptLogprobs = d.promptLogprobs;
    out.numCachedTokens = d.numCachedTokens;
    out.finishReason = d.finishReason;
    out.errorMessage = d.errorMessage;
  }

  /** Row r is position first + r: prompt positions fill promptLogits; position P - 1 + n chose output token n. */
  private keepLogits(requestId: string, first: number, logits: Float32Array): void {
    const out = this.outputs.get(requestId);
    if (!out) return;
    const vocab = this.core.config.vocabSize;
    const P = out.promptTokenIds.length;
    for (let r = 0; r < logits.length / vocab; r++) {
      const pos = first + r;
      const row = logits.subarray(r * vocab, (r + 1) * vocab);
      if (pos < P) out.promptLogits?.set(row, pos * vocab);
      if (pos >= P - 1) out.stepLogits[pos - (P - 1)] = row.slice();
    }
  }

  private keepSelections(requestId: string, lastPosition: number, selections: readonly Int32Array[]): void {
    const out = this.outputs.get(requestId);
    if (out && lastPosition === out.promptTokenIds.length - 1) out.selections = selections;
  }
}

function emptyOutput(requestId: string, promptTokenIds: readonly number[], promptLogits: boolean, vocab: number): OfflineOutput {
  return {
    requestId,
    promptTokenIds,
    tokenIds: [],
    logprobs: [],
    promptLogprobs: null,
    finishReason: null,
    errorMessage: null,
    numCachedTokens: 0,
    promptLogits: promptLogits ? new Float32Array(promptTokenIds.length * vocab) : null,
    stepLogits: [],
    selections: null,
  };
}
