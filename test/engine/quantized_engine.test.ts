// --quantization through EngineCore: the memory plan refuses before any tensor is read, and the
// quantised-weights cache round-trips (a second start serves the same logits from the cache) and
// rebuilds a corrupt file with a warning instead of using it.
import assert from 'node:assert/strict';
import { closeSync, cpSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { EngineError } from '../../src/common/errors.ts';
import { EngineCore, type EngineCoreOptions } from '../../src/engine/engine_core.ts';
import type { ModelRunnerOptions } from '../../src/engine/model_runner.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { greedy, openEngine } from '../helpers/offline.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-qengine-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const PROMPT = [5, 17, 99, 3, 250, 41, 7, 300, 12, 77];

function fixtureCopy(name: string): string {
  const dir = path.join(tmp, name);
  cpSync(FIXTURE_DIR, dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

async function promptLogits(dir: string, runner: ModelRunnerOptions): Promise<{ logits: Float32Array; warnings: readonly string[] }> {
  const engine = await openEngine(dir, { runner: { blockSize: 16, numKvBlocks: 32, ...runner } });
  try {
    const [r] = await greedy(engine, [PROMPT], { maxTokens: 1, promptLogits: true });
    return { logits: r!.promptLogits!, warnings: engine.core.runner.loaded.loadWarnings };
  } finally {
    await engine.dispose();
  }
}

/** Overwrites the checkpoint's tensor data (header, size and mtime kept): nothing may read it any more. */
function clobberData(dir: string, byte: number): void {
  const file = path.join(dir, 'model.safetensors');
  const st = statSync(file);
  const buf = readFileSync(file);
  const start = 8 + Number(buf.readBigUInt64LE(0));
  const fd = openSync(file, 'r+');
  writeSync(fd, new Uint8Array(buf.length - start).fill(byte), 0, buf.length - start, start);
  closeSync(fd);
  utimesSync(file, st.atime, st.mtime);
}

describe('quantised engine', () => {
  it('refuses a model that does not fit, with the numbers, before reading any tensor', async () => {
    const dir = fixtureCopy('refuse');
    clobberData(dir, 0xff); // NaN everywhere: reading any tensor would fail differently
    const options: EngineCoreOptions = {
      runner: { numKvBlocks: 8, blockSize: 16, quantization: 'none' },
      scheduler: { maxNumSeqs: 4, maxNumBatchedTokens: 64, longPrefillTokenThreshold: 0, maxQueuedRequests: 8, maxQueuedTokens: 1000 },
      enablePrefixCaching: true,
      machineMemory: { bytes: 200 * 2 ** 20, source: '/test/memory.max' },
    };
    await assert.rejects(EngineCore.create(dir, options), (e: unknown) => {
      assert.ok(e instanceof EngineError && e.code === 'DSV_ERR_CONFIG', String(e));
      assert.match(
        e.message,
        /^the model does not fit in memory: weights \d+ MiB \(float32\) \+ native kernels. copies \d+ MiB \+ malloc slack \d+ MiB \+ KV cache \d+ MiB \+ runtime 256 MiB/,
      );
      assert.match(e.message, /of 184 MiB usable \(200 MiB from \/test\/memory\.max\); no --quantization or --kv-cache-memory setting fits this machine$/);
      return true;
    });
  });

  it('stops with the numbers when other processes hold the memory, at start or between layers', async () => {
    const dir = fixtureCopy('free');
    let calls = 0;
    const options = (free: () => number): EngineCoreOptions => ({
      runner: { numKvBlocks: 8, blockSize: 16, quantization: 'none' },
      scheduler: { maxNumSeqs: 4, maxNumBatchedTokens: 64, longPrefillTokenThreshold: 0, maxQueuedRequests: 8, maxQueuedTokens: 1000 },
      enablePrefixCaching: true,
      availableMemory: () => ({ bytes: free(), source: 'test' }),
    });
    const refused = (stage: RegExp) => (e: unknown) => {
      assert.ok(e instanceof EngineError && e.code === 'DSV_ERR_CONFIG', String(e));
      assert.match(e.message, stage);
      return true;
    };
    await assert.rejects(
      EngineCore.create(
        dir,
        options(() => 2 ** 20),
      ),
      refused(/^not enough free memory to load this model: the memory plan/),
    );
    // Plenty at start, then another process takes it all.
    await assert.rejects(
      EngineCore.create(
        dir,
        options(() => (calls++ === 0 ? 2 ** 40 : 0)),
      ),
      refused(/^not enough free memory while loading layer 0:/),
    );
  });

  it("a second start serves bit-identical logits from the cache, without the checkpoint's data", async () => {
    const dir = fixtureCopy('cache');
    const cacheDir = path.join(tmp, 'qcache');
    const first = await promptLogits(dir, { quantization: 'int4', quantizedWeightsDir: cacheDir });
    const [keyDir] = readdirSync(cacheDir);
    assert.deepEqual(readdirSync(path.join(cacheDir, keyDir!)).sort(), [
      'embed.safetensors',
      'head.safetensors',
      'layer.0.safetensors',
      'layer.1.safetensors',
      'layer.2.safetensors',
      'source.json',
    ]);
    clobberData(dir, 0);
    const second = await promptLogits(dir, { quantization: 'int4', quantizedWeightsDir: cacheDir });
    assert.deepEqual(second.logits, first.logits);
    assert.deepEqual([first.warnings, second.warnings], [[], []]);
  });

  it('worker threads (the read-ahead pool) load the same weights as this thread, cache included', async () => {
    const dir = fixtureCopy('pool');
    const cacheDir = path.join(tmp, 'qcache-pool');
    const here = await promptLogits(dir, { quantization: 'int4', loadThreads: 0 });
    const pooled = await promptLogits(dir, { quantization: 'int4', loadThreads: 2, quantizedWeightsDir: cacheDir });
    assert.deepEqual(pooled.logits, here.logits);
    const file = path.join(cacheDir, readdirSync(cacheDir)[0]!, 'layer.0.safetensors');
    const bytes = readFileSync(file);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1); // flip one bit of the last byte
    writeFileSync(file, bytes);
    const again = await promptLogits(dir, { quantization: 'int4', loadThreads: 2, quantizedWeightsDir: cacheDir });
    assert.deepEqual(again.logits, here.logits);
    assert.equal(again.warnings.length, 1);
    assert.match(again.warnings[0]!, /layer\.0\.safetensors is not usable \(checksum mismatch/);
  });

  it('an error in a loader thread fails the start-up with its message (and leaves no thread behind)', async () => {
    const dir = fixtureCopy('pool-nan');
    clobberData(dir, 0xff);
    await assert.rejects(
      openEngine(dir, { runner: { blockSize: 16, numKvBlocks: 32, quantization: 'int8', loadThreads: 2 } }),
      /tensor "[^"]+": non-finite value in row 0/,
    );
  });

  it('a corrupt cache file is reported and rebuilt from the checkpoint, never used', async () => {
    const dir = fixtureCopy('corrupt');
    const cacheDir = path.join(tmp, 'qcache-corrupt');
    const clean = await promptLogits(dir, { quantization: 'int8', quantizedWeightsDir: cacheDir });
    const file = path.join(cacheDir, readdirSync(cacheDir)[0]!, 'layer.1.safetensors');
    const bytes = readFileSync(file);
    bytes[bytes.length - 100]! ^= 0x40; // the layer file is far longer than 100 bytes
    writeFileSync(file, bytes);
    const again = await promptLogits(dir, { quantization: 'int8', quantizedWeightsDir: cacheDir });
    assert.deepEqual(again.logits, clean.logits);
    assert.equal(again.warnings.length, 1);
    assert.match(again.warnings[0]!, /layer\.1\.safetensors is not usable \(checksum mismatch \(corrupt file\)\); rebuilding it$/);
    assert.notDeepEqual(readFileSync(file), bytes, 'the file was rewritten');
  });
});
