// The text side of the server: a model directory's Hugging Face tokenizer (tokenizer.json +
// tokenizer_config.json, run by @huggingface/tokenizers) behind a small interface in token ids.
// The engine never sees text; this module is its only translator.
import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { CheckpointError } from '../../common/errors.ts';
import { modelFileExists, resolveModelFile } from '../../common/model_files.ts';
import { builtinChatTemplate, ChatTemplate, configChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat_template.ts';
import { IncrementalDetokenizer } from './incremental_detokenizer.ts';
import { templateToolCallFormat, type ToolCallFormat } from '../tools/deepseek_markup.ts';

export type { ChatMessage, ChatTemplateOptions } from './chat_template.ts';

export interface TextTokenizer {
  /** Largest token id + 1 over the vocabulary and added tokens (the model's embedding may be larger). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** Ids dropped by `skipSpecialTokens`: added tokens marked special, plus the config's special tokens. */
  readonly specialTokenIds: ReadonlySet<number>;
  /** True when the model ships its own chat template; applyChatTemplate falls back to a built-in one. */
  readonly hasChatTemplate: boolean;
  /** The tool-call markup the chat template renders; null when it renders no tool calls. */
  readonly toolCallFormat: ToolCallFormat | null;
  /**
   * The most characters of text one token can stand for: the longest vocabulary entry (a
   * byte-level or metaspace entry has at least one character per character of text it covers).
   */
  readonly maxTokenChars: number;
  /**
   * `addSpecialTokens` (default true) adds BOS/EOS as tokenizer_config `add_bos_token` /
   * `add_eos_token` say, or as tokenizer.json's post-processor does when the config sets neither.
   * Encode a rendered chat template with `addSpecialTokens: false`: the template writes the BOS itself.
   */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Ids outside the vocabulary decode to nothing (as vLLM does). */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /**
   * The text of one token, as vLLM puts it in a logprobs `token` field: `decode([id])`, so a lone
   * piece of a multi-byte character is U+FFFD ("\uFFFD", bytes [239, 191, 189]), not "bytes:\xNN".
   * With `precedingIds` (the sampled tokens before it) such a token is fixed up like vLLM's
   * `_correct_decoded_token`: the completing token gets the whole character, unfinished ones "".
   */
  tokenText(id: number, precedingIds?: readonly number[]): string;
  /** Renders messages to the prompt text; an invalid template or message is an EngineError (400). */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions): string;
  /** encode(), possibly off the calling thread (the server's BoundedTokenizer moves long texts to a worker). */
  encodeAsync(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]>;
  /** The chat prompt's token ids: applyChatTemplate, then encode without adding special tokens (the template has them). */
  encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions): Promise<number[]>;
  /** A streaming decoder for one choice; `promptIds` supply left context for the first tokens. */
  createDetokenizer(promptIds: readonly number[], skipSpecialTokens: boolean): IncrementalDetokenizer;
}

const TOKENIZER_FILE = 'tokenizer.json';
const CONFIG_FILE = 'tokenizer_config.json';
const TEMPLATE_FILE = 'chat_template.jinja';
const REPLACEMENT = '\uFFFD';
/** A UTF-8 character spans at most 4 bytes, so 4 preceding tokens can always complete it. */
const MAX_CORRECTION_CONTEXT = 4;
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
/** Used when tokenizer_config.json names no bos/eos token. */
const KNOWN_BOS = ['<｜begin▁of▁sentence｜>', '<s>', '<|begin_of_text|>', '<|startoftext|>'];
const KNOWN_EOS = ['<｜end▁of▁sentence｜>', '</s>', '<|end_of_text|>', '<|endoftext|>', '<|im_end|>'];

/**
 * Loads `modelDir`'s tokenizer. Null when there is no tokenizer.json (the server then accepts token-id
 * prompts only). A missing tokenizer_config.json is allowed; unreadable or invalid files throw a
 * CheckpointError (DSV_ERR_CONFIG) whose message starts with the file's path.
 */
