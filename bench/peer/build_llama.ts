// Builds llama.cpp's own llama-bench, llama-server and llama-quantize once, from the llama.cpp source the
// pinned node-llama-cpp package ships, into the bench cache (see llama_cpp.ts for the folder). Never in CI.
//
//   node --import tsx bench/peer/build_llama.ts [--jobs 2] [--nice 15] [--rebuild]
//
// Steps: bench/peer/install.sh (npm ci of node-llama-cpp 3.21.1, which carries llama/gitRelease.bundle);
// `git clone` of the bundle; node-llama-cpp's own patches (llama/patches/*.diff) where they apply (it does
// the same: a patch whose change is already in the source is skipped, one that fails is reported and the
// build goes on); our patches (bench/peer/patches/*.diff, which must apply: see patches/README.md); cmake +
// g++ from Debian (apt-get installs them when missing and we are root): Release, -DGGML_NATIVE=ON (the
// build machine's own instruction set, as a user building from source gets), -DBUILD_SHARED_LIBS=OFF, no GPU
// backends, no tests / examples / web UI / HTTPS; only the three tools' targets are built. Takes ~15-25 min
// on 2 idle cores; the compile runs at niceness 15 (--nice) so others sharing the machine keep their CPU. A
// finished build is skipped (BUILD_INFO.json); an interrupted one resumes (SOURCE_READY.json); --rebuild redoes it.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  bundleCommit, findLlamaBuild, LLAMA_BUNDLE, LLAMA_TOOLS, llamaBuildDir, llamaToolPath, NODE_LLAMA_CPP_LLAMA_DIR, NODE_LLAMA_CPP_PATCHES,
  OUR_PATCHES, PEER_PACKAGE_DIR, type LlamaBuildInfo, type LlamaTool,
} from './llama_cpp.ts';

export const CMAKE_FLAGS: readonly string[] = [
  '-DCMAKE_BUILD_TYPE=Release',
  '-DGGML_NATIVE=ON',
  '-DBUILD_SHARED_LIBS=OFF',
  '-DGGML_CUDA=OFF', '-DGGML_VULKAN=OFF', '-DGGML_METAL=OFF', '-DGGML_HIP=OFF', '-DGGML_SYCL=OFF', '-DGGML_OPENCL=OFF',
  '-DGGML_RPC=OFF', '-DGGML_BLAS=OFF',
  '-DLLAMA_BUILD_TESTS=OFF', '-DLLAMA_BUILD_EXAMPLES=OFF', '-DLLAMA_BUILD_APP=OFF',
  '-DLLAMA_BUILD_TOOLS=ON', '-DLLAMA_BUILD_SERVER=ON',
  // no web UI: neither an npm build nor a download of prebuilt assets (the server runs without it)
  '-DLLAMA_BUILD_UI=OFF', '-DLLAMA_USE_PREBUILT_UI=OFF',
  '-DLLAMA_OPENSSL=OFF',
];

const log = (s: string): void => void process.stderr.write(`build_llama: ${s}\n`);

