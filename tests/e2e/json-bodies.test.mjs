// Every handler reads its JSON body through one reader with one strictness:
// a repeated key is refused (400 invalid_json naming it), whichever module
// the route belongs to. A repeated key is how a filter in front and the code
// behind it are made to read different values; before the shared reader the
// shield, status and quota routes took the last value silently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, startServer } from './lib/harness.mjs';

async function send(base, method, p, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  return request(`${base}${p}`, { method, headers, body });
}

test('a repeated JSON key is refused by every module, naming the key', async (t) => {
  const srv = await startServer({ t });
  const token = srv.adminToken();
  const cases = [
    [srv.url, 'POST', '/api/auth/register', '{"phone":"+8613800138000","phone":"+15551234567"}', null, 'phone'],
    [srv.adminUrl, 'PUT', '/admin/v1/level', '{"level":"calm","level":"attack"}', token, 'level'],
    [srv.adminUrl, 'POST', '/admin/v1/incidents', '{"name":"a","name":"b","body":"c"}', token, 'name'],
    [srv.adminUrl, 'PUT', '/admin/v1/quotas/user/1', '{"rpm":1,"rpm":1000}', token, 'rpm'],
  ];
  for (const [base, method, p, body, tok, key] of cases) {
    const r = await send(base, method, p, body, tok);
    assert.equal(r.status, 400, `${method} ${p}: ${r.status} ${r.text()}`);
    const e = r.json().error;
    assert.equal(e.code, 'invalid_json', `${method} ${p}`);
    assert.match(e.message, /duplicate/i, `${method} ${p}: ${e.message}`);
    assert.ok(e.message.includes(`"${key}"`), `${method} ${p}: ${e.message} names the key`);
  }
  // and a body that is not an object reads the same everywhere
  for (const [base, method, p, , tok] of cases) {
    const r = await send(base, method, p, '[1]', tok);
    assert.equal(r.status, 400, `${method} ${p} []`);
    assert.equal(r.json().error.message, 'body: expected a JSON object', `${method} ${p}`);
  }
  await srv.stop();
});
