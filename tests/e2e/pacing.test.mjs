// Existing users first under a flood of new connections (issue 11, items
// 1, 2 and 4): accepts are paced so the requests of established
// keep-alive clients go first; a request whose class's aggregate limit
// already refuses is answered 429 from its headers, its body never read;
// per-address connection caps do not refuse signed-in users behind one
// shared address (carrier-grade NAT).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { startServer, RawConn, parseResponses, metricValue, sleep, waitUntil } from './lib/harness.mjs';
import { FAST, cnPhone, registerUser } from './lib/accounts.mjs';

/** The spray's source addresses: one per connection, 127.1.0.0/16 and up. */
const sprayAddr = (i) => `127.${1 + Math.floor(i / 254 / 256)}.${Math.floor(i / 254) % 256}.${(i % 254) + 1}`;

function smsCodeRequest(i) {
  const body = JSON.stringify({ phone: `+86138${String(10000000 + i).slice(-8)}`, purpose: 'register' });
  return (
    'POST /api/auth/sms-code HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
  );
}

/** Opens n connections, each from its own address, each sending one
 * request; resolves once all are connected and written. Each socket's
 * `answered` promise resolves when its answer's first bytes arrive. */
async function openSpray(port, n, state) {
  const socks = [];
  const pending = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: sprayAddr(i) });
    s.on('error', () => {});
    let got = false;
    s.on('data', () => {
      if (!got) {
        got = true;
        state.sprayAnswered++;
      }
    });
    pending.push(
      new Promise((resolve) => {
        s.once('connect', () => s.write(smsCodeRequest(i), () => resolve()));
        s.once('error', resolve);
      }),
    );
    socks.push(s);
  }
  await Promise.all(pending);
  return socks;
}

test('pacing: a signed-in keep-alive client is answered between the new connections of a spray, not after them', async (t) => {
  const srv = await startServer({ t, workers: 1, set: { ...FAST, 'log.access_log': 'off' } });
  const { jar } = await registerUser(srv, cnPhone());
  const user = await RawConn.open(srv.port, { localAddress: '127.0.0.2' });
  const me = `GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${jar.header()}\r\n\r\n`;
  await user.write(me);
  let [r] = await user.readResponses(1);
  assert.equal(r.status, 200, 'the user is signed in');

  // The backlog of a flood, built while the server is stopped: N new
  // connections, each from its own address and with its request sent,
  // then the user's next request on its established connection.
  const N = 1500;
  const state = { sprayAnswered: 0 };
  let socks = [];
  srv.proc.kill('SIGSTOP');
  try {
    socks = await openSpray(srv.port, N, state);
    await user.write(me);
  } finally {
    srv.proc.kill('SIGCONT');
  }
  // The user asks again as soon as each answer arrives, while the server
  // works the backlog off; count its answers before the backlog is done.
  let userAnswers = 0;
  let sprayBeforeSecond = -1;
  const statuses = {};
  const deadline = Date.now() + 60000;
  while (state.sprayAnswered < N && Date.now() < deadline) {
    const got = await user.waitFor(() => parseResponses(user.buf.subarray(user.consumed)).responses.length > 0, 2000);
    if (!got) continue;
    [r] = await user.readResponses(1);
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    userAnswers++;
    if (userAnswers === 2) sprayBeforeSecond = state.sprayAnswered;
    if (state.sprayAnswered < N) await user.write(me);
  }
  await waitUntil(() => state.sprayAnswered >= N, { timeout: 30000, what: 'every spray connection answered' });
  for (const s of socks) s.destroy();
  user.sock.destroy();
  t.diagnostic(
    `user answers while ${N} new connections were worked off: ${userAnswers} ${JSON.stringify(statuses)}; ` +
      `spray answers before its second: ${sprayBeforeSecond}`,
  );
  assert.deepEqual(Object.keys(statuses), ['200'], `the user's answers by status: ${JSON.stringify(statuses)}`);
  // Accepting everything at once (libuv's default) answers the user once,
  // then reads and answers the whole backlog before its next request. Paced,
  // the user's requests go between small batches of new connections.
  assert.ok(userAnswers >= 5, `the user got ${userAnswers} answers while the backlog of ${N} was worked off (want >= 5)`);
  assert.ok(sprayBeforeSecond >= 0 && sprayBeforeSecond < N / 2,
    `${sprayBeforeSecond} new connections were answered before the user's second request (want < ${N / 2})`);
  srv.kill('SIGTERM');
  await srv.expectCleanExit();
});

