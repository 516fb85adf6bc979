// Where the bench finds llama.cpp's own binaries (llama-bench, llama-server, llama-quantize), built once by
// bench/peer/build_llama.ts from the llama.cpp source that the pinned node-llama-cpp package ships (a git
// bundle plus patches in bench/peer/node_modules/node-llama-cpp/llama/). The build lives in a cache folder
// outside git (bench/cache_dir.ts):
//   <cache>/llama.cpp-<commit 12>/{src, build, bin/llama-*, BUILD_INFO.json}
// BUILD_INFO.json is written last, so its presence (with the three binaries) means a complete build.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchCacheRoot } from '../cache_dir.ts';

export const PEER_PACKAGE_DIR = path.dirname(fileURLToPath(import.meta.url));
export const NODE_LLAMA_CPP_LLAMA_DIR = path.join(PEER_PACKAGE_DIR, 'node_modules', 'node-llama-cpp', 'llama');
export const LLAMA_BUNDLE = path.join(NODE_LLAMA_CPP_LLAMA_DIR, 'gitRelease.bundle');
export const NODE_LLAMA_CPP_PATCHES = path.join(NODE_LLAMA_CPP_LLAMA_DIR, 'patches');
/** Our own patches to the cloned source (see patches/README.md), applied after node-llama-cpp's. */
export const OUR_PATCHES = path.join(PEER_PACKAGE_DIR, 'patches');

export const LLAMA_TOOLS = ['llama-bench', 'llama-server', 'llama-quantize'] as const;
export type LlamaTool = (typeof LLAMA_TOOLS)[number];

export interface LlamaBuildInfo {
  readonly commit: string;
  readonly llamaCppTag: string | null;
  readonly nodeLlamaCppVersion: string;
  /** Patch file name -> 'applied' | 'already in source' | 'does not apply: ...'. */
  readonly patches: Readonly<Record<string, string>>;
  readonly cmakeFlags: readonly string[];
  readonly compiler: string;
  /** Wall time of this invocation's compile (a resumed build counts only the part it did itself). */
  readonly buildSeconds: number;
  readonly resumed: boolean;
  readonly builtAt: string;
}

/** The commit the bundle's HEAD points at (git bundle list-heads), or null when the bundle is missing. */
export function bundleCommit(): string | null {
  if (!existsSync(LLAMA_BUNDLE)) return null;
  const res = spawnSync('git', ['bundle', 'list-heads', LLAMA_BUNDLE], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`git bundle list-heads ${LLAMA_BUNDLE} failed: ${res.stderr}`);
  const lines = res.stdout.split('\n');
  const [commit = ''] = (lines.find((l) => l.endsWith(' HEAD')) ?? lines[0] ?? '').split(' ');
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`git bundle list-heads ${LLAMA_BUNDLE}: no commit in "${res.stdout.trim()}"`);
  return commit;
}

export function llamaBuildDir(commit: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(benchCacheRoot(env), `llama.cpp-${commit.slice(0, 12)}`);
}

export function llamaToolPath(buildDir: string, tool: LlamaTool): string {
  return path.join(buildDir, 'bin', tool);
}

/** The finished build for the bundle's commit, or why there is none (not installed, not built). */
export function findLlamaBuild(): { ok: true; dir: string; info: LlamaBuildInfo; tools: Record<LlamaTool, string> } | { ok: false; reason: string } {
  const commit = bundleCommit();
  if (commit === null) return { ok: false, reason: `no llama.cpp source bundle at ${LLAMA_BUNDLE} (run bench/peer/install.sh)` };
  const dir = llamaBuildDir(commit);
  const infoPath = path.join(dir, 'BUILD_INFO.json');
  const tools = Object.fromEntries(LLAMA_TOOLS.map((t) => [t, llamaToolPath(dir, t)])) as Record<LlamaTool, string>;
  const missing = LLAMA_TOOLS.filter((t) => !existsSync(tools[t]));
  if (!existsSync(infoPath) || missing.length > 0) {
    return { ok: false, reason: `llama.cpp ${commit.slice(0, 12)} is not built in ${dir} (run: node --import tsx bench/peer/build_llama.ts)` };
  }
  return { ok: true, dir, info: JSON.parse(readFileSync(infoPath, 'utf8')) as LlamaBuildInfo, tools };
}
