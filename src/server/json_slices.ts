// Large non-streamed responses (n choices x max_tokens x top logprobs: tens of MB of JSON) are
// serialised in slices: each element of a top-level array (the choices) is stringified on its
// own, and the event loop gets a turn after every ~1 MB, so building one response never stalls
// the other streams and health checks for longer than one choice takes.
import { setImmediate as nextTurn } from 'node:timers/promises';

/** A body serialised ahead of fastify: the reply serializer passes its text through. */
export class SerializedJson {
  constructor(readonly json: string) {}
}

/** Yield after this many characters of JSON. */
const SLICE_CHARS = 1 << 20;

/**
 * Exactly JSON.stringify(value) for a plain-data object, built element by element for its
 * top-level arrays with a turn of the event loop after every `sliceChars` characters.
 */
export async function stringifyInSlices(value: Readonly<Record<string, unknown>>, sliceChars = SLICE_CHARS): Promise<string> {
  const parts: string[] = [];
  let sinceYield = 0;
  const add = async (text: string): Promise<void> => {
    parts.push(text);
    sinceYield += text.length;
    if (sinceYield >= sliceChars) {
      sinceYield = 0;
      await nextTurn();
    }
  };
  let first = true;
  parts.push('{');
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue; // JSON.stringify drops these keys
    parts.push(`${first ? '' : ','}${JSON.stringify(key)}:`);
    first = false;
    if (!Array.isArray(v)) {
      await add(JSON.stringify(v));
      continue;
    }
    parts.push('[');
    for (let i = 0; i < v.length; i++) await add(`${i === 0 ? '' : ','}${JSON.stringify(v[i]) ?? 'null'}`);
    parts.push(']');
  }
  parts.push('}');
  return parts.join('');
}

/** Bodies with a choices array (completion and chat responses) are worth slicing. */
export function isGenerationBody(payload: unknown): payload is Record<string, unknown> & { choices: unknown[] } {
  return typeof payload === 'object' && payload !== null && !Array.isArray(payload) && Array.isArray((payload as { choices?: unknown }).choices);
}
