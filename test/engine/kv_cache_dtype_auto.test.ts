// --kv-cache-dtype auto through the loader: the storage the engine allocates follows the checkpoint
// (float32 fixture -> float32, bfloat16 checkpoint -> bfloat16), and an explicit dtype wins.
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
  it('the float32 public fixture keeps float32 caches (its golden tests stay exact)', async () => {
    assert.deepEqual(await loadedDtype(FIXTURE_DIR), { storage: 'float32', reason: 'checkpoint dtype float32' });
  });

  it('a bfloat16 checkpoint gets bfloat16 caches; without torch_dtype the stored weights decide', async () => {
    assert.deepEqual(await loadedDtype(checkpoint('bf16', 'BF16', 'bfloat16')), { storage: 'bfloat16', reason: 'checkpoint dtype bfloat16' });
    assert.equal((await loadedDtype(checkpoint('bf16-no-key', 'BF16', null))).storage, 'bfloat16');
    assert.equal((await loadedDtype(checkpoint('fp8-no-key', 'F8_E4M3', null))).storage, 'bfloat16');
    assert.equal((await loadedDtype(checkpoint('f32-no-key', 'F32', null))).storage, 'float32');
  });

  it('an explicit dtype wins over the checkpoint', async () => {
    const bf16 = checkpoint('bf16-explicit', 'BF16', 'bfloat16');
    assert.deepEqual(await loadedDtype(bf16, 'float32'), { storage: 'float32', reason: '--kv-cache-dtype float32' });
    assert.equal((await loadedDtype(FIXTURE_DIR, 'bfloat16')).storage, 'bfloat16');
    assert.equal((await loadedDtype(FIXTURE_DIR, 'fp8')).storage, 'fp8');
  });
});
