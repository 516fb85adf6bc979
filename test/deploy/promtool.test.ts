// Prometheus's own checks of the Prometheus config and of every PromQL expression in docker/
// (dashboard, alerts, prometheus-adapter rules, KEDA triggers). Skipped where promtool is not
// installed (Debian/Ubuntu: apt-get install prometheus). `promtool check metrics` on a live
// /metrics is in image.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import YAML from 'yaml';
import { allExpressions, findPromtool, runPromtool } from './deploy_files.ts';

const promtool = findPromtool();

test('promtool check config docker/prometheus/prometheus.yml (and its rule files)', (t) => {
  if (!promtool) {
    t.skip('promtool not installed');
    return;
  }
  const r = runPromtool(['check', 'config', 'docker/prometheus/prometheus.yml']);
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /SUCCESS/);
});

test('promtool check rules accepts every PromQL expression under docker/', (t) => {
  if (!promtool) {
    t.skip('promtool not installed');
    return;
  }
  const exprs = allExpressions();
  assert.ok(exprs.length > 20);
  // Each expression becomes a recording rule; promtool parses them all with Prometheus's parser.
  const rules = { groups: [{ name: 'docker-expressions', rules: exprs.map((e, i) => ({ record: `check:expr_${i}`, expr: e.promql })) }] };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dsv-promql-'));
  try {
    const file = path.join(dir, 'expressions.rules.yml');
    writeFileSync(file, YAML.stringify(rules));
    const r = runPromtool(['check', 'rules', file]);
    // On failure promtool names the rule index; map it back to where the expression lives.
    const where = [...r.output.matchAll(/expr_(\d+)/g)].map((m) => {
      const e = exprs[Number(m[1])];
      return e ? `${e.source}: ${e.raw}` : m[0];
    });
    assert.equal(r.code, 0, `${r.output}\n${where.join('\n')}`);
    assert.match(r.output, new RegExp(`SUCCESS: ${exprs.length} rules found`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
