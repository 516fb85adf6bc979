// Flag parsing shared by the CLIs in this folder. Each CLI is its own entry point; a thrown Error is
// printed as one line and exits 1.
import { readFileSync } from 'node:fs';
import { loadTokenizer } from '../server/tokenizer/tokenizer.ts';

/** `--name VALUE` as a positive integer; `fallback` (or undefined) when the flag is absent. */
export function positiveInt(name: string, value: string | undefined): number | undefined;
export function positiveInt(name: string, value: string | undefined, fallback: number): number;
export function positiveInt(name: string, value: string | undefined, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

/**
 * Prompt token ids from exactly one of --prompt (comma-separated ids), --text or --file (encoded with the
 * model's tokenizer, BOS added as its config says); anything else throws `usage`.
 */
export function promptTokenIds(model: string, sources: { readonly prompt?: string; readonly text?: string; readonly file?: string }, usage: string): number[] {
  const given = [sources.prompt, sources.text, sources.file].filter((v) => v !== undefined).length;
  if (given !== 1) throw new Error(usage);
  if (sources.prompt !== undefined) {
    return sources.prompt.split(',').map((s) => {
      const id = Number(s.trim());
      if (!Number.isInteger(id) || id < 0) throw new Error(`--prompt: "${s}" is not a token id`);
      return id;
    });
  }
  const tokenizer = loadTokenizer(model);
  if (!tokenizer) throw new Error(`${model} has no tokenizer.json: use --prompt with token ids`);
  return tokenizer.encode(sources.text ?? readFileSync(sources.file ?? '', 'utf8'));
}