function run(cmd: string, args: readonly string[], opts: SpawnSyncOptions = {}): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28, ...opts });
  if (res.error) throw new Error(`${cmd} ${args.join(' ')}: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${String(res.status)}:\n${String(res.stderr ?? '').trim().split('\n').slice(-30).join('\n')}`);
  return String(res.stdout ?? '');
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** cmake, g++, make and git from Debian; installed with apt-get when missing and we are root. */
function ensureToolchain(): void {
  const missing = ['cmake', 'g++', 'make', 'git'].filter((c) => !has(c));
  if (missing.length === 0) return;
  const pkgs = missing.map((c) => (c === 'g++' ? 'g++' : c));
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.join(', ')}: install them (apt-get install -y ${pkgs.join(' ')}) and rerun`);
  log(`installing ${pkgs.join(' ')} with apt-get`);
  run('apt-get', ['update'], { stdio: 'inherit' });
  run('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

function diffs(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.diff') || f.endsWith('.patch')).sort() : [];
}

/** Applies one patch to `src`; `required` patches throw when they neither apply nor are already in. */
function applyPatch(src: string, file: string, required: boolean): string {
  const git = (args: string[]) => spawnSync('git', ['-C', src, 'apply', '--ignore-whitespace', ...args, file], { encoding: 'utf8' });
  if (git(['--check']).status === 0) {
    run('git', ['-C', src, 'apply', '--ignore-whitespace', file]);
    return 'applied';
  }
  if (git(['--reverse', '--check']).status === 0) return 'already in source';
  const why = `does not apply: ${git(['--check']).stderr.trim().split('\n')[0]}`;
  if (required) throw new Error(`${path.basename(file)} ${why}`);
  return why;
}

/** How each tool shows it runs: llama-server --version exits 0; llama-bench has no --version but --help exits 0; llama-quantize prints its usage (exit 1) with no arguments. */
const SMOKE: Record<LlamaTool, { args: string[]; exit: number; pattern: RegExp }> = {
  'llama-server': { args: ['--version'], exit: 0, pattern: /version: .*commit/ },
  'llama-bench': { args: ['--help'], exit: 0, pattern: /-ctk, --cache-type-k/ },
  'llama-quantize': { args: [], exit: 1, pattern: /usage: .*llama-quantize/ },
};

function smokeCheck(tools: Record<LlamaTool, string>): void {
  for (const t of LLAMA_TOOLS) {
    const res = spawnSync(tools[t], SMOKE[t].args, { encoding: 'utf8', timeout: 30_000 });
    const out = `${res.stdout ?? ''}${res.stderr ?? ''}`;
    const ok = res.status === SMOKE[t].exit && SMOKE[t].pattern.test(out);
    if (!ok) throw new Error(`${tools[t]} does not run: exit ${String(res.status)} ${out.slice(0, 400)}`);
    log(`${t} runs: ${out.split('\n').find((l) => SMOKE[t].pattern.test(l))?.trim() ?? 'ok'}`);
  }
}

/**
 * Clones the bundle into `src` and applies the patches, recording them in SOURCE_READY.json. An interrupted
 * build resumes: when that record is there for this commit and these patch files, the source and the build
 * folder are kept (cmake/ninja then compile only what is missing); --rebuild starts over.
 */
function prepareSource(commit: string, src: string, build: string, rebuild: boolean): { patches: Record<string, string>; resumed: boolean } {
  const marker = path.join(src, '..', 'SOURCE_READY.json');
  const patchFiles = [...diffs(NODE_LLAMA_CPP_PATCHES).map((f) => path.join(NODE_LLAMA_CPP_PATCHES, f)), ...diffs(OUR_PATCHES).map((f) => path.join(OUR_PATCHES, f))];
  const fingerprint = JSON.stringify({ commit, patches: patchFiles.map((f) => [path.basename(f), readFileSync(f, 'utf8')]) });
  if (!rebuild && existsSync(marker)) {
    const saved = JSON.parse(readFileSync(marker, 'utf8')) as { fingerprint: string; patches: Record<string, string> };
    if (saved.fingerprint === fingerprint && existsSync(src)) {
      log(`resuming: source ${commit.slice(0, 12)} already cloned and patched in ${src}`);
      return { patches: saved.patches, resumed: true };
    }
  }
  rmSync(marker, { force: true });
  rmSync(src, { recursive: true, force: true });
  rmSync(build, { recursive: true, force: true });
  log(`cloning ${LLAMA_BUNDLE} (${commit.slice(0, 12)}) into ${src}`);
  run('git', ['clone', '--quiet', LLAMA_BUNDLE, src]);
  run('git', ['-C', src, '-c', 'advice.detachedHead=false', 'checkout', '--quiet', commit]);
  const patches: Record<string, string> = {};
  for (const f of diffs(NODE_LLAMA_CPP_PATCHES)) patches[`node-llama-cpp/${f}`] = applyPatch(src, path.join(NODE_LLAMA_CPP_PATCHES, f), false);
  for (const f of diffs(OUR_PATCHES)) patches[`bench/peer/patches/${f}`] = applyPatch(src, path.join(OUR_PATCHES, f), true);
  for (const [f, st] of Object.entries(patches)) log(`patch ${f}: ${st}`);
  writeFileSync(marker, `${JSON.stringify({ fingerprint, patches }, null, 2)}\n`);
  return { patches, resumed: false };
}

function main(): void {
  const { values } = parseArgs({ options: { jobs: { type: 'string', default: '2' }, nice: { type: 'string', default: '15' }, rebuild: { type: 'boolean', default: false } } });
  if (process.env.CI) throw new Error('refusing to build llama.cpp in CI (CI is set): the bench peer is built on benchmark machines only');
  const jobs = Number(values.jobs);
  const niceness = Number(values.nice);
  if (!(Number.isInteger(jobs) && jobs >= 1)) throw new Error(`--jobs must be a positive integer, got "${values.jobs}"`);
  if (!(Number.isInteger(niceness) && niceness >= 0 && niceness <= 19)) throw new Error(`--nice (the compile's niceness) must be an integer in [0, 19], got "${values.nice}"`);

  run('bash', [path.join(PEER_PACKAGE_DIR, 'install.sh')], { stdio: 'inherit' });
  const commit = bundleCommit();
  if (commit === null) throw new Error(`no llama.cpp source bundle at ${LLAMA_BUNDLE} after bench/peer/install.sh`);
  const existing = findLlamaBuild();
  if (existing.ok && !values.rebuild) {
    log(`llama.cpp ${commit.slice(0, 12)} already built in ${existing.dir} (--rebuild to redo)`);
    smokeCheck(existing.tools);
    return;
  }
  ensureToolchain();
  const dir = llamaBuildDir(commit);
  const src = path.join(dir, 'src');
  const build = path.join(dir, 'build');
  mkdirSync(dir, { recursive: true });
  rmSync(path.join(dir, 'BUILD_INFO.json'), { force: true });
  const { patches, resumed } = prepareSource(commit, src, build, values.rebuild);

  const generator = has('ninja') ? ['-G', 'Ninja'] : [];
  log(`configuring: cmake ${[...generator, ...CMAKE_FLAGS].join(' ')}`);
  run('cmake', ['-S', src, '-B', build, ...generator, ...CMAKE_FLAGS], { stdio: 'inherit' });
  const t0 = performance.now();
  // `nice -n` adds to the niceness we already run at: ask for the difference, so the compile runs at `niceness`
  const increment = Math.max(0, niceness - os.getPriority());
  log(`building ${LLAMA_TOOLS.join(', ')} with -j${jobs} at niceness ${Math.max(niceness, os.getPriority())} (~15-25 min on 2 idle cores)`);
  run('nice', ['-n', String(increment), 'cmake', '--build', build, '--target', ...LLAMA_TOOLS, '-j', String(jobs)], { stdio: 'inherit' });
  const buildSeconds = (performance.now() - t0) / 1000;

  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  const tools = Object.fromEntries(LLAMA_TOOLS.map((t) => [t, llamaToolPath(dir, t)])) as Record<LlamaTool, string>;
  for (const t of LLAMA_TOOLS) copyFileSync(path.join(build, 'bin', t), tools[t]);
  smokeCheck(tools);
  const tag = (JSON.parse(readFileSync(path.join(NODE_LLAMA_CPP_LLAMA_DIR, 'llama.cpp.info.json'), 'utf8')) as { tag?: string }).tag ?? null;
  const pkg = JSON.parse(readFileSync(path.join(NODE_LLAMA_CPP_LLAMA_DIR, '..', 'package.json'), 'utf8')) as { version: string };
  const info: LlamaBuildInfo = {
    commit, llamaCppTag: tag, nodeLlamaCppVersion: pkg.version, patches, cmakeFlags: [...generator, ...CMAKE_FLAGS],
    compiler: run('g++', ['--version']).split('\n')[0] ?? '', buildSeconds, resumed, builtAt: new Date().toISOString(),
  };
  writeFileSync(path.join(dir, 'BUILD_INFO.json'), `${JSON.stringify(info, null, 2)}\n`);
  log(`done in ${(buildSeconds / 60).toFixed(1)} min: ${path.join(dir, 'bin')}`);
}

try {
  main();
} catch (err) {
  log(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
