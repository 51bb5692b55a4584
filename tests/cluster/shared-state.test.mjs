// Shared state across nodes (issue 14, item 2): what an operator changes
// on one node (admin API or ctl) applies on every node within 1 s: the
// store keeps it, and the node that wrote it sends a message (PostgreSQL
// NOTIFY in the same transaction) on which the others read it again.
// Three nodes on one PostgreSQL (scripts/cluster.sh).
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/shared-state.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { api, cnPhone } from '../e2e/lib/accounts.mjs';
import { runGatehouse } from '../e2e/lib/harness.mjs';
import { Cluster, missing, timeUntil } from './lib.mjs';

const opts = missing ? { skip: missing } : {};
const cl = new Cluster({ nodes: 3 });
/** A fresh +1 number each time, so that no per-number SMS budget answers instead of the policy. */
let usSeq = Math.floor(Math.random() * 500);
const usPhone = () => `+1 415 555 ${2000 + (usSeq++ % 1000)}`;

before(async () => {
  if (!missing) await cl.up();
});
after(() => {
  if (!missing) cl.down();
});

const usCode = (i) => api(cl.url(i), 'POST', '/api/auth/sms-code', { body: { phone: usPhone(), purpose: 'register' } }).then((r) => r.status);

test('policy restricted to CN on node 1: nodes 2 and 3 refuse +1 registrations within 1 s; open again likewise', opts, async () => {
  for (const i of [2, 3]) assert.equal(await usCode(i), 202, `node ${i} before`);
  let r = await cl.admin(1, 'PUT', '/admin/v1/policy', { mode: 'restricted', allowed_regions: ['CN'] });
  assert.equal(r.status, 200, r.text);
  for (const i of [2, 3]) await timeUntil(() => usCode(i), 403, 1000);
  r = await api(cl.url(3), 'GET', '/api/policy');
  assert.equal(r.json.mode, 'restricted');
  assert.deepEqual(r.json.allowed_regions, ['CN']);
  r = await api(cl.url(2), 'POST', '/api/auth/sms-code', { body: { phone: usPhone(), purpose: 'register' } });
  assert.equal(r.json.error.code, 'registration_restricted');

  // a temporary pin set on node 2 reaches node 1 with its end
  r = await cl.admin(2, 'PUT', '/admin/v1/policy', { mode: 'closed', for_seconds: 3600 });
  assert.equal(r.status, 200, r.text);
  await timeUntil(() => api(cl.url(1), 'GET', '/api/policy').then((x) => x.json.mode), 'closed', 1000);
  r = await cl.admin(1, 'GET', '/admin/v1/policy');
  assert.ok(r.json.until, r.text);
  assert.equal(r.json.fallback.mode, 'restricted', r.text);

  // the same through `gatehouse ctl` against node 3's admin listener
  const ctl = await runGatehouse(['ctl', '--admin', `127.0.0.1:${cl.base + 23}`, '--token', cl.adminToken(3), 'policy', 'set', 'open', '--pow-bits', '0']);
  assert.equal(ctl.code, 0, ctl.stderr);
  for (const i of [1, 2]) await timeUntil(() => usCode(i), 202, 1000);
});

const doc = (i, name) => api(cl.url(i), 'GET', `/api/v2/${name}`).then((r) => r.json);

test('an incident opened on node 1 is on every node\'s status page within 1 s; updated on node 2, resolved everywhere', opts, async () => {
  let r = await cl.admin(1, 'POST', '/admin/v1/incidents', { name: 'Slow sign-in', body: 'We are looking into it.', components: ['login'], impact: 'major' });
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  assert.ok(id, r.text);
  for (const i of [2, 3]) {
    await timeUntil(() => doc(i, 'incidents/unresolved.json').then((j) => j.incidents.some((x) => x.id === id && x.name === 'Slow sign-in')), true, 1000);
  }
  r = await cl.admin(2, 'POST', `/admin/v1/incidents/${id}/updates`, { status: 'resolved', body: 'Fixed.' });
  assert.ok(r.status === 200 || r.status === 201, r.text);
  for (const i of [1, 3]) {
    await timeUntil(() => doc(i, 'incidents.json').then((j) => j.incidents.find((x) => x.id === id)?.status), 'resolved', 1000);
  }
  // the same page on every node
  const pages = await Promise.all([1, 2, 3].map((i) => doc(i, 'incidents.json')));
  const strip = (j) => JSON.stringify(j.incidents.map(({ id: x, name, status, updates }) => ({ x, name, status, n: updates?.length })));
  assert.equal(strip(pages[1]), strip(pages[0]));
  assert.equal(strip(pages[2]), strip(pages[0]));
});

test('a component override set on node 3 shows on node 1 within 1 s, and its removal too', opts, async () => {
  const api1 = (i) => doc(i, 'components.json').then((j) => j.components.find((x) => x.id === 'api' || x.name === 'API')?.status);
  assert.equal(await api1(1), 'operational');
  let r = await cl.admin(3, 'PUT', '/admin/v1/components/api', { status: 'major_outage' });
  assert.equal(r.status, 200, r.text);
  await timeUntil(() => api1(1), 'major_outage', 1000);
  await timeUntil(() => api1(2), 'major_outage', 1000);
  r = await cl.admin(3, 'DELETE', '/admin/v1/components/api');
  assert.equal(r.status, 200, r.text);
  await timeUntil(() => api1(1), 'operational', 1000);
});

