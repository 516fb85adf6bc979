// From a chat conversation (messages, tools, output constraint) to what generation needs: the
// prompt token ids, the grammar the output must match, and whether to parse tool calls out of it.
// Shared by /v1/chat/completions and /v1/responses.
import { EngineError } from '../common/errors.ts';
import type { StructuredOutputSpec } from '../engine/structured/grammar_spec.ts';
import type { ServerContext } from './context.ts';
import { requireTokenizer } from './generation.ts';
import type { TemplateMessage, ToolRequest } from './tools/conversation.ts';
import { planTools } from './tools/chat_tools.ts';

export interface ChatConversation {
  readonly messages: readonly TemplateMessage[];
  readonly tools: ToolRequest;
  /** response_format / structured_outputs / guided_* / text.format. */
  readonly format: StructuredOutputSpec | null;
  readonly addGenerationPrompt: boolean;
  readonly templateKwargs: Readonly<Record<string, unknown>> | null;
}

export interface PreparedChat {
  readonly prompt: number[];
  readonly structuredOutput: StructuredOutputSpec | null;
  readonly parseToolCalls: boolean;
}

/** Renders and encodes in the text worker (templates run under a deadline: tokenizer/bounded_tokenizer.ts). */
export async function prepareChat(ctx: ServerContext, chat: ChatConversation): Promise<PreparedChat> {
  const tokenizer = requireTokenizer(ctx.tokenizer, 'chat completion');
  const plan = planTools(chat.tools, tokenizer.toolCallFormat);
  if (plan.grammar && chat.format) {
    throw new EngineError('DSV_ERR_INVALID_REQUEST', `${chat.format.param}: cannot constrain the output while tool_choice forces a tool call`, {
      param: chat.format.param,
    });
  }
  const kwargs = { ...chat.templateKwargs, ...(plan.templateTools ? { tools: plan.templateTools } : {}) };
  // Template failures are EngineErrors (400) already; the template holds BOS and the turn markers.
  const prompt = await tokenizer.encodeChat(chat.messages, { addGenerationPrompt: chat.addGenerationPrompt, templateKwargs: kwargs });
  return {
    prompt,
    structuredOutput: plan.grammar ?? chat.format,
    // A constrained output is not parsed for calls: with a format the text is the answer.
    parseToolCalls: plan.parseCalls && chat.format === null,
  };
}
