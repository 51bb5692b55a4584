// Black-box tests of the shield (issue 4): rate limits per address with
// 429 and Retry-After, the block list closing connections at accept (from
// a file with a malformed line, and through the admin API and ctl), proof
// of work issued, solved by the web worker's solver and by the C solver,
// verified once and refused on replay, and the attack level pinned and
// unpinned.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/shield.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';

import {
  BIN,
  adminToken,
  rawExchange,
  reqText,
  request,
  runGatehouse,
  startServer,
  tempDir,
  waitUntil,
} from './lib/harness.mjs';

const GET_HEALTHZ = reqText('GET', '/healthz');

function admin(srv, method, p, body) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = { authorization: `Bearer ${adminToken(srv.dataDir)}` };
  if (text !== undefined) {
    headers['content-type'] = 'application/json';
    // node frames a DELETE body only when told its length
    headers['content-length'] = String(Buffer.byteLength(text));
  }
  return request(`${srv.adminUrl}${p}`, { method, headers, body: text });
}

/** The web worker's solver, loaded as the browser would run it. */
function loadWorker() {
  const posted = [];
  const self = { postMessage: (m) => posted.push(m) };
  const ctx = vm.createContext({ self, TextEncoder, setTimeout, Date, Int32Array, Uint8Array, String, Number });
  vm.runInContext(fs.readFileSync('web/js/pow-worker.js', 'utf8'), ctx);
  return { self, posted };
}

function solveWithWorker(challenge, bits) {
  const { self, posted } = loadWorker();
  self.onmessage({ data: { challenge, bits } });
  return waitUntil(() => posted.find((m) => m.nonce !== undefined), {
    timeout: 20000,
    what: 'the worker to find a nonce',
  }).then((m) => m.nonce);
}

function leadingZeroBits(buf) {
  let n = 0;
  for (const byte of buf) {
    if (byte === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(byte) - 24;
  }
  return n;
}

test('a rule of 3 per second refuses the 4th request from one address, not another address', async (t) => {
  const srv = await startServer({ t, set: { 'shield.rules': 'anon:addr:3/1s' } });
  const url = `${srv.url}/api/pow/challenge?scope=register`;
  for (let i = 0; i < 3; i++) {
    const r = await request(url);
    assert.equal(r.status, 200, `request ${i + 1}: ${r.text()}`);
    assert.equal(r.headers['x-ratelimit-limit'], undefined); // only on refusals
  }
  const r4 = await request(url);
  assert.equal(r4.status, 429);
  assert.equal(r4.json().error.code, 'rate_limited');
  const retry = Number(r4.headers['retry-after']);
  assert.ok(retry >= 1 && retry <= 1, `Retry-After ${r4.headers['retry-after']}`);
  assert.equal(r4.headers['x-ratelimit-limit'], '3');
  assert.equal(r4.headers['x-ratelimit-remaining'], '0');
  assert.ok(Number(r4.headers['x-ratelimit-reset']) >= 1);
  // another address is not affected
  const other = await request(url, { localAddress: '127.0.0.2' });
  assert.equal(other.status, 200);
  // ops routes are never limited
  for (let i = 0; i < 5; i++) assert.equal((await request(`${srv.url}/healthz`)).status, 200);
  // after Retry-After the first address passes again
  await new Promise((r) => setTimeout(r, retry * 1000));
  assert.equal((await request(url)).status, 200);
  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_rate_limited_total\{class="anon"\} [1-9]/);
  assert.match(m, /gatehouse_shield_limit_decisions_total\{rule="anon:addr:3\/1s",result="refused"\} 1\b/);
  assert.match(m, /gatehouse_shield_requests_total\{class="anon"\} [1-9]/);
});

test('a dry-run rule counts what it would refuse and refuses nothing', async (t) => {
  const srv = await startServer({ t, set: { 'shield.rules': 'anon:global:2/1m:dry_run' } });
  for (let i = 0; i < 5; i++) {
    const r = await request(`${srv.url}/api/pow/challenge`);
    assert.equal(r.status, 200);
  }
  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_limit_decisions_total\{rule="anon:global:2\/1m",result="would_refuse"\} 3\b/);
});

