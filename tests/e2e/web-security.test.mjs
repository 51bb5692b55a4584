// Black-box tests of issue 10 items 6–8: what an API key may reach, what a
// password reset revokes, cross-site requests (Origin, Sec-Fetch-Site,
// Content-Type), cookie attributes and names, HSTS, file modes in the data
// directory, the admin token's length, and unpredictable request ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, runGatehouse, request, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, getCode, outbox, registerUser } from './lib/accounts.mjs';

const PW = 'correct horse battery';

async function userWithKey(srv) {
  const phone = cnPhone();
  const { jar, user } = await registerUser(srv, phone, PW);
  const r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'k' } });
  assert.equal(r.status, 201, r.text);
  return { phone, jar, user, key: r.json };
}

/** A raw POST with the given headers and body text. */
function post(srv, p, headers, body) {
  return request(srv.url + p, { method: 'POST', headers, body });
}

test('an API key reaches /v1 and /api/usage, never the account routes', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const { jar, key } = await userWithKey(srv);
  const bearer = key.key;
  for (const [method, p, body] of [
    ['GET', '/api/me'],
    ['GET', '/api/me/export'],
    ['GET', '/api/keys'],
    ['POST', '/api/keys', { name: 'more' }],
    ['DELETE', `/api/keys/${key.id}`],
    ['DELETE', '/api/me'],
  ]) {
    const r = await api(srv.url, method, p, { bearer, body });
    assert.equal(r.status, 401, `${method} ${p} with a key: ${r.status} ${r.text}`);
    assert.equal(r.json.error.code, 'unauthorized');
    assert.match(r.json.error.message, /session/);
    assert.ok(!r.text.includes('+86'), 'no phone number');
  }
  // nothing happened: the key is still there and works where keys belong
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer })).status, 200);
  assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer })).status, 200);
  const list = await api(srv.url, 'GET', '/api/keys', { jar });
  assert.equal(list.status, 200);
  assert.equal(list.json.data.length, 1);
  assert.ok(!list.json.data[0].revoked_at);
});

test('a password reset ends every session; with revoke_keys every key too', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const { phone, jar, key } = await userWithKey(srv);

  // revoke_keys must be a boolean
  let code = await getCode(srv, phone, 'reset');
  let r = await api(srv.url, 'POST', '/api/auth/password-reset', { body: { phone, code, password: 'another fine secret', revoke_keys: 'yes' } });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /revoke_keys/);

  // without revoke_keys: sessions gone, keys kept
  code = await getCode(srv, phone, 'reset');
  r = await api(srv.url, 'POST', '/api/auth/password-reset', { body: { phone, code, password: 'another fine secret' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { reset: true });
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 401);
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key.key })).status, 200);

  // a second session and key, then a reset with revoke_keys: both keys die
  const j2 = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/login', { jar: j2, body: { phone, password: 'another fine secret' } });
  assert.equal(r.status, 200, r.text);
  const k2 = (await api(srv.url, 'POST', '/api/keys', { jar: j2, body: { name: 'k2' } })).json;
  code = await getCode(srv, phone, 'reset');
  r = await api(srv.url, 'POST', '/api/auth/password-reset', { body: { phone, code, password: 'a third fine secret', revoke_keys: true } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { reset: true, keys_revoked: 2 });
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: j2 })).status, 401);
  for (const k of [key.key, k2.key]) {
    assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: k })).status, 401);
    assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k })).status, 401);
  }
  // the store agrees: after a restart on the same data the keys stay dead
  await srv.stop();
  const again = await startServer({ t, set: FAST, dataDir: srv.dataDir, name: 'reset-restart' });
  assert.equal((await api(again.url, 'GET', '/api/usage', { bearer: key.key })).status, 401);
  const j3 = new Jar();
  r = await api(again.url, 'POST', '/api/auth/login', { jar: j3, body: { phone, password: 'a third fine secret' } });
  assert.equal(r.status, 200, r.text);
  const keys = (await api(again.url, 'GET', '/api/keys', { jar: j3 })).json.data;
  assert.deepEqual(keys, [], 'both keys revoked in the store (the list shows live keys)');
});

