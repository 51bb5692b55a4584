// Black-box tests of the gateway's fair queue (issue 15 items 1-3): the
// real binary in front of the model-server simulator (model-sim.mjs) with
// 4 slots, the gateway's upstream capped at the same 4. Which call the
// simulator saw start when is the order the gateway let them through.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/fair-queue.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, request, runGatehouse, tempDir, waitUntil, sleep, metricValue } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';
import { startModelSim } from './model-sim.mjs';

// accounts at least this old are "established"; younger ones are "new"
const AGE_MS = 3000;

let sim, srv;

before(async () => {
  sim = await startModelSim({ slots: 4, ttft: 40, tps: 50, tokens: 10 });
  const file = path.join(tempDir('gh-ups-'), 'upstreams.ini');
  fs.writeFileSync(
    file,
    `[upstream sim]\nmodel = sim\nbase_url = ${sim.url}/v1\nmax_concurrent = 4\npriority_field = vllm\n` +
      // two upstreams of one model (least outstanding requests), told apart by upstream_model
      `[upstream lor-a]\nmodel = lor\nbase_url = ${sim.url}/v1\nupstream_model = lor-a\n` +
      `[upstream lor-b]\nmodel = lor\nbase_url = ${sim.url}/v1\nupstream_model = lor-b\n` +
      // admission by tokens: two calls of max_tokens 1000 do not fit 1500 together
      `[upstream tok]\nmodel = tok\nbase_url = ${sim.url}/v1\nmax_tokens_in_flight = 1500\n`,
  );
  srv = await startServer({
    name: 'fair-queue',
    set: {
      ...FAST,
      'gateway.upstreams_file': file,
      'gateway.user_concurrency': '0',
      'gateway.tier_established_age': `${AGE_MS}ms`,
      'gateway.keepalive': '100ms',
    },
  });
});

after(async () => {
  await srv?.stop();
  sim?.stop();
});

/** A new account with an API key: {key, userId, created}. */
async function account() {
  const { jar, user } = await registerUser(srv, cnPhone());
  const r = await api(srv.url, 'POST', '/api/keys', { body: { name: 'fq' }, jar });
  assert.equal(r.status, 201, r.text);
  return { key: r.json.key, userId: Number(user.id), created: Date.now() };
}

/** One chat call; tag identifies it in the simulator's log. */
function chat(key, tag, { headers = {}, stream = false, model = 'sim', extra = {} } = {}) {
  return request(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: tag }], ...extra }),
    timeout: 60000,
  });
}

/** The simulator's log entries whose tag starts with prefix, in the order they started. */
async function started(prefix) {
  const log = await sim.log();
  return log.filter((e) => e.tag.startsWith(prefix) && e.started).sort((a, b) => a.seq - b.seq);
}

let users; // heavy + 5 light, established by the time the tests run

test('one heavy user does not hold back five others: they start before its 6th call', async () => {
  users = [];
  for (let i = 0; i < 6; i++) users.push(await account());
  // every account of this test in the same tier (established)
  await sleep(AGE_MS + 1500);
  const [heavy, ...light] = users;
  const calls = [];
  // answers of different lengths, so slots free one at a time (in a burst
  // of releases the simulator would see the calls in a random order)
  for (let i = 0; i < 20; i++) calls.push(chat(heavy.key, `fair heavy ${i} [tokens=${8 + 6 * i}]`));
  // "together": the others come while the heavy user's first calls still run
  await waitUntil(async () => metricValue(await srv.metrics(), 'gatehouse_chat_queue_waiting', { tier: 'established' }) >= 14, { what: 'the heavy user queued' });
  for (let i = 0; i < 5; i++) calls.push(chat(light[i].key, `fair light ${i}`));
  const res = await Promise.all(calls);
  for (const r of res) assert.equal(r.status, 200, r.text());
  const order = await started('fair ');
  assert.equal(order.length, 25);
  const heavySeqs = order.filter((e) => e.tag.startsWith('fair heavy')).map((e) => e.seq);
  const lightSeqs = order.filter((e) => e.tag.startsWith('fair light')).map((e) => e.seq);
  const sixthHeavy = heavySeqs[5];
  for (const s of lightSeqs) assert.ok(s < sixthHeavy, `a light user's call started at #${s}, after the heavy user's 6th (#${sixthHeavy}): ${order.map((e) => e.tag).join(', ')}`);
  // the simulator never had more than its 4 slots busy: the gateway held the rest
  assert.ok((await sim.stats()).max_active <= 4);
  const m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_chat_queue_dispatched_total', { tier: 'established' }) >= 16, m);
  assert.equal(metricValue(m, 'gatehouse_chat_queue_waiting', { tier: 'established' }), 0);
});

test("an established account's call starts before a new account's that arrived earlier", async () => {
  const old = users[1];
  const fresh = await account(); // younger than AGE_MS: the new tier
  const filler = users[2];
  // four long calls take every slot; of different lengths (300 ms apart), so
  // the slots free one at a time: were two to free together, the gateway's
  // order would reach the simulator in whichever order the sockets did
  const fill = [];
  for (let i = 0; i < 4; i++) fill.push(chat(filler.key, `tier fill ${i} [tokens=${100 + 15 * i}]`));
  await waitUntil(async () => (await sim.stats()).active === 4, { what: 'the slots full' });
  const pNew = chat(fresh.key, 'tier new');
  await waitUntil(async () => metricValue(await srv.metrics(), 'gatehouse_chat_queue_waiting', { tier: 'new' }) === 1, { what: 'the new account waiting' });
  const pOld = chat(old.key, 'tier old');
  const res = await Promise.all([pNew, pOld, ...fill]);
  for (const r of res) assert.equal(r.status, 200, r.text());
  const order = (await started('tier ')).map((e) => e.tag);
  assert.ok(order.indexOf('tier old') < order.indexOf('tier new'), order.join(', '));
  // priority_field = vllm: the tier reached the model server as `priority`
  const log = await sim.log();
  assert.equal(log.find((e) => e.tag === 'tier old').priority, 1);
  assert.equal(log.find((e) => e.tag === 'tier new').priority, 2);
});

