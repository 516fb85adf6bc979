import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EngineError } from '../../../src/common/errors.ts';
import { loadTokenizer, type TextTokenizer } from '../../../src/server/tokenizer/tokenizer.ts';
import { makeTempDir, MULTILINGUAL, trainedTokenizerDir } from './helpers.ts';

const BOS = '<｜begin▁of▁sentence｜>';
const EOS = '<｜end▁of▁sentence｜>';

function load(dir = trainedTokenizerDir()): TextTokenizer {
  const t = loadTokenizer(dir);
  assert.ok(t, 'tokenizer.json should load');
  return t;
}

/** A copy of the trained tokenizer with its JSON files edited. */
function variant(edit: { config?: (c: Record<string, any>) => void; tokenizer?: (t: Record<string, any>) => void }): string {
  const dir = makeTempDir('bpe-variant-');
  cpSync(trainedTokenizerDir(), dir, { recursive: true });
  for (const [file, fn] of [
    ['tokenizer_config.json', edit.config],
    ['tokenizer.json', edit.tokenizer],
  ] as const) {
    if (!fn) continue;
    const json = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    fn(json);
    writeFileSync(join(dir, file), JSON.stringify(json));
  }
  return dir;
}

const chat = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: '2+2?' },
];

describe('loadTokenizer', () => {
  it('returns null when the directory has no tokenizer.json', () => {
    assert.equal(loadTokenizer(makeTempDir('no-tok-')), null);
  });

  it('names the file when tokenizer.json is corrupt or unusable', () => {
    const dir = makeTempDir('bad-tok-');
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": {');
    assert.throws(
      () => loadTokenizer(dir),
      (e: Error) => e instanceof EngineError && e.message.includes(join(dir, 'tokenizer.json')) && /not valid JSON/.test(e.message),
    );
    writeFileSync(join(dir, 'tokenizer.json'), '[1, 2]');
    assert.throws(() => loadTokenizer(dir), /tokenizer\.json: expected a JSON object/);
    writeFileSync(
      join(dir, 'tokenizer.json'),
      JSON.stringify({ model: { type: 'NoSuchModel' }, decoder: null, normalizer: null, pre_tokenizer: null, post_processor: null }),
    );
    assert.throws(() => loadTokenizer(dir), /tokenizer\.json: not a usable tokenizer: .*NoSuchModel/);
  });

  it('names tokenizer_config.json when it is corrupt, and works without it', () => {
    const dir = variant({});
    writeFileSync(join(dir, 'tokenizer_config.json'), 'not json');
    assert.throws(() => loadTokenizer(dir), /tokenizer_config\.json: not valid JSON/);
    mkdirSync(join(dir, 'empty'));
    cpSync(join(trainedTokenizerDir(), 'tokenizer.json'), join(dir, 'empty', 'tokenizer.json'));
    const t = load(join(dir, 'empty'));
    assert.equal(t.bosTokenId, 0, 'BOS found among the added tokens by name');
    assert.equal(t.eosTokenId, 1);
    assert.equal(t.hasChatTemplate, false);
    assert.deepEqual(t.encode('a'), [0, ...t.encode('a', { addSpecialTokens: false })], 'BOS from the post-processor');
  });
});

