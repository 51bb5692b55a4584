// An existing user whose API key the credential cache has evicted (a
// flood of sign-ins filled it) still sends a large chat body: the key is
// read back from the store before the body cap is chosen, instead of the
// request being treated as anonymous and refused 413 (issue 10: large
// body caps only for valid credentials, and existing users first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { startServer, metricValue, request } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, registerUser } from './lib/accounts.mjs';

const PW = 'correct horse battery';
const FLOODABLE = { ...FAST, 'identity.cache_max': '64', 'shield.rules': '', 'identity.logins_per_user_hour': '100000', 'identity.sessions_per_user': '10000' };

async function flood(srv, phone, n, par) {
  let next = 0;
  const statuses = [];
  async function worker() {
    while (next < n) {
      next++;
      const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, localAddress: '127.0.0.4' });
      statuses.push(r.status);
    }
  }
  await Promise.all(Array.from({ length: par }, worker));
  return statuses;
}

function bigChat(key, bytes) {
  const body = JSON.stringify({ model: 'echo', max_tokens: 4, messages: [{ role: 'user', content: 'x'.repeat(bytes) }] });
  return { body, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } };
}

test('an evicted API key still sends a large body: read back before the cap is chosen', async (t) => {
  const srv = await startServer({ t, set: FLOODABLE });
  const victim = cnPhone();
  const attacker = cnPhone();
  const jar = new Jar();
  await registerUser(srv, victim, PW, { jar, localAddress: '127.0.0.2' });
  const vj = new Jar();
  assert.equal((await api(srv.url, 'POST', '/api/auth/login', { body: { phone: victim, password: PW }, jar: vj })).status, 200);
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'ci' }, jar: vj });
  assert.equal(k.status, 201, k.text);
  const key = k.json.key;
  const k2 = await api(srv.url, 'POST', '/api/keys', { body: { name: 'gone' }, jar: vj });
  assert.equal(k2.status, 201, k2.text);
  await registerUser(srv, attacker, PW, { localAddress: '127.0.0.3' });
  // 4,500 sessions for 3,072 slots: the victim's key is the least recently used
  const st = await flood(srv, attacker, 4500, 16);
  assert.equal(st.filter((s) => s === 200).length, 4500);
  assert.ok(metricValue(await srv.metrics(), 'gatehouse_identity_credential_evictions_total') > 0, 'the cache evicted');
  // a client that leaves while its evicted key is being read back
  await new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1', () => {
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${k2.json.key}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 300000\r\n\r\n', () => {
        sock.destroy();
        resolve();
      });
    });
    sock.on('error', reject);
  });
  // a 300 KB chat body (the anonymous cap is 64 KiB)
  const { body, headers } = bigChat(key, 300000);
  const r = await request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers, body });
  assert.equal(r.status, 200, r.text());
  assert.equal(r.json().model, 'echo');
  // a bogus key of the right shape is still refused before its body
  const bogus = 'sk-' + 'A'.repeat(key.length - 3);
  const b = await request(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...headers, authorization: `Bearer ${bogus}` },
    body,
  });
  assert.ok(b.status === 413 || b.status === 401, `bogus key: ${b.status}`);
  await srv.stop();
});
