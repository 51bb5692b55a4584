// Black-box tests of `gatehouse ctl` (issue 6, operator tools): every
// command against a live server, with its human output and its --json;
// a wrong token (exit 1 with the server's message), unknown commands and
// bad arguments of every command family (exit 2), a server that is down
// (exit 3); and the account controls end to end: a disabled user cannot
// sign in (the same answer as a wrong password) and their key and session
// stop at once; enable lets them sign in again; the state survives a
// restart.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/ctl.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, childEnv, freePorts, runGatehouse, sleep, startServer, tempDir } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, outbox, registerUser } from './lib/accounts.mjs';

const PASSWORD = 'correct horse battery';
const LEVELS = ['normal', 'elevated', 'under_attack'];

let srv; // one server for the command tests
let deadPort; // where the configured upstream does not listen

function ctl(s, args, { token } = {}) {
  return runGatehouse(['ctl', '--admin', `127.0.0.1:${s.adminPort}`, '--token', token ?? s.adminToken(), ...args]);
}

/** Runs ctl, asserts exit 0, returns stdout. */
async function ok(args, s = srv) {
  const r = await ctl(s, args);
  assert.equal(r.code, 0, `ctl ${args.join(' ')}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stderr, '', `ctl ${args.join(' ')} wrote to stderr: ${r.stderr}`);
  return r.stdout;
}

/** Runs ctl --json, asserts exit 0, returns the parsed document. */
async function okJson(args, s = srv) {
  const out = await ok(['--json', ...args], s);
  try {
    return JSON.parse(out);
  } catch {
    assert.fail(`ctl --json ${args.join(' ')}: not JSON:\n${out}`);
  }
}

/** Runs ctl and asserts the exit code; returns the result. */
async function fails(args, code, re, s = srv) {
  const r = await ctl(s, args);
  assert.equal(r.code, code, `ctl ${args.join(' ')}: exit ${r.code}, wanted ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  if (re) assert.match(r.stderr, re, `ctl ${args.join(' ')}: stderr`);
  assert.equal(r.stdout, '', `ctl ${args.join(' ')}: nothing on stdout when it fails`);
  return r;
}

before(async () => {
  deadPort = (await freePorts(1))[0];
  const dir = tempDir('gh-ctl-');
  const ups = path.join(dir, 'upstreams.ini');
  fs.writeFileSync(ups, `[upstream dead-a]\nmodel = dead-model\nbase_url = http://127.0.0.1:${deadPort}/v1\nconnect_timeout = 1s\n`);
  srv = await startServer({
    name: 'ctl-commands',
    set: { ...FAST, 'gateway.upstreams_file': ups, 'gateway.breaker_failures': '1', 'gateway.breaker_open': '1h' },
  });
  // the computed level follows live signals (a slow sanitizer build's loop
  // lag, the failed sign-ins below): hold it at normal so that registration
  // needs no proof of work; the level test pins and unpins on its own
  await ok(['level', 'pin', 'normal']);
});

after(async () => {
  if (srv) await srv.stop();
});

test('health', async () => {
  assert.equal(await ok(['health']), 'ok\n');
  assert.deepEqual(await okJson(['health']), { status: 'ok' });
});

test('users find/show and keys list show an account with a masked number', async () => {
  const phone = cnPhone();
  const { jar, user } = await registerUser(srv, phone);
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'ctl test' }, jar });
  assert.equal(k.status, 201, k.text);
  // last use of the key shows up in the listing
  assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 200);

  const masked = phone.slice(0, 3) + '*'.repeat(phone.length - 5) + phone.slice(-2);
  // find accepts the international format with spaces
  const spaced = `${phone.slice(0, 3)} ${phone.slice(3, 6)} ${phone.slice(6, 10)} ${phone.slice(10)}`;
  const human = await ok(['users', 'find', spaced]);
  assert.match(human, new RegExp(`^id +${user.id}$`, 'm'));
  assert.match(human, new RegExp(`^phone +${masked.replace(/[+*]/g, '\\$&')} \\(masked\\)$`, 'm'));
  assert.match(human, /^region +CN \(\+86\)$/m);
  assert.match(human, /^status +active$/m);
  assert.match(human, /^sessions +1 live$/m);
  assert.match(human, /^keys +1 live$/m);
  assert.ok(!human.includes(phone.slice(3, -2)), 'the full number never appears');

  const j = await okJson(['users', 'find', phone]);
  assert.equal(j.id, user.id);
  assert.equal(j.phone_masked, masked);
  assert.equal(j.phone, undefined, 'no number in clear');
  assert.equal(j.region, 'CN');
  assert.equal(j.calling_code, 86);
  assert.equal(j.disabled, false);
  assert.equal(j.disabled_at, null);
  assert.equal(j.sessions, 1);
  assert.equal(j.keys, 1);
  assert.ok(!JSON.stringify(j).includes(phone.slice(3, -2)));

  const show = await okJson(['users', 'show', String(user.id)]);
  assert.deepEqual(show, j);
  assert.match(await ok(['users', 'show', String(user.id)]), /^failed logins +0$/m);

  const keys = await okJson(['keys', 'list', '--user', String(user.id)]);
  assert.equal(keys.user_id, user.id);
  assert.equal(keys.keys.length, 1);
  const key = keys.keys[0];
  assert.equal(key.id, k.json.id);
  assert.equal(key.name, 'ctl test');
  assert.equal(key.prefix, k.json.prefix);
  assert.equal(key.revoked, false);
  assert.equal(key.revoked_at, null);
  assert.ok(key.created_at && key.last_used_at, 'created and last used');
  assert.ok(!JSON.stringify(keys).includes(k.json.key), 'never the key itself');
  const table = await ok(['keys', 'list', '--user', String(user.id)]);
  assert.match(table, /^ID +NAME +PREFIX +CREATED +LAST USED +REVOKED$/m);
  assert.match(table, new RegExp(`^${key.id} +ctl test +${key.prefix} +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d{4}-.* +no$`, 'm'));

  // not found: exit 1 with the server's message
  await fails(['users', 'find', '+8613900000000'], 1, /404: no account with the number \+86\*+00/);
  await fails(['users', 'show', '987654'], 1, /404: no user with id 987654/);
  await fails(['keys', 'list', '--user', '987654'], 1, /404: no user with id 987654/);
  await fails(['keys', 'revoke', '987654'], 1, /404: no key with id 987654/);
  // a number the phone library refuses: the server says why
  await fails(['users', 'find', '+1900555'], 1, /400: phone: /);
});

