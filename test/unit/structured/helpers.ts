// A StructuredOutputCompiler over the default model's vocabulary (4096 byte-level BPE tokens,
// DeepSeek special tokens), shared by the structured-output unit tests.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyTokenBitmask } from '../../../src/engine/structured/token_bitmask.ts';
import { StructuredOutputCompiler } from '../../../src/engine/structured/grammar_compiler.ts';
import type { GrammarMatcher } from '../../../src/engine/structured/grammar_matcher.ts';
import { readEncodedVocab } from '../../../src/engine/structured/tokenizer_vocab.ts';
import { argmax } from '../../../src/common/select.ts';
import { loadTokenizer, type TextTokenizer } from '../../../src/server/tokenizer/tokenizer.ts';
import { randomRow } from '../sampling/helpers.ts';

export const DEFAULT_MODEL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../models/default');
export const VOCAB_SIZE = 4096;
export const EOS = 1;

let compiler: Promise<StructuredOutputCompiler> | null = null;

export function defaultCompiler(): Promise<StructuredOutputCompiler> {
  compiler ??= StructuredOutputCompiler.create(readEncodedVocab(path.join(DEFAULT_MODEL_DIR, 'tokenizer.json'), VOCAB_SIZE), [EOS]);
  return compiler;
}

export function defaultTokenizer(): TextTokenizer {
  const t = loadTokenizer(DEFAULT_MODEL_DIR);
  if (!t) throw new Error('models/default has no tokenizer');
  return t;
}

/**
 * Greedy decoding under a grammar with random logits (a stand-in for a random-weight model):
 * only the mask can make the output well-formed. Stops at EOS or after maxTokens.
 */
export async function decodeWithGrammar(matcher: GrammarMatcher, seed: number, maxTokens: number): Promise<{ ids: number[]; terminated: boolean }> {
  const ids: number[] = [];
  for (let step = 0; step < maxTokens; step++) {
    const row = randomRow(VOCAB_SIZE, seed * 100_003 + step, 3);
    if (applyTokenBitmask(row, await matcher.nextTokenBitmask()) === 0) throw new Error(`step ${step}: the grammar allows no token`);
    const token = argmax(row);
    if (!matcher.acceptToken(token)) throw new Error(`step ${step}: the matcher rejected masked-in token ${token}`);
    if (token === EOS) return { ids, terminated: matcher.isTerminated };
    ids.push(token);
  }
  return { ids, terminated: matcher.isTerminated };
}
