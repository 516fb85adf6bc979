// One API request's generation: fans out n samples per prompt to the engine, turns each choice's
// token deltas into text (incremental detokenization, stop strings held back until they cannot
// match), and merges all choices into one ordered event stream. Aborting it aborts every choice.
import { randomUUID } from 'node:crypto';
import { AsyncQueue } from '../common/async_queue.ts';
import type { EngineClient } from '../engine/engine_client.ts';
import { EngineError } from '../common/errors.ts';
import type { FinishReason, RequestOutputDelta, SampledLogprobs } from '../engine/request.ts';
import { childSeed, type SamplingParams } from '../engine/sampling/sampling_params.ts';
import type { StructuredOutputSpec } from '../engine/structured/grammar_spec.ts';
import { StopStringMatcher } from './tokenizer/stop_strings.ts';
import type { TextTokenizer } from './tokenizer/tokenizer.ts';

export interface GenerationInput {
  readonly prompts: readonly (readonly number[])[];
  readonly params: SamplingParams; // params.n samples per prompt
  readonly stop: readonly string[];
  readonly includeStopStr: boolean;
  readonly skipSpecialTokens: boolean;
  readonly cacheSalt?: string;
  /** The grammar every choice's output must match (structured outputs, forced tool calls). */
  readonly structuredOutput?: StructuredOutputSpec | null;
}

export interface ChoiceEvent {
  readonly index: number; // promptIndex * n + sample
  readonly promptIndex: number;
  readonly text: string;
  readonly tokenIds: readonly number[];
  readonly logprobs: readonly SampledLogprobs[] | null;
  /** Sent with the first event of a choice when prompt logprobs were asked for. */
  readonly promptLogprobs: readonly (SampledLogprobs | null)[] | null;
  readonly finishReason: FinishReason | null;
  readonly stopReason: number | string | null;
}

/** Callbacks for metrics; times are performance.now() milliseconds on the HTTP thread. */
export interface GenerationObserver {
  /** `numPromptTokens`: the choice's prompt length (vLLM counts it at a request's first token). */
  onTokens?(choice: number, count: number, now: number, numPromptTokens: number): void;
  onFinish?(info: {
    reason: FinishReason;
    promptTokens: number;
    outputTokens: number;
    queueTimeMs: number | null;
    arrival: number;
    firstTokenAt: number | null;
    now: number;
  }): void;
}

export interface GenerationOptions {
  readonly observer?: GenerationObserver;
  /** Aborts when the client goes away (client_signal.ts). */
  readonly clientSignal?: AbortSignal;
  /** Aborts when the drain timeout expires: the generation fails with DSV_ERR_DRAINING. */
  readonly shutdownSignal?: AbortSignal;
}

