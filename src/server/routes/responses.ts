// POST /v1/responses: the OpenAI Responses API, stateless (as vLLM serves it), on the chat
// pipeline: the input becomes chat messages (responses/to_chat.ts), the output is parsed for tool
// calls and returned as output items, whole or as the typed event stream (responses/response_builder.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { prepareChat } from '../chat_prompt.ts';
import { clientSignal, watchClient } from '../client_signal.ts';
import { checkModelName, checkNotDraining, type ServerContext } from '../context.ts';
import { Generation } from '../generation.ts';
import { ResponseBuilder, type ResponseEcho } from '../responses/response_builder.ts';
import { responsesRequestSchema, type ResponsesRequest } from '../responses/schema.ts';
import { responsesToChat } from '../responses/to_chat.ts';
import { toSamplingParamsDraft, withMaxTokens } from '../schemas/sampling.ts';
import { SseStream } from '../sse.ts';
import { ToolCallStreamParser, type ToolParseEvent } from '../tools/tool_call_parser.ts';
import { generationOptions } from './shared.ts';

function echoOf(body: ResponsesRequest, model: string): ResponseEcho {
  return {
    model,
    instructions: body.instructions ?? null,
    maxOutputTokens: body.max_output_tokens ?? null,
    temperature: body.temperature ?? null,
    topP: body.top_p ?? null,
    tools: (body.tools ?? []).map((t) => ({ ...t, strict: t.strict ?? false, parameters: t.parameters ?? null, description: t.description ?? null })),
    toolChoice: body.tool_choice ?? 'auto',
    parallelToolCalls: body.parallel_tool_calls ?? true,
    text: { format: body.text?.format ?? { type: 'text' } },
    metadata: body.metadata ?? null,
    user: body.user ?? null,
  };
}

/** Splits generated text into parser events (plain content when tool calls are not parsed). */
function outputParser(parseToolCalls: boolean): { push(text: string): ToolParseEvent[]; finish(): ToolParseEvent[] } {
  if (parseToolCalls) return new ToolCallStreamParser();
  return { push: (text) => (text === '' ? [] : [{ type: 'content', text }]), finish: () => [] };
}

export function registerResponses(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/responses', { onRequest: watchClient }, async (request: FastifyRequest, reply: FastifyReply) => {
    checkNotDraining(ctx);
    const body = responsesRequestSchema.parse(request.body);
    const model = checkModelName(ctx, body.model);
    const chat = responsesToChat(body);
    const prepared = await prepareChat(ctx, {
      messages: chat.messages,
      tools: chat.tools,
      format: chat.format,
      addGenerationPrompt: true,
      templateKwargs: null,
    });
    const maxTokens = chat.maxTokens ?? Math.max(1, ctx.maxModelLen - prepared.prompt.length);
    const draft = toSamplingParamsDraft(
      { temperature: chat.temperature ?? undefined, top_p: chat.topP ?? undefined },
      { logprobs: null, promptLogprobs: null },
    );
    const params = withMaxTokens(draft, maxTokens);
    const generation = await Generation.start(
      ctx.engine,
      ctx.tokenizer,
      { prompts: [prepared.prompt], params, stop: [], includeStopStr: false, skipSpecialTokens: true, structuredOutput: prepared.structuredOutput },
      generationOptions(ctx, request),
    );
    const builder = new ResponseBuilder(echoOf(body, model));
    const parser = outputParser(prepared.parseToolCalls);
    let truncated = false;
    const usage = () => ({
      inputTokens: generation.usage.promptTokens,
      cachedTokens: generation.usage.cachedTokens,
      outputTokens: generation.usage.completionTokens,
    });

    if (body.stream) {
      // Same backpressure and disconnect rules as the other streams (stream_generation.ts).
      const sse = SseStream.open(request, reply, {
        writeTimeoutMs: ctx.streamWriteTimeoutMs,
        clientSignal: clientSignal(request),
        onClose: () => generation.abort(),
      });
      const sendAll = async (events: Iterable<unknown>): Promise<void> => {
        for (const event of events) await sse.send(event);
      };
      await sendAll(builder.start());
      for await (const e of generation.events()) {
        if (sse.isClosed) break;
        for (const p of parser.push(e.text)) await sendAll(builder.push(p));
        if (e.finishReason !== null) truncated = e.finishReason === 'length';
      }
      if (sse.isClosed) return reply;
      for (const p of parser.finish()) await sendAll(builder.push(p));
      if (generation.failure) {
        await sse.send({ type: 'error', code: generation.failure.code, message: generation.failure.message, param: null, sequence_number: builder.numEvents });
      } else {
        await sendAll(builder.finish(usage(), truncated));
      }
      sse.end();
      return reply;
    }

    for await (const e of generation.events()) {
      for (const p of parser.push(e.text)) builder.push(p);
      if (e.finishReason !== null) truncated = e.finishReason === 'length';
    }
    for (const p of parser.finish()) builder.push(p);
    if (generation.failure) throw generation.failure;
    builder.finish(usage(), truncated);
    return builder.final(usage(), truncated);
  });
}
