// Reads the shared fixture's golden data (test/fixtures/tiny-dsv32, a byte-for-byte copy of
// ../shared/fixtures/tiny-dsv32) through the project's own safetensors reader.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/engine/checkpoint/safetensors.ts';
import { at } from './at.ts';

export const FIXTURE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/tiny-dsv32');

export interface GoldenJson {
  readonly prompts: number[][];
  readonly greedy_tokens: number[][];
  readonly topk_last: Record<string, number[]>[];
  readonly indexer_kl_loss: { prompt_index: number; per_layer: Record<string, { dense: number; sparse: number }> };
  readonly checkpoint_sha256: Record<string, string>;
}

export class Golden {
  readonly json: GoldenJson;
  private readonly file: SafetensorsFile;

  constructor(dir = FIXTURE_DIR) {
    this.json = JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8')) as GoldenJson;
    this.file = SafetensorsFile.open(path.join(dir, 'golden.safetensors'));
  }

  floats(name: string): Float32Array {
    const bytes = this.file.read(name);
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }

  ints(name: string): number[] {
    const bytes = this.file.read(name);
    return Array.from(new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8), Number);
  }

  get numPrompts(): number {
    return this.json.prompts.length;
  }

  /** Prompt p's token ids (the test fails if golden.json has no prompt p). */
  prompt(p: number): readonly number[] {
    return at(this.json.prompts, p, 'golden prompt');
  }

  /** The golden greedy continuation of prompt p. */
  greedyTokens(p: number): readonly number[] {
    return at(this.json.greedy_tokens, p, 'golden greedy_tokens row');
  }
}

/** Largest |a[i] - b[i]|; the arrays must have equal length. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}

export function concatRows(rows: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}
