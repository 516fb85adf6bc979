// The load's memory guard: the rest of the memory plan against what the kernel can still give.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availableMemory } from '../../../src/common/machine_memory.ts';
import { EngineError } from '../../../src/common/errors.ts';
import { LoadMemoryGuard } from '../../../src/engine/load_memory_guard.ts';
import type { MemoryPlan } from '../../../src/engine/memory_plan.ts';
import type { RunnerWeightSource } from '../../../src/engine/model_runner.ts';

const GiB = 2 ** 30;
const plan = { total: 10 * GiB, weights: 8 * GiB, kvCache: GiB, machine: { bytes: 24 * GiB, source: 'os.totalmem()' } } as MemoryPlan;
const files = (map: Record<string, string>) => (file: string) => map[file] ?? null;

describe('availableMemory', () => {
  it('reads MemAvailable, or the cgroup v2 room (memory.max - memory.current) when that is smaller', () => {
    const meminfo = 'MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n';
    assert.deepEqual(availableMemory(files({ '/proc/meminfo': meminfo })), { bytes: 20000000 * 1024, source: '/proc/meminfo MemAvailable' });
    const cg = files({ '/proc/meminfo': meminfo, '/sys/fs/cgroup/memory.max': `${4 * GiB}`, '/sys/fs/cgroup/memory.current': `${GiB}` });
    assert.deepEqual(availableMemory(cg), { bytes: 3 * GiB, source: '/sys/fs/cgroup/memory.max minus memory.current' });
    assert.equal(
      availableMemory(files({ '/proc/meminfo': meminfo, '/sys/fs/cgroup/memory.max': 'max', '/sys/fs/cgroup/memory.current': '5' }))!.bytes,
      20000000 * 1024,
    );
    assert.equal(availableMemory(files({})), null);
  });

  it('reads this machine', () => {
    const m = availableMemory();
    assert.ok(m === null || (m.bytes > 0 && Number.isSafeInteger(m.bytes)), JSON.stringify(m));
  });
});

describe('LoadMemoryGuard', () => {
  it('passes while the rest of the plan fits in the available memory, and says why it stops otherwise', () => {
    let avail = 7 * GiB;
    const guard = new LoadMemoryGuard(
      plan,
      () => ({ bytes: avail, source: 'test' }),
      () => 3 * GiB,
    );
    guard.check('to load this model'); // needs 7 GiB more
    avail = 6 * GiB;
    assert.throws(
      () => guard.check('while loading layer 4'),
      (e: unknown) => {
        assert.ok(e instanceof EngineError && e.code === 'DSV_ERR_CONFIG', String(e));
        assert.match(
          e.message,
          /^not enough free memory while loading layer 4: the memory plan \(10\.0 GiB\) needs 7\.0 GiB more than this process holds \(3\.0 GiB\), but only 6\.0 GiB is available \(test\)/,
        );
        assert.match(e.message, /--quantization or --kv-cache-memory/);
        return true;
      },
    );
    new LoadMemoryGuard(
      plan,
      () => null,
      () => 0,
    ).check('where nothing can be read');
  });

  it('checks before each layer, the head and each MTP module of the wrapped source', async () => {
    const stages: string[] = [];
    const source = {
      config: {},
      quantBits: null,
      numMtpModules: 1,
      embedding: async () => 'e',
      layer: async (l: number) => `layer ${l}`,
      head: async () => 'h',
      mtp: async (i: number) => `mtp ${i}`,
    } as unknown as RunnerWeightSource;
    const guard = new LoadMemoryGuard(plan, () => {
      stages.push('check');
      return { bytes: 100 * GiB, source: 'test' };
    });
    const guarded = guard.guard(source);
    assert.equal(await guarded.layer(2), 'layer 2');
    assert.equal(await guarded.head(), 'h');
    assert.equal(await guarded.mtp(0), 'mtp 0');
    assert.equal(await guarded.embedding(), 'e');
    assert.equal(stages.length, 3);
    assert.equal(guarded.numMtpModules, 1);
  });
});
