// Black-box tests of the PostgreSQL store (issue 14 item 1): gatehouse with
// [store] backend = postgres against a throwaway PostgreSQL runs every
// account flow, keeps personal data sealed, migrates once, survives a
// restart of PostgreSQL (503 busy with Retry-After meanwhile, never 500,
// existing sessions keep working, the pool reconnects by itself) and never
// logs the URL's password. Skipped only where PostgreSQL is not installed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, freePorts, metricValue, runGatehouse, startServer, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, Jar, api, cnPhone, getCode, registerUser } from './lib/accounts.mjs';
import { pgMissing, startPostgres } from './lib/postgres.mjs';

const PW = 'correct horse battery';
const missing = pgMissing();
const opts = missing ? { skip: missing } : {};

// one server for the file (initdb costs seconds), a database per test
let server = null;
before(async () => {
  if (!missing) server = await startPostgres();
});
after(() => server?.destroy());

/** A fresh database on the shared server: {url, urlNoPassword, psql, password, stop, start}. */
function freshDb(name) {
  return { ...server.database(name), password: server.password, stop: server.stop, start: server.start, freeze: server.freeze, thaw: server.thaw };
}

/** gatehouse serve with args on free ports, expected to refuse to start. */
async function refusal(...args) {
  const [port, adminPort] = await freePorts(2);
  const r = await runGatehouse(['serve', '--data', tempDir(), '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, ...args]);
  assert.notEqual(r.code, 0, r.stderr);
  return r;
}

function pgSet(pg, extra = {}) {
  return { ...FAST, 'store.backend': 'postgres', 'store.url': pg.url, 'store.connect_timeout': '2s', ...extra };
}

test('accounts on PostgreSQL: register, log in, keys, delete; phones sealed', opts, async (t) => {
  const pg = freshDb('accounts');
  const srv = await startServer({ t, set: pgSet(pg) });
  await srv.waitStderr(/"event":"store_migrated"/); // the log's thread writes it

  const phone = cnPhone();
  const { jar, user } = await registerUser(srv, phone, PW);
  assert.equal(user.phone, phone);
  let r = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(r.status, 200);
  assert.equal(r.json.user.phone, phone, 'the phone decrypts back');

  // a second registration of the number: the unique index answers 409
  const code2 = await getCode(srv, phone, 'register');
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code: code2, password: PW } });
  assert.equal(r.status, 409, r.text);

  // keys: create, use, revoke
  r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'laptop' } });
  assert.equal(r.status, 201, r.text);
  const key = r.json;
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key.key })).status, 200);
  r = await api(srv.url, 'GET', '/api/keys', { jar });
  assert.deepEqual(r.json.data.map((k) => k.name), ['laptop']);
  r = await api(srv.url, 'DELETE', `/api/keys/${key.id}`, { jar });
  assert.equal(r.status, 204);
  assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key.key })).status, 401);
  assert.equal((await api(srv.url, 'DELETE', `/api/keys/${key.id}`, { jar })).status, 404);

  // login by password, a wrong password counted in the store
  const j2 = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/login', { jar: j2, body: { phone, password: PW } });
  assert.equal(r.status, 200, r.text);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: j2 })).status, 200);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'not the password' } });
  assert.equal(r.status, 401);
  await waitUntil(() => pg.psql(`SELECT failed_logins FROM users WHERE id = ${user.id}`).trim() === '1', {
    what: 'the failure recorded',
  });

  // what PostgreSQL holds: no phone number in clear or in hex, hashes only
  const hex = Buffer.from(phone).toString('hex');
  const rows = pg.psql('SELECT row_to_json(u)::text FROM users u') + pg.psql('SELECT row_to_json(s)::text FROM sessions s');
  assert.ok(!rows.includes(phone.slice(1)) && !rows.includes(hex), 'no phone number in the users table');
  assert.ok(!rows.includes(jar.c.gh_session), 'no session token in the sessions table');
  assert.match(pg.psql('SELECT count(*) FROM audit WHERE event = \'register\''), /^1$/m);
  assert.equal(pg.psql('SELECT string_agg(version::text, \',\' ORDER BY version) FROM schema_version').trim(), '1,2,3');

  // the account's deletion takes its sessions and keys with it
  r = await api(srv.url, 'DELETE', '/api/me', { jar: j2 });
  assert.equal(r.status, 204);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 401);
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
  assert.equal(r.status, 401);
  assert.equal(pg.psql(`SELECT count(*) FROM sessions WHERE user_id = ${user.id}`).trim(), '0');
  assert.equal(pg.psql(`SELECT count(*) FROM api_keys WHERE user_id = ${user.id}`).trim(), '0');

  await srv.stop();
  assert.ok(!srv.stderr().includes(pg.password), 'the password of the URL is never logged');
  assert.ok(!srv.stderr().includes(phone), 'no full phone number in the logs');
});

