// Black-box tests of accounts (issue 3): registration by SMS code, login by
// password and by code, reset, sessions and CSRF, API keys, export and
// deletion, bad input, the registration policy on every worker, and
// durability of registrations across SIGKILL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { startServer, runGatehouse, sleep, adminToken } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, getCode, outbox, registerUser } from './lib/accounts.mjs';

const PW = 'correct horse battery';

test('every account flow end to end', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const phone = cnPhone();
  const { jar, user } = await registerUser(srv, phone, PW);
  assert.equal(user.phone, phone);
  assert.equal(user.region, 'CN');
  assert.ok(jar.c.gh_session && jar.c.gh_csrf);

  let r = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(r.status, 200);
  assert.equal(r.json.user.id, user.id);

  // a state change without the CSRF header is refused
  r = await api(srv.url, 'POST', '/api/keys', { jar, csrf: false, body: { name: 'k' } });
  assert.equal(r.status, 403);
  r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'laptop' } });
  assert.equal(r.status, 201, r.text);
  const key = r.json;
  assert.match(key.key, /^sk-[A-Za-z0-9_-]{43}$/);
  assert.ok(key.key.startsWith(key.prefix));
  r = await api(srv.url, 'GET', '/api/keys', { jar });
  assert.equal(r.status, 200);
  assert.equal(r.json.data.length, 1);
  // the key works where keys belong (not on account routes: web-security.test.mjs)
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key.key })).status, 200);
  assert.equal(r.json.data[0].name, 'laptop');
  assert.ok(!('key' in r.json.data[0]), 'the key is shown once');

  // a second key, revoked: stops working at once
  r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'old' } });
  const old = r.json;
  r = await api(srv.url, 'DELETE', `/api/keys/${old.id}`, { jar });
  assert.equal(r.status, 204);
  r = await api(srv.url, 'GET', '/api/usage', { bearer: old.key });
  assert.equal(r.status, 401);
  r = await api(srv.url, 'DELETE', `/api/keys/${old.id}`, { jar });
  assert.equal(r.status, 404);

  // logout ends the session everywhere
  r = await api(srv.url, 'POST', '/api/auth/logout', { jar });
  assert.equal(r.status, 204);
  r = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(r.status, 401);

  // login by password, then by code
  const j2 = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/login', { jar: j2, body: { phone, password: PW } });
  assert.equal(r.status, 200, r.text);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: j2 })).status, 200);
  const j3 = new Jar();
  const lcode = await getCode(srv, phone, 'login');
  r = await api(srv.url, 'POST', '/api/auth/login', { jar: j3, body: { phone, code: lcode } });
  assert.equal(r.status, 200, r.text);
  assert.notEqual(j2.c.gh_session, j3.c.gh_session);

  // wrong password: one generic message
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'not the password' } });
  assert.equal(r.status, 401);
  const unknown = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: cnPhone(), password: 'not the password' } });
  assert.equal(unknown.status, 401);
  assert.deepEqual(unknown.json, r.json);

  // reset by code: the new password works, the old does not, sessions end
  const rcode = await getCode(srv, phone, 'reset');
  r = await api(srv.url, 'POST', '/api/auth/password-reset', { body: { phone, code: rcode, password: 'a brand new secret' } });
  assert.equal(r.status, 200, r.text);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: j2 })).status, 401);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 401);
  const j4 = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/login', { jar: j4, body: { phone, password: 'a brand new secret' } });
  assert.equal(r.status, 200);

  // export: the user's data, no secrets
  r = await api(srv.url, 'GET', '/api/me/export', { jar: j4 });
  assert.equal(r.status, 200);
  assert.equal(r.json.user.phone, phone);
  const events = r.json.audit.map((a) => a.event);
  for (const e of ['register', 'login', 'password_reset', 'key_created', 'key_revoked']) assert.ok(events.includes(e), `export has ${e}`);
  assert.ok(!r.text.includes(key.key), 'no key in the export');
  assert.ok(!r.text.includes('argon2'), 'no password hash in the export');

  // deletion: sessions and keys stop, login fails
  r = await api(srv.url, 'DELETE', '/api/me', { jar: j4 });
  assert.equal(r.status, 204);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: j3 })).status, 401);
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key.key })).status, 401);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'a brand new secret' } });
  assert.equal(r.status, 401);

  // the audit log has no full phone number
  await srv.stop();
  assert.ok(!srv.stderr().includes(phone), 'no full phone number in the logs');
  assert.match(srv.stderr(), /"event":"audit"/);
});