test('a call whose estimated wait passes its deadline gets 503 busy at once, with Retry-After', async () => {
  const [heavy] = users;
  // the slots full for a while, and a queue ahead of the heavy user
  const calls = [];
  for (let i = 0; i < 16; i++) calls.push(chat(heavy.key, `wait long ${i} [tokens=30]`));
  await waitUntil(async () => metricValue(await srv.metrics(), 'gatehouse_chat_queue_waiting', { tier: 'established' }) >= 12, { what: 'a queue' });
  // the operator sees it in ctl top
  const top = await runGatehouse(['ctl', '--admin', `127.0.0.1:${srv.adminPort}`, '--token', srv.adminToken(), 'top']);
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, /^MODEL QUEUE +TIER +WAITING +OLDEST \(s\) +SERVED +BUSY 503$/m);
  assert.match(top.stdout, /^ +established +[1-9]\d* +\d+\.\d +[1-9]\d* +\d+$/m, top.stdout);
  assert.match(top.stdout, /^ +new +0 +0\.0 +\d+ +\d+$/m);
  const t0 = Date.now();
  const r = await chat(heavy.key, 'wait hurried', { headers: { 'x-request-timeout': '0.3' } });
  const took = Date.now() - t0;
  assert.equal(r.status, 503, r.text());
  assert.ok(took < 100 + 150, `answered after ${took} ms`); // 100 ms, with a loaded machine's margin
  const j = r.json();
  assert.equal(j.error.code, 'busy');
  assert.equal(j.error.message, 'The server is busy. Please try again later.');
  const ra = Number(r.headers['retry-after']);
  assert.ok(ra >= 1 && ra <= 30, `Retry-After ${r.headers['retry-after']}`);
  // the same through the SDK's header, streamed: still an immediate 503 (nothing started)
  const s = await chat(heavy.key, 'wait hurried stream', { headers: { 'x-stainless-timeout': '0.3' }, stream: true });
  assert.equal(s.status, 503);
  // without a hint the call waits its turn and is served
  const patient = chat(heavy.key, 'wait patient');
  const all = await Promise.all([patient, ...calls]);
  for (const x of all) assert.equal(x.status, 200, x.text());
  const m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_chat_queue_busy_total', { tier: 'established', reason: 'wait' }) >= 2, m);
});

test('a stream that waits gets its place in line and keep-alive comments, then its answer', async () => {
  const [heavy, light] = users;
  const fill = [];
  for (let i = 0; i < 4; i++) fill.push(chat(heavy.key, `ka fill ${i} [tokens=20]`));
  await waitUntil(async () => (await sim.stats()).active === 4, { what: 'the slots full' });
  const r = await chat(light.key, 'ka stream', { stream: true });
  assert.equal(r.status, 200);
  const text = r.text();
  // its place at once (queue-position.test.mjs), then keep-alives while it does not move
  assert.match(text, /^: queue position=[1-9]\d*\n\n/, text);
  assert.match(text, /^: keep-alive$/m);
  assert.match(text, /data: \[DONE\]/);
  await Promise.all(fill);
});

test("a model's upstreams by least outstanding requests: four long calls spread two and two", async () => {
  const [, light] = users;
  // each runs ~2 s: every choice sees the others still outstanding
  const calls = [];
  for (let i = 0; i < 4; i++) {
    calls.push(chat(light.key, `lor ${i} [tokens=100]`, { model: 'lor' }));
    await waitUntil(async () => (await started(`lor ${i} `)).length === 1, { what: `lor ${i} started` });
  }
  for (const r of await Promise.all(calls)) assert.equal(r.status, 200, r.text());
  const seen = (await started('lor ')).map((e) => e.model);
  assert.equal(seen.filter((m) => m === 'lor-a').length, 2, seen.join(', '));
  assert.equal(seen.filter((m) => m === 'lor-b').length, 2, seen.join(', '));
});

test('max_tokens_in_flight: a call that does not fit beside the tokens in flight waits for them', async () => {
  const [, light, other] = users;
  const extra = { max_tokens: 1000 };
  const first = chat(light.key, 'tok first [tokens=25]', { model: 'tok', extra });
  await waitUntil(async () => (await started('tok first')).length === 1, { what: 'the first call started' });
  const second = chat(other.key, 'tok second', { model: 'tok', extra });
  const small = chat(other.key, 'tok small', { model: 'tok', extra: { max_tokens: 100 } });
  for (const r of await Promise.all([first, second, small])) assert.equal(r.status, 200, r.text());
  const log = await sim.log();
  const f = log.find((e) => e.tag.startsWith('tok first'));
  const sec = log.find((e) => e.tag === 'tok second');
  assert.ok(sec.started >= f.ended, `the second started at ${sec.started}, the first ended at ${f.ended}`);
});
