// Black-box tests of account abuse by someone who read the code (issue 10,
// accounts): one account filling the credential cache, code answers that
// tell registered numbers apart, back-off vouched by the attacker's own
// account, SMS budgets spent on a victim's behalf, and a deleted account's
// session under load.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, sleep, metricValue } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, getCode, outbox, registerUser } from './lib/accounts.mjs';

const PW = 'correct horse battery';
const WRONG = 'wrong horse battery!';

/** n logins of phone with PW, `par` at a time; returns the statuses. */
async function flood(srv, phone, n, par, localAddress) {
  const statuses = [];
  let next = 0;
  async function worker() {
    while (next < n) {
      next++;
      const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, localAddress });
      statuses.push(r.status);
    }
  }
  await Promise.all(Array.from({ length: par }, worker));
  return statuses;
}

async function login(srv, phone, password, localAddress) {
  const jar = new Jar();
  const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password }, jar, localAddress });
  return { r, jar };
}

const count = (xs, v) => xs.filter((x) => x === v).length;

/** The smallest credential cache (3,072 slots), no address rules, no
 * per-account sign-in rate: one account can sign in thousands of times. */
const FLOODABLE = { ...FAST, 'identity.cache_max': '64', 'shield.rules': '', 'identity.logins_per_user_hour': '100000' };

test('one account signing in thousands of times keeps 50 sessions and locks nobody out', async (t) => {
  const srv = await startServer({ t, set: FLOODABLE });
  const attacker = cnPhone();
  const victim = cnPhone();
  await registerUser(srv, attacker, PW, { localAddress: '127.0.0.2' });
  const v = await registerUser(srv, victim, PW, { localAddress: '127.0.0.3' });
  const first = await login(srv, attacker, PW, '127.0.0.2');
  assert.equal(first.r.status, 200);
  // the cache holds 3,072 credentials: 3,500 sign-ins used to fill it
  const st = await flood(srv, attacker, 3500, 16, '127.0.0.2');
  assert.equal(count(st, 200), 3500, `statuses: ${[...new Set(st)]}`);
  const last = await login(srv, attacker, PW, '127.0.0.2');
  assert.equal(last.r.status, 200);
  // another user signs in, and their earlier session still works
  for (let i = 0; i < 10; i++) assert.equal((await login(srv, victim, PW, '127.0.0.3')).r.status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: v.jar })).status, 200);
  // the capped account's oldest sessions are gone, its newest work
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: first.jar })).status, 401);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: last.jar })).status, 200);
  const m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_identity_credentials_cached') <= 50 + 50 + 20, 'sessions capped in the cache');
  await srv.stop();
});

test('a full credential cache evicts the least recently used; a miss is found in the store', async (t) => {
  const srv = await startServer({ t, set: { ...FLOODABLE, 'identity.sessions_per_user': '10000' } });
  const attacker = cnPhone();
  const victim = cnPhone();
  await registerUser(srv, attacker, PW, { localAddress: '127.0.0.4' });
  const v = await registerUser(srv, victim, PW, { localAddress: '127.0.0.5' });
  let r = await api(srv.url, 'POST', '/api/keys', { jar: v.jar, body: { name: 'script' } });
  assert.equal(r.status, 201);
  const key = r.json.key;
  const oldest = await login(srv, attacker, PW, '127.0.0.4');
  // 4,500 sessions of one account for 3,072 slots: the cache evicts
  const st = await flood(srv, attacker, 4500, 16, '127.0.0.4');
  assert.equal(count(st, 200), 4500, `statuses: ${[...new Set(st)]}`);
  const m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_identity_credential_evictions_total') > 0, 'the cache evicted');
  assert.ok(metricValue(m, 'gatehouse_identity_credentials_cached') <= 3072);
  // nobody is refused: a correct login, the victim's untouched session and
  // key, and the attacker's oldest session (evicted, still in the store)
  for (let i = 0; i < 10; i++) assert.equal((await login(srv, victim, PW, '127.0.0.5')).r.status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: v.jar })).status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key })).status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: oldest.jar })).status, 200);
  // unknown credentials are still 401
  const bogus = new Jar();
  bogus.c.gh_session = 'A'.repeat(43);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: bogus })).status, 401);
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: 'sk-' + 'B'.repeat(43) })).status, 401);
  await srv.stop();
});

test('successful sign-ins per account are rate-limited; wrong passwords still get 401', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'identity.logins_per_user_hour': '3' } });
  const a = cnPhone();
  const b = cnPhone();
  await registerUser(srv, a, PW, { localAddress: '127.0.0.6' });
  await registerUser(srv, b, PW, { localAddress: '127.0.0.7' });
  for (let i = 0; i < 3; i++) assert.equal((await login(srv, a, PW, '127.0.0.6')).r.status, 200);
  const over = (await login(srv, a, PW, '127.0.0.6')).r;
  assert.equal(over.status, 429);
  assert.match(over.json.error.message, /sign-ins to this account/);
  assert.ok(Number(over.headers['retry-after']) > 0);
  // nothing tells an outsider the account is at its limit
  assert.equal((await login(srv, a, WRONG, '127.0.0.8')).r.status, 401);
  assert.equal((await login(srv, b, PW, '127.0.0.7')).r.status, 200);
  await srv.stop();
});

/** The answer without what differs per request. */
function raw(r) {
  const h = Object.fromEntries(Object.entries(r.headers).filter(([k]) => k !== 'date' && k !== 'x-request-id'));
  return { status: r.status, body: r.text, headers: h };
}

