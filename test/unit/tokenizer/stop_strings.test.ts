import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StopStringMatcher } from '../../../src/server/tokenizer/stop_strings.ts';
import { randomInt, randomPieces, seededRandom } from './helpers.ts';

interface Outcome {
  text: string;
  stop: string | null;
}

/**
 * The answer for the whole text at once, by brute force: scanning end positions left to right, the
 * first stop string to be complete wins (the longest, i.e. earliest-starting, on a tie).
 */
function reference(text: string, stops: readonly string[], include: boolean): Outcome {
  let best: { index: number; stop: string } | null = null;
  for (let end = 1; end <= text.length && !best; end++) {
    for (const stop of stops) {
      const index = end - stop.length;
      if (stop && index >= 0 && text.startsWith(stop, index) && (!best || index < best.index)) best = { index, stop };
    }
  }
  if (!best) return { text, stop: null };
  return { text: text.slice(0, best.index + (include ? best.stop.length : 0)), stop: best.stop };
}

/**
 * Streams `deltas`, checking after every push that what was emitted so far is a prefix of the
 * reference answer: so no part of a stop string is ever emitted (unless it is to be included).
 */
function stream(stops: readonly string[], deltas: readonly string[], include = false): Outcome {
  const whole = reference(deltas.join(''), stops, include);
  const matcher = new StopStringMatcher(stops, include);
  let text = '';
  for (const delta of deltas) {
    const r = matcher.push(delta);
    text += r.text;
    assert.ok(whole.text.startsWith(text), `emitted ${JSON.stringify(text)} is not a prefix of ${JSON.stringify(whole.text)}`);
    if (r.stopped) return { text, stop: r.stop };
  }
  return { text: text + matcher.flush(), stop: null };
}

/** Every way to cut `text` into two deltas, plus one character at a time. */
function splits(text: string): string[][] {
  const out = [[...text]];
  for (let i = 0; i <= text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

describe('StopStringMatcher', () => {
  it('never leaks a partial stop string, for every split point', () => {
    const text = 'The answer is 42.\nUser: next question';
    for (const stops of [['\nUser:'], ['User'], ['42.\n'], ['not present'], ['answer is 4', 'is 42']]) {
      for (const deltas of splits(text)) assert.deepEqual(stream(stops, deltas), reference(text, stops, false), `${stops} / ${deltas}`);
    }
  });

  it('includes the stop string when asked, for every split point', () => {
    const text = 'abc STOP def';
    for (const deltas of splits(text)) assert.deepEqual(stream(['STOP'], deltas, true), { text: 'abc STOP', stop: 'STOP' });
  });

  it('stops at the stop string completed first, whatever the list order', () => {
    assert.deepEqual(stream(['world', 'o w'], ['hello world']), { text: 'hell', stop: 'o w' });
    assert.deepEqual(stream(['world', 'hello'], ['say ', 'hello world']), { text: 'say ', stop: 'hello' });
    assert.deepEqual(stream(['xyz', 'b'], ['a', 'b', 'c']), { text: 'a', stop: 'b' });
    // "c" is complete before "abcd" could be, however the text arrives.
    for (const deltas of splits('abcd')) assert.deepEqual(stream(['abcd', 'c'], deltas), { text: 'ab', stop: 'c' });
    // Both complete at the same character: the longer one (starting earlier) wins.
    for (const deltas of splits('xab')) assert.deepEqual(stream(['b', 'ab'], deltas), { text: 'x', stop: 'ab' });
  });

  it('stops at the very start', () => {
    assert.deepEqual(stream(['<end>'], ['<end>', 'more']), { text: '', stop: '<end>' });
    assert.deepEqual(stream(['<end>'], ['<', 'e', 'nd>rest']), { text: '', stop: '<end>' });
    assert.deepEqual(stream(['<end>'], ['<end>'], true), { text: '<end>', stop: '<end>' });
  });

  it('handles overlapping prefixes and self-overlapping stop strings', () => {
    assert.deepEqual(stream(['abac'], ['ab', 'ab', 'ac']), { text: 'ab', stop: 'abac' });
    assert.deepEqual(stream(['abac', 'abab'], ['ab', 'ab', 'ac']), { text: '', stop: 'abab' });
    assert.deepEqual(stream(['abac', 'abaa'], ['ab', 'ab', 'ac']), { text: 'ab', stop: 'abac' });
    assert.deepEqual(stream(['aab'], ['a', 'a', 'a', 'a', 'b']), { text: 'aa', stop: 'aab' });
    assert.deepEqual(stream(['abcabd'], ['abcab', 'cabd']), { text: 'abc', stop: 'abcabd' });
    assert.deepEqual(stream(['ab', 'abcd'], ['xabc', 'd']), { text: 'x', stop: 'ab' });
  });

  it('holds back only a possible prefix, and releases it when it cannot match', () => {
    const m = new StopStringMatcher(['STOP']);
    assert.deepEqual(m.push('hello ST'), { text: 'hello ', stopped: false, stop: null });
    assert.deepEqual(m.push('ART'), { text: 'START', stopped: false, stop: null });
    assert.deepEqual(m.push(' S'), { text: ' ', stopped: false, stop: null });
    assert.equal(m.flush(), 'S');
    assert.equal(m.flush(), '');
  });

  it('emits nothing once stopped', () => {
    const m = new StopStringMatcher(['x']);
    assert.deepEqual(m.push('axb'), { text: 'a', stopped: true, stop: 'x' });
    assert.deepEqual(m.push('more'), { text: '', stopped: true, stop: 'x' });
    assert.equal(m.flush(), '');
    assert.equal(m.stopped, true);
  });

  it('ignores empty stop strings and works with none', () => {
    assert.deepEqual(stream(['', 'z'], ['abc']), { text: 'abc', stop: null });
    assert.deepEqual(stream([], ['abc', 'def']), { text: 'abcdef', stop: null });
  });

  it('handles non-ASCII stop strings', () => {
    assert.deepEqual(stream(['🛑'], ['go go ', '🛑', ' no']), { text: 'go go ', stop: '🛑' });
    assert.deepEqual(stream(['。\n'], ['你好', '。', '\n再见']), { text: '你好', stop: '。\n' });
  });

  it('matches the whole-text answer for random texts, stops and splits', () => {
    const rand = seededRandom(5);
    const alphabet = 'ab c\n';
    const randomText = (n: number): string => Array.from({ length: n }, () => alphabet[randomInt(rand, alphabet.length)]).join('');
    for (let trial = 0; trial < 2000; trial++) {
      const text = randomText(randomInt(rand, 30));
      const stops = Array.from({ length: 1 + randomInt(rand, 3) }, () => randomText(1 + randomInt(rand, 4)));
      const include = trial % 3 === 0;
      const deltas = randomPieces(rand, [...text], 4).map((p) => p.join(''));
      assert.deepEqual(stream(stops, deltas, include), reference(text, stops, include), `${JSON.stringify({ text, stops, deltas, include })}`);
    }
  });
});
