// --kv-cache-dtype auto through the loader: the storage the engine allocates is float32 whatever the
// checkpoint stores, and an explicit dtype is what gets allocated.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { KVCacheDtypeChoice } from '../../src/kvcache/kv_dtype.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { openEngine } from '../helpers/offline.ts';
import { randomCheckpoint, tinyHfConfig, writeCheckpoint, type WriteDType } from '../helpers/checkpoint_writer.ts';

const root = mkdtempSync(path.join(tmpdir(), 'dsv-kv-auto-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A tiny checkpoint stored in `dtype`, its config.json saying `torchDtype` (null: no torch_dtype key). */
function checkpoint(name: string, dtype: WriteDType, torchDtype: string | null): string {
  const { torch_dtype: _, ...rest } = tinyHfConfig();
  const config = torchDtype === null ? rest : { ...rest, torch_dtype: torchDtype };
  const dir = path.join(root, name);
  writeCheckpoint(dir, config, randomCheckpoint(config, { seed: 3 }), { dtype });
  return dir;
}

async function loadedDtype(dir: string, kvCacheDtype?: KVCacheDtypeChoice): Promise<{ storage: string; reason: string }> {
  const engine = await openEngine(dir, { runner: { blockSize: 16, numKvBlocks: 8, ...(kvCacheDtype && { kvCacheDtype }) } });
  try {
    const { storage, loaded } = engine.core.runner;
    assert.equal(loaded.kvCacheDtype.dtype, storage.dtype);
    return { storage: storage.dtype, reason: loaded.kvCacheDtype.reason };
  } finally {
    await engine.dispose();
  }
}

describe('--kv-cache-dtype auto at load', () => {
  it('float32 caches for the float32 public fixture and for bfloat16 / FP8 checkpoints alike', async () => {
    const auto = { storage: 'float32', reason: 'the fastest on the CPU' };
    assert.deepEqual(await loadedDtype(FIXTURE_DIR), auto);
    assert.deepEqual(await loadedDtype(checkpoint('bf16', 'BF16', 'bfloat16')), auto);
    assert.deepEqual(await loadedDtype(checkpoint('fp8-no-key', 'F8_E4M3', null)), auto);
  });

  it('an explicit dtype is allocated as asked', async () => {
    const bf16 = checkpoint('bf16-explicit', 'BF16', 'bfloat16');
    assert.deepEqual(await loadedDtype(bf16, 'bfloat16'), { storage: 'bfloat16', reason: '--kv-cache-dtype bfloat16' });
    assert.equal((await loadedDtype(FIXTURE_DIR, 'bfloat16')).storage, 'bfloat16');
    assert.equal((await loadedDtype(FIXTURE_DIR, 'fp8')).storage, 'fp8');
  });
});