test('a blocked CIDR is closed at accept without a response', async (t) => {
  const dir = tempDir();
  const list = path.join(dir, 'drop.txt');
  fs.writeFileSync(list, '; Spamhaus DROP style\n127.0.0.4/32 ; SBL1\nnot-a-cidr\n# comment\n127.0.9.0/24\n');
  const srv = await startServer({ t, set: { 'shield.block_file': list } });
  // the malformed line is reported with its number, the rest loaded
  await srv.waitStderr(/drop\.txt:3: malformed entry 'not-a-cidr'/); // the log's thread writes it
  let r = await rawExchange(srv.port, GET_HEALTHZ, { localAddress: '127.0.0.4' });
  assert.equal(r.data.length, 0, `got ${r.text}`);
  assert.ok(r.closed || r.error);
  r = await rawExchange(srv.port, GET_HEALTHZ, { localAddress: '127.0.9.77' });
  assert.equal(r.data.length, 0);
  r = await rawExchange(srv.port, GET_HEALTHZ, { localAddress: '127.0.0.5' });
  assert.match(r.text, /^HTTP\/1\.1 200/);

  // at run time through the admin API
  let a = await admin(srv, 'POST', '/admin/v1/lists/block', { cidr: '127.0.0.5' });
  assert.equal(a.status, 201, a.text());
  assert.deepEqual(a.json(), { cidr: '127.0.0.5/32', added: true });
  r = await rawExchange(srv.port, GET_HEALTHZ, { localAddress: '127.0.0.5' });
  assert.equal(r.data.length, 0);
  a = await admin(srv, 'GET', '/admin/v1/lists');
  assert.equal(a.status, 200);
  const lists = a.json();
  assert.equal(lists.block.file_entries, 2);
  assert.equal(lists.block.bad_lines, 1);
  assert.deepEqual(lists.block.runtime, ['127.0.0.5/32']);
  a = await admin(srv, 'DELETE', '/admin/v1/lists/block', { cidr: '127.0.0.5/32' });
  assert.equal(a.status, 200);
  r = await rawExchange(srv.port, GET_HEALTHZ, { localAddress: '127.0.0.5' });
  assert.match(r.text, /^HTTP\/1\.1 200/);
  a = await admin(srv, 'DELETE', '/admin/v1/lists/block', { cidr: '127.0.0.5/32' });
  assert.equal(a.status, 404);
  a = await admin(srv, 'POST', '/admin/v1/lists/block', { cidr: '300.1.2.3/8' });
  assert.equal(a.status, 400);
  a = await request(`${srv.adminUrl}/admin/v1/lists`);
  assert.equal(a.status, 401);

  // and through gatehouse ctl
  const ctl = (args) => runGatehouse(['ctl', '--admin', srv.adminUrl, '--token', adminToken(srv.dataDir), ...args]);
  let out = await ctl(['block', '127.0.0.6/31']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /127\.0\.0\.6\/31 blocked/);
  r = await rawExchange(srv.port, GET_HEALTHZ, { localAddress: '127.0.0.7' });
  assert.equal(r.data.length, 0);
  out = await ctl(['lists']);
  assert.equal(out.code, 0);
  assert.match(out.stdout, /block list: 2 entries from .*drop\.txt \(1 malformed lines skipped\)/);
  assert.match(out.stdout, /127\.0\.0\.6\/31 \(added at run time\)/);
  out = await ctl(['unblock', '127.0.0.6/31']);
  assert.equal(out.code, 0);
  out = await ctl(['unblock', '127.0.0.6/31']);
  assert.equal(out.code, 1);
  out = await ctl(['block']);
  assert.equal(out.code, 2);
  const m = await srv.metrics();
  assert.match(m, /gatehouse_connections_refused_total\{limit="blocked"\} [4-9]/);
});

