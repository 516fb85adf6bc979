// bench/machine: CPU facts from lscpu, the FMA peak and the physics check of the GEMM probe, the load record.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCgroupCpuMax, parseCpuInfo, usablePhysicalCores } from '../../bench/machine/cpu_info.ts';
import { checkGemm, fmaPeak, fmaShape, PEAK_TOLERANCE } from '../../bench/machine/fma_peak.ts';
import { loadVerdict, othersShare, parseProcPidStat, parseProcStat, treeTicks, type LoadRecord } from '../../bench/machine/load.ts';

const LSCPU_ZEN5 = `Architecture:                            x86_64
CPU(s):                                  2
Vendor ID:                               AuthenticAMD
Model name:                              AMD EPYC
CPU family:                              26
Model:                                   2
Thread(s) per core:                      1
Core(s) per socket:                      2
Socket(s):                               1
Flags:                                   fpu sse sse2 fma avx avx2 avx512f avx512_vnni
`;

const LSCPU_SMT = `Vendor ID: GenuineIntel
Model name: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
CPU family: 6
Model: 106
Thread(s) per core: 2
Core(s) per socket: 32
Socket(s): 2
CPU max MHz: 3500.0000
Flags: sse2 fma avx avx2 avx512f
`;

describe('cpu facts', () => {
  it('parses lscpu and caps cores by usable CPUs and the cgroup quota', () => {
    const c = parseCpuInfo(LSCPU_ZEN5, '', 2, null);
    assert.equal(c.vendor, 'AuthenticAMD');
    assert.equal(c.family, 26);
    assert.equal(c.model, 2);
    assert.equal(c.coresPerSocket, 2);
    assert.ok(c.flags.includes('avx512f'));
    assert.equal(c.maxMHz, null);
    assert.equal(usablePhysicalCores(c), 2);
    const x = parseCpuInfo(LSCPU_SMT, '', 8, 3.5);
    assert.equal(x.maxMHz, 3500);
    assert.equal(usablePhysicalCores(x), 4); // 64 physical cores, 8 usable CPUs, quota 3.5 CPUs -> 4
    assert.equal(usablePhysicalCores(parseCpuInfo(LSCPU_SMT, '', 8, null)), 8);
  });
  it('falls back to /proc/cpuinfo when lscpu is missing', () => {
    const c = parseCpuInfo(
      '',
      'vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\ncpu cores\t: 4\nflags\t\t: fma avx2\n',
      4,
      null,
    );
    assert.equal(c.modelName, 'AMD EPYC 9R14');
    assert.equal(c.family, 25);
    assert.equal(c.coresPerSocket, 4);
    assert.equal(c.source, '/proc/cpuinfo');
  });
  it('reads the cgroup v2 cpu.max quota', () => {
    assert.equal(parseCgroupCpuMax('max 100000\n'), null);
    assert.equal(parseCgroupCpuMax('150000 100000\n'), 1.5);
  });
});

describe('FMA peak and the GEMM physics check', () => {
  it('takes units x lanes from the microarchitecture, not just the flags', () => {
    const zen5 = fmaShape('AuthenticAMD', 26, ['avx512f']);
    assert.deepEqual([zen5.unitsPerCore, zen5.lanesPerUnit], [2, 16]);
    const zen4 = fmaShape('AuthenticAMD', 25, ['avx512f', 'avx2']);
    assert.deepEqual([zen4.unitsPerCore, zen4.lanesPerUnit], [2, 8]); // AVX-512 double-pumped on 256-bit pipes
    const unknown = fmaShape('GenuineIntel', 6, ['fma', 'avx2']);
    assert.deepEqual([unknown.unitsPerCore, unknown.lanesPerUnit], [2, 8]);
    assert.match(unknown.source, /upper bound/);
  });
  it('computes cores x units x lanes x 2 x clock', () => {
    const p = fmaPeak(2, fmaShape('AuthenticAMD', 26, []), 3.5, { cores: 'lscpu', clock: 'measured' });
    assert.equal(p.gflops, 2 * 2 * 16 * 2 * 3.5); // 448
    const zen4 = fmaPeak(2, fmaShape('AuthenticAMD', 25, ['avx512f']), 3.6, { cores: 'lscpu', clock: 'measured' });
    assert.ok(Math.abs(zen4.gflops - 230.4) < 1e-9); // the 227-231 GFLOP/s of the Zen 4 in DESIGN.md
    assert.throws(() => fmaPeak(0, fmaShape('AuthenticAMD', 26, []), 3.5, { cores: '', clock: '' }), RangeError);
  });
  it('rejects a GEMM figure above the peak and passes one below it', () => {
    const zen4 = fmaPeak(2, fmaShape('AuthenticAMD', 25, ['avx512f']), 3.6, { cores: '', clock: '' });
    const bad = checkGemm(429, zen4); // the first harness's "ceiling" against a Zen 4's peak
    assert.equal(bad.ok, false);
    assert.ok(!bad.ok && /above|peak/.test(bad.reason));
    assert.ok(Math.abs(bad.fractionOfPeak - 429 / 230.4) < 1e-12);
    const zen5 = fmaPeak(2, fmaShape('AuthenticAMD', 26, ['avx512f']), 3.49, { cores: '', clock: '' });
    assert.equal(checkGemm(429, zen5).ok, true); // the same figure is physical on a Zen 5 (447 GFLOP/s peak)
    assert.equal(checkGemm(zen5.gflops * (1 + PEAK_TOLERANCE * 0.9), zen5).ok, true);
    assert.equal(checkGemm(zen5.gflops * (1 + PEAK_TOLERANCE * 1.1), zen5).ok, false);
    assert.equal(checkGemm(Number.NaN, zen5).ok, false);
    assert.equal(checkGemm(-1, zen5).ok, false);
  });
});