function shutdownError(): EngineError {
  return new EngineError('DSV_ERR_DRAINING', 'the server shut down before this request finished (drain timeout); retry on another replica');
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

interface Choice {
  readonly index: number;
  readonly promptIndex: number;
  readonly promptTokens: number;
  readonly engineId: string;
  readonly detok: ReturnType<TextTokenizer['createDetokenizer']> | null;
  readonly stop: StopStringMatcher | null;
  stopped: boolean;
  done: boolean;
  firstTokenAt: number | null;
}

export class Generation {
  readonly id = randomUUID().replaceAll('-', '');
  readonly arrival = performance.now();
  readonly usage: Usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
  // Ends after the last choice's final event; unbounded (see AsyncQueue): the consumer applies
  // backpressure by pausing, and the stream write timeout bounds how long it may pause.
  private readonly queue = new AsyncQueue<ChoiceEvent>();
  private readonly choices: Choice[] = [];
  private numOpen = 0;
  private aborted = false;
  /** Removes the signal listeners (the shutdown signal outlives every generation). */
  private unwatch: () => void = () => {};
  /** Why the generation did not complete, as the error its client gets (the first cause wins). */
  failure: EngineError | null = null;

  private constructor(
    private readonly engine: EngineClient,
    private readonly tokenizer: TextTokenizer | null,
    private readonly input: GenerationInput,
    private readonly observer: GenerationObserver,
  ) {}

  /**
   * Queues every choice; if the engine refuses one (queue full, too long), aborts the rest and
   * throws. The signals are watched from before the first choice is sent: a client gone (or a
   * drain expired) while the engine is busy admitting still aborts every choice.
   */
  static async start(engine: EngineClient, tokenizer: TextTokenizer | null, input: GenerationInput, options: GenerationOptions = {}): Promise<Generation> {
    const g = new Generation(engine, tokenizer, input, options.observer ?? {});
    g.watch(options);
    const streams = g.addChoices();
    if (options.clientSignal?.aborted) g.abort();
    if (options.shutdownSignal?.aborted) g.fail(shutdownError());
    const settled = await Promise.allSettled(streams);
    const refusal = settled.find((s) => s.status === 'rejected');
    if (refusal) {
      engine.abort(g.choices.map((c) => c.engineId));
      g.unwatch();
      throw (refusal as PromiseRejectedResult).reason;
    }
    // streams was built from g.choices, one per choice, so settled[i] belongs to g.choices[i].
    settled.forEach((s, i) => void g.consume(g.choices[i]!, (s as PromiseFulfilledResult<AsyncIterable<RequestOutputDelta>>).value));
    return g;
  }

  private watch(options: GenerationOptions): void {
    const onClientGone = () => this.abort();
    const onShutdown = () => this.fail(shutdownError());
    options.clientSignal?.addEventListener('abort', onClientGone, { once: true });
    options.shutdownSignal?.addEventListener('abort', onShutdown, { once: true });
    this.unwatch = () => {
      options.clientSignal?.removeEventListener('abort', onClientGone);
      options.shutdownSignal?.removeEventListener('abort', onShutdown);
    };
  }

  /** Sends one engine request per prompt and sample; resolves to their output streams. */
  private addChoices(): Promise<AsyncIterable<RequestOutputDelta>>[] {
    const { prompts, params } = this.input;
    const streams: Promise<AsyncIterable<RequestOutputDelta>>[] = [];
    prompts.forEach((prompt, p) => {
      this.usage.promptTokens += prompt.length;
      for (let i = 0; i < params.n; i++) {
        const choice = this.addChoice(p * params.n + i, p, prompt);
        const seed = params.seed === null ? null : childSeed(params.seed, i);
        streams.push(
          this.engine.addRequest({
            requestId: choice.engineId,
            promptTokenIds: prompt,
            params: { ...params, seed },
            cacheSalt: this.input.cacheSalt,
            groupId: params.n > 1 ? `${this.id}-${p}` : undefined,
            ...(this.input.structuredOutput ? { structuredOutput: this.input.structuredOutput } : {}),
          }),
        );
      }
    });
    return streams;
  }

  private addChoice(index: number, promptIndex: number, prompt: readonly number[]): Choice {
    const t = this.tokenizer;
    const choice: Choice = {
      index,
      promptIndex,
      promptTokens: prompt.length,
      engineId: `${this.id}-${index}`,
      detok: t ? t.createDetokenizer(prompt, this.input.skipSpecialTokens) : null,
      stop: this.input.stop.length > 0 ? new StopStringMatcher([...this.input.stop], this.input.includeStopStr) : null,
      stopped: false,
      done: false,
      firstTokenAt: null,
    };
    this.choices.push(choice);
    this.numOpen++;
    return choice;
  }

  private async consume(choice: Choice, stream: AsyncIterable<RequestOutputDelta>): Promise<void> {
    let last: RequestOutputDelta | null = null;
    for await (const delta of stream) {
      last = delta;
      if (!choice.stopped) this.onDelta(choice, delta);
    }
    if (!choice.done) this.finishChoice(choice, last?.finishReason ?? 'error', last?.stopReason ?? null, last);
  }

  private onDelta(choice: Choice, delta: RequestOutputDelta): void {
    const now = performance.now();
    const n = delta.newTokenIds.length;
    if (n > 0) {
      choice.firstTokenAt ??= now;
      this.observer.onTokens?.(choice.index, n, now, delta.numPromptTokens);
    }
    if (n <= 1 || !choice.stop) return this.onTokenDelta(choice, delta);
    // Speculative decoding delivers several tokens per step: stop strings are matched token by token, so
    // text, tokens, logprobs and usage end at the token they would end at one token per step.
    for (let i = 0; i < n && !choice.stopped; i++) {
      const lastOne = i === n - 1;
      this.onTokenDelta(choice, {
        ...delta,
        newTokenIds: [delta.newTokenIds[i]!],
        logprobs: delta.logprobs && delta.logprobs.slice(i, i + 1),
        promptLogprobs: i === 0 ? delta.promptLogprobs : null,
        finishReason: lastOne ? delta.finishReason : null,
        stopReason: lastOne ? delta.stopReason : null,
        numOutputTokens: delta.numOutputTokens - (n - 1 - i),
      });
    }
  }

  private onTokenDelta(choice: Choice, delta: RequestOutputDelta): void {
    let text = choice.detok ? choice.detok.push(delta.newTokenIds) : '';
    let stopString: string | null = null;
    if (choice.stop) {
      const r = choice.stop.push(text);
      text = r.text;
      if (r.stopped) {
        stopString = r.stop;
        choice.stopped = true;
        this.engine.stop([choice.engineId]);
      }
    }
    if (delta.finishReason !== null && !choice.stopped) {
      const tail = choice.detok ? choice.detok.flush() : '';
      text += choice.stop ? choice.stop.push(tail).text + choice.stop.flush() : tail;
    }
    const finishReason = choice.stopped ? 'stop' : delta.finishReason;
    this.emit({
      index: choice.index,
      promptIndex: choice.promptIndex,
      text,
      tokenIds: delta.newTokenIds,
      logprobs: delta.logprobs,
      promptLogprobs: delta.promptLogprobs,
      finishReason,
      stopReason: stopString ?? delta.stopReason,
    });
    if (finishReason !== null) this.finishChoice(choice, finishReason, null, delta, true);
  }

  private finishChoice(choice: Choice, reason: FinishReason, stopReason: number | string | null, last: RequestOutputDelta | null, emitted = false): void {
    if (choice.done) return;
    choice.done = true;
    this.numOpen--;
    if (reason === 'error') this.failure ??= new EngineError('DSV_ERR_INTERNAL', `generation failed: ${last?.errorMessage ?? 'the engine failed'}`);
    this.usage.completionTokens += last?.numOutputTokens ?? 0;
    if (choice.index % this.input.params.n === 0) this.usage.cachedTokens += last?.numCachedTokens ?? 0;
    if (!emitted)
      this.emit({
        index: choice.index,
        promptIndex: choice.promptIndex,
        text: '',
        tokenIds: [],
        logprobs: null,
        promptLogprobs: null,
        finishReason: reason,
        stopReason,
      });
    this.observer.onFinish?.({
      reason,
      promptTokens: choice.promptTokens,
      outputTokens: last?.numOutputTokens ?? 0,
      queueTimeMs: last?.queueTimeMs ?? null,
      arrival: this.arrival,
      firstTokenAt: choice.firstTokenAt,
      now: performance.now(),
    });
    if (this.numOpen === 0) {
      this.unwatch();
      this.queue.end();
    }
  }

  private emit(e: ChoiceEvent): void {
    this.queue.push(e);
  }

  /** Choice events in arrival order; ends when every choice has finished. Iterate once. */
  events(): AsyncIterableIterator<ChoiceEvent, undefined> {
    return this.queue;
  }

  /** Aborts every unfinished choice (their blocks are freed at once); e.g. the client went away. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.engine.abort(this.choices.filter((c) => !c.done).map((c) => c.engineId));
  }

  /** Aborts, and the client gets `error` instead of the choices' finish reasons. */
  fail(error: EngineError): void {
    this.failure ??= error;
    this.abort();
  }

  /** The prompt length of choice `index` (its prompt's, shared by the n samples). */
  promptTokensOf(index: number): number {
    const prompt = this.input.prompts[Math.floor(index / this.input.params.n)];
    if (prompt === undefined) throw new Error(`internal: no choice ${index} (${this.choices.length} choices)`);
    return prompt.length;
  }

  get numChoices(): number {
    return this.choices.length;
  }
}

/** Renders a token for logprobs: its text, or vLLM's "token_id:N" when asked (or without a tokenizer). */
export function tokenLabel(tokenizer: TextTokenizer | null, tokenId: number, asIds: boolean): string {
  return asIds || !tokenizer ? `token_id:${tokenId}` : tokenizer.tokenText(tokenId);
}

export function requireTokenizer(tokenizer: TextTokenizer | null, what: string): TextTokenizer {
  if (!tokenizer)
    throw new EngineError(
      'DSV_ERR_NO_TOKENIZER',
      `this model has no tokenizer (no tokenizer.json in its directory): ${what} is not available; send token ids instead`,
    );
  return tokenizer;
}
