// One static-file stack (issue 12, item 3): the site's pages (/login) and
// the status page (/status), and the assets each serves (/css/, /js/ and
// /static/), answer with the same security headers, pick the language the
// same way (?lang=, then the gh_lang cookie, then Accept-Language), and
// revalidate assets by ETag alike.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/assets.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { request, startServer } from './lib/harness.mjs';

const SECURITY = ['content-security-policy', 'cross-origin-opener-policy', 'x-content-type-options', 'x-frame-options', 'referrer-policy'];
const PAGES = ['/login', '/status'];
const ASSETS = ['/css/site.css', '/js/common.js', '/static/status.css', '/static/status.js', '/favicon.ico'];

test('pages and assets of both stacks carry the same security headers', async (t) => {
  const srv = await startServer({ t });
  const ref = await request(`${srv.url}/login`);
  assert.equal(ref.status, 200);
  for (const h of SECURITY) assert.ok(ref.headers[h], `/login lacks ${h}`);
  assert.match(ref.headers['content-security-policy'], /default-src 'none'/);
  assert.equal(ref.headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(ref.headers['x-content-type-options'], 'nosniff');
  // the status page used to lack Cross-Origin-Opener-Policy
  const st = await request(`${srv.url}/status`);
  assert.equal(st.headers['cross-origin-opener-policy'], 'same-origin', '/status: COOP');
  for (const target of [...PAGES, ...ASSETS]) {
    const r = await request(`${srv.url}${target}`);
    assert.equal(r.status, 200, target);
    for (const h of SECURITY) assert.equal(r.headers[h], ref.headers[h], `${target}: ${h}`);
  }
  await srv.stop();
});

test('Cookie: gh_lang=zh gives Chinese on /login and /status alike', async (t) => {
  const srv = await startServer({ t });
  for (const p of PAGES) {
    const zh = await request(`${srv.url}${p}`, { headers: { cookie: 'gh_lang=zh', 'accept-language': 'en' } });
    assert.equal(zh.status, 200, p);
    assert.ok(/<html lang="zh[^"]*">/.test(zh.text()), `${p} with gh_lang=zh`);
    assert.match(zh.headers.vary ?? '', /Cookie/i, `${p}: Vary names Cookie`);
    const en = await request(`${srv.url}${p}`, { headers: { cookie: 'gh_lang=en', 'accept-language': 'zh-CN' } });
    assert.ok(/<html lang="en">/.test(en.text()), `${p}: the cookie wins over Accept-Language`);
    const q = await request(`${srv.url}${p}?lang=en`, { headers: { cookie: 'gh_lang=zh' } });
    assert.ok(/<html lang="en">/.test(q.text()), `${p}: ?lang= wins over the cookie`);
    assert.match(q.headers['set-cookie']?.join(';') ?? '', /gh_lang=en/, `${p}: ?lang= is remembered`);
    const al = await request(`${srv.url}${p}`, { headers: { 'accept-language': 'zh-CN,zh;q=0.9' } });
    assert.ok(/<html lang="zh[^"]*">/.test(al.text()), `${p}: Accept-Language without a cookie`);
  }
  // the status page's own Chinese text, not only the lang attribute
  const st = await request(`${srv.url}/status`, { headers: { cookie: 'gh_lang=zh' } });
  assert.ok(/所有系统运行正常/.test(st.text()), 'the Chinese status text');
  await srv.stop();
});

test('assets of both stacks revalidate by ETag; unknown ones are 404', async (t) => {
  const srv = await startServer({ t });
  for (const a of ASSETS) {
    const r = await request(`${srv.url}${a}`);
    assert.equal(r.status, 200, a);
    assert.match(r.headers.etag ?? '', /^"[0-9a-f]{16}"$/, `${a}: ETag`);
    const again = await request(`${srv.url}${a}`, { headers: { 'if-none-match': r.headers.etag } });
    assert.equal(again.status, 304, `${a}: If-None-Match`);
    assert.equal(again.headers.etag, r.headers.etag, a);
    const other = await request(`${srv.url}${a}`, { headers: { 'if-none-match': '"0000000000000000"' } });
    assert.equal(other.status, 200, `${a}: another ETag`);
  }
  // the same file has the same ETag whichever stack serves it
  const a = await request(`${srv.url}/favicon.ico`);
  const b = await request(`${srv.url}/static/favicon.ico`);
  assert.equal(b.status, 200);
  assert.equal(a.headers.etag, b.headers.etag);
  assert.equal(a.headers['content-type'], b.headers['content-type']);
  for (const missing of ['/css/nope.css', '/js/nope.js', '/img/nope.png', '/static/nope.css', '/static/status.css.bak']) {
    const r = await request(`${srv.url}${missing}`);
    assert.equal(r.status, 404, missing);
    assert.ok(r.text().includes('no such file'), `${missing}: ${r.text().slice(0, 200)}`);
  }
  await srv.stop();
});
