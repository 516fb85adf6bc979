// ONNX Runtime's Cast as an independent oracle for the JS codecs: f32 -> (FLOAT8E4M3FN | BFLOAT16) -> f32.
import { DataType, GraphBuilder } from '../../../src/engine/onnx/graph_builder.ts';
import { floatTensor, GraphSession } from '../../../src/engine/onnx/session.ts';
import { at } from '../../helpers/at.ts';

export async function ortRoundTrip(values: Float32Array, through: 'FLOAT8E4M3FN' | 'BFLOAT16'): Promise<Float32Array> {
  const g = new GraphBuilder(`cast_${through}`);
  const x = g.input('x', DataType.FLOAT, ['N']);
  const narrow = g.node('Cast', [x], { to: DataType[through] }); // saturate defaults to 1
  g.markOutput(g.node('Cast', [narrow], { to: DataType.FLOAT }), 'y', DataType.FLOAT, ['N']);
  const session = await GraphSession.create(`cast_${through}`, g.build(), { numThreads: 1 });
  try {
    return at(await session.run({ x: floatTensor(values, [values.length]) }, ['y']), 0, 'output');
  } finally {
    await session.release();
  }
}

/** Random float32 values spread over every binade in [2^minExp, 2^maxExp), both signs, plus exact midpoints. */
export function spreadValues(count: number, minExp: number, maxExp: number, seed = 1): Float32Array {
  let s = seed >>> 0;
  const rand = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const e = minExp + Math.floor(rand() * (maxExp - minExp));
    out[i] = (rand() < 0.5 ? -1 : 1) * (1 + rand()) * 2 ** e;
  }
  return out;
}
