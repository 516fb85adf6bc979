// The bench's PNG encoder (bench/plot/png.ts) and chart rasteriser: decoded back through node:zlib with every
// chunk's CRC checked against node:zlib's own crc32 where available and our table otherwise.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import zlib, { inflateSync } from 'node:zlib';
import { Canvas, niceStep, renderLineChart, textWidth, tickLabel } from '../../bench/plot/chart.ts';
import { glyph, hasGlyph } from '../../bench/plot/font5x7.ts';
import { PNG_SIGNATURE, crc32, encodePng } from '../../bench/plot/png.ts';

interface Chunk {
  type: string;
  data: Buffer;
  crc: number;
}

function readChunks(png: Buffer): Chunk[] {
  assert.deepEqual([...png.subarray(0, 8)], [...PNG_SIGNATURE]);
  const chunks: Chunk[] = [];
  for (let off = 8; off < png.length;) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    const crc = png.readUInt32BE(off + 8 + len);
    assert.equal(crc, crc32(png.subarray(off + 4, off + 8 + len)), `CRC of ${type}`);
    chunks.push({ type, data, crc });
    off += 12 + len;
  }
  return chunks;
}

/** Decodes an 8-bit RGB, filter-0, non-interlaced PNG (what encodePng writes). */
function decode(png: Buffer): { width: number; height: number; rgb: Uint8Array } {
  const chunks = readChunks(png);
  assert.deepEqual(
    chunks.map((c) => c.type),
    ['IHDR', 'IDAT', 'IEND'],
  );
  const ihdr = chunks[0]!.data;
  const width = ihdr.readUInt32BE(0);
  const height = ihdr.readUInt32BE(4);
  assert.deepEqual([...ihdr.subarray(8)], [8, 2, 0, 0, 0]);
  const raw = inflateSync(chunks[1]!.data);
  assert.equal(raw.length, height * (width * 3 + 1));
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    assert.equal(raw[y * (width * 3 + 1)], 0, 'filter type None');
    rgb.set(raw.subarray(y * (width * 3 + 1) + 1, (y + 1) * (width * 3 + 1)), y * width * 3);
  }
  return { width, height, rgb };
}

describe('PNG encoder', () => {
  it('computes the standard CRC-32 (check value of "123456789" and zlib agreement)', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    assert.equal(crc32(new Uint8Array(0)), 0);
    const zcrc = (zlib as unknown as { crc32?: (b: Uint8Array) => number }).crc32;
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 255);
    if (zcrc) assert.equal(crc32(bytes), zcrc(bytes));
    assert.equal(crc32(bytes.subarray(500), crc32(bytes.subarray(0, 500))), crc32(bytes), 'incremental');
  });

  it('round-trips pixels through inflate, with valid chunk CRCs', () => {
    for (const [w, h] of [
      [1, 1],
      [3, 2],
      [17, 9],
    ] as const) {
      const rgb = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 53 + 7) & 255);
      const back = decode(encodePng(w, h, rgb));
      assert.equal(back.width, w);
      assert.equal(back.height, h);
      assert.deepEqual(back.rgb, rgb);
    }
  });

  it('rejects a wrong buffer size', () => {
    assert.throws(() => encodePng(2, 2, new Uint8Array(11)), /12 RGB bytes/);
    assert.throws(() => encodePng(0, 2, new Uint8Array(0)), /bad PNG size/);
  });
});

describe('chart rasteriser', () => {
  it('draws lines, text and a chart that decodes to the same canvas', () => {
    const cv = new Canvas(20, 10);
    cv.line(0, 0, 19, 9, [255, 0, 0]);
    assert.deepEqual(cv.get(0, 0), [255, 0, 0]);
    assert.deepEqual(cv.get(19, 9), [255, 0, 0]);
    assert.deepEqual(cv.get(19, 0), [255, 255, 255]);
    cv.text(0, 0, '1', [0, 0, 0]);
    assert.deepEqual(cv.get(2, 0), [0, 0, 0], 'top of the "1" glyph');
    assert.equal(textWidth('ab'), 11);
    assert.equal(textWidth('ab', 2), 22);

    const chart = renderLineChart({
      title: 'T',
      xLabel: 'x',
      yLabel: 'y',
      categories: ['0', '512'],
      series: [
        { name: 'a', values: [1, 2] },
        { name: 'b', values: [null, 3], color: [0, 200, 0] },
      ],
      width: 300,
      height: 200,
    });
    const back = decode(chart.png());
    assert.deepEqual(back.rgb, chart.rgb);
    let green = 0;
    for (let i = 0; i < back.rgb.length; i += 3) if (back.rgb[i] === 0 && back.rgb[i + 1] === 200 && back.rgb[i + 2] === 0) green++;
    assert.ok(green > 50, `series b is drawn (${green} px)`);
  });

  it('has glyphs for labels and nice ticks', () => {
    for (const ch of '0123456789 abcxyzABCXYZ.,-+/()%:') assert.ok(hasGlyph(ch), ch);
    assert.equal(glyph('\u00e9'), glyph('?'));
    assert.equal(niceStep(100, 5), 20);
    assert.equal(niceStep(7, 5), 2);
    assert.equal(niceStep(0.3, 5), 0.1);
    assert.equal(tickLabel(12000), '12k');
    assert.equal(tickLabel(1500), '1500');
    assert.equal(tickLabel(0.25), '0.25');
    assert.equal(tickLabel(0), '0');
  });
});
