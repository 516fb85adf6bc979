// Sizes the machine cannot hold stop start-up with a message naming the flag, before the model is
// loaded (before: "Invalid typed array length" from the engine worker, or accepted and failing later).
import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { startTestServer } from '../helpers/server.ts';

test('startServer refuses impossible sizes, naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['--num-kv-blocks', '100000000'], /^--num-kv-blocks 100000000: /],
    [['--num-kv-blocks', 'auto', '--kv-cache-memory', `${Math.ceil((os.totalmem() * 2) / 2 ** 30)}GiB`], /^--kv-cache-memory \d+GiB: more than/],
    [['--threads', '100000'], /^--threads 100000: at most/],
  ];
  for (const [flags, pattern] of cases) {
    await assert.rejects(startTestServer(FIXTURE_DIR, flags), (err: Error) => {
      assert.match(err.message, pattern);
      assert.doesNotMatch(err.message, /typed array/i);
      return true;
    });
  }
});
