// The static routes serve only public assets (issue 10): an encoded '/' in
// a path parameter ("/static/pages%2Findex.html") reached templates and
// string catalogues. A decoded '/' no longer creates path segments, and
// only web/'s top-level files and css/, js/, img/ are served as they are.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/static-public.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { rawExchange, startServer } from './lib/harness.mjs';

async function get(srv, target) {
  const res = await rawExchange(srv.port, `GET ${target} HTTP/1.1\r\nHost: gatehouse.test\r\nConnection: close\r\n\r\n`);
  assert.equal(res.responses.length, 1, `${target}: ${res.text.slice(0, 300)}`);
  return res.responses[0];
}

test('templates and catalogues are not served through encoded slashes', async (t) => {
  const srv = await startServer({ t });
  const hidden = [
    '/static/pages%2Findex.html',
    '/static/pages%2findex.html',
    '/static/i18n%2Fzh.json',
    '/static/i18n%2Fen.json',
    '/static/pages%2F_head.html',
    '/static/pages/index.html',
    '/static/%2E%2E%2Fpages%2Findex.html',
    '/static/css%2Fsite.css', // public, but not by this path
    '/js/..%2Fpages%2Findex.html',
    '/js/..%2Fi18n%2Fzh.json',
    '/css/%2e%2e%2Fi18n%2Fen.json',
  ];
  for (const target of hidden) {
    const r = await get(srv, target);
    assert.equal(r.status, 404, `${target}: ${r.text().slice(0, 200)}`);
    assert.ok(!r.text().includes('{{'), `${target}: a template leaked`);
    assert.ok(!/"[a-z_.]+":\s*"/.test(r.text()) || r.text().includes('"error"'), `${target}: a catalogue leaked`);
  }
  // what is public still is
  for (const target of ['/static/status.css', '/static/robots.txt', '/css/site.css', '/js/common.js']) {
    const r = await get(srv, target);
    assert.equal(r.status, 200, `${target}: ${r.text().slice(0, 200)}`);
  }
  await srv.stop();
});
