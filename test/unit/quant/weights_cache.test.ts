import assert from 'node:assert/strict';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { quantizeMatrix, type QuantizedMatrix } from '../../../src/engine/quant/block_quant.ts';
import type { CachedTensor } from '../../../src/engine/quant/cache_file.ts';
import { checkpointKey, QuantizedWeightsCache } from '../../../src/engine/quant/weights_cache.ts';
import { seededRandom } from '../../../tools/checkpoint/random_weights.ts';
import { at } from '../../helpers/at.ts';

const fixture = fileURLToPath(new URL('../../fixtures/tiny-dsv32/', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-qcache-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

class Log {
  readonly lines: string[] = [];
  info(m: string): void {
    this.lines.push(`info: ${m}`);
  }
  warn(m: string): void {
    this.lines.push(`warn: ${m}`);
  }
}

/** A copy of the fixture checkpoint (mtimes kept) that a test may modify. */
function modelCopy(name: string): string {
  const dir = path.join(tmp, name);
  cpSync(fixture, dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

function group(seed: number): Map<string, CachedTensor> {
  const rng = seededRandom(seed);
  const w = Float32Array.from({ length: 40 * 70 }, () => rng.normal());
  return new Map<string, CachedTensor>([
    ['a.weight', { kind: 'quantized', matrix: quantizeMatrix(w, 40, 70, 4) }],
    ['norm.weight', { kind: 'f32', data: Float32Array.from({ length: 7 }, () => rng.normal()), shape: [7] }],
    ['b.weight', { kind: 'quantized', matrix: quantizeMatrix(w.subarray(0, 10 * 70), 10, 70, 8) }],
    ['embed.weight', { kind: 'half', matrix: { half: Uint16Array.from({ length: 3 * 5 }, () => Math.floor(rng.uniform() * 65536)), shape: [3, 5] } }],
  ]);
}

function assertSameGroup(got: Map<string, CachedTensor> | null, want: Map<string, CachedTensor>): void {
  assert.ok(got !== null);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, t] of want) {
    const g: CachedTensor = got.get(name)!;
    if (t.kind === 'f32') {
      assert.ok(g.kind === 'f32');
      assert.deepEqual([...g.data], [...t.data]);
      assert.deepEqual([...g.shape], [...t.shape]);
    } else if (t.kind === 'half') {
      assert.ok(g.kind === 'half');
      assert.deepEqual(g.matrix.half, t.matrix.half);
      assert.deepEqual([...g.matrix.shape], [...t.matrix.shape]);
    } else {
      assert.ok(g.kind === 'quantized');
      const m: QuantizedMatrix = g.matrix;
      assert.deepEqual([m.bits, m.rows, m.cols], [t.matrix.bits, t.matrix.rows, t.matrix.cols]);
      assert.deepEqual(m.packed, t.matrix.packed);
      assert.deepEqual([...m.scales], [...t.matrix.scales]);
    }
  }
}

describe('quantized weights cache', () => {
  it('round trip: a group written by one start is read back bit-exactly by the next', () => {
    const model = modelCopy('rt');
    const root = path.join(tmp, 'cache-rt');
    const log = new Log();
    const first = QuantizedWeightsCache.open(root, model, 'int4', log);
    assert.equal(first.read('layer.0'), null);
    const g = group(1);
    first.write('layer.0', g);
    const second = QuantizedWeightsCache.open(root, model, 'int4', log);
    assertSameGroup(second.read('layer.0'), g);
    assert.deepEqual(log.lines, []);
  });

  it('the key depends on the mode, config.json, headers, sizes and mtimes, not on the directory path', () => {
    const a = modelCopy('key-a');
    const b = modelCopy('key-b');
    const base = checkpointKey(a, 'int4');
    assert.equal(checkpointKey(b, 'int4'), base, 'a copy with the same timestamps shares the key');
    assert.notEqual(checkpointKey(a, 'int8'), base);
    const st = statSync(path.join(b, 'model.safetensors'));
    utimesSync(path.join(b, 'model.safetensors'), st.atime, new Date(st.mtimeMs + 5000));
    assert.notEqual(checkpointKey(b, 'int4'), base, 'a rewritten file (new mtime) changes the key');
    const c = modelCopy('key-c');
    writeFileSync(path.join(c, 'config.json'), readFileSync(path.join(c, 'config.json'), 'utf8').replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'));
    assert.notEqual(checkpointKey(c, 'int4'), base);
  });

  it("a changed checkpoint misses, and the old version's cache is removed", () => {
    const model = modelCopy('stale');
    const root = path.join(tmp, 'cache-stale');
    const log = new Log();
    const old = QuantizedWeightsCache.open(root, model, 'int8', log);
    old.write('layer.0', group(2));
    const other = QuantizedWeightsCache.open(root, model, 'int4', log); // another mode: kept
    other.write('layer.0', group(3));
    const st = statSync(path.join(model, 'model.safetensors'));
    utimesSync(path.join(model, 'model.safetensors'), st.atime, new Date(st.mtimeMs + 60_000));
    const fresh = QuantizedWeightsCache.open(root, model, 'int8', log);
    assert.equal(fresh.read('layer.0'), null);
    assert.ok(!existsSync(old.dir));
    assert.ok(existsSync(other.dir));
    assert.ok(
      log.lines.some((l) => l.startsWith(`info: quantized weights cache: removed ${old.dir}`)),
      log.lines.join('\n'),
    );
  });

  for (const [what, corrupt, reason] of [
    [
      'a flipped data byte',
      (f: string) => {
        const b = readFileSync(f);
        b[b.length - 3]! ^= 1;
        writeFileSync(f, b);
      },
      /checksum mismatch/,
    ],
    ['a truncated file', (f: string) => writeFileSync(f, readFileSync(f).subarray(0, 200)), /truncat|past the end/],
    [
      'a file of another key',
      (f: string) => {
        const b = readFileSync(f);
        writeFileSync(f, b.toString('latin1').replace(/"key":"[0-9a-f]{8}/, '"key":"00000000'), 'latin1');
      },
      /another checkpoint or mode/,
    ],
  ] as const) {
    it(`${what} is detected, reported, deleted and rebuilt, never used`, () => {
      const model = modelCopy(`corrupt-${what.replace(/\W+/g, '-')}`);
      const root = path.join(tmp, `cache-${what.replace(/\W+/g, '-')}`);
      const log = new Log();
      const cache = QuantizedWeightsCache.open(root, model, 'int4', log);
      cache.write('layer.1', group(4));
      const file = path.join(cache.dir, 'layer.1.safetensors');
      corrupt(file);
      assert.equal(cache.read('layer.1'), null);
      assert.ok(!existsSync(file));
      assert.equal(log.lines.length, 1);
      assert.match(at(log.lines, 0, 'log line'), /^warn: quantized weights cache: .*layer\.1\.safetensors is not usable \(/);
      assert.match(at(log.lines, 0, 'log line'), reason);
      cache.write('layer.1', group(4));
      assertSameGroup(cache.read('layer.1'), group(4));
    });
  }

  it(
    'an unwritable folder disables the cache with one warning; serving code sees only misses',
    { skip: process.getuid?.() === 0 ? 'root ignores permissions' : false },
    () => {
      const model = modelCopy('ro');
      const root = path.join(tmp, 'cache-ro');
      mkdirSync(root);
      chmodSync(root, 0o500);
      const log = new Log();
      const cache = QuantizedWeightsCache.open(root, model, 'int4', log);
      assert.equal(cache.enabled, false);
      cache.write('layer.0', group(5));
      assert.equal(cache.read('layer.0'), null);
      assert.equal(log.lines.length, 1);
      assert.match(at(log.lines, 0, 'log line'), /^warn: quantized weights cache disabled: cannot use .* \(EACCES/);
      chmodSync(root, 0o700);
    },
  );

  it('a root that is a file (cannot be created) disables the cache, even as root', () => {
    const model = modelCopy('file-root');
    const root = path.join(tmp, 'not-a-dir');
    writeFileSync(root, 'x');
    const log = new Log();
    const cache = QuantizedWeightsCache.open(root, model, 'int4', log);
    assert.equal(cache.enabled, false);
    cache.write('g', group(6));
    assert.equal(cache.read('g'), null);
    assert.deepEqual(log.lines.length, 1);
    assert.match(at(log.lines, 0, 'log line'), /quantized weights cache disabled: cannot use .* \((ENOTDIR|EEXIST)/);
  });

  it('a write that would leave the disk nearly full disables the cache instead of filling it', () => {
    const model = modelCopy('full');
    const log = new Log();
    const cache = QuantizedWeightsCache.open(path.join(tmp, 'cache-full'), model, 'int4', log);
    // A fake tensor whose byte length claims more than any disk has, without allocating it.
    const data = new Float32Array(0);
    Object.defineProperty(data, 'byteLength', { value: 2 ** 60 });
    const huge = new Map<string, CachedTensor>([['x', { kind: 'f32', data, shape: [0] }]]);
    cache.write('big', huge);
    assert.equal(cache.enabled, false);
    assert.match(at(log.lines, 0, 'log line'), /disabled: .* GB free, a write of .* GB would leave less than 1 GiB; serving continues without it$/);
    assert.deepEqual(
      readdirSync(cache.dir).filter((f) => f !== 'source.json'),
      [],
    );
  });
});
