// Our server as a separate process for the benches: `node [--import tsx] src/main.ts`, or dist/src/main.js when
// the build is current, on a free local port. Start-up time = spawn to the first 200 from GET /health.
// Used by the serving bench (serving.ts) and the llama.cpp comparison (compare/run.ts); freePort also by
// compare/llama_server.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

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
  const t0 = performance.now();
  const proc: ChildProcess = spawn(process.execPath, [...args, ...allFlags], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  const tail: string[] = [];
  const keep = (b: Buffer): void => {
    tail.push(...b.toString('utf8').split('\n').filter(Boolean));
    if (tail.length > 40) tail.splice(0, tail.length - 40);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  let exited: number | null = null;
  const exit = new Promise<void>((resolve) =>
    proc.once('exit', (code) => {
      exited = code ?? -1;
      resolve();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (exited !== null) throw new Error(`our server exited (${exited}) before it was ready:\n${tail.join('\n')}`);
    if (performance.now() - t0 > timeoutMs) {
      proc.kill('SIGKILL');
      throw new Error(`our server was not ready within ${timeoutMs / 1000} s:\n${tail.join('\n')}`);
    }
    try {
      const res = await fetch(`${url}/health`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const startupMs = performance.now() - t0;
  const stop = async (): Promise<void> => {
    if (exited !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (exited === null) proc.kill('SIGKILL');
    }, 15_000);
    await exit;
    clearTimeout(timer);
  };
  return { url, servedModelName: path.basename(modelDir), startupMs, command: how, flags, stop };
}
