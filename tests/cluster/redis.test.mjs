// Limits shared by a cluster's nodes through Redis (issue 14, item 4): a
// throwaway redis-server on loopback and two gatehouse nodes, each on its
// own SQLite, sharing [redis] url and the hmac key. Registration's global
// rule is spent once cluster-wide (without Redis each node allows all of
// it), a proof-of-work solution used on one node is refused on the other,
// and while Redis is away the register class is refused 503 busy
// (closed) while anonymous pages are served; when it is back the nodes
// reconnect by themselves and share the limit again. Skipped with a
// message where redis-server is not installed.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/redis.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';

import { freePorts, metricValue, request, startServer, tempDir, waitUntil } from '../e2e/lib/harness.mjs';
import { FAST, api, registerUser } from '../e2e/lib/accounts.mjs';
import { solveChallenge } from '../e2e/lib/pow.mjs';

const haveRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status === 0;
const opts = haveRedis ? {} : { skip: 'redis-server not found (apt-get install redis-server, or scripts/deps.sh test)' };

const LIMIT = 8; // register:global per hour, for the whole cluster
const HMAC = crypto.randomBytes(32).toString('hex');
let redisPort, redisDir, redis, a, b, c, d, solo1, solo2;

/** Starts redis-server on redisPort (no persistence, loopback only). */
async function startRedis() {
  const p = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir], {
    stdio: 'ignore',
  });
  await waitUntil(() => ping(), { timeout: 10000, what: 'redis-server answering PING' });
  return p;
}

function ping() {
  return new Promise((resolve) => {
    const s = net.connect(redisPort, '127.0.0.1');
    s.setTimeout(500, () => (s.destroy(), resolve(false)));
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => (s.destroy(), resolve(d.toString().startsWith('+PONG'))));
  });
}

/** Sends one command to redis-server; resolves with the raw answer. */
function redisCmd(cmd) {
  return new Promise((resolve, reject) => {
    const s = net.connect(redisPort, '127.0.0.1');
    s.on('error', reject);
    s.on('connect', () => s.write(`${cmd}\r\n`));
    s.on('data', (d) => (s.destroy(), resolve(d.toString())));
  });
}

async function stopRedis() {
  if (!redis || redis.exitCode !== null) return;
  const gone = new Promise((r) => redis.once('exit', r));
  redis.kill('SIGKILL');
  await gone;
}

const settings = (extra = {}) => ({
  ...FAST,
  'secrets.hmac_key': HMAC,
  'shield.rules': `register:global:${LIMIT}/1h, anon:addr:10000/1s`,
  'shield.pow_bits': '4',
  'redis.nodes': '2',
  'sms.per_number_day': '3',
  ...extra,
});

let seq = crypto.randomInt(1e6);
const phone = () => `+86139${String(++seq % 1e8).padStart(8, '0')}`;

const solve = (srv, scope) => solveChallenge(srv.url, scope);

const smsCode = async (srv) =>
  api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: phone(), purpose: 'register', pow: await solve(srv, 'sms') } });

/** Sends n SMS-code requests alternating between the nodes; the statuses. */
async function spread(nodes, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await smsCode(nodes[i % nodes.length])).status);
  return out;
}

before(async () => {
  if (!haveRedis) return;
  redisDir = tempDir('gh-redis-');
  [redisPort] = await freePorts(1);
  redis = await startRedis();
  const set = settings({ 'redis.url': `redis://127.0.0.1:${redisPort}` });
  a = await startServer({ name: 'redis-node-a', set });
  b = await startServer({ name: 'redis-node-b', set });
  await waitUntil(async () => metricValue(await a.metrics(), 'gatehouse_redis_up') === 1 && metricValue(await b.metrics(), 'gatehouse_redis_up') === 1, {
    timeout: 10000,
    what: 'both nodes connected to Redis',
  });
});

after(async () => {
  for (const s of [a, b, c, d, solo1, solo2]) if (s) await s.stop?.();
  await stopRedis();
});

test('without [redis] two nodes each allow the whole global limit (the problem)', opts, async () => {
  solo1 = await startServer({ name: 'redis-solo-1', set: settings() });
  solo2 = await startServer({ name: 'redis-solo-2', set: settings() });
  const st = await spread([solo1, solo2], 2 * LIMIT + 2);
  assert.equal(st.filter((s) => s === 202).length, 2 * LIMIT, st.join(','));
  await solo1.stop();
  await solo2.stop();
  solo1 = solo2 = null;
});

