// Start-up and drain: config -> model check -> tokenizer -> engine worker -> app -> listen.
// Used by src/main.ts and by the tests that need a real socket.
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { ConfigError, engineWorkerEnv, toEngineWorkerData, type ServerConfig } from '../config.ts';
import { EngineClient } from '../engine/engine_client.ts';
import { readModelConfig } from '../engine/checkpoint/config.ts';
import { buildApp } from './app.ts';
import type { ServerContext } from './context.ts';
import { ServerMetrics } from './metrics.ts';
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
  const modelConfig = readModelConfig(config.model); // fails fast, naming config.json and the key
  const maxModelLen = config.maxModelLen ?? modelConfig.maxPositionEmbeddings;
  if (maxModelLen > modelConfig.maxPositionEmbeddings) {
    throw new ConfigError(`--max-model-len ${maxModelLen} exceeds the model's max_position_embeddings (${modelConfig.maxPositionEmbeddings})`);
  }
  const tokenizer = loadTokenizer(config.model);
  const engine = await EngineClient.start({ ...toEngineWorkerData(config, maxModelLen), env: engineWorkerEnv() });
  const ctx: ServerContext = {
    engine,
    tokenizer,
    servedModelNames: config.servedModelName,
    maxModelLen,
    maxLogprobs: config.maxLogprobs,
    metrics: new ServerMetrics(config.servedModelName[0]),
    state: { draining: false },
  };
  const engineFailure = new Promise<Error>((resolve) =>
    engine.on('error', (err) => {
      logger.fatal({ err }, 'engine worker failed');
      resolve(err);
    }),
  );
  const app = buildApp(ctx, { bodyLimit: config.maxRequestBody, apiKeys: config.apiKey ?? [], logger });
  const address = await app.listen({ host: config.host, port: config.port });
  const info = engine.info;
  for (const warning of info.loadWarnings) logger.warn(warning);
  logger.info(
    {
      model: config.model, served_model_name: config.servedModelName[0], model_type: info.modelType, dtype: info.torchDtype,
      parameters: info.numParameters, quantization: info.quantization, kv_blocks: info.numKvBlocks, kv_tokens: info.numKvBlocks * info.blockSize,
      block_size: info.blockSize, max_model_len: maxModelLen, dsa: info.usesIndexer, tokenizer: tokenizer !== null,
      memory_plan: info.memoryPlan, load_seconds: Number(info.loadSeconds.toFixed(2)),
      startup_seconds: Number(((performance.now() - t0) / 1000).toFixed(2)), address,
    },
    `serving ${config.servedModelName[0]} (${info.modelType}, ${info.torchDtype}, ${(info.numParameters / 1e6).toFixed(1)}M parameters, quantization ${info.quantization})`
      + ` with ${info.numKvBlocks} KV blocks = ${info.numKvBlocks * info.blockSize} tokens on ${address}; memory: ${info.memoryPlan}`,
  );
  let draining: Promise<void> | null = null;
  const drainAndClose = () => {
    draining ??= (async () => {
      ctx.state.draining = true;
      const deadline = performance.now() + config.drainTimeout * 1000;
      while (engine.numInFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (engine.numInFlight > 0) logger.warn({ in_flight: engine.numInFlight }, 'drain timeout: aborting the rest');
      await app.close();
      await engine.shutdown();
    })();
    return draining;
  };
  return { app, ctx, address, drainAndClose, engineFailure };
}
