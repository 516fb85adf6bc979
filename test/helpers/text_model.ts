// A copy of the shared fixture's weights with a byte-level BPE tokenizer (vocab 512, ids 0/1 =
// BOS/EOS as in the fixture config), so text prompts and chat work against golden-checked weights.
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

let longDir: string | null = null;

/**
 * The text model with a 2048-position context (random weights do not care where positions end),
 * for tool and structured-output tests: tool prompts and call markup spelled in a 512-token
 * byte-level vocabulary do not fit the fixture's 512 positions.
 */
export function longTextModelDir(): string {
  if (longDir) return longDir;
  longDir = mkdtempSync(path.join(os.tmpdir(), 'dsv-text-model-2k-'));
  cpSync(textModelDir(), longDir, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(longDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(longDir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 2048 }));
  return longDir;
}