test('a proof-of-work solution used on node A is refused on node B', opts, async () => {
  const pow = await solve(a, 'register');
  const body = { phone: phone(), code: '000000', password: 'correct horse battery', pow };
  const r1 = await api(a.url, 'POST', '/api/auth/register', { body });
  assert.equal(r1.status, 400, r1.text); // the proof passed; the code is wrong
  assert.equal(r1.json.error.code, 'invalid_code');
  const r2 = await api(b.url, 'POST', '/api/auth/register', { body });
  assert.equal(r2.status, 403, r2.text);
  assert.equal(r2.json.error.code, 'pow_required');
  assert.match(r2.json.error.message, /replayed/);
  assert.equal(metricValue(await b.metrics(), 'gatehouse_redis_pow_replayed_total'), 1);
});

test("a number's SMS budget is spent once across both nodes", opts, async () => {
  await redisCmd('FLUSHALL');
  const p = phone();
  const st = [];
  for (let i = 0; i < 6; i++) {
    const srv = [a, b][i % 2];
    const r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: p, purpose: 'register', pow: await solve(srv, 'sms') } });
    st.push(r.status);
    if (r.status === 429) assert.match(r.json.error.message, /number_day/);
  }
  assert.deepEqual(st, [202, 202, 202, 429, 429, 429]); // sms.per_number_day = 3, not 3 per node
});

test('the global registration limit is spent once across both nodes', opts, async () => {
  await redisCmd('FLUSHALL');
  const st = await spread([a, b], 2 * LIMIT);
  const ok = st.filter((s) => s === 202).length;
  assert.equal(ok, LIMIT, st.join(','));
  assert.ok(st.slice(LIMIT).every((s) => s === 429), st.join(','));
  const r = await smsCode(b);
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers['retry-after']) > 0);
});

test("an account's sign-in back-off holds on every node", opts, async () => {
  await redisCmd('FLUSHALL');
  const set = settings({ 'redis.url': `redis://127.0.0.1:${redisPort}`, 'shield.pow_bits': '0', 'identity.backoff_base': '30s' });
  const g = await startServer({ name: 'redis-node-g', set });
  const h = await startServer({ name: 'redis-node-h', set });
  try {
    for (const s of [g, h])
      await waitUntil(async () => metricValue(await s.metrics(), 'gatehouse_redis_up') === 1, { timeout: 10000, what: 'connected' });
    const p = phone();
    await registerUser(g, p, 'correct horse battery');
    const bad = await api(g.url, 'POST', '/api/auth/login', { body: { phone: p, password: 'wrong horse battery' } });
    assert.equal(bad.status, 401, bad.text);
    // the next attempt waits out the account's back-off (30 s), on g and on h
    for (const s of [g, h]) {
      const r = await api(s.url, 'POST', '/api/auth/login', { body: { phone: p, password: 'correct horse battery' } });
      assert.equal(r.status, 429, `${s.url}: ${r.text}`);
      assert.match(r.json.error.message, /failed sign-ins/);
      assert.ok(Number(r.headers['retry-after']) > 20);
    }
  } finally {
    await g.stop();
    await h.stop();
  }
});

test("the sign-in class's prefix rule is spent once across both nodes", opts, async () => {
  await redisCmd('FLUSHALL');
  const set = settings({ 'redis.url': `redis://127.0.0.1:${redisPort}`, 'shield.pow_bits': '0', 'shield.rules': 'login:prefix:4/1h' });
  const g = await startServer({ name: 'redis-node-login-1', set });
  const h = await startServer({ name: 'redis-node-login-2', set });
  try {
    for (const s of [g, h])
      await waitUntil(async () => metricValue(await s.metrics(), 'gatehouse_redis_up') === 1, { timeout: 10000, what: 'connected' });
    const st = [];
    for (let i = 0; i < 6; i++) {
      const r = await api([g, h][i % 2].url, 'POST', '/api/auth/login', { body: { phone: phone(), password: 'wrong horse battery' } });
      st.push(r.status);
    }
    assert.deepEqual(st, [401, 401, 401, 401, 429, 429]); // not 3 of 4 on each node
  } finally {
    await g.stop();
    await h.stop();
  }
});

