// Plain-data messages between the HTTP thread (EngineClient) and the engine worker (EngineCore).
import type { ErrorCode } from '../../common/errors.ts';
import type { EngineCoreOptions } from '../engine_core.ts';
import type { StepStats } from '../step_stats.ts';
import type { RequestInit, RequestOutputDelta } from '../request.ts';
import type { KVCacheDtype } from '../../kvcache/kv_dtype.ts';

export interface EngineWorkerData {
  readonly modelDir: string;
  readonly engine: EngineCoreOptions;
  /** Run the block manager's integrity check after every step (tests). */
  readonly checkIntegrity?: boolean;
  /** Environment of the worker thread (defaults to the parent's). */
  readonly env?: NodeJS.ProcessEnv;
}

/** What the HTTP side needs to know about the loaded model. */
export interface ModelInfo {
  readonly modelDir: string;
  readonly modelType: string;
  readonly torchDtype: string;
  readonly numParameters: number;
  readonly vocabSize: number;
  readonly maxModelLen: number;
  readonly eosTokenIds: readonly number[];
  readonly bosTokenId: number | null;
  readonly blockSize: number;
  readonly numKvBlocks: number;
  readonly kvCacheBytesPerToken: number;
  readonly kvCacheDtype: KVCacheDtype;
  /** How kvCacheDtype was chosen, for the start-up log: "auto -> float32 (the fastest on the CPU)". */
  readonly kvCacheDtypeSource: string;
  readonly usesIndexer: boolean;
  readonly loadSeconds: number;
  /** --quantization of the weights. */
  readonly quantization: string;
  /** The memory plan the model was admitted with, one line (engine/memory_plan.ts describePlan). */
  readonly memoryPlan: string;
  /** Warnings while loading (the quantised-weights cache), for the start-up log. */
  readonly loadWarnings: readonly string[];
  /** --native-kernels: which layers decode in C, or why none do (DeepseekModel.nativeStatus). */
  readonly nativeKernels: string;
}

export interface SerializedError {
  readonly code: ErrorCode;
  readonly message: string;
  /** The request field at fault (OpenAI's error.param), when known. */
  readonly param?: string | null;
}

export type ToWorker =
  | { readonly type: 'add'; readonly request: RequestInit }
  | { readonly type: 'finish'; readonly requestIds: readonly string[]; readonly reason: 'abort' | 'stop' }
  | { readonly type: 'shutdown' };

export type FromWorker =
  | { readonly type: 'ready'; readonly info: ModelInfo }
  | { readonly type: 'fatal'; readonly error: SerializedError }
  | { readonly type: 'added'; readonly requestId: string }
  | { readonly type: 'rejected'; readonly requestId: string; readonly error: SerializedError }
  | { readonly type: 'outputs'; readonly outputs: readonly RequestOutputDelta[]; readonly stats: StepStats | null }
  | { readonly type: 'closed' };
