// The chat quotas while the cluster's Redis cannot be reached ([redis]
// quota_mode, issue 14 item 4): a node whose [redis] url points at a port
// nothing listens on serves chat by its mode: local (the default) counts
// 1/nodes of each limit in this process and says so in the headers, open
// admits without a quota, closed answers 503 busy naming Redis; each
// fallback is counted in gatehouse_redis_fallbacks_total{mode}. (Shared
// quotas with a live Redis: tests/cluster/quota.test.mjs.)
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/quota-failure.test.mjs
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';
import { freePorts, metricValue, request, startServer } from './lib/harness.mjs';

const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

/** A node with Redis unreachable in quota_mode mode, and a key with rpm 4 on it. */
async function node(mode) {
  const [dead] = await freePorts(1);
  const srv = await startServer({
    name: `quota-${mode}`,
    set: {
      ...FAST,
      'redis.url': `redis://127.0.0.1:${dead}`,
      'redis.nodes': '2',
      'redis.register_mode': 'open',
      'redis.sms_mode': 'open',
      'redis.quota_mode': mode,
    },
  });
  servers.push(srv);
  const { jar, user } = await registerUser(srv, cnPhone());
  const r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'q' } });
  assert.equal(r.status, 201, r.text);
  const a = await request(`${srv.adminUrl}/admin/v1/quotas/keys/${r.json.id}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ rpm: 4 }),
  });
  assert.equal(a.status, 200, a.text());
  return { srv, key: r.json.key, userId: user.id };
}

const chat = (srv, key) => api(srv.url, 'POST', '/v1/chat/completions', { bearer: key, body: { model: 'echo', messages: [{ role: 'user', content: 'hi' }] } });
const fallbacks = async (srv, mode) => metricValue(await srv.metrics(), 'gatehouse_redis_fallbacks_total', { mode }) ?? 0;

test('local: each node counts its share (rpm 4 over 2 nodes: 2), and says so', async () => {
  const { srv, key } = await node('local');
  const before = await fallbacks(srv, 'local');
  const rs = [];
  for (let i = 0; i < 4; i++) rs.push(await chat(srv, key));
  assert.deepEqual(
    rs.map((r) => r.status),
    [200, 200, 429, 429],
  );
  assert.equal(rs[0].headers['x-ratelimit-limit-requests'], '2');
  assert.equal(rs[1].headers['x-ratelimit-remaining-requests'], '0');
  assert.match(rs[2].json.error.message, /requests per minute \(limit 2\)/);
  assert.equal((await fallbacks(srv, 'local')) - before, 4);
});

test('open: no quota while Redis is away', async () => {
  const { srv, key } = await node('open');
  const before = await fallbacks(srv, 'open'); // registration's too (register_mode open)
  for (let i = 0; i < 6; i++) {
    const r = await chat(srv, key);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-ratelimit-limit-requests'], undefined);
  }
  assert.equal((await fallbacks(srv, 'open')) - before, 6);
});

test('closed: chat answers 503 busy naming Redis, with Retry-After', async () => {
  const { srv, key } = await node('closed');
  const before = await fallbacks(srv, 'closed');
  const r = await chat(srv, key);
  assert.equal(r.status, 503, r.text);
  assert.equal(r.json.error.code, 'busy');
  assert.match(r.json.error.message, /Redis/);
  assert.equal(r.headers['retry-after'], '5');
  assert.equal((await fallbacks(srv, 'closed')) - before, 1);
  // the rest of the API is served
  const m = await api(srv.url, 'GET', '/v1/models', { bearer: key });
  assert.equal(m.status, 200);
});
