// POST /v1/chat/completions: messages rendered with the model's chat template, then the same
// generation path as completions; streaming sends a role delta first, then content deltas.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { checkModelName, checkNotDraining, requestLimits, stopList, type ServerContext } from '../context.ts';
import { Generation, requireTokenizer } from '../generation.ts';
import { chatCompletionRequestSchema, messageText, type ChatCompletionRequest } from '../schemas/openai.ts';
import { withMaxTokens } from '../schemas/sampling.ts';
import { streamGeneration } from '../stream_generation.ts';
import { chatLogprobs, type ChatTokenLogprob } from './logprobs_format.ts';
import { generationOptions, usageBody } from './shared.ts';
import { watchClient } from '../client_signal.ts';

export function renderChatPrompt(ctx: ServerContext, body: Pick<ChatCompletionRequest, 'messages' | 'add_generation_prompt' | 'chat_template_kwargs'>): number[] {
  const tokenizer = requireTokenizer(ctx.tokenizer, 'chat completion');
  // Template failures are EngineErrors (400) already.
  const text = tokenizer.applyChatTemplate(
    body.messages.map((m) => ({ role: m.role, content: messageText(m) })),
    { addGenerationPrompt: body.add_generation_prompt ?? true, templateKwargs: body.chat_template_kwargs ?? undefined },
  );
  // The template already holds BOS and the turn markers.
  return tokenizer.encode(text, { addSpecialTokens: false });
}

export function registerChatCompletions(app: FastifyInstance, ctx: ServerContext): void {
  const schema = chatCompletionRequestSchema(requestLimits(ctx));
  app.post('/v1/chat/completions', { onRequest: watchClient }, async (request: FastifyRequest, reply: FastifyReply) => {
    checkNotDraining(ctx);
    const { body, sampling } = schema.parse(request.body);
    const model = checkModelName(ctx, body.model);
    const prompt = renderChatPrompt(ctx, body);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? Math.max(1, ctx.maxModelLen - prompt.length);
    const params = withMaxTokens(sampling, maxTokens);
    const logprobs = params.logprobs;
    const generation = await Generation.start(
      ctx.engine,
      ctx.tokenizer,
      { prompts: [prompt], params, stop: stopList(body.stop), includeStopStr: body.include_stop_str_in_output ?? false, skipSpecialTokens: body.skip_special_tokens ?? true, cacheSalt: body.cache_salt },
      generationOptions(ctx, request),
    );
    const id = `chatcmpl-${generation.id}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids ?? false;
    const formatLogprobs = (entries: Parameters<typeof chatLogprobs>[2] | null) => (logprobs === null ? null : { content: chatLogprobs(ctx.tokenizer, asIds, entries ?? []) });

    if (body.stream) {
      return streamGeneration(ctx, request, reply, generation, {
        id, object: 'chat.completion.chunk', created, model, includeUsage: body.stream_options?.include_usage ?? false,
        leadingChoices: Array.from({ length: generation.numChoices }, (_, index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })),
        piece: (e) => ({
          text: e.text,
          numLogprobs: e.logprobs?.length ?? 0,
          fields: { delta: e.text === '' && e.finishReason !== null ? {} : { content: e.text }, logprobs: formatLogprobs(e.logprobs) },
        }),
      });
    }

    const states = Array.from({ length: generation.numChoices }, () => ({ text: '', logprobs: [] as ChatTokenLogprob[], finishReason: null as string | null, stopReason: null as number | string | null }));
    for await (const e of generation.events()) {
      const s = states[e.index];
      s.text += e.text;
      if (e.logprobs) s.logprobs.push(...chatLogprobs(ctx.tokenizer, asIds, e.logprobs));
      if (e.finishReason !== null) [s.finishReason, s.stopReason] = [e.finishReason, e.stopReason];
    }
    if (generation.failure) throw generation.failure;
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
