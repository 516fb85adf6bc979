// Trains a GPT-2-style byte-level BPE tokenizer and writes it as Hugging Face tokenizer.json +
// tokenizer_config.json with DeepSeek's special tokens, for test models and small experiments.
//
//   node --import tsx tools/tokenizer/train_bpe.ts --input FILE [--input FILE...] --vocab-size N --out DIR
//
// Algorithm: split text into GPT-2 pre-tokens, count distinct words, then repeatedly merge the most
// frequent adjacent symbol pair. Pair counts are updated incrementally: a merge touches only the
// words that contain the pair (an index pair -> words), and a lazy max-heap finds the next best pair
// (entries whose count is stale are skipped when popped). Ties go to the smaller (left, right) ids.
//
// Vocabulary layout (ids): 0 BOS, 1 EOS, 2..257 the 256 bytes, then merges, then <｜User｜>,
// <｜Assistant｜>, <｜pad｜>. All 256 bytes are present, so any UTF-8 text round-trips exactly.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEEPSEEK_CHAT_TEMPLATE } from '../../src/server/tokenizer/chat_template.ts';

export const BOS = '<｜begin▁of▁sentence｜>';
export const EOS = '<｜end▁of▁sentence｜>';
const TAIL_SPECIALS = ['<｜User｜>', '<｜Assistant｜>', '<｜pad｜>'] as const;
const FIRST_BYTE_ID = 2;
/** GPT-2's pre-tokenizer (the same pattern the ByteLevel pre-tokenizer applies at encode time). */
const PRE_TOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
/** Pair key = left * KEY_BASE + right; exact in a double for any vocabulary below KEY_BASE. */
const KEY_BASE = 1 << 21;

export interface TrainBpeOptions {
  /** Total vocabulary, special tokens included (>= 261). */
  readonly vocabSize: number;
  /** Pairs seen fewer times are never merged. */
  readonly minFrequency?: number;
  readonly modelMaxLength?: number;
}

export interface TrainedTokenizer {
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
  readonly numMerges: number;
  readonly vocabSize: number;
}

/** GPT-2's reversible map from bytes to printable characters (so a token is a plain string). */
export function bytesToUnicode(): string[] {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(printable(b) ? b : next++));
  return chars;
}

/** Distinct pre-tokens with their counts, as byte-level strings. */
function countWords(texts: Iterable<string>): Map<string, number> {
  const byteChars = bytesToUnicode();
  const encoder = new TextEncoder();
  const raw = new Map<string, number>();
  for (const text of texts) for (const [piece] of text.matchAll(PRE_TOKENIZE)) raw.set(piece, (raw.get(piece) ?? 0) + 1);
  const words = new Map<string, number>();
  for (const [piece, count] of raw) {
    const mapped = Array.from(encoder.encode(piece), (b) => byteChars[b]).join('');
    words.set(mapped, (words.get(mapped) ?? 0) + count);
  }
  return words;
}

/** Max-heap of (count, key) by count, then smaller key; may hold stale entries. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0 && this.before(i, (i - 1) >> 1)) i = this.swap(i, (i - 1) >> 1);
  }

  /** Removes the best entry; returns its [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastCount = this.counts.pop()!;
    const lastKey = this.keys.pop()!;
    if (this.keys.length === 0) return top;
    this.counts[0] = lastCount;
    this.keys[0] = lastKey;
    for (let i = 0; ;) {
      let best = i;
      for (const c of [2 * i + 1, 2 * i + 2]) if (c < this.keys.length && this.before(c, best)) best = c;
      if (best === i) return top;
      i = this.swap(i, best);
    }
  }

  private before(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): number {
    const { counts, keys } = this;
    [counts[i], counts[j]] = [counts[j]!, counts[i]!];
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
    return j;
  }
}

/** Merge state: words as symbol-id arrays, pair counts, and which words hold each pair. */
class BpeState {
  readonly pairCounts = new Map<number, number>();
  /** Words that held the pair at some point (may repeat or be stale; checked when used). */
  readonly pairWords = new Map<number, number[]>();
  readonly heap = new PairHeap();
  private readonly visited: Int32Array;
  private stamp = 0;

  constructor(
    readonly words: number[][],
    readonly counts: number[],
  ) {
    this.visited = new Int32Array(words.length);
    words.forEach((symbols, w) => {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i]! * KEY_BASE + symbols[i + 1]!;
        this.pairCounts.set(key, (this.pairCounts.get(key) ?? 0) + counts[w]!);
        this.indexWord(key, w);
      }
    });
    for (const [key, count] of this.pairCounts) this.heap.push(count, key);
  }

  /** The most frequent pair with its current count, or null when none reaches minFrequency. */
  popBest(minFrequency: number): { key: number; count: number } | null {
    while (this.heap.size > 0) {
      const [count, key] = this.heap.pop();
      if (this.pairCounts.get(key) !== count) continue; // stale entry
      return count >= minFrequency ? { key, count } : null;
    }
    return null;
  }

  /** Replaces every (left, right) in every word by `merged`, updating counts incrementally. */
  merge(key: number, merged: number): void {
    const left = Math.floor(key / KEY_BASE);
    const right = key % KEY_BASE;
    const changes = new Map<number, number>();
    const add = (k: number, d: number): void => void changes.set(k, (changes.get(k) ?? 0) + d);
    this.stamp++;
    for (const w of this.pairWords.get(key) ?? []) {
      if (this.visited[w] === this.stamp) continue;
      this.visited[w] = this.stamp;
      const word = this.words[w]!;
      const next = mergeWord(word, left, right, merged);
      if (next === null) continue;
      const f = this.counts[w]!;
      forEachPair(word, (k) => add(k, -f));
      forEachPair(next, (k, a, b) => {
        add(k, f);
        if (a === merged || b === merged) this.indexWord(k, w);
      });
      this.words[w] = next;
    }
    for (const [k, d] of changes) {
      if (d === 0) continue;
      const count = (this.pairCounts.get(k) ?? 0) + d;
      if (count > 0) {
        this.pairCounts.set(k, count);
        this.heap.push(count, k);
      } else this.pairCounts.delete(k);
    }
    this.pairWords.delete(key);
  }

  private indexWord(key: number, w: number): void {
    const list = this.pairWords.get(key);
    if (list) list.push(w);
    else this.pairWords.set(key, [w]);
  }
}

