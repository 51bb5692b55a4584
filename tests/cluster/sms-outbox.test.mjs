// SMS codes on the shared store (issue 14, item 5): on the postgres
// backend a code lives in the store, not in the memory of the node that
// issued it, so any node checks it, and its tries are counted once for the
// whole cluster. Three nodes on one PostgreSQL (scripts/cluster.sh).
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/sms-outbox.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import path from 'node:path';

import { api, cnPhone, outbox } from '../e2e/lib/accounts.mjs';
import { waitUntil } from '../e2e/lib/harness.mjs';
import { Cluster, PW, missing } from './lib.mjs';

const opts = missing ? { skip: missing } : {};
const cl = new Cluster({ nodes: 3 });

before(async () => {
  if (!missing) await cl.up();
});
after(() => {
  if (!missing) cl.down();
});

const askCode = async (i, phone, purpose) => {
  const r = await api(cl.url(i), 'POST', '/api/auth/sms-code', { body: { phone, purpose } });
  assert.equal(r.status, 202, r.text);
  return cl.codeFor(phone, purpose);
};
const other = (code) => String((Number(code) + 1) % 1000000).padStart(6, '0');
const badCode = (r) => {
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error.code, 'invalid_code', r.text);
};

test('a code requested on node 1 registers on node 2; a sign-in code from node 2 signs in on node 3, once', opts, async () => {
  const phone = cnPhone();
  const code = await askCode(1, phone, 'register');
  let r = await api(cl.url(2), 'POST', '/api/auth/register', { body: { phone, code, password: PW } });
  assert.equal(r.status, 201, r.text);
  // consumed in the store: node 3 cannot use it again
  r = await api(cl.url(3), 'POST', '/api/auth/register', { body: { phone, code, password: PW } });
  assert.notEqual(r.status, 201, r.text);

  const lcode = await askCode(2, phone, 'login');
  r = await api(cl.url(3), 'POST', '/api/auth/login', { body: { phone, code: lcode } });
  assert.equal(r.status, 200, r.text);
  r = await api(cl.url(1), 'POST', '/api/auth/login', { body: { phone, code: lcode } });
  badCode(r);

  const rcode = await askCode(3, phone, 'reset');
  r = await api(cl.url(1), 'POST', '/api/auth/password-reset', { body: { phone, code: rcode, password: 'a brand new secret' } });
  assert.equal(r.status, 200, r.text);
  r = await api(cl.url(2), 'POST', '/api/auth/login', { body: { phone, password: 'a brand new secret' } });
  assert.equal(r.status, 200, r.text);
});

test('tries are the cluster\'s: 5 wrong codes on node 2, then the right one on node 1 is refused', opts, async () => {
  const phone = cnPhone();
  const code = await askCode(1, phone, 'register');
  for (let k = 0; k < 5; k++) badCode(await api(cl.url(2), 'POST', '/api/auth/register', { body: { phone, code: other(code), password: PW } }));
  badCode(await api(cl.url(1), 'POST', '/api/auth/register', { body: { phone, code, password: PW } }));
  // the store holds keyed hashes, never the code nor the number
  assert.ok(!cl.psql('SELECT encode(key, \'hex\') || encode(code_hash, \'hex\') FROM sms_codes').includes(code));
});

test('a new code replaces the live one of the number, on every node', opts, async () => {
  const phone = cnPhone();
  const first = await askCode(1, phone, 'register');
  const r = await api(cl.url(2), 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
  assert.equal(r.status, 202, r.text);
  const second = await waitUntil(() => outbox(path.join(cl.dir, 'node2')).find((m) => m.to === phone)?.code, { what: 'the second code' });
  if (second !== first) badCode(await api(cl.url(3), 'POST', '/api/auth/register', { body: { phone, code: first, password: PW } }));
  const ok = await api(cl.url(3), 'POST', '/api/auth/register', { body: { phone, code: second, password: PW } });
  assert.equal(ok.status, 201, ok.text);
});