test('proof of work: issue, solve, verify once, refuse the replay', async (t) => {
  const srv = await startServer({ t, set: { 'shield.pow_bits': '10', 'shield.rules': '' } });
  let r = await request(`${srv.url}/api/pow/challenge?scope=register`);
  assert.equal(r.status, 200);
  assert.equal(r.headers['cache-control'], 'no-store');
  const c = r.json();
  assert.equal(typeof c.challenge, 'string');
  assert.match(c.challenge, /^[\x21-\x7e]+$/);
  assert.equal(c.bits, 10);
  assert.ok(c.expires_at > Date.now() / 1000 + 60);
  assert.equal((await request(`${srv.url}/api/pow/challenge?scope=admin`)).status, 400);

  // the browser's solver finds it; SHA-256 agrees
  const nonce = await solveWithWorker(c.challenge, c.bits);
  assert.match(nonce, /^\d+$/);
  const h = crypto.createHash('sha256').update(`${c.challenge}:${nonce}`).digest();
  assert.ok(leadingZeroBits(h) >= c.bits);

  // the same solution in another scope is refused, and does not burn it
  let v = await admin(srv, 'POST', '/admin/v1/pow/verify', { scope: 'login', challenge: c.challenge, nonce });
  assert.deepEqual(v.json(), { valid: false, result: 'wrong scope' });
  // from another network
  v = await admin(srv, 'POST', '/admin/v1/pow/verify', {
    scope: 'register',
    challenge: c.challenge,
    nonce,
    client: '192.0.2.1',
  });
  assert.equal(v.json().result, 'wrong network');
  v = await admin(srv, 'POST', '/admin/v1/pow/verify', { scope: 'register', challenge: c.challenge, nonce });
  assert.deepEqual(v.json(), { valid: true, result: 'ok' });
  v = await admin(srv, 'POST', '/admin/v1/pow/verify', { scope: 'register', challenge: c.challenge, nonce });
  assert.deepEqual(v.json(), { valid: false, result: 'replayed' });
  // tampered
  const forged = c.challenge.replace('.10.', '.1.');
  v = await admin(srv, 'POST', '/admin/v1/pow/verify', { scope: 'register', challenge: forged, nonce });
  assert.equal(v.json().result, 'bad signature');

  // the C solver (bench/tools/pow_solve) agrees with the JS one
  const solver = path.join(path.dirname(BIN), 'pow_solve');
  if (fs.existsSync(solver)) {
    r = await request(`${srv.url}/api/pow/challenge?scope=sms`);
    const c2 = r.json();
    const n2 = execFileSync(solver, [c2.challenge, String(c2.bits)], { encoding: 'utf8' }).trim();
    assert.equal(await solveWithWorker(c2.challenge, c2.bits), n2);
    v = await admin(srv, 'POST', '/admin/v1/pow/verify', { scope: 'sms', challenge: c2.challenge, nonce: Number(n2) });
    assert.deepEqual(v.json(), { valid: true, result: 'ok' });
  }
  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_pow_verifications_total\{result="replayed"\} 1\b/);
});

