// ESLint rule `layers/imports`: the import graph of src/ follows the table in tools/lint/layers.js.
// Relative specifiers are resolved against the importing file, so the table speaks in repo paths
// ('src/engine/onnx/'), whatever the `../` count. Checked: static imports, `export ... from`,
// dynamic `import('literal')` and `import('x').T` type queries.
//
// Options: { root, sourceDir, modules, packages } (see layers.js). A path ending in '/' names a
// directory and everything below it; any other path names one file. For an importing file the most
// specific module entry (longest matching path) applies; a file no entry matches may import anything
// in sourceDir. Nothing in sourceDir may import a project file outside it (test/, bench/, tools/).
import { builtinModules } from 'node:module';
import path from 'node:path';

const BUILTINS = new Set(builtinModules);

/** @param {string} entry a table path @param {string} rel a repo path */
const covers = (entry, rel) => (entry.endsWith('/') ? rel.startsWith(entry) : rel === entry);

/** @param {string} specifier 'fastify', '@huggingface/jinja', 'tsx/esm/api' -> the package name */
function packageName(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The most specific entry whose `files` cover rel, or null. */
function moduleOf(modules, rel) {
  let best = null;
  let bestLength = -1;
  for (const m of modules) {
    for (const f of m.files) {
      if (covers(f, rel) && f.length > bestLength) {
        best = m;
        bestLength = f.length;
      }
    }
  }
  return best;
}

/** True when the statement brings in types only (erased at run time). */
function isTypeOnly(node) {
  if (node.type === 'TSImportType') return true;
  if (node.importKind === 'type' || node.exportKind === 'type') return true;
  const specifiers = node.specifiers ?? [];
  return specifiers.length > 0 && specifiers.every((s) => s.importKind === 'type' || s.exportKind === 'type');
}

const pathEntry = { type: 'string', minLength: 1 };

/** @type {import('eslint').Rule.RuleModule} */
export default {
  meta: {
    type: 'problem',
    docs: { description: 'Imports in src/ follow the layer table (tools/lint/layers.js)' },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        required: ['root', 'sourceDir', 'modules', 'packages'],
        properties: {
          root: { type: 'string' },
          sourceDir: pathEntry,
          modules: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['files', 'mayImport', 'why'],
              properties: {
                files: { type: 'array', items: pathEntry, minItems: 1 },
                mayImport: { type: 'array', items: pathEntry },
                mayImportTypes: { type: 'array', items: pathEntry },
                why: { type: 'string' },
              },
            },
          },
          packages: {
            type: 'object',
            additionalProperties: {
              type: 'object',
              additionalProperties: false,
              required: ['owners', 'why'],
              properties: { owners: { type: 'array', items: pathEntry, minItems: 1 }, why: { type: 'string' } },
            },
          },
        },
      },
    ],
    messages: {
      outsideSource: '{{file}} imports {{target}}: code in {{sourceDir}} never imports test, bench or tool code.',
      layer: '{{file}} may not import {{target}}: {{why}}',
      package: '{{file}} may not import {{pkg}}: only {{owners}} may ({{why}}).',
    },
  },

  create(context) {
    const { root, sourceDir, modules, packages } = context.options[0];
    const file = path.relative(root, context.filename).split(path.sep).join('/');
    if (!file.startsWith(sourceDir)) return {};
    const module = moduleOf(modules, file);

    function check(node, source) {
      if (!source || source.type !== 'Literal' || typeof source.value !== 'string') return;
      const specifier = source.value;
      if (specifier.startsWith('.')) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
        if (!target.startsWith(sourceDir)) {
          context.report({ node: source, messageId: 'outsideSource', data: { file, target, sourceDir } });
          return;
        }
        if (!module || module.mayImport.some((e) => covers(e, target))) return;
        if (isTypeOnly(node) && (module.mayImportTypes ?? []).some((e) => covers(e, target))) return;
        context.report({ node: source, messageId: 'layer', data: { file, target, why: module.why } });
        return;
      }
      if (specifier.startsWith('node:') || BUILTINS.has(specifier)) return;
      const pkg = packageName(specifier);
      const owner = packages[pkg];
      if (owner && !owner.owners.some((e) => covers(e, file))) {
        context.report({ node: source, messageId: 'package', data: { file, pkg, owners: owner.owners.join(', '), why: owner.why } });
      }
    }

    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
      TSImportType: (node) => check(node, node.argument.type === 'TSLiteralType' ? node.argument.literal : node.argument),
    };
  },
};
