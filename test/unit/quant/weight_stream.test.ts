// The streaming, quantising loader against loadModel (the float32 reference loader): identical tensors
// without quantisation, exactly quantizeMatrix(loaded float32) with it, from BF16 and FP8 checkpoints
// whose dims are not multiples of 32, read in chunks; headers checked before any data is read.
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { CheckpointError } from '../../../src/common/errors.ts';
import { decodeToFloat32, float32ToF16 } from '../../../src/engine/checkpoint/dtype.ts';
import { Checkpoint } from '../../../src/engine/checkpoint/safetensors.ts';
import { loadModel } from '../../../src/engine/checkpoint/weights.ts';
import { quantizeMatrix, type QuantBits } from '../../../src/engine/quant/block_quant.ts';
import { readQuantized } from '../../../src/engine/quant/quantizing_reader.ts';
import { isQuantized, WeightStream, type LoadedTensor } from '../../../src/engine/quant/weight_stream.ts';
import { namedTensors } from '../../helpers/named_tensors.ts';
import { randomTinyCheckpoint, rewriteHeader, writeCheckpoint, type WriteDType } from '../../helpers/checkpoint_writer.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-stream-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function checkpoint(dtype: WriteDType, shards = 1, opts: Parameters<typeof randomTinyCheckpoint>[0] = {}): string {
  const dir = path.join(tmp, `m${n++}`);
  const { config, tensors } = randomTinyCheckpoint({ seed: 5, ...opts });
  writeCheckpoint(dir, config, tensors, { dtype, shards });
  return dir;
}

function allGroups(stream: WeightStream): Map<string, LoadedTensor> {
  const out = new Map<string, LoadedTensor>();
  for (const g of stream.groupNames) for (const [name, t] of stream.group(g)) out.set(name, t);
  return out;
}