test('the attack level is pinned, shown and unpinned by operators', async (t) => {
  const srv = await startServer({ t, set: { 'shield.level_interval': '200ms' } });
  let r = await admin(srv, 'GET', '/admin/v1/level');
  assert.equal(r.status, 200);
  assert.equal(r.json().level, 'normal');
  r = await admin(srv, 'PUT', '/admin/v1/level', { level: 'under_attack', for_seconds: 3600 });
  assert.equal(r.status, 200);
  let j = r.json();
  assert.equal(j.level, 'under_attack');
  assert.equal(j.pinned, true);
  assert.ok(j.pinned_for_ms > 3590000);
  assert.equal(j.policy.mode, 'restricted');
  assert.equal(j.policy.allowed_regions, 'CN');
  assert.equal(j.policy.pow_bits, 20);
  // the challenge difficulty follows the level
  r = await request(`${srv.url}/api/pow/challenge?scope=register`);
  assert.equal(r.json().bits, 20);
  assert.equal((await admin(srv, 'PUT', '/admin/v1/level', { level: 'panic' })).status, 400);
  r = await admin(srv, 'DELETE', '/admin/v1/level');
  assert.equal(r.json().level, 'normal');
  assert.equal(r.json().pinned, false);

  const ctl = (args) => runGatehouse(['ctl', '--admin', srv.adminUrl, '--token', adminToken(srv.dataDir), ...args]);
  let out = await ctl(['level', 'pin', 'elevated', '--for', '2h']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /level +elevated/);
  assert.match(out.stdout, /pinned +for 7[12]\d\d s more/);
  out = await ctl(['level', 'show']);
  assert.match(out.stdout, /level +elevated/);
  assert.match(out.stdout, /policy +open, regions '', pow 16 bits/);
  out = await ctl(['level', 'unpin']);
  assert.match(out.stdout, /level +normal/);
  out = await ctl(['level', 'pin', 'sideways']);
  assert.equal(out.code, 1);
  await waitUntil(() => /attack level normal -> elevated \(pin\)/.test(srv.stderr()), { what: 'the audit line' });
  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_attack_level_changes_total [4-9]/);
  assert.match(m, /gatehouse_shield_attack_level 0/);
});

test('a registration flood raises the level and calm brings it back', async (t) => {
  // register-class traffic the limiter lets through, from 30 /24s (the
  // limiter's own refusals are never attack evidence, and one /24 cannot
  // raise the level: issue 10, item 3)
  const srv = await startServer({
    t,
    set: {
      'shield.level_interval': '300ms',
      'shield.level_calm_periods': '2',
      'shield.level_thresholds': 'register_rate:5:1000',
      'shield.level_min_events': '5',
    },
  });
  const flood = [];
  for (let i = 0; i < 30; i++) {
    const body = JSON.stringify({ phone: `+86138001${String(i).padStart(5, '0')}`, purpose: 'register' });
    flood.push(
      request(`${srv.url}/api/auth/sms-code`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
        body,
        localAddress: `127.0.${i + 1}.1`,
      }),
    );
  }
  await Promise.all(flood);
  await waitUntil(async () => (await admin(srv, 'GET', '/admin/v1/level')).json().level === 'elevated', {
    timeout: 5000,
    what: 'the level to rise',
  });
  await waitUntil(async () => (await admin(srv, 'GET', '/admin/v1/level')).json().level === 'normal', {
    timeout: 5000,
    what: 'the level to fall after calm',
  });
  await srv.waitStderr(/attack level normal -> elevated \(signals: register_rate/);
});

test('a PROXY header from a trusted balancer sets the client address; from others it is refused', async (t) => {
  const srv = await startServer({ t, set: { 'shield.proxy_protocol_from': '127.0.0.3/32' } });
  const a = await admin(srv, 'POST', '/admin/v1/lists/block', { cidr: '192.0.2.9' });
  assert.equal(a.status, 201);
  const v1 = (src) => `PROXY TCP4 ${src} 127.0.0.1 40000 ${srv.port}\r\n${GET_HEALTHZ}`;
  // the balancer is 127.0.0.3 (the harness itself checks /healthz from 127.0.0.1)
  const lb = { localAddress: '127.0.0.3' };
  let r = await rawExchange(srv.port, v1('192.0.2.10'), lb);
  assert.match(r.text, /^HTTP\/1\.1 200/);
  // the reported address is the one the block list sees
  r = await rawExchange(srv.port, v1('192.0.2.9'), lb);
  assert.equal(r.data.length, 0, r.text);
  // a trusted balancer that forgets the header is cut off
  r = await rawExchange(srv.port, GET_HEALTHZ, lb);
  assert.doesNotMatch(r.text, /^HTTP\/1\.1 200/);
  // an untrusted peer's PROXY header is not believed
  r = await rawExchange(srv.port, v1('192.0.2.10'));
  assert.doesNotMatch(r.text, /^HTTP\/1\.1 200/);
  const l = await admin(srv, 'GET', '/admin/v1/lists');
  assert.equal(l.json().proxy_protocol_from, '127.0.0.3/32');
});
