// Logprobs in the two OpenAI shapes: legacy completions ({tokens, token_logprobs, top_logprobs,
// text_offset}) and chat ({content: [{token, logprob, bytes, top_logprobs}]}).
import { assert } from '../../common/errors.ts';
import type { SampledLogprobs } from '../../engine/request.ts';
import { tokenLabel } from '../generation.ts';
import type { TextTokenizer } from '../tokenizer/tokenizer.ts';

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/**
 * Accumulates completions-style logprobs; text_offset[i] is where token i starts in the choice's
 * text. A token the text does not show (a BOS the tokenizer added to a text prompt, a special
 * token dropped by skip_special_tokens) takes no room.
 */
export class CompletionLogprobsBuilder {
  private offset: number;

  constructor(
    private readonly tokenizer: TextTokenizer | null,
    private readonly asTokenIds: boolean,
    startOffset = 0,
    private readonly skipSpecialTokens = true,
  ) {
    this.offset = startOffset;
  }

  /**
   * Formats entries (null = the first prompt token, which has no logprob). `shownText` is the text
   * these tokens appear as (the echoed prompt): a token advances the offset where the text shows it.
   */
  format(entries: readonly (SampledLogprobs | null)[], tokenIds: readonly number[], shownText?: string): CompletionLogprobs {
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    const start = this.offset;
    assert(entries.length === tokenIds.length, `${entries.length} logprob entries for ${tokenIds.length} tokens`);
    entries.forEach((e, i) => {
      const id = tokenIds[i]!; // same length, asserted above
      const label = tokenLabel(this.tokenizer, id, this.asTokenIds);
      out.tokens.push(label);
      out.token_logprobs.push(e ? e.logprob : null);
      out.top_logprobs.push(e ? Object.fromEntries(e.topLogprobs.map((t) => [tokenLabel(this.tokenizer, t.tokenId, this.asTokenIds), t.logprob])) : null);
      out.text_offset.push(this.offset);
      this.offset += this.width(id, label, shownText, this.offset - start);
    });
    if (shownText !== undefined && this.tokenizer && !this.asTokenIds) this.offset = start + shownText.length;
    return out;
  }

  /** Characters token `id` (shown as `label`) takes in the choice's text. */
  private width(id: number, label: string, shownText: string | undefined, at: number): number {
    if (this.asTokenIds || !this.tokenizer) return 0;
    const special = this.tokenizer.specialTokenIds.has(id);
    if (shownText !== undefined) return shownText.startsWith(label, at) || !special ? label.length : 0;
    return special && this.skipSpecialTokens ? 0 : label.length;
  }
}

/**
 * Appends b to a in place and returns a (b itself when a is null): accumulating a choice's
 * logprobs token by token stays linear (copying the lists on every token made a 2,048-token
 * choice cost 2 million element copies).
 */
export function mergeCompletionLogprobs(a: CompletionLogprobs | null, b: CompletionLogprobs): CompletionLogprobs {
  if (!a) return b;
  // One push per element, not push(...list): an echoed prompt can be longer than the argument limit.
  for (const t of b.tokens) a.tokens.push(t);
  for (const lp of b.token_logprobs) a.token_logprobs.push(lp);
  for (const top of b.top_logprobs) a.top_logprobs.push(top);
  for (const offset of b.text_offset) a.text_offset.push(offset);
  return a;
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[];
}

export function chatLogprobs(tokenizer: TextTokenizer | null, asTokenIds: boolean, entries: readonly SampledLogprobs[]): ChatTokenLogprob[] {
  const item = (tokenId: number, logprob: number) => {
    const token = tokenLabel(tokenizer, tokenId, asTokenIds);
    return { token, logprob, bytes: asTokenIds ? null : [...Buffer.from(token, 'utf8')] };
  };
  return entries.map((e) => ({ ...item(e.tokenId, e.logprob), top_logprobs: e.topLogprobs.map((t) => item(t.tokenId, t.logprob)) }));
}