describe('load record', () => {
  it('parses /proc/stat and /proc/<pid>/stat (a command name with spaces and parentheses)', () => {
    assert.deepEqual(parseProcStat('cpu  100 5 20 1000 7 1 2 3 0 0\ncpu0 50 2 10 500 3 0 1 1 0 0\n'), { busy: 131, total: 1138 });
    const line = '4242 (node (my app)) S 4000 4242 4000 0 -1 4194560 100 0 0 0 150 30 7 3 20 0 11 0 100 0 0';
    assert.deepEqual(parseProcPidStat(line), { ppid: 4000, ticks: 150 + 30 + 7 + 3 });
  });
  it('sums the CPU ticks of a process tree only', () => {
    const procs = new Map([
      [1, { ppid: 0, ticks: 1000 }],
      [10, { ppid: 1, ticks: 5 }],
      [11, { ppid: 10, ticks: 7 }],
      [12, { ppid: 11, ticks: 3 }],
      [20, { ppid: 1, ticks: 99 }],
    ]);
    assert.equal(treeTicks(procs, 10), 15);
    assert.equal(treeTicks(procs, 20), 99);
  });
  it('attributes busy time that is not ours to others', () => {
    const a = { busy: 1000, total: 4000, ours: 100 };
    const b = { busy: 1300, total: 4400, ours: 300 }; // 300 busy of 400, 200 ours -> 100 others
    assert.equal(othersShare(a, b), 0.25);
  });
  it('flags a run loaded before the start or by others during it', () => {
    const quiet: LoadRecord = {
      loadAverageBefore: 0.3,
      othersShareBefore: Number.NaN,
      loadAverageAfter: 1.9,
      othersShare: 0.02,
      othersShareMaxWindow: 0.08,
      cpus: 2,
      seconds: 600,
    };
    assert.deepEqual(loadVerdict(quiet), { loaded: false, reasons: [] }); // our own threads raising the load average are not load
    const busyBefore = loadVerdict({ ...quiet, loadAverageBefore: 0.6 });
    assert.equal(busyBefore.loaded, true);
    assert.match(busyBefore.reasons[0] ?? '', /0\.60 before the start/);
    const busyDuring = loadVerdict({ ...quiet, othersShare: 0.3 });
    assert.equal(busyDuring.loaded, true);
    assert.match(busyDuring.reasons[0] ?? '', /30% of the 2 CPUs/);
    assert.equal(loadVerdict({ ...quiet, othersShare: Number.NaN }).loaded, true);
    assert.equal(loadVerdict({ ...quiet, loadAverageBefore: 1.5, cpus: 8 }).loaded, false); // 0.25 per CPU
    // A measured idle check before the start replaces the lagging load average, both ways.
    assert.equal(loadVerdict({ ...quiet, loadAverageBefore: 16, othersShareBefore: 0.01 }).loaded, false);
    const busyJustBefore = loadVerdict({ ...quiet, othersShareBefore: 0.4 });
    assert.equal(busyJustBefore.loaded, true);
    assert.match(busyJustBefore.reasons.join(' '), /40% of the 2 CPUs just before the start/);
  });
});
