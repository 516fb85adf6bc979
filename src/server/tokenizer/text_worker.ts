// Text worker entry: the model's tokenizer on its own thread, for the work whose cost a request
// controls: encoding long texts and rendering chat templates (a template may loop for as long as
// its input makes it). One job at a time; the HTTP thread only waits for the answer, and can
// terminate this thread when a render overruns its deadline.
import { parentPort, workerData } from 'node:worker_threads';
import { EngineError } from '../../common/errors.ts';
import { loadTokenizer, type ChatMessage, type ChatTemplateOptions } from './tokenizer.ts';

export interface TextWorkerData {
  readonly modelDir: string;
  /** Longest text accepted for encoding (the prompt character budget). */
  readonly maxChars: number;
}

export type TextJob =
  | { readonly id: number; readonly type: 'encode'; readonly text: string; readonly addSpecialTokens: boolean }
  | { readonly id: number; readonly type: 'chat'; readonly messages: readonly ChatMessage[]; readonly options: ChatTemplateOptions };

export type TextJobReply =
  | { readonly type: 'ready' }
  | { readonly id: number; readonly type: 'rendered' }
  | { readonly id: number; readonly type: 'ids'; readonly ids: Int32Array }
  | { readonly id: number; readonly type: 'error'; readonly code: EngineError['code']; readonly message: string; readonly param: string | null };

const port = parentPort!;
const data = workerData as TextWorkerData;
const tokenizer = loadTokenizer(data.modelDir);

function run(job: TextJob): number[] {
  if (!tokenizer) throw new EngineError('DSV_ERR_NO_TOKENIZER', 'this model has no tokenizer');
  if (job.type === 'encode') return tokenizer.encode(job.text, { addSpecialTokens: job.addSpecialTokens });
  const text = tokenizer.applyChatTemplate(job.messages, job.options);
  port.postMessage({ id: job.id, type: 'rendered' } satisfies TextJobReply);
  if (text.length > data.maxChars) {
    throw new EngineError(
      'DSV_ERR_CONTEXT_LENGTH',
      `the rendered chat prompt has ${text.length} characters, more than the ${data.maxChars} that can fit in max-model-len tokens`,
      { param: 'messages' },
    );
  }
  // The template already holds BOS and the turn markers.
  return tokenizer.encode(text, { addSpecialTokens: false });
}

port.on('message', (job: TextJob) => {
  let reply: TextJobReply;
  try {
    const ids = Int32Array.from(run(job));
    reply = { id: job.id, type: 'ids', ids };
    port.postMessage(reply, [ids.buffer]);
  } catch (err) {
    const e = err instanceof EngineError ? err : new EngineError('DSV_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
    reply = { id: job.id, type: 'error', code: e.code, message: e.message, param: e.param };
    port.postMessage(reply);
  }
});
port.postMessage({ type: 'ready' } satisfies TextJobReply);
