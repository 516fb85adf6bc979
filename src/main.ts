// Entry point: `npm start [-- flags]`. Exit codes: 0 after a clean drain, 1 on a start-up error
// (with one message naming the flag, file or key), 2 on bad usage.
import { ConfigError, HelpRequested, loadConfig } from './config.ts';
import { startServer } from './server/serve.ts';

/** Seconds past --drain-timeout after which a drain that has not finished exits the process anyway. */
const DRAIN_BACKSTOP_SECONDS = 10;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.usage}\n`);
      return;
    }
    throw err;
  }
  const server = await startServer(config);
  const onSignal = (signal: string) => {
    server.app.log.info({ signal }, 'draining');
    // The drain bounds itself (drain timeout + a 1 s grace + the worker's exit); this is the backstop.
    setTimeout(
      () => {
        server.app.log.fatal({ drain_timeout_s: config.drainTimeout }, 'drain did not finish: exiting');
        process.exit(1);
      },
      (config.drainTimeout + DRAIN_BACKSTOP_SECONDS) * 1000,
    ).unref();
    server.drainAndClose().then(
      () => process.exit(0),
      (err: unknown) => {
        server.app.log.error({ err }, 'drain failed');
        process.exit(1);
      },
    );
  };
  void server.engineFailure.then(async () => {
    await server.app.close();
    process.exit(1);
  });
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`dsv32-server: ${message}\n`);
  // Exit now: nothing started may keep a failed start-up alive (stderr to a pipe or file is synchronous).
  process.exit(err instanceof ConfigError ? 2 : 1);
});
