// The HTTP thread's handle on the engine: starts the worker, turns requests into async streams of
// output deltas, forwards aborts, and surfaces step stats for /metrics. Never computes.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { AsyncQueue } from '../common/async_queue.ts';
import { EngineError } from '../common/errors.ts';
import type { StepStats } from './step_stats.ts';
import type { RequestInit, RequestOutputDelta } from './request.ts';
import type { EngineWorkerData, FromWorker, ModelInfo, SerializedError, ToWorker } from './worker/messages.ts';

// The one checkpoint fact the HTTP side needs before starting the worker (max-model-len, size checks).
export { readModelConfig } from './checkpoint/config.ts';
export type { ModelConfig } from './checkpoint/types.ts';

// From the compiled build (dist/) the worker is plain JavaScript. From TypeScript sources (tests,
// dev) Node 20 does not apply the parent's --import tsx hooks to a worker's entry module, so the
// worker first registers tsx itself, then imports its entry.
const RUNNING_TS = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(`./worker/engine_worker.${RUNNING_TS ? 'ts' : 'js'}`, import.meta.url);

function spawnWorker(workerData: EngineWorkerData): Worker {
  const env = workerData.env;
  if (!RUNNING_TS) return new Worker(WORKER_URL, { workerData, env });
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData, env });
}

function toError(e: SerializedError): EngineError {
  return new EngineError(e.code, e.message, e.param ? { param: e.param } : undefined);
}

export interface EngineClientEvents {
  stats: [StepStats];
  error: [Error];
}

/** Output deltas of one request, in order; it ends after the delta with a finishReason. */
type RequestStream = AsyncQueue<RequestOutputDelta>;

export class EngineClient extends EventEmitter<EngineClientEvents> {
  private readonly streams = new Map<string, RequestStream>();
  private readonly pendingAdds = new Map<string, { resolve: (s: RequestStream) => void; reject: (e: Error) => void; stream: RequestStream }>();
  private closed: Promise<void>;
  private dead: Error | null = null;
  private stopping = false;

  private constructor(
    private readonly worker: Worker,
    readonly info: ModelInfo,
  ) {
    super();
    this.closed = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new EngineError('DSV_ERR_INTERNAL', `the engine worker exited (code ${code})`)));
  }

  /** Starts the worker and resolves once the model is loaded (rejects with the load error). */
  static start(data: EngineWorkerData): Promise<EngineClient> {
    const worker = spawnWorker(data);
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === 'ready') {
          worker.off('message', onMessage);
          resolve(new EngineClient(worker, m.info));
        } else if (m.type === 'fatal') {
          void worker.terminate();
          reject(toError(m.error));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new EngineError('DSV_ERR_INTERNAL', `the engine worker exited during start-up (code ${code})`)));
    });
  }

  /** False once the worker has died (the server then reports unhealthy). */
  get isAlive(): boolean {
    return this.dead === null;
  }

  get numInFlight(): number {
    return this.streams.size;
  }

  /** Queues a request; rejects with EngineError (invalid, too long, queue full) when the engine refuses it. */
  addRequest(request: RequestInit): Promise<AsyncIterable<RequestOutputDelta>> {
    if (this.dead) return Promise.reject(this.dead);
    const stream: RequestStream = new AsyncQueue();
    return new Promise((resolve, reject) => {
      this.pendingAdds.set(request.requestId, { resolve, reject, stream });
      this.streams.set(request.requestId, stream);
      this.send({ type: 'add', request });
    });
  }

  /** Aborts (frees the blocks of) requests, e.g. on client disconnect. Unknown ids are ignored. */
  abort(requestIds: readonly string[]): void {
    if (!this.dead && requestIds.length > 0) this.send({ type: 'finish', requestIds, reason: 'abort' });
  }

  /** Ends requests with finish reason 'stop' (the server matched a stop string). */
  stop(requestIds: readonly string[]): void {
    if (!this.dead && requestIds.length > 0) this.send({ type: 'finish', requestIds, reason: 'stop' });
  }

  /** Aborts whatever is still in flight, stops the worker and waits for it to exit. */
  async shutdown(): Promise<void> {
    if (!this.dead && !this.stopping) this.send({ type: 'shutdown' });
    this.stopping = true;
    await this.closed;
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'added': {
        const p = this.pendingAdds.get(m.requestId);
        this.pendingAdds.delete(m.requestId);
        p?.resolve(p.stream);
        break;
      }
      case 'rejected': {
        const p = this.pendingAdds.get(m.requestId);
        this.pendingAdds.delete(m.requestId);
        this.streams.delete(m.requestId);
        p?.reject(toError(m.error));
        break;
      }
      case 'outputs':
        for (const delta of m.outputs) {
          const stream = this.streams.get(delta.requestId);
          stream?.push(delta);
          if (delta.finishReason !== null) {
            stream?.end();
            this.streams.delete(delta.requestId);
          }
        }
        if (m.stats) this.emit('stats', m.stats);
        break;
      case 'fatal':
        this.fail(toError(m.error));
        break;
      default:
        break;
    }
  }

  /** The worker is gone: every open request ends with an error so no client hangs. */
  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = this.stopping ? new EngineError('DSV_ERR_INTERNAL', 'the engine has shut down') : err;
    for (const p of this.pendingAdds.values()) p.reject(err);
    this.pendingAdds.clear();
    for (const [requestId, stream] of this.streams) {
      stream.push({
        requestId,
        newTokenIds: [],
        logprobs: null,
        promptLogprobs: null,
        finishReason: 'error',
        stopReason: null,
        numPromptTokens: 0,
        numCachedTokens: 0,
        numOutputTokens: 0,
        queueTimeMs: null,
        errorMessage: err.message,
      });
      stream.end();
    }
    this.streams.clear();
    if (!this.stopping && this.listenerCount('error') > 0) this.emit('error', err);
  }
}
