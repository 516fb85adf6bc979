// The peer engine glue (bench/peer_llama.ts). The parsing helpers are always tested; the llama.cpp run needs
// bench/peer installed (bench/peer/install.sh) and is skipped with the reason when it is not.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import { convertDeepseekToGguf } from '../../bench/gguf/convert_deepseek.ts';
import {
  PeerLlama,
  disposePeerRuntime,
  expectedPeerKvBytesPerToken,
  logSoftmax,
  parseKvCacheLines,
  peerUnavailableReason,
  topK,
} from '../../bench/peer_llama.ts';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';

describe('peer helpers', () => {
  it("parses llama.cpp's KV cache lines (latent + indexer caches of deepseek32)", () => {
    const log = [
      'llama_kv_cache_dsa: creating main KV cache, size = 512 cells',
      'llama_kv_cache:        CPU KV buffer size =     2.25 MiB',
      'llama_kv_cache: size =    2.25 MiB (   512 cells,   8 layers,  1/1 seqs), K (f16):    2.25 MiB, V (f16):    0.00 MiB',
      'llama_kv_cache_dsa: creating indexer KV cache, size = 512 cells',
      'llama_kv_cache: size =    0.50 MiB (   512 cells,   8 layers,  1/1 seqs), K (f16):    0.50 MiB, V (f16):    0.00 MiB',
    ].join('\n');
    const r = parseKvCacheLines(log)!;
    assert.equal(r.cells, 512);
    assert.deepEqual(
      r.caches.map((c) => [c.mib, c.layers, c.type, c.kMib, c.vMib]),
      [
        [2.25, 8, 'f16', 2.25, 0],
        [0.5, 8, 'f16', 0.5, 0],
      ],
    );
    assert.equal(r.bytesPerToken, 4608 + 1024);
    assert.equal(parseKvCacheLines('nothing here'), null);
  });

  it('knows the cache llama.cpp allocates for MLA (+ indexer keys)', () => {
    const c = { numHiddenLayers: 8, kvLoraRank: 256, qkRopeHeadDim: 32, indexer: { headDim: 64 } };
    assert.equal(expectedPeerKvBytesPerToken(c, 'deepseek32', 'F16'), 8 * (288 + 64) * 2);
    assert.equal(expectedPeerKvBytesPerToken(c, 'deepseek2', 'F32'), 8 * 288 * 4);
  });

  it('log-softmax and top-k', () => {
    const lp = logSoftmax([1, 3, 2, 3]);
    assert.ok(Math.abs(lp.reduce((s, x) => s + Math.exp(x), 0) - 1) < 1e-12);
    assert.deepEqual(topK([1, 3, 2, 3], 3), [1, 3, 2]);
  });
});

const unavailable = peerUnavailableReason();

describe('llama.cpp on the converted fixture', { skip: unavailable ?? false }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'peer-test-'));
  after(async () => {
    await disposePeerRuntime();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reproduces the golden next-token distribution (deepseek2: YaRN, grouped routing; <= index_topk tokens)', async () => {
    const model = loadModel(FIXTURE_DIR);
    const gguf = path.join(dir, 'tiny.gguf');
    convertDeepseekToGguf(model, gguf, { arch: 'deepseek2' });
    const golden = new Golden(FIXTURE_DIR);
    const prompt = golden.prompt(1)!;
    assert.ok(prompt.length <= model.config.indexer!.topk);
    const vocab = model.config.vocabSize;
    const want = logSoftmax(golden.floats('prefill_logits.p1').slice((prompt.length - 1) * vocab, prompt.length * vocab));
    const peer = await PeerLlama.load(gguf, vocab, { contextSize: 256, kvCacheType: 'F32' });
    try {
      assert.equal(peer.info.architecture, 'deepseek2');
      assert.equal(peer.info.gpu, false);
      const got = await peer.nextTokenLogprobs(prompt);
      assert.deepEqual(topK(got, 10), topK(want, 10));
      let maxDiff = 0;
      for (let i = 0; i < vocab; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
      assert.ok(maxDiff < 1e-4, `max |dlogp| ${maxDiff}`);
      assert.ok(
        peer.kvCache &&
          Math.abs(peer.kvCache.bytesPerToken - expectedPeerKvBytesPerToken(model.config, 'deepseek2', 'F32')) <= peer.kvCache.bytesPerTokenUncertainty,
      );
      const decode = await peer.timeDecode(prompt, 3);
      assert.equal(decode.generated.length, 3);
      assert.deepEqual(decode.generated, golden.greedyTokens(1)!.slice(0, 3));
    } finally {
      await peer.dispose();
    }
  });
});
