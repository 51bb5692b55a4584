// Black-box tests of the shield wired to accounts and the status page
// (issue 4, second round): proof of work required for registration in the
// elevated level, solved and verified once; a registration flood from
// many loopback /24s raises the attack level, which installs its
// registration preset, opens the status page's incident (once the level
// held for shield.incident_after) and moves the Registration component,
// while a signed-in user's /api/me keeps answering 200; calm brings
// everything back. Attack evidence must be broad (issue 10, item 3): the
// floods here come from many /24s; level-breadth.test.mjs shows that one
// address or one /24 cannot raise the level.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/attack-level.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { adminToken, request, runGatehouse, sleep, startServer, waitUntil } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, getCode, outbox, registerUser } from './lib/accounts.mjs';

const PW = 'correct horse battery';

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

/** A challenge of scope for this client, solved with a plain SHA-256 loop. */
async function solved(srv, scope, localAddress) {
  const r = await request(`${srv.url}/api/pow/challenge?scope=${scope}`, { localAddress });
  assert.equal(r.status, 200, r.text());
  const { challenge, bits } = r.json();
  for (let n = 0; n < 1 << 26; n++) {
    const h = crypto.createHash('sha256').update(`${challenge}:${n}`).digest();
    if (leadingZeroBits(h) >= bits) return { challenge, nonce: String(n), bits };
  }
  throw new Error('no nonce found');
}

const admin = (srv, method, p, body) => api(srv.adminUrl, method, p, { body, bearer: adminToken(srv.dataDir) });

async function component(srv, id) {
  const r = await request(`${srv.url}/api/v2/components.json`);
  return r.json().components.find((c) => c.id === id || c.name.toLowerCase().startsWith(id)).status;
}

test('elevated level: registration needs proof of work; a solution is used once', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'shield.elevated_pow_bits': '8', 'shield.rules': '' } });
  // normal: no proof needed (the harness registers without one)
  await registerUser(srv, cnPhone());
  const ctl = (args) => runGatehouse(['ctl', '--admin', srv.adminUrl, '--token', adminToken(srv.dataDir), ...args]);
  const out = await ctl(['level', 'pin', 'elevated', '--for', '1h']);
  assert.equal(out.code, 0, out.stderr);

  // the preset is the effective policy, published to clients
  let pol = await api(srv.url, 'GET', '/api/policy');
  assert.equal(pol.json.mode, 'open');
  assert.equal(pol.json.pow_bits, 8);
  let full = await admin(srv, 'GET', '/admin/v1/policy');
  assert.equal(full.json.source, 'level elevated');

  // sms-code for registration: scope sms
  const phone = cnPhone();
  let r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'pow_required');
  assert.match(r.json.error.message, /GET \/api\/pow\/challenge\?scope=sms/);
  // login codes need none
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'login' } });
  assert.equal(r.status, 202);
  const smsPow = await solved(srv, 'sms');
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register', pow: smsPow } });
  assert.equal(r.status, 202, r.text);
  // replayed: refused, and the message says why
  r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register', pow: smsPow } });
  assert.equal(r.status, 403);
  assert.match(r.json.error.message, /replayed/);

  // a fresh code (one live code per number: the newest counts)
  const code = await getCodeWithPow(srv, phone, await solved(srv, 'sms'));

  // register without proof: 403 pow_required with how to get one; the code is not spent
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code, password: PW } });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'pow_required');
  assert.equal(r.json.error.param, 'pow');
  assert.match(r.json.error.message, /scope=register/);
  // a bad nonce, a proof of the wrong scope
  const regPow = await solved(srv, 'register');
  r = await api(srv.url, 'POST', '/api/auth/register', {
    body: { phone, code, password: PW, pow: { challenge: regPow.challenge, nonce: 'x' } },
  });
  assert.equal(r.status, 403);
  const wrongScope = await solved(srv, 'sms');
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code, password: PW, pow: wrongScope } });
  assert.equal(r.status, 403);
  assert.match(r.json.error.message, /wrong scope/);
  // solved: 201
  const jar = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/register', { jar, body: { phone, code, password: PW, pow: regPow } });
  assert.equal(r.status, 201, r.text);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 200);
  // the same solution again (another number): replayed
  const phone2 = cnPhone();
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: phone2, code: '123456', password: PW, pow: regPow } });
  assert.equal(r.status, 403);
  assert.match(r.json.error.message, /replayed/);

  // an operator pin of the policy wins over the level's preset
  r = await admin(srv, 'PUT', '/admin/v1/policy', { mode: 'open', pow_bits: 0, for_seconds: 3600 });
  assert.equal(r.status, 200, r.text);
  pol = await api(srv.url, 'GET', '/api/policy');
  assert.equal(pol.json.pow_bits, 0);
  await registerUser(srv, cnPhone());
  // unpinning the level keeps the operator's pin
  assert.equal((await ctl(['level', 'unpin'])).code, 0);
  pol = await api(srv.url, 'GET', '/api/policy');
  assert.equal(pol.json.pow_bits, 0);
  full = await admin(srv, 'GET', '/admin/v1/policy');
  assert.equal(full.json.source, 'operator (temporary)');

  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_pow_verifications_total\{result="ok"\} [2-9]/);
  assert.match(m, /gatehouse_shield_pow_verifications_total\{result="replayed"\} 2\b/);
  assert.match(m, /gatehouse_identity_policy_changes_total\{why="level"\} [1-9]/);
  await srv.stop();
});

