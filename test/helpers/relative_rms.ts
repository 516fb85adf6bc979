/** sqrt(sum (got - want)^2 / sum want^2): the relative rms error of got against want. */
export function relativeRms(got: Float32Array, want: Float32Array): number {
  let err = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    err += (got[i]! - want[i]!) ** 2;
    ref += want[i]! ** 2;
  }
  return Math.sqrt(err / ref);
}