test('PostgreSQL restarts: 503 busy meanwhile, sessions keep working, the pool reconnects', opts, async (t) => {
  const pg = freshDb('restart');
  const srv = await startServer({ t, set: pgSet(pg) });
  const phone = cnPhone();
  const { jar } = await registerUser(srv, phone, PW);
  let r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'ci' } });
  assert.equal(r.status, 201, r.text);
  const key = r.json.key;
  assert.equal((await api(srv.url, 'GET', '/api/usage', { jar })).status, 200);
  // a code for a registration during the outage (codes live in memory)
  const phone2 = cnPhone();
  const code2 = await getCode(srv, phone2, 'register');

  await pg.stop('fast');
  // existing sessions and keys are served from the credential cache
  for (let i = 0; i < 3; i++) {
    assert.equal((await api(srv.url, 'GET', '/api/usage', { jar })).status, 200);
    assert.equal((await api(srv.url, 'GET', '/api/usage', { bearer: key })).status, 200);
  }
  // the profile lives in the store: busy, not an error
  r = await api(srv.url, 'GET', '/api/me', { jar, timeout: 15000 });
  assert.equal(r.status, 503, r.text);
  assert.ok(r.headers['retry-after']);
  // sign-in and registration need the store: 503 busy with Retry-After, never 500
  for (let i = 0; i < 3; i++) {
    const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, timeout: 15000 });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.error.code, 'busy');
    assert.match(String(r.headers['retry-after']), /^\d+$/);
  }
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: phone2, code: code2, password: PW }, timeout: 15000 });
  assert.equal(r.status, 503, r.text);
  assert.equal(r.json.error.code, 'busy');
  assert.ok(r.headers['retry-after']);
  await srv.waitStderr(/"event":"store_unreachable"/);
  let m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_store_unavailable_total', { backend: 'postgres' }) >= 4, 'refused jobs counted');
  assert.equal(metricValue(m, 'gatehouse_store_up', { backend: 'postgres' }), 0);

  await pg.start();
  // the pool reconnects by itself: sign-in works again within seconds
  const j2 = new Jar();
  await waitUntil(
    async () => {
      const x = await api(srv.url, 'POST', '/api/auth/login', { jar: j2, body: { phone, password: PW } });
      assert.notEqual(x.status, 500, x.text);
      return x.status === 200;
    },
    { timeout: 20000, every: 200, what: 'a sign-in after PostgreSQL came back' },
  );
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar: j2 })).status, 200);
  assert.equal((await api(srv.url, 'GET', '/api/me', { jar })).status, 200);
  // the refused registration, retried, succeeds (its code was not spent)
  r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: phone2, code: await getCode(srv, phone2, 'register'), password: PW } });
  assert.equal(r.status, 201, r.text);
  await srv.waitStderr(/"event":"store_reconnected"/);
  m = await srv.metrics();
  assert.equal(metricValue(m, 'gatehouse_store_up', { backend: 'postgres' }), 1);

  // gatehouse restarted on the same database: no migration runs again,
  // the sessions load from PostgreSQL
  await srv.stop();
  assert.ok(!srv.stderr().includes(pg.password), 'the password of the URL is never logged');
  assert.ok(!/"status":500|" 500 /.test(srv.stderr()), 'no 500 answered');
  const srv2 = await startServer({ t, set: pgSet(pg), dataDir: srv.dataDir }); // the same keys
  assert.ok(!/"event":"store_migrated"/.test(srv2.stderr()), 'no migration the second time');
  assert.equal((await api(srv2.url, 'GET', '/api/me', { jar: j2 })).status, 200);
  await srv2.stop();
});

test('PostgreSQL crashes during a stream of registrations: every answer is 201 or 503, every 201 signs in', opts, async (t) => {
  const pg = freshDb('crash');
  const srv = await startServer({ t, set: pgSet(pg) });
  const burst = [];
  for (let i = 0; i < 48; i++) {
    const phone = cnPhone();
    burst.push({ phone, code: await getCode(srv, phone, 'register') });
  }
  // four clients register one after another; PostgreSQL crashes after the
  // 10th answer and comes back after the 24th
  const statuses = new Array(burst.length);
  let next = 0;
  let answered = 0;
  const clients = Array.from({ length: 4 }, async () => {
    while (next < burst.length) {
      const i = next++;
      const r = await api(srv.url, 'POST', '/api/auth/register', { body: { phone: burst[i].phone, code: burst[i].code, password: PW }, localAddress: `127.0.0.${2 + i}`, timeout: 30000 });
      statuses[i] = r.status;
      if (r.status === 503) assert.ok(r.headers['retry-after'], 'a 503 says when to retry');
      answered++;
      if (answered === 10) await pg.stop('immediate'); // a crash: in-flight transactions lost
      if (answered === 24) await pg.start();
    }
  });
  await Promise.all(clients);
  if (!server.up) await pg.start();
  const count = (x) => statuses.filter((v) => v === x).length;
  t.diagnostic(`answers: ${count(201)} x 201, ${count(503)} x 503`);
  assert.ok(statuses.every((x) => x === 201 || x === 503), `answers: ${statuses.join(' ')}`);
  assert.ok(count(503) > 0, 'the crash was seen');
  // what was acknowledged was committed: every 201 signs in
  const ok = burst.filter((b, i) => statuses[i] === 201);
  for (const b of ok) {
    await waitUntil(
      async () => {
        const x = await api(srv.url, 'POST', '/api/auth/login', { body: { phone: b.phone, password: PW } });
        assert.ok(x.status === 200 || x.status === 503, `login ${x.status} ${x.text}`);
        return x.status === 200;
      },
      { timeout: 20000, every: 200, what: `a sign-in of ${b.phone}` },
    );
  }
  await srv.stop();
});

