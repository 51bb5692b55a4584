// The chat API's quotas across nodes (issue 14, item 4): with [redis] url
// set, a key's rpm, tpm, tpd and concurrency are counted once for the
// cluster, in Redis, not once per node. Two nodes on one PostgreSQL and
// one Redis (scripts/cluster.sh): a key with rpm N gets N requests across
// both nodes (not 2N), a concurrency slot held on node 1 refuses on node 2,
// a daily allowance spent on node 1 answers 402 on node 2; with Redis
// stopped each node serves its local share ([redis] quota_mode = local,
// 1/nodes of each limit), and when Redis is back the quotas are shared
// again without a restart. Quota overrides set on node 1 apply on node 2.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/quota.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { api, cnPhone } from '../e2e/lib/accounts.mjs';
import { waitUntil } from '../e2e/lib/harness.mjs';
import { Cluster, missing } from './lib.mjs';

const haveRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status === 0;
const skip = missing || (haveRedis ? '' : 'redis-server not found (apt-get install redis-server, or scripts/deps.sh test)');
const opts = skip ? { skip } : {};
const cl = new Cluster({ nodes: 2 });
const hello = [{ role: 'user', content: 'hello' }];

before(async () => {
  if (!skip) await cl.up();
});
after(() => {
  if (!skip) cl.down();
});

const chat = (i, key, body = {}) => api(cl.url(i), 'POST', '/v1/chat/completions', { bearer: key, body: { model: 'echo', messages: hello, ...body } });
const redisUp = async (i) => (await cl.metric(i, 'gatehouse_redis_up')) === 1;

/** A new account (through node 1) with one API key: {userId, keyId, key}. */
async function account() {
  const phone = cnPhone();
  const userId = await cl.register(1, phone);
  const jar = await cl.login(1, phone);
  const r = await api(cl.url(1), 'POST', '/api/keys', { jar, body: { name: 'quota' } });
  assert.equal(r.status, 201, r.text);
  return { userId, keyId: r.json.id, key: r.json.key };
}

/** Sets an override on node 1 and waits until node 2 applies it too. */
async function override(kind, id, limits) {
  const r = await cl.admin(1, 'PUT', `/admin/v1/quotas/${kind}/${id}`, limits);
  assert.equal(r.status, 200, r.text);
  const want = kind === 'keys' ? 'key' : 'user';
  await waitUntil(
    async () => {
      const l = await cl.admin(2, 'GET', '/admin/v1/quotas');
      const o = l.json?.overrides?.find((x) => x.kind === want && x.id === id);
      return o && Object.entries(limits).every(([k, v]) => o[k] === v);
    },
    { timeout: 5000, what: `the ${want} override on node 2` },
  );
}

/** n chat requests alternating between the nodes: their statuses. */
async function alternate(key, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await chat(1 + (i % 2), key)).status);
  return out;
}