export function loadTokenizer(modelDir: string): TextTokenizer | null {
  // Each file gets config.json's checks before it is opened: a regular file inside the directory.
  const checked = (name: string): string | null => (modelFileExists(modelDir, name) ? resolveModelFile(modelDir, name, name, name, 'DSV_ERR_CONFIG') : null);
  const tokenizerPath = checked(TOKENIZER_FILE);
  if (tokenizerPath === null) return null;
  const configPath = checked(CONFIG_FILE);
  const templatePath = checked(TEMPLATE_FILE);
  const tokenizerJson = readJsonObject(tokenizerPath);
  const config = configPath === null ? {} : readJsonObject(configPath);
  // transformers saves the template to chat_template.jinja and prefers it over the config entry.
  const template = templatePath === null ? configChatTemplate(config.chat_template) : readText(templatePath);
  return new HfTextTokenizer(tokenizerPath, tokenizerJson, config, template);
}

type Json = Record<string, unknown>;

class HfTextTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly specialTokenIds: ReadonlySet<number>;
  readonly hasChatTemplate: boolean;
  readonly toolCallFormat: ToolCallFormat | null;
  readonly maxTokenChars: number;
  private readonly hf: Tokenizer;
  private readonly chatTemplate: ChatTemplate;
  /** tokenizer_config add_bos_token/add_eos_token, or null to let the post-processor decide. */
  private readonly addBosEos: { bos: boolean; eos: boolean } | null;
  private readonly cleanUpSpaces: boolean;

  constructor(path: string, tokenizerJson: Json, rawConfig: Json, template: string | null) {
    const config = normalizeConfig(rawConfig);
    try {
      // tokenizers.js iterates added_tokens unconditionally; older files may omit it.
      this.hf = new Tokenizer({ added_tokens: [], ...tokenizerJson }, config);
    } catch (err) {
      throw new CheckpointError('DSV_ERR_CONFIG', path, `not a usable tokenizer: ${errorMessage(err)}`);
    }
    const vocab = this.hf.get_vocab(true);
    let maxId = -1;
    let maxChars = 1;
    for (const [token, id] of vocab) {
      maxId = Math.max(maxId, id);
      // Ids without an entry (holes in the vocabulary) map from an undefined key.
      if (typeof token === 'string') maxChars = Math.max(maxChars, token.length);
    }
    this.vocabSize = maxId + 1;
    this.maxTokenChars = maxChars;
    const idOf = (token: unknown): number | null => (typeof token === 'string' ? (vocab.get(token) ?? null) : null);
    this.bosTokenId = idOf(config.bos_token) ?? firstKnown(KNOWN_BOS, idOf);
    this.eosTokenId = idOf(config.eos_token) ?? firstKnown(KNOWN_EOS, idOf);
    this.specialTokenIds = collectSpecialIds(this.hf, config, idOf);
    const explicit = typeof config.add_bos_token === 'boolean' || typeof config.add_eos_token === 'boolean';
    this.addBosEos = explicit ? { bos: config.add_bos_token === true, eos: config.add_eos_token === true } : null;
    // tokenizers.js defaults to cleaning up (" ." -> "."), which breaks round trips; transformers no longer does.
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
    this.hasChatTemplate = template !== null;
    const tokenText = (id: number | null): string => (id === null ? '' : (this.hf.id_to_token(id) ?? ''));
    const specials = templateSpecialTokens(config);
    this.chatTemplate = template
      ? new ChatTemplate(template, specials)
      : new ChatTemplate(
          builtinChatTemplate((t) => vocab.has(t)),
          { ...specials, bos_token: tokenText(this.bosTokenId), eos_token: tokenText(this.eosTokenId) },
        );
    this.toolCallFormat = templateToolCallFormat(this.chatTemplate.source);
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const addSpecialTokens = options.addSpecialTokens ?? true;
    if (!addSpecialTokens || this.addBosEos === null) {
      return [...this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids];
    }
    const ids = [...this.hf.encode(text, { add_special_tokens: false }).ids];
    if (this.addBosEos.bos && this.bosTokenId !== null) ids.unshift(this.bosTokenId);
    if (this.addBosEos.eos && this.eosTokenId !== null) ids.push(this.eosTokenId);
    return ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const kept = ids.filter((id) => this.hf.id_to_token(id) !== undefined && !(skip && this.specialTokenIds.has(id)));
    if (kept.length === 0) return ''; // tokenizers.js throws on an empty list
    return this.hf.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: this.cleanUpSpaces });
  }

  tokenText(id: number, precedingIds?: readonly number[]): string {
    const text = this.decode([id]);
    if (precedingIds === undefined || !text.endsWith(REPLACEMENT)) return text;
    return this.correctPartialToken(id, precedingIds);
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions): string {
    return this.chatTemplate.render(messages, options);
  }

  async encodeAsync(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> {
    return this.encode(text, options);
  }

  async encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions): Promise<number[]> {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  createDetokenizer(promptIds: readonly number[], skipSpecialTokens: boolean): IncrementalDetokenizer {
    return new IncrementalDetokenizer(this, { contextIds: promptIds, skipSpecialTokens });
  }

  /**
   * vLLM's logprobs fix for byte tokens: decode the token after 1..4 preceding ones until the text
   * no longer ends in U+FFFD, then drop the text of the "clean" context (context tokens that were
   * themselves unfinished pieces are credited to this token). "" while still unfinished.
   */
  private correctPartialToken(id: number, precedingIds: readonly number[]): string {
    const maxContext = Math.min(precedingIds.length, MAX_CORRECTION_CONTEXT);
    for (let n = 1; n <= maxContext; n++) {
      const context = precedingIds.slice(precedingIds.length - n);
      const full = this.decode([...context, id]);
      if (full.endsWith(REPLACEMENT)) continue;
      let cleanEnd = context.length;
      while (cleanEnd > 0 && this.decode(context.slice(cleanEnd - 1, cleanEnd)).endsWith(REPLACEMENT)) cleanEnd--;
      const cleanPrefix = this.decode(context.slice(0, cleanEnd));
      if (full.startsWith(cleanPrefix)) return full.slice(cleanPrefix.length);
      let common = 0;
      while (common < cleanPrefix.length && cleanPrefix[common] === full[common]) common++;
      return full.slice(common);
    }
    return '';
  }
}

