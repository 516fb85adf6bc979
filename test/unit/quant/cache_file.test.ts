// The checksum of a quantised-weights cache file: CRC-32 for files written now, sha256 still verified for
// files written before (an existing cache is not rebuilt), and a file with neither is refused.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { quantizeMatrix } from '../../../src/engine/quant/block_quant.ts';
import { readCacheFile, writeCacheFile, type CachedTensor } from '../../../src/engine/quant/cache_file.ts';
import { seededRandom } from '../../../tools/checkpoint/random_weights.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-qfile-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const KEY = 'k'.repeat(64);

function tensors(): Map<string, CachedTensor> {
  const rng = seededRandom(3);
  // [96 * 1024, 64] int8: 6 MiB of codes (rows * 2 blocks * 32 bytes), more than one 4 MiB read chunk.
  const w = Float32Array.from({ length: 96 * 1024 * 64 }, () => rng.normal());
  return new Map<string, CachedTensor>([
    ['w.weight', { kind: 'quantized', matrix: quantizeMatrix(w, 96 * 1024, 64, 8) }],
    ['norm.weight', { kind: 'f32', data: Float32Array.from({ length: 9 }, () => rng.normal()), shape: [9] }],
  ]);
}

/** The file with its metadata rewritten by `edit` (header re-padded to a multiple of 8, data unchanged). */
function rewriteMetadata(file: string, edit: (meta: Record<string, string>, data: Buffer) => void): void {
  const b = readFileSync(file);
  const headerLen = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + headerLen).toString('utf8')) as { __metadata__: Record<string, string> };
  const data = b.subarray(8 + headerLen);
  edit(header.__metadata__, data);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + len, 0x20);
  head.writeBigUInt64LE(BigInt(len), 0);
  json.copy(head, 8);
  writeFileSync(file, Buffer.concat([head, data]));
}

function flipLastDataByte(file: string): void {
  const b = readFileSync(file);
  b[b.length - 1]! ^= 0x10;
  writeFileSync(file, b);
}

describe('cache file checksum', () => {
  it('a file written now carries a crc32, is read back bit-exactly, and one flipped bit is caught', () => {
    const file = path.join(tmp, 'crc.safetensors');
    writeCacheFile(file, KEY, tensors());
    let meta: Record<string, string> = {};
    rewriteMetadata(file, (m) => (meta = { ...m }));
    assert.match(meta.crc32 ?? '', /^[0-9a-f]{8}$/);
    assert.equal(meta.sha256, undefined);
    const got = readCacheFile(file, KEY).get('w.weight');
    const want = tensors().get('w.weight');
    assert.ok(got?.kind === 'quantized' && want?.kind === 'quantized');
    assert.deepEqual(got.matrix.packed, want.matrix.packed);
    flipLastDataByte(file);
    assert.throws(() => readCacheFile(file, KEY), /checksum mismatch/);
  });

  it('a file written with a sha256 (before crc32) is still verified with it', () => {
    const file = path.join(tmp, 'sha.safetensors');
    writeCacheFile(file, KEY, tensors());
    rewriteMetadata(file, (m, data) => {
      delete m.crc32;
      m.sha256 = createHash('sha256').update(data).digest('hex');
    });
    assert.equal(readCacheFile(file, KEY).size, 2);
    flipLastDataByte(file);
    assert.throws(() => readCacheFile(file, KEY), /checksum mismatch/);
  });

  it('a file without a checksum is refused', () => {
    const file = path.join(tmp, 'none.safetensors');
    writeCacheFile(file, KEY, tensors());
    rewriteMetadata(file, (m) => delete m.crc32);
    assert.throws(() => readCacheFile(file, KEY), /no checksum/);
  });
});
