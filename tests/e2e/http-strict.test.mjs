// Black-box tests of HTTP/1.1 strictness (issue 10, item 11): each request
// smuggling primitive that http-parser's lenient build accepted is sent as
// raw bytes, with a second request pipelined behind it. The answer must be
// one 400 naming the problem, the connection must close, and the pipelined
// request must NOT be answered (a front end that read the bytes another way
// would have forwarded it as a request of its own).
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/http-strict.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { rawExchange, startServer } from './lib/harness.mjs';

const NEXT = 'GET /healthz?second HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n';
const chunkedHead = (v = '1.1', host = 'Host: gatehouse.test\r\n') =>
  `POST /healthz HTTP/${v}\r\n${host}Transfer-Encoding: chunked\r\n\r\n`;

const PRIMITIVES = [
  ['obs-fold in a field', 'GET /healthz HTTP/1.1\r\nHost: gatehouse.test\r\nX-A: one\r\n two\r\n\r\n', /folding/],
  ['obs-fold with a tab', 'GET /healthz HTTP/1.1\r\nHost: gatehouse.test\r\nX-A: one\r\n\ttwo\r\n\r\n', /folding/],
  ['bare LF after the request line', 'GET /healthz HTTP/1.1\nHost: gatehouse.test\r\n\r\n', /CRLF/],
  ['bare LF after a field', 'GET /healthz HTTP/1.1\r\nHost: gatehouse.test\nX-A: b\r\n\r\n', /CRLF|header/],
  ['bare LF ending the header section', 'GET /healthz HTTP/1.1\r\nHost: gatehouse.test\r\n\n', /CRLF/],
  ['HTTP/1.1 without Host', 'GET /healthz HTTP/1.1\r\nX-A: b\r\n\r\n', /Host/],
  ['two Host fields', 'GET /healthz HTTP/1.1\r\nHost: gatehouse.test\r\nHost: evil.test\r\n\r\n', /Host/],
  ['Transfer-Encoding on HTTP/1.0', `${chunkedHead('1.0', '')}0\r\n\r\n`, /HTTP\/1\.0/],
  ['Transfer-Encoding other than chunked', 'POST /healthz HTTP/1.1\r\nHost: gatehouse.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', /Transfer-Encoding/],
  ['chunk data not followed by CRLF', `${chunkedHead()}3\r\nabcXX0\r\n\r\n`, /chunk/],
  ['chunk data followed by bare LF', `${chunkedHead()}3\r\nabc\n0\r\n\r\n`, /CRLF|chunk/],
  ['bare LF ending the trailer section', `${chunkedHead()}0\r\n\n`, /CRLF/],
];

test('each smuggling primitive: one 400, connection closed, the pipelined request unanswered', async (t) => {
  const srv = await startServer({ t });
  for (const [what, bytes, msg] of PRIMITIVES) {
    const res = await rawExchange(srv.port, bytes + NEXT);
    const ctx = `${what}: ${JSON.stringify(res.text.slice(0, 400))}`;
    assert.equal(res.closed, true, `${ctx}: connection stays open`);
    assert.equal(res.responses.length, 1, `${ctx}: want exactly one answer`);
    const r = res.responses[0];
    assert.equal(r.status, 400, ctx);
    assert.equal(r.headers.connection, 'close', ctx);
    assert.match(r.text(), msg, ctx);
    assert.ok(!/HTTP\/1\.1 200 /.test(res.text), `${ctx}: the pipelined request was answered`);
  }
  await srv.stop();
});

test('well-formed pipelined requests still get both answers', async (t) => {
  const srv = await startServer({ t });
  // the same shapes, correct: chunked with an extension and a trailer, an
  // empty line before the first request (RFC 9112 2.2), HTTP/1.0 without Host
  const cases = [
    `GET /healthz HTTP/1.1\r\nHost: gatehouse.test\r\nX-A: caf\xc3\xa9\r\n\r\n`,
    `\r\nGET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n`,
    `GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`,
  ];
  for (const first of cases) {
    const res = await rawExchange(srv.port, first + NEXT.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
    const ctx = JSON.stringify(res.text.slice(0, 400));
    assert.equal(res.responses.length, 2, ctx);
    assert.deepEqual(res.responses.map((r) => r.status), [200, 200], ctx);
  }
  // a chunked POST to a GET route: 405 after reading the body, then the next one
  const res = await rawExchange(
    srv.port,
    `${chunkedHead()}3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n` + NEXT.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'),
  );
  assert.deepEqual(res.responses.map((r) => r.status), [405, 200], JSON.stringify(res.text.slice(0, 400)));
  await srv.stop();
});