describe('loadTokenizer: the same file checks as config.json and the weights', () => {
  const FILES = ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja'];

  function withReplaced(file: string, replace: (path: string) => void): string {
    const dir = makeTempDir('tok-files-');
    cpSync(trainedTokenizerDir(), dir, { recursive: true });
    rmSync(join(dir, file), { force: true });
    replace(join(dir, file));
    return dir;
  }

  function expectRefused(dir: string, file: string, reason: RegExp): void {
    assert.throws(
      () => loadTokenizer(dir),
      (err: unknown) => {
        assert.ok(err instanceof EngineError, String(err));
        assert.equal(err.code, 'DSV_ERR_CONFIG');
        assert.ok(err.message.includes(file), err.message);
        assert.match(err.message, reason);
        assert.ok(!err.message.includes('SECRET'), `the target's bytes are not printed: ${err.message}`);
        return true;
      },
    );
  }

  for (const file of FILES) {
    it(`refuses ${file} as a symlink to a file outside the model directory, without reading it`, () => {
      const outside = join(makeTempDir('tok-outside-'), 'secret.txt');
      writeFileSync(outside, 'SECRET-CONTENT: root:x:0:0');
      expectRefused(
        withReplaced(file, (p) => symlinkSync(outside, p)),
        file,
        /outside the model directory/,
      );
    });

    it(`refuses ${file} as a FIFO or a directory instead of hanging`, () => {
      expectRefused(
        withReplaced(file, (p) => execFileSync('mkfifo', [p])),
        file,
        /not a regular file/,
      );
      expectRefused(
        withReplaced(file, (p) => mkdirSync(p)),
        file,
        /not a regular file/,
      );
    });
  }

  it('accepts a symlink to a file inside the model directory', () => {
    const dir = withReplaced('tokenizer.json', (p) => symlinkSync('real-tokenizer.json', p));
    cpSync(join(trainedTokenizerDir(), 'tokenizer.json'), join(dir, 'real-tokenizer.json'));
    assert.ok(loadTokenizer(dir));
  });
});

describe('TextTokenizer', () => {
  it('knows the most characters one token covers: its longest vocabulary entry', () => {
    const t = load();
    const vocab = JSON.parse(readFileSync(join(trainedTokenizerDir(), 'tokenizer.json'), 'utf8')) as {
      model: { vocab: Record<string, number> };
      added_tokens: { content: string }[];
    };
    const longest = Math.max(...Object.keys(vocab.model.vocab).map((k) => k.length), ...vocab.added_tokens.map((a) => a.content.length));
    assert.equal(t.maxTokenChars, longest);
    const text = 'the quick brown fox jumps over the lazy dog '.repeat(20);
    assert.ok(t.encode(text, { addSpecialTokens: false }).length >= Math.ceil(text.length / t.maxTokenChars));
  });

  it('round-trips arbitrary UTF-8 exactly', () => {
    const t = load();
    const samples = [
      MULTILINGUAL,
      '',
      ' ',
      '\n\n\t  x  ',
      '🙂',
      '👨‍👩‍👧🇫🇷❤️',
      '龘靐齉 𠀀𪚥 (astral CJK)',
      '\u0000\u0001\u007f\u00a0\ufeffBOM-like',
      `text with special tokens ${BOS} inside ${EOS}`,
      Array.from({ length: 300 }, (_, i) => String.fromCodePoint(0x20 + ((i * 7919) % 0x2fff))).join(''),
    ];
    for (const s of samples) {
      assert.equal(t.decode(t.encode(s, { addSpecialTokens: false })), s, JSON.stringify(s));
      assert.equal(t.decode(t.encode(s), { skipSpecialTokens: true }), s.replaceAll(BOS, '').replaceAll(EOS, ''));
    }
  });

  it('knows its special tokens', () => {
    const t = load();
    assert.equal(t.bosTokenId, 0);
    assert.equal(t.eosTokenId, 1);
    assert.equal(t.vocabSize, 661);
    const names = ['<｜User｜>', '<｜Assistant｜>', '<｜pad｜>'];
    const tail = names.map((n) => t.encode(n, { addSpecialTokens: false }));
    assert.deepEqual(tail, [[658], [659], [660]]);
    assert.deepEqual(
      [...t.specialTokenIds].sort((a, b) => a - b),
      [0, 1, 658, 659, 660],
    );
    assert.equal(t.tokenText(659), '<｜Assistant｜>');
  });

  it('adds BOS per add_bos_token, and EOS only when add_eos_token', () => {
    const t = load();
    const plain = t.encode('hello', { addSpecialTokens: false });
    assert.deepEqual(t.encode('hello'), [0, ...plain]);
    assert.deepEqual(load(variant({ config: (c) => (c.add_bos_token = false) })).encode('hello'), plain);
    assert.deepEqual(load(variant({ config: (c) => (c.add_eos_token = true) })).encode('hello'), [0, ...plain, 1]);
  });

  it('decodes out-of-vocabulary ids and empty lists to nothing', () => {
    const t = load();
    assert.equal(t.decode([]), '');
    assert.equal(t.decode([-1, 1e6, 2.5]), '');
    assert.equal(t.decode([...t.encode('ab', { addSpecialTokens: false }), 99999]), 'ab');
  });

  it('renders a lone byte token as U+FFFD, and credits the completing token with context', () => {
    const t = load();
    const bytes = [...new TextEncoder().encode('🙂')].map((b) => 2 + b); // byte b has id 2 + b
    assert.equal(t.decode(bytes), '🙂');
    assert.deepEqual(
      bytes.map((id) => t.tokenText(id)),
      ['\uFFFD', '\uFFFD', '\uFFFD', '\uFFFD'],
    );
    const corrected = bytes.map((id, i) => t.tokenText(id, bytes.slice(0, i)));
    assert.deepEqual(corrected, ['', '', '', '🙂']);
    const hi = t.encode('hi', { addSpecialTokens: false });
    assert.equal(t.tokenText(bytes[3]!, [...hi, ...bytes.slice(0, 3)]), '🙂', 'clean context text is not repeated');
  });
});

