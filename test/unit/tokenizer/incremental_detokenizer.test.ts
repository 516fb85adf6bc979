import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IncrementalDetokenizer, type IdDecoder } from '../../../src/server/tokenizer/incremental_detokenizer.ts';
import { loadTokenizer, type TextTokenizer } from '../../../src/server/tokenizer/tokenizer.ts';
import { MULTILINGUAL, randomInt, randomPieces, seededRandom, trainedTokenizerDir } from './helpers.ts';

const tokenizer = loadTokenizer(trainedTokenizerDir()) as TextTokenizer;
const byteIds = (text: string): number[] => [...new TextEncoder().encode(text)].map((b) => 2 + b); // byte b has id 2 + b

/** Feeds `pieces` and flushes; returns every delta (flush last). */
function run(detok: IncrementalDetokenizer, pieces: readonly (readonly number[])[]): string[] {
  return [...pieces.map((p) => detok.push(p)), detok.flush()];
}

describe('IncrementalDetokenizer', () => {
  it('equals the full decode for random token sequences fed in random pieces', () => {
    const rand = seededRandom(7);
    for (let trial = 0; trial < 300; trial++) {
      const ids = Array.from({ length: 1 + randomInt(rand, 60) }, () => randomInt(rand, tokenizer.vocabSize));
      const skip = trial % 2 === 1;
      const deltas = run(tokenizer.createDetokenizer([], skip), randomPieces(rand, ids, 5));
      assert.equal(deltas.join(''), tokenizer.decode(ids, { skipSpecialTokens: skip }), `trial ${trial}: ${ids}`);
    }
  });

  it('continues the prompt text exactly when given the prompt as context', () => {
    const rand = seededRandom(11);
    const promptIds = tokenizer.encode('Prompt: 你好 and café ', { addSpecialTokens: true });
    for (let trial = 0; trial < 100; trial++) {
      const ids = Array.from({ length: 1 + randomInt(rand, 40) }, () => randomInt(rand, tokenizer.vocabSize));
      const deltas = run(tokenizer.createDetokenizer(promptIds, false), randomPieces(rand, ids, 4));
      const full = tokenizer.decode([...promptIds, ...ids]);
      const prompt = tokenizer.decode(promptIds);
      assert.equal(prompt + deltas.join(''), full, `trial ${trial}`);
    }
  });

  it('never emits U+FFFD for valid text split inside multi-byte characters', () => {
    const rand = seededRandom(3);
    const texts = [MULTILINGUAL, '🙂', '👨‍👩‍👧🇫🇷', '日本語のテキスト', 'a😀b😀c'];
    for (const text of texts) {
      // Single bytes (every emoji split across four tokens) and the BPE's own pieces of characters.
      for (const ids of [byteIds(text), tokenizer.encode(text, { addSpecialTokens: false })]) {
        for (let trial = 0; trial < 5; trial++) {
          const deltas = run(tokenizer.createDetokenizer([], false), randomPieces(rand, ids, trial === 0 ? 1 : 3));
          for (const d of deltas) assert.ok(!d.includes('\uFFFD'), `delta ${JSON.stringify(d)} of ${JSON.stringify(text)}`);
          assert.equal(deltas.join(''), text);
        }
      }
    }
  });

  it('emits a character as soon as its last byte arrives', () => {
    const detok = tokenizer.createDetokenizer([], false);
    const [a, b, c, d] = byteIds('🙂') as [number, number, number, number]; // 4 UTF-8 bytes
    assert.deepEqual([detok.push([a]), detok.push([b]), detok.push([c]), detok.push([d, ...byteIds('x')])], ['', '', '', '🙂x']);
    assert.equal(detok.flush(), '');
  });

  it('flushes an unfinished character as U+FFFD at the end', () => {
    const detok = tokenizer.createDetokenizer([], false);
    assert.equal(detok.push([...byteIds('ok'), ...byteIds('🙂').slice(0, 2)]), 'ok');
    assert.equal(detok.flush(), '\uFFFD');
  });

  it('skips special tokens when asked', () => {
    const ids = tokenizer.encode('<｜User｜>hi<｜Assistant｜>there<｜end▁of▁sentence｜>', { addSpecialTokens: true });
    assert.equal(
      run(
        tokenizer.createDetokenizer([], true),
        ids.map((id) => [id]),
      ).join(''),
      'hithere',
    );
    assert.equal(run(tokenizer.createDetokenizer([], false), [ids]).join(''), tokenizer.decode(ids));
  });

  it('keeps leading spaces that depend on the previous token (SentencePiece-style decoders)', () => {
    // "▁" marks a word start; like Metaspace, a decode drops the space of its first token.
    const pieces = ['▁Hello', '▁world', ',', '▁how', '▁are', '▁you'];
    const metaspace: IdDecoder = {
      decode: (ids) =>
        ids
          .map((i) => pieces[i])
          .join('')
          .replaceAll('▁', ' ')
          .replace(/^ /, ''),
    };
    const ids = [0, 1, 2, 3, 4, 5];
    assert.equal(
      run(
        new IncrementalDetokenizer(metaspace),
        ids.map((i) => [i]),
      ).join(''),
      'Hello world, how are you',
    );
    const afterPrompt = run(new IncrementalDetokenizer(metaspace, { contextIds: [0, 1, 2] }), [[3], [4, 5]]);
    assert.deepEqual(afterPrompt, [' how', ' are you', '']);
  });

  it('decodes only a bounded window per push (O(new tokens), not O(sequence))', () => {
    let maxWindow = 0;
    let numDecoded = 0;
    const spy: IdDecoder = {
      decode: (ids, options) => {
        maxWindow = Math.max(maxWindow, ids.length);
        numDecoded += ids.length;
        return tokenizer.decode(ids, options);
      },
    };
    const text = MULTILINGUAL.repeat(30);
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    const detok = new IncrementalDetokenizer(spy, { contextIds: tokenizer.encode(text) });
    assert.equal(
      run(
        detok,
        ids.map((id) => [id]),
      ).join(''),
      text,
    );
    assert.ok(maxWindow <= 12, `window ${maxWindow}`);
    assert.ok(numDecoded < 20 * ids.length, `decoded ${numDecoded} ids for ${ids.length} tokens`);
  });

  it('does not buffer forever behind invalid bytes', () => {
    const detok = tokenizer.createDetokenizer([], false);
    const continuationBytes = Array.from({ length: 40 }, () => 2 + 0x80); // never form a character
    let emitted = '';
    for (const id of continuationBytes) emitted += detok.push([id]);
    assert.ok(emitted.length >= 30, `emitted ${emitted.length} chars`);
    assert.equal(emitted + detok.flush(), tokenizer.decode(continuationBytes));
  });
});
