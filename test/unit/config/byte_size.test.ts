import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatByteSize, loadConfig, parseByteSize } from '../../../src/config.ts';
import { writeConfigFile } from './helpers.ts';

describe('parseByteSize', () => {
  it('reads plain integers and binary and decimal suffixes', () => {
    const cases: [string, number][] = [
      ['4096', 4096],
      ['4096B', 4096],
      ['1k', 1000],
      ['1K', 1000],
      ['1KB', 1000],
      ['1KiB', 1024],
      ['1ki', 1024],
      ['100M', 100e6],
      ['512MiB', 512 * 2 ** 20],
      ['512 MiB', 512 * 2 ** 20],
      ['1G', 1e9],
      ['2GiB', 2 ** 31],
      ['1gb', 1e9],
      ['1.5GiB', 1.5 * 2 ** 30],
      ['0.5K', 500],
      ['1T', 1e12],
      ['1TiB', 2 ** 40],
      [' 64Mi ', 64 * 2 ** 20],
    ];
    for (const [text, bytes] of cases) assert.equal(parseByteSize(text), bytes, text);
  });

  it('rejects everything else', () => {
    for (const text of ['', 'G', '1.5', '-1', '1e9', '1X', '1 G B', '1PiB', '0x10', '1,024', '99999999999999999999']) {
      assert.equal(parseByteSize(text), null, text);
    }
  });

  it('formats whole binary units', () => {
    assert.equal(formatByteSize(2 ** 30), '1GiB');
    assert.equal(formatByteSize(32 * 2 ** 20), '32MiB');
    assert.equal(formatByteSize(1536), '1536');
    assert.equal(formatByteSize(1000), '1000');
  });

  it('byte options take sizes from every source', () => {
    const file = writeConfigFile('bytes.yaml', 'kvCacheMemory: 256MiB\nmaxRequestBody: 1048576\n');
    const config = loadConfig(['--config', file], {});
    assert.equal(config.kvCacheMemory, 256 * 2 ** 20);
    assert.equal(config.maxRequestBody, 2 ** 20);
    assert.equal(loadConfig([], { DSV_MAX_REQUEST_BODY: '64MiB' }).maxRequestBody, 64 * 2 ** 20);
  });
});