test('keys revoke stops a key at once; a second revoke says so', async () => {
  const { jar, user } = await registerUser(srv, cnPhone());
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'to revoke' }, jar });
  assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 200);
  const out = await ok(['keys', 'revoke', String(k.json.id)]);
  assert.equal(out, `key ${k.json.id} (${k.json.prefix}…, user ${user.id}) revoked\n`);
  assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 401);
  const again = await okJson(['keys', 'revoke', String(k.json.id)]);
  assert.equal(again.revoked_now, false);
  assert.equal(again.key.id, k.json.id);
  assert.equal(again.key.revoked, true);
  assert.match(await ok(['keys', 'revoke', String(k.json.id)]), /was already revoked at \d{4}-/);
  const list = await okJson(['keys', 'list', '--user', String(user.id)]);
  assert.equal(list.keys[0].revoked, true);
  assert.ok(list.keys[0].revoked_at);
  assert.match(await ok(['keys', 'list', '--user', String(user.id)]), / to revoke .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$/);
  // the user's own listing no longer shows it
  assert.deepEqual((await api(srv.url, 'GET', '/api/keys', { jar })).json.data, []);
});

test('a disabled user cannot sign in, their session and key stop; enable lets them in again', async () => {
  const phone = cnPhone();
  const { jar, user } = await registerUser(srv, phone);
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'before' }, jar });
  assert.equal(k.status, 201);
  assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 200);

  const out = await ok(['users', 'disable', String(user.id)]);
  assert.match(out, new RegExp(`^user ${user.id} disabled`));
  assert.match(out, /^status +disabled since \d{4}-/m);
  assert.match(out, /^sessions +0 live$/m);

  // at once, on every worker (the next requests use new connections)
  for (let i = 0; i < 4; i++) {
    assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 401);
    assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 401);
  }
  // sign-in: the same answer as a wrong password (no enumeration)
  const right = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PASSWORD } });
  const wrong = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'not the password' } });
  assert.equal(right.status, 401);
  assert.equal(right.text, wrong.text);
  assert.equal(right.headers['set-cookie'], undefined);
  // by SMS code: the request answers the same 202, but no code is sent
  const before = outbox(srv.dataDir).length;
  const sc = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'login' } });
  assert.equal(sc.status, 202);
  await sleep(300);
  assert.equal(outbox(srv.dataDir).slice(before).filter((m) => m.to === phone).length, 0, 'no SMS to a disabled account');
  // … so a code login fails as for a number without an account
  const bySms = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, code: '000000' } });
  const nobody = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: cnPhone(), code: '000000' } });
  assert.equal(bySms.status, 400);
  assert.equal(bySms.json.error.code, 'invalid_code');
  assert.equal(bySms.text, nobody.text);

  // disabling twice changes nothing
  const twice = await okJson(['users', 'disable', String(user.id)]);
  assert.equal(twice.changed, false);
  assert.equal(twice.user.disabled, true);
  assert.match(await ok(['users', 'disable', String(user.id)]), new RegExp(`^user ${user.id} was already disabled`));
  assert.equal((await okJson(['users', 'show', String(user.id)])).disabled, true);

  // enable: sign-in works again; the old session does not come back
  const en = await okJson(['users', 'enable', String(user.id)]);
  assert.equal(en.changed, true);
  assert.equal(en.user.disabled, false);
  assert.equal(en.user.disabled_at, null);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 401, 'old session stays ended');
  const jar2 = new Jar();
  const back = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PASSWORD }, jar: jar2 });
  assert.equal(back.status, 200, back.text);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: jar2 })).status, 200);
  // the key was suspended, not revoked: it works again
  assert.equal((await api(srv.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 200);
  assert.match(await ok(['users', 'enable', String(user.id)]), new RegExp(`^user ${user.id} was already enabled`));
});

