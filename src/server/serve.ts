// Start-up and drain: config -> model check -> tokenizer -> engine worker -> app -> listen.
// Used by src/main.ts and by the tests that need a real socket.
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { ConfigError, engineWorkerEnv, glibcTunables, toEngineWorkerData, type ServerConfig } from '../config.ts';
import { EngineClient, readModelConfig } from '../engine/engine_client.ts';
import { hugePageWarning } from '../common/huge_pages.ts';
import { buildApp } from './app.ts';
import type { ServerContext } from './context.ts';
import { autoMaxConnections } from './connections.ts';
import { kvCapacityWarning, servableModelLen, type ServerLimits } from './limits.ts';
import { ServerMetrics } from './metrics.ts';
import { checkStartupSizes } from './startup_checks.ts';
import { BoundedTokenizer, promptCharBudget } from './tokenizer/bounded_tokenizer.ts';
import { TextWorkerClient } from './tokenizer/text_worker_client.ts';
import { loadTokenizer } from './tokenizer/tokenizer.ts';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly ctx: ServerContext;
  readonly address: string;
  /** SIGTERM semantics: readiness 503, refuse new work, finish in-flight (bounded), then close. */
  drainAndClose(): Promise<void>;
  /** Resolves with the error if the engine worker dies (the process should then exit non-zero). */
  readonly engineFailure: Promise<Error>;
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const t0 = performance.now();
  const logger = pino({ level: config.logLevel });
  const hugePages = hugePageWarning(glibcTunables());
  if (hugePages !== null) logger.warn(hugePages);
  const modelConfig = readModelConfig(config.model); // fails fast, naming config.json and the key
  const maxModelLen = config.maxModelLen ?? modelConfig.maxPositionEmbeddings;
  if (maxModelLen > modelConfig.maxPositionEmbeddings) {
    throw new ConfigError(`--max-model-len ${maxModelLen} exceeds the model's max_position_embeddings (${modelConfig.maxPositionEmbeddings})`);
  }
  checkStartupSizes(config, modelConfig); // before anything is allocated: names the flag
  const tokenizer = loadTokenizer(config.model);
  const engine = await EngineClient.start({ ...toEngineWorkerData(config, maxModelLen), env: engineWorkerEnv() });
  const drainExpired = new AbortController();
  const limits: ServerLimits = {
    maxQueuedRequests: config.maxQueuedRequests,
    maxQueuedTokens: config.maxQueuedTokens,
    configuredMaxModelLen: maxModelLen,
    kvCapacityTokens: engine.info.numKvBlocks * engine.info.blockSize,
  };
  const textWorker =
    tokenizer && new TextWorkerClient({ modelDir: config.model, maxChars: promptCharBudget(servableModelLen(limits), tokenizer.maxTokenChars) });
  await textWorker?.warmUp();
  const kvWarning = kvCapacityWarning(maxModelLen, limits.kvCapacityTokens);
  if (kvWarning !== null) logger.warn({ max_model_len: maxModelLen, kv_tokens: limits.kvCapacityTokens }, kvWarning);
  const metrics = new ServerMetrics(config.servedModelName[0], config.speculativeConfig?.numSpeculativeTokens ?? 0);
  metrics.setCacheConfig({ cacheDtype: engine.info.kvCacheDtype, blockSize: engine.info.blockSize, numBlocks: engine.info.numKvBlocks });
  const ctx: ServerContext = {
    engine,
    tokenizer: tokenizer && new BoundedTokenizer(tokenizer, servableModelLen(limits), textWorker),
    servedModelNames: config.servedModelName,
    maxModelLen: servableModelLen(limits),
    maxLogprobs: config.maxLogprobs,
    streamWriteTimeoutMs: config.streamWriteTimeout * 1000,
    limits,
    metrics,
    state: { draining: false },
    drainExpired: drainExpired.signal,
  };
  const engineFailure = new Promise<Error>((resolve) =>
    engine.on('error', (err) => {
      logger.fatal({ err }, 'engine worker failed');
      resolve(err);
    }),
  );
  const maxConnections = config.maxConnections ?? autoMaxConnections();
  const app = buildApp(ctx, { bodyLimit: config.maxRequestBody, apiKeys: config.apiKey ?? [], logger, requestTimeout: config.requestTimeout, maxConnections });
  let address: string;
  try {
    address = await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    // The engine and text workers would keep the process alive: stop them, then report.
    await textWorker?.close();
    await engine.shutdown();
    throw listenError(config, err);
  }
  const info = engine.info;
  for (const warning of info.loadWarnings) logger.warn(warning);
  logger.info({ kv_cache_dtype: info.kvCacheDtype, requested: config.kvCacheDtype }, `kv_cache_dtype ${info.kvCacheDtypeSource}`);
  logger.info({ native_kernels: config.nativeKernels }, `native kernels: ${info.nativeKernels}`);
  logger.info(
    {
      model: config.model,
      served_model_name: config.servedModelName[0],
      model_type: info.modelType,
      dtype: info.torchDtype,
      parameters: info.numParameters,
      quantization: info.quantization,
      kv_blocks: info.numKvBlocks,
      kv_tokens: info.numKvBlocks * info.blockSize,
      kv_cache_dtype: info.kvCacheDtype,
      kv_bytes_per_token: info.kvCacheBytesPerToken,
      block_size: info.blockSize,
      max_model_len: maxModelLen,
      max_connections: maxConnections,
      dsa: info.usesIndexer,
      tokenizer: tokenizer !== null,
      memory_plan: info.memoryPlan,
      load_seconds: Number(info.loadSeconds.toFixed(2)),
      startup_seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
      address,
    },
    `serving ${config.servedModelName[0]} (${info.modelType}, ${info.torchDtype}, ${(info.numParameters / 1e6).toFixed(1)}M parameters, quantization ${info.quantization})` +
      ` with ${info.numKvBlocks} KV blocks = ${info.numKvBlocks * info.blockSize} tokens (${info.kvCacheDtype}, ${info.kvCacheBytesPerToken} bytes per token) on ${address}; memory: ${info.memoryPlan}`,
  );
  let draining: Promise<void> | null = null;
  const drainAndClose = () => {
    draining ??= drain(app, engine, ctx, drainExpired, config.drainTimeout * 1000).then(() => textWorker?.close());
    return draining;
  };
  return { app, ctx, address, drainAndClose, engineFailure };
}

