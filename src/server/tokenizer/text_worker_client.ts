// The HTTP thread's handle on the text worker: a FIFO of jobs, one in the worker at a time. A
// chat template that has not rendered within its deadline (or that exhausts the worker's heap)
// fails its request with a 400, and the worker is replaced; the jobs queued behind it go to the
// new worker.
import { Worker } from 'node:worker_threads';
import { EngineError } from '../../common/errors.ts';
import type { ChatMessage, ChatTemplateOptions } from './tokenizer.ts';
import type { TextJob, TextJobReply, TextWorkerData } from './text_worker.ts';

/** How long one chat template may take to render. Rendering a real template takes milliseconds. */
export const CHAT_TEMPLATE_TIMEOUT_MS = 5000;
/** Heap of the text worker: the tokenizer plus the largest rendered prompt, with room to spare. */
const MAX_HEAP_MB = 1024;

const RUNNING_TS = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(`./text_worker.${RUNNING_TS ? 'ts' : 'js'}`, import.meta.url);

// From TypeScript sources (tests, dev) Node 20 does not apply --import tsx to a worker's entry,
// so the worker registers tsx itself first (as the engine worker does).
function spawn(data: TextWorkerData): Worker {
  const options = { workerData: data, resourceLimits: { maxOldGenerationSizeMb: MAX_HEAP_MB } };
  if (!RUNNING_TS) return new Worker(WORKER_URL, options);
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(bootstrap, { ...options, eval: true });
}

type JobInit =
  | { readonly type: 'encode'; readonly text: string; readonly addSpecialTokens: boolean }
  | { readonly type: 'chat'; readonly messages: readonly ChatMessage[]; readonly options: ChatTemplateOptions };

interface PendingJob {
  readonly job: TextJob;
  readonly resolve: (ids: number[]) => void;
  readonly reject: (err: Error) => void;
}

export class TextWorkerClient {
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private readonly queue: PendingJob[] = [];
  private current: PendingJob | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly data: TextWorkerData,
    private readonly renderTimeoutMs = CHAT_TEMPLATE_TIMEOUT_MS,
  ) {}

  /** Starts the worker now (it loads the tokenizer), so the first request does not wait for it. */
  async warmUp(): Promise<void> {
    await this.start();
  }

  encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    return this.submit({ type: 'encode', text, addSpecialTokens });
  }

  /** Renders the chat template and encodes the result (without adding special tokens: the template has them). */
  encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions): Promise<number[]> {
    return this.submit({ type: 'chat', messages, options });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new EngineError('DSV_ERR_DRAINING', 'the server is shutting down'));
    await this.worker?.terminate();
    this.worker = null;
  }

  private submit(init: JobInit): Promise<number[]> {
    if (this.closed) return Promise.reject(new EngineError('DSV_ERR_DRAINING', 'the server is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...init, id: this.nextId++ }, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.current !== null || this.queue.length === 0 || this.closed) return;
    this.current = this.queue.shift()!;
    const job = this.current.job;
    void this.start().then(
      (worker) => {
        if (this.current?.job !== job) return;
        if (job.type === 'chat')
          this.deadline = setTimeout(() => this.overrun(`the chat template did not render within ${this.renderTimeoutMs / 1000} s`), this.renderTimeoutMs);
        worker.postMessage(job);
      },
      (err: Error) => this.finish(job.id, err),
    );
  }

  /** The live worker, spawned on first use or after a replacement. */
  private start(): Promise<Worker> {
    if (this.worker && this.ready) return this.ready.then(() => this.worker!);
    const worker = spawn(this.data);
    worker.unref(); // never what keeps the process alive
    this.worker = worker;
    this.ready = new Promise((resolve, reject) => {
      worker.on('message', (m: TextJobReply) => {
        if (m.type === 'ready') resolve();
        else this.onReply(m);
      });
      worker.once('error', (err) => (this.worker === worker ? this.lost(err) : undefined));
      worker.once('exit', (code) => {
        reject(new EngineError('DSV_ERR_INTERNAL', `the text worker exited during start-up (code ${code})`));
        if (this.worker === worker) this.lost(new Error(`the text worker exited (code ${code})`));
      });
    });
    return this.ready.then(() => worker);
  }

  private onReply(m: Exclude<TextJobReply, { type: 'ready' }>): void {
    if (this.current?.job.id !== m.id) return;
    if (m.type === 'rendered') this.clearDeadline();
    else if (m.type === 'ids') this.finish(m.id, null, Array.from(m.ids));
    else this.finish(m.id, new EngineError(m.code, m.message, m.param === null ? undefined : { param: m.param }));
  }

  private finish(id: number, err: Error | null, ids: number[] = []): void {
    const job = this.current;
    if (job === null || job.job.id !== id) return;
    this.clearDeadline();
    this.current = null;
    if (err) job.reject(err);
    else job.resolve(ids);
    this.pump();
  }

  /** The current job overran: fail it, replace the worker, go on with the queue. */
  private overrun(message: string): void {
    const job = this.current;
    const worker = this.worker;
    this.worker = null;
    this.ready = null;
    void worker?.terminate();
    if (job) this.finish(job.job.id, new EngineError('DSV_ERR_INVALID_REQUEST', message, { param: 'messages' }));
  }

  /** The worker died under the current job (e.g. out of heap while rendering). */
  private lost(err: Error): void {
    const job = this.current;
    const what = job?.job.type === 'chat' ? 'the chat template failed to render' : 'tokenizing failed';
    const code = job?.job.type === 'chat' ? 'DSV_ERR_INVALID_REQUEST' : 'DSV_ERR_INTERNAL';
    this.worker = null;
    this.ready = null;
    if (job) this.finish(job.job.id, new EngineError(code, `${what}: ${err.message}`, job.job.type === 'chat' ? { param: 'messages' } : undefined));
  }

  private clearDeadline(): void {
    if (this.deadline !== null) clearTimeout(this.deadline);
    this.deadline = null;
  }
}