test('policy show and set', async () => {
  let out = await ok(['policy', 'set', 'restricted', '--regions', 'CN,HK', '--pow-bits', '0']);
  assert.match(out, /^mode: +restricted$/m);
  assert.match(out, /^regions: +CN,HK$/m);
  const j = await okJson(['policy', 'show']);
  assert.equal(j.mode, 'restricted');
  assert.deepEqual(j.allowed_regions, ['CN', 'HK']);
  assert.equal(typeof j.message.en, 'string');
  out = await ok(['policy', 'show']);
  assert.match(out, /^mode: +restricted$/m);
  assert.match(out, /^pow_bits: +0$/m);
  const busy = await okJson(['policy', 'set', 'busy', '--for', '1h']);
  assert.equal(busy.mode, 'busy');
  assert.ok(busy.until, 'a temporary policy has an end');
  assert.match(await ok(['policy', 'show']), /^until: .*, then restricted$/m);
  // back to open for the other tests
  assert.match(await ok(['policy', 'set', 'open', '--pow-bits', '0']), /^mode: +open$/m);
  assert.equal((await okJson(['policy', 'show'])).mode, 'open');
});

test('level show, pin and unpin', async () => {
  let out = await ok(['level', 'show']);
  assert.match(out, /^level +normal$/m); // pinned by before()
  assert.match(out, /^computed +(normal|elevated|under_attack)$/m);
  assert.match(out, /^pinned +until unpinned$/m);
  out = await ok(['level', 'pin', 'elevated', '--for', '2h']);
  assert.match(out, /^level +elevated$/m);
  assert.match(out, /^pinned +for \d+ s more$/m);
  const j = await okJson(['level', 'show']);
  assert.equal(j.level, 'elevated');
  assert.equal(j.pinned, true);
  assert.match(await ok(['level', 'pin', 'under_attack']), /^pinned +until unpinned$/m);
  out = await ok(['level', 'unpin']);
  assert.match(out, /^pinned +no$/m);
  assert.equal((await okJson(['level', 'show'])).pinned, false);
  // back to the computed level (normal on an idle server, but slow
  // sanitizer builds may raise it by themselves)
  const back = await okJson(['level', 'show']);
  assert.equal(back.level, back.computed);
  await ok(['level', 'pin', 'normal']); // for the other tests
});