/** After an abort at the drain deadline, how long aborted clients get to receive their error. */
const ABORT_GRACE_MS = 1000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * SIGTERM: readiness turns 503 and new requests are refused while running ones finish, for at
 * most `timeoutMs`. At the deadline what still runs is aborted (its clients get DSV_ERR_DRAINING),
 * and after a short grace every connection still open (e.g. a stream nobody reads) is closed.
 * Bounded by timeoutMs + ABORT_GRACE_MS plus the engine worker's exit.
 */
async function drain(app: FastifyInstance, engine: EngineClient, ctx: ServerContext, expired: AbortController, timeoutMs: number): Promise<void> {
  ctx.state.draining = true;
  const deadline = performance.now() + timeoutMs;
  while (engine.numInFlight > 0 && performance.now() < deadline) await sleep(50);
  let cutAt = deadline;
  if (engine.numInFlight > 0) {
    app.log.warn({ in_flight: engine.numInFlight, drain_timeout_s: timeoutMs / 1000 }, 'drain timeout: aborting the requests still running');
    expired.abort();
    cutAt = performance.now() + ABORT_GRACE_MS;
  }
  // Stops listening; responses still being written (slow readers) get until cutAt. The cut timer is
  // cleared when closing wins: left pending it kept the process alive until the drain deadline.
  let closed = false;
  const closing = app.close().then(() => (closed = true));
  let cutTimer: NodeJS.Timeout | undefined;
  const cut = new Promise<void>((resolve) => (cutTimer = setTimeout(resolve, Math.max(0, cutAt - performance.now()))));
  await Promise.race([closing, cut]);
  clearTimeout(cutTimer);
  if (!closed) {
    app.log.warn('drain: closing the connections still open');
    app.server.closeAllConnections();
    await closing;
  }
  await engine.shutdown();
}

/** Names the address and the system's reason (EADDRINUSE, EADDRNOTAVAIL, ENOTFOUND for an unknown host, ...). */
function listenError(config: ServerConfig, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  const reason = e.code ?? 'error';
  const detail = e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' ? 'the host name does not resolve' : (e.message ?? String(err));
  return new Error(`cannot listen on ${config.host}:${config.port}: ${reason} (${detail}); check --host and --port`, { cause: err });
}
