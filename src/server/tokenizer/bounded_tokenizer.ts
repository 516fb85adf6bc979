// The tokenizer as the routes see it: the model's, behind a character budget, with the work a
// request controls moved off the HTTP thread. Tokenizing costs about a microsecond per character,
// so a 30 MB prompt would stall every stream and health check for tens of seconds: a text that
// cannot fit in max-model-len tokens is refused before any of that work, a long one is encoded in
// the text worker, and chat templates (which may loop as long as their input makes them) always
// render there, under a deadline.
import { EngineError } from '../../common/errors.ts';
import type { IncrementalDetokenizer } from './incremental_detokenizer.ts';
import type { TextWorkerClient } from './text_worker_client.ts';
import type { ChatMessage, ChatTemplateOptions, TextTokenizer } from './tokenizer.ts';

/** Texts up to this long are encoded inline (a few milliseconds); longer ones in the text worker. */
export const INLINE_ENCODE_MAX_CHARS = 4096;

/**
 * At most maxModelLen x maxTokenChars characters can become maxModelLen tokens: every token covers
 * at most maxTokenChars characters of the text (exact for byte-level BPE and metaspace
 * vocabularies, whose entries spell every character they cover).
 */
export function promptCharBudget(maxModelLen: number, maxTokenChars: number): number {
  return maxModelLen * maxTokenChars;
}

export class BoundedTokenizer implements TextTokenizer {
  readonly maxChars: number;

  constructor(
    private readonly inner: TextTokenizer,
    private readonly maxModelLen: number,
    /** Null: everything runs inline (tests of the budget alone). */
    private readonly worker: TextWorkerClient | null = null,
  ) {
    this.maxChars = promptCharBudget(maxModelLen, inner.maxTokenChars);
  }

  get vocabSize(): number {
    return this.inner.vocabSize;
  }
  get toolCallFormat(): TextTokenizer['toolCallFormat'] {
    return this.inner.toolCallFormat;
  }
  get bosTokenId(): number | null {
    return this.inner.bosTokenId;
  }
  get eosTokenId(): number | null {
    return this.inner.eosTokenId;
  }
  get specialTokenIds(): ReadonlySet<number> {
    return this.inner.specialTokenIds;
  }
  get hasChatTemplate(): boolean {
    return this.inner.hasChatTemplate;
  }
  get maxTokenChars(): number {
    return this.inner.maxTokenChars;
  }

  /** Throws DSV_ERR_CONTEXT_LENGTH (400) when a text of `numChars` characters cannot fit in max-model-len tokens. */
  checkLength(numChars: number): void {
    if (numChars <= this.maxChars) return;
    throw new EngineError(
      'DSV_ERR_CONTEXT_LENGTH',
      `the prompt has ${numChars} characters, which cannot fit in max-model-len ${this.maxModelLen} tokens: a token of this model covers at most ${this.inner.maxTokenChars} characters, so at most ${this.maxChars} characters are accepted`,
    );
  }

  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    this.checkLength(text.length);
    return this.inner.encode(text, options);
  }

  async encodeAsync(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> {
    this.checkLength(text.length);
    if (this.worker === null || text.length <= INLINE_ENCODE_MAX_CHARS) return this.inner.encode(text, options);
    return this.worker.encode(text, options?.addSpecialTokens ?? true);
  }

  async encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions): Promise<number[]> {
    this.checkMessages(messages);
    if (this.worker === null) return this.inner.encode(this.inner.applyChatTemplate(messages, options), { addSpecialTokens: false });
    return this.worker.encodeChat(messages, options);
  }

  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string {
    return this.inner.decode(ids, options);
  }

  tokenText(id: number, precedingIds?: readonly number[]): string {
    return this.inner.tokenText(id, precedingIds);
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions): string {
    this.checkMessages(messages);
    return this.inner.applyChatTemplate(messages, options);
  }

  /** Messages whose text alone is over the budget are refused before rendering (a template includes them). */
  private checkMessages(messages: readonly ChatMessage[]): void {
    let numChars = 0;
    for (const m of messages) numChars += m.content.length;
    this.checkLength(numChars);
  }

  createDetokenizer(promptIds: readonly number[], skipSpecialTokens: boolean): IncrementalDetokenizer {
    return this.inner.createDetokenizer(promptIds, skipSpecialTokens);
  }
}
