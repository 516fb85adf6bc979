// Shared fixtures: a small byte-level BPE trained on local text into a temp dir, and a seeded RNG.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainBpe, writeTokenizer } from '../../../tools/tokenizer/train_bpe.ts';

const LICENSES = '/usr/share/common-licenses';

/** Text with CJK, accents and emoji so merges include pieces of multi-byte characters. */
export const MULTILINGUAL = [
  '你好，世界！我们今天学习分词器。这是一个测试句子，你好你好。',
  'こんにちは世界、トークナイザーのテストです。',
  'Ünïcödé naïve café façade résumé — “quotes” and ‘single’ … ellipsis',
  'Emoji: 🙂🙂 👍🏽 🎉🎉🎉 ❤️ 🇫🇷 family 👨‍👩‍👧 done.',
  'Numbers 12345 3.14159 and code: const x = f(y) + 42; // comment',
].join('\n');

export function corpus(): string[] {
  const texts = [MULTILINGUAL.repeat(20)];
  if (existsSync(LICENSES)) {
    for (const name of readdirSync(LICENSES).sort()) {
      const path = join(LICENSES, name);
      if (statSync(path).isFile()) texts.push(readFileSync(path, 'utf8'));
    }
  } else {
    texts.push('The quick brown fox jumps over the lazy dog. '.repeat(500)); // non-Debian hosts
  }
  return texts;
}

const tempDirs: string[] = [];
// On exit rather than in a test hook: a hook registered inside a test would run when that test ends.
process.once('exit', () => tempDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

let trainedDir: string | null = null;

/** A tokenizer with ~400 merges, trained once per test file into a temp dir. */
export function trainedTokenizerDir(): string {
  if (trainedDir) return trainedDir;
  const dir = makeTempDir('bpe-');
  writeTokenizer(dir, trainBpe(corpus(), { vocabSize: 661 }));
  trainedDir = dir;
  return dir;
}

/** mulberry32: deterministic uniform [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomInt(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

/** Splits `items` into consecutive pieces of random sizes in [0, maxPiece]. */
export function randomPieces<T>(rand: () => number, items: readonly T[], maxPiece: number): T[][] {
  const pieces: T[][] = [];
  for (let i = 0; i < items.length;) {
    const n = randomInt(rand, maxPiece + 1);
    pieces.push(items.slice(i, i + n));
    i += n;
  }
  return pieces;
}
