// The streaming loader: a checkpoint read one group at a time (the embedding, each layer, the head), with
// --quantization applied tensor by tensor as the bytes arrive, so neither the float32 model nor the whole
// quantised model needs to exist in JS at once: the caller builds a layer's graphs and drops the group.
//
// Before any tensor is read, open() checks every tensor the config implies (presence, shape, dtype, FP8
// scale companions) from the safetensors headers, so a bad checkpoint fails in seconds.
//
// What is quantised (int8 / int4): every linear weight except kv_b_proj, which the graphs use only in
// derived per-head forms (W_UK is applied along qk_nope, so its blocks must run along another axis than
// kv_b_proj's): the graph builders quantise those derived matrices themselves. The embedding becomes
// float16 rows (read by row, widened per step): int8 rows alone moved the fixture's golden-token
// logprobs by 0.021 (MAE), float16 is exact for BF16 checkpoints in float16's range and costs 2 bytes a
// value (V2-Lite: 0.42 GB); router gates, norms and biases stay float32.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError } from '../../common/errors.ts';
import type { EmbeddingTable, LinearWeight } from '../../common/quantized.ts';
import { readModelConfig } from '../checkpoint/config.ts';
import { decodeToFloat32, dequantizeFp8Blocks, fp8ScaleShape, type FloatDType } from '../checkpoint/dtype.ts';
import { mtpLayerIndex, mtpManifest, numel, weightManifest, type WeightSpec } from '../checkpoint/manifest.ts';
import { Checkpoint, type DType, type TensorInfo } from '../checkpoint/safetensors.ts';
import type { LayerWeights, ModelConfig, MtpWeights } from '../checkpoint/types.ts';
import { embeddingOf, headOf, isHalf, isQuantized, layerOf, mtpOf, type HeadWeights, type LoadedTensor } from './group_tree.ts';
import type { QuantBits } from '../../common/quantized.ts';
import type { CachedTensor } from './cache_file.ts';
import { quantBits, type QuantizationMode } from './quant_mode.ts';
import { readHalf, readQuantized } from './quantizing_reader.ts';
import { QuantizedWeightsCache, type CacheLog } from './weights_cache.ts';

export { isQuantized, type LoadedTensor } from './group_tree.ts';

const MATRIX_DTYPES: readonly DType[] = ['F32', 'BF16', 'F16', 'F8_E4M3'];
const VECTOR_DTYPES: readonly DType[] = ['F32', 'BF16', 'F16'];
const SCALE_DTYPES: readonly DType[] = ['F32', 'BF16'];

export interface WeightStreamOptions {
  readonly quantization: QuantizationMode;
  /** --quantized-weights-dir; null = no cache. Unused without quantisation. */
  readonly cacheDir?: string | null;
  readonly log?: CacheLog;
}

/** The group a tensor is loaded with: 'embed', 'layer.<l>', 'mtp.<i>' (layer numHiddenLayers + i) or 'head'. */
export function groupOf(name: string, numHiddenLayers = Infinity): string {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  if (m !== null) return Number(m[1]) >= numHiddenLayers ? `mtp.${Number(m[1]) - numHiddenLayers}` : `layer.${m[1]}`;
  return name === 'model.embed_tokens.weight' ? 'embed' : 'head';
}

/** How a tensor is held under int8 / int4 (see the file comment). */
export function loadFormat(spec: WeightSpec): 'quantized' | 'half' | 'f32' {
  if (spec.role === 'embedding') return 'half';
  return spec.role === 'linear' && !spec.name.endsWith('.kv_b_proj.weight') ? 'quantized' : 'f32';
}

function fail(file: string, message: string): never {
  throw new CheckpointError('DSV_ERR_CHECKPOINT', file, message);
}

