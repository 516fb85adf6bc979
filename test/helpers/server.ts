// Starts the real server (engine worker + fastify on an ephemeral port) for HTTP tests.
import { loadConfig } from '../../src/config.ts';
import { startServer, type RunningServer } from '../../src/server/serve.ts';

export async function startTestServer(model: string, flags: string[] = []): Promise<RunningServer> {
  const config = loadConfig(['--model', model, '--port', '0', '--log-level', 'silent', '--block-size', '16', '--num-kv-blocks', '128', ...flags], {});
  return startServer(config);
}

/** Parses an SSE body into its data payloads (JSON objects, or the literal [DONE]). */
export function parseSse(body: string): { events: unknown[]; frames: string[] } {
  const frames = body.split('\n\n').filter((f) => f.length > 0);
  const events = frames.map((f) => {
    if (!f.startsWith('data: ')) throw new Error(`bad SSE frame: ${JSON.stringify(f)}`);
    const data = f.slice(6);
    return data === '[DONE]' ? '[DONE]' : JSON.parse(data);
  });
  return { events, frames };
}