describe('applyChatTemplate', () => {
  it("renders the model's template with and without the generation prompt", () => {
    const t = load();
    assert.equal(t.hasChatTemplate, true);
    const turns = `${BOS}Be brief.<｜User｜>Hi<｜Assistant｜>Hello!${EOS}<｜User｜>2+2?`;
    assert.equal(t.applyChatTemplate(chat, { addGenerationPrompt: true }), `${turns}<｜Assistant｜>`);
    assert.equal(t.applyChatTemplate(chat, { addGenerationPrompt: false }), turns);
    const ids = t.encode(t.applyChatTemplate(chat, { addGenerationPrompt: true }), { addSpecialTokens: false });
    assert.equal(ids[0], 0, 'the template writes the BOS; encode must not add a second');
    assert.notEqual(ids[1], 0);
  });

  it('passes template kwargs and bos/eos tokens like transformers', () => {
    const dir = variant({
      config: (c) => (c.chat_template = '{{ bos_token }}|{{ eos_token }}|{{ greeting }}|{{ add_generation_prompt }}|{{ messages | length }}'),
    });
    const t = load(dir);
    assert.equal(t.applyChatTemplate(chat, { addGenerationPrompt: true, templateKwargs: { greeting: 'hey' } }), `${BOS}|${EOS}|hey|true|4`);
  });

  it('picks the "default" entry of a template list, and prefers chat_template.jinja', () => {
    const list = [
      { name: 'tool_use', template: 'TOOLS' },
      { name: 'default', template: 'DEFAULT {{ messages[0].content }}' },
    ];
    const dir = variant({ config: (c) => (c.chat_template = list) });
    assert.equal(load(dir).applyChatTemplate(chat, { addGenerationPrompt: false }), 'DEFAULT Be brief.');
    writeFileSync(join(dir, 'chat_template.jinja'), 'FROM FILE');
    assert.equal(load(dir).applyChatTemplate(chat, { addGenerationPrompt: false }), 'FROM FILE');
  });

  it('falls back to a built-in DeepSeek template when the config has none', () => {
    const t = load(variant({ config: (c) => delete c.chat_template }));
    assert.equal(t.hasChatTemplate, false);
    const expected = `${BOS}Be brief.<｜User｜>Hi<｜Assistant｜>Hello!${EOS}<｜User｜>2+2?<｜Assistant｜>`;
    assert.equal(t.applyChatTemplate(chat, { addGenerationPrompt: true }), expected);
    const twoSystems = [
      { role: 'system', content: 'A' },
      { role: 'system', content: 'B' },
      { role: 'user', content: 'q' },
    ];
    assert.equal(t.applyChatTemplate(twoSystems, { addGenerationPrompt: true }), `${BOS}A\n\nB<｜User｜>q<｜Assistant｜>`);
    const thinking = t.applyChatTemplate(chat, { addGenerationPrompt: true, templateKwargs: { thinking: true } });
    assert.ok(thinking.endsWith(`<｜Assistant｜></think>Hello!${EOS}<｜User｜>2+2?<｜Assistant｜><think>`), thinking);
  });

  it('renders tools, tool calls and tool results in DeepSeek-V3 markup', () => {
    const t = load(variant({ config: (c) => delete c.chat_template }));
    const tool = { type: 'function', function: { name: 'lookup_verse', parameters: { type: 'object' } } };
    const call = (name: string, args: string) => ({ id: `call_${name}`, type: 'function', function: { name, arguments: args } });
    const conversation = [
      { role: 'user', content: 'Genesis 1:3?' },
      { role: 'assistant', content: '', tool_calls: [call('lookup_verse', '{"chapter": 1}'), call('now', '{}')] },
      { role: 'tool', content: 'And God said', tool_call_id: 'call_lookup_verse' },
      { role: 'tool', content: 'noon', tool_call_id: 'call_now' },
    ];
    const text = t.applyChatTemplate(conversation, { addGenerationPrompt: true, templateKwargs: { tools: [tool] } });
    const expected =
      `${BOS}## Tools\n<tools>\n${JSON.stringify(tool).replaceAll(',', ', ').replaceAll(':', ': ')}\n</tools>\n` +
      'Call them as <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGUMENTS\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>, one call per line.' +
      '<｜User｜>Genesis 1:3?<｜Assistant｜><｜tool▁calls▁begin｜>' +
      '<｜tool▁call▁begin｜>function<｜tool▁sep｜>lookup_verse\n```json\n{"chapter": 1}\n```<｜tool▁call▁end｜>\n' +
      `<｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n\`\`\`json\n{}\n\`\`\`<｜tool▁call▁end｜><｜tool▁calls▁end｜>${EOS}` +
      '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>And God said<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>noon<｜tool▁output▁end｜><｜tool▁outputs▁end｜>';
    assert.equal(text, expected);
    // The answer after the results continues the assistant turn; a later user turn closes the results.
    const answered = [...conversation, { role: 'assistant', content: 'Let there be light.' }, { role: 'user', content: 'Thanks' }];
    assert.ok(
      t.applyChatTemplate(answered, { addGenerationPrompt: true }).endsWith(`<｜tool▁outputs▁end｜>Let there be light.${EOS}<｜User｜>Thanks<｜Assistant｜>`),
    );
  });

  it('falls back to a plain User/Assistant format without DeepSeek role tokens', () => {
    const dropRoles = (tok: Record<string, any>): void => {
      tok.added_tokens = tok.added_tokens.filter((a: { content: string }) => !a.content.includes('User') && !a.content.includes('Assistant'));
    };
    const t = load(variant({ tokenizer: dropRoles, config: (c) => delete c.chat_template }));
    assert.equal(t.applyChatTemplate(chat, { addGenerationPrompt: true }), `${BOS}Be brief.\n\nUser: Hi\nAssistant: Hello!${EOS}\nUser: 2+2?\nAssistant:`);
    assert.equal(t.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: false }), `${BOS}User: x\n`);
  });

  it('reports template errors as 400-class EngineErrors', () => {
    const isBadRequest = (pattern: RegExp) => (e: unknown) => e instanceof EngineError && e.code === 'DSV_ERR_INVALID_REQUEST' && pattern.test(e.message);
    const t = load();
    assert.throws(
      () => t.applyChatTemplate([{ role: 'function', content: 'x' }], { addGenerationPrompt: true }),
      isBadRequest(/does not support the role function/),
    );
    const broken = load(variant({ config: (c) => (c.chat_template = '{% if %}') }));
    assert.throws(() => broken.applyChatTemplate(chat, { addGenerationPrompt: true }), isBadRequest(/chat template failed/));
    const raising = load(variant({ config: (c) => (c.chat_template = "{{ raise_exception('no system prompts') }}") }));
    assert.throws(() => raising.applyChatTemplate(chat, { addGenerationPrompt: true }), isBadRequest(/no system prompts/));
  });
});