test('refusal before the body: once the global limit of a class refuses, the next request is answered 429 from its headers', async (t) => {
  const srv = await startServer({
    t,
    workers: 1,
    set: { ...FAST, 'shield.rules': 'register:global:2/1m' },
  });
  // spend the class's global allowance, then meet its refusal once
  const statuses = [];
  for (let i = 0; i < 3; i++) {
    const c = await RawConn.open(srv.port, { localAddress: `127.0.3.${i + 1}` });
    await c.write(smsCodeRequest(i));
    const [r] = await c.readResponses(1);
    statuses.push(r.status);
    c.destroy();
  }
  assert.equal(statuses[2], 429, `the third sms-code request is refused: ${statuses}`);

  // headers only, from another address: the body is announced, never sent
  const body = JSON.stringify({ phone: '+8613800138000', purpose: 'register' });
  const c = await RawConn.open(srv.port, { localAddress: '127.0.4.1' });
  await c.write(
    'POST /api/auth/sms-code HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n\r\n`,
  );
  const [r] = await c.readResponses(1, { timeout: 5000 });
  assert.equal(r.status, 429, 'refused before the body arrived');
  assert.match(r.headers['retry-after'] ?? '', /^[1-9][0-9]*$/, 'with Retry-After');
  assert.equal(r.headers.connection, 'close');
  assert.equal(r.json().error.code, 'rate_limited');
  assert.ok(await c.waitClose(5000), 'the connection closes');
  c.destroy();

  const m = await srv.metrics();
  assert.equal(metricValue(m, 'gatehouse_shield_refused_before_body_total'), 1);
  assert.ok(metricValue(m, 'gatehouse_shield_limit_decisions_total', { rule: 'register:global:2/1m', result: 'refused' }) >= 2);
  srv.kill('SIGTERM');
  await srv.expectCleanExit();
});

test('shared address (carrier-grade NAT): per-address caps do not refuse signed-in users; anonymous requests past the cap are', async (t) => {
  const srv = await startServer({
    t,
    workers: 1,
    set: { ...FAST, 'limits.max_conns_per_addr': '4', 'shield.rules': 'anon:addr:3/1m' },
  });
  // users who signed in elsewhere, now behind one shared address
  const users = [];
  for (let i = 0; i < 3; i++) users.push((await registerUser(srv, cnPhone())).jar);
  const nat = '127.0.5.1';
  const conns = [];
  for (let i = 0; i < 12; i++) conns.push(await RawConn.open(srv.port, { localAddress: nat }));
  // every connection open at once, several requests each: more connections
  // and requests than the address's caps allow an anonymous client
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < conns.length; i++) {
      await conns[i].write(`GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${users[i % users.length].header()}\r\n\r\n`);
    }
    for (let i = 0; i < conns.length; i++) {
      const [r] = await conns[i].readResponses(1);
      assert.equal(r.status, 200, `signed-in request ${round}/${i} from the shared address: ${r.status} ${r.body}`);
    }
  }
  // an anonymous request on a connection past the cap: refused, and says why
  const anon = await RawConn.open(srv.port, { localAddress: nat });
  await anon.write('GET /api/policy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  const [r] = await anon.readResponses(1);
  assert.equal(r.status, 429);
  assert.equal(r.json().error.code, 'too_many_connections');
  assert.ok(await anon.waitClose(5000));
  for (const c of conns) c.destroy();
  const m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_connections_refused_total', { limit: 'per_addr' }) >= 1);
  srv.kill('SIGTERM');
  await srv.expectCleanExit();
});
