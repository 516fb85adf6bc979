// A benchmark server as a child process: a free local port, spawn, wait for GET /health to answer 200
// (start-up time = spawn to that answer), stop with SIGTERM then SIGKILL. Used for our server
// (our_server.ts) and llama-server (compare/llama_server.ts), so both are timed the same way.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

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

/**
 * The environment llama.cpp's processes run in: ours minus GLIBC_TUNABLES, which `npm run bench:peer` sets
 * for our engine as `npm start` does (src/common/huge_pages.ts) and llama.cpp's users do not.
 */
export function peerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.GLIBC_TUNABLES;
  return env;
}

/** Spawns a server process and waits for /health; `tail` keeps its last log lines for error messages. */
export async function spawnUntilHealthy(
  id: string,
  command: string,
  args: readonly string[],
  url: string,
  timeoutMs: number,
  env?: NodeJS.ProcessEnv,
  cwd?: string,
): Promise<{ proc: ChildProcess; startupMs: number; stop(): Promise<void> }> {
  const t0 = performance.now();
  const proc = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
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
  for (;;) {
    if (exited !== null) throw new Error(`${id} exited (${exited}) before it was ready:\n${tail.join('\n')}`);
    if (performance.now() - t0 > timeoutMs) {
      proc.kill('SIGKILL');
      throw new Error(`${id} was not ready within ${timeoutMs / 1000} s:\n${tail.join('\n')}`);
    }
    try {
      if ((await fetch(`${url}/health`)).status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const stop = async (): Promise<void> => {
    if (exited !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (exited === null) proc.kill('SIGKILL');
    }, 15_000);
    await exit;
    clearTimeout(timer);
  };
  return { proc, startupMs: performance.now() - t0, stop };
}
