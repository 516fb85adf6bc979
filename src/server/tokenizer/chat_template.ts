// Chat templates: the model's own (tokenizer_config.json `chat_template` or chat_template.jinja), or a
// built-in one, rendered with @huggingface/jinja the way transformers' apply_chat_template does.
import { Template } from '@huggingface/jinja';
import { EngineError } from '../../common/errors.ts';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  /** Passed through to the template (name, tool_calls, reasoning_content, ...). */
  readonly [key: string]: unknown;
}

export interface ChatTemplateOptions {
  readonly addGenerationPrompt: boolean;
  /** Extra template variables (vLLM's chat_template_kwargs), e.g. `{ thinking: true }`. */
  readonly templateKwargs?: Readonly<Record<string, unknown>>;
}

const DEEPSEEK_SPECIAL = { user: '<｜User｜>', assistant: '<｜Assistant｜>', end: '<｜end▁of▁sentence｜>' } as const;

/** System prompts first, joined by a blank line (as DeepSeek-V3's template does). */
const SYSTEM_PROMPT =
  "{%- set ns = namespace(sep='') -%}" +
  "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{{ ns.sep }}{{ m['content'] }}{%- set ns.sep = '\\n\\n' -%}{%- endif -%}{%- endfor -%}";

const UNSUPPORTED_ROLE = "{%- elif m['role'] != 'system' -%}{{ raise_exception('this chat template does not support the role ' ~ m['role']) }}";

/** The tools section of the system prompt: the functions as JSON, and the call markup to use. */
const TOOLS_PROMPT =
  '{%- if tools -%}{{ ns.sep }}## Tools\n<tools>' +
  "{%- for tool in tools -%}{{ '\\n' }}{{ tool | tojson }}{%- endfor -%}" +
  "{{ '\\n</tools>\\nCall them as <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\nARGUMENTS\\n```" +
  "<｜tool▁call▁end｜><｜tool▁calls▁end｜>, one call per line.' }}{%- endif -%}";

/** An assistant message's calls in DeepSeek-V3 markup (src/server/tools/deepseek_markup.ts). */
const TOOL_CALLS =
  "{%- if m['tool_calls'] -%}<｜tool▁calls▁begin｜>{%- for c in m['tool_calls'] -%}" +
  "{%- if not loop.first -%}{{ '\\n' }}{%- endif -%}" +
  "<｜tool▁call▁begin｜>function<｜tool▁sep｜>{{ c['function']['name'] }}{{ '\\n```json\\n' }}{{ c['function']['arguments'] }}{{ '\\n```' }}<｜tool▁call▁end｜>" +
  '{%- endfor -%}<｜tool▁calls▁end｜>{%- endif -%}';

/**
 * DeepSeek-V3 format: BOS, system prompt (+ tools), then `<｜User｜>q<｜Assistant｜>a<｜end▁of▁sentence｜>`
 * turns. With a `thinking` kwarg (DeepSeek-V3.1/V3.2 convention) the generation prompt ends in
 * `<think>` (thinking) or `</think>` (chat), and earlier assistant turns carry `</think>` (reasoning
 * dropped). Tool calls and results follow DeepSeek-V3's template: results go in
 * `<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r<｜tool▁output▁end｜>...<｜tool▁outputs▁end｜>`, after
 * which the assistant turn continues without a new `<｜Assistant｜>`.
 */
export const DEEPSEEK_CHAT_TEMPLATE =
  '{{ bos_token }}' +
  SYSTEM_PROMPT +
  TOOLS_PROMPT +
  '{%- set ns.tool = false -%}' +
  '{%- for m in messages -%}' +
  `{%- if m['role'] == 'user' -%}{%- if ns.tool -%}<｜tool▁outputs▁end｜>{%- set ns.tool = false -%}{%- endif -%}${DEEPSEEK_SPECIAL.user}{{ m['content'] }}` +
  "{%- elif m['role'] == 'assistant' -%}" +
  `{%- if ns.tool -%}<｜tool▁outputs▁end｜>{%- set ns.tool = false -%}{%- else -%}${DEEPSEEK_SPECIAL.assistant}{%- if thinking is defined -%}</think>{%- endif -%}{%- endif -%}` +
  `{{ m['content'] }}${TOOL_CALLS}${DEEPSEEK_SPECIAL.end}` +
  "{%- elif m['role'] == 'tool' -%}" +
  "{%- if ns.tool -%}{{ '\\n' }}{%- else -%}<｜tool▁outputs▁begin｜>{%- set ns.tool = true -%}{%- endif -%}" +
  "<｜tool▁output▁begin｜>{{ m['content'] }}<｜tool▁output▁end｜>" +
  UNSUPPORTED_ROLE +
  '{%- endif -%}{%- endfor -%}' +
  '{%- if ns.tool -%}<｜tool▁outputs▁end｜>' +
  `{%- elif add_generation_prompt -%}${DEEPSEEK_SPECIAL.assistant}` +
  "{%- if thinking is defined -%}{{ '<think>' if thinking else '</think>' }}{%- endif -%}{%- endif -%}";

/** For vocabularies without DeepSeek's role tokens. */
export const PLAIN_CHAT_TEMPLATE =
  '{{ bos_token }}' +
  SYSTEM_PROMPT +
  "{%- if ns.sep -%}{{ '\\n\\n' }}{%- endif -%}" +
  '{%- for m in messages -%}' +
  "{%- if m['role'] == 'user' -%}{{ 'User: ' ~ m['content'] ~ '\\n' }}" +
  "{%- elif m['role'] == 'assistant' -%}{{ 'Assistant: ' ~ m['content'] ~ eos_token ~ '\\n' }}" +
  UNSUPPORTED_ROLE +
  '{%- endif -%}{%- endfor -%}' +
  "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}";

/** The built-in template that fits a vocabulary: DeepSeek's when its role tokens exist. */
export function builtinChatTemplate(hasToken: (token: string) => boolean): string {
  const isDeepSeek = Object.values(DEEPSEEK_SPECIAL).every(hasToken);
  return isDeepSeek ? DEEPSEEK_CHAT_TEMPLATE : PLAIN_CHAT_TEMPLATE;
}

/**
 * tokenizer_config.json `chat_template`: a string, or a list of `{name, template}` of which
 * "default" is used (as transformers does when no template name is given). Null when there is none.
 */
export function configChatTemplate(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return null;
  const entry = value.find((t): t is { name: string; template: string } => t?.name === 'default' && typeof t.template === 'string');
  return entry?.template ?? null;
}

/** A template compiled on first use; syntax and render errors are the request's 400. */
export class ChatTemplate {
  private compiled: Template | null = null;

  constructor(
    readonly source: string,
    /** bos_token, eos_token, ... as strings, passed like transformers' special_tokens_map. */
    private readonly specialTokens: Readonly<Record<string, unknown>>,
  ) {}

  render(messages: readonly ChatMessage[], options: ChatTemplateOptions): string {
    try {
      this.compiled ??= new Template(this.source);
      return this.compiled.render({
        ...this.specialTokens,
        ...options.templateKwargs,
        messages,
        add_generation_prompt: options.addGenerationPrompt,
      });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new EngineError('DSV_ERR_INVALID_REQUEST', `chat template failed: ${reason}`, { param: 'messages', cause: err });
    }
  }
}
