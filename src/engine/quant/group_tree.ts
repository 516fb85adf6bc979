// The weight tree of one loaded group (a map of HF name -> tensor, from quant/weight_stream.ts in this
// thread or from quant/group_pool.ts's workers), in the shapes the graph builders take.
import type { EmbeddingTable, HalfMatrix, LinearWeight } from '../../common/quantized.ts';
import type { LayerWeights, ModelConfig, MtpWeights, Tensor } from '../checkpoint/types.ts';
import { layerWeights, mtpWeights, type TensorSource } from '../checkpoint/weights.ts';

/** A loaded tensor: float32 ({data, shape}); at int8/int4 linear weights quantised, the embedding float16. */
export type LoadedTensor = LinearWeight | HalfMatrix;

export function isQuantized(t: LoadedTensor): t is Extract<LinearWeight, { packed: Uint8Array }> {
  return 'packed' in t;
}

export function isHalf(t: LoadedTensor): t is HalfMatrix {
  return 'half' in t;
}

export interface HeadWeights {
  readonly norm: Tensor;
  readonly lmHead: LinearWeight;
}

/** The weight tree's tensors from one loaded group (shapes and dtypes were checked at open()). */
export class GroupSource implements TensorSource<LinearWeight> {
  constructor(private readonly tensors: ReadonlyMap<string, LoadedTensor>) {}

  private get(name: string): LoadedTensor {
    const t = this.tensors.get(name);
    if (t === undefined) throw new Error(`internal: tensor "${name}" is not in its group`);
    return t;
  }

  matrix(name: string): LinearWeight {
    const t = this.get(name);
    if (isHalf(t)) throw new Error(`internal: tensor "${name}" is float16`);
    return t;
  }

  f32Matrix(name: string): Tensor {
    return this.vector(name);
  }

  vector(name: string): Tensor {
    const t = this.get(name);
    if (isQuantized(t) || isHalf(t)) throw new Error(`internal: tensor "${name}" is not float32`);
    return t;
  }
}

export function embeddingOf(group: ReadonlyMap<string, LoadedTensor>): EmbeddingTable {
  const t = group.get('model.embed_tokens.weight');
  if (t === undefined || isQuantized(t)) throw new Error('internal: no float embedding in the group');
  return t;
}

export function layerOf(group: ReadonlyMap<string, LoadedTensor>, config: ModelConfig, l: number): LayerWeights<LinearWeight> {
  return layerWeights(new GroupSource(group), config, l);
}

export function headOf(group: ReadonlyMap<string, LoadedTensor>): HeadWeights {
  const t = new GroupSource(group);
  return { norm: t.vector('model.norm.weight'), lmHead: t.matrix('lm_head.weight') };
}

export function mtpOf(group: ReadonlyMap<string, LoadedTensor>, config: ModelConfig, i: number): MtpWeights<LinearWeight> {
  return mtpWeights(new GroupSource(group), config, i);
}
