// Sizes checked before anything is allocated or loaded: every option that sets a size is compared
// with what this machine can hold, and a refusal names the flag and both numbers (instead of
// "Invalid typed array length" from deep inside the engine, or a swap storm later).
import os from 'node:os';
import { ConfigError, formatByteSize, type ServerConfig } from '../config.ts';
import { formatGiB, machineMemory, type MachineMemory } from '../common/machine_memory.ts';

/** ONNX Runtime intra-op threads beyond this many per CPU only add contention. */
export const MAX_THREADS_PER_CPU = 4;
/** Slot ids (blockId * blockSize + offset) travel as int32. */
const MAX_KV_SLOTS = 2 ** 31 - 1;
/** The longest typed array Node 20 allocates (elements): one layer's latent cache must fit in one. */
const MAX_TYPED_ARRAY_LENGTH = 2 ** 32 - 1;
const BYTES_PER_FLOAT32 = 4;

/** What the checks read of config.json (the checkpoint's ModelConfig has these fields). */
export interface KvCacheShape {
  readonly numHiddenLayers: number;
  readonly kvLoraRank: number;
  readonly qkRopeHeadDim: number;
  readonly indexer: { readonly headDim: number } | null;
}

export interface Machine {
  readonly memory: MachineMemory;
  readonly cpus: number;
}

export function thisMachine(): Machine {
  return { memory: machineMemory(), cpus: os.availableParallelism() };
}

/** Bytes of one KV block over all layers (latent + indexer key caches, float32), as PagedKVStorage lays them out. */
export function kvBytesPerBlock(model: KvCacheShape, blockSize: number, denseAttention: boolean): number {
  const indexerDim = model.indexer && !denseAttention ? model.indexer.headDim : 0;
  return blockSize * model.numHiddenLayers * (model.kvLoraRank + model.qkRopeHeadDim + indexerDim) * BYTES_PER_FLOAT32;
}

/** Throws ConfigError naming the flag when --threads, --num-kv-blocks or --kv-cache-memory cannot be honoured here. */
export function checkStartupSizes(config: ServerConfig, model: KvCacheShape, machine: Machine = thisMachine()): void {
  const maxThreads = MAX_THREADS_PER_CPU * machine.cpus;
  if (config.threads > maxThreads) {
    throw new ConfigError(`--threads ${config.threads}: at most ${maxThreads} (${MAX_THREADS_PER_CPU} per CPU; this process may use ${machine.cpus} CPUs)`);
  }
  checkKvCache(config, model, machine.memory);
}

function checkKvCache(config: ServerConfig, model: KvCacheShape, memory: MachineMemory): void {
  const bytesPerBlock = kvBytesPerBlock(model, config.blockSize, config.denseAttention);
  const available = `this machine's memory for the process, ${formatGiB(memory.bytes)} (${memory.source})`;
  let flag: string;
  let numBlocks: number;
  if (config.numKvBlocks !== null) {
    flag = `--num-kv-blocks ${config.numKvBlocks}`;
    numBlocks = config.numKvBlocks;
    const bytes = numBlocks * bytesPerBlock;
    if (bytes > memory.bytes) {
      throw new ConfigError(
        `${flag}: needs ${formatGiB(bytes)} of KV cache (${bytesPerBlock} bytes per block of ${config.blockSize} tokens), more than ${available}`,
      );
    }
  } else {
    flag = `--kv-cache-memory ${formatByteSize(config.kvCacheMemory)}`;
    if (config.kvCacheMemory > memory.bytes) throw new ConfigError(`${flag}: more than ${available}`);
    numBlocks = Math.floor(config.kvCacheMemory / bytesPerBlock);
    if (numBlocks < 1) throw new ConfigError(`${flag}: holds no KV block of ${bytesPerBlock} bytes (${config.blockSize} tokens)`);
  }
  const numSlots = numBlocks * config.blockSize;
  const maxSlots = Math.min(MAX_KV_SLOTS, Math.floor(MAX_TYPED_ARRAY_LENGTH / (model.kvLoraRank + model.qkRopeHeadDim)));
  if (numSlots > maxSlots) {
    throw new ConfigError(
      `${flag}: ${numSlots} KV tokens exceed the ${maxSlots} one engine addresses (one layer's cache is one array of at most ${MAX_TYPED_ARRAY_LENGTH} floats)`,
    );
  }
}
