// The container image, without Docker: replays the Dockerfile's stages into temporary directories
// (COPY from the build context or an earlier stage, WORKDIR, ENV, `npm ci` as a link to the
// installed node_modules -- production packages only for --omit=dev --, `npm run build` for real),
// then runs the runtime stage's ENTRYPOINT + CMD with its ENV and working directory, as `docker run`
// would. Checks: /health, a text completion and a streamed chat completion on the embedded model,
// the HEALTHCHECK command, every metric name referenced under docker/ on the live /metrics,
// `promtool check metrics`, and SIGTERM -> exit 0.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { metricValue, parsePrometheus, type Sample } from '../helpers/prometheus.ts';
import {
  ACCEPTED_METRICS_LINT,
  REPO,
  allExpressions,
  dockerFiles,
  execForm,
  findPromtool,
  metricRefs,
  parseCopy,
  parseDockerfile,
  parseEnv,
  prefixedMetricTokens,
  runPromtool,
  type Stage,
} from './deploy_files.ts';
import { at } from '../helpers/at.ts';

/** Labels that Prometheus or Kubernetes service discovery attach at scrape time, not the server. */
const TARGET_LABELS = new Set(['instance', 'job', 'namespace', 'pod', 'service', 'container', 'endpoint', 'le']);

interface Image {
  readonly root: string;
  readonly workdir: string;
  readonly env: Record<string, string>;
  readonly argv: string[];
  readonly healthcheck: string[] | null;
}

/** Top-level packages `npm ci --omit=dev` installs, from package-lock.json. */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8'));
  return Object.entries<any>(lock.packages)
    .filter(([key, meta]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(key) && !meta.dev)
    .map(([key]) => key.slice('node_modules/'.length));
}

/** Replays the Dockerfile into tmp/<stage>/...; returns how to run the final stage. */
function replayDockerfile(tmp: string): Image {
  const stages = parseDockerfile(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'));
  const roots = new Map<string, string>();
  let image: Image | null = null;
  stages.forEach((stage: Stage, index) => {
    const root = path.join(tmp, `stage${index}`);
    mkdirSync(root, { recursive: true });
    roots.set(String(index), root);
    if (stage.name) roots.set(stage.name, root);
    const inRoot = (p: string) => path.join(root, p);
    let workdir = '/';
    const env: Record<string, string> = {};
    let entrypoint: string[] = [];
    let cmd: string[] = [];
    let healthcheck: string[] | null = null;
    for (const ins of stage.instructions) {
      switch (ins.keyword) {
        case 'WORKDIR':
          workdir = path.posix.resolve(workdir, ins.args);
          mkdirSync(inRoot(workdir), { recursive: true });
          break;
        case 'ENV':
          Object.assign(env, parseEnv(ins.args));
          break;
        case 'COPY': {
          const c = parseCopy(ins.args);
          const destAbs = path.posix.resolve(workdir, c.dest);
          const intoDir = c.dest.endsWith('/') || c.sources.length > 1;
          for (const src of c.sources) {
            const from = c.from === null ? path.join(REPO, src) : path.join(roots.get(c.from) ?? assert.fail(`COPY --from=${c.from}: no such stage`), src);
            assert.ok(existsSync(from), `Dockerfile line ${ins.line}: COPY source ${src} missing (${from})`);
            const isDir = statSync(from).isDirectory();
            const target = intoDir && !isDir ? path.join(inRoot(destAbs), path.basename(src)) : inRoot(destAbs);
            cpSync(from, target, { recursive: true });
          }
          break;
        }
        case 'RUN': {
          const cwd = inRoot(workdir);
          if (/\bnpm ci\b/.test(ins.args)) {
            const nm = path.join(cwd, 'node_modules');
            if (/--omit[= ]dev\b/.test(ins.args)) {
              for (const pkg of productionPackages()) {
                const real = path.join(REPO, 'node_modules', pkg);
                if (!existsSync(real)) continue; // optional dependency for another platform
                mkdirSync(path.dirname(path.join(nm, pkg)), { recursive: true });
                symlinkSync(real, path.join(nm, pkg), 'dir');
              }
            } else {
              symlinkSync(path.join(REPO, 'node_modules'), nm, 'dir');
            }
          }
          if (/\bnpm run build\b/.test(ins.args)) {
            const r = spawnSync('npm', ['run', 'build'], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 });
            assert.equal(r.status, 0, `npm run build in the build stage:\n${r.stdout}${r.stderr}`);
          }
          break; // other commands (mkdir, chown, pruning) do not change what runs
        }
        case 'ENTRYPOINT':
          entrypoint = execForm(ins.args) ?? assert.fail('ENTRYPOINT must be exec form');
          cmd = [];
          break;
        case 'CMD':
          cmd = execForm(ins.args) ?? assert.fail('CMD must be exec form');
          break;
        case 'HEALTHCHECK':
          healthcheck = execForm(/CMD\s+(.*)$/s.exec(ins.args)?.[1] ?? '') ?? null;
          break;
        default:
          break;
      }
    }
    image = { root, workdir: inRoot(workdir), env, argv: [...entrypoint, ...cmd], healthcheck };
  });
  assert.ok(image);
  return image;
}

/** The same argv, run here: `node` is this Node. */
function localArgv(argv: string[]): [string, string[]] {
  const [bin, ...rest] = argv;
  assert.ok(bin !== undefined, 'an empty argv');
  return [bin === 'node' ? process.execPath : bin, rest];
}

