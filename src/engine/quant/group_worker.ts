// A weight-group loader thread (quant/group_pool.ts): reads, quantises and caches the groups it is sent,
// and hands each back with its buffers transferred (no copy).
import { parentPort, workerData } from 'node:worker_threads';
import { EngineError } from '../../common/errors.ts';
import type { QuantizationMode } from './quant_mode.ts';
import { WeightStream, type LoadedTensor } from './weight_stream.ts';

export interface GroupWorkerData {
  readonly dir: string;
  readonly quantization: QuantizationMode;
  readonly cacheDir: string | null;
}

export type ToGroupWorker = { readonly name: string };

export type FromGroupWorker =
  | { readonly type: 'group'; readonly name: string; readonly tensors: [string, LoadedTensor][]; readonly warnings: string[] }
  | { readonly type: 'error'; readonly name: string; readonly code: string; readonly message: string };

const port = parentPort!;
const data = workerData as GroupWorkerData;
const warnings: string[] = [];
const stream = WeightStream.open(data.dir, {
  quantization: data.quantization,
  cacheDir: data.cacheDir,
  log: { info: () => {}, warn: (m) => void warnings.push(m) },
});

/** Every distinct ArrayBuffer behind the group's typed arrays (a cached group shares one). */
function buffersOf(tensors: ReadonlyMap<string, LoadedTensor>): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  const add = (a: ArrayBufferView): void => void (a.buffer instanceof ArrayBuffer && out.add(a.buffer));
  for (const t of tensors.values()) {
    if ('packed' in t) [t.packed, t.scales].forEach(add);
    else if ('half' in t) add(t.half);
    else add(t.data);
  }
  return [...out];
}

port.on('message', (msg: ToGroupWorker) => {
  try {
    const tensors = stream.group(msg.name);
    const reply: FromGroupWorker = { type: 'group', name: msg.name, tensors: [...tensors], warnings: warnings.splice(0) };
    port.postMessage(reply, buffersOf(tensors));
  } catch (err) {
    const code = err instanceof EngineError ? err.code : 'DSV_ERR_INTERNAL';
    port.postMessage({ type: 'error', name: msg.name, code, message: (err as Error).message } satisfies FromGroupWorker);
  }
});
