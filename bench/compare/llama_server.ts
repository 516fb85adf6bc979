// llama.cpp's own llama-server as the serving peer, a separate process on a free local port:
//   llama-server -m <gguf> -t T -tb T -np S -cb -c S x ctxPerSlot [config flags] --cache-ram 256
// S slots with continuous batching; each slot's context holds one request (prompt + output, rounded up);
// --cache-ram caps the RAM of its idle-slot prompt cache (default 8 GiB), which the bench's distinct prompts
// never hit, only to keep the process's memory bounded. Ready = the first 200 from GET /health.
import path from 'node:path';
import { freePort, peerEnv, spawnUntilHealthy } from '../server_process.ts';
import type { PeerConfig } from './llama_bench.ts';

export interface RunningServer {
  readonly id: string;
  readonly label: string;
  readonly url: string;
  readonly model: string;
  readonly command: string;
  /** Process spawn to the first 200 from /health. */
  readonly startupMs: number;
  stop(): Promise<void>;
}

export interface LlamaServerSpec {
  readonly binary: string;
  readonly gguf: string;
  readonly threads: number;
  readonly slots: number;
  readonly ctxPerSlot: number;
  readonly config: PeerConfig;
}

export function llamaServerArgs(spec: LlamaServerSpec, port: number): string[] {
  return [
    '-m',
    spec.gguf,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '-t',
    String(spec.threads),
    '-tb',
    String(spec.threads),
    '-np',
    String(spec.slots),
    '-cb',
    '-c',
    String(spec.slots * spec.ctxPerSlot),
    '--cache-ram',
    '256',
    ...spec.config.serverArgs,
  ];
}

export async function startLlamaServer(spec: LlamaServerSpec, timeoutMs = 120_000): Promise<RunningServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = llamaServerArgs(spec, port);
  const s = await spawnUntilHealthy(`llama-server (${spec.config.id})`, spec.binary, args, url, timeoutMs, peerEnv());
  return {
    id: `llama-server-${spec.config.id}`,
    label: `llama-server: ${spec.config.label}`,
    url,
    model: path.basename(spec.gguf),
    command: `llama-server ${args.map((a) => (a === spec.gguf ? path.relative(process.cwd(), a) : a)).join(' ')}`,
    startupMs: s.startupMs,
    stop: s.stop,
  };
}