test('Redis down: registration refused 503 (closed), pages served; back: limits shared again', opts, async () => {
  // nodes that never saw the global key refuse (A and B remember that
  // refusal for its retry time, and refuse from the headers meanwhile)
  const set = settings({ 'redis.url': `redis://127.0.0.1:${redisPort}` });
  c = await startServer({ name: 'redis-node-c', set });
  d = await startServer({ name: 'redis-node-d', set });
  for (const s of [c, d])
    await waitUntil(async () => metricValue(await s.metrics(), 'gatehouse_redis_up') === 1, { timeout: 10000, what: 'connected' });
  const [a, b] = [c, d];
  await stopRedis();
  const r = await smsCode(a);
  assert.equal(r.status, 503, r.text);
  assert.equal(r.json.error.code, 'busy');
  assert.match(r.json.error.message, /Redis/);
  assert.ok(Number(r.headers['retry-after']) > 0);
  const rb = await smsCode(b);
  assert.equal(rb.status, 503, rb.text);
  assert.equal((await api(a.url, 'GET', '/api/policy')).status, 200);
  assert.equal((await api(b.url, 'GET', '/api/policy')).status, 200);
  const m = await a.metrics();
  assert.equal(metricValue(m, 'gatehouse_redis_up'), 0);
  assert.ok(metricValue(m, 'gatehouse_redis_fallbacks_total', { mode: 'closed' }) >= 1);
  assert.ok(metricValue(m, 'gatehouse_redis_failures_total') >= 1);
  await waitUntil(
    async () => {
      const c = (await request(`${a.url}/api/v2/components.json`)).json();
      return c.components.find((x) => x.name === 'Registration' || x.id === 'registration')?.status === 'major_outage';
    },
    { what: 'the Registration component in major outage' },
  );
  await a.waitStderr(/"redis_down"/);
  assert.equal((a.stderr().match(/"redis_down"/g) || []).length, 1, 'the switch is logged once');

  redis = await startRedis(); // empty: no persistence
  for (const s of [a, b])
    await waitUntil(async () => metricValue(await s.metrics(), 'gatehouse_redis_up') === 1, { timeout: 10000, what: 'reconnected' });
  await a.waitStderr(/"redis_up"/);
  assert.equal((a.stderr().match(/"redis_up"/g) || []).length, 1, 'the recovery is logged once');
  const st = await spread([a, b], LIMIT + 4);
  assert.equal(st.filter((s) => s === 202).length, LIMIT, st.join(','));
  await waitUntil(
    async () => {
      const c = (await request(`${a.url}/api/v2/components.json`)).json();
      return c.components.find((x) => x.name === 'Registration' || x.id === 'registration')?.status === 'operational';
    },
    { what: 'the Registration component operational again' },
  );
});

test('Redis unreachable, modes local: each node allows its share (limit / nodes)', opts, async () => {
  const [dead] = await freePorts(1); // nothing listens there
  const e = await startServer({
    name: 'redis-node-local',
    set: settings({ 'redis.url': `redis://127.0.0.1:${dead}`, 'redis.register_mode': 'local', 'redis.sms_mode': 'local' }),
  });
  try {
    await e.waitStderr(/"redis_down"/);
    const st = await spread([e], LIMIT);
    assert.equal(st.filter((s) => s === 202).length, LIMIT / 2, st.join(',')); // redis.nodes = 2
    assert.ok(st.slice(LIMIT / 2).every((s) => s === 429), st.join(','));
    const m = await e.metrics();
    assert.equal(metricValue(m, 'gatehouse_redis_up'), 0);
    assert.ok(metricValue(m, 'gatehouse_redis_fallbacks_total', { mode: 'local' }) >= LIMIT);
    await waitUntil(
      async () => {
        const c = (await request(`${e.url}/api/v2/components.json`)).json();
        return c.components.find((x) => x.name === 'Registration' || x.id === 'registration')?.status === 'degraded_performance';
      },
      { what: 'the Registration component degraded' },
    );
    const login = (await request(`${e.url}/api/v2/components.json`)).json().components.find((x) => x.name === 'Login' || x.id === 'login');
    assert.equal(login?.status, 'degraded_performance');
  } finally {
    await e.stop();
  }
});
