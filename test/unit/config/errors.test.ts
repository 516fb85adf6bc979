import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { helpRequested, HelpRequested, loadConfig, OPTIONS, redactConfig } from '../../../src/config.ts';
import { configErrorMessage, writeConfigFile } from './helpers.ts';
import { at } from '../../helpers/at.ts';

/** One bad value per validation class, with the message fragment it must produce. */
const INVALID: readonly { flag: string; value: string; expected: string }[] = [
  { flag: 'max-num-seqs', value: 'abc', expected: 'expected a positive integer' },
  { flag: 'max-num-seqs', value: '1.5', expected: 'expected a positive integer' },
  { flag: 'block-size', value: '-1', expected: 'expected a positive integer' },
  { flag: 'max-logprobs', value: '-1', expected: 'expected a non-negative integer' },
  { flag: 'port', value: '99999', expected: 'expected an integer 0-65535' },
  { flag: 'num-kv-blocks', value: '0', expected: 'expected a positive integer or "auto"' },
  { flag: 'kv-cache-memory', value: '12XB', expected: 'expected a positive byte size such as 4096, 512MiB, 2GiB or 1G' },
  { flag: 'max-request-body', value: '0', expected: 'expected a positive byte size such as 4096, 512MiB, 2GiB or 1G' },
  { flag: 'drain-timeout', value: '-3', expected: 'expected a non-negative number of seconds' },
  { flag: 'log-level', value: 'loud', expected: 'expected one of fatal, error, warn, info, debug, trace, silent' },
  { flag: 'quantization', value: 'fp8', expected: 'expected one of none, int8, int4' },
  { flag: 'quantized-weights-dir', value: ' ', expected: 'expected a non-empty string' },
  { flag: 'host', value: '', expected: 'expected a non-empty string' },
  { flag: 'served-model-name', value: 'a,,b', expected: 'expected one or more non-empty names, comma-separated' },
];

describe('invalid values name their source', () => {
  for (const { flag, value, expected } of INVALID) {
    it(`--${flag} ${JSON.stringify(value)}`, () => {
      const env = `DSV_${flag.toUpperCase().replace(/-/g, '_')}`;
      const got = `got ${JSON.stringify(value)}`;
      assert.equal(configErrorMessage([`--${flag}`, value]), `--${flag}: ${expected}, ${got}`);
      if (value !== '') assert.equal(configErrorMessage([], { [env]: value }), `${env}: ${expected}, ${got}`);
      const file = writeConfigFile(`invalid-${flag}.yaml`, `${flag}: ${JSON.stringify(value)}\n`);
      assert.equal(configErrorMessage(['--config', file]), `${file}: key "${flag}": ${expected}, ${got}`);
    });
  }

  it('boolean env values', () => {
    assert.equal(configErrorMessage([], { DSV_ENABLE_PREFIX_CACHING: 'maybe' }), 'DSV_ENABLE_PREFIX_CACHING: expected true, false, 1 or 0, got "maybe"');
    assert.equal(configErrorMessage(['--dense-attention=yes']), '--dense-attention: expected true, false, 1 or 0, got "yes"');
    assert.equal(configErrorMessage(['--kv-cache-dtype', 'fp16']), '--kv-cache-dtype: expected one of auto, float32, bfloat16, fp8, got "fp16"');
    assert.equal(configErrorMessage(['--no-dense-attention=1']), '--no-dense-attention: takes no value');
  });

  it('typed values in a file are shown as they were written', () => {
    const file = writeConfigFile('typed.yaml', 'blockSize: -1\n');
    assert.equal(configErrorMessage(['--config', file]), `${file}: key "blockSize": expected a positive integer, got -1`);
    const json = writeConfigFile('typed.json', '{"enablePrefixCaching": "sometimes", "threads": 2}');
    assert.equal(configErrorMessage(['--config', json]), `${json}: key "enablePrefixCaching": expected true, false, 1 or 0, got "sometimes"`);
    const list = writeConfigFile('list.yaml', 'servedModelName: [a, 3]\n');
    assert.match(configErrorMessage(['--config', list]), /key "servedModelName": expected one or more non-empty names, comma-separated, got \["a",3\]$/);
  });

  it('a flag without its value', () => {
    assert.equal(configErrorMessage(['--port']), '--port: expected a value (PORT)');
    assert.equal(configErrorMessage(['--model', '--port', '1']), '--model: expected a value (DIR)');
  });

  it('every option but plain strings rejects garbage from flags and env', () => {
    for (const spec of OPTIONS) {
      if (spec.codec.type === 'string') continue; // any non-empty text is a valid string
      const flagMessage = configErrorMessage([`--${spec.flag}=@@,`]);
      assert.ok(flagMessage.startsWith(`--${spec.flag}: expected `), flagMessage);
      const env = at(spec.env, 0, 'environment variable of --' + spec.flag);
      const envMessage = configErrorMessage([], { [env]: '@@,' });
      assert.ok(envMessage.startsWith(`${env}: expected `), envMessage);
    }
  });
});

