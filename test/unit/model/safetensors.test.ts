import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { CheckpointError } from '../../../src/common/errors.ts';
import { SafetensorsFile } from '../../../src/engine/checkpoint/safetensors.ts';
import { safetensorsBytes, type RawTensor } from '../../helpers/checkpoint_writer.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-st-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
function writeFile(bytes: Uint8Array): string {
  const file = path.join(tmp, `t${counter++}.safetensors`);
  writeFileSync(file, bytes);
  return file;
}

const entries: RawTensor[] = [
  { name: 'a', dtype: 'F32', shape: [2, 3], bytes: new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer) },
  { name: 'ids', dtype: 'I64', shape: [2], bytes: new Uint8Array(new BigInt64Array([7n, -1n]).buffer) },
  { name: 'empty', dtype: 'BF16', shape: [0, 4], bytes: new Uint8Array(0) },
  { name: 'b', dtype: 'U8', shape: [3], bytes: Uint8Array.of(9, 8, 7) },
];

function headerFile(header: unknown, dataBytes: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return writeFile(Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

function expectError(file: string, ...parts: string[]): void {
  assert.throws(
    () => SafetensorsFile.open(file).close(),
    (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
      assert.equal(e.code, 'DSV_ERR_CHECKPOINT');
      assert.ok(e.message.startsWith(`${path.basename(file)}: `), e.message);
      for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      return true;
    },
  );
}

describe('SafetensorsFile', () => {
  it('parses metadata, dtypes, shapes and reads exact bytes, zero-size tensors included', () => {
    const f = SafetensorsFile.open(writeFile(safetensorsBytes(entries, { format: 'pt', note: 'x' })));
    try {
      assert.deepEqual(f.header.metadata, { format: 'pt', note: 'x' });
      assert.deepEqual([...f.tensors.keys()], ['a', 'ids', 'empty', 'b']);
      assert.deepEqual(f.tensors.get('a')!.shape, [2, 3]);
      assert.deepEqual(new Float32Array(f.read('a').buffer), new Float32Array([1, 2, 3, 4, 5, 6]));
      assert.deepEqual([...new BigInt64Array(f.read('ids').buffer)], [7n, -1n]);
      assert.equal(f.read('empty').length, 0);
      assert.deepEqual([...f.read('b')], [9, 8, 7]);
    } finally {
      f.close();
    }
  });

  it('rejects a file too short for the header length', () => {
    expectError(writeFile(Uint8Array.of(1, 2, 3)), 'truncated');
  });

  it('rejects an absurd header length', () => {
    const bytes = safetensorsBytes(entries);
    bytes.writeBigUInt64LE(1n << 40n, 0);
    expectError(writeFile(bytes), 'header length', 'absurd');
  });

  it('rejects a header length larger than the file', () => {
    const bytes = safetensorsBytes(entries);
    bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
    expectError(writeFile(bytes), 'exceeds the file size');
  });

  it('rejects invalid JSON and a non-object header', () => {
    const bytes = safetensorsBytes(entries);
    bytes[8] = 'x'.charCodeAt(0);
    expectError(writeFile(bytes), 'not valid JSON');
    expectError(headerFile([1, 2], 0), 'not an object');
  });

  it('rejects an unknown dtype, naming the tensor', () => {
    expectError(headerFile({ w: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, 4), 'tensor "w"', 'unknown', '"F33"');
  });

  it('rejects bytes != prod(shape) * dtype size', () => {
    expectError(headerFile({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12), 'tensor "w"', 'needs 16');
  });

  it('rejects malformed shape and offsets', () => {
    expectError(headerFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), 'tensor "w"', 'invalid shape');
    expectError(headerFile({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 4), 'tensor "w"', 'invalid data_offsets');
    expectError(headerFile({ w: { dtype: 'F32', shape: [1] } }, 4), 'tensor "w"', 'invalid data_offsets');
  });

  it('rejects offsets past the end of the data section', () => {
    expectError(headerFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 12), 'tensor "w"', 'past the end');
  });

  it('rejects overlapping ranges, naming both tensors', () => {
    const header = {
      x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      y: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
    };
    expectError(headerFile(header, 16), '"x"', '"y"', 'overlapping');
  });

  it('rejects a truncated data section, naming the cut tensor', () => {
    const bytes = safetensorsBytes(entries);
    expectError(writeFile(bytes.subarray(0, bytes.length - 2)), 'tensor "b"', 'truncated');
  });

  it('rejects malformed __metadata__', () => {
    expectError(headerFile({ __metadata__: { format: 1 } }, 0), '__metadata__');
  });
});
