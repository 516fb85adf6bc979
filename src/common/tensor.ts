/** A dense float32 tensor, row-major. HF linear weights keep their [out, in] layout. */
export interface Tensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}
