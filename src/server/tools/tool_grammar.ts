// The grammar that enforces tool_choice "required" or a named function: the output is exactly a
// DeepSeek tool-call block (deepseek_markup.ts) whose calls name one of the allowed functions and
// whose arguments validate against that function's parameters schema. "auto" is not constrained
// (the model may answer in text or call a tool; the parser finds the calls), "none" sends no tools.
import type { StructuralTagFormat, StructuredOutputSpec } from '../../engine/structured/grammar_spec.ts';
import { callPrefix, callSuffix, TOOL_CALLS_BEGIN, TOOL_CALLS_END, V3_CALL_SEPARATOR, type ToolCallFormat } from './deepseek_markup.ts';

export interface FunctionTool {
  readonly name: string;
  /** JSON Schema of the arguments object; absent = no arguments ({}). */
  readonly parameters: Readonly<Record<string, unknown>> | null;
}

type Tag = Extract<StructuralTagFormat, { type: 'tag' }>;

const NO_PARAMETERS = { type: 'object', properties: {}, additionalProperties: false } as const;

function callTag(format: ToolCallFormat, tool: FunctionTool): Tag {
  return {
    type: 'tag',
    begin: callPrefix(format, tool.name),
    content: { type: 'json_schema', json_schema: tool.parameters ?? NO_PARAMETERS },
    end: callSuffix(format),
  };
}

function oneOf(tags: readonly Tag[]): StructuralTagFormat {
  const [only, ...rest] = tags;
  return only !== undefined && rest.length === 0 ? only : { type: 'or', elements: [...tags] };
}

/**
 * @param tools the functions the model may call (one, for a named tool_choice)
 * @param parallel whether one message may hold several calls (parallel_tool_calls)
 */
export function toolCallGrammar(format: ToolCallFormat, tools: readonly FunctionTool[], parallel: boolean): StructuredOutputSpec {
  const tags = tools.map((t) => callTag(format, t));
  const grammar: StructuralTagFormat = parallel
    ? {
        type: 'tag',
        begin: TOOL_CALLS_BEGIN,
        content: { type: 'tags_with_separator', tags, separator: format === 'v3' ? V3_CALL_SEPARATOR : '', at_least_one: true, stop_after_first: false },
        end: TOOL_CALLS_END,
      }
    : {
        type: 'sequence',
        elements: [{ type: 'const_string', value: TOOL_CALLS_BEGIN }, oneOf(tags), { type: 'const_string', value: TOOL_CALLS_END }],
      };
  return { grammar: { kind: 'structural_tag', format: grammar }, param: 'tools' };
}