test('cross-site requests are refused before anything happens', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const phone = cnPhone();
  await registerUser(srv, phone, PW);
  const login = JSON.stringify({ phone, password: PW });
  const self = `http://127.0.0.1:${srv.port}`;

  // the form attack: text/plain from another site logs the visitor in
  let r = await post(srv, '/api/auth/login', { 'content-type': 'text/plain', origin: 'https://evil.example' }, login);
  assert.equal(r.status, 403, r.text());
  assert.equal(r.headers['set-cookie'], undefined);
  assert.equal(r.json().error.code, 'forbidden');
  assert.match(r.json().error.message, /cross-site/);
  // JSON from another site, or a browser that says cross-site, or a sibling
  // subdomain (same-site) without an Origin, or an opaque origin
  for (const h of [
    { 'content-type': 'application/json', origin: 'https://evil.example' },
    { 'content-type': 'application/json', origin: 'null' },
    { 'content-type': 'application/json', origin: `http://127.0.0.1:${srv.port + 1}` },
    { 'content-type': 'application/json', origin: `http://localhost:${srv.port}` },
    { 'content-type': 'application/json', origin: `${self}.evil.example` },
    { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' },
    { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site', origin: self },
    { 'content-type': 'application/json', 'sec-fetch-site': 'same-site' },
  ]) {
    r = await post(srv, '/api/auth/login', h, login);
    assert.equal(r.status, 403, `${JSON.stringify(h)}: ${r.status}`);
    assert.equal(r.headers['set-cookie'], undefined);
  }

  // a body that is not declared JSON: 415, even without any Origin
  const before = outbox(srv.dataDir).length;
  const sms = JSON.stringify({ phone: cnPhone(), purpose: 'register' });
  for (const ct of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonp']) {
    const h = ct ? { 'content-type': ct } : {};
    r = await post(srv, '/api/auth/sms-code', h, sms);
    assert.equal(r.status, 415, `${ct}: ${r.status} ${r.text()}`);
    assert.equal(r.json().error.code, 'unsupported_media_type');
    assert.match(r.json().error.message, /application\/json/);
  }
  r = await post(srv, '/api/auth/login', { 'content-type': 'text/plain' }, login);
  assert.equal(r.status, 415);
  assert.equal(r.headers['set-cookie'], undefined);
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(outbox(srv.dataDir).length, before, 'no SMS was sent');

  // the site itself, and clients that are not browsers, pass
  for (const h of [
    { 'content-type': 'application/json', origin: self, 'sec-fetch-site': 'same-origin' },
    { 'content-type': 'application/json; charset=utf-8', origin: self.replace('http', 'HTTP') },
    { 'content-type': 'Application/JSON' },
  ]) {
    r = await post(srv, '/api/auth/login', h, login);
    assert.equal(r.status, 200, `${JSON.stringify(h)}: ${r.status} ${r.text()}`);
    assert.match(String(r.headers['set-cookie']), /gh_session=/);
  }
  // reads are not checked (a link from elsewhere may open a page's data)
  r = await request(`${srv.url}/api/policy`, { headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } });
  assert.equal(r.status, 200);
});

test('server.public_origin: the configured origin, not the Host, is the site', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'server.public_origin': 'https://chat.example.com' } });
  const phone = cnPhone();
  await registerUser(srv, phone, PW); // no Origin: passes
  const login = JSON.stringify({ phone, password: PW });
  const ok = { 'content-type': 'application/json', origin: 'https://chat.example.com' };
  assert.equal((await post(srv, '/api/auth/login', ok, login)).status, 200);
  assert.equal((await post(srv, '/api/auth/login', { ...ok, origin: 'https://chat.example.com:443' }, login)).status, 200);
  for (const origin of [`http://127.0.0.1:${srv.port}`, 'http://chat.example.com', 'https://chat.example.com:8443', 'https://evil.example']) {
    const r = await post(srv, '/api/auth/login', { ...ok, origin }, login);
    assert.equal(r.status, 403, origin);
  }
  // a malformed setting is a configuration error (exit 2)
  const bad = await runGatehouse(['config', '--set', 'server.public_origin=https://x.example/app']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /public_origin/);
});