/** Special tokens may be written as strings or as AddedToken objects ({"content": ...}). */
function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as Json).content === 'string') return (value as Json).content as string;
  return null;
}

/** The config with its special tokens as plain strings, which is what tokenizers.js expects. */
function normalizeConfig(raw: Json): Json {
  const config: Json = { ...raw };
  for (const key of SPECIAL_TOKEN_KEYS) {
    const content = tokenContent(raw[key]);
    if (content === null) delete config[key];
    else config[key] = content;
  }
  if (Array.isArray(raw.additional_special_tokens)) {
    config.additional_special_tokens = raw.additional_special_tokens.map(tokenContent).filter((t): t is string => t !== null);
  } else delete config.additional_special_tokens;
  return config;
}

function collectSpecialIds(hf: Tokenizer, config: Json, idOf: (token: unknown) => number | null): Set<number> {
  const ids = new Set<number>();
  for (const [id, token] of hf.get_added_tokens_decoder()) if (token.special) ids.add(id);
  const named = [...SPECIAL_TOKEN_KEYS.map((key) => config[key]), ...((config.additional_special_tokens as unknown[]) ?? [])];
  for (const token of named) {
    const id = idOf(token);
    if (id !== null) ids.add(id);
  }
  return ids;
}

/** Variables transformers passes to templates from special_tokens_map; absent ones stay undefined. */
function templateSpecialTokens(config: Json): Json {
  const vars: Json = {};
  for (const key of SPECIAL_TOKEN_KEYS) if (typeof config[key] === 'string') vars[key] = config[key];
  if (config.additional_special_tokens) vars.additional_special_tokens = config.additional_special_tokens;
  return vars;
}

function firstKnown(tokens: readonly string[], idOf: (token: unknown) => number | null): number | null {
  for (const token of tokens) {
    const id = idOf(token);
    if (id !== null) return id;
  }
  return null;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CheckpointError('DSV_ERR_CONFIG', path, `cannot read: ${errorMessage(err)}`);
  }
}

function readJsonObject(path: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(readText(path));
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError('DSV_ERR_CONFIG', path, `not valid JSON: ${errorMessage(err)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CheckpointError('DSV_ERR_CONFIG', path, 'expected a JSON object');
  }
  return value as Json;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
