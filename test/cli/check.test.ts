// The check CLI prints golden greedy tokens with top-5 logprobs as JSON, and fails cleanly on bad input.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FIXTURE_DIR, Golden } from '../helpers/golden.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const golden = new Golden();

function runCheck(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/check.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
}

test('greedy tokens and top-5 logprobs of a fixture prompt, chunked and dense', () => {
  for (const extra of [[], ['--chunk-size', '13'], ['--dense-attention']]) {
    const r = runCheck(['--model', FIXTURE_DIR, '--prompt', golden.prompt(2).join(','), '--max-tokens', '16', ...extra]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { tokens: number[]; steps: { token: number; logprob: number; top_logprobs: { token: number }[] }[] };
    if (extra[0] !== '--dense-attention') assert.deepEqual(out.tokens, golden.greedyTokens(2));
    assert.equal(out.steps.length, 16);
    for (const s of out.steps) {
      assert.equal(s.top_logprobs.length, 5);
      assert.equal(s.top_logprobs[0]?.token, s.token, 'greedy picks the top token');
      assert.ok(s.logprob <= 0);
    }
  }
});

test('bad input exits 1 with one line naming the problem', () => {
  const bad = runCheck(['--model', FIXTURE_DIR, '--prompt', '1,x']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error: --prompt: "x" is not a token id\n$/);
  const missing = runCheck(['--model', '/nonexistent', '--prompt', '1']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^error: \/nonexistent: model directory not found\n$/);
});
