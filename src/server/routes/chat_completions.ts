// POST /v1/chat/completions: messages rendered with the model's chat template, then the same
// generation path as completions; streaming sends a role delta first, then content deltas.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { prepareChat, type ChatConversation, type PreparedChat } from '../chat_prompt.ts';
import { checkModelName, checkNotDraining, requestLimits, stopList, type ServerContext } from '../context.ts';
import { Generation } from '../generation.ts';
import { checkAdmissible, defaultMaxTokens } from '../limits.ts';
import { chatCompletionRequestSchema, type ChatCompletionRequest } from '../schemas/openai.ts';
import { withMaxTokens } from '../schemas/sampling.ts';
import { streamGeneration, streamUsage } from '../stream_generation.ts';
import { structuredOutputOf, type StructuredOutputFields } from '../structured/request_grammar.ts';
import { ChatChoiceOutput } from '../tools/chat_output.ts';
import { chatToolRequest, templateMessages, type ChatToolFields } from '../tools/chat_tools.ts';
import { chatLogprobs, type ChatTokenLogprob } from './logprobs_format.ts';
import { generationOptions, usageBody } from './shared.ts';
import { watchClient } from '../client_signal.ts';

type ChatBody = Pick<ChatCompletionRequest, 'messages' | 'add_generation_prompt' | 'chat_template_kwargs'> & ChatToolFields & StructuredOutputFields;

/** The prompt, output grammar and tool-call parsing of a chat request (also /tokenize's prompt). */
export function renderChatPrompt(ctx: ServerContext, body: ChatBody): Promise<PreparedChat> {
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
  const schema = chatCompletionRequestSchema(requestLimits(ctx));
  app.post('/v1/chat/completions', { onRequest: watchClient }, async (request: FastifyRequest, reply: FastifyReply) => {
    checkNotDraining(ctx);
    const { body, sampling } = schema.parse(request.body);
    const model = checkModelName(ctx, body.model);
    const prepared = await renderChatPrompt(ctx, body);
    const prompt = prepared.prompt;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens(ctx.limits, [prompt], { param: 'messages' });
    checkAdmissible(ctx.limits, [prompt], body.n ?? 1);
    const params = withMaxTokens(sampling, maxTokens);
    const logprobs = params.logprobs;
    const generation = await Generation.start(
      ctx.engine,
      ctx.tokenizer,
      {
        prompts: [prompt],
        params,
        stop: stopList(body.stop),
        includeStopStr: body.include_stop_str_in_output ?? false,
        skipSpecialTokens: body.skip_special_tokens ?? true,
        cacheSalt: body.cache_salt,
        structuredOutput: prepared.structuredOutput,
      },
      generationOptions(ctx, request),
    );
    const id = `chatcmpl-${generation.id}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids ?? false;
    const formatLogprobs = (entries: Parameters<typeof chatLogprobs>[2] | null) =>
      logprobs === null ? null : { content: chatLogprobs(ctx.tokenizer, asIds, entries ?? []) };
    // Per choice: the text, through the tool-call parser when tools were offered.
    const outputs = Array.from({ length: generation.numChoices }, () => new ChatChoiceOutput(prepared.parseToolCalls));

    if (body.stream) {
      return streamGeneration(ctx, request, reply, generation, {
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        usage: streamUsage(body.stream_options),
        leadingChoices: Array.from({ length: generation.numChoices }, (_, index) => ({
          index,
          delta: { role: 'assistant', content: '' },
          logprobs: null,
          finish_reason: null,
        })),
        piece: (e) => {
          const out = outputs[e.index]!;
          const delta = out.push(e.text, e.finishReason !== null); // tool-call markup becomes delta.tool_calls
          return {
            text: delta?.content ?? '',
            numLogprobs: e.logprobs?.length ?? 0,
            showsSomething: delta !== null,
            finishReason: out.finishReason(e.finishReason),
            fields: { delta: delta ?? {}, logprobs: formatLogprobs(e.logprobs) },
          };
        },
      });
    }

    const states = Array.from({ length: generation.numChoices }, () => ({
      logprobs: [] as ChatTokenLogprob[],
      finishReason: null as string | null,
      stopReason: null as number | string | null,
    }));
    for await (const e of generation.events()) {
      const s = states[e.index]!; // one state per choice, as for outputs
      outputs[e.index]!.push(e.text, e.finishReason !== null);
      if (e.logprobs) s.logprobs.push(...chatLogprobs(ctx.tokenizer, asIds, e.logprobs));
      if (e.finishReason !== null) [s.finishReason, s.stopReason] = [e.finishReason, e.stopReason];
    }
    if (generation.failure) throw generation.failure;
    return {
      id,
      object: 'chat.completion',
      created,
      model,
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
