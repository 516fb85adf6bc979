// Our server as a separate process for the benches: `node [--import tsx] src/main.ts`, or dist/src/main.js when
// the build is current, on a free local port. Start-up time = spawn to the first 200 from GET /health.
// Used by the serving bench (serving.ts) and the llama.cpp comparison (compare/run.ts); the process handling
// is server_process.ts, shared with compare/llama_server.ts.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, spawnUntilHealthy } from './server_process.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function newestMtime(dir: string): number {
  let m = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return m;
}

/** How to run the server: the built dist/ when it is newer than every file under src/, else the sources through tsx. */
export function serverCommand(): { args: string[]; how: string } {
  const dist = path.join(ROOT, 'dist', 'src', 'main.js');
  if (
    existsSync(dist) &&
    statSync(dist).mtimeMs >= newestMtime(path.join(ROOT, 'src')) &&
    newestMtime(path.join(ROOT, 'dist', 'src')) >= newestMtime(path.join(ROOT, 'src'))
  ) {
    return { args: [dist], how: 'node dist/src/main.js (build current)' };
  }
  return { args: ['--import', 'tsx', path.join(ROOT, 'src', 'main.ts')], how: 'node --import tsx src/main.ts (dist/ missing or older than src/)' };
}

export interface OurServer {
  readonly url: string;
  readonly servedModelName: string;
  /** Process spawn to the first 200 from /health. */
  readonly startupMs: number;
  readonly command: string;
  readonly flags: readonly string[];
  stop(): Promise<void>;
}

export async function startOurServer(modelDir: string, flags: readonly string[], timeoutMs = 120_000): Promise<OurServer> {
  const port = await freePort();
  const { args, how } = serverCommand();
  const allFlags = ['--model', modelDir, '--host', '127.0.0.1', '--port', String(port), ...flags];
  const url = `http://127.0.0.1:${port}`;
  const { startupMs, stop } = await spawnUntilHealthy('our server', process.execPath, [...args, ...allFlags], url, timeoutMs, { ...process.env }, ROOT);
  return { url, servedModelName: path.basename(modelDir), startupMs, command: how, flags, stop };
}
