// The shipped default model (models/default) runs in the engine as in the training tool: logits on
// held-out KJV text (test/model_default/parity.safetensors, written by tools/train/export.py from a
// float64 PyTorch forward over the exported BF16 weights, sparse attention) match within 1e-3.
// Sequence s1 is longer than index_topk, so its stored rows depend on the DSA selection.
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { OfflineEngine } from '../../src/engine/offline.ts';
import { SafetensorsFile } from '../../src/engine/checkpoint/safetensors.ts';
import { maxAbsDiff } from '../helpers/golden.ts';
import { greedy, openEngine } from '../helpers/offline.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = process.env.DSV_DEFAULT_MODEL_DIR ?? path.resolve(HERE, '../../models/default');
const PARITY_FILE = process.env.DSV_DEFAULT_PARITY_FILE ?? path.join(HERE, 'parity.safetensors');
const TOL = 1e-3;

interface Case {
  readonly name: string;
  readonly ids: number[];
  readonly logits: Float32Array; // the last rows.length / vocab rows
}

function readCases(): Case[] {
  const f = SafetensorsFile.open(PARITY_FILE);
  try {
    return ['s0', 's1'].map((name) => {
      const idBytes = f.read(`ids.${name}`);
      const lb = f.read(`logits.${name}`);
      return {
        name,
        ids: Array.from(new BigInt64Array(idBytes.buffer, 0, idBytes.byteLength / 8), Number),
        logits: new Float32Array(lb.buffer, 0, lb.byteLength / 4),
      };
    });
  } finally {
    f.close();
  }
}

describe('default model parity with the PyTorch training forward', () => {
  const cases = readCases();
  const engines = new Map<number | undefined, OfflineEngine>();
  before(async () => {
    for (const chunkSize of [undefined, 13]) {
      engines.set(
        chunkSize,
        await openEngine(MODEL_DIR, { runner: { blockSize: 16, numKvBlocks: 64 }, enablePrefixCaching: false, ...(chunkSize && { chunkSize }) }),
      );
    }
  });
  after(async () => {
    for (const e of engines.values()) await e.dispose();
  });

  test('the long sequence exercises the DSA selection', () => {
    assert.ok(cases[1]!.ids.length > engines.get(undefined)!.core.config.indexer!.topk);
  });

  for (const chunkSize of [undefined, 13]) {
    test(`prompt logits within ${TOL} (chunk ${chunkSize ?? 'full'})`, async (t) => {
      const engine = engines.get(chunkSize)!;
      const vocab = engine.core.config.vocabSize;
      for (const c of cases) {
        const [r] = await greedy(engine, [c.ids], { maxTokens: 1, promptLogits: true });
        const rows = c.logits.length / vocab;
        const got = r!.promptLogits!.subarray((c.ids.length - rows) * vocab);
        const d = maxAbsDiff(got, c.logits);
        t.diagnostic(`${c.name} (${c.ids.length} tokens, last ${rows} rows): max |logit diff| ${d.toExponential(2)}`);
        assert.ok(d < TOL, `${c.name}: max |logit diff| ${d}`);
      }
    });
  }
});
