// Weight groups loaded in worker threads, ahead of the consumer: while the main thread compiles layer l's
// graphs, up to `threads` workers read and quantise the next groups, so quantising (plain JS, ~100-170M
// weights/s per core on random weights) runs on every core and overlaps with ORT's session creation.
// Groups arrive in load order; at most `threads` are in flight or waiting, bounding the memory read ahead.
import { Worker } from 'node:worker_threads';
import { EngineError, type ErrorCode } from '../../common/errors.ts';
import type { EmbeddingTable, LinearWeight, QuantBits } from '../../common/quantized.ts';
import type { LayerWeights, ModelConfig, MtpWeights } from '../checkpoint/types.ts';
import type { FromGroupWorker, GroupWorkerData } from './group_worker.ts';
import { embeddingOf, headOf, layerOf, mtpOf, type HeadWeights, type LoadedTensor } from './group_tree.ts';
import { quantBits, type QuantizationMode } from './quant_mode.ts';

const RUNNING_TS = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(`./group_worker.${RUNNING_TS ? 'ts' : 'js'}`, import.meta.url);

function spawn(workerData: GroupWorkerData): Worker {
  if (!RUNNING_TS) return new Worker(WORKER_URL, { workerData });
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData });
}

type Group = Map<string, LoadedTensor>;

interface Waiter {
  resolve(g: Group): void;
  reject(e: Error): void;
}

/** A ModelWeightSource whose groups come from worker threads (see the file comment). */
export class GroupPool {
  private readonly queue: string[];
  private readonly idle: Worker[];
  private readonly workers: Worker[];
  private readonly ready = new Map<string, Group | Error>();
  private readonly waiters = new Map<string, Waiter>();
  private inFlight = 0;
  /** Warnings of the workers (the quantised-weights cache), each once. */
  readonly warnings = new Set<string>();

  /** MTP modules this pool loads: groupNames holds 'mtp.<i>' only when speculation asked for them. */
  readonly numMtpModules: number;

  constructor(
    readonly config: ModelConfig,
    readonly quantization: QuantizationMode,
    groupNames: readonly string[],
    workerData: GroupWorkerData,
    threads: number,
  ) {
    this.queue = [...groupNames];
    this.numMtpModules = groupNames.filter((g) => g.startsWith('mtp.')).length;
    this.workers = Array.from({ length: Math.max(1, threads) }, () => spawn(workerData));
    this.idle = [...this.workers];
    for (const w of this.workers) {
      w.on('message', (msg: FromGroupWorker) => this.arrived(w, msg));
      w.on('error', (err) => this.failAll(err));
    }
    this.pump();
  }

  get quantBits(): QuantBits | null {
    return quantBits(this.quantization);
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0 && this.inFlight + this.ready.size < this.workers.length) {
      this.idle.pop()!.postMessage({ name: this.queue.shift()! });
      this.inFlight++;
    }
  }

  private arrived(worker: Worker, msg: FromGroupWorker): void {
    this.inFlight--;
    this.idle.push(worker);
    const result = msg.type === 'group' ? new Map(msg.tensors) : new EngineError(msg.code as ErrorCode, msg.message);
    if (msg.type === 'group') for (const w of msg.warnings) this.warnings.add(w);
    const waiter = this.waiters.get(msg.name);
    if (waiter) {
      this.waiters.delete(msg.name);
      if (result instanceof Error) waiter.reject(result);
      else waiter.resolve(result);
    } else {
      this.ready.set(msg.name, result);
    }
    this.pump();
  }

  private failAll(err: Error): void {
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  /** The group `name` (requested in load order). */
  group(name: string): Promise<Group> {
    const done = this.ready.get(name);
    if (done !== undefined) {
      this.ready.delete(name);
      this.pump();
      return done instanceof Error ? Promise.reject(done) : Promise.resolve(done);
    }
    return new Promise((resolve, reject) => this.waiters.set(name, { resolve, reject }));
  }

  async embedding(): Promise<EmbeddingTable> {
    return embeddingOf(await this.group('embed'));
  }

  async layer(l: number): Promise<LayerWeights<LinearWeight>> {
    return layerOf(await this.group(`layer.${l}`), this.config, l);
  }

  async head(): Promise<HeadWeights> {
    return headOf(await this.group('head'));
  }

  async mtp(i: number): Promise<MtpWeights<LinearWeight>> {
    return mtpOf(await this.group(`mtp.${i}`), this.config, i);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
