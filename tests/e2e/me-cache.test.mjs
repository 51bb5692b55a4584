// GET /api/me is answered from memory for a few seconds (identity/mecache.h):
// the cached answer is the same as the store's, a sign-in on this node
// shows at once (the write drops the entry), and a signed-out session gets
// 401, never the cached account; a user who keeps polling never waits for
// the store: an entry asked for in its last quarter is read again behind
// the answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, sleep, metricValue } from './lib/harness.mjs';
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

test('/api/me polled for 9 s waits for the store once: the entry is refreshed behind its answers', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const { jar } = await registerUser(srv, cnPhone());
  const reads = async () => {
    const m = await srv.metrics();
    return Object.fromEntries(['cache', 'store', 'refresh'].map((from) => [from, metricValue(m, 'gatehouse_identity_me_reads_total', { from }) ?? 0]));
  };
  const before = await reads();
  const bodies = new Set();
  const statuses = {};
  const end = Date.now() + 9000; // past the 5 s an entry lives
  while (Date.now() < end) {
    const r = await api(srv.url, 'GET', '/api/me', { jar });
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    bodies.add(r.text);
    await sleep(200);
  }
  const after = await reads();
  const d = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
  t.diagnostic(`answers ${JSON.stringify(statuses)}; reads ${JSON.stringify(d)}`);
  assert.deepEqual(Object.keys(statuses), ['200']);
  assert.equal(bodies.size, 1, 'the same answer throughout');
  assert.equal(d.store, 1, 'only the first answer waited for the store');
  assert.ok(d.refresh >= 2, `refreshed behind cached answers: ${d.refresh}`);
  assert.equal(d.cache + d.store, statuses[200]);
});
