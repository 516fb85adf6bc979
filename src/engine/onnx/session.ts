// The only module that imports onnxruntime-node. Graph sessions are created from in-memory
// ModelProto buffers and run with zero-copy float32/int64 inputs.
import * as ort from 'onnxruntime-node';

export interface SessionOptions {
  /** Intra-op threads per session (default 2: the machines this targets have 2 cores). */
  readonly numThreads?: number;
  /** Measurement switch (bench/ort_memory.ts): keep initializers as given instead of prepacking them. */
  readonly disablePrepacking?: boolean;
  /** ORT's CPU memory arena (default on). */
  readonly cpuMemArena?: boolean;
}

export type Feed = Record<string, ort.Tensor>;

export function floatTensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

/** Raw fp8 (e4m3) codes; the graph declares the input UINT8 and decodes it (see graph_builder DataType). */
export function uint8Tensor(data: Uint8Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('uint8', data, dims);
}

/** Raw bfloat16 bits; the graph declares the input UINT16 and bit-casts it. */
export function uint16Tensor(data: Uint16Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('uint16', data, dims);
}

export function int32Tensor(data: Int32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int32', data, dims);
}

export function int64Tensor(data: BigInt64Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', data, dims);
}

let graphRuns = 0;
let graphRunMs = 0;

/**
 * Graph runs since this thread started (every GraphSession counts). Decode at batch 1 is bound by the
 * per-run and per-node cost of ONNX Runtime rather than by reading weights, so runs per token is a
 * figure the benchmarks report (issue 16).
 */
export function graphRunCount(): number {
  return graphRuns;
}

/** Wall milliseconds spent inside graph runs since this thread started: a step minus this is its JS time. */
export function graphRunTime(): number {
  return graphRunMs;
}

/** One array per requested output name, in order: a literal list of names gives a tuple of that length. */
export type OutputsOf<O extends readonly string[], T> = { -readonly [K in keyof O]: T };

/** A compiled graph with named float32 outputs. */
export class GraphSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly name: string,
  ) {}

  static async create(name: string, model: Uint8Array, options: SessionOptions = {}): Promise<GraphSession> {
    const session = await ort.InferenceSession.create(model, {
      intraOpNumThreads: options.numThreads ?? 2,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      enableCpuMemArena: options.cpuMemArena ?? true,
      executionProviders: [{ name: 'cpu', useArena: options.cpuMemArena ?? true }],
      // Sessions run one after another on the same cores; spinning pool threads of an idle
      // session would steal cycles from the one that is running.
      extra: { session: { intra_op: { allow_spinning: '0' }, ...(options.disablePrepacking && { disable_prepacking: '1' }) } },
    });
    return new GraphSession(session, name);
  }

  /** Runs the graph; returns the requested outputs as Float32Arrays (fresh buffers owned by the caller). */
  async run<const O extends readonly string[]>(feed: Feed, outputs: O): Promise<OutputsOf<O, Float32Array>> {
    return this.expect(await this.runTyped(feed, outputs), outputs, Float32Array, 'float32') as OutputsOf<O, Float32Array>;
  }

  /** Runs the graph; returns the requested int32 outputs (fresh buffers owned by the caller). */
  async runInt32<const O extends readonly string[]>(feed: Feed, outputs: O): Promise<OutputsOf<O, Int32Array>> {
    return this.expect(await this.runTyped(feed, outputs), outputs, Int32Array, 'int32') as OutputsOf<O, Int32Array>;
  }

  private expect<T extends ArrayBufferView>(
    views: readonly ArrayBufferView[],
    outputs: readonly string[],
    type: abstract new (...args: never[]) => T,
    what: string,
  ): T[] {
    return views.map((v, i) => {
      if (!(v instanceof type)) throw new Error(`graph ${this.name}: output ${outputs[i]} is not ${what}`);
      return v;
    });
  }

  /** Runs the graph; returns the requested outputs as typed arrays of whatever element type they have. */
  async runTyped(feed: Feed, outputs: readonly string[]): Promise<ArrayBufferView[]> {
    graphRuns++;
    const t0 = performance.now();
    try {
      const result = await this.session.run(feed, outputs as string[]);
      return outputs.map((o) => {
        const t = result[o];
        if (!t) throw new Error(`no output ${o}`);
        return t.data as ArrayBufferView;
      });
    } catch (err) {
      throw new Error(`graph ${this.name}: ${(err as Error).message}`, { cause: err });
    } finally {
      graphRunMs += performance.now() - t0;
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
