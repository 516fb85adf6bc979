// Streams the text of generated token ids, one delta per push, by re-decoding only a small window
// (vLLM's prefix_offset/read_offset scheme, itself from text-generation-inference):
//
//   ids:  ... [prefixOffset ........ readOffset) [readOffset ...... end)
//              already emitted, decoded again     not emitted yet
//              only as left context
//
// delta = decode(ids[prefix:]) minus decode(ids[prefix:read]). Decoding with a left context makes
// tokenizers whose text depends on the neighbour (SentencePiece "▁" leading spaces stripped at the
// start of a decode, cleanup rules) produce the same text as a full decode. While the window's text
// ends in U+FFFD it may be a multi-byte character split across tokens, so nothing is emitted until
// a later token completes it (or flush() at the end gives up and emits the U+FFFD).

/** What the detokenizer needs from a tokenizer. */
export interface IdDecoder {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
}

export interface IncrementalDetokenizerOptions {
  /** The prompt's ids (only the last few are kept): left context for the first generated tokens. */
  readonly contextIds?: readonly number[];
  readonly skipSpecialTokens?: boolean;
}

const REPLACEMENT = '\uFFFD';
/** Prompt tokens kept as left context (vLLM keeps 5 for the prefix window). */
const NUM_CONTEXT_TOKENS = 5;
/**
 * A UTF-8 character spans at most 4 bytes, so at most 4 byte tokens; tokens that decode to nothing
 * (skipped special tokens) also wait. Past this many pending tokens, stop waiting (see
 * advanceOverInvalidTail): the window stays bounded, so every push costs O(new tokens).
 */
const MAX_PENDING_TOKENS = 8;
/** Drop ids left of prefixOffset once this many pile up (amortised O(1) memory per token). */
const COMPACT_AT = 256;

export class IncrementalDetokenizer {
  private ids: number[];
  private prefixOffset: number;
  private readOffset: number;
  /** decode(ids[prefixOffset:readOffset]), cached: it changes only when the offsets move. */
  private prefixText: string;
  private readonly skipSpecialTokens: boolean;

  constructor(
    private readonly decoder: IdDecoder,
    options: IncrementalDetokenizerOptions = {},
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens ?? false;
    this.ids = (options.contextIds ?? []).slice(-NUM_CONTEXT_TOKENS);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
    this.prefixText = this.decodeRange(0, this.readOffset);
  }

  /** Appends generated ids; returns the text that became final (possibly ""). */
  push(newIds: readonly number[]): string {
    let out = '';
    // One step per token, as vLLM does: a char completed mid-batch is emitted even if the batch's
    // last token starts another incomplete one.
    for (const id of newIds) {
      this.ids.push(id);
      out += this.step(false);
    }
    this.compact();
    return out;
  }

  /** End of the sequence: emits whatever is still held back (an unfinished character becomes U+FFFD). */
  flush(): string {
    return this.readOffset < this.ids.length ? this.step(true) : '';
  }

  private step(force: boolean): string {
    const fullText = this.decodeRange(this.prefixOffset, this.ids.length);
    const isFinal = fullText.length > this.prefixText.length && !fullText.endsWith(REPLACEMENT);
    if (force || isFinal) return this.advance(this.ids.length, fullText);
    if (this.ids.length - this.readOffset <= MAX_PENDING_TOKENS) return '';
    return this.advanceOverInvalidTail();
  }

  /**
   * Too many tokens held back. Advance to the last cut whose text does not end in U+FFFD (a clean
   * character boundary: later bytes cannot change the text before it), keeping at least one token
   * pending; only if there is none is the tail truly broken bytes, and it is emitted as is.
   */
  private advanceOverInvalidTail(): string {
    for (let cut = this.ids.length - 1; cut > this.readOffset; cut--) {
      const text = this.decodeRange(this.prefixOffset, cut);
      if (!text.endsWith(REPLACEMENT)) return this.advance(cut, text);
    }
    return this.advance(this.ids.length, this.decodeRange(this.prefixOffset, this.ids.length));
  }

  /** Emits `text` (the decode of ids[prefixOffset:end]) past the prefix and slides the window. */
  private advance(end: number, text: string): string {
    const delta = textAfter(this.prefixText, text);
    this.prefixOffset = this.readOffset;
    this.readOffset = end;
    this.prefixText = this.decodeRange(this.prefixOffset, this.readOffset);
    return delta;
  }

  private decodeRange(start: number, end: number): string {
    if (start >= end) return '';
    return this.decoder.decode(this.ids.slice(start, end), { skipSpecialTokens: this.skipSpecialTokens });
  }

  private compact(): void {
    if (this.prefixOffset < COMPACT_AT) return;
    this.ids = this.ids.slice(this.prefixOffset);
    this.readOffset -= this.prefixOffset;
    this.prefixOffset = 0;
  }
}

/**
 * The part of `full` after `prefix`. Normally `full` starts with `prefix`; if a decoder rewrote the
 * boundary (cleanup rules), fall back to the text after their common prefix, as vLLM does for logprobs.
 */
function textAfter(prefix: string, full: string): string {
  if (full.startsWith(prefix)) return full.slice(prefix.length);
  let common = 0;
  while (common < prefix.length && common < full.length && prefix[common] === full[common]) common++;
  return full.slice(common);
}
