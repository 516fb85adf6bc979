// Static checks of the deployment files: everything under docker/ parses, the Dockerfile has the
// instructions the image relies on, and the compose/k8s/Grafana files agree with each other.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import YAML from 'yaml';
import {
  REPO,
  adapterRules,
  dashboardExpressions,
  dockerFiles,
  dockerignorePatterns,
  execForm,
  isDockerignored,
  metricRefs,
  parseCopy,
  parseDockerfile,
  parseEnv,
  readYaml,
  readYamlDocs,
  type Stage,
} from './deploy_files.ts';
import { at } from '../helpers/at.ts';

const dockerfile = parseDockerfile(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.at(-1)!;
const args = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
const stageEnv = (stage: Stage) => Object.assign({}, ...args(stage, 'ENV').map(parseEnv)) as Record<string, string>;

describe('every YAML and JSON file under docker/ parses', () => {
  const files = dockerFiles().filter((f) => /\.(ya?ml|json)$/.test(f));
  test('there are files to check', () => {
    for (const f of [
      'docker/compose.yaml',
      'docker/prometheus/prometheus.yml',
      'docker/grafana/dashboards/dsv32.json',
      'docker/k8s/deployment.yaml',
      'docker/k8s/hpa.yaml',
    ]) {
      assert.ok(files.includes(f), `${f} exists`);
    }
  });
  for (const f of files) {
    test(f, () => {
      if (f.endsWith('.json')) JSON.parse(readFileSync(path.join(REPO, f), 'utf8'));
      else assert.ok(readYamlDocs(f).length >= 1);
    });
  }
  test('the YAML embedded in the prometheus-adapter ConfigMap parses', () => {
    assert.ok(adapterRules('docker/k8s/prometheus-adapter-rules.yaml').length >= 1);
  });
});

describe('Dockerfile', () => {
  test('two stages, both FROM node:20-bookworm-slim', () => {
    assert.equal(dockerfile.length, 2);
    for (const s of dockerfile) assert.equal(s.image, 'node:20-bookworm-slim');
  });

  test('every npm ci runs no dependency install script: .npmrc says ignore-scripts and is copied first', () => {
    // onnxruntime-node's install script would download CUDA libraries (.npmrc says why).
    const npmrc = readFileSync(path.join(REPO, '.npmrc'), 'utf8');
    assert.match(npmrc, /^ignore-scripts\s*=\s*true\s*$/m);
    let stagesWithNpmCi = 0;
    for (const stage of dockerfile) {
      const firstNpmCi = stage.instructions.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
      if (firstNpmCi < 0) continue;
      stagesWithNpmCi++;
      const copiesNpmrc = stage.instructions.slice(0, firstNpmCi).some((i) => i.keyword === 'COPY' && parseCopy(i.args).sources.includes('.npmrc'));
      assert.ok(copiesNpmrc, `stage ${stage.name} copies .npmrc before npm ci`);
      for (const r of args(stage, 'RUN')) assert.doesNotMatch(r, /--no-ignore-scripts\b|--ignore-scripts[= ]false\b/, r);
    }
    assert.equal(stagesWithNpmCi, 2);
  });

  test('npm reads .npmrc without an "Unknown project config" warning', () => {
    const r = spawnSync('npm', ['config', 'get', 'ignore-scripts'], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'true');
    assert.doesNotMatch(r.stderr, /Unknown (project|user|global|env|cli|builtin) config/);
  });

  test('the build stage compiles; the runtime stage installs production dependencies only', () => {
    const build = at(dockerfile, 0, 'Dockerfile stage');
    assert.ok(args(build, 'RUN').some((r) => /\bnpm ci\b/.test(r)));
    assert.ok(args(build, 'RUN').some((r) => /\bnpm run build\b/.test(r)));
    assert.ok(args(runtime, 'RUN').some((r) => /\bnpm ci\b[^&|;]*--omit=dev/.test(r)));
    const copies = args(runtime, 'COPY').map(parseCopy);
    assert.ok(
      copies.some((c) => c.from === build.name && c.sources.some((s) => /\/dist\/?$/.test(s))),
      'dist/ comes from the build stage',
    );
    for (const dir of ['models', 'config'])
      assert.ok(
        copies.some((c) => c.from === null && c.sources.includes(dir)),
        `${dir}/ is copied`,
      );
  });

  test('runs as a non-root user', () => {
    const users = args(runtime, 'USER');
    assert.ok(users.length > 0, 'USER is set');
    const user = users.at(-1)!.split(':')[0];
    assert.ok(user !== 'root' && user !== '0', `USER ${user}`);
  });

  test('EXPOSE 8000, listens on all interfaces, model volume, no ONNX Runtime telemetry', () => {
    assert.ok(args(runtime, 'EXPOSE').some((e) => e.split(/\s+/).some((p) => p === '8000' || p === '8000/tcp')));
    const env = stageEnv(runtime);
    assert.equal(env.DSV_HOST, '0.0.0.0');
    assert.equal(env.ORT_DISABLE_TELEMETRY, '1');
    const volumes = args(runtime, 'VOLUME').flatMap((v) => execForm(v) ?? v.split(/\s+/));
    assert.ok(volumes.includes('/models'), `VOLUME ${volumes}`);
  });

  test('HEALTHCHECK runs node against /health (exec form)', () => {
    const hc = args(runtime, 'HEALTHCHECK');
    assert.equal(hc.length, 1);
    const command = /^(?:--[a-z-]+=\S+\s+)*CMD\s+(.*)$/s.exec(at(hc, 0))?.[1];
    assert.ok(command !== undefined, hc[0]);
    const cmd = execForm(command);
    assert.ok(cmd, 'exec form');
    assert.equal(cmd[0], 'node');
    assert.match(cmd.join(' '), /\/health/);
  });

  test('ENTRYPOINT and CMD are exec form, so node is PID 1 and gets SIGTERM', () => {
    const entry = args(runtime, 'ENTRYPOINT');
    assert.equal(entry.length, 1);
    const argv = execForm(at(entry, 0));
    assert.ok(argv, `exec-form ENTRYPOINT: ${entry[0]}`);
    assert.equal(argv[0], 'node');
    for (const c of args(runtime, 'CMD')) assert.ok(execForm(c), `exec-form CMD: ${c}`);
  });

  test('.dockerignore keeps build output and dependencies out, and every COPY source in', () => {
    const patterns = dockerignorePatterns();
    for (const p of ['node_modules', 'dist', '.git']) assert.ok(isDockerignored(p, patterns), `${p} is ignored`);
    for (const stage of dockerfile) {
      for (const c of args(stage, 'COPY').map(parseCopy)) {
        if (c.from !== null) continue;
        for (const src of c.sources) {
          assert.ok(existsSync(path.join(REPO, src)), `COPY source ${src} exists`);
          assert.ok(!isDockerignored(src, patterns), `COPY source ${src} is not excluded by .dockerignore`);
        }
      }
    }
  });
});

describe('compose', () => {
  const compose = readYaml('docker/compose.yaml');
  const composeDir = path.join(REPO, 'docker');
  /** ${VAR:-default} -> default */
  const interpolate = (s: string) => s.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}/g, (_m, d) => d ?? '');

  test('server, Prometheus and Grafana; the server is built from the repo Dockerfile', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['grafana', 'prometheus', 'server']);
    const build = compose.services.server.build;
    assert.equal(path.resolve(composeDir, build.context), REPO);
    assert.ok(existsSync(path.join(path.resolve(composeDir, build.context), build.dockerfile ?? 'Dockerfile')));
  });

  test('bind-mounted host paths exist', () => {
    for (const [name, svc] of Object.entries<any>(compose.services)) {
      for (const v of svc.volumes ?? []) {
        const [hostPart = ''] = String(v).split(':');
        const host = interpolate(hostPart);
        if (!host.startsWith('.') && !host.startsWith('/')) continue; // named volume
        assert.ok(existsSync(path.resolve(composeDir, host)), `${name}: ${v}`);
      }
    }
  });

  test('stopping waits longer than the drain', () => {
    const server = compose.services.server;
    const grace = Number(/^(\d+)s$/.exec(server.stop_grace_period)?.[1]);
    assert.ok(grace > Number(server.environment.DSV_DRAIN_TIMEOUT), `${server.stop_grace_period} > ${server.environment.DSV_DRAIN_TIMEOUT}`);
  });

  test('Prometheus scrapes the server service on 8000, Grafana gets the datasource and the dashboard', () => {
    const prom = readYaml('docker/prometheus/prometheus.yml');
    const targets = prom.scrape_configs.flatMap((s: any) => s.static_configs.flatMap((c: any) => c.targets));
    assert.ok(targets.includes('server:8000'), String(targets));
    for (const f of prom.rule_files) assert.ok(existsSync(path.join(REPO, 'docker/prometheus', f)), f);
    const grafana = compose.services.grafana;
    const mountOf = (host: string) => grafana.volumes.find((v: string) => v.startsWith(`${host}:`))?.split(':')[1];
    const dsFile = readYaml('docker/grafana/provisioning/datasources/prometheus.yaml');
    assert.equal(dsFile.datasources[0].type, 'prometheus');
    assert.match(dsFile.datasources[0].url, /^http:\/\/prometheus:9090\/?$/);
    const provider = readYaml('docker/grafana/provisioning/dashboards/dsv32.yaml').providers[0];
    assert.equal(provider.options.path, mountOf('./grafana/dashboards'));
    assert.equal(mountOf('./grafana/provisioning'), '/etc/grafana/provisioning');
  });
});