function forEachPair(symbols: readonly number[], fn: (key: number, a: number, b: number) => void): void {
  for (let i = 0; i + 1 < symbols.length; i++) {
    const a = symbols[i]!;
    const b = symbols[i + 1]!;
    fn(a * KEY_BASE + b, a, b);
  }
}

/** `symbols` with non-overlapping (left, right) replaced left to right, or null if absent. */
function mergeWord(symbols: readonly number[], left: number, right: number, merged: number): number[] | null {
  let out: number[] | null = null;
  for (let i = 0; i < symbols.length; i++) {
    if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
      out ??= symbols.slice(0, i);
      out.push(merged);
      i++;
    } else out?.push(symbols[i]!);
  }
  return out;
}

/** Learns merges over `texts`; returns the tokenizer files' contents. */
export function trainBpe(texts: Iterable<string>, options: TrainBpeOptions): TrainedTokenizer {
  const numModelTokens = options.vocabSize - TAIL_SPECIALS.length;
  if (!Number.isInteger(options.vocabSize) || numModelTokens < FIRST_BYTE_ID + 256 || options.vocabSize >= KEY_BASE) {
    throw new Error(`--vocab-size must be an integer in [${FIRST_BYTE_ID + 256 + TAIL_SPECIALS.length}, ${KEY_BASE})`);
  }
  const strings = [BOS, EOS, ...bytesToUnicode()];
  const idOf = new Map(strings.map((s, id) => [s, id]));
  const wordCounts = countWords(texts);
  const words = [...wordCounts.keys()].map((word) => Array.from(word, (ch) => idOf.get(ch)!));
  const state = new BpeState(words, [...wordCounts.values()]);
  const merges: string[] = [];
  while (strings.length < numModelTokens) {
    const best = state.popBest(options.minFrequency ?? 2);
    if (!best) break;
    const [a, b] = [Math.floor(best.key / KEY_BASE), best.key % KEY_BASE];
    const text = strings[a]! + strings[b]!;
    // Two merges can spell the same string ("ab"+"c", "a"+"bc"): both map to one id, like HF's trainer.
    let id = idOf.get(text);
    if (id === undefined) {
      id = strings.push(text) - 1;
      idOf.set(text, id);
    }
    merges.push(`${strings[a]} ${strings[b]}`);
    state.merge(best.key, id);
  }
  return buildFiles(strings, merges, options.modelMaxLength ?? 16384);
}

function addedToken(id: number, content: string): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function buildFiles(strings: readonly string[], merges: readonly string[], modelMaxLength: number): TrainedTokenizer {
  const vocab = Object.fromEntries(strings.map((s, id) => [s, id]));
  const tail = TAIL_SPECIALS.map((content, i) => addedToken(strings.length + i, content));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const bosItem = { SpecialToken: { id: BOS, type_id: 0 } };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [addedToken(0, BOS), addedToken(1, EOS), ...tail],
    normalizer: null,
    pre_tokenizer: byteLevel,
    // BOS via the post-processor too, so loaders that ignore add_bos_token agree.
    post_processor: {
      type: 'TemplateProcessing',
      single: [bosItem, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [bosItem, { Sequence: { id: 'A', type_id: 0 } }, bosItem, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [BOS]: { id: BOS, ids: [0], tokens: [BOS] } },
    },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: true,
    add_eos_token: false,
    bos_token: BOS,
    eos_token: EOS,
    pad_token: '<｜pad｜>',
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    chat_template: DEEPSEEK_CHAT_TEMPLATE,
  };
  return { tokenizerJson, tokenizerConfig, numMerges: merges.length, vocabSize: strings.length + tail.length };
}

export function writeTokenizer(dir: string, trained: TrainedTokenizer): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(trained.tokenizerJson, null, 1) + '\n');
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(trained.tokenizerConfig, null, 2) + '\n');
}

function main(): void {
  const { values } = parseArgs({
    options: {
      input: { type: 'string', multiple: true },
      'vocab-size': { type: 'string' },
      out: { type: 'string' },
      'min-frequency': { type: 'string' },
      'model-max-length': { type: 'string' },
    },
  });
  if (!values.input?.length || !values['vocab-size'] || !values.out) {
    console.error('usage: train_bpe.ts --input FILE [--input FILE...] --vocab-size N --out DIR [--min-frequency 2] [--model-max-length 16384]');
    process.exit(2);
  }
  const texts = values.input.map((path) => readFileSync(path, 'utf8'));
  const numBytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  const start = performance.now();
  const trained = trainBpe(texts, {
    vocabSize: Number(values['vocab-size']),
    minFrequency: values['min-frequency'] === undefined ? undefined : Number(values['min-frequency']),
    modelMaxLength: values['model-max-length'] === undefined ? undefined : Number(values['model-max-length']),
  });
  const seconds = (performance.now() - start) / 1000;
  writeTokenizer(values.out, trained);
  console.log(
    `trained ${trained.numMerges} merges (vocab ${trained.vocabSize}) on ${(numBytes / 1e6).toFixed(2)} MB in ${seconds.toFixed(2)} s -> ${values.out}`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
