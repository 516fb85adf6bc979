// What a request asks its output to match: plain data that crosses the worker boundary. The
// server builds it from response_format / structured_outputs / guided_* / tool_choice; the engine
// worker compiles it with XGrammar (grammar_compiler.ts) and masks the sampler with it.

/** XGrammar's structural-tag format tree (see @mlc-ai/web-xgrammar structural_tag.d.ts). */
export type StructuralTagFormat =
  | { readonly type: 'const_string'; readonly value: string }
  | { readonly type: 'json_schema'; readonly json_schema: boolean | Readonly<Record<string, unknown>> }
  | { readonly type: 'regex'; readonly pattern: string }
  | { readonly type: 'grammar'; readonly grammar: string }
  | { readonly type: 'any_text' }
  | { readonly type: 'sequence'; readonly elements: readonly StructuralTagFormat[] }
  | { readonly type: 'or'; readonly elements: readonly StructuralTagFormat[] }
  | { readonly type: 'tag'; readonly begin: string; readonly content: StructuralTagFormat; readonly end: string }
  | {
      readonly type: 'tags_with_separator';
      readonly tags: readonly Extract<StructuralTagFormat, { type: 'tag' }>[];
      readonly separator: string;
      readonly at_least_one?: boolean;
      readonly stop_after_first?: boolean;
    };

export type GrammarSpec =
  /** Any JSON value (OpenAI's json_object: in practice an object). */
  | { readonly kind: 'json_object' }
  /** `schema` is the JSON text of a JSON Schema. */
  | { readonly kind: 'json_schema'; readonly schema: string }
  | { readonly kind: 'regex'; readonly pattern: string }
  /** Exactly one of these strings. */
  | { readonly kind: 'choice'; readonly choices: readonly string[] }
  /** XGrammar EBNF (GBNF-like), root rule `root`. */
  | { readonly kind: 'ebnf'; readonly grammar: string }
  /** Built by the server (tool calls); JSON-schema nodes are checked one by one. */
  | { readonly kind: 'structural_tag'; readonly format: StructuralTagFormat };

export interface StructuredOutputSpec {
  readonly grammar: GrammarSpec;
  /** The request field the grammar came from, named in errors ("response_format", "tools", ...). */
  readonly param: string;
}

/** Equal keys compile to the same grammar: the compile cache's key. */
export function grammarKey(spec: GrammarSpec): string {
  switch (spec.kind) {
    case 'json_object':
      return 'json_object';
    case 'json_schema':
      return `json_schema\0${spec.schema}`;
    case 'regex':
      return `regex\0${spec.pattern}`;
    case 'choice':
      return `choice\0${JSON.stringify(spec.choices)}`;
    case 'ebnf':
      return `ebnf\0${spec.grammar}`;
    case 'structural_tag':
      return `structural_tag\0${JSON.stringify(spec.format)}`;
  }
}

/** The structural-tag JSON XGrammar parses (its JSON-string form avoids its overloaded TS types). */
export function structuralTagJson(format: StructuralTagFormat): string {
  return JSON.stringify({ type: 'structural_tag', format });
}

/** Choices as a structural tag: an `or` of literal strings (no escaping to get wrong). */
export function choiceFormat(choices: readonly string[]): StructuralTagFormat {
  return { type: 'or', elements: choices.map((value) => ({ type: 'const_string', value })) };
}