test('block, unblock and lists', async () => {
  assert.equal(await ok(['block', '127.0.0.6/31']), '127.0.0.6/31 blocked\n');
  assert.equal(await ok(['block', '127.0.0.6/31']), '127.0.0.6/31 was already blocked\n');
  const lists = await ok(['lists']);
  assert.match(lists, /^block list: \d+ entries from/m);
  assert.match(lists, /^ {2}127\.0\.0\.6\/31 \(added at run time\)$/m);
  assert.match(lists, /^allow list: /m);
  assert.match(lists, /^trusted proxies: /m);
  const j = await okJson(['lists']);
  assert.ok(j.block.runtime.includes('127.0.0.6/31'));
  assert.equal(await ok(['unblock', '127.0.0.6/31']), '127.0.0.6/31 unblocked\n');
  assert.ok(!(await okJson(['lists'])).block.runtime.includes('127.0.0.6/31'));
  const blocked = await okJson(['block', '10.9.0.0/16']);
  assert.equal(blocked.added, true);
  await ok(['unblock', '10.9.0.0/16']);
  await fails(['block', 'not-a-cidr'], 1, /400/);
});

test('quota set, show and unset', async () => {
  const { user } = await registerUser(srv, cnPhone());
  let out = await ok(['quota', 'set', '--user', String(user.id), '--rpm', '7', '--tpd', '0']);
  assert.match(out, new RegExp(`^user ${user.id}:$`, 'm'));
  assert.match(out, /^ {2}rpm +7$/m);
  assert.match(out, /^ {2}tpd +unlimited$/m);
  assert.match(out, /^ {2}tpm +(default|unlimited|\d+)$/m); // the effective value
  const j = await okJson(['quota', 'show']);
  assert.ok(j.defaults.key && j.defaults.user);
  const o = j.overrides.find((x) => x.kind === 'user' && x.id === user.id);
  assert.ok(o, 'the override is listed');
  assert.equal(o.rpm, 7);
  out = await ok(['quota', 'show']);
  assert.match(out, /^default per key:$/m);
  assert.match(out, /^default per user:$/m);
  assert.match(out, new RegExp(`^user ${user.id}:$`, 'm'));
  const kj = await okJson(['quota', 'set', '--key', '424242', '--concurrency', '2']);
  assert.equal(kj.kind, 'key');
  assert.equal(kj.concurrency, 2);
  assert.equal(await ok(['quota', 'unset', '--user', String(user.id)]), 'override removed: the defaults apply\n');
  await ok(['quota', 'unset', '--key', '424242']);
  assert.ok(!(await okJson(['quota', 'show'])).overrides.some((x) => x.id === user.id && x.kind === 'user'));
});

test('upstreams', async () => {
  const out = await ok(['upstreams']);
  assert.match(out, /^UPSTREAM +MODEL +STATE +ACTIVE +REQUESTS +FAILURES +429s$/m);
  assert.match(out, /^dead-a +dead-model +\S+ +0\/\d+ +\d+ +\d+ +\d+$/m);
  assert.match(out, /^echo model: (on|off)$/m);
  const j = await okJson(['upstreams']);
  assert.equal(j.upstreams.length, 1);
  assert.equal(j.upstreams[0].name, 'dead-a');
  assert.equal(j.upstreams[0].model, 'dead-model');
});