test('codes: six wrong tries kill a code; codes expire; one live code', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'identity.code_ttl': '1s' } });
  const phone = cnPhone();
  const code = await getCode(srv, phone, 'register');
  const wrong = code === '000000' ? '111111' : '000000';
  for (let i = 0; i < 5; i++) {
    const r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: wrong, password: PW } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_code');
  }
  let r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code, password: PW } });
  assert.equal(r.status, 400, 'the right code after five wrong ones is dead');
  assert.match(r.json.error.message, /request a new code/);

  // a new code replaces the old one
  const c1 = await getCode(srv, phone, 'register');
  const c2 = await getCode(srv, phone, 'register');
  if (c1 !== c2) {
    r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: c1, password: PW } });
    assert.equal(r.status, 400);
  }
  // expiry
  const c3 = await getCode(srv, phone, 'register');
  await sleep(1300);
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: c3, password: PW } });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'invalid_code');
  void c2;
});

test('bad input is a 4xx with a message naming the field, never 5xx', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const phone = cnPhone();
  const cases = [
    ['/api/auth/register', '{', 400, 'invalid_json', /body/],
    ['/api/auth/register', '[1,2]', 400, 'invalid_json', /body/],
    ['/api/auth/register', '{}', 400, 'invalid_request', /phone/],
    ['/api/auth/register', JSON.stringify({ phone }), 400, 'invalid_request', /code/],
    ['/api/auth/register', JSON.stringify({ phone, code: '123456' }), 400, 'invalid_request', /password/],
    ['/api/auth/register', JSON.stringify({ phone: 123, code: '123456', password: PW }), 400, 'invalid_phone', /phone/],
    ['/api/auth/register', JSON.stringify({ phone: '+1 900 555 1234', code: '123456', password: PW }), 400, 'invalid_phone', /premium/],
    ['/api/auth/register', JSON.stringify({ phone: 'x'.repeat(10000), code: '123456', password: PW }), 400, 'invalid_phone', /phone/],
    ['/api/auth/register', JSON.stringify({ phone: '+86１３８００１３８０００', code: '123456', password: PW }), 400, 'invalid_phone', /ASCII/],
    ['/api/auth/register', JSON.stringify({ phone, code: '12ab56', password: PW }), 400, 'invalid_request', /code/],
    ['/api/auth/register', JSON.stringify({ phone, code: '123456', password: 'short' }), 422, 'invalid_parameter', /password/],
    ['/api/auth/register', JSON.stringify({ phone, code: '123456', password: 'password123' }), 422, 'invalid_parameter', /common/],
    ['/api/auth/register', JSON.stringify({ phone, code: '123456', password: 'x'.repeat(300) }), 422, 'invalid_parameter', /long/],
    ['/api/auth/sms-code', JSON.stringify({ phone, purpose: 'spam' }), 400, 'invalid_request', /purpose/],
    ['/api/auth/sms-code', JSON.stringify({ phone: 'garbage', purpose: 'login' }), 400, 'invalid_phone', /phone/],
    ['/api/auth/login', JSON.stringify({ phone }), 400, 'invalid_request', /password or code/],
    ['/api/auth/login', JSON.stringify({ phone, password: 1 }), 400, 'invalid_request', /password/],
    ['/api/auth/password-reset', JSON.stringify({ phone, code: '123456', password: 'qwertyuiop' }), 422, 'invalid_parameter', /common/],
  ];
  for (const [p, body, status, code, re] of cases) {
    const r = await api(srv.url, 'POST', p, { body });
    assert.equal(r.status, status, `${p} ${body.slice(0, 80)}: ${r.text}`);
    assert.equal(r.json.error.code, code, `${p} ${body.slice(0, 80)}`);
    assert.match(r.json.error.message, re, `${p} ${body.slice(0, 80)}`);
  }
  // a 1 MB phone string: refused before parsing (413: the body cap of the route), never 5xx
  const big = JSON.stringify({ phone: '1'.repeat(1 << 20), code: '123456', password: PW });
  const r = await api(srv.url, 'POST', '/api/auth/register', { body: big }).catch((e) => ({ status: 0, err: e }));
  assert.ok(r.status === 400 || r.status === 413, `1 MB phone: ${r.status}`);
  if (r.json) assert.ok(r.json.error.message.length > 0);
  assert.equal((await api(srv.url, 'GET', '/healthz')).status, 200);
});