describe('Grafana dashboard', () => {
  const rel = 'docker/grafana/dashboards/dsv32.json';
  const dash = JSON.parse(readFileSync(path.join(REPO, rel), 'utf8'));
  const panels: any[] = dash.panels.flatMap((p: any) => [p, ...(p.panels ?? [])]);

  test('the committed JSON is what docker/grafana/generate-dashboard.mjs writes', () => {
    const r = spawnSync(process.execPath, ['docker/grafana/generate-dashboard.mjs'], { cwd: REPO, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout === readFileSync(path.join(REPO, rel), 'utf8'), `regenerate: node docker/grafana/generate-dashboard.mjs > ${rel}`);
  });

  test('panel ids are unique and every query panel uses the datasource variable', () => {
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const p of panels.filter((p) => p.type !== 'row')) {
      assert.ok(p.targets?.length > 0, `${p.title} has queries`);
      for (const t of p.targets) assert.equal((t.datasource ?? p.datasource)?.uid, '${datasource}', `${p.title} ${t.refId}`);
    }
  });

  test('covers TTFT, inter-token latency, throughput, load, KV cache, prefix caching, DSA, preemptions, outcomes', () => {
    const exprs = dashboardExpressions(rel).map((e) => e.raw);
    const uses = (re: RegExp) => exprs.some((e) => re.test(e));
    assert.ok(
      uses(/histogram_quantile\(0\.5,.*vllm:time_to_first_token_seconds_bucket/) && uses(/histogram_quantile\(0\.99,.*vllm:time_to_first_token_seconds_bucket/),
      'TTFT p50/p99',
    );
    assert.ok(uses(/histogram_quantile\(.*vllm:inter_token_latency_seconds_bucket/), 'inter-token latency');
    assert.ok(uses(/rate\(vllm:generation_tokens_total/) && uses(/rate\(vllm:prompt_tokens_total/), 'throughput');
    assert.ok(uses(/vllm:num_requests_running/) && uses(/vllm:num_requests_waiting/), 'running/waiting');
    assert.ok(uses(/vllm:kv_cache_usage_perc/), 'KV cache usage');
    assert.ok(uses(/vllm:prefix_cache_hits_total.*\/.*vllm:prefix_cache_queries_total/), 'prefix-cache hit rate');
    assert.ok(uses(/dsv:dsa_selected_keys_total.*\/.*dsv:dsa_visible_keys_total/), 'DSA sparsity');
    assert.ok(uses(/dsv:engine_step_seconds_total\{[^}]*part="indexer"[^}]*\}.*\/.*dsv:engine_step_seconds_total/), 'indexer time share');
    assert.ok(uses(/vllm:num_preemptions_total/), 'preemptions');
    assert.ok(uses(/sum by \(finished_reason\) \(rate\(vllm:request_success_total/), 'success by reason');
  });
});

describe('Kubernetes manifests', () => {
  const k8s = (f: string) => `docker/k8s/${f}`;
  const deployment = readYaml(k8s('deployment.yaml'));
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries(container.env.filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]));

  test('kustomization resources exist', () => {
    const kust = readYaml(k8s('kustomization.yaml'));
    for (const r of kust.resources) assert.ok(statSync(path.join(REPO, k8s(r))).isFile(), r);
    assert.ok(!kust.resources.includes('keda-scaledobject.yaml'), 'KEDA and the HPA are alternatives, not both');
  });

  test('kubectl kustomize renders the kustomization (when kubectl is installed)', (t) => {
    const r = spawnSync('kubectl', ['kustomize', 'docker/k8s'], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
    if (r.error) {
      t.skip('kubectl not installed');
      return;
    }
    assert.equal(r.status, 0, r.stderr);
    const kinds = YAML.parseAllDocuments(r.stdout)
      .map((d) => (d.toJS() as { kind: string }).kind)
      .sort();
    assert.deepEqual(kinds, ['Deployment', 'HorizontalPodAutoscaler', 'Service']);
  });

  test('probes hit /health on the container port; the grace period covers preStop + drain', () => {
    const port = container.ports.find((p: any) => p.name === 'http');
    assert.equal(port.containerPort, Number(env.DSV_PORT));
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      assert.equal(container[probe].httpGet.path, '/health', probe);
      assert.ok([port.name, port.containerPort].includes(container[probe].httpGet.port), probe);
    }
    const preStop = container.lifecycle.preStop.exec.command as string[];
    const sleep = preStop[0] === 'sleep' ? Number(preStop[1]) : 0;
    const drain = Number(env.DSV_DRAIN_TIMEOUT);
    assert.ok(pod.terminationGracePeriodSeconds > sleep + drain, `${pod.terminationGracePeriodSeconds} > ${sleep} + ${drain}`);
    const live = container.livenessProbe;
    assert.ok(live.periodSeconds * live.failureThreshold > drain, 'liveness outlasts a drain (/health is 503 while draining)');
    assert.equal(env.DSV_HOST, '0.0.0.0');
    assert.ok(
      container.volumeMounts.some((m: any) => m.mountPath === '/models'),
      'model volume',
    );
    assert.ok(container.resources?.requests?.cpu && container.resources?.requests?.memory, 'resources');
    assert.equal(pod.securityContext.runAsNonRoot, true);
  });

  test('the Service selects the pods and targets the container port', () => {
    const svc = readYaml(k8s('service.yaml'));
    const labels = deployment.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(labels[k], v, k);
    assert.ok(svc.spec.ports.some((p: any) => p.targetPort === 'http' || p.targetPort === 8000));
  });

  test('the HPA scales the Deployment on metrics the prometheus-adapter rules serve', () => {
    const hpa = readYaml(k8s('hpa.yaml'));
    assert.equal(hpa.spec.scaleTargetRef.kind, 'Deployment');
    assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
    const rules = adapterRules(k8s('prometheus-adapter-rules.yaml'));
    const served = new Map(rules.map((r) => [r.name.as, r]));
    const names = hpa.spec.metrics.map((m: any) => (m.pods ?? m.object ?? m.external).metric.name);
    assert.ok(names.includes('vllm_num_requests_waiting'), String(names));
    for (const name of names) {
      const rule = served.get(name);
      assert.ok(rule, `adapter rule serving ${name}`);
      const series = at(metricRefs(rule.seriesQuery), 0, 'metric of seriesQuery').metric;
      assert.match(series, new RegExp(rule.name.matches), `${name}: name.matches selects ${series}`);
    }
  });

  test('the KEDA ScaledObject targets the Deployment with a Prometheus trigger on the queue', () => {
    const so = readYaml(k8s('keda-scaledobject.yaml'));
    assert.equal(so.spec.scaleTargetRef.name, deployment.metadata.name);
    assert.ok(so.spec.triggers.some((t: any) => t.type === 'prometheus' && /vllm:num_requests_waiting/.test(t.metadata.query)));
  });
});
