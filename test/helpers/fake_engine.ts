// A scripted stand-in for EngineClient, for HTTP tests of what the server does with engine
// output it cannot easily provoke from a real model (an engine error mid-stream, exact deltas).
import { EventEmitter } from 'node:events';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { AsyncQueue } from '../../src/common/async_queue.ts';
import type { EngineClient, EngineClientEvents } from '../../src/engine/engine_client.ts';
import type { FinishReason, RequestInit, RequestOutputDelta } from '../../src/engine/request.ts';
import type { ModelInfo } from '../../src/engine/worker/messages.ts';
import { buildApp } from '../../src/server/app.ts';
import type { ServerContext } from '../../src/server/context.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import type { TextTokenizer } from '../../src/server/tokenizer/tokenizer.ts';

/** Called once per added request: push its deltas with `engine.emitDelta`. */
export type Script = (engine: FakeEngine, request: RequestInit) => void;

export class FakeEngine extends EventEmitter<EngineClientEvents> {
  readonly info: ModelInfo = {
    modelDir: '/fake',
    modelType: 'deepseek_v32',
    torchDtype: 'float32',
    numParameters: 1,
    vocabSize: 512,
    maxModelLen: 512,
    eosTokenIds: [1],
    bosTokenId: 0,
    blockSize: 16,
    numKvBlocks: 64,
    kvCacheDtype: 'float32',
    kvCacheDtypeSource: 'auto -> float32 (the fastest on the CPU)',
    kvCacheBytesPerToken: 1,
    usesIndexer: true,
    loadSeconds: 0,
    quantization: 'none',
    memoryPlan: 'fake',
    loadWarnings: [],
    nativeKernels: 'off (fake engine)',
  };
  readonly isAlive = true;
  readonly aborted: string[] = [];
  private readonly streams = new Map<string, AsyncQueue<RequestOutputDelta>>();
  private readonly numOutput = new Map<string, number>();

  constructor(private readonly script: Script) {
    super();
  }

  get numInFlight(): number {
    return this.streams.size;
  }

  addRequest(request: RequestInit): Promise<AsyncIterable<RequestOutputDelta>> {
    const stream = new AsyncQueue<RequestOutputDelta>();
    this.streams.set(request.requestId, stream);
    setImmediate(() => this.script(this, request));
    return Promise.resolve(stream);
  }

  abort(requestIds: readonly string[]): void {
    this.aborted.push(...requestIds);
    for (const id of requestIds) this.emitDelta(id, [], 'abort');
  }

  stop(requestIds: readonly string[]): void {
    for (const id of requestIds) this.emitDelta(id, [], 'stop');
  }

  emitDelta(requestId: string, newTokenIds: number[], finishReason: FinishReason | null = null, errorMessage: string | null = null): void {
    const stream = this.streams.get(requestId);
    if (!stream) return;
    // Cumulative, as the engine reports it.
    const numOutputTokens = (this.numOutput.get(requestId) ?? 0) + newTokenIds.length;
    this.numOutput.set(requestId, numOutputTokens);
    stream.push({
      requestId,
      newTokenIds,
      logprobs: null,
      promptLogprobs: null,
      finishReason,
      stopReason: null,
      numPromptTokens: 0,
      numCachedTokens: 0,
      numOutputTokens,
      queueTimeMs: 0,
      errorMessage,
    });
    if (finishReason !== null) {
      stream.end();
      this.streams.delete(requestId);
      this.numOutput.delete(requestId);
    }
  }
}

/** buildApp over a FakeEngine (no tokenizer: prompts are token ids); `drain` expires the drain timeout. */
export function fakeApp(script: Script, options: { tokenizer?: TextTokenizer } = {}): { app: FastifyInstance; engine: FakeEngine; drain: AbortController } {
  const engine = new FakeEngine(script);
  const drain = new AbortController();
  const ctx: ServerContext = {
    engine: engine as unknown as EngineClient,
    tokenizer: options.tokenizer ?? null,
    servedModelNames: ['fake'],
    maxModelLen: 512,
    maxLogprobs: 20,
    streamWriteTimeoutMs: 1000,
    limits: { maxQueuedRequests: 256, maxQueuedTokens: 1 << 20, configuredMaxModelLen: 512, kvCapacityTokens: 1 << 20 },
    metrics: new ServerMetrics('fake'),
    state: { draining: false },
    drainExpired: drain.signal,
  };
  return { app: buildApp(ctx, { bodyLimit: 1 << 20, apiKeys: [], logger: pino({ level: 'silent' }) }), engine, drain };
}