/** sms-code with a proof, then the code from the outbox. */
async function getCodeWithPow(srv, phone, pow) {
  const before = outbox(srv.dataDir).length;
  const r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register', pow } });
  assert.equal(r.status, 202, r.text);
  const msg = await waitUntil(() => outbox(srv.dataDir).slice(before).find((x) => x.to === phone && x.purpose === 'register'), {
    what: 'the SMS',
  });
  return msg.code;
}

test('a registration flood raises the level, the preset and the status incident follow; calm undoes them; users keep working', async (t) => {
  const srv = await startServer({
    t,
    set: {
      ...FAST,
      'shield.rules': 'register:addr:1000/1m',
      'shield.level_interval': '400ms',
      'shield.level_calm_periods': '5',
      'shield.level_thresholds': 'register_rate:8:25',
      // breadth: 8 /24s and 5 events a period (of 400 ms) count; the
      // incident follows a level that held 1 s
      'shield.level_min_events': '5',
      'shield.incident_after': '1s',
      'shield.elevated_pow_bits': '6',
      'shield.attack_pow_bits': '8',
      'status.auto_resolve_delay': '1s',
    },
  });
  const user = cnPhone();
  const { jar } = await registerUser(srv, user);
  assert.equal(await component(srv, 'registration'), 'operational');
  let lvl = await admin(srv, 'GET', '/admin/v1/level');
  assert.equal(lvl.json.level, 'normal');

  // a signed-in user polls /api/me all along
  let stop = false;
  const me = { ok: 0, bad: [] };
  const poller = (async () => {
    while (!stop) {
      const r = await api(srv.url, 'GET', '/api/me', { jar, timeout: 5000 }).catch((e) => ({ status: String(e) }));
      if (r.status === 200) me.ok++;
      else me.bad.push(r.status);
      await sleep(50);
    }
  })();

  // the flood: sms-code and register with wrong codes from 64 /24s of
  // 127.1.0.0/16 in turn, 8 at a time, bounded in count and time; it goes
  // on while the under-attack state is checked, then stops
  const levels = new Set();
  let sent = 0;
  let stopFlood = false;
  const statuses = {};
  const deadline = Date.now() + 30000;
  const worker = async () => {
    while (!stopFlood && sent < 1500 && Date.now() < deadline) {
      const n = sent++;
      const addr = `127.1.${n & 63}.${1 + ((n >> 6) & 127)}`;
      const body = n % 2 ? { phone: cnPhone(), code: '000000', password: PW } : { phone: cnPhone(), purpose: 'register' };
      const p = n % 2 ? '/api/auth/register' : '/api/auth/sms-code';
      const r = await api(srv.url, 'POST', p, { body, localAddress: addr, timeout: 5000 }).catch(() => ({ status: 'error' }));
      const key = `${r.status}${r.json && r.json.error ? ' ' + r.json.error.code : ''}`;
      statuses[key] = (statuses[key] || 0) + 1;
      await sleep(5);
    }
  };
  const flood = Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(worker));
  await waitUntil(
    async () => {
      const l = (await admin(srv, 'GET', '/admin/v1/level')).json.level;
      levels.add(l);
      return l === 'under_attack';
    },
    { timeout: 20000, every: 100, what: `the level to rise to under_attack (answers so far: ${JSON.stringify(statuses)})` },
  );

  // under attack: the preset is in force (restricted to CN, 8 bits), the
  // status page shows the incident and the Registration component
  let pol = await api(srv.url, 'GET', '/api/policy');
  assert.equal(pol.json.mode, 'restricted');
  assert.deepEqual(pol.json.allowed_regions, ['CN']);
  assert.equal(pol.json.pow_bits, 8);
  let r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: '+1 415 555 2671', code: '000000', password: PW } });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'registration_restricted');
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: cnPhone(), code: '000000', password: PW } });
  assert.equal(r.json.error.code, 'pow_required');
  const unresolved = await waitUntil(
    async () => {
      const u = (await request(`${srv.url}/api/v2/incidents/unresolved.json`)).json();
      return u.incidents.length ? u : null;
    },
    { what: 'the automatic incident' },
  );
  assert.equal(unresolved.incidents.length, 1);
  assert.equal(await component(srv, 'registration'), 'degraded_performance');
  const page = await request(`${srv.url}/status?lang=en`);
  assert.equal(page.status, 200);
  assert.ok(page.text().includes(unresolved.incidents[0].name));

  stopFlood = true;
  await flood;
  assert.ok(!statuses.error, `flood answers: ${JSON.stringify(statuses)}`);

  // calm: the level falls step by step, the preset goes, the incident resolves
  await waitUntil(async () => (await admin(srv, 'GET', '/admin/v1/level')).json.level === 'normal', {
    timeout: 15000,
    what: 'the level to fall back to normal',
  });
  pol = await api(srv.url, 'GET', '/api/policy');
  assert.equal(pol.json.mode, 'open');
  assert.equal(pol.json.pow_bits, 0);
  await waitUntil(async () => (await component(srv, 'registration')) === 'operational', { what: 'Registration operational' });
  await waitUntil(async () => (await request(`${srv.url}/api/v2/incidents/unresolved.json`)).json().incidents.length === 0, {
    timeout: 10000,
    what: 'the incident to resolve',
  });
  const all = (await request(`${srv.url}/api/v2/incidents.json`)).json().incidents;
  assert.equal(all[0].status, 'resolved');
  // registration works again without a proof
  await registerUser(srv, cnPhone());

  stop = true;
  await poller;
  assert.deepEqual(me.bad, [], `/api/me answered ${me.ok} × 200 and ${JSON.stringify(me.bad)}`);
  assert.ok(me.ok > 20, `/api/me polled ${me.ok} times`);

  // audited and counted
  await waitUntil(() => /"event":"audit".*attack_level/.test(srv.stderr()), { what: 'the audit line of the level' });
  const log = srv.stderr();
  assert.match(log, /attack level normal -> (elevated|under_attack) \(signals: register_rate/);
  assert.match(log, /registration policy now restricted/);
  const m = await srv.metrics();
  assert.match(m, /gatehouse_identity_policy_changes_total\{why="level"\} [2-9]/);
  assert.match(m, /gatehouse_shield_attack_level_changes_total [2-9]/);
  await srv.stop();
});