test('cookies: Secure with the __Host- prefix by default, both names accepted, HSTS', async (t) => {
  // the defaults, and dev.conf's opt-out
  const def = await runGatehouse(['config']);
  assert.equal(def.code, 0, def.stderr);
  assert.match(def.stdout, /^cookie_secure = true$/m);
  assert.match(def.stdout, /^hsts_max_age = 0/m);
  const dev = await runGatehouse(['config', '--config', path.resolve('conf/dev.conf')]);
  assert.equal(dev.code, 0, dev.stderr);
  assert.match(dev.stdout, /^cookie_secure = false$/m);

  const srv = await startServer({ t, set: { ...FAST, 'identity.cookie_secure': 'true', 'server.hsts_max_age': '365d' } });
  const phone = cnPhone();
  const code = await getCode(srv, phone, 'register');
  const res = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code, password: PW } });
  assert.equal(res.status, 201, res.text);
  const cookies = [].concat(res.headers['set-cookie']);
  const sess = cookies.find((c) => c.startsWith('__Host-gh_session='));
  const csrf = cookies.find((c) => c.startsWith('__Host-gh_csrf='));
  assert.ok(sess && csrf, `cookies: ${cookies}`);
  for (const c of [sess, csrf]) {
    const attrs = c.split(';').slice(1).map((a) => a.trim().toLowerCase());
    assert.ok(attrs.includes('secure'), c);
    assert.ok(attrs.includes('path=/'), c);
    assert.ok(attrs.includes('samesite=lax'), c);
    assert.ok(!attrs.some((a) => a.startsWith('domain')), c);
  }
  assert.ok(sess.toLowerCase().includes('httponly'));
  assert.ok(!csrf.toLowerCase().includes('httponly'), 'the page script reads the CSRF cookie');
  assert.equal(res.headers['strict-transport-security'], 'max-age=31536000');
  const adm = await request(`${srv.adminUrl}/healthz`);
  assert.equal(adm.headers['strict-transport-security'], undefined, 'not on the admin listener');

  const tok = sess.split(';')[0].split('=')[1];
  const csrfTok = csrf.split(';')[0].split('=')[1];
  // both names carry the session on input
  for (const name of ['__Host-gh_session', 'gh_session']) {
    const r = await request(`${srv.url}/api/me`, { headers: { cookie: `${name}=${tok}` } });
    assert.equal(r.status, 200, name);
  }
  // logout clears both names, Secure
  const out = await request(`${srv.url}/api/auth/logout`, {
    method: 'POST',
    headers: { cookie: `__Host-gh_session=${tok}; __Host-gh_csrf=${csrfTok}`, 'x-csrf-token': csrfTok },
  });
  assert.equal(out.status, 204);
  const cleared = [].concat(out.headers['set-cookie']);
  for (const n of ['__Host-gh_session=;', '__Host-gh_csrf=;', 'gh_session=;', 'gh_csrf=;'])
    assert.ok(cleared.some((c) => c.startsWith(n) && /Max-Age=0/.test(c) && /Secure/.test(c)), `${n} in ${cleared}`);
  assert.equal((await request(`${srv.url}/api/me`, { headers: { cookie: `gh_session=${tok}` } })).status, 401);

  // the harness's plain-http server: plain names, no Secure, no HSTS
  const plain = await startServer({ t, set: FAST, name: 'cookies-plain' });
  const { res: pres } = await registerUser(plain, cnPhone(), PW);
  const pc = [].concat(pres.headers['set-cookie']);
  assert.ok(pc.some((c) => c.startsWith('gh_session=') && !/Secure/.test(c)), `${pc}`);
  assert.equal(pres.headers['strict-transport-security'], undefined);
});

