// The attack level of a cluster (issue 14, item 4): three nodes behind
// HAProxy (`balance source`: each client address stays on one node), and a
// spray of SMS-code requests from many /24s through HAProxy. Each node
// sees about a third of it, below the level's evidence threshold; the
// nodes add their signals up in Redis and every node computes the level
// from the cluster's sums, so all three rise, within about a second of
// each other. The SMS the cluster sends stay within one node's budget.
// The anon class's global rule is spent once across the nodes. Then Redis
// stops: each node's level follows its own signals (logged, counted), and
// the anon rule allows each node its share (mode local).
// Skipped with a message where PostgreSQL, HAProxy or redis-server is
// missing.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/level.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { request } from '../e2e/lib/harness.mjs';
import { outbox } from '../e2e/lib/accounts.mjs';
import { Cluster, missing as clusterMissing } from './lib.mjs';

const redisMissing =
  spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status !== 0 ? 'redis-server not found (apt-get install redis-server)' : '';
const missing = clusterMissing || redisMissing;
const opts = missing ? { skip: missing } : {};

const PERIOD_MS = 2000; // shield.level_interval
const PER_ROUND = 100; // sprayed /24s per round, one request each
const MIN_EVENTS = 60; // the evidence a period needs: more than any node's share of a round
const SMS_BUDGET = 6; // sms.global_hour: one node's budget, and the cluster's
const ROUNDS = 8;
const ANON_GLOBAL = 12; // anon:global per hour, for the whole cluster

let cl;

before(async () => {
  if (missing) return;
  cl = new Cluster({
    set: [
      `shield.level_interval=${PERIOD_MS}ms`,
      'shield.level_thresholds=register_rate:1:100000',
      `shield.level_min_events=${MIN_EVENTS}`,
      'shield.level_min_prefixes=8',
      `sms.global_hour=${SMS_BUDGET}`,
      `shield.rules=anon:addr:1000/1s,anon:global:${ANON_GLOBAL}/1h,register:addr:300/1m,register:prefix:1000/1m`,
    ],
  });
  await cl.up();
});

after(() => cl?.down());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function levelOf(i) {
  const r = await cl.admin(i, 'GET', '/admin/v1/level');
  return r.json?.level;
}

/** One SMS-code request from addr through HAProxy; its status (0: failed). */
async function smsCode(addr, phone) {
  const body = JSON.stringify({ phone, purpose: 'register' });
  try {
    const r = await request(`http://127.0.0.1:${cl.base}/api/auth/sms-code`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      body,
      localAddress: addr,
      timeout: 20000,
    });
    return r.status;
  } catch {
    return 0;
  }
}