test('sms-code answers byte-identical for registered and unregistered numbers', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const known = cnPhone();
  await registerUser(srv, known);
  for (const purpose of ['register', 'login', 'reset']) {
    const a = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: known, purpose } });
    const b = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: cnPhone(), purpose } });
    assert.equal(a.status, 202);
    assert.equal(a.status, b.status);
    assert.equal(a.text, b.text);
    // Date, the request id and the caller's own rate-limit counters differ per request
    const strip = (h) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'date' && k !== 'x-request-id' && !k.startsWith('x-ratelimit-')));
    assert.deepEqual(strip(a.headers), strip(b.headers));
  }
  // the register code to a known number says so in the SMS only
  await sleep(200);
  const msgs = outbox(srv.dataDir).filter((m) => m.to === known && m.purpose === 'register');
  assert.match(msgs.at(-1).text, /already has an account/);
});

test('SMS budgets: cooldown per number gives 429 with Retry-After', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'sms.cooldown': '60s', 'sms.per_addr_hour': '3' } });
  const phone = cnPhone();
  let r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
  assert.equal(r.status, 202);
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
  assert.equal(r.status, 429);
  assert.equal(r.json.error.code, 'rate_limited');
  assert.ok(Number(r.headers['retry-after']) > 0);
  // the per-address cap, then another address still works
  await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: cnPhone(), purpose: 'register' } });
  await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: cnPhone(), purpose: 'register' } });
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: cnPhone(), purpose: 'register' } });
  assert.equal(r.status, 429);
  assert.match(r.json.error.message, /address/);
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: cnPhone(), purpose: 'register' }, localAddress: '127.0.0.2' });
  assert.equal(r.status, 202);
});

test('failed logins back off per account', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'identity.backoff_base': '2s' } });
  const phone = cnPhone();
  await registerUser(srv, phone);
  let r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'wrong wrong wrong' } });
  assert.equal(r.status, 401);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers['retry-after']) >= 1);
  await sleep(2100);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 200);
});

test('after failed logins, login needs proof of work when the attack level asks for it', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'shield.elevated_pow_bits': '6' } });
  const phone = cnPhone();
  await registerUser(srv, phone);
  const token = adminToken(srv.dataDir);
  let r = await api(srv.adminUrl, 'PUT', '/admin/v1/level', { body: { level: 'elevated' }, bearer: token });
  assert.equal(r.status, 200);
  // no failures yet: no proof needed
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 200, r.text);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'wrong wrong wrong' } });
  assert.equal(r.status, 401);
  // now the account (and this address) failed recently: scope login
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'pow_required');
  assert.match(r.json.error.message, /scope=login/);
  const c = (await api(srv.url, 'GET', '/api/pow/challenge?scope=login')).json;
  assert.equal(c.bits, 6);
  const { createHash } = await import('node:crypto');
  let nonce = 0;
  for (;; nonce++) {
    const h = createHash('sha256').update(`${c.challenge}:${nonce}`).digest();
    if (h[0] === 0 && h[1] >> 2 === 0) break; // 8 + 6 bits >= 6
    if ((h[0] >> 2) === 0) break; // the first 6 bits
  }
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW, pow: { challenge: c.challenge, nonce: String(nonce) } } });
  assert.equal(r.status, 200, r.text);
  // the account's failures are gone with the success; this address's
  // count lasts the hour, another address needs no proof
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 403);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, localAddress: '127.0.0.2' });
  assert.equal(r.status, 200, r.text);
  await srv.stop();
});