test('shedding: a backed-up register queue refuses registrations 503, never logins', async (t) => {
  // one slow hashing thread, a tiny queue-delay target: a burst of
  // registrations backs the register queue up past 1.5 x target
  const srv = await startServer({
    t,
    set: {
      ...FAST,
      'identity.argon2_ops': '6',
      'identity.argon2_mem': '64m',
      'identity.hash_threads': '1',
      'shield.shed_queue_delay': '100ms',
      'shield.rules': '',
    },
  });
  const user = cnPhone();
  await registerUser(srv, user);
  // codes for a burst of registrations
  const phones = Array.from({ length: 24 }, () => cnPhone());
  const codes = [];
  for (const p of phones) codes.push(await getCode(srv, p, 'register'));
  // spread over 0.6 s: the queue delay builds up, then sheds
  const regs = [];
  for (let i = 0; i < phones.length; i++) {
    regs.push(api(srv.url, 'POST', '/api/auth/register', { body: { phone: phones[i], code: codes[i], password: PW }, timeout: 30000 }));
    await sleep(25);
  }
  const logins = [];
  for (let i = 0; i < 3; i++) {
    logins.push(await api(srv.url, 'POST', '/api/auth/login', { body: { phone: user, password: PW }, timeout: 30000 }));
    await sleep(100);
  }
  const rs = await Promise.all(regs);
  const counts = {};
  for (const r of rs) counts[r.status] = (counts[r.status] || 0) + 1;
  for (const l of logins) assert.equal(l.status, 200, `login during the burst: ${l.status} ${l.text}`);
  assert.ok(counts[503] > 0, `some registrations shed: ${JSON.stringify(counts)}`);
  assert.ok(counts[201] > 0, `some registrations passed: ${JSON.stringify(counts)}`);
  const shed = rs.find((r) => r.status === 503);
  assert.equal(shed.json.error.code, 'busy');
  assert.ok(Number(shed.headers['retry-after']) >= 1);
  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_shed_total\{class="register"\} [1-9]/);
  assert.match(m, /gatehouse_shield_shed_total\{class="login"\} 0\b/);
  await srv.stop();
});

