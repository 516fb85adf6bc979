// Minimal protobuf writer for the subset of onnx.proto that the graph builder emits.
// Wire format: key = (field << 3) | wireType; 0 = varint, 2 = length-delimited, 5 = fixed32.
// Repeated scalars are written unpacked (valid for proto2 and accepted by every parser).

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** Accumulates encoded chunks; nested messages are embedded as their chunks, so only finish() copies bytes. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.size += bytes.length;
  }

  private key(field: number, wireType: number): void {
    this.rawVarint(BigInt((field << 3) | wireType));
  }

  private rawVarint(value: bigint): void {
    // Negative int64 values are encoded as their 64-bit two's complement (10 bytes).
    let v = value < 0n ? (1n << 64n) + value : value;
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.push(Uint8Array.from(out));
  }

  int(field: number, value: number | bigint): this {
    this.key(field, WIRE_VARINT);
    this.rawVarint(BigInt(value));
    return this;
  }

  ints(field: number, values: readonly (number | bigint)[]): this {
    for (const v of values) this.int(field, v);
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, WIRE_LEN);
    this.rawVarint(BigInt(value.length));
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** Embeds `sub` by reference (no copy): large initializers are copied once, by the outermost finish(). */
  message(field: number, sub: ProtoWriter): this {
    this.key(field, WIRE_LEN);
    this.rawVarint(BigInt(sub.length));
    for (const c of sub.chunks) this.push(c);
    return this;
  }

  /** Encoded bytes so far. */
  get length(): number {
    return this.size;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }
}