/** node i's answer to a client at addr: its HTTP status, or 'closed'. */
const healthzFrom = (i, addr) =>
  api(cl.url(i), 'GET', '/healthz', { localAddress: addr, timeout: 2000 }).then(
    (r) => r.status,
    () => 'closed',
  );

test('an address blocked on node 1 is refused by node 2 within 1 s; unblocked on node 3, served again', opts, async () => {
  const addr = '127.0.0.7';
  assert.equal(await healthzFrom(2, addr), 200);
  let r = await cl.admin(1, 'POST', '/admin/v1/lists/block', { cidr: addr });
  assert.equal(r.status, 201, r.text);
  await timeUntil(() => healthzFrom(2, addr), 'closed', 1000);
  await timeUntil(() => healthzFrom(3, addr), 'closed', 1000);
  assert.equal(await healthzFrom(2, '127.0.0.1'), 200, 'others are still served');
  r = await cl.admin(2, 'GET', '/admin/v1/lists');
  assert.deepEqual(r.json.block.runtime, [`${addr}/32`]);
  r = await cl.admin(3, 'DELETE', '/admin/v1/lists/block', { cidr: `${addr}/32` });
  assert.equal(r.status, 200, r.text);
  await timeUntil(() => healthzFrom(1, addr), 200, 1000);
  await timeUntil(() => healthzFrom(2, addr), 200, 1000);
});

test('a level pinned on node 2 is in force on nodes 1 and 3 within 1 s; unpinned likewise', opts, async () => {
  const level = (i) => cl.admin(i, 'GET', '/admin/v1/level').then((r) => r.json.level);
  let r = await cl.admin(2, 'PUT', '/admin/v1/level', { level: 'under_attack', for_seconds: 600 });
  assert.equal(r.status, 200, r.text);
  for (const i of [1, 3]) await timeUntil(() => level(i), 'under_attack', 1000);
  r = await cl.admin(1, 'GET', '/admin/v1/level');
  assert.equal(r.json.pinned, true, r.text);
  r = await cl.admin(2, 'DELETE', '/admin/v1/level');
  assert.equal(r.status, 200, r.text);
  for (const i of [1, 3]) await timeUntil(() => level(i), 'normal', 1000);
});

test('a quota override set on node 1 is what node 2 counts within 1 s; removed on node 3, gone there too', opts, async () => {
  const phone = cnPhone();
  const id = await cl.register(1, phone);
  const jar = await cl.login(1, phone);
  let r = await api(cl.url(1), 'POST', '/api/keys', { jar, body: { name: 'ci' } });
  assert.equal(r.status, 201, r.text);
  const key = r.json.key;
  const allowance = (i) =>
    api(cl.url(i), 'GET', '/user/balance', { bearer: key }).then((x) => x.json?.balance_infos?.[0]?.total_balance ?? 'none');
  assert.equal(await allowance(2), 'none');
  r = await cl.admin(1, 'PUT', `/admin/v1/quotas/users/${id}`, { tpd: 1234 });
  assert.equal(r.status, 200, r.text);
  for (const i of [2, 3]) await timeUntil(() => allowance(i), '1234', 1000);
  r = await cl.admin(2, 'GET', '/admin/v1/quotas');
  assert.ok(r.json.overrides.some((o) => o.kind === 'user' && o.id === id && o.tpd === 1234), r.text);
  r = await cl.admin(3, 'DELETE', `/admin/v1/quotas/users/${id}`);
  assert.equal(r.status, 200, r.text);
  for (const i of [1, 2]) await timeUntil(() => allowance(i), 'none', 1000);
});

test("an operator's ban (block --for) on node 1 is in every node's penalty box within 1 s; lifted on node 2, gone everywhere", opts, async () => {
  const cidr = '127.0.0.8/32';
  // the box as each node holds it (a kernel set may drop the packets for every node on loopback, so look at the box)
  const banned = (i) => cl.admin(i, 'GET', '/admin/v1/bans').then((r) => r.json.bans.some((b) => b.cidr === cidr && b.reason === 'operator'));
  let r = await cl.admin(1, 'POST', '/admin/v1/lists/block', { cidr, for_seconds: 600 });
  assert.equal(r.status, 201, r.text);
  for (const i of [2, 3]) await timeUntil(() => banned(i), true, 1000);
  r = await cl.admin(2, 'GET', '/admin/v1/bans');
  const b = r.json.bans.find((x) => x.cidr === cidr);
  assert.ok(b.remaining_s > 590 && b.remaining_s <= 600, r.text);
  r = await cl.admin(2, 'DELETE', '/admin/v1/lists/block', { cidr });
  assert.equal(r.status, 200, r.text);
  for (const i of [1, 3]) await timeUntil(() => banned(i), false, 1000);
});
