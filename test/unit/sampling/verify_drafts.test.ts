// The engine's verification of one request's drafts (speculative/verify.ts) on a small vocabulary:
// the first emitted token follows the target distribution of row 0 (chi-square, fixed seed) whatever
// the draft, the penalty state is left as it was, and greedy verification keeps the matching prefix.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Request } from '../../../src/engine/request.ts';
import { drawFromDistribution, processedDistribution } from '../../../src/engine/sampling/distribution.ts';
import { Rng } from '../../../src/engine/sampling/rng.ts';
import { SamplerWorkspace } from '../../../src/engine/sampling/sampler.ts';
import { verifyDrafts } from '../../../src/engine/speculative/verify.ts';
import { params, randomRow } from './helpers.ts';

const V = 8;

describe('verifyDrafts', () => {
  it('sampling: the first emitted token follows p of row 0 (penalties applied), chi-square over 20k verifications', () => {
    const sp = params({ temperature: 0.8, presencePenalty: 1.5, topK: 6, seed: 5 });
    const rows = new Float32Array(2 * V);
    rows.set(randomRow(V, 3, 1.5), 0);
    rows.set(randomRow(V, 4, 1.5), V);
    const q = Float64Array.from([0.3, 0.05, 0.05, 0.2, 0.1, 0.1, 0.1, 0.1]);
    const ws = new SamplerWorkspace();
    const rng = Rng.fromSeed(9);
    const counts = new Array<number>(V).fill(0);
    let p0: Float64Array | null = null;
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      const request = new Request({ requestId: `r${i}`, promptTokenIds: [0, 3], params: { ...sp, seed: i } }, [1]);
      request.appendOutputToken(3); // penalised by presence
      p0 ??= processedDistribution(rows.subarray(0, V), request.params, request.sampling, ws);
      const draft = drawFromDistribution(q, rng.nextFloat());
      request.setDrafts([draft], [q]);
      const before = request.sampling.outputCounts.numTokens;
      const v = verifyDrafts(rows, V, request, [draft], ws);
      assert.equal(request.sampling.outputCounts.numTokens, before, 'tentative appends undone');
      assert.equal(v.tokens.length, v.numAcceptedDrafts + 1);
      counts[v.tokens[0]!.tokenId]!++;
    }
    let chi2 = 0;
    let df = -1;
    for (let t = 0; t < V; t++) {
      if (p0![t] === 0) {
        assert.equal(counts[t], 0, `token ${t} is outside top-k but was emitted`);
        continue;
      }
      chi2 += (counts[t]! - N * p0![t]!) ** 2 / (N * p0![t]!);
      df++;
    }
    const critical = { 4: 18.47, 5: 20.52, 6: 22.46 }[df];
    assert.ok(critical !== undefined && chi2 < critical, `chi2 ${chi2.toFixed(2)} (df ${df})`);
  });

  it('greedy: keeps the drafts while they equal the argmax, then the argmax; the bonus token when all match', () => {
    const rows = new Float32Array(3 * V);
    for (let r = 0; r < 3; r++) rows[r * V + [4, 6, 2][r]!] = 5;
    const make = () => new Request({ requestId: 'g', promptTokenIds: [0], params: params({ temperature: 0, seed: 1 }) }, [1]);
    const ws = new SamplerWorkspace();
    assert.deepEqual(
      verifyDrafts(rows, V, make(), [4, 6], ws).tokens.map((t) => t.tokenId),
      [4, 6, 2],
    );
    assert.deepEqual(
      verifyDrafts(rows, V, make(), [4, 5], ws).tokens.map((t) => t.tokenId),
      [4, 6],
    );
    assert.deepEqual(
      verifyDrafts(rows, V, make(), [7, 6], ws).tokens.map((t) => t.tokenId),
      [4],
    );
  });
});
