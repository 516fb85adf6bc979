// POST /v1/chat/completions: messages rendered with the model's chat template, then the same
// generation path as completions; streaming sends a role delta first, then content deltas.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EngineError } from '../../common/errors.ts';
import { checkModelName, checkNotDraining, stopList, toSamplingParams, type ServerContext } from '../context.ts';
import { Generation, requireTokenizer } from '../generation.ts';
import { chatCompletionRequestSchema, messageText, type ChatCompletionRequest } from '../schemas/openai.ts';
import { checkAdmissible, defaultMaxTokens } from '../limits.ts';
import { SseStream } from '../sse.ts';
import { chatLogprobs, type ChatTokenLogprob } from './logprobs_format.ts';
import { abortOnDisconnect, usageBody } from './shared.ts';

export function renderChatPrompt(ctx: ServerContext, body: Pick<ChatCompletionRequest, 'messages' | 'add_generation_prompt' | 'chat_template_kwargs'>): Promise<number[]> {
  const tokenizer = requireTokenizer(ctx.tokenizer, 'chat completion');
  // Template failures are EngineErrors (400) already; the template holds BOS and the turn markers.
  return tokenizer.encodeChat(
    body.messages.map((m) => ({ role: m.role, content: messageText(m) })),
    { addGenerationPrompt: body.add_generation_prompt ?? true, templateKwargs: body.chat_template_kwargs ?? undefined },
  );
}

export function registerChatCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/chat/completions', async (request: FastifyRequest, reply: FastifyReply) => {
    checkNotDraining(ctx);
    const body = chatCompletionRequestSchema.parse(request.body);
    const model = checkModelName(ctx, body.model);
    const prompt = await renderChatPrompt(ctx, body);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens(ctx.limits, [prompt], { param: 'messages' });
    checkAdmissible(ctx.limits, [prompt], body.n ?? 1);
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : null;
    const params = toSamplingParams(ctx, body, { maxTokens, logprobs, promptLogprobs: null });
    const generation = await Generation.start(
      ctx.engine,
      ctx.tokenizer,
      { prompts: [prompt], params, stop: stopList(body.stop), includeStopStr: body.include_stop_str_in_output ?? false, skipSpecialTokens: body.skip_special_tokens ?? true, cacheSalt: body.cache_salt },
      ctx.metrics.observer(),
    );
    const id = `chatcmpl-${generation.id}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids ?? false;
    const formatLogprobs = (entries: Parameters<typeof chatLogprobs>[2] | null) => (logprobs === null ? null : { content: chatLogprobs(ctx.tokenizer, asIds, entries ?? []) });

    if (body.stream) {
      const sse = SseStream.open(request, reply, () => generation.abort());
      const includeUsage = body.stream_options?.include_usage ?? false;
      const chunk = (choices: object[]) => ({ id, object: 'chat.completion.chunk', created, model, choices, ...(includeUsage ? { usage: null } : {}) });
      for (let i = 0; i < generation.numChoices; i++) {
        sse.send(chunk([{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
      }
      for await (const e of generation.events()) {
        if (e.text === '' && e.finishReason === null && !e.logprobs?.length && (ctx.tokenizer || e.tokenIds.length === 0)) continue;
        const delta = e.text === '' && e.finishReason !== null ? {} : { content: e.text };
        sse.send(chunk([{ index: e.index, delta, logprobs: formatLogprobs(e.logprobs), finish_reason: e.finishReason, stop_reason: e.stopReason }]));
      }
      if (generation.errorMessage) sse.sendError({ error: { message: generation.errorMessage, type: 'server_error', param: null, code: 'DSV_ERR_INTERNAL' } });
      if (includeUsage) sse.send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageBody(generation) });
      sse.end();
      return reply;
    }

    const detach = abortOnDisconnect(request, reply, generation);
    const states = Array.from({ length: generation.numChoices }, () => ({ text: '', logprobs: [] as ChatTokenLogprob[], finishReason: null as string | null, stopReason: null as number | string | null }));
    for await (const e of generation.events()) {
      const s = states[e.index];
      s.text += e.text;
      if (e.logprobs) s.logprobs.push(...chatLogprobs(ctx.tokenizer, asIds, e.logprobs));
      if (e.finishReason !== null) [s.finishReason, s.stopReason] = [e.finishReason, e.stopReason];
    }
    detach();
    if (generation.errorMessage) throw new EngineError('DSV_ERR_INTERNAL', `generation failed: ${generation.errorMessage}`);
    return {
      id, object: 'chat.completion', created, model,
      choices: states.map((s, index) => ({
        index,
        message: { role: 'assistant', content: s.text },
        logprobs: logprobs === null ? null : { content: s.logprobs },
        finish_reason: s.finishReason,
        stop_reason: s.stopReason,
      })),
      usage: usageBody(generation),
    };
  });
}