export class WeightStream {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    readonly quantization: QuantizationMode,
    private readonly ckpt: Checkpoint,
    private readonly groups: ReadonlyMap<string, readonly WeightSpec[]>,
    private readonly cache: QuantizedWeightsCache | null,
  ) {}

  static open(dir: string, options: WeightStreamOptions): WeightStream {
    const abs = path.resolve(dir);
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new CheckpointError('DSV_ERR_CONFIG', abs, 'model directory not found');
    const config = readModelConfig(abs);
    const ckpt = Checkpoint.open(abs);
    try {
      const groups = new Map<string, WeightSpec[]>();
      for (const spec of [...weightManifest(config), ...presentMtpSpecs(ckpt, config)]) {
        checkSpec(ckpt, spec);
        const g = groupOf(spec.name, config.numHiddenLayers);
        groups.set(g, [...(groups.get(g) ?? []), spec]);
      }
      const log = options.log ?? { info: () => {}, warn: () => {} };
      const useCache = options.cacheDir != null && options.quantization !== 'none';
      const cache = useCache ? QuantizedWeightsCache.open(options.cacheDir!, abs, options.quantization, log) : null;
      return new WeightStream(abs, config, options.quantization, ckpt, groups, cache);
    } catch (e) {
      ckpt.close();
      throw e;
    }
  }

  get quantBits(): QuantBits | null {
    return quantBits(this.quantization);
  }

  /** Parameters of the main model's tensors (as stored in the checkpoint, excluding FP8 scales and MTP modules). */
  get numParameters(): number {
    let n = 0;
    for (const [name, specs] of this.groups) if (!name.startsWith('mtp.')) for (const s of specs) n += numel(s);
    return n;
  }

  /** MTP modules the checkpoint carries (their headers were checked at open()): 0 when it has none. */
  get numMtpModules(): number {
    return this.groups.has('mtp.0') ? this.config.numNextnPredictLayers : 0;
  }

  /** MTP module i's weight tree (read, quantised, cached now); only when numMtpModules > i. */
  async mtp(i: number): Promise<MtpWeights<LinearWeight>> {
    return mtpOf(this.group(`mtp.${i}`), this.config, i);
  }

  // ModelWeightSource, in this thread (quant/group_pool.ts reads the groups in worker threads instead).
  async embedding(): Promise<EmbeddingTable> {
    return embeddingOf(this.group('embed'));
  }

  async layer(l: number): Promise<LayerWeights<LinearWeight>> {
    return layerOf(this.group(`layer.${l}`), this.config, l);
  }

  async head(): Promise<HeadWeights> {
    return headOf(this.group('head'));
  }

  /** 'embed', 'layer.0' .. 'layer.<n-1>', 'head', then 'mtp.<i>' when the checkpoint has MTP modules, in load order. */
  get groupNames(): string[] {
    return [...this.groups.keys()];
  }

  /** The group's tensors by HF name: from the cache when it holds them, else read (and quantised) now. */
  group(name: string): Map<string, LoadedTensor> {
    const specs = this.groups.get(name);
    if (specs === undefined) throw new Error(`no weight group "${name}"`);
    const cached = this.cache?.read(name);
    if (cached != null && sameNames(cached, specs)) return fromCache(cached);
    const out = new Map<string, LoadedTensor>();
    for (const spec of specs) out.set(spec.name, this.load(spec));
    this.cache?.write(name, toCache(out));
    return out;
  }

  private load(spec: WeightSpec): LoadedTensor {
    const info = this.ckpt.get(spec.name)!;
    const bits = quantBits(this.quantization);
    const scaleInv = info.dtype === 'F8_E4M3' ? this.scaleInv(info) : null;
    const format = bits === null ? 'f32' : loadFormat(spec);
    if (format === 'quantized') return readQuantized(this.ckpt, info, bits!, scaleInv);
    if (format === 'half') return readHalf(this.ckpt, info, scaleInv);
    if (scaleInv !== null) return { data: dequantizeFp8Blocks(this.ckpt.read(spec.name), spec.shape[0], spec.shape[1]!, scaleInv), shape: spec.shape };
    return { data: decodeToFloat32(this.ckpt.read(spec.name), info.dtype as FloatDType), shape: spec.shape };
  }

  private scaleInv(info: TensorInfo): Float32Array {
    const s = this.ckpt.get(`${info.name}_scale_inv`)!;
    return decodeToFloat32(this.ckpt.read(s.name), s.dtype as FloatDType);
  }

  close(): void {
    this.ckpt.close();
  }
}

/**
 * The MTP modules' tensors when the checkpoint has any tensor of layer numHiddenLayers (then every module
 * must be complete); none when it has none: converted checkpoints often drop the MTP layers while keeping
 * num_nextn_predict_layers, and they serve fine without speculation.
 */
function presentMtpSpecs(ckpt: Checkpoint, c: ModelConfig): WeightSpec[] {
  if (c.numNextnPredictLayers === 0) return [];
  const prefix = `model.layers.${mtpLayerIndex(c, 0)}.`;
  for (const name of ckpt.names()) {
    if (name.startsWith(prefix)) return Array.from({ length: c.numNextnPredictLayers }, (_, i) => mtpManifest(c, i)).flat();
  }
  return [];
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Presence, shape and dtype of one tensor (and of an FP8 weight's block scales), from the headers. */
function checkSpec(ckpt: Checkpoint, spec: WeightSpec): void {
  const info = ckpt.get(spec.name);
  if (info === undefined) fail(ckpt.fileOf(spec.name), `tensor "${spec.name}" is missing (expected shape ${fmt(spec.shape)})`);
  const dtypes = spec.shape.length === 2 ? MATRIX_DTYPES : VECTOR_DTYPES;
  if (!dtypes.includes(info.dtype)) fail(info.file, `tensor "${spec.name}" has dtype ${info.dtype}, expected one of ${dtypes.join(', ')}`);
  if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i])) {
    fail(info.file, `tensor "${spec.name}" has shape ${fmt(info.shape)}, expected ${fmt(spec.shape)}`);
  }
  if (info.dtype !== 'F8_E4M3') return;
  const name = `${spec.name}_scale_inv`;
  const want = fp8ScaleShape(spec.shape[0], spec.shape[1]!);
  const s = ckpt.get(name);
  if (s === undefined) fail(ckpt.fileOf(name), `tensor "${name}" is missing (block scales of F8_E4M3 "${spec.name}", expected shape ${fmt(want)})`);
  if (!SCALE_DTYPES.includes(s.dtype)) fail(s.file, `tensor "${name}" has dtype ${s.dtype}, expected one of ${SCALE_DTYPES.join(', ')}`);
  if (s.shape.length !== 2 || s.shape[0] !== want[0] || s.shape[1] !== want[1])
    fail(s.file, `tensor "${name}" has shape ${fmt(s.shape)}, expected ${fmt(want)}`);
}

function sameNames(cached: ReadonlyMap<string, CachedTensor>, specs: readonly WeightSpec[]): boolean {
  return cached.size === specs.length && specs.every((s) => cached.has(s.name));
}

function fromCache(cached: ReadonlyMap<string, CachedTensor>): Map<string, LoadedTensor> {
  return new Map([...cached].map(([name, t]) => [name, t.kind === 'f32' ? { data: t.data, shape: t.shape } : t.matrix]));
}

function toCached(t: LoadedTensor): CachedTensor {
  if (isQuantized(t)) return { kind: 'quantized', matrix: t };
  return isHalf(t) ? { kind: 'half', matrix: t } : { kind: 'f32', data: t.data, shape: t.shape };
}

function toCache(tensors: ReadonlyMap<string, LoadedTensor>): Map<string, CachedTensor> {
  return new Map([...tensors].map(([name, t]) => [name, toCached(t)]));
}
