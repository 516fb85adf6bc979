// ONE load generator for every server in the comparison (ours and llama-server alike): OpenAI-style
// POST /v1/completions with a token-id prompt, streamed (SSE), greedy (temperature 0), the output length
// forced (max_tokens + ignore_eos, which both servers honour) and checked against the final usage. The same
// request body goes to both; a field one server does not know is ignored by it. Tokens per chunk: ours
// reports the running completion_tokens in every chunk (continuous_usage_stats); llama-server sends one
// chunk per token except that it holds back a token ending in an incomplete UTF-8 sequence and sends it
// with the next, so its count per chunk is 1 and the usage total says how many were merged (reported as
// tokens per chunk). TTFT = first chunk - start; ITL = gaps between chunks (as benchmark_serving does).
// Banned tokens (logit_bias -100 on both servers): llama-server runs every streamed completion through its
// chat-output parser, which ends the stream when the text so far is not valid UTF-8; the bench vocabulary's
// byte tokens 0x80-0xFF, which random weights do emit, produce exactly that, so the serving run bans them.
// Closed loop: `concurrency` workers each send their next request as soon as the previous one finished.
import http from 'node:http';

export interface ServerTarget {
  readonly id: string;
  readonly url: string;
  /** The `model` field of requests. */
  readonly model: string;
}

export interface StreamChunk {
  /** performance.now() when the chunk arrived. */
  readonly t: number;
  readonly tokens: number;
}

export interface RequestRecord {
  readonly start: number;
  readonly chunks: readonly StreamChunk[];
  readonly end: number;
  readonly outputTokens: number;
}

interface ChunkJson {
  choices?: { text?: string; finish_reason?: string | null }[];
  tokens?: number[];
  usage?: { completion_tokens?: number } | null;
  error?: { message?: string } | string;
}

/** What every request asks for besides its prompt. */
export interface RequestShape {
  readonly outputTokens: number;
  readonly bannedTokenIds: readonly number[];
}

export function requestBody(model: string, prompt: readonly number[], shape: RequestShape): Record<string, unknown> {
  return {
    model,
    prompt,
    max_tokens: shape.outputTokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
    ...(shape.bannedTokenIds.length > 0 ? { logit_bias: Object.fromEntries(shape.bannedTokenIds.map((id) => [String(id), -100])) } : {}),
  };
}

/**
 * Tokens in one SSE chunk: none without a choice or in a text-less closing chunk (llama-server's final
 * chunk carries only finish_reason and usage); the token ids where a server lists them; the running usage's
 * increase where the server reports it (ours); else one.
 */
export function chunkTokens(j: ChunkJson, previousCompletionTokens: number): number {
  const choice = j.choices?.[0];
  if (!choice) return 0;
  if (!choice.text && choice.finish_reason) return 0;
  if (Array.isArray(j.tokens)) return j.tokens.length;
  if (typeof j.usage?.completion_tokens === 'number') return j.usage.completion_tokens - previousCompletionTokens;
  return 1;
}

/**
 * A new connection per request (no keep-alive): a pooled idle connection can be closed by the server (cpp-httplib
 * drops idle ones after 5 s) just as the next request goes out on it, which fails that request; opening one
 * on localhost costs ~0.1 ms, the same for both servers.
 */
const NEW_CONNECTION = new http.Agent({ keepAlive: false });

function post(url: string, body: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent: NEW_CONNECTION, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      resolve,
    );
    req.once('error', reject);
    req.end(body);
  });
}

export async function streamRequest(target: ServerTarget, prompt: readonly number[], shape: RequestShape): Promise<RequestRecord> {
  const { outputTokens } = shape;
  const start = performance.now();
  const res = await post(`${target.url}/v1/completions`, JSON.stringify(requestBody(target.model, prompt, shape)));
  if (res.statusCode !== 200) {
    let text = '';
    for await (const b of res) text += String(b);
    throw new Error(`${target.id}: POST /v1/completions: HTTP ${String(res.statusCode)} ${text.slice(0, 500)}`);
  }
  const decoder = new TextDecoder();
  let buf = '';
  const chunks: StreamChunk[] = [];
  let completionTokens = 0;
  let finalUsage: number | null = null;
  for await (const value of res) {
    const t = performance.now();
    buf += decoder.decode(value as Buffer, { stream: true });
    for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6).trim();
        if (data === '[DONE]') continue;
        const j = JSON.parse(data) as ChunkJson;
        if (j.error) throw new Error(`${target.id}: stream error: ${typeof j.error === 'string' ? j.error : (j.error.message ?? '')}`);
        const n = chunkTokens(j, completionTokens);
        if (n > 0) {
          chunks.push({ t, tokens: n });
          completionTokens += n;
        }
        if (typeof j.usage?.completion_tokens === 'number') finalUsage = j.usage.completion_tokens;
      }
    }
  }
  const total = finalUsage ?? completionTokens;
  if (total !== outputTokens || completionTokens > total) {
    throw new Error(`${target.id}: asked for ${outputTokens} tokens (ignore_eos), got ${finalUsage ?? 'no'} by usage and ${completionTokens} in chunks`);
  }
  return { start, chunks, end: performance.now(), outputTokens: total };
}

/** `count` requests with at most `concurrency` in flight: `send(i, worker)` sends request i (each i once, in completion order). */
export async function closedLoop<T>(concurrency: number, count: number, send: (i: number, worker: number) => Promise<T>): Promise<T[]> {
  let next = 0;
  const out: T[] = [];
  const worker = async (w: number): Promise<void> => {
    while (next < count) {
      const i = next++;
      out.push(await send(i, w));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, (_, w) => worker(w)));
  return out;
}

/** TTFT (first chunk - start), ITL (gaps between chunks) and output tok/s over the batch's wall time. */
export function requestMetrics(records: readonly RequestRecord[]): {
  ttftMs: number[];
  itlMs: number[];
  outputTokensPerSecond: number;
  tokensPerChunk: number;
} {
  const t0 = Math.min(...records.map((r) => r.start));
  const t1 = Math.max(...records.map((r) => r.end));
  const tokens = records.reduce((s, r) => s + r.outputTokens, 0);
  const chunks = records.reduce((s, r) => s + r.chunks.length, 0);
  return {
    ttftMs: records.flatMap((r) => (r.chunks[0] ? [r.chunks[0].t - r.start] : [])),
    itlMs: records.flatMap((r) => r.chunks.slice(1).map((c, i) => c.t - r.chunks[i]!.t)), // chunks[i] precedes c = chunks[i + 1]
    outputTokensPerSecond: tokens / ((t1 - t0) / 1000),
    tokensPerChunk: chunks > 0 ? tokens / chunks : Number.NaN,
  };
}
