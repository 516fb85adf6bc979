// A copy of the shared fixture's weights with a byte-level BPE tokenizer (vocab 512, ids 0/1 =
// BOS/EOS as in the fixture config), so text prompts and chat work against golden-checked weights.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { trainBpe, writeTokenizer } from '../../tools/tokenizer/train_bpe.ts';
import { FIXTURE_DIR } from './golden.ts';

let dir: string | null = null;

export function textModelDir(): string {
  if (dir) return dir;
  dir = mkdtempSync(path.join(os.tmpdir(), 'dsv-text-model-'));
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(FIXTURE_DIR, f), path.join(dir, f));
  const corpus = readFileSync(path.join(FIXTURE_DIR, 'README.md'), 'utf8');
  writeTokenizer(dir, trainBpe([corpus, 'Hello world! The quick brown fox jumps over the lazy dog.'], { vocabSize: 512, minFrequency: 1 }));
  return dir;
}
