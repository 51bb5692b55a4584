// Black-box tests of the `webhook` SMS sender (issue 3): a small receiver
// on loopback verifies X-Gatehouse-Signature with the webhook key
// (<data>/sms-webhook.key) and records the messages. It can answer 500 the first
// N times, answer with a wrong key's verdict, or hang, per phone number.
// Checked: one signed message with the right fields whose code registers;
// 500, 500, 200 still delivers (retries); a hanging receiver for one
// message does not delay the next one (transfers run concurrently); the
// signature depends on the key, the timestamp and the body; a 4xx is not
// retried; the counters in /metrics; no login or reset code for a
// disabled account (the answer stays the same 202).
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/sms-webhook.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { adminToken, sleep, startServer, waitUntil } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone } from './lib/accounts.mjs';

const TIMEOUT_MS = 1000;

/** hex HMAC-SHA256 of "<t>." + body. */
function mac(key, t, body) {
  return crypto.createHmac('sha256', key).update(`${t}.`).update(body).digest('hex');
}

/** Verifies a header "t=<unix s>,v1=<hex>" over body (a Buffer): true or the reason. */
function verify(key, header, body, maxSkewS = 300) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header || '');
  if (!m) return 'malformed header';
  const t = Number(m[1]);
  if (Math.abs(Date.now() / 1000 - t) > maxSkewS) return 'stale timestamp';
  const want = Buffer.from(mac(key, m[1], body), 'hex');
  const got = Buffer.from(m[2], 'hex');
  return crypto.timingSafeEqual(want, got) ? true : 'bad signature';
}

/** The receiver: POST /sms. behave[phone] = {fail: n (500s first), hang: bool, wrongKey: bool}. */
function startReceiver() {
  const rx = {
    key: null,
    behave: {},
    seen: {}, // phone → attempts seen
    got: [], // every request: {at, phone, attempt, verified, status, json, raw, sig}
    delivered: [], // accepted messages (200)
    server: null,
    port: 0,
    hanging: [],
  };
  rx.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let json = null;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        json = null;
      }
      const phone = json && json.to;
      const b = rx.behave[phone] || {};
      const n = (rx.seen[phone] = (rx.seen[phone] || 0) + 1);
      const key = b.wrongKey ? Buffer.from(rx.key.map((x) => x ^ 0x55)) : rx.key;
      const v = verify(key, req.headers['x-gatehouse-signature'], raw);
      const rec = {
        at: Date.now(),
        phone,
        attempt: Number(req.headers['x-gatehouse-attempt']),
        verified: v,
        json,
        raw,
        sig: req.headers['x-gatehouse-signature'],
        contentType: req.headers['content-type'],
        method: req.method,
        url: req.url,
      };
      rx.got.push(rec);
      if (b.hang) {
        rx.hanging.push(res); // never answered
        return;
      }
      if (v !== true) {
        rec.status = 401;
        res.writeHead(401).end('bad signature');
        return;
      }
      if (n <= (b.fail || 0)) {
        rec.status = 500;
        res.writeHead(500).end('try again');
        return;
      }
      rec.status = 200;
      rx.delivered.push(rec);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  return new Promise((resolve) => {
    rx.server.listen(0, '127.0.0.1', () => {
      rx.port = rx.server.address().port;
      resolve(rx);
    });
  });
}

// The webhook key is derived from the server's HMAC key and written to
// <data>/sms-webhook.key (0600) for the SMS provider; the master key itself
// must never be what signs.
function hmacKey(dataDir) {
  const file = path.join(dataDir, 'sms-webhook.key');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'sms-webhook.key is mode 0600');
  const hex = fs.readFileSync(file, 'utf8').trim();
  assert.match(hex, /^[0-9a-f]{64}$/);
  const master = /^hmac_key=([0-9a-f]{64})$/m.exec(
    fs.readFileSync(path.join(dataDir, 'secrets'), 'utf8'));
  assert.ok(master, 'secrets has hmac_key');
  assert.notEqual(hex, master[1], 'the webhook key is not the master key');
  return Buffer.from(hex, 'hex');
}

