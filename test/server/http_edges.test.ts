// What Node and fastify answer before a route runs still carries OpenAI's error shape: 431, bad
// request lines, malformed chunked bodies, 415 content types and compressed bodies.
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { assertOpenAiError, rawRequest } from '../helpers/raw_http.ts';
import { startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';

const completion = JSON.stringify({ prompt: 'Hello', max_tokens: 2 });

describe('HTTP edge cases (real socket)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(textModelDir());
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('headers over the size limit: 431 in the OpenAI shape, connection closed', async () => {
    const res = await rawRequest(server.address, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
    assertOpenAiError(res, 431, 'DSV_ERR_HEADERS_TOO_LARGE', /header/i);
    assert.equal(res.headers.connection, 'close');
  });

  test('a request line that is not HTTP: 400 in the OpenAI shape', async () => {
    assertOpenAiError(await rawRequest(server.address, 'GARBAGE\r\n\r\n'), 400, 'DSV_ERR_INVALID_REQUEST', /malformed HTTP request/);
  });

  test('a malformed chunked body: 400 in the OpenAI shape', async () => {
    const res = await rawRequest(
      server.address,
      'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n',
    );
    assertOpenAiError(res, 400, 'DSV_ERR_INVALID_REQUEST', /chunk/i);
  });

  test('an unsupported content type: 415, not 400', async () => {
    const res = await fetch(`${server.address}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<prompt/>' });
    assertOpenAiError({ status: res.status, body: await res.text() }, 415, 'DSV_ERR_UNSUPPORTED_MEDIA_TYPE', /application\/json/);
  });

  test('gzip and deflate bodies: 415 naming the encoding; identity is fine', async () => {
    for (const [encoding, body] of [
      ['gzip', zlib.gzipSync(completion)],
      ['deflate', zlib.deflateSync(completion)],
    ] as const) {
      const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: ${encoding}\r\nContent-Length: ${body.length}\r\n\r\n`;
      assertOpenAiError(
        await rawRequest(server.address, Buffer.concat([Buffer.from(head), body])),
        415,
        'DSV_ERR_UNSUPPORTED_MEDIA_TYPE',
        new RegExp(`content-encoding ${encoding}`),
      );
    }
    const ok = await fetch(`${server.address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'identity' },
      body: completion,
    });
    assert.equal(ok.status, 200);
  });
});