test('credential stuffing from a /16: a user signing in from a known address keeps signing in; the level rises; suspect sources need proof of work', async (t) => {
  const srv = await startServer({
    t,
    workers: 1,
    set: {
      ...FAST,
      // a hash that costs something, on two threads: a flood fills the pool
      'identity.argon2_mem': '16m',
      'identity.hash_threads': '2',
      'shield.level_interval': '300ms',
      'shield.level_calm_periods': '100',
      'shield.elevated_pow_bits': '8',
      'shield.attack_pow_bits': '8',
      // not under test here: the persisted sms-only switch after many failures
      'identity.sms_only_after': '100000',
      // a hashed login costs something here: fewer judged failures per
      // 300 ms period than the defaults ask; still from several /24s
      'shield.level_min_events': '4',
      'shield.level_min_prefixes': '4',
    },
  });
  const home = '127.2.0.7';
  const user = cnPhone();
  await registerUser(srv, user, PW, { localAddress: home }); // the address is now known
  // the flood: wrong passwords, unknown numbers and the user's own number,
  // from 16 /24s of 127.3.0.0/16 in turn, 48 at a time (a single /24
  // could not raise the level: issue 10, item 3)
  const statuses = {};
  let sent = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && sent < 1200) {
      const i = sent++;
      const localAddress = `127.3.${i & 15}.${(i >> 4) & 255}`;
      const phone = i % 4 === 0 ? user : cnPhone();
      const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: `wrong-${i}` }, localAddress, timeout: 30000 }).catch(() => ({ status: 'error' }));
      statuses[r.status] = (statuses[r.status] || 0) + 1;
    }
  };
  const flood = Promise.all(Array.from({ length: 48 }, worker));
  await sleep(300);
  // meanwhile the user signs in from home, again and again, without proof of work
  const times = [];
  for (let k = 0; k < 6; k++) {
    const t0 = Date.now();
    const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: user, password: PW }, localAddress: home, timeout: 30000 });
    times.push(Date.now() - t0);
    assert.equal(r.status, 200, `login ${k} during the flood: ${r.status} ${r.text}`);
    await sleep(150);
  }
  stop = true;
  await flood;
  t.diagnostic(`flood: ${JSON.stringify(statuses)}; user logins ms: ${times.join(' ')}`);
  // the spray was turned away before hashing (suspect tier shed, proof of work)
  assert.ok((statuses[503] || 0) + (statuses[403] || 0) > 0, JSON.stringify(statuses));
  // the level rose on failing logins alone (no registration traffic)
  const lv = await admin(srv, 'GET', '/admin/v1/level');
  assert.notEqual(lv.json.level, 'normal', JSON.stringify(lv.json));
  assert.match(lv.json.reason, /login_fail/);
  // a suspect /24 now needs proof of work, whether the number exists or not
  const known = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: user, password: 'wrong' }, localAddress: '127.3.0.200' });
  const unknown = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: cnPhone(), password: 'wrong' }, localAddress: '127.3.0.201' });
  assert.equal(known.status, 403, known.text);
  assert.equal(unknown.status, 403, unknown.text);
  assert.equal(known.json.error.code, 'pow_required');
  assert.equal(known.text.replace(/\d+ bits/, ''), unknown.text.replace(/\d+ bits/, ''));
  // with a solution it is judged like any login (and fails: wrong password)
  const pow = await solved(srv, 'login', '127.3.0.202');
  const judged = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: user, password: 'wrong', pow }, localAddress: '127.3.0.202', timeout: 30000 });
  assert.ok([401, 429].includes(judged.status), `${judged.status} ${judged.text}`);
  // and the user still signs in from home without one
  const again = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: user, password: PW }, localAddress: home, timeout: 30000 });
  assert.equal(again.status, 200, again.text);
  const m = await srv.metrics();
  assert.match(m, /gatehouse_shield_shed_total\{class="login"\} 0\b/);
  await srv.stop();
});
