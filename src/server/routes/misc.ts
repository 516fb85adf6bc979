// GET /health, GET /v1/models, GET /metrics, POST /tokenize, POST /detokenize.
import type { FastifyInstance } from 'fastify';
import { EngineError } from '../../common/errors.ts';
import { checkModelName, type ServerContext } from '../context.ts';
import { requireTokenizer } from '../generation.ts';
import { detokenizeRequestSchema, tokenizeRequestSchema } from '../schemas/openai.ts';
import { errorBody } from '../http_errors.ts';
import { renderChatPrompt } from './chat_completions.ts';

export function registerMiscRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const created = Math.floor(Date.now() / 1000);

  app.get('/health', async (_request, reply) => {
    if (ctx.state.draining) return reply.code(503).send(errorBody('DSV_ERR_DRAINING', 'draining'));
    if (!ctx.engine.isAlive) return reply.code(503).send(errorBody('DSV_ERR_INTERNAL', 'the engine worker has stopped'));
    return {};
  });

  app.get('/v1/models', async () => ({
    object: 'list',
    data: ctx.servedModelNames.map((id) => ({
      id,
      object: 'model',
      created,
      owned_by: 'dsv32-server',
      root: ctx.engine.info.modelDir,
      parent: null,
      max_model_len: ctx.maxModelLen,
    })),
  }));

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', ctx.metrics.contentType);
    return ctx.metrics.render();
  });

  app.post('/tokenize', async (request) => {
    const body = tokenizeRequestSchema.parse(request.body);
    checkModelName(ctx, body.model);
    const tokens =
      'prompt' in body
        ? await requireTokenizer(ctx.tokenizer, 'tokenize').encodeAsync(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true })
        : (await renderChatPrompt(ctx, body)).prompt;
    return { count: tokens.length, max_model_len: ctx.maxModelLen, tokens };
  });

  app.post('/detokenize', async (request) => {
    const body = detokenizeRequestSchema.parse(request.body);
    checkModelName(ctx, body.model);
    const bad = body.tokens.find((t) => t >= ctx.engine.info.vocabSize);
    if (bad !== undefined)
      throw new EngineError('DSV_ERR_INVALID_REQUEST', `tokens: token id ${bad} is outside the vocabulary [0, ${ctx.engine.info.vocabSize})`, {
        param: 'tokens',
      });
    return { prompt: requireTokenizer(ctx.tokenizer, 'detokenize').decode(body.tokens, { skipSpecialTokens: false }) };
  });
}
