// buildApp wires the routes, auth, errors and metrics around an engine; it never listens, so tests
// use app.inject and a real socket alike.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { EngineError, type ErrorCode } from '../common/errors.ts';
import type { ServerContext } from './context.ts';
import { errorBody, toHttpError, truncate } from './http_errors.ts';
import { limitConnections, requestTimeoutOptions } from './connections.ts';
import { isGenerationBody, SerializedJson, stringifyInSlices } from './json_slices.ts';
import { clientErrorHandler } from './node_errors.ts';
import { registerChatCompletions } from './routes/chat_completions.ts';
import { registerCompletions } from './routes/completions.ts';
import { registerMiscRoutes } from './routes/misc.ts';
import { registerResponses } from './routes/responses.ts';

export interface AppOptions {
  readonly bodyLimit: number;
  readonly apiKeys: readonly string[];
  readonly logger: FastifyBaseLogger;
  /** Seconds to receive one request; 0 or absent = no limit. */
  readonly requestTimeout?: number;
  /** Open connections beyond this are refused with 503; absent = no limit. */
  readonly maxConnections?: number;
}

const OPEN_ROUTES = new Set(['/health', '/metrics']);
const SERVER_FAULTS = new Set<ErrorCode>(['DSV_ERR_INTERNAL', 'DSV_ERR_CONFIG', 'DSV_ERR_CHECKPOINT']);

/** Constant-time check of a bearer token against every configured key. */
function authorized(header: string | undefined, keyDigests: readonly Buffer[]): boolean {
  const token = header?.startsWith('Bearer ') ? header.slice(7) : '';
  const digest = createHash('sha256').update(token).digest();
  let ok = false;
  for (const k of keyDigests) ok = timingSafeEqual(digest, k) || ok;
  return ok && token.length > 0;
}

export function buildApp(ctx: ServerContext, options: AppOptions): FastifyInstance {
  const timeouts = requestTimeoutOptions(options.requestTimeout ?? 0);
  const app = Fastify({
    loggerInstance: options.logger,
    ...(timeouts && {
      requestTimeout: timeouts.requestTimeout,
      http: { headersTimeout: timeouts.headersTimeout, connectionsCheckingInterval: timeouts.connectionsCheckingInterval },
    }),
    bodyLimit: options.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    clientErrorHandler: clientErrorHandler(options.logger),
  });
  if (options.maxConnections !== undefined) limitConnections(app.server, options.maxConnections, options.logger);
  const keyDigests = options.apiKeys.map((k) => createHash('sha256').update(k).digest());

  if (keyDigests.length > 0) {
    app.addHook('onRequest', async (request) => {
      const [path = ''] = request.url.split('?');
      if (OPEN_ROUTES.has(path)) return;
      if (!authorized(request.headers.authorization, keyDigests))
        throw new EngineError('DSV_ERR_UNAUTHORIZED', 'missing or invalid API key (send "Authorization: Bearer <key>")');
    });
  }
  // Compressed request bodies are refused, as vLLM does: inflating them would need its own size
  // guard (a 32 MiB gzip body can expand to gigabytes) for a feature no OpenAI client uses.
  app.addHook('onRequest', async (request) => {
    const encoding = request.headers['content-encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
      throw new EngineError(
        'DSV_ERR_UNSUPPORTED_MEDIA_TYPE',
        `content-encoding ${truncate(encoding, 32)} is not supported: send the request body uncompressed`,
      );
    }
  });
  // Completion bodies can be tens of MB: serialised in slices, so the HTTP thread keeps serving.
  app.setReplySerializer((payload) => (payload instanceof SerializedJson ? payload.json : JSON.stringify(payload)));
  app.addHook('preSerialization', async (_request, _reply, payload) =>
    isGenerationBody(payload) ? new SerializedJson(await stringifyInSlices(payload)) : payload,
  );
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', String(request.id));
  });

  app.setErrorHandler((err, request, reply) => {
    const [status, body] = toHttpError(err);
    // Only a fault of the server is an error with a stack; refusals by design (503 while draining) are not.
    if (SERVER_FAULTS.has(body.error.code)) request.log.error({ err }, 'request failed');
    else request.log.info({ code: body.error.code, status }, body.error.message);
    // An unauthenticated client keeps no connection (nor the file descriptor behind it).
    if (body.error.code === 'DSV_ERR_UNAUTHORIZED') void reply.header('connection', 'close');
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody('DSV_ERR_NOT_FOUND', `route ${request.method} ${truncate(request.url.split('?')[0] ?? '', 128)} not found`));
  });

  ctx.engine.on('stats', (s) => ctx.metrics.onStepStats(s));
  registerCompletions(app, ctx);
  registerChatCompletions(app, ctx);
  registerResponses(app, ctx);
  registerMiscRoutes(app, ctx);
  return app;
}
