// POST /v1/completions (OpenAI legacy completions + vLLM extensions), streaming or not.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EngineError } from '../../common/errors.ts';
import { checkModelName, checkNotDraining, requestLimits, stopList, type ServerContext } from '../context.ts';
import { Generation, requireTokenizer, type ChoiceEvent } from '../generation.ts';
import { completionRequestSchema, type CompletionRequest } from '../schemas/openai.ts';
import { checkAdmissible, defaultMaxTokens } from '../limits.ts';
import { withMaxTokens } from '../schemas/sampling.ts';
import { streamGeneration, streamUsage } from '../stream_generation.ts';
import { structuredOutputOf } from '../structured/request_grammar.ts';
import { CompletionLogprobsBuilder, mergeCompletionLogprobs, type CompletionLogprobs } from './logprobs_format.ts';
import { generationOptions, usageBody } from './shared.ts';
import { watchClient } from '../client_signal.ts';

const DEFAULT_MAX_TOKENS = 16; // OpenAI's default for completions

interface Prompt {
  readonly ids: readonly number[];
  readonly text: string | null; // the original string, for echo
}

async function preparePrompts(ctx: ServerContext, body: CompletionRequest): Promise<Prompt[]> {
  const p = body.prompt;
  const list: (string | number[])[] = typeof p === 'string' ? [p] : typeof p[0] === 'number' ? [p as number[]] : (p as (string | number[])[]);
  const prompts: Prompt[] = [];
  for (const item of list) {
    if (typeof item !== 'string') prompts.push({ ids: item, text: null });
    else if (item.length === 0) throw new EngineError('DSV_ERR_INVALID_REQUEST', 'prompt: must not be empty', { param: 'prompt' });
    else prompts.push({ ids: await requireTokenizer(ctx.tokenizer, 'a text prompt').encodeAsync(item, { addSpecialTokens: true }), text: item });
  }
  return prompts;
}

interface ChoiceState {
  text: string;
  logprobs: CompletionLogprobs | null;
  finishReason: string | null;
  stopReason: number | string | null;
  builder: CompletionLogprobsBuilder | null;
  started: boolean;
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  const schema = completionRequestSchema(requestLimits(ctx));
  app.post('/v1/completions', { onRequest: watchClient }, async (request: FastifyRequest, reply: FastifyReply) => {
    checkNotDraining(ctx);
    const { body, sampling } = schema.parse(request.body);
    const model = checkModelName(ctx, body.model);
    const prompts = await preparePrompts(ctx, body);
    const stop = stopList(body.stop);
    if (stop.length > 0) requireTokenizer(ctx.tokenizer, 'stop strings');
    checkAdmissible(
      ctx.limits,
      prompts.map((p) => p.ids),
      body.n ?? 1,
    );
    const maxTokens =
      body.max_tokens ??
      defaultMaxTokens(
        ctx.limits,
        prompts.map((p) => p.ids),
        { cap: DEFAULT_MAX_TOKENS },
      );
    const params = withMaxTokens(sampling, maxTokens);
    const logprobs = params.logprobs;
    const generation = await Generation.start(
      ctx.engine,
      ctx.tokenizer,
      {
        prompts: prompts.map((p) => p.ids),
        params,
        stop,
        includeStopStr: body.include_stop_str_in_output ?? false,
        skipSpecialTokens: body.skip_special_tokens ?? true,
        cacheSalt: body.cache_salt,
        structuredOutput: structuredOutputOf(body),
      },
      generationOptions(ctx, request),
    );
    const id = `cmpl-${generation.id}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids ?? false;
    const states: ChoiceState[] = Array.from({ length: generation.numChoices }, () => ({
      text: '',
      logprobs: null,
      finishReason: null,
      stopReason: null,
      started: false,
      builder: logprobs !== null ? new CompletionLogprobsBuilder(ctx.tokenizer, asIds, 0, body.skip_special_tokens ?? true) : null,
    }));
    // The text and logprobs one event adds to its choice (echo puts the prompt first). The generation
    // was built from `prompts` with one state per choice, so e.index and e.promptIndex are in range.
    const piece = (e: ChoiceEvent): { text: string; logprobs: CompletionLogprobs | null } => {
      const s = states[e.index]!;
      let text = e.text;
      let lp: CompletionLogprobs | null = null;
      if (!s.started) {
        s.started = true;
        const prompt = prompts[e.promptIndex]!;
        const echoed = body.echo ? (prompt.text ?? ctx.tokenizer?.decode(prompt.ids, { skipSpecialTokens: false }) ?? '') : '';
        text = echoed + text;
        if (body.echo && s.builder && e.promptLogprobs) lp = s.builder.format(e.promptLogprobs, prompt.ids, echoed);
      }
      if (s.builder && e.logprobs) lp = mergeCompletionLogprobs(lp, s.builder.format(e.logprobs, e.tokenIds));
      return { text, logprobs: lp ?? (s.builder ? { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] } : null) };
    };

    if (body.stream) {
      return streamGeneration(ctx, request, reply, generation, {
        id,
        object: 'text_completion',
        created,
        model,
        usage: streamUsage(body.stream_options),
        leadingChoices: [],
        piece: (e) => {
          const { text, logprobs: lp } = piece(e);
          return { text, numLogprobs: lp?.tokens.length ?? 0, fields: { text, logprobs: lp } };
        },
      });
    }

    for await (const e of generation.events()) {
      const s = states[e.index]!;
      const { text, logprobs: lp } = piece(e);
      s.text += text;
      if (lp) s.logprobs = mergeCompletionLogprobs(s.logprobs, lp);
      if (e.finishReason !== null) [s.finishReason, s.stopReason] = [e.finishReason, e.stopReason];
    }
    if (generation.failure) throw generation.failure;
    return {
      id,
      object: 'text_completion',
      created,
      model,
      choices: states.map((s, index) => ({ index, text: s.text, logprobs: s.logprobs, finish_reason: s.finishReason, stop_reason: s.stopReason })),
      usage: usageBody(generation),
    };
  });
}