test('an SMS-code spray over three nodes raises the attack level on every node together, and sends no more SMS than one node may', opts, async (t) => {
  for (let i = 1; i <= 3; i++) assert.equal(await levelOf(i), 'normal');
  const rose = [0, 0, 0];
  let spraying = true;
  const watch = (async () => {
    while (spraying || rose.includes(0)) {
      const now = Date.now();
      const lv = await Promise.all([1, 2, 3].map(levelOf));
      lv.forEach((l, k) => {
        if (l && l !== 'normal' && !rose[k]) rose[k] = now;
      });
      if (!spraying && Date.now() - Math.max(...rose) > 3 * PERIOD_MS) break;
      if (!rose.includes(0)) break;
      await sleep(100);
    }
  })();
  const statuses = {};
  let seq = 0;
  const t0 = Date.now();
  // rounds 2.7 s apart: their phase against the 2 s periods turns, so
  // some round falls mostly within one period
  for (let r = 0; r < ROUNDS && rose.includes(0); r++) {
    await sleep(Math.max(0, t0 + r * 2700 - Date.now()));
    const round = [];
    for (let k = 1; k <= PER_ROUND; k++) {
      const phone = `+86139${String(10000000 + r * 1000 + ++seq).slice(-8)}`;
      round.push(smsCode(`127.${30 + r}.${k}.1`, phone));
    }
    for (const s of await Promise.all(round)) statuses[s] = (statuses[s] ?? 0) + 1;
  }
  // give the level one more period to show on every node
  const until = Date.now() + 3 * PERIOD_MS;
  while (rose.includes(0) && Date.now() < until) await sleep(100);
  spraying = false;
  await watch;
  const sent = () => [1, 2, 3].reduce((n, i) => n + outbox(path.join(cl.dir, `node${i}`)).filter((m) => m.purpose === 'register').length, 0);
  await sleep(1500); // the outbox delivers what was acknowledged
  const smsSent = sent();
  const logs = [1, 2, 3]
    .map((i) => fs.readFileSync(path.join(cl.dir, `node${i}`, 'gatehouse.log'), 'utf8').split('\n').filter((l) => /"event":"(attack_level|level_|redis_)/.test(l)).slice(0, 6).map((l) => `node${i} ${l}`).join('\n'))
    .join('\n');
  const detail = `answers ${JSON.stringify(statuses)}, rose at ${JSON.stringify(rose.map((t) => (t ? t - t0 : null)))} ms, SMS sent ${smsSent}\n${logs}`;
  const feeds = [];
  for (let i = 1; i <= 3; i++) feeds.push(`${await cl.metric(i, 'gatehouse_shield_level_feeds_total', { source: 'cluster' })}/${await cl.metric(i, 'gatehouse_shield_level_feeds_total', { source: 'local' })}`);
  t.diagnostic(`rose at ${JSON.stringify(rose.map((x) => (x ? x - t0 : null)))} ms after the spray began; periods fed cluster/local by node: ${feeds.join(' ')}; SMS sent ${smsSent}; answers ${JSON.stringify(statuses)}`);
  assert.ok(!rose.includes(0), `every node's level rises: ${detail}`);
  const spread = Math.max(...rose) - Math.min(...rose);
  assert.ok(spread <= 2000, `the nodes rose within 2 s of each other (${spread} ms): ${detail}`);
  assert.ok(smsSent >= 1 && smsSent <= SMS_BUDGET, `the cluster sent at most one node's budget of SMS: ${detail}`);
  for (let i = 1; i <= 3; i++) assert.ok((await cl.metric(i, 'gatehouse_shield_level_feeds_total', { source: 'cluster' })) >= 1, `node ${i} fed the level from the cluster's sums`);
});

/** GET /api/policy (class anon) on node i directly; the status. */
async function anon(i) {
  const r = await request(`${cl.url(i)}/api/policy`);
  return r.status;
}

test('the anon class\'s global rule is spent once across two nodes', opts, async () => {
  const got = { 200: 0, 429: 0 };
  for (let k = 0; k < 3 * ANON_GLOBAL; k++) {
    const s = await anon(1 + (k % 2));
    got[s] = (got[s] ?? 0) + 1;
  }
  assert.equal(got[200], ANON_GLOBAL, `the cluster allowed its limit once, not once per node: ${JSON.stringify(got)}`);
  assert.equal(got[429], 2 * ANON_GLOBAL, JSON.stringify(got));
});

test('without Redis each node\'s level follows its own signals, and anon traffic its local share', opts, async () => {
  const logOf = (i) => fs.readFileSync(path.join(cl.dir, `node${i}`, 'gatehouse.log'), 'utf8');
  const before = [];
  for (let i = 1; i <= 3; i++) before[i] = { local: await cl.metric(i, 'gatehouse_shield_level_feeds_total', { source: 'local' }), log: logOf(i).length };
  const pid = Number(fs.readFileSync(path.join(cl.dir, 'redis.pid'), 'utf8').trim());
  process.kill(pid, 'SIGKILL');
  const t0 = Date.now();
  for (let i = 1; i <= 3; i++) {
    for (;;) {
      const local = await cl.metric(i, 'gatehouse_shield_level_feeds_total', { source: 'local' });
      if (local > before[i].local + 1) break; // one period may have been read before the kill
      assert.ok(Date.now() - t0 < 8 * PERIOD_MS, `node ${i} feeds its level from its own signals`);
      await sleep(100);
    }
    assert.match(logOf(i).slice(before[i].log), /"event":"redis_down"/);
    assert.match(logOf(i), /"event":"level_local"/);
    assert.equal(await cl.metric(i, 'gatehouse_redis_up'), 0);
  }
  // anon:global in mode local: a third of the limit on each node
  const share = Math.floor(ANON_GLOBAL / 3);
  const got = { 200: 0, 429: 0 };
  for (let k = 0; k < 2 * share; k++) {
    const s = await anon(3);
    got[s] = (got[s] ?? 0) + 1;
  }
  assert.equal(got[200], share, JSON.stringify(got));
  assert.ok((await cl.metric(3, 'gatehouse_redis_fallbacks_total', { mode: 'local' })) >= share);
});