async function setPolicy(srv, body) {
  const token = adminToken(srv.dataDir);
  const r = await api(srv.adminUrl, 'PUT', '/admin/v1/policy', { body, bearer: token });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

test('registration policy: restricted, busy, closed; existing users keep working', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const existing = cnPhone();
  await registerUser(srv, existing);
  const us = '+1 415 555 2671';

  let p = await setPolicy(srv, { mode: 'restricted', allowed_regions: ['CN'] });
  assert.equal(p.mode, 'restricted');
  let r = await api(srv.url, 'GET', '/api/policy');
  assert.deepEqual(r.json.allowed_regions, ['CN']);
  assert.match(r.json.message.en, /\+86/);
  assert.ok(r.json.message.zh.length > 0);
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: us, purpose: 'register' } });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'registration_restricted');
  assert.match(r.json.error.message, /Registration is temporarily limited to \+86/);
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: us, code: '123456', password: PW } });
  assert.equal(r.status, 403);
  await registerUser(srv, cnPhone()); // +86 still registers
  const jar = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/login', { jar, body: { phone: existing, password: PW } });
  assert.equal(r.status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 200);

  await setPolicy(srv, { mode: 'busy' });
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: cnPhone(), code: '123456', password: PW } });
  assert.equal(r.status, 503);
  assert.equal(r.json.error.code, 'busy');
  assert.ok(Number(r.headers['retry-after']) > 0);
  assert.match(r.json.error.message, /busy/);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: existing, password: PW } });
  assert.equal(r.status, 200);
  // reset codes and login codes keep working
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: existing, purpose: 'reset' } });
  assert.equal(r.status, 202);

  await setPolicy(srv, { mode: 'closed' });
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone: cnPhone(), purpose: 'register' } });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'registration_closed');
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: existing, password: PW } });
  assert.equal(r.status, 200);

  // bad policy bodies
  const token = adminToken(srv.dataDir);
  r = await api(srv.adminUrl, 'PUT', '/admin/v1/policy', { body: { mode: 'maybe' }, bearer: token });
  assert.equal(r.status, 400);
  r = await api(srv.adminUrl, 'PUT', '/admin/v1/policy', { body: { mode: 'open' } });
  assert.equal(r.status, 401);

  // temporary: falls back by itself
  await setPolicy(srv, { mode: 'open' });
  await setPolicy(srv, { mode: 'busy', for_seconds: 1 });
  assert.equal((await api(srv.url, 'GET', '/api/policy')).json.mode, 'busy');
  await sleep(1200);
  assert.equal((await api(srv.url, 'GET', '/api/policy')).json.mode, 'open');

  // persisted across a restart
  await setPolicy(srv, { mode: 'restricted', allowed_regions: ['CN', 'HK'], pow_bits: 12 });
  await srv.stop();
  const again = await startServer({ t, set: FAST, dataDir: srv.dataDir });
  r = await api(again.url, 'GET', '/api/policy');
  assert.equal(r.json.mode, 'restricted');
  assert.deepEqual(r.json.allowed_regions, ['CN', 'HK']);
  assert.equal(r.json.pow_bits, 12);
  await again.stop();
});

test('a policy change through gatehouse ctl reaches every worker', async (t) => {
  const srv = await startServer({ t, set: FAST, workers: 2 });
  const ctl = (args) =>
    runGatehouse(['ctl', '--admin', srv.adminUrl, '--token', adminToken(srv.dataDir), ...args]);
  let out = await ctl(['policy', 'set', 'restricted', '--regions', 'CN,HK', '--pow-bits', '8']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /restricted/);
  const modes = async () => {
    const rs = await Promise.all(Array.from({ length: 40 }, () => api(srv.url, 'GET', '/api/policy')));
    return new Set(rs.map((r) => `${r.json.mode}/${r.json.pow_bits}`));
  };
  assert.deepEqual([...(await modes())], ['restricted/8']);
  out = await ctl(['policy', 'set', 'closed', '--for', '2h']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual([...(await modes())], ['closed/8']);
  out = await ctl(['policy', 'show']);
  assert.match(out.stdout, /closed/);
  assert.match(out.stdout, /until/);
  out = await ctl(['--json', 'policy', 'show']);
  assert.equal(JSON.parse(out.stdout).mode, 'closed');
  out = await ctl(['policy', 'set', 'sideways']);
  assert.equal(out.code, 2);
});

test('SIGKILL during a burst of registrations: every 201 survives, integrity ok', async (t) => {
  const srv = await startServer({ t, set: FAST, workers: 2 });
  const n = 120;
  const phones = Array.from({ length: n }, () => cnPhone());
  const codes = [];
  for (const p of phones) codes.push(await getCode(srv, p, 'register'));
  const ok = [];
  let killed = false;
  const burst = phones.map((phone, i) =>
    api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: codes[i], password: PW } })
      .then((r) => {
        if (r.status === 201 && !killed) ok.push(phone);
        // kill in the middle: once a fifth of the burst has its answer
        if (ok.length >= n / 5 && !killed) {
          killed = true;
          srv.kill('SIGKILL');
        }
      })
      .catch(() => {}),
  );
  await Promise.race([Promise.all(burst), sleep(5000)]);
  if (!killed) {
    killed = true;
    srv.kill('SIGKILL');
  }
  await Promise.all(burst);
  await srv.exited;
  const db = path.join(srv.dataDir, 'gatehouse.db');
  const again = await startServer({ t, set: FAST, dataDir: srv.dataDir });
  for (const phone of ok) {
    const r = await api(again.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
    assert.equal(r.status, 200, `${phone} got 201 before the kill but cannot log in: ${r.text}`);
  }
  await again.stop();
  const check = execFileSync('sqlite3', [db, 'PRAGMA integrity_check'], { encoding: 'utf8' }).trim();
  assert.equal(check, 'ok');
  t.diagnostic(`${ok.length} of ${n} registrations answered 201 before the kill`);
});
