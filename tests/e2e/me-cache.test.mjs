// GET /api/me is answered from memory for a few seconds (identity/mecache.h):
// the cached answer is the same as the store's, a sign-in on this node
// shows at once (the write drops the entry), and a signed-out session gets
// 401, never the cached account.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, sleep } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, registerUser } from './lib/accounts.mjs';

test('/api/me from memory: same answer, a new sign-in shows at once, sign-out is 401', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const phone = cnPhone();
  const { jar } = await registerUser(srv, phone);
  const first = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(first.status, 200, first.text);
  assert.equal(first.headers['cache-control'], 'no-store');
  const again = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(again.status, 200);
  assert.equal(again.text, first.text, 'the cached answer is the stored one, byte for byte');
  assert.equal(again.headers['cache-control'], 'no-store');
  assert.equal(again.headers['content-type'], first.headers['content-type']);

  // last_login_at has a resolution of a second: sign in again a second
  // later, from another client; the first session's next read shows it
  // (the entry cached a moment ago lives 5 s otherwise)
  const t1 = Date.parse(first.json.user.last_login_at);
  await sleep(1100);
  const other = new Jar();
  const login = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'correct horse battery' }, jar: other });
  assert.equal(login.status, 200, login.text);
  const after = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(after.status, 200);
  assert.ok(Date.parse(after.json.user.last_login_at) > t1, `last_login_at moved on: ${first.json.user.last_login_at} -> ${after.json.user.last_login_at}`);

  const out = await api(srv.url, 'POST', '/api/auth/logout', { jar: other });
  assert.ok(out.status === 204 || out.status === 200, out.text);
  const gone = await api(srv.url, 'GET', '/api/me', { jar: other });
  assert.equal(gone.status, 401, 'a signed-out session is not answered from the cache');
  const still = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(still.status, 200);
});
