// Engine worker entry: loads the model, then loops schedule -> forward -> update while there is
// work, taking messages only between steps. ONNX Runtime computes on this thread, never on the
// HTTP thread (session.run is synchronous under its promise: DESIGN.md §1).
import { setImmediate as nextTick } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { AsyncQueue } from '../../common/async_queue.ts';
import { describeKvCacheDtype } from '../kv_cache_dtype_auto.ts';
import { describePlan } from '../memory_plan.ts';
import { EngineError } from '../../common/errors.ts';
import { EngineCore } from '../engine_core.ts';
import { RequestStatus } from '../request.ts';
import { assertSamplingParams } from '../sampling/sampling_params.ts';
import type { EngineWorkerData, FromWorker, SerializedError, ToWorker } from './messages.ts';

const port = parentPort!;
const data = workerData as EngineWorkerData;
// Messages arrive between steps (the step loop yields to the event loop after each one); bounded
// by the HTTP side's admission limits, not here.
const inbox = new AsyncQueue<ToWorker>();

function post(message: FromWorker): void {
  port.postMessage(message);
}

function serialize(err: unknown): SerializedError {
  if (err instanceof EngineError) return { code: err.code, message: err.message, param: err.param };
  return { code: 'DSV_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

port.on('message', (m: ToWorker) => inbox.push(m));

/** Applies the buffered messages; returns false on shutdown. */
async function drainInbox(core: EngineCore): Promise<boolean> {
  for (let m = inbox.poll(); m; m = inbox.poll()) {
    if (!(await apply(core, m))) return false;
  }
  return true;
}

/** Applies one message; returns false on shutdown. An add waits for its grammar to compile. */
async function apply(core: EngineCore, m: ToWorker): Promise<boolean> {
  if (m.type === 'shutdown') return false;
  if (m.type === 'add') {
    try {
      assertSamplingParams(m.request.params, { vocabSize: core.runner.loaded.config.vocabSize }); // validated at the edge
      await core.addRequestAsync(m.request);
      post({ type: 'added', requestId: m.request.requestId });
    } catch (err) {
      post({ type: 'rejected', requestId: m.request.requestId, error: serialize(err) });
    }
  } else {
    const status = m.reason === 'stop' ? RequestStatus.FINISHED_STOPPED : RequestStatus.FINISHED_ABORTED;
    const outputs = core.finishRequests(m.requestIds, status);
    if (outputs.length > 0) post({ type: 'outputs', outputs, stats: core.idleStats() });
  }
  return true;
}

/** A step that throws outside the model (a bug) fails the requests in flight, not the engine. */
async function safeStep(core: EngineCore): Promise<void> {
  try {
    const { outputs, stats } = await core.step();
    if (data.checkIntegrity) core.checkIntegrity();
    post({ type: 'outputs', outputs, stats });
  } catch (err) {
    const ids = core.scheduler
      .allRequests()
      .filter((r) => r.status === RequestStatus.RUNNING)
      .map((r) => r.requestId);
    const outputs = core.finishRequests(ids, RequestStatus.FINISHED_ERROR, serialize(err).message);
    post({ type: 'outputs', outputs, stats: null });
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  let core: EngineCore;
  try {
    core = await EngineCore.create(data.modelDir, data.engine);
    const { loaded, storage } = core.runner;
    const c = loaded.config;
    post({
      type: 'ready',
      info: {
        modelDir: data.modelDir,
        modelType: c.modelType,
        torchDtype: c.torchDtype,
        numParameters: loaded.numParameters,
        vocabSize: c.vocabSize,
        maxModelLen: core.scheduler.config.maxModelLen,
        eosTokenIds: c.eosTokenIds,
        bosTokenId: c.bosTokenId,
        blockSize: storage.blockSize,
        numKvBlocks: storage.numBlocks,
        kvCacheBytesPerToken: storage.bytesPerToken,
        kvCacheDtype: storage.dtype,
        kvCacheDtypeSource: describeKvCacheDtype(loaded.kvCacheDtype),
        usesIndexer: core.runner.model.indexer !== null,
        loadSeconds: (performance.now() - t0) / 1000,
        quantization: loaded.quantization,
        memoryPlan: describePlan(loaded.memoryPlan),
        loadWarnings: loaded.loadWarnings,
        nativeKernels: core.runner.model.nativeStatus,
      },
    });
  } catch (err) {
    post({ type: 'fatal', error: serialize(err) });
    return;
  }
  for (;;) {
    if (!(await drainInbox(core))) break;
    if (!core.hasWork()) {
      const next = await inbox.next(); // idle: sleep until a message arrives
      if (next.done || !(await apply(core, next.value))) break;
      continue;
    }
    await safeStep(core);
    await nextTick(); // let queued messages (adds, aborts) arrive before the next step
  }
  const aborted = core.finishRequests(core.scheduler.allRequests().map((r) => r.requestId));
  if (aborted.length > 0) post({ type: 'outputs', outputs: aborted, stats: null });
  await core.dispose();
  post({ type: 'closed' });
  port.close(); // nothing else keeps the worker alive: it exits
}

main().catch((err: unknown) => post({ type: 'fatal', error: serialize(err) }));
