// Sessions and keys across nodes (issue 14, item 3): what ends a
// credential on one node (logout, key revocation, password reset, an
// operator's disable, account deletion) ends it on every other node within
// 1 s (PostgreSQL LISTEN/NOTIFY), and within [store] cache_ttl where no
// message arrives. Three nodes on one PostgreSQL (scripts/cluster.sh):
// node 2 trusts its cache for an hour, so only a message can explain a
// 401 there; node 3 hears no messages (store.listen=false) and re-reads
// its cached credentials after 2 s.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/invalidation.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { Jar, api, cnPhone } from '../e2e/lib/accounts.mjs';
import { waitUntil } from '../e2e/lib/harness.mjs';
import { Cluster, missing, timeUntil } from './lib.mjs';

const opts = missing ? { skip: missing } : {};
const TTL_MS = 2000;
const cl = new Cluster({
  nodes: 3,
  perNode: { 2: ['store.cache_ttl=1h'], 3: ['store.listen=false', `store.cache_ttl=${TTL_MS}ms`] },
});

before(async () => {
  if (!missing) await cl.up();
});
after(() => {
  if (!missing) cl.down();
});

const me = (i, jar) => api(cl.url(i), 'GET', '/api/me', { jar }).then((r) => r.status);
const usage = (i, key) => api(cl.url(i), 'GET', '/api/usage', { bearer: key }).then((r) => r.status);

/** A new account signed in through node 1, its session and a key in use on nodes 2 and 3. */
async function account() {
  const phone = cnPhone();
  const id = await cl.register(1, phone);
  const jar = await cl.login(1, phone);
  const r = await api(cl.url(1), 'POST', '/api/keys', { jar, body: { name: 'ci' } });
  assert.equal(r.status, 201, r.text);
  for (const i of [2, 3]) {
    assert.equal(await me(i, jar), 200, `the session on node ${i}`);
    assert.equal(await usage(i, r.json.key), 200, `the key on node ${i}`);
  }
  return { phone, id, jar, key: r.json.key, keyId: r.json.id };
}

/** A copy of jar's cookies: what a client (or a thief) still holds after a logout cleared them. */
function keep(jar) {
  const copy = new Jar();
  copy.c = { ...jar.c };
  return copy;
}

test('logout on node 1: the session answers 401 on node 2 within 1 s, on node 3 within its TTL', opts, async (t) => {
  const a = await account();
  const held = keep(a.jar);
  const r = await api(cl.url(1), 'POST', '/api/auth/logout', { jar: a.jar });
  assert.equal(r.status, 204);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => me(2, held), 401, 1000)} ms`);
  t.diagnostic(`node 3 (no listener, TTL ${TTL_MS} ms): 401 after ${await timeUntil(() => me(3, held), 401, TTL_MS + 1500)} ms`);
  assert.equal(await me(1, held), 401);
  // the key lives on
  for (const i of [1, 2, 3]) assert.equal(await usage(i, a.key), 200);
});

test('a key revoked on node 1 answers 401 on node 2 within 1 s, on node 3 within its TTL', opts, async (t) => {
  const a = await account();
  const r = await api(cl.url(1), 'DELETE', `/api/keys/${a.keyId}`, { jar: a.jar });
  assert.equal(r.status, 204, r.text);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => usage(2, a.key), 401, 1000)} ms`);
  t.diagnostic(`node 3 (no listener, TTL ${TTL_MS} ms): 401 after ${await timeUntil(() => usage(3, a.key), 401, TTL_MS + 1500)} ms`);
  // the session lives on
  for (const i of [1, 2, 3]) assert.equal(await me(i, a.jar), 200);
});

test('a password reset on node 1 ends the sessions on node 2 within 1 s', opts, async (t) => {
  const a = await account();
  let r = await api(cl.url(1), 'POST', '/api/auth/sms-code', { body: { phone: a.phone, purpose: 'reset' } });
  assert.equal(r.status, 202, r.text);
  const code = await cl.codeFor(a.phone, 'reset');
  r = await api(cl.url(1), 'POST', '/api/auth/password-reset', { body: { phone: a.phone, code, password: 'a brand new secret' } });
  assert.equal(r.status, 200, r.text);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => me(2, a.jar), 401, 1000)} ms`);
  t.diagnostic(`node 3 (no listener, TTL ${TTL_MS} ms): 401 after ${await timeUntil(() => me(3, a.jar), 401, TTL_MS + 1500)} ms`);
});

test("an operator's disable on node 1 ends the session and the key on node 2 within 1 s", opts, async (t) => {
  const a = await account();
  const r = await cl.admin(1, 'POST', `/admin/v1/users/${a.id}/disable`);
  assert.equal(r.status, 200, r.text);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => me(2, a.jar), 401, 1000)} ms`);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => usage(2, a.key), 401, 1000)} ms`);
  t.diagnostic(`node 3 (no listener, TTL ${TTL_MS} ms): 401 after ${await timeUntil(() => usage(3, a.key), 401, TTL_MS + 1500)} ms`);
});

test('an account deleted on node 1: its session and key answer 401 on node 2 within 1 s', opts, async (t) => {
  const a = await account();
  const held = keep(a.jar);
  const r = await api(cl.url(1), 'DELETE', '/api/me', { jar: a.jar });
  assert.equal(r.status, 204, r.text);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => me(2, held), 401, 1000)} ms`);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => usage(2, a.key), 401, 1000)} ms`);
  t.diagnostic(`node 3 (no listener, TTL ${TTL_MS} ms): 401 after ${await timeUntil(() => me(3, held), 401, TTL_MS + 1500)} ms`);
  t.diagnostic(`node 3 (no listener, TTL ${TTL_MS} ms): 401 after ${await timeUntil(() => usage(3, a.key), 401, TTL_MS + 1500)} ms`);
  assert.equal(cl.psql(`SELECT count(*) FROM users WHERE id = ${a.id}`).trim(), '0');
});

test('messages are counted; a listener killed on the server reconnects and hears again', opts, async (t) => {
  assert.ok((await cl.metric(2, 'gatehouse_store_messages_received_total')) >= 4, 'node 2 heard the messages');
  assert.ok((await cl.metric(2, 'gatehouse_identity_credential_messages_total')) >= 4);
  assert.equal(await cl.metric(2, 'gatehouse_store_listener_up'), 1);
  assert.equal(await cl.metric(3, 'gatehouse_store_messages_received_total'), 0, 'node 3 does not listen');
  assert.ok((await cl.metric(1, 'gatehouse_store_messages_sent_total')) >= 4);
  const before = await cl.metric(2, 'gatehouse_store_listener_reconnects_total');
  const killed = cl.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'gatehouse-listener'").trim();
  assert.equal(killed, '2', 'the listeners of nodes 1 and 2');
  await waitUntil(async () => (await cl.metric(2, 'gatehouse_store_listener_reconnects_total')) > before, { timeout: 8000, what: 'node 2 listening again' });
  assert.equal(await cl.metric(2, 'gatehouse_store_listener_up'), 1);
  const a = await account();
  const r = await api(cl.url(1), 'DELETE', `/api/keys/${a.keyId}`, { jar: a.jar });
  assert.equal(r.status, 204, r.text);
  t.diagnostic(`node 2: 401 after ${await timeUntil(() => usage(2, a.key), 401, 1000)} ms`);
});