/** A streamed chat on node i, resolved once its head arrived (admitted). */
function openStream(i, key, words) {
  const body = JSON.stringify({ model: 'echo', stream: true, messages: [{ role: 'user', content: 'a '.repeat(words) }] });
  return new Promise((resolve, reject) => {
    const req = http.request(`${cl.url(i)}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('response', (res) => {
      const done = new Promise((r) => {
        res.on('data', () => {});
        res.on('end', r);
        res.on('error', r);
      });
      resolve({ status: res.statusCode, done });
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a key with rpm 4 gets 4 requests across two nodes, not 8', opts, async () => {
  const a = await account();
  await override('keys', a.keyId, { rpm: 4 });
  const st = await alternate(a.key, 10);
  assert.equal(st.filter((s) => s === 200).length, 4, st.join(','));
  assert.ok(st.slice(4).every((s) => s === 429), st.join(','));
  // the headers tell the cluster's numbers, on either node
  const r = await chat(2, a.key);
  assert.equal(r.status, 429);
  assert.equal(r.headers['x-ratelimit-limit-requests'], '4');
  assert.equal(r.headers['x-ratelimit-remaining-requests'], '0');
  assert.ok(Number(r.headers['retry-after']) >= 1, JSON.stringify(r.headers));
  assert.match(r.json.error.message, /requests per minute \(limit 4\)/);
});

test('a concurrency slot held on node 1 refuses on node 2, and frees when the call ends', opts, async () => {
  const a = await account();
  await override('keys', a.keyId, { concurrency: 1 });
  const long = await openStream(1, a.key, 100); // about 2 s of echo
  assert.equal(long.status, 200);
  const r = await chat(2, a.key);
  assert.equal(r.status, 429, r.text);
  assert.match(r.json.error.message, /concurrent requests for this API key \(limit 1\)/);
  await long.done;
  await waitUntil(async () => (await chat(2, a.key)).status === 200, { timeout: 5000, what: 'the slot freed on node 2' });
});

test("a user's daily tokens spent on node 1 answer 402 on node 2", opts, async () => {
  const a = await account();
  await override('users', a.userId, { tpd: 10 });
  assert.equal((await chat(1, a.key)).status, 200); // 8 tokens
  assert.equal((await chat(1, a.key)).status, 200); // 16: spent
  const r = await chat(2, a.key);
  assert.equal(r.status, 402, r.text);
  assert.equal(r.json.error.code, 'insufficient_balance');
  assert.ok(Number(r.headers['retry-after']) >= 1);
  // the balance node 2 reports is the cluster's
  const bal = await api(cl.url(2), 'GET', '/user/balance', { bearer: a.key });
  assert.equal(bal.status, 200, bal.text);
  assert.equal(bal.json.is_available, false, bal.text);
  assert.equal(bal.json.balance_infos[0].total_balance, '0');
});

test('Redis stopped: each node allows its local share; Redis back: shared again', opts, async () => {
  const a = await account();
  const b = await account();
  await override('keys', a.keyId, { rpm: 4 });
  await override('keys', b.keyId, { rpm: 4 });
  const pidFile = path.join(cl.dir, 'redis.pid');
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  const before1 = await cl.metric(1, 'gatehouse_redis_fallbacks_total', { mode: 'local' });
  process.kill(pid, 'SIGKILL');
  try {
    await waitUntil(async () => !(await redisUp(1)) && !(await redisUp(2)), { timeout: 10000, what: 'both nodes saw Redis go' });
    // rpm 4 over 2 nodes: 2 on each, still served
    const on1 = [];
    for (let i = 0; i < 4; i++) on1.push(await chat(1, a.key));
    assert.deepEqual(
      on1.map((r) => r.status),
      [200, 200, 429, 429],
    );
    assert.equal(on1[0].headers['x-ratelimit-limit-requests'], '2');
    const on2 = [];
    for (let i = 0; i < 3; i++) on2.push((await chat(2, a.key)).status);
    assert.deepEqual(on2, [200, 200, 429]);
    assert.ok((await cl.metric(1, 'gatehouse_redis_fallbacks_total', { mode: 'local' })) >= before1 + 4);
  } finally {
    const r = spawnSync(
      'redis-server',
      ['--port', String(cl.base + 2), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', path.join(cl.dir, 'redis'), '--daemonize', 'yes', '--pidfile', pidFile],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
  }
  await waitUntil(async () => (await redisUp(1)) && (await redisUp(2)), { timeout: 15000, what: 'both nodes back on Redis' });
  const st = await alternate(b.key, 8);
  assert.equal(st.filter((s) => s === 200).length, 4, st.join(','));
  const log = fs.readFileSync(path.join(cl.dir, 'node1', 'gatehouse.log'), 'utf8');
  assert.match(log, /quota_fallback/);
  assert.match(log, /quota_shared/);
});

/** redis-cli on the cluster's Redis: its output lines. */
function redisCli(...args) {
  const r = spawnSync('redis-cli', ['-p', String(cl.base + 2), ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').filter(Boolean);
}
const evalshaCalls = () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(redisCli('INFO', 'commandstats').join('\n'))?.[1] || 0);

test("a user's calls one after another on one node reuse its slot; the slot goes back after", opts, async () => {
  // the defaults: only gateway.user_concurrency (16) applies to this user
  const a = await account();
  const before = new Set(redisCli('--scan', '--pattern', 'gh:*:uc'));
  const calls0 = evalshaCalls();
  for (let i = 0; i < 10; i++) assert.equal((await chat(1, a.key)).status, 200);
  const calls = evalshaCalls() - calls0;
  // without spare slots: a take and a release per call, 20 at least; with
  // them 1, and 2 more for each pause over 50 ms between two calls (a
  // loaded machine may make a few)
  assert.ok(calls <= 10, `${calls} scripts run in Redis for 10 calls`);
  const mine = redisCli('--scan', '--pattern', 'gh:*:uc').filter((k) => !before.has(k));
  assert.equal(mine.length, 1, mine.join(' '));
  // nothing runs: within SPARE_MS (50 ms) and a turn, the slot is released
  await waitUntil(async () => Number(redisCli('ZCARD', mine[0])[0]) === 0, { timeout: 2000, what: 'the spare slot released' });
});

test('with spare slots the limit still holds exactly across nodes', opts, async () => {
  const a = await account();
  await override('users', a.userId, { concurrency: 4 });
  // a spare on node 1 (1 slot of 4 was taken: few)
  for (let i = 0; i < 3; i++) assert.equal((await chat(1, a.key)).status, 200);
  const streams = [];
  for (let i = 0; i < 6; i++) streams.push(await openStream(1 + (i % 2), a.key, 100));
  const st = streams.map((s) => s.status);
  assert.deepEqual(st, [200, 200, 200, 200, 429, 429], st.join(','));
  await Promise.all(streams.map((s) => s.done));
});
