// Chained hash of one full block: H(parent, tokens), with the optional salt folded into the first
// block only (the chain carries it to every later block). Salts isolate tenants: the same prompt
// under another salt never shares a block.
//
// Collisions: sha256 truncated to 128 bits makes an accidental collision negligible, and the pool
// additionally stores each cached block's token ids and compares them on every hit
// (BlockPool.getCachedBlock), so a hit is exact for the block's own tokens; the prefix before it is
// covered by the parent hash inside H.
import { createHash } from 'node:crypto';
import type { BlockHash, TokenIds } from './types.ts';

const HASH_HEX_CHARS = 32; // 128 bits
const ROOT_TAG = Buffer.from([0]);
const CHILD_TAG = Buffer.from([1]);

/**
 * Hash of one full block. The input is unambiguous: a tag byte, then either the length-prefixed salt
 * (first block) or the 16 parent bytes, then the token ids as uint32.
 */
export function hashBlock(parentHash: BlockHash | null, tokenIds: TokenIds, salt?: string): BlockHash {
  const h = createHash('sha256');
  if (parentHash === null) {
    const saltBytes = Buffer.from(salt ?? '', 'utf8');
    const saltLength = Buffer.alloc(4);
    saltLength.writeUInt32LE(saltBytes.length);
    h.update(ROOT_TAG).update(saltLength).update(saltBytes);
  } else {
    h.update(CHILD_TAG).update(Buffer.from(parentHash, 'hex'));
  }
  const tokens = Uint32Array.from(tokenIds);
  h.update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength));
  return h.digest('hex').slice(0, HASH_HEX_CHARS);
}

/** Token ids of block `index` (positions [index * blockSize, (index + 1) * blockSize)), copied. */
export function blockTokens(tokenIds: TokenIds, index: number, blockSize: number): Int32Array {
  const start = index * blockSize;
  const out = new Int32Array(blockSize);
  for (let j = 0; j < blockSize; j++) out[j] = tokenIds[start + j]!;
  return out;
}
