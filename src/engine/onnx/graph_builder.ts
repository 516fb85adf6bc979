// Builds ONNX ModelProto buffers in-process (no onnx toolchain), for onnxruntime-node to load.
// Field numbers follow onnx.proto: ModelProto{ir_version=1, graph=7, opset_import=8},
// GraphProto{node=1, name=2, initializer=5, input=11, output=12}, NodeProto{input=1, output=2,
// name=3, op_type=4, attribute=5, domain=7}, TensorProto{dims=1, data_type=2, name=8, raw_data=9},
// AttributeProto{name=1, f=2, i=3, s=4, floats=7, ints=8, type=20}.
import { EngineError } from '../../common/errors.ts';
import { ProtoWriter } from './protobuf.ts';

// UINT8 / UINT16 carry fp8 (e4m3) and bfloat16 cache codes across the JS boundary: onnxruntime-node
// cannot create or return FLOAT8E4M3FN / BFLOAT16 tensors, so those types exist only inside a graph.
export const DataType = { FLOAT: 1, UINT8: 2, UINT16: 4, INT32: 6, INT64: 7, BOOL: 9, UINT32: 12, BFLOAT16: 16, FLOAT8E4M3FN: 17 } as const;
export type ElemType = (typeof DataType)[keyof typeof DataType];

/** A dimension: a fixed size or a symbolic name (dynamic). */
export type Dim = number | string;

export type AttrValue = number | string | readonly number[] | { readonly float: number } | { readonly floats: readonly number[] };

const DEFAULT_OPSET = 21;
/** BitCast (uint16 <-> bfloat16 on ORT's CPU provider) exists from opset 26. */
export const BITCAST_OPSET = 26;
/** protobuf messages are limited to 2 GiB (ONNX Runtime refuses larger models). */
const MAX_MODEL_BYTES = 2 ** 31 - 1;
const IR_VERSION = 10;

type Initializer = Float32Array | BigInt64Array | Int32Array | Uint8Array;

export class GraphBuilder {
  private readonly nodes: ProtoWriter[] = [];
  private readonly initializers: ProtoWriter[] = [];
  private readonly inputs: ProtoWriter[] = [];
  private readonly outputs: ProtoWriter[] = [];
  private nextId = 0;

  constructor(
    private readonly name: string,
    private readonly opset = DEFAULT_OPSET,
  ) {}

  input(name: string, elemType: ElemType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: ElemType, dims: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** A constant tensor stored in the model (prepacked by ORT when it feeds a MatMul/Gemm). */
  initializer(data: Initializer, dims: readonly number[], name = this.fresh('w')): string {
    const elemType =
      data instanceof Float32Array
        ? DataType.FLOAT
        : data instanceof BigInt64Array
          ? DataType.INT64
          : data instanceof Int32Array
            ? DataType.INT32
            : DataType.UINT8;
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push(new ProtoWriter().ints(1, dims).int(2, elemType).string(8, name).bytes(9, raw));
    return name;
  }

  int64s(values: readonly number[]): string {
    return this.initializer(BigInt64Array.from(values.map(BigInt)), [values.length]);
  }

  scalar(value: number): string {
    return this.initializer(Float32Array.of(value), []);
  }

  int64Scalar(value: number): string {
    return this.initializer(BigInt64Array.of(BigInt(value)), []);
  }

  /** Adds a node and returns its output names (`numOutputs` of them). */
  nodeN(opType: string, inputs: readonly string[], numOutputs: number, attrs: Record<string, AttrValue> = {}, domain = ''): string[] {
    const outputs = Array.from({ length: numOutputs }, () => this.fresh(opType));
    const w = new ProtoWriter();
    for (const i of inputs) w.string(1, i);
    for (const o of outputs) w.string(2, o);
    w.string(3, this.fresh(`${opType}_node`)).string(4, opType);
    for (const [key, value] of Object.entries(attrs)) w.message(5, attribute(key, value));
    if (domain) w.string(7, domain);
    this.nodes.push(w);
    return outputs;
  }

  node(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.nodeN(opType, inputs, 1, attrs, domain)[0]!; // nodeN returns exactly numOutputs names
  }

  /** Renames an intermediate value to a graph output name (via Identity). */
  markOutput(value: string, name: string, elemType: ElemType, dims: readonly Dim[]): void {
    const w = new ProtoWriter().string(1, value).string(2, name).string(3, this.fresh('out_node')).string(4, 'Identity');
    this.nodes.push(w);
    this.output(name, elemType, dims);
  }

  build(): Uint8Array {
    const graph = new ProtoWriter();
    for (const n of this.nodes) graph.message(1, n);
    graph.string(2, this.name);
    for (const t of this.initializers) graph.message(5, t);
    for (const i of this.inputs) graph.message(11, i);
    for (const o of this.outputs) graph.message(12, o);
    const model = new ProtoWriter().int(1, IR_VERSION).string(2, 'dsv32-server').message(7, graph);
    model.message(8, new ProtoWriter().string(1, '').int(2, this.opset));
    model.message(8, new ProtoWriter().string(1, 'com.microsoft').int(2, 1));
    if (model.length > MAX_MODEL_BYTES) {
      throw new EngineError(
        'DSV_ERR_INTERNAL',
        `graph ${this.name} is ${(model.length / 2 ** 30).toFixed(2)} GiB, over the 2 GiB limit of an ONNX (protobuf) model; split it`,
      );
    }
    return model.finish();
  }

  private fresh(prefix: string): string {
    return `${prefix}_${this.nextId++}`;
  }
}

function valueInfo(name: string, elemType: ElemType, dims: readonly Dim[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
  const tensorType = new ProtoWriter().int(1, elemType).message(2, shape);
  return new ProtoWriter().string(1, name).message(2, new ProtoWriter().message(1, tensorType));
}

function attribute(name: string, value: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof value === 'number') return w.int(3, value).int(20, 2); // INT
  if (typeof value === 'string') return w.string(4, value).int(20, 3); // STRING
  if ('float' in value) return w.float(2, value.float).int(20, 1); // FLOAT
  if ('floats' in value) {
    for (const f of value.floats) w.float(7, f);
    return w.int(20, 6); // FLOATS
  }
  return w.ints(8, value as readonly number[]).int(20, 7); // INTS
}