test('PostgreSQL stops answering: 503 busy within statement_timeout + 2 s, not a hang; back when it answers', opts, async (t) => {
  const pg = freshDb('frozen');
  const srv = await startServer({ t, set: pgSet(pg, { 'store.statement_timeout': '1s' }) });
  const phone = cnPhone();
  const { jar } = await registerUser(srv, phone, PW);
  pg.freeze();
  t.after(() => pg.thaw());
  const t0 = Date.now();
  let r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, timeout: 30000 });
  const waited = Date.now() - t0;
  assert.equal(r.status, 503, r.text);
  assert.ok(r.headers['retry-after']);
  assert.ok(waited < 15000, `answered after ${waited} ms`);
  // the session is in the cache: served at once
  assert.equal((await api(srv.url, 'GET', '/api/usage', { jar, timeout: 3000 })).status, 200);
  await srv.waitStderr(/did not answer within 3000 ms/);
  pg.thaw();
  await waitUntil(
    async () => {
      const x = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, timeout: 15000 });
      assert.ok(x.status === 200 || x.status === 503, `login ${x.status} ${x.text}`);
      return x.status === 200;
    },
    { timeout: 30000, every: 250, what: 'a sign-in after PostgreSQL answers again' },
  );
  await srv.stop();
  assert.ok(!srv.stderr().includes(pg.password));
});

test('the data functions answer the same on both backends (unit program against this server)', opts, (t) => {
  const unit = path.join(path.dirname(BIN), 'test_store_backends');
  if (!fs.existsSync(unit)) return t.skip(`${unit} not built (cmake --build build)`);
  const db = freshDb('unit');
  const r = spawnSync(unit, [], { encoding: 'utf8', timeout: 60000, env: { ...process.env, GH_TEST_PG_URL: db.url, CMOCKA_MESSAGE_OUTPUT: 'stdout' } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\[ {7}OK \] test_postgres/);
  assert.equal(db.psql('SELECT max(version) FROM schema_version').trim(), '3');
});

test('two nodes on one PostgreSQL: other keys are refused; the cluster\'s keys sign in the other node\'s users', opts, async (t) => {
  const pg = freshDb('keys');
  const a = await startServer({ t, name: 'node-a', set: pgSet(pg) });
  const phone = cnPhone();
  await registerUser(a, phone, PW);
  // node B with its own generated keys: refused before it serves anything
  const r = await refusal('--set', 'store.backend=postgres', '--set', `store.url=${pg.url}`);
  assert.match(r.stderr, /this node's secrets differ from those the postgres database was written with \(hmac_key and enc_key differ/);
  assert.ok(!r.stderr.includes(pg.password));
  // node B with node A's keys (a shared secrets file): A's user signs in on B
  const file = path.join(tempDir(), 'cluster.secrets');
  fs.writeFileSync(file, fs.readFileSync(path.join(a.dataDir, 'secrets')), { mode: 0o600 });
  const b = await startServer({ t, name: 'node-b', set: pgSet(pg, { 'secrets.file': file }) });
  const jar = new Jar();
  const login = await api(b.url, 'POST', '/api/auth/login', { body: { phone, password: PW }, jar });
  assert.equal(login.status, 200, login.text);
  const me = await api(b.url, 'GET', '/api/me', { jar });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.user.phone, phone, 'B decrypts the phone A sealed');
  await b.stop();
  await a.stop();
});

test('a database newer than the binary, a missing url, an unreachable server: clear refusals', opts, async (t) => {
  const pg = freshDb('refusals');
  // the password from the environment, not the URL
  const srv = await startServer({ t, set: pgSet(pg, { 'store.url': pg.urlNoPassword }), env: { PGPASSWORD: pg.password } });
  await srv.stop();
  pg.psql('INSERT INTO schema_version VALUES (999, 0)');
  let r = await refusal('--set', 'store.backend=postgres', '--set', `store.url=${pg.url}`);
  assert.match(r.stderr, /schema version 999 is newer than this gatehouse/);
  assert.ok(!r.stderr.includes(pg.password));

  r = await refusal('--set', 'store.backend=postgres');
  assert.match(r.stderr, /\[store\] url.*must be set with \[store\] backend = postgres/);

  await pg.stop('immediate');
  r = await refusal('--set', 'store.backend=postgres', '--set', `store.url=${pg.url}`, '--set', 'store.connect_timeout=1s');
  assert.match(r.stderr, /cannot connect to PostgreSQL at postgresql:\/\/gatehouse:\*\*\*@127\.0\.0\.1/);
  assert.ok(!r.stderr.includes(pg.password), 'the password is not in the refusal');
});
