// Start-up size checks: machine memory (cgroup-aware), --threads, --num-kv-blocks and
// --kv-cache-memory against it, each refusal naming the flag and the numbers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { machineMemory } from '../../../src/common/machine_memory.ts';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import { readModelConfig } from '../../../src/engine/checkpoint/config.ts';
import { checkStartupSizes, kvBytesPerBlock, type Machine } from '../../../src/server/startup_checks.ts';
import { FIXTURE_DIR } from '../../helpers/golden.ts';

const GiB = 2 ** 30;
const files = (map: Record<string, string>) => (file: string) => map[file] ?? null;

describe('machineMemory', () => {
  it('is os.totalmem() without a cgroup limit ("max", v1 "unlimited", no files)', () => {
    assert.deepEqual(machineMemory(files({}), 24 * GiB), { bytes: 24 * GiB, source: 'os.totalmem()' });
    assert.equal(machineMemory(files({ '/sys/fs/cgroup/memory.max': 'max\n' }), 24 * GiB).bytes, 24 * GiB);
    assert.equal(machineMemory(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n' }), 24 * GiB).bytes, 24 * GiB);
  });

  it("takes the tightest cgroup limit, the process's own cgroup included", () => {
    const v2 = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/c1\n',
      '/sys/fs/cgroup/kubepods/pod1/c1/memory.max': `${2 * GiB}\n`,
      '/sys/fs/cgroup/memory.max': 'max',
    });
    assert.deepEqual(machineMemory(v2, 24 * GiB), { bytes: 2 * GiB, source: '/sys/fs/cgroup/kubepods/pod1/c1/memory.max' });
    const v1 = files({
      '/proc/self/cgroup': '4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n',
      '/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': `${GiB}`,
    });
    assert.equal(machineMemory(v1, 24 * GiB).bytes, GiB);
    assert.equal(machineMemory(files({ '/sys/fs/cgroup/memory.max': `${64 * GiB}` }), 24 * GiB).bytes, 24 * GiB, 'a limit above RAM changes nothing');
  });

  it('reads this machine without throwing', () => {
    const m = machineMemory();
    assert.ok(m.bytes > 0 && Number.isSafeInteger(m.bytes), JSON.stringify(m));
  });
});

describe('checkStartupSizes', () => {
  const model = readModelConfig(FIXTURE_DIR);
  const machine: Machine = { memory: { bytes: 4 * GiB, source: 'os.totalmem()' }, cpus: 2 };
  const check = (flags: string[]) => () => checkStartupSizes(loadConfig(['--model', FIXTURE_DIR, ...flags], {}), model, machine);
  const refused = (pattern: RegExp) => (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, pattern);
    return true;
  };

  it('accepts the defaults and sizes that fit', () => {
    check([])();
    check(['--num-kv-blocks', '1000', '--threads', '8'])();
  });

  it('refuses --threads beyond 4 per CPU', () => {
    assert.throws(check(['--threads', '100000']), refused(/^--threads 100000: at most 8 .*2 CPUs/));
    assert.throws(check(['--threads', '9']), refused(/^--threads 9/));
  });

  it('refuses --kv-cache-memory above the machine memory, naming both', () => {
    assert.throws(check(['--kv-cache-memory', '5GiB']), refused(/^--kv-cache-memory 5GiB: more than .*4\.0 GiB \(os\.totalmem\(\)\)/));
  });

  it('refuses --num-kv-blocks whose cache exceeds the memory, with the bytes per block', () => {
    const perBlock = kvBytesPerBlock(model, 64, false);
    assert.throws(
      check(['--num-kv-blocks', '100000000']),
      refused(new RegExp(`^--num-kv-blocks 100000000: needs .* GiB of KV cache \\(${perBlock} bytes per block of 64 tokens\\), more than .*4\\.0 GiB`)),
    );
  });

  it('refuses more KV tokens than one engine addresses even with the memory for them', () => {
    const huge: Machine = { memory: { bytes: 2 ** 52, source: 'test' }, cpus: 2 };
    assert.throws(
      () => checkStartupSizes(loadConfig(['--model', FIXTURE_DIR, '--num-kv-blocks', '100000000'], {}), model, huge),
      refused(/^--num-kv-blocks 100000000: 6400000000 KV tokens exceed/),
    );
  });

  it('refuses --kv-cache-memory that holds no block', () => {
    assert.throws(check(['--kv-cache-memory', '1K']), refused(/^--kv-cache-memory 1000: holds no KV block/));
  });
});
