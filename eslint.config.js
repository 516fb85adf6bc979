// ESLint: the layer boundaries of src/ (tools/lint/layers.js) and a short list of rules that catch
// real bugs. No stylistic rules: formatting is Prettier's (npm run format), the rest is tsc's.
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';
import importLayers from './tools/lint/import_layers.js';
import { ENV_READERS, LAYERS } from './tools/lint/layers.js';

/** Bugs a parser can see: conditions that cannot vary, comparisons that cannot hold, dead code. */
const SYNTAX_RULES = {
  'no-async-promise-executor': 'error',
  'no-compare-neg-zero': 'error',
  'no-cond-assign': 'error',
  'no-constant-binary-expression': 'error',
  'no-constant-condition': 'error',
  'no-debugger': 'error',
  'no-dupe-else-if': 'error',
  'no-duplicate-case': 'error',
  'no-self-assign': 'error',
  'no-self-compare': 'error',
  'no-sparse-arrays': 'error',
  'no-unmodified-loop-condition': 'error',
  'no-unreachable': 'error',
  'no-unreachable-loop': 'error',
  'no-unsafe-finally': 'error',
  'no-unsafe-optional-chaining': 'error',
  'no-unused-private-class-members': 'error',
  'use-isnan': 'error',
};

/** Bugs that need types: lost promises (an await forgotten, a test that cannot fail), non-Error throws. */
const TYPED_RULES = {
  '@typescript-eslint/await-thenable': 'error',
  // node:test's test() and describe() return promises the runner itself awaits.
  '@typescript-eslint/no-floating-promises': [
    'error',
    { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
  ],
  '@typescript-eslint/no-misused-promises': 'error',
  '@typescript-eslint/only-throw-error': 'error',
  '@typescript-eslint/prefer-promise-reject-errors': 'error',
  '@typescript-eslint/require-array-sort-compare': ['error', { ignoreStringArrays: true }],
  '@typescript-eslint/return-await': ['error', 'in-try-catch'],
  '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
};

export default defineConfig([
  globalIgnores(['**/node_modules/', 'dist/', 'tmp/', 'models/', 'bench/models/', 'bench/results/', 'bench/peer/']),
  {
    files: ['**/*.{js,mjs,ts}'],
    languageOptions: { parser: tseslint.parser, sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: SYNTAX_RULES,
  },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: TYPED_RULES,
  },
  {
    files: ['src/**/*.ts'],
    plugins: { layers: { rules: { imports: importLayers } } },
    rules: {
      'layers/imports': ['error', { root: import.meta.dirname, ...LAYERS }],
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: `Only ${ENV_READERS.join(' and ')} read the environment; pass values in as options.` },
      ],
    },
  },
  {
    files: ENV_READERS,
    rules: { 'no-restricted-properties': 'off' },
  },
]);
