// The resolved --kv-cache-dtype is visible on /metrics (vLLM's vllm:cache_config_info): auto on a
// bfloat16 checkpoint shows bfloat16, on the float32 fixture float32, and an explicit flag shows itself.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { randomCheckpoint, tinyHfConfig, writeCheckpoint } from '../helpers/checkpoint_writer.ts';
import { parsePrometheus } from '../helpers/prometheus.ts';
import { startTestServer } from '../helpers/server.ts';

const root = mkdtempSync(path.join(tmpdir(), 'dsv-kv-metric-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function cacheConfigInfo(model: string, flags: string[] = []): Promise<Record<string, string>[]> {
  const server = await startTestServer(model, flags);
  try {
    const { samples } = parsePrometheus(await (await fetch(`${server.address}/metrics`)).text());
    return samples.filter((s) => s.name === 'vllm:cache_config_info' && s.value === 1).map((s) => s.labels);
  } finally {
    await server.drainAndClose();
  }
}

describe('vllm:cache_config_info', () => {
  test('auto resolves to float32 whatever the checkpoint stores; an explicit flag is what is allocated', async () => {
    const config = tinyHfConfig(); // torch_dtype bfloat16
    const bf16 = path.join(root, 'bf16');
    writeCheckpoint(bf16, config, randomCheckpoint(config, { seed: 3 }), { dtype: 'BF16' });
    const [info] = await cacheConfigInfo(bf16);
    assert.equal(info?.cache_dtype, 'float32');
    assert.equal(info?.block_size, '16');
    assert.equal(info?.num_gpu_blocks, '128');
    assert.deepEqual(
      (await cacheConfigInfo(FIXTURE_DIR, ['--kv-cache-dtype', 'bfloat16'])).map((l) => l.cache_dtype),
      ['bfloat16'],
    );
    assert.deepEqual(
      (await cacheConfigInfo(bf16, ['--kv-cache-dtype', 'fp8'])).map((l) => l.cache_dtype),
      ['fp8'],
    );
  });
});
