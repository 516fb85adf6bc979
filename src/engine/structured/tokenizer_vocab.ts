// The vocabulary XGrammar needs, read by the engine worker itself from the model's tokenizer.json
// (the worker never tokenizes, and 100k+ token strings are cheaper to read from disk than to post
// from the HTTP thread). Follows XGrammar's TokenizerInfo.from_huggingface: tokens as stored
// (encoded), the decoder kind, and whether encoding prepends a space.
import { readFileSync } from 'node:fs';
import { CheckpointError } from '../../common/errors.ts';

export type VocabType = 'raw' | 'byte_fallback' | 'byte_level';

export interface EncodedVocab {
  /** Token strings by id, length = the model's logits width; ids without a token are "". */
  readonly tokens: readonly string[];
  readonly vocabType: VocabType;
  readonly prependSpace: boolean;
}

type Json = Record<string, unknown>;

/**
 * @param vocabSize the model's logits width (config.json vocab_size); it may exceed the tokenizer's
 *   vocabulary (padding: those ids get "" and XGrammar never allows them), and tokenizer ids at or
 *   above it are dropped (the model cannot produce them).
 *
 * Added tokens marked `special` become "": XGrammar treats empty tokens as special and never lets
 * them appear inside matched text (a BOS or role token decoded as text would otherwise satisfy
 * `[^"]*`). Stop tokens are passed to XGrammar separately, so EOS stays allowed where the grammar
 * may end. Non-special added tokens (e.g. DeepSeek's tool-call markers) keep their text, so a
 * grammar literal "<｜tool▁sep｜>" matches either that token or its spelling in bytes.
 */
export function readEncodedVocab(tokenizerJsonPath: string, vocabSize: number): EncodedVocab {
  const json = readTokenizerJson(tokenizerJsonPath);
  const model = (json.model ?? {}) as Json;
  const tokens = new Array<string>(vocabSize).fill('');
  const vocab = model.vocab;
  if (vocab !== null && typeof vocab === 'object' && !Array.isArray(vocab)) {
    for (const [token, id] of Object.entries(vocab as Record<string, unknown>)) {
      if (typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < vocabSize) tokens[id] = token;
    }
  } else if (Array.isArray(vocab)) {
    // Unigram models store [piece, score] pairs in id order.
    vocab.forEach((entry, id) => {
      if (id < vocabSize && Array.isArray(entry) && typeof entry[0] === 'string') tokens[id] = entry[0];
    });
  } else {
    throw new CheckpointError('DSV_ERR_CONFIG', tokenizerJsonPath, 'key "model.vocab" is missing: cannot build the vocabulary for structured outputs');
  }
  for (const added of (json.added_tokens ?? []) as Json[]) {
    const id = added.id;
    if (typeof id !== 'number' || id < 0 || id >= vocabSize || typeof added.content !== 'string') continue;
    tokens[id] = added.special === true ? '' : added.content;
  }
  return { tokens, vocabType: detectVocabType(json), prependSpace: detectPrependSpace(json) };
}

function readTokenizerJson(path: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CheckpointError('DSV_ERR_CONFIG', path, `cannot read for structured outputs: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CheckpointError('DSV_ERR_CONFIG', path, 'expected a JSON object');
  return value as Json;
}

/** Every decoder in the tree (a Sequence nests its parts). */
function decoderTypes(decoder: unknown): string[] {
  if (decoder === null || typeof decoder !== 'object') return [];
  const d = decoder as Json;
  const own = typeof d.type === 'string' ? [d.type] : [];
  return Array.isArray(d.decoders) ? [...own, ...d.decoders.flatMap(decoderTypes)] : own;
}

function detectVocabType(json: Json): VocabType {
  const types = decoderTypes(json.decoder);
  if (types.includes('ByteFallback')) return 'byte_fallback';
  if (types.includes('ByteLevel')) return 'byte_level';
  return 'raw';
}

/** Metaspace pre-tokenizers (and Llama's Prepend("▁") normaliser) put a space before the text. */
function detectPrependSpace(json: Json): boolean {
  const parts = (node: unknown): Json[] => {
    if (node === null || typeof node !== 'object') return [];
    const n = node as Json;
    const children = [n.pretokenizers, n.normalizers].flatMap((c) => (Array.isArray(c) ? c.flatMap(parts) : []));
    return [n, ...children];
  };
  const metaspace = parts(json.pre_tokenizer).some(
    (p) => p.type === 'Metaspace' && (p.prepend_scheme === 'always' || p.prepend_scheme === 'first' || p.add_prefix_space === true),
  );
  const prepend = parts(json.normalizer).some((p) => p.type === 'Prepend' && p.prepend === '▁');
  return metaspace || prepend;
}
