// Costs of XGrammar-constrained decoding, apart from the model: TokenizerInfo build, grammar compile
// per kind, next-token bitmask per token, bitmask application per logits row, memory, and the
// per-step grammar work of 16 concurrent constrained requests.
//
//   node --import tsx bench/structured_outputs.ts [--vocab N]
//
// Default: the default model's vocabulary (4096). --vocab N builds a synthetic byte-level vocabulary
// of N tokens (DeepSeek-V3's is 129,280) to show how the costs scale; the walk then uses random
// logits, like the default-model walk.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { argmax } from '../src/common/select.ts';
import { Rng } from '../src/engine/sampling/rng.ts';
import { StructuredOutputCompiler } from '../src/engine/structured/grammar_compiler.ts';
import type { GrammarSpec } from '../src/engine/structured/grammar_spec.ts';
import { applyTokenBitmask } from '../src/engine/structured/token_bitmask.ts';
import { readEncodedVocab, type EncodedVocab } from '../src/engine/structured/tokenizer_vocab.ts';
import { loadAverage1 } from './machine/load.ts';
import { percentile } from './stats.ts';

const MODEL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../models/default');
const EOS = 1;
const CONCURRENT = 16;

const GRAMMARS: Record<string, GrammarSpec> = {
  json_object: { kind: 'json_object' },
  json_schema: {
    kind: 'json_schema',
    schema: JSON.stringify({
      type: 'object',
      properties: {
        book: { enum: ['Genesis', 'Exodus', 'Psalms'] },
        chapter: { type: 'integer', minimum: 1, maximum: 150 },
        verse: { type: 'string', maxLength: 40 },
      },
      required: ['book', 'chapter', 'verse'],
    }),
  },
  regex: { kind: 'regex', pattern: '[A-Z][a-z]{2,9} [0-9]{1,3}:[0-9]{1,3}' },
  choice: { kind: 'choice', choices: ['Genesis', 'Exodus', 'Leviticus', 'Numbers', 'Deuteronomy'] },
};

function syntheticVocab(size: number): EncodedVocab {
  const rng = Rng.fromSeed(7);
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?"{}[]()-_Ġ';
  const tokens = ['', ''];
  const seen = new Set<string>();
  for (let b = 0, next = 256; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const c = String.fromCharCode(printable ? b : next++);
    tokens.push(c);
    seen.add(c);
  }
  while (tokens.length < size) {
    let s = '';
    for (let i = 0, n = 2 + Math.floor(rng.nextFloat() * 10); i < n; i++) s += chars[Math.floor(rng.nextFloat() * chars.length)];
    if (!seen.has(s)) (seen.add(s), tokens.push(s));
  }
  return { tokens, vocabType: 'byte_level', prependSpace: false };
}

function randomLogits(vocab: number, rng: Rng): Float32Array {
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) row[i] = rng.nextFloat() * 6;
  return row;
}

interface WalkTimes {
  mask: number[];
  apply: number[];
  accept: number[];
}

/** Greedy walks under the grammar with random logits until EOS (or 400 tokens), timing each part. */
async function walk(compiler: StructuredOutputCompiler, grammar: GrammarSpec, walks: number, times: WalkTimes): Promise<void> {
  const rng = Rng.fromSeed(3);
  for (let w = 0; w < walks; w++) {
    const matcher = await compiler.createMatcher({ grammar, param: 'bench' });
    for (let step = 0; step < 400; step++) {
      const row = randomLogits(compiler.vocabSize, rng);
      let t = performance.now();
      const mask = await matcher.nextTokenBitmask();
      times.mask.push(performance.now() - t);
      t = performance.now();
      applyTokenBitmask(row, mask);
      times.apply.push(performance.now() - t);
      const token = argmax(row);
      t = performance.now();
      matcher.acceptToken(token);
      times.accept.push(performance.now() - t);
      if (token === EOS) break;
    }
    matcher.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { vocab: { type: 'string' } } });
  const loadBefore = loadAverage1();
  const rss0 = process.memoryUsage().rss;
  const vocab = values.vocab
    ? syntheticVocab(Number(values.vocab))
    : readEncodedVocab(path.join(MODEL_DIR, 'tokenizer.json'), JSON.parse(readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8')).vocab_size);
  let t = performance.now();
  const compiler = await StructuredOutputCompiler.create(vocab, [EOS]);
  const tokenizerInfoMs = performance.now() - t;
  const rows: string[] = [];
  const all: WalkTimes = { mask: [], apply: [], accept: [] };
  for (const [name, grammar] of Object.entries(GRAMMARS)) {
    t = performance.now();
    (await compiler.createMatcher({ grammar, param: 'bench' })).dispose();
    const compileMs = performance.now() - t;
    const times: WalkTimes = { mask: [], apply: [], accept: [] };
    await walk(compiler, grammar, 4, times);
    for (const k of ['mask', 'apply', 'accept'] as const) all[k].push(...times[k]);
    const mask = [...times.mask].sort((a, b) => a - b);
    rows.push(
      `| ${name} | ${compileMs.toFixed(1)} | ${times.mask.length} | ${(percentile(mask, 50) * 1000).toFixed(0)} | ${(percentile(mask, 90) * 1000).toFixed(0)} | ${(Math.max(...mask) * 1000).toFixed(0)} |`,
    );
  }
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const perToken = mean(all.mask) + mean(all.apply) + mean(all.accept);
  console.log(
    `vocab ${vocab.tokens.length}${values.vocab ? ' (synthetic)' : ' (models/default)'}; load average ${loadBefore.toFixed(2)} -> ${loadAverage1().toFixed(2)} on ${os.cpus().length} CPUs`,
  );
  console.log(
    `TokenizerInfo + GrammarCompiler: ${tokenizerInfoMs.toFixed(0)} ms; RSS +${((process.memoryUsage().rss - rss0) / 2 ** 20).toFixed(0)} MiB after all compiles`,
  );
  console.log('\n| grammar | compile ms | tokens | mask µs p50 | p90 | max |\n|---|---|---|---|---|---|');
  console.log(rows.join('\n'));
  console.log(
    `\nper token (mean over all walks): mask ${(mean(all.mask) * 1000).toFixed(1)} µs, apply ${(mean(all.apply) * 1000).toFixed(1)} µs, accept ${(mean(all.accept) * 1000).toFixed(1)} µs`,
  );
  console.log(`grammar work per step at ${CONCURRENT} concurrent constrained requests: ${(perToken * CONCURRENT).toFixed(2)} ms`);
  compiler.dispose();
}

await main();
