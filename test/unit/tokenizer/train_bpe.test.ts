import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadTokenizer } from '../../../src/server/tokenizer/tokenizer.ts';
import { bytesToUnicode, trainBpe } from '../../../tools/tokenizer/train_bpe.ts';
import { corpus, makeTempDir, MULTILINGUAL } from './helpers.ts';

const PRE_TOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * Textbook BPE: recount every pair before each merge. The trainer must learn the same merges (same
 * tie rule: highest count, then the pair of smaller ids, where ids follow creation order).
 */
function naiveMerges(texts: string[], numMerges: number, minFrequency = 2): string[] {
  const byteChars = bytesToUnicode();
  const counts = new Map<string, number>();
  for (const text of texts) for (const [p] of text.matchAll(PRE_TOKENIZE)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const idOf = new Map<string, number>(byteChars.map((c, i) => [c, i + 2]));
  let words = [...counts].map(([p, n]) => ({ symbols: Array.from(new TextEncoder().encode(p), (b) => byteChars[b]), n }));
  const merges: string[] = [];
  while (merges.length < numMerges) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words)
      for (let i = 0; i + 1 < symbols.length; i++) pairs.set(`${symbols[i]} ${symbols[i + 1]}`, (pairs.get(`${symbols[i]} ${symbols[i + 1]}`) ?? 0) + n);
    let best: [string, number] | null = null;
    const rank = (pair: string): [number, number] => pair.split(' ').map((s) => idOf.get(s)!) as [number, number];
    for (const [pair, n] of pairs) {
      if (!best || n > best[1] || (n === best[1] && compareIds(rank(pair), rank(best[0])) < 0)) best = [pair, n];
    }
    if (!best || best[1] < minFrequency) break;
    const [a, b] = best[0].split(' ') as [string, string];
    if (!idOf.has(a + b)) idOf.set(a + b, idOf.size + 2);
    merges.push(best[0]);
    words = words.map(({ symbols, n }) => {
      const out: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (symbols[i] === a && symbols[i + 1] === b) (out.push(a + b), i++);
        else out.push(symbols[i]!);
      }
      return { symbols: out, n };
    });
  }
  return merges;
}

function compareIds([a1, b1]: [number, number], [a2, b2]: [number, number]): number {
  return a1 - a2 || b1 - b2;
}

describe('train_bpe', () => {
  it('learns the same merges as a full recount per merge', () => {
    const texts = [MULTILINGUAL.repeat(3), 'aaaa aaa aa a abab ababab banana bandana', corpus()[1]?.slice(0, 20000) ?? ''];
    const trained = trainBpe(texts, { vocabSize: 261 + 150 });
    const model = trained.tokenizerJson.model as { merges: string[]; vocab: Record<string, number> };
    assert.deepEqual(model.merges, naiveMerges(texts, model.merges.length));
    assert.ok(model.merges.length > 0);
  });

  it('lays out the vocabulary with BOS/EOS first and the role tokens last', () => {
    const trained = trainBpe(corpus(), { vocabSize: 400 });
    assert.equal(trained.vocabSize, 400);
    assert.equal(trained.numMerges, 400 - 261);
    const model = trained.tokenizerJson.model as { vocab: Record<string, number> };
    assert.equal(model.vocab['<｜begin▁of▁sentence｜>'], 0);
    assert.equal(model.vocab['<｜end▁of▁sentence｜>'], 1);
    assert.equal(model.vocab['Ġ'], 2 + 32, 'byte b has id 2 + b');
    const added = trained.tokenizerJson.added_tokens as { id: number; content: string }[];
    assert.deepEqual(
      added.map((a) => [a.id, a.content]),
      [
        [0, '<｜begin▁of▁sentence｜>'],
        [1, '<｜end▁of▁sentence｜>'],
        [397, '<｜User｜>'],
        [398, '<｜Assistant｜>'],
        [399, '<｜pad｜>'],
      ],
    );
    assert.throws(() => trainBpe(['x'], { vocabSize: 100 }), /vocab-size/);
  });

  it('stops early when no pair is frequent enough', () => {
    const trained = trainBpe(['ab ab cd'], { vocabSize: 5000 });
    assert.ok(trained.numMerges < 10);
    assert.equal(loadTokenizer(writeTo(trained))?.vocabSize, trained.vocabSize);
  });

  it('runs as a CLI and writes a tokenizer that loads and round-trips', () => {
    const dir = makeTempDir('bpe-cli-');
    const input = join(dir, 'input.txt');
    writeFileSync(input, corpus().join('\n'));
    const out = join(dir, 'tok');
    const script = new URL('../../../tools/tokenizer/train_bpe.ts', import.meta.url).pathname;
    const log = execFileSync(process.execPath, ['--import', 'tsx', script, '--input', input, '--input', input, '--vocab-size', '1000', '--out', out], {
      encoding: 'utf8',
    });
    assert.match(log, /trained 739 merges \(vocab 1000\)/);
    const config = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8'));
    assert.equal(config.add_bos_token, true);
    assert.equal(typeof config.model_max_length, 'number');
    const t = loadTokenizer(out)!;
    const text = `${MULTILINGUAL} 🦀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢`;
    assert.equal(t.decode(t.encode(text, { addSpecialTokens: false })), text);
  });
});

function writeTo(trained: ReturnType<typeof trainBpe>): string {
  const dir = makeTempDir('bpe-small-');
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(trained.tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(trained.tokenizerConfig));
  return dir;
}
