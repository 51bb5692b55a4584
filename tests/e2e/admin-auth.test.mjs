// The admin token is checked by the admin listener's filter, once, before
// any /admin/ handler runs; no route can forget it. The routes are
// enumerated from the router itself (GET /admin/v1/routes), so a route a
// module adds tomorrow is covered without touching this test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, startServer } from './lib/harness.mjs';

test('every /admin/ route answers 401 without the token, enumerated from the router', async (t) => {
  const srv = await startServer({ t });
  const token = srv.adminToken();
  const list = await request(`${srv.adminUrl}/admin/v1/routes`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(list.status, 200, list.text());
  const { public: pub, admin } = list.json();
  const guarded = admin.filter((r) => r.path.startsWith('/admin/'));
  // the modules' routes are all there: shield, status, identity, gateway, admin
  for (const p of ['/admin/v1/level', '/admin/v1/incidents', '/admin/v1/policy', '/admin/v1/quotas', '/admin/v1/summary', '/admin/v1/routes'])
    assert.ok(guarded.some((r) => r.path === p), `${p} listed`);
  assert.ok(guarded.length >= 20, `${guarded.length} admin routes`);
  assert.ok(!pub.some((r) => r.path.startsWith('/admin/')), 'no /admin/ route on the public listener');

  const wrong = 'x'.repeat(token.length);
  for (const r of guarded) {
    const p = r.path.replace(/\{[^}]+\}/g, '1');
    const body = ['POST', 'PUT', 'PATCH'].includes(r.method) ? '{}' : undefined;
    const headers = body ? { 'content-type': 'application/json' } : {};
    const none = await request(`${srv.adminUrl}${p}`, { method: r.method, headers, body });
    assert.equal(none.status, 401, `${r.method} ${r.path} without a token: ${none.status} ${none.text()}`);
    assert.equal(none.json().error.code, 'unauthorized');
    assert.match(none.headers['www-authenticate'], /^Bearer /);
    const bad = await request(`${srv.adminUrl}${p}`, {
      method: r.method,
      headers: { ...headers, authorization: `Bearer ${wrong}` },
      body,
    });
    assert.equal(bad.status, 401, `${r.method} ${r.path} with a wrong token: ${bad.status}`);
    assert.equal(bad.json().error.message, 'admin token is wrong');
  }
  // the probes stay open on the private listener
  assert.equal((await request(`${srv.adminUrl}/healthz`)).status, 200);
  assert.equal((await request(`${srv.adminUrl}/metrics`)).status, 200);
  await srv.stop();
});
