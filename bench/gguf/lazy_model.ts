// A LoadedModel whose tensors read their data only when `.data` is first touched, one layer at a time:
// the GGUF converter writes tensors in checkpoint order, so converting bench-lite (15.7B parameters,
// 63 GB as float32) holds one layer's float32 weights (~2.3 GB) instead of the whole model.
// Structure and shapes come from config.json (checkpoint/weights.ts's tree over a lazy TensorSource).
import { WeightStream } from '../../src/engine/quant/weight_stream.ts';
import type { LoadedModel, ModelWeights, Tensor } from '../../src/engine/checkpoint/types.ts';
import { layerWeights, type TensorSource } from '../../src/engine/checkpoint/weights.ts';
import { groupOf } from '../../src/engine/quant/weight_stream.ts';

class LazySource implements TensorSource<Tensor> {
  private current: { name: string; tensors: ReadonlyMap<string, unknown> } | null = null;

  constructor(private readonly stream: WeightStream) {}

  private data(name: string): Float32Array {
    const group = groupOf(name);
    if (this.current?.name !== group) {
      this.current = null; // let the previous layer go before reading the next
      this.current = { name: group, tensors: this.stream.group(group) };
    }
    const t = this.current.tensors.get(name) as Tensor | undefined;
    if (t === undefined || !(t.data instanceof Float32Array)) throw new Error(`lazy model: no float32 tensor "${name}"`);
    return t.data;
  }

  private tensor(name: string, shape: readonly number[]): Tensor {
    const data = (): Float32Array => this.data(name);
    return Object.defineProperty({ shape }, 'data', { get: data, enumerable: true }) as Tensor;
  }

  matrix(name: string, shape: [number, number]): Tensor {
    return this.tensor(name, shape);
  }

  f32Matrix(name: string, shape: [number, number]): Tensor {
    return this.tensor(name, shape);
  }

  vector(name: string, length: number): Tensor {
    return this.tensor(name, [length]);
  }
}

/** The model at `dir` with lazily read float32 tensors; call close() when done. */
export function lazyModel(dir: string): LoadedModel & { close(): void } {
  const stream = WeightStream.open(dir, { quantization: 'none' });
  const c = stream.config;
  const t = new LazySource(stream);
  const weights: ModelWeights = {
    embedTokens: t.matrix('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]),
    norm: t.vector('model.norm.weight', c.hiddenSize),
    lmHead: t.matrix('lm_head.weight', [c.vocabSize, c.hiddenSize]),
    layers: Array.from({ length: c.numHiddenLayers }, (_, l) => layerWeights(t, c, l)),
  };
  return { dir: stream.dir, config: c, weights, numParameters: stream.numParameters, close: () => stream.close() };
}
