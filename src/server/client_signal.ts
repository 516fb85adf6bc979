// Notices a client that goes away from the moment its request arrives (an onRequest hook, before
// the body is read, tokenized or admitted), so a reset during any later await still aborts the
// work done for it. The signal aborts when the connection closes before the response finished.
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { assert } from '../common/errors.ts';

const controllers = new WeakMap<FastifyRequest, AbortController>();

/** Route-level onRequest hook of every route that starts engine work. */
export const watchClient: onRequestHookHandler = (request: FastifyRequest, reply: FastifyReply, done) => {
  const controller = new AbortController();
  controllers.set(request, controller);
  const res = reply.raw;
  if (res.destroyed) controller.abort();
  else res.once('close', () => res.writableFinished || controller.abort());
  done();
};

/** Aborts once the client is gone. The route must have registered watchClient. */
export function clientSignal(request: FastifyRequest): AbortSignal {
  const controller = controllers.get(request);
  assert(controller, `${request.url} does not register the watchClient hook`);
  return controller.signal;
}