function metric(text, name, labels) {
  const re = new RegExp(`^${name}\\{${labels.replace(/"/g, '\\"')}\\} (\\d+)`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : null;
}

let rx;
let srv;

before(async () => {
  rx = await startReceiver();
  srv = await startServer({
    name: 'sms-webhook',
    set: {
      ...FAST,
      'sms.sender': 'webhook',
      'sms.webhook_url': `http://127.0.0.1:${rx.port}/sms`,
      'sms.webhook_timeout': `${TIMEOUT_MS}ms`,
      'sms.webhook_retries': '2',
    },
  });
  rx.key = hmacKey(srv.dataDir);
});

after(async () => {
  if (srv) await srv.stop();
  for (const r of rx.hanging) r.destroy();
  rx.server.closeAllConnections();
  await new Promise((r) => rx.server.close(r));
});

async function requestCode(phone, purpose) {
  const r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose } });
  assert.equal(r.status, 202, r.text);
  return r;
}

function deliveredTo(phone, purpose) {
  return rx.delivered.find((m) => m.phone === phone && m.json.purpose === purpose);
}

test('a code request delivers one signed message with the right fields; the code registers', async () => {
  const phone = cnPhone();
  await requestCode(phone, 'register');
  const m = await waitUntil(() => deliveredTo(phone, 'register'), { what: 'the webhook message' });
  assert.equal(m.method, 'POST');
  assert.equal(m.url, '/sms');
  assert.equal(m.contentType, 'application/json');
  assert.equal(m.verified, true);
  assert.equal(m.attempt, 1);
  assert.deepEqual(Object.keys(m.json).sort(), ['code', 'purpose', 'text', 'to', 'ts']);
  assert.equal(m.json.to, phone);
  assert.equal(m.json.purpose, 'register');
  assert.match(m.json.code, /^\d{6}$/);
  assert.ok(m.json.text.includes(m.json.code), 'the text carries the code');
  assert.ok(Math.abs(Date.parse(m.json.ts) - Date.now()) < 60000, 'ts is now');
  await sleep(200);
  assert.equal(rx.got.filter((x) => x.phone === phone).length, 1, 'exactly one request');
  // the outbox is not written by the webhook sender
  assert.equal(fs.existsSync(path.join(srv.dataDir, 'sms-outbox.jsonl')) && fs.readFileSync(path.join(srv.dataDir, 'sms-outbox.jsonl'), 'utf8').includes(phone), false);

  const jar = new Jar();
  const r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: m.json.code, password: 'correct horse battery' }, jar });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.user.phone, phone);
});

test('the signature depends on the key, the timestamp and the body', async () => {
  const m = rx.delivered[0];
  assert.ok(m);
  const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(m.sig);
  assert.equal(mac(rx.key, t, m.raw), v1);
  const wrong = Buffer.from(rx.key);
  wrong[0] ^= 1;
  assert.equal(verify(wrong, m.sig, m.raw), 'bad signature', 'another key');
  assert.equal(verify(rx.key, `t=${Number(t) + 1},v1=${v1}`, m.raw), 'bad signature', 'another timestamp');
  const tampered = Buffer.from(m.raw.toString('utf8').replace(m.json.code, '000000'));
  assert.equal(verify(rx.key, m.sig, tampered), 'bad signature', 'another body');
});

test('a receiver with the wrong key refuses (401) and a 4xx is not retried', async () => {
  const before = await srv.metrics();
  const failed0 = metric(before, 'gatehouse_sms_failed_total', 'sender="webhook"') || 0;
  const phone = cnPhone();
  rx.behave[phone] = { wrongKey: true };
  await requestCode(phone, 'register');
  const g = await waitUntil(() => rx.got.find((x) => x.phone === phone), { what: 'the request' });
  assert.equal(g.verified, 'bad signature');
  await waitUntil(async () => (metric(await srv.metrics(), 'gatehouse_sms_failed_total', 'sender="webhook"') || 0) > failed0, {
    what: 'the failure counted',
  });
  await sleep(800); // longer than the first back-off: a retry would have come
  assert.equal(rx.got.filter((x) => x.phone === phone).length, 1, 'no retry after a 401');
});