describe('WeightStream', () => {
  for (const [dtype, shards] of [
    ['BF16', 3],
    ['F8_E4M3', 1],
  ] as const) {
    it(`${dtype}: without quantisation, every tensor equals loadModel's`, () => {
      const dir = checkpoint(dtype, shards);
      const want = namedTensors(loadModel(dir));
      const stream = WeightStream.open(dir, { quantization: 'none' });
      const got = allGroups(stream);
      stream.close();
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
      for (const [name, t] of want) {
        const g = got.get(name)!;
        assert.ok('data' in g, name);
        assert.deepEqual(g.data, t.data, name);
        assert.deepEqual([...g.shape], [...t.shape], name);
      }
    });

    for (const mode of ['int8', 'int4'] as const) {
      it(`${dtype} -> ${mode}: linear weights quantised exactly as quantizeMatrix(float32), the embedding float16, the rest float32`, () => {
        const dir = checkpoint(dtype, shards);
        const want = namedTensors(loadModel(dir));
        const stream = WeightStream.open(dir, { quantization: mode });
        const got = allGroups(stream);
        stream.close();
        const bits: QuantBits = mode === 'int8' ? 8 : 4;
        for (const [name, t] of want) {
          const g = got.get(name)!;
          if (name === 'model.embed_tokens.weight') {
            assert.ok('half' in g);
            const half = new Uint16Array(t.data.length);
            t.data.forEach((v, i) => (half[i] = float32ToF16(v)));
            assert.deepEqual(g.half, half);
            continue;
          }
          const quantized = t.shape.length === 2 && !name.endsWith('mlp.gate.weight') && !name.endsWith('kv_b_proj.weight');
          assert.equal(isQuantized(g), quantized, name);
          if (!isQuantized(g)) {
            assert.ok('data' in g);
            assert.deepEqual(g.data, t.data, name);
            continue;
          }
          const [rows = 0, cols = 0] = t.shape; // quantized implies 2-D (above)
          const ref = quantizeMatrix(t.data, rows, cols, bits);
          assert.equal(g.bits, ref.bits, name);
          assert.deepEqual(g.packed, ref.packed, name);
          assert.deepEqual(g.scales, ref.scales, name);
        }
      });
    }
  }

  it('reads in chunks of rows (FP8: whole 128-row bands) with the same result as one read', () => {
    for (const dtype of ['BF16', 'F32', 'F16', 'F8_E4M3'] as const) {
      const dir = checkpoint(dtype);
      const ckpt = Checkpoint.open(dir);
      const name = 'model.layers.0.mlp.gate_proj.weight'; // [200, 160]: FP8 in two bands (128 + 72 rows)
      const info = ckpt.get(name)!;
      const scaleInv = dtype === 'F8_E4M3' ? decodeToFloat32(ckpt.read(`${name}_scale_inv`), ckpt.get(`${name}_scale_inv`)!.dtype as 'F32') : null;
      const whole = readQuantized(ckpt, info, 4, scaleInv);
      const chunked = readQuantized(ckpt, info, 4, scaleInv, 1000); // 6 rows per chunk; FP8: 128 (a whole band)
      ckpt.close();
      assert.deepEqual(chunked.packed, whole.packed, dtype);
      assert.deepEqual(chunked.scales, whole.scales, dtype);
    }
  });

  it('checks every tensor from the headers before reading any, naming file and tensor', () => {
    const cases: [string, (h: Record<string, any>) => void, RegExp][] = [
      [
        'missing',
        (h) => delete h['model.layers.1.mlp.experts.2.up_proj.weight'],
        /tensor "model\.layers\.1\.mlp\.experts\.2\.up_proj\.weight" is missing \(expected shape \[72, 160\]\)/,
      ],
      ['shape', (h) => (h['lm_head.weight'].shape = [160, 300]), /tensor "lm_head\.weight" has shape \[160, 300\], expected \[300, 160\]/],
      ['dtype', (h) => (h['model.norm.weight'].dtype = 'I32'), /tensor "model\.norm\.weight" has dtype I32, expected one of F32, BF16, F16/],
    ];
    for (const [what, mutate, message] of cases) {
      const dir = checkpoint('F32');
      rewriteHeader(path.join(dir, 'model.safetensors'), mutate);
      assert.throws(
        () => WeightStream.open(dir, { quantization: 'int4' }),
        (e: unknown) => {
          assert.ok(e instanceof CheckpointError && e.code === 'DSV_ERR_CHECKPOINT', what);
          assert.match(e.message, /^model\.safetensors: /);
          assert.match(e.message, message);
          return true;
        },
      );
    }
    const fp8 = checkpoint('F8_E4M3');
    rewriteHeader(path.join(fp8, 'model.safetensors'), (h) => delete h['model.layers.0.self_attn.o_proj.weight_scale_inv']);
    assert.throws(
      () => WeightStream.open(fp8, { quantization: 'int8' }),
      /"model\.layers\.0\.self_attn\.o_proj\.weight_scale_inv" is missing \(block scales of F8_E4M3/,
    );
  });

  it('MTP module: checked at open, loaded only on request (all dtypes, quantised like the layers), not counted in the main parameters', async () => {
    const plain = WeightStream.open(checkpoint('BF16'), { quantization: 'none' });
    const mainParams = plain.numParameters;
    plain.close();
    for (const [dtype, mode] of [
      ['BF16', 'none'],
      ['F8_E4M3', 'int8'],
      ['F32', 'int4'],
    ] as const) {
      const dir = checkpoint(dtype, 1, { mtp: true });
      const stream = WeightStream.open(dir, { quantization: mode });
      try {
        assert.equal(stream.numMtpModules, 1);
        assert.equal(stream.numParameters, mainParams);
        const m = await stream.mtp(0);
        const shape = (w: LoadedTensor): readonly number[] => (isQuantized(w) ? [w.rows, w.cols] : w.shape);
        assert.deepEqual([m.enorm, m.hnorm, m.ehProj, m.sharedHeadNorm, m.sharedHead].map(shape), [[160], [160], [160, 320], [160], [300, 160]]);
        assert.equal(isQuantized(m.ehProj), mode !== 'none');
        assert.equal(isQuantized(m.layer.attn.oProj), mode !== 'none');
        assert.equal(m.layer.mlp.kind, 'moe'); // layer 3 >= first_k_dense_replace
        if (mode === 'none') {
          const ckpt = Checkpoint.open(dir);
          const raw = decodeToFloat32(ckpt.read('model.layers.3.eh_proj.weight'), 'BF16');
          ckpt.close();
          assert.deepEqual((m.ehProj as { data: Float32Array }).data, raw);
        }
      } finally {
        stream.close();
      }
    }
    // num_nextn_predict_layers 1 without any MTP tensor (converted checkpoints): serves, with no module.
    const stripped = checkpoint('BF16', 1, { mtp: true });
    rewriteHeader(path.join(stripped, 'model.safetensors'), (h) => {
      for (const k of Object.keys(h)) if (k.startsWith('model.layers.3.')) delete h[k];
    });
    const s2 = WeightStream.open(stripped, { quantization: 'none' });
    assert.equal(s2.numMtpModules, 0);
    s2.close();
    // Some MTP tensors but not all: refused like any other missing tensor.
    const partial = checkpoint('BF16', 1, { mtp: true });
    rewriteHeader(path.join(partial, 'model.safetensors'), (h) => delete h['model.layers.3.shared_head.head.weight']);
    assert.throws(
      () => WeightStream.open(partial, { quantization: 'none' }),
      /tensor "model\.layers\.3\.shared_head\.head\.weight" is missing \(expected shape \[300, 160\]\)/,
    );
  });

  it('a non-finite weight is refused, naming the tensor', () => {
    const dir = checkpoint('F32');
    const file = path.join(dir, 'model.safetensors');
    const ckpt = Checkpoint.open(dir);
    const info = ckpt.get('model.layers.2.self_attn.o_proj.weight')!;
    const headerLen = Number(readFileSync(file).readBigUInt64LE(0));
    ckpt.close();
    const fd = openSync(file, 'r+');
    writeSync(fd, new Uint8Array(new Float32Array([NaN]).buffer), 0, 4, 8 + headerLen + info.dataOffsets[0] + 4 * 50);
    closeSync(fd);
    const stream = WeightStream.open(dir, { quantization: 'int8' });
    // o_proj is [160, 32]: value 50 is row 1, column 18.
    assert.throws(() => stream.group('layer.2'), /tensor "model\.layers\.2\.self_attn\.o_proj\.weight": non-finite value in row 1, columns 0\.\.31/);
    stream.close();
  });

  it('the second start reads the quantised cache, not the checkpoint', () => {
    const dir = checkpoint('BF16');
    const cacheDir = path.join(tmp, 'qcache');
    const first = WeightStream.open(dir, { quantization: 'int4', cacheDir });
    const want = allGroups(first);
    first.close();
    // Zero the checkpoint's data (same size and mtime, so the same key): only the cache can still give the weights.
    const file = path.join(dir, 'model.safetensors');
    const st = statSync(file);
    const buf = readFileSync(file);
    const headerLen = Number(buf.readBigUInt64LE(0));
    const fd = openSync(file, 'r+');
    writeSync(fd, new Uint8Array(buf.length - 8 - headerLen), 0, buf.length - 8 - headerLen, 8 + headerLen);
    closeSync(fd);
    utimesSync(file, st.atime, st.mtime);
    const second = WeightStream.open(dir, { quantization: 'int4', cacheDir });
    assert.deepEqual(allGroups(second), want);
    second.close();
  });
});
