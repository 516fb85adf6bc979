// POST /v1/chat/completions: messages rendered with the model's chat template, then the same
// generation path as completions; streaming sends a role delta first, then content deltas.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EngineError } from '../../common/errors.ts';
import { prepareChat, type ChatConversation, type PreparedChat } from '../chat_prompt.ts';
import { checkModelName, checkNotDraining, stopList, toSamplingParams, type ServerContext } from '../context.ts';
import { Generation } from '../generation.ts';
import { chatCompletionRequestSchema, type ChatCompletionRequest } from '../schemas/openai.ts';
import { structuredOutputOf, type StructuredOutputFields } from '../structured/request_grammar.ts';
import { ChatChoiceOutput } from '../tools/chat_output.ts';
import { chatToolRequest, templateMessages, type ChatToolFields } from '../tools/chat_tools.ts';
import { SseStream } from '../sse.ts';
import { chatLogprobs, type ChatTokenLogprob } from './logprobs_format.ts';
import { abortOnDisconnect, usageBody } from './shared.ts';

type ChatBody = Pick<ChatCompletionRequest, 'messages' | 'add_generation_prompt' | 'chat_template_kwargs'> & ChatToolFields & StructuredOutputFields;

/** The prompt, output grammar and tool-call parsing of a chat request (also /tokenize's prompt). */
export function renderChatPrompt(ctx: ServerContext, body: ChatBody): PreparedChat {
  const conversation: ChatConversation = {
    messages: templateMessages(body.messages),
    tools: chatToolRequest(body),
    format: structuredOutputOf(body),
    addGenerationPrompt: body.add_generation_prompt ?? true,
    templateKwargs: body.chat_template_kwargs ?? null,
  };
  return prepareChat(ctx, conversation);
}

export function registerChatCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/chat/completions', async (request: FastifyRequest, reply: FastifyReply) => {
    checkNotDraining(ctx);
    const body = chatCompletionRequestSchema.parse(request.body);
    const model = checkModelName(ctx, body.model);
    const prepared = renderChatPrompt(ctx, body);
    const prompt = prepared.prompt;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? Math.max(1, ctx.maxModelLen - prompt.length);
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : null;
    const params = toSamplingParams(ctx, body, { maxTokens, logprobs, promptLogprobs: null });
    const generation = await Generation.start(
      ctx.engine,
      ctx.tokenizer,
      { prompts: [prompt], params, stop: stopList(body.stop), includeStopStr: body.include_stop_str_in_output ?? false, skipSpecialTokens: body.skip_special_tokens ?? true, cacheSalt: body.cache_salt, structuredOutput: prepared.structuredOutput },
      ctx.metrics.observer(),
    );
    const id = `chatcmpl-${generation.id}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids ?? false;
    const formatLogprobs = (entries: Parameters<typeof chatLogprobs>[2] | null) => (logprobs === null ? null : { content: chatLogprobs(ctx.tokenizer, asIds, entries ?? []) });
    // Per choice: the text, through the tool-call parser when tools were offered.
    const outputs = Array.from({ length: generation.numChoices }, () => new ChatChoiceOutput(prepared.parseToolCalls));

    if (body.stream) {
      const sse = SseStream.open(request, reply, () => generation.abort());
      const includeUsage = body.stream_options?.include_usage ?? false;
      const chunk = (choices: object[]) => ({ id, object: 'chat.completion.chunk', created, model, choices, ...(includeUsage ? { usage: null } : {}) });
      for (let i = 0; i < generation.numChoices; i++) {
        sse.send(chunk([{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
      }
      for await (const e of generation.events()) {
        const out = outputs[e.index]!;
        const delta = out.push(e.text, e.finishReason !== null);
        if (delta === null && e.finishReason === null && !e.logprobs?.length && (ctx.tokenizer || e.tokenIds.length === 0)) continue;
        sse.send(chunk([{ index: e.index, delta: delta ?? {}, logprobs: formatLogprobs(e.logprobs), finish_reason: out.finishReason(e.finishReason), stop_reason: e.stopReason }]));
      }
      if (generation.errorMessage) sse.sendError({ error: { message: generation.errorMessage, type: 'server_error', param: null, code: 'DSV_ERR_INTERNAL' } });
      if (includeUsage) sse.send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageBody(generation) });
      sse.end();
      return reply;
    }

    const detach = abortOnDisconnect(request, reply, generation);
    const states = Array.from({ length: generation.numChoices }, () => ({ logprobs: [] as ChatTokenLogprob[], finishReason: null as string | null, stopReason: null as number | string | null }));
    for await (const e of generation.events()) {
      const s = states[e.index];
      outputs[e.index]!.push(e.text, e.finishReason !== null);
      if (e.logprobs) s.logprobs.push(...chatLogprobs(ctx.tokenizer, asIds, e.logprobs));
      if (e.finishReason !== null) [s.finishReason, s.stopReason] = [e.finishReason, e.stopReason];
    }
    detach();
    if (generation.errorMessage) throw new EngineError('DSV_ERR_INTERNAL', `generation failed: ${generation.errorMessage}`);
    return {
      id, object: 'chat.completion', created, model,
      choices: states.map((s, index) => ({
        index,
        message: outputs[index]!.message(),
        logprobs: logprobs === null ? null : { content: s.logprobs },
        finish_reason: outputs[index]!.finishReason(s.finishReason),
        stop_reason: s.stopReason,
      })),
      usage: usageBody(generation),
    };
  });
}