test('500, 500, then 200: the message still arrives (retries with back-off)', async () => {
  const phone = cnPhone();
  rx.behave[phone] = { fail: 2 };
  const t0 = Date.now();
  await requestCode(phone, 'register');
  const m = await waitUntil(() => deliveredTo(phone, 'register'), { timeout: 10000, what: 'the third attempt' });
  const all = rx.got.filter((x) => x.phone === phone);
  assert.deepEqual(
    all.map((x) => [x.attempt, x.status, x.verified]),
    [
      [1, 500, true],
      [2, 500, true],
      [3, 200, true],
    ],
  );
  // the same body each time, a fresh signature per attempt
  assert.ok(all.every((x) => x.raw.equals(m.raw)));
  // back-off: 500 ms then 1 s, less up to 25 % jitter
  assert.ok(all[1].at - all[0].at >= 350, `first back-off ${all[1].at - all[0].at} ms`);
  assert.ok(all[2].at - all[1].at >= 700, `second back-off ${all[2].at - all[1].at} ms`);
  assert.ok(m.at - t0 < 8000);
  assert.equal(rx.delivered.filter((x) => x.phone === phone).length, 1);
});

test('a hanging receiver for one message does not delay the next one', async () => {
  const slow = cnPhone();
  const fast = cnPhone();
  rx.behave[slow] = { hang: true };
  const t0 = Date.now();
  await requestCode(slow, 'register');
  await waitUntil(() => rx.got.find((x) => x.phone === slow), { what: 'the hanging request' });
  await requestCode(fast, 'register');
  const m = await waitUntil(() => deliveredTo(fast, 'register'), { what: 'the second message' });
  assert.ok(m.at - t0 < TIMEOUT_MS, `the second message arrived ${m.at - t0} ms after the first was sent (timeout ${TIMEOUT_MS} ms)`);
  // the first one is still hanging; it times out and is retried
  assert.ok(!deliveredTo(slow, 'register'));
  await waitUntil(() => rx.got.filter((x) => x.phone === slow).length >= 2, { timeout: 5000, what: 'a retry after the timeout' });
});

test('no login or reset code for a disabled account; the answer is the same 202', async () => {
  const phone = cnPhone();
  await requestCode(phone, 'register');
  const m = await waitUntil(() => deliveredTo(phone, 'register'), { what: 'the register code' });
  const jar = new Jar();
  const reg = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: m.json.code, password: 'correct horse battery' }, jar });
  assert.equal(reg.status, 201, reg.text);

  // enabled: a reset code arrives
  const enabled = await requestCode(phone, 'reset');
  await waitUntil(() => deliveredTo(phone, 'reset'), { what: 'the reset code' });

  const token = adminToken(srv.dataDir);
  const d = await api(srv.adminUrl, 'POST', `/admin/v1/users/${reg.json.user.id}/disable`, { bearer: token });
  assert.equal(d.status, 200, d.text);
  const n = rx.got.filter((x) => x.phone === phone).length;
  const login = await requestCode(phone, 'login');
  const reset = await requestCode(phone, 'reset');
  assert.equal(login.text, enabled.text, 'same bytes');
  assert.equal(reset.text, enabled.text);
  // an unknown number gets the same answer too
  const unknown = await requestCode(cnPhone(), 'login');
  assert.equal(unknown.text, enabled.text);
  await sleep(600);
  assert.equal(rx.got.filter((x) => x.phone === phone).length, n, 'nothing sent to a disabled account');
});

test('/metrics counts sent, failed, retried and dropped', async () => {
  const text = await srv.metrics();
  const sent = metric(text, 'gatehouse_sms_sent_total', 'sender="webhook"');
  const failed = metric(text, 'gatehouse_sms_failed_total', 'sender="webhook"');
  const retried = metric(text, 'gatehouse_sms_retried_total', 'sender="webhook"');
  const dropped = metric(text, 'gatehouse_sms_dropped_total', 'sender="webhook"');
  assert.ok(sent >= 4, `sent ${sent}`);
  assert.ok(failed >= 1, `failed ${failed}`);
  assert.ok(retried >= 3, `retried ${retried}`);
  assert.equal(dropped, 0);
  assert.notEqual(metric(text, 'gatehouse_sms_queued', 'sender="webhook"'), null);
});
