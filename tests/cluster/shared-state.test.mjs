// Shared state across nodes (issue 14, item 2): what an operator changes
// on one node (admin API or ctl) applies on every node within 1 s: the
// store keeps it, and the node that wrote it sends a message (PostgreSQL
// NOTIFY in the same transaction) on which the others read it again.
// Three nodes on one PostgreSQL (scripts/cluster.sh).
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/shared-state.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { api } from '../e2e/lib/accounts.mjs';
import { Cluster, missing, timeUntil } from './lib.mjs';

const opts = missing ? { skip: missing } : {};
const cl = new Cluster({ nodes: 3 });
const US = '+1 415 555 2671';

before(async () => {
  if (!missing) await cl.up();
});
after(() => {
  if (!missing) cl.down();
});

const usCode = (i) => api(cl.url(i), 'POST', '/api/auth/sms-code', { body: { phone: US, purpose: 'register' } }).then((r) => r.status);

test('policy restricted to CN on node 1: nodes 2 and 3 refuse +1 registrations within 1 s; open again likewise', opts, async () => {
  for (const i of [2, 3]) assert.equal(await usCode(i), 202, `node ${i} before`);
  let r = await cl.admin(1, 'PUT', '/admin/v1/policy', { mode: 'restricted', allowed_regions: ['CN'] });
  assert.equal(r.status, 200, r.text);
  for (const i of [2, 3]) await timeUntil(() => usCode(i), 403, 1000);
  r = await api(cl.url(3), 'GET', '/api/policy');
  assert.equal(r.json.mode, 'restricted');
  assert.deepEqual(r.json.allowed_regions, ['CN']);
  r = await api(cl.url(2), 'POST', '/api/auth/sms-code', { body: { phone: US, purpose: 'register' } });
  assert.equal(r.json.error.code, 'registration_restricted');

  // a temporary pin set on node 2 reaches node 1 with its end
  r = await cl.admin(2, 'PUT', '/admin/v1/policy', { mode: 'closed', for_seconds: 3600 });
  assert.equal(r.status, 200, r.text);
  await timeUntil(() => api(cl.url(1), 'GET', '/api/policy').then((x) => x.json.mode), 'closed', 1000);
  r = await cl.admin(1, 'GET', '/admin/v1/policy');
  assert.ok(r.json.until, r.text);
  assert.equal(r.json.fallback.mode, 'restricted', r.text);

  r = await cl.admin(3, 'PUT', '/admin/v1/policy', { mode: 'open' });
  assert.equal(r.status, 200, r.text);
  for (const i of [1, 2]) await timeUntil(() => usCode(i), 202, 1000);
});