test('incident create, update and list', async () => {
  const created = await okJson(['incident', 'create', '--title', 'Login slow', '--impact', 'minor', '--status', 'investigating', '--body', 'We are looking into it.']);
  const id = created.id;
  assert.match(id, /^[a-z0-9]+$/);
  assert.equal(created.status, 'investigating');
  assert.equal(created.impact, 'minor');
  let out = await ok(['incident', 'update', id, '--status', 'identified', '--body', 'Found it.']);
  assert.match(out, new RegExp(`^incident ${id}: Login slow$`, 'm'));
  assert.match(out, /status identified, impact minor, 2 updates/);
  assert.match(out, /latest: \[identified\] Found it\./);
  out = await ok(['incident', 'list']);
  assert.match(out, /^ID +STATUS +IMPACT +UPDATED +NAME$/m);
  assert.match(out, new RegExp(`^${id} +identified +minor +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d +Login slow$`, 'm'));
  const list = await okJson(['incident', 'list']);
  assert.ok(list.incidents.some((x) => x.id === id && x.status === 'identified'));
  out = await ok(['incident', 'create', '--title', 'Second', '--impact', 'none', '--body', 'b']);
  assert.match(out, /^incident [a-z0-9]+: Second$/m);
  const resolved = await okJson(['incident', 'update', id, '--status', 'resolved', '--body', 'Fixed.']);
  assert.equal(resolved.status, 'resolved');
  await fails(['incident', 'update', 'nosuchincident', '--status', 'resolved', '--body', 'b'], 1, /404/);
});

test('component list, set and clear', async () => {
  let out = await ok(['component', 'list']);
  assert.match(out, /^ID +STATUS +AUTO +OVERRIDE +REASON$/m);
  assert.match(out, /^api +operational /m);
  out = await ok(['component', 'set', 'api', 'major_outage']);
  assert.match(out, /^api +major_outage /m);
  const j = await okJson(['component', 'list']);
  const api_ = (j.components || j).find((c) => c.id === 'api');
  assert.equal(api_.status, 'major_outage');
  await ok(['component', 'clear', 'api']);
  const j2 = await okJson(['component', 'list']);
  assert.equal((j2.components || j2).find((c) => c.id === 'api').status, 'operational');
});