describe('unknown flags and keys', () => {
  it('suggests the nearest flag', () => {
    assert.equal(configErrorMessage(['--max-num-seq', '3']), 'unknown flag --max-num-seq (did you mean --max-num-seqs?); see --help');
    assert.equal(configErrorMessage(['--max_num_seqs=3']), 'unknown flag --max_num_seqs (did you mean --max-num-seqs?); see --help');
    assert.equal(
      configErrorMessage(['--no-enable-prefix-cache']),
      'unknown flag --no-enable-prefix-cache (did you mean --no-enable-prefix-caching?); see --help',
    );
    assert.equal(configErrorMessage(['-port', '1']), 'unknown flag -port (did you mean --port?); see --help');
    assert.equal(configErrorMessage(['--frobnicate']), 'unknown flag --frobnicate; see --help');
  });

  it('rejects --no- on options that are not switches, and stray arguments', () => {
    assert.match(configErrorMessage(['--no-port']), /^unknown flag --no-port/);
    assert.match(configErrorMessage(['some-model']), /^unexpected argument "some-model"/);
    assert.match(configErrorMessage(['--served-model-name', 'a', 'b']), /^unexpected argument "b": .*comma-separated or repeated/);
  });

  it('suggests the nearest config key in the style it was written', () => {
    const camel = writeConfigFile('camel.yaml', 'maxNumSeq: 3\n');
    assert.equal(configErrorMessage(['--config', camel]), `${camel}: unknown key "maxNumSeq" (did you mean "maxNumSeqs"?)`);
    const kebab = writeConfigFile('kebab.yaml', 'kv-cache-mem: 1G\n');
    assert.equal(configErrorMessage(['--config', kebab]), `${kebab}: unknown key "kv-cache-mem" (did you mean "kv-cache-memory"?)`);
    const snake = writeConfigFile('snake.yaml', 'max_num_seqs: 3\n');
    assert.equal(configErrorMessage(['--config', snake]), `${snake}: unknown key "max_num_seqs" (did you mean "max-num-seqs"?)`);
    const far = writeConfigFile('far.yaml', 'colour: blue\n');
    assert.equal(configErrorMessage(['--config', far]), `${far}: unknown key "colour"`);
  });

  it('rejects a nested config file and two spellings of one key', () => {
    const nested = writeConfigFile('nested.yaml', 'config: other.yaml\n');
    assert.match(configErrorMessage(['--config', nested]), /key "config": a config file cannot name another one/);
    const twice = writeConfigFile('twice.yaml', 'maxNumSeqs: 3\nmax-num-seqs: 4\n');
    assert.equal(configErrorMessage(['--config', twice]), `${twice}: keys "maxNumSeqs" and "max-num-seqs" set the same option`);
  });
});