test('code login and password reset answer registered and unregistered numbers byte for byte alike', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const known = cnPhone();
  await registerUser(srv, known, PW, { localAddress: '127.0.0.9' });
  let addr = 20;
  const fresh = () => `127.0.0.${addr++}`;
  for (const purpose of ['login', 'reset']) {
    const unknown = cnPhone();
    const code = await getCode(srv, known, purpose, { localAddress: fresh() });
    const r0 = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: unknown, purpose }, localAddress: fresh() });
    assert.equal(r0.status, 202);
    const wrong = code === '000000' ? '000001' : '000000';
    const send = (phone) =>
      purpose === 'login'
        ? api(srv.url, 'POST', '/api/auth/login', { body: { phone, code: wrong }, localAddress: fresh() })
        : api(srv.url, 'POST', '/api/auth/password-reset', { body: { phone, code: wrong, password: 'a new horse battery' }, localAddress: fresh() });
    // every try, including past the code's 5 tries, answers the same
    for (let i = 0; i < 7; i++) {
      const a = await send(known);
      const b = await send(unknown);
      assert.equal(a.status, 400, a.text);
      assert.deepEqual(raw(a), raw(b), `${purpose}, try ${i + 1}`);
    }
  }
  await srv.stop();
});

test('vouching is per (address, account): addresses of the attacker\'s own account get the victim\'s back-off', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'identity.backoff_base': '30s', 'shield.rules': '' } });
  const attacker = cnPhone();
  const victim = cnPhone();
  await registerUser(srv, attacker, PW, { localAddress: '127.0.1.1' });
  await registerUser(srv, victim, PW, { localAddress: '127.0.2.1' });
  const addrs = Array.from({ length: 15 }, (_, i) => `127.0.1.${10 + i}`);
  for (const a of addrs) assert.equal((await login(srv, attacker, PW, a)).r.status, 200);
  const st = [];
  for (const a of addrs) st.push((await login(srv, victim, WRONG, a)).r.status);
  assert.equal(count(st, 401), 1, `one guess, then back-off: ${st}`);
  assert.equal(count(st, 429), 14, `${st}`);
  // the victim, from where they signed in before, is not held back
  assert.equal((await login(srv, victim, PW, '127.0.2.1')).r.status, 200);
  await srv.stop();
});

test('SMS budgets: requests for numbers without an account spend no number or prefix budget', async (t) => {
  // the default SMS budgets (30 an hour per prefix), argon2 kept cheap
  const srv = await startServer({
    t,
    set: { 'identity.argon2_ops': '1', 'identity.argon2_mem': '8k', 'shield.rules': '' },
  });
  const victim = cnPhone();
  await registerUser(srv, victim, PW, { localAddress: '127.0.3.1' });
  const prefix = victim.slice(0, -4);
  // 30 login codes for non-existent numbers next to the victim's, from 6 addresses
  for (let i = 0; i < 30; i++) {
    let n;
    do n = prefix + String(Math.floor(Math.random() * 10000)).padStart(4, '0');
    while (n === victim);
    const r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: n, purpose: 'login' }, localAddress: `127.0.4.${1 + (i % 6)}` });
    assert.equal(r.status, 202, r.text);
  }
  // an outsider asks for the victim's login and reset codes again and again
  for (let i = 0; i < 12; i++) {
    for (const purpose of ['login', 'reset']) {
      const r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: victim, purpose }, localAddress: `127.0.5.${1 + i}` });
      assert.equal(r.status, 202, r.text);
    }
  }
  // the victim, at home, still gets a reset code and resets
  const code = await getCode(srv, victim, 'reset', { localAddress: '127.0.3.1' });
  const r = await api(srv.url, 'POST', '/api/auth/password-reset', {
    body: { phone: victim, code, password: 'a new horse battery' },
    localAddress: '127.0.3.1',
  });
  assert.equal(r.status, 200, r.text);
  // the outsider got at most the number's own outsider budget of texts sent
  await sleep(100);
  const sent = outbox(srv.dataDir).filter((m) => m.to === victim && m.purpose !== 'register');
  assert.ok(sent.length <= 1 + 1 + 1, `texts to the victim: ${sent.length}`);
  await srv.stop();
});

test('a deleted account\'s session and key answer 401 from memory, never the store', async (t) => {
  const srv = await startServer({ t, set: { ...FLOODABLE, 'identity.sessions_per_user': '10000' } });
  const other = cnPhone();
  const phone = cnPhone();
  await registerUser(srv, other, PW, { localAddress: '127.0.6.1' });
  const u = await registerUser(srv, phone, PW, { localAddress: '127.0.6.2' });
  let r = await api(srv.url, 'POST', '/api/keys', { jar: u.jar, body: { name: 'k' } });
  const key = r.json.key;
  const second = await login(srv, phone, PW, '127.0.6.2');
  // fill the cache past its size so that misses go to the store
  await flood(srv, other, 4000, 16, '127.0.6.1');
  let m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_identity_credential_evictions_total') > 0);
  const keep = new Jar();
  Object.assign(keep.c, u.jar.c);
  r = await api(srv.url, 'DELETE', '/api/me', { jar: u.jar });
  assert.equal(r.status, 204, r.text);
  const before = metricValue(await srv.metrics(), 'gatehouse_identity_credential_lookups_total');
  for (let i = 0; i < 5; i++) {
    assert.equal((await api(srv.url, 'GET', '/api/me', { jar: keep })).status, 401);
    assert.equal((await api(srv.url, 'GET', '/api/me', { jar: second.jar })).status, 401);
    assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key })).status, 401);
  }
  // without a cookie at all: 401 too
  assert.equal((await api(srv.url, 'GET', '/api/me')).status, 401);
  m = await srv.metrics();
  assert.equal(metricValue(m, 'gatehouse_identity_credential_lookups_total'), before, 'no store look-up');
  await srv.stop();
});