/** Every path under dir (files and directories) with its mode. */
function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    out.push({ p, mode: fs.lstatSync(p).mode & 0o777, dir: e.isDirectory() });
    if (e.isDirectory()) walk(p, out);
  }
  return out;
}

function assertPrivate(dataDir, when) {
  const all = walk(dataDir);
  const loose = all.filter((f) => f.mode & 0o077).map((f) => `${path.relative(dataDir, f.p)} ${f.mode.toString(8)}`);
  assert.deepEqual(loose, [], `${when}: readable by others`);
  return all.map((f) => path.relative(dataDir, f.p));
}

test('everything in the data directory is for the owner alone (0600 files, 0700 dirs)', async (t) => {
  const srv = await startServer({ t, set: FAST });
  const { key } = await userWithKey(srv);
  const r = await api(srv.url, 'POST', '/v1/chat/completions', { bearer: key.key, body: { model: 'echo', messages: [{ role: 'user', content: 'hi' }] } });
  assert.equal(r.status, 200, r.text);
  await waitUntil(() => fs.existsSync(path.join(srv.dataDir, 'gatehouse.db-wal')), { what: 'the WAL file' });
  let names = assertPrivate(srv.dataDir, 'after traffic');
  for (const f of ['gatehouse.db', 'gatehouse.db-wal', 'gatehouse.db-shm', 'secrets', 'admin.token', 'sms-outbox.jsonl'])
    assert.ok(names.includes(f), `${f} in ${names}`);
  await srv.stop();
  names = assertPrivate(srv.dataDir, 'after stop');

  // files an older version left readable are tightened at start
  fs.chmodSync(path.join(srv.dataDir, 'gatehouse.db'), 0o644);
  const again = await startServer({ t, set: FAST, dataDir: srv.dataDir, name: 'modes-restart' });
  assert.equal(fs.statSync(path.join(srv.dataDir, 'gatehouse.db')).mode & 0o777, 0o600);
  await again.stop();
});

test('an admin token shorter than 32 characters is refused at start (exit 2)', async () => {
  const data = path.join(tempDir(), 'data');
  const args = ['serve', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:1', '--data', data];
  const viaSet = await runGatehouse([...args, '--set', 'secrets.admin_token=0123456789abcdef0123456789abcde']);
  assert.equal(viaSet.code, 2, viaSet.stderr);
  assert.match(viaSet.stderr, /admin_token.*32/);
  const viaEnv = await runGatehouse(args, { env: { GATEHOUSE_ADMIN_TOKEN: 'short-token' } });
  assert.equal(viaEnv.code, 2, viaEnv.stderr);
  assert.match(viaEnv.stderr, /GATEHOUSE_ADMIN_TOKEN.*admin_token.*32/);
  assert.ok(!fs.existsSync(path.join(data, 'gatehouse.db')), 'nothing started');
});

test('x-request-id is random, not a sequence', async (t) => {
  const srv = await startServer({ t, workers: 1 });
  const ids = [];
  for (let i = 0; i < 200; i++) {
    const r = await request(`${srv.url}/api/policy`);
    assert.equal(r.status, 200);
    ids.push(r.headers['x-request-id']);
  }
  for (const id of ids) assert.match(id, /^req_[0-9a-f]{16}$/);
  assert.equal(new Set(ids).size, ids.length, 'unique');
  const v = ids.map((id) => BigInt(`0x${id.slice(4)}`));
  // consecutive ids of a counter differ by a little; random 64-bit values
  // differ by less than 2^40 with probability 2^-23 per pair
  const close = v.slice(1).filter((x, i) => (x > v[i] ? x - v[i] : v[i] - x) < 1n << 40n).length;
  assert.equal(close, 0, `${close} consecutive ids close together: ${ids.slice(0, 5)}`);
  // every hex digit position varies (no fixed time or worker field)
  for (let pos = 4; pos < 20; pos++) assert.ok(new Set(ids.map((id) => id[pos])).size > 8, `digit ${pos - 4} varies`);
});