describe('config file problems', () => {
  it('reports a missing file, bad syntax and a non-mapping', () => {
    assert.equal(configErrorMessage(['--config', '/nonexistent/dsv.yaml']), '/nonexistent/dsv.yaml: cannot read the config file (ENOENT)');
    const badYaml = writeConfigFile('bad.yaml', 'a: 1\nb: [\napiKey: sk-in-file\n c');
    assert.match(configErrorMessage(['--config', badYaml]), /bad\.yaml: invalid YAML \(\w+\) at line \d+, column \d+$/);
    const badJson = writeConfigFile('bad.json', '{"apiKey": sk-in-file}');
    assert.equal(configErrorMessage(['--config', badJson]), `${badJson}: invalid JSON`);
    const list = writeConfigFile('list.yaml', '- 1\n- 2\n');
    assert.equal(configErrorMessage(['--config', list]), `${list}: expected a mapping of option keys to values`);
  });

  it('accepts an empty file and keys left empty', () => {
    const empty = writeConfigFile('empty.yaml', '# nothing\n');
    assert.equal(loadConfig(['--config', empty], {}).maxNumSeqs, 64);
    const blanks = writeConfigFile('blanks.yaml', 'maxNumSeqs:\nnumKvBlocks: ~\n');
    assert.equal(loadConfig(['--config', blanks], {}).maxNumSeqs, 64);
  });
});

describe('API keys never show in errors', () => {
  const KEY = 'sk-very-secret-0123';

  it('not alongside another bad value', () => {
    for (const [argv, env] of [
      [['--api-key', KEY, '--port', '99999'], {}],
      [[], { DSV_API_KEY: KEY, DSV_PORT: '99999' }],
      [['--api-key', KEY, KEY], {}],
      [['--api-key', `${KEY},`], {}],
      [['--api-key', KEY, '--port=1', `extra-${KEY}`], {}],
      [['--apikey=' + KEY], {}],
      [[], { VLLM_API_KEY: `${KEY},,x` }],
    ] as [string[], NodeJS.ProcessEnv][]) {
      const message = configErrorMessage(argv, env);
      assert.ok(!message.includes(KEY), message);
    }
  });

  it('not for a bad key in a file, nor in a file that fails to parse', () => {
    const files = [
      writeConfigFile('key-bad.yaml', `apiKey: ["${KEY}", ""]\n`),
      writeConfigFile('key-syntax.yaml', `apiKey: [${KEY}\nport: 1\n  - x`),
      writeConfigFile('key-syntax.json', `{"apiKey": ${KEY}}`),
      writeConfigFile('key-unknown.yaml', `apiKey: ${KEY}\nblockSize: nope\n`),
    ];
    for (const file of files) {
      const message = configErrorMessage(['--config', file]);
      assert.ok(!message.includes(KEY), message);
    }
  });

  it('redactConfig hides them for logging', () => {
    const config = loadConfig([], { DSV_API_KEY: `${KEY},other` });
    const redacted = JSON.stringify(redactConfig(config));
    assert.ok(!redacted.includes(KEY) && !redacted.includes('other'), redacted);
    assert.deepEqual(redactConfig(config).apiKey, ['<redacted>', '<redacted>']);
    assert.equal(redactConfig(loadConfig([], {})).apiKey, null);
  });

  it('the empty-key error names the source only', () => {
    assert.equal(configErrorMessage(['--api-key', ',']), '--api-key: expected one or more non-empty keys, comma-separated');
  });
});

describe('--help', () => {
  it('throws HelpRequested with the usage text, ahead of other errors', () => {
    for (const argv of [['--help'], ['-h'], ['--bogus', '--help']]) {
      assert.throws(
        () => loadConfig(argv, { DSV_PORT: 'x' }),
        (err) => err instanceof HelpRequested && err.usage.startsWith('Usage:'),
      );
    }
    assert.throws(() => loadConfig(['--', '--help'], {}), /unexpected argument/);
    assert.equal(helpRequested(['--port', '1', '-h']), true);
    assert.equal(helpRequested(['--port', '1']), false);
  });
});