/** process.env without the server's own variables, so a developer's DSV_* cannot leak in. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DSV_') && k !== 'VLLM_API_KEY'));
}

describe('the image entrypoint, outside Docker', () => {
  let tmp: string;
  let image: Image;
  let child: ChildProcess;
  let address: string;
  let log = '';
  let metricsText = '';
  let samples: Sample[] = [];
  let families = new Set<string>();

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'dsv-image-'));
    image = replayDockerfile(tmp);
    const [bin, args] = localArgv(image.argv);
    // docker run -e DSV_HOST=127.0.0.1 -e DSV_PORT=0: loopback and a free port instead of 0.0.0.0:8000.
    child = spawn(bin, args, {
      cwd: image.workdir,
      env: { ...cleanEnv(), ...image.env, DSV_HOST: '127.0.0.1', DSV_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr!.on('data', (d) => (log += d));
    address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no address logged within 30 s: ${log}`)), 30_000);
      child.stdout!.on('data', (d: Buffer) => {
        log += d;
        const address = /"address":"(http:\/\/[^"]+)"/.exec(log)?.[1];
        if (address !== undefined) {
          clearTimeout(timer);
          resolve(address);
        }
      });
      child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${log}`)));
    });
  });

  after(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('serves the embedded model from the image layout', async () => {
    assert.match(log, new RegExp(`"model":"${path.join(image.root, 'app', 'models', 'default').replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}"`));
    const health = await fetch(`${address}/health`);
    assert.equal(health.status, 200);
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    for (const dev of Object.keys(pkg.devDependencies ?? {})) {
      assert.ok(!existsSync(path.join(image.workdir, 'node_modules', dev)), `devDependency ${dev} is not in the runtime image`);
    }
  });

  test('the HEALTHCHECK command passes', () => {
    assert.ok(image.healthcheck, 'HEALTHCHECK CMD in exec form');
    const [bin, args] = localArgv(image.healthcheck);
    const r = spawnSync(bin, args, { env: { ...cleanEnv(), ...image.env, DSV_PORT: new URL(address).port }, encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });

  test('a text completion returns text', async () => {
    const res = await fetch(`${address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'The quick brown fox', max_tokens: 8, temperature: 0, ignore_eos: true }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } };
    assert.equal(typeof at(body.choices, 0).text, 'string');
    assert.ok(at(body.choices, 0).text.length > 0, 'non-empty text');
    assert.equal(body.usage.completion_tokens, 8);
  });

  test('a streamed chat completion ends with [DONE]', async () => {
    const res = await fetch(`${address}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 6, stream: true, ignore_eos: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const text = await res.text();
    assert.match(text, /^data: \{/);
    assert.match(text, /data: \[DONE\]\n\n$/);
  });

  test('every metric name referenced under docker/ is exported by /metrics', async () => {
    metricsText = await (await fetch(`${address}/metrics`)).text();
    ({ samples } = parsePrometheus(metricsText));
    families = new Set(parsePrometheus(metricsText).types.keys());
    const exported = new Set([...samples.map((s) => s.name), ...families]);
    const missing: string[] = [];
    // PromQL selectors in the dashboard, alerts, adapter rules and KEDA triggers...
    for (const e of allExpressions()) {
      for (const ref of metricRefs(e.promql)) {
        if (!exported.has(ref.metric)) {
          missing.push(`${e.source}: ${ref.metric}`);
          continue;
        }
        // ...and the label values they match exactly (e.g. part="indexer", finished_reason="error").
        for (const [label, value] of Object.entries(ref.labels)) {
          const ofMetric = samples.filter((s) => s.name === ref.metric);
          if (TARGET_LABELS.has(label) && !ofMetric.some((s) => label in s.labels)) continue;
          if (!ofMetric.some((s) => s.labels[label] === value)) missing.push(`${e.source}: ${ref.metric}{${label}="${value}"}`);
        }
      }
    }
    // ...plus any vllm:/dsv: name mentioned anywhere under docker/ (comments, READMEs, compose).
    for (const f of dockerFiles()) {
      for (const name of prefixedMetricTokens(readFileSync(path.join(REPO, f), 'utf8'))) {
        if (!exported.has(name)) missing.push(`${f}: ${name}`);
      }
    }
    assert.deepEqual([...new Set(missing)], []);
    // The served model's name is what the dashboard's model_name variable lists.
    assert.ok(metricValue(samples, 'vllm:generation_tokens_total', { model_name: 'default' }) >= 14);
  });

  test('promtool check metrics finds nothing beyond the vLLM naming conventions', (t) => {
    if (!findPromtool()) {
      t.skip('promtool not installed');
      return;
    }
    assert.ok(metricsText.length > 0);
    const r = runPromtool(['check', 'metrics'], metricsText);
    assert.ok(r.code === 0 || r.code === 3, `exit ${r.code} (1 = unparseable exposition): ${r.output}`);
    const findings = r.output
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const unexpected = findings.filter((l) => !ACCEPTED_METRICS_LINT.some((re) => re.test(l)));
    assert.deepEqual(unexpected, []);
  });

  test('SIGTERM drains and exits 0; the health check then fails', async () => {
    child.kill('SIGTERM');
    const [code, signal] = await once(child, 'exit');
    assert.equal(signal, null, log);
    assert.equal(code, 0, log);
    assert.match(log, /"signal":"SIGTERM"/);
    const [bin, args] = localArgv(image.healthcheck!);
    const r = spawnSync(bin, args, { env: { ...cleanEnv(), ...image.env, DSV_PORT: new URL(address).port }, encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 1);
  });
});