test('top: once, --count, --json, --watch until Ctrl-C', async () => {
  // some traffic of known classes
  for (let i = 0; i < 3; i++) await api(srv.url, 'GET', '/api/policy');
  await api(srv.url, 'GET', '/api/me'); // 401
  const out = await ok(['top']);
  assert.match(out, /^gatehouse \S+ +up \d+d \d\d:\d\d:\d\d/);
  // the level is computed from live signals: normal unless a slow build raised it
  assert.match(out, /^level (normal|elevated|under_attack) +policy (open|restricted|busy|closed)( \([A-Z,]+\))?, pow \d+ bits/m);
  assert.match(out, /^connections \d+ open, \d+ waiting for headers, \d+ accepted +loop lag [\d.]+ ms$/m);
  assert.match(out, /^CLASS +REQUESTS +\/s +LIMITED +\/s$/m);
  for (const c of ['ops', 'user', 'login', 'register', 'anon']) assert.match(out, new RegExp(`^${c} +\\d+ +- +\\d+ +-$`, 'm'));
  assert.match(out, /^ +2xx \d+ 3xx \d+ 4xx [1-9]\d* 5xx \d+$/m);
  assert.match(out, /^REFUSALS +429 \d+, 503 \d+$/m);
  assert.match(out, /^ +at accept: max_conns \d+ per_addr \d+ blocked \d+/m);
  assert.match(out, /^QUEUES +password pool \(\d+ threads\): login 0 waiting, oldest 0 ms; register 0 waiting, oldest 0 ms$/m);
  assert.match(out, /^ +store \d+ pending; shedding pressure [\d.]+, level \d$/m);
  assert.match(out, /^UPSTREAMS +1, 0 circuits open$/m);
  assert.match(out, /^ +dead-a +dead-model +(yes|no) +closed +0 +\d+ +\d+$/m);

  const j = await okJson(['top']);
  assert.ok(LEVELS.includes(j.level.level), j.level.level);
  assert.ok(['open', 'restricted', 'busy', 'closed'].includes(j.policy.mode));
  assert.equal(j.level.level, (await okJson(['level', 'show'])).level);
  for (const c of ['ops', 'user', 'login', 'register', 'anon']) {
    assert.equal(typeof j.requests.by_class[c], 'number', `requests.by_class.${c}`);
    assert.equal(typeof j.refusals.rate_limited[c], 'number', `refusals.rate_limited.${c}`);
  }
  assert.ok(j.requests.by_class.anon >= 3, 'GET /api/policy counted as anon');
  assert.ok(j.requests.by_status['4xx'] >= 1);
  assert.ok(j.requests.total >= j.requests.by_status['2xx']);
  for (const r of ['max_conns', 'per_addr', 'blocked', 'header_timeout', 'bad_request']) assert.equal(typeof j.refusals.connections[r], 'number');
  assert.equal(typeof j.refusals.status_429, 'number');
  assert.equal(typeof j.refusals.status_503, 'number');
  assert.equal(j.queues.password_pool.login.waiting, 0);
  assert.equal(typeof j.queues.password_pool.register.oldest_wait_ms, 'number');
  assert.equal(typeof j.queues.store_pending, 'number');
  assert.equal(typeof j.queues.shedding.pressure, 'number');
  assert.ok(j.connections.open >= 0 && j.connections.accepted > 0);
  assert.equal(j.gateway.upstream_count, 1);
  assert.equal(j.gateway.circuits_open, 0);
  assert.equal(j.gateway.upstreams[0].name, 'dead-a');
  assert.equal(j.gateway.upstreams[0].circuit_open, 0);
  assert.equal(typeof j.gateway.requests_total, 'number');

  // the level and the policy follow live state
  await ok(['level', 'pin', 'under_attack', '--for', '1h']);
  const hot = await okJson(['top']);
  assert.equal(hot.level.level, 'under_attack');
  await ok(['level', 'pin', 'normal']);

  // --count 2: two screens a second apart, with rates the second time
  const t0 = Date.now();
  const two = await ok(['top', '--count', '2']);
  assert.ok(Date.now() - t0 >= 900, 'a second between samples');
  assert.equal(two.match(/^CLASS /gm).length, 2);
  assert.match(two.split(/\n(?=gatehouse )/)[1], /^anon +\d+ +\d+\.\d +\d+ +\d+\.\d$/m);
  // --json with --count: one JSON document per line
  const lines = (await ok(['--json', 'top', '--count', '2'])).trim().split('\n');
  assert.equal(lines.length, 2);
  for (const l of lines) assert.ok(LEVELS.includes(JSON.parse(l).level.level));

  // a failing upstream opens its circuit: top shows it
  const { jar } = await registerUser(srv, cnPhone());
  const key = (await api(srv.url, 'POST', '/api/keys', { body: { name: 'chat' }, jar })).json.key;
  const chat = await api(srv.url, 'POST', '/v1/chat/completions', {
    bearer: key,
    body: { model: 'dead-model', messages: [{ role: 'user', content: 'hi' }] },
  });
  assert.ok(chat.status >= 500, `a dead upstream answers 5xx, not ${chat.status}`);
  const open = await okJson(['top']);
  assert.equal(open.gateway.circuits_open, 1);
  assert.equal(open.gateway.upstreams[0].circuit_open, 1);
  assert.ok(open.gateway.upstreams[0].failures >= 1);
  assert.ok(open.requests.by_status['5xx'] >= 1);
  const screen = await ok(['top']);
  assert.match(screen, /^UPSTREAMS +1, 1 circuit open$/m);
  // the status page's API component follows the circuits by itself
  const comps = JSON.parse(await (await fetch(`${srv.url}/api/v2/components.json`)).text());
  const apiComp = comps.components.find((c) => c.id === 'api');
  assert.equal(apiComp.status, 'major_outage', 'all model servers out: API in major outage');
  assert.match(screen, /^ +dead-a +dead-model +(yes|no) +open +0 +\d+ +[1-9]\d*$/m);

  // --watch: until Ctrl-C, then exit 0
  const p = spawn(BIN, ['ctl', '--admin', `127.0.0.1:${srv.adminPort}`, '--token', srv.adminToken(), 'top', '--watch'], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let wout = '';
  p.stdout.on('data', (d) => (wout += d));
  const exit = new Promise((r) => p.on('close', (code, signal) => r({ code, signal })));
  await sleep(2300);
  p.kill('SIGINT');
  const res = await exit;
  assert.deepEqual(res, { code: 0, signal: null });
  assert.ok(wout.match(/^CLASS /gm).length >= 2, `several screens while watching:\n${wout}`);
});

test('a wrong token: exit 1 with the server message, for every command family', async () => {
  const cmds = [
    ['policy', 'show'],
    ['level', 'show'],
    ['lists'],
    ['block', '10.1.0.0/16'],
    ['quota', 'show'],
    ['upstreams'],
    ['incident', 'list'],
    ['component', 'list'],
    ['users', 'show', '1'],
    ['users', 'find', '+8613800138000'],
    ['users', 'disable', '1'],
    ['keys', 'list', '--user', '1'],
    ['keys', 'revoke', '1'],
    ['top'],
  ];
  for (const args of cmds) {
    const r = await ctl(srv, args, { token: 'not-the-token' });
    assert.equal(r.code, 1, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /gatehouse ctl: 401: admin token is wrong/, args.join(' '));
    assert.equal(r.stdout, '');
  }
  // nothing changed behind the refusal
  assert.ok(!(await okJson(['lists'])).block.runtime.includes('10.1.0.0/16'));
});

test('unknown commands and options: exit 2 with the usage', async () => {
  for (const args of [['frobnicate'], ['users'], ['users', 'explode', '1'], ['keys'], ['keys', 'delete', '1'], ['incident', 'explode'], ['level'], ['quota']]) {
    const r = await ctl(srv, args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /unknown command|usage/i, args.join(' '));
    assert.match(r.stderr, /users find PHONE/, 'the usage lists the commands');
  }
  const opt = await runGatehouse(['ctl', '--frob', 'health']);
  assert.equal(opt.code, 2);
  assert.match(opt.stderr, /unknown option '--frob'/);
  const none = await runGatehouse(['ctl', '--token', 'x']);
  assert.equal(none.code, 2);
  const help = await runGatehouse(['ctl', '--help']);
  assert.equal(help.code, 0);
  for (const c of ['users find', 'users show', 'users disable', 'users enable', 'keys list', 'keys revoke', 'top', 'policy set', 'level pin', 'incident create', 'component set', 'quota set', 'upstreams', 'block', 'lists']) {
    assert.ok(help.stdout.includes(`  ${c}`), `help lists ${c}`);
  }
});

test('bad arguments: exit 2 for every command family, before any request', async () => {
  const bad = [
    ['health', 'extra'],
    ['policy', 'show', 'extra'],
    ['policy', 'set'],
    ['policy', 'set', 'sideways'],
    ['policy', 'set', 'open', '--pow-bits', 'many'],
    ['policy', 'set', 'open', '--for', 'soon'],
    ['policy', 'set', 'busy', '--for', '10'], // no unit: 10 s or 10 min? (issue 13)
    ['level', 'show', 'x'],
    ['level', 'pin'],
    ['level', 'pin', 'elevated', '--for', 'x'],
    ['level', 'pin', 'elevated', '--for', '10'],
    ['level', 'unpin', 'x'],
    ['block'],
    ['unblock'],
    ['lists', 'x'],
    ['quota', 'set', '--rpm', '5'],
    ['quota', 'set', '--user', '1'],
    ['quota', 'set', '--user', '1', '--rpm', 'lots'],
    ['quota', 'unset'],
    ['incident', 'create', '--title', 'T'],
    ['incident', 'create', '--title', 'T', '--impact', 'apocalyptic', '--body', 'b'],
    ['incident', 'update', 'abc', '--status', 'sideways', '--body', 'b'],
    ['incident', 'update', 'BAD ID', '--status', 'resolved', '--body', 'b'],
    ['component', 'set', 'api'],
    ['component', 'clear'],
    ['users', 'find'],
    ['users', 'find', '13800138000'],
    ['users', 'find', '+86', 'extra'],
    ['users', 'show'],
    ['users', 'show', 'abc'],
    ['users', 'show', '0'],
    ['users', 'show', '-3'],
    ['users', 'disable'],
    ['users', 'disable', '1x'],
    ['users', 'enable', '1', '2'],
    ['keys', 'list'],
    ['keys', 'list', '1'],
    ['keys', 'list', '--user'],
    ['keys', 'list', '--user', 'me'],
    ['keys', 'revoke'],
    ['keys', 'revoke', 'sk-abc'],
    ['top', '--count'],
    ['top', '--count', '0'],
    ['top', '--count', 'x'],
    ['top', '--sideways'],
  ];
  // the server is down: a usage error is found before any request
  const [port] = await freePorts(1);
  for (const args of bad) {
    const r = await runGatehouse(['ctl', '--admin', `127.0.0.1:${port}`, '--token', 'x', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, wanted 2\n${r.stderr}`);
    assert.match(r.stderr, /usage|unknown|needs|expects|give|name the target|required|missing/i, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
  }
});

test('the server is down: exit 3 with a message, for every command family', async () => {
  const [port] = await freePorts(1);
  for (const args of [['health'], ['policy', 'show'], ['level', 'show'], ['lists'], ['quota', 'show'], ['upstreams'], ['incident', 'list'], ['component', 'list'], ['users', 'show', '1'], ['keys', 'list', '--user', '1'], ['top'], ['top', '--watch']]) {
    const r = await runGatehouse(['ctl', '--admin', `127.0.0.1:${port}`, '--token', 'x', ...args]);
    assert.equal(r.code, 3, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${port}`));
  }
  // the token is found in <data>/admin.token when not given
  const data = tempDir();
  fs.writeFileSync(path.join(data, 'admin.token'), 'from-the-file\n', { mode: 0o600 });
  const r = await runGatehouse(['ctl', '--admin', `127.0.0.1:${port}`, 'health'], { env: { GATEHOUSE_DATA: data } });
  assert.equal(r.code, 3);
});

test('the disabled state survives a restart; keys of a disabled user stay out of the cache', async (t) => {
  const s1 = await startServer({ t, name: 'ctl-restart', set: FAST });
  const phone = cnPhone();
  const { jar, user } = await registerUser(s1, phone);
  const k = await api(s1.url, 'POST', '/api/keys', { body: { name: 'persist' }, jar });
  assert.equal(k.status, 201);
  await ok(['users', 'disable', String(user.id)], s1);
  await s1.stop();

  const s2 = await startServer({ t, name: 'ctl-restart-2', set: FAST, dataDir: s1.dataDir });
  assert.equal((await api(s2.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 401);
  assert.equal((await api(s2.url, 'GET', '/api/me', { jar })).status, 401);
  assert.equal((await api(s2.url, 'POST', '/api/auth/login', { body: { phone, password: PASSWORD } })).status, 401);
  const j = await okJson(['users', 'show', String(user.id)], s2);
  assert.equal(j.disabled, true);
  assert.ok(j.disabled_at);
  await ok(['users', 'enable', String(user.id)], s2);
  assert.equal((await api(s2.url, 'GET', '/v1/models', { bearer: k.json.key })).status, 200);
  assert.equal((await api(s2.url, 'POST', '/api/auth/login', { body: { phone, password: PASSWORD } })).status, 200);
  await s2.stop();
});
