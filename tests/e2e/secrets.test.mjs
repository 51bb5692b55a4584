// Black-box tests of the server's keys (issue 14 item 6): a store written
// with one pair of keys refuses a node that holds another (the key check
// value the database keeps), naming which key differs and touching
// nothing; a cluster's keys come from a shared secrets file (never
// generated, never readable by others) or from the environment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { freePorts, runGatehouse, startServer, tempDir } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';

const PW = 'correct horse battery';
const hex = () => crypto.randomBytes(32).toString('hex');

/** gatehouse serve on dataDir with args and env, expected to refuse to start. */
async function refusal(dataDir, args = [], env = {}) {
  const [port, adminPort] = await freePorts(2);
  const r = await runGatehouse(['serve', '--data', dataDir, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, ...args], { env });
  assert.notEqual(r.code, 0, `it started: ${r.stderr}`);
  return r;
}

function keysOf(dataDir) {
  const text = fs.readFileSync(path.join(dataDir, 'secrets'), 'utf8');
  return { hmac: /hmac_key=([0-9a-f]{64})/.exec(text)[1], enc: /enc_key=([0-9a-f]{64})/.exec(text)[1] };
}

async function login(srv, phone) {
  return api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: PW } });
}

test('a node whose keys differ from the database\'s refuses to start, names the key, and changes nothing', async (t) => {
  const dataDir = path.join(tempDir(), 'data');
  let srv = await startServer({ t, dataDir, set: FAST });
  const phone = cnPhone();
  await registerUser(srv, phone, PW);
  await srv.stop();
  const keys = keysOf(dataDir);
  const db = path.join(dataDir, 'gatehouse.db');
  const before = fs.readFileSync(db);

  // another hmac key from the environment: refused, the hmac key named
  let r = await refusal(dataDir, [], { GATEHOUSE_HMAC_KEY: hex() });
  assert.match(r.stderr, /this node's secrets differ from those the sqlite database was written with \(hmac_key differs/);
  assert.match(r.stderr, /refusing to start/);
  assert.ok(!r.stderr.includes(keys.hmac) && !r.stderr.includes(keys.enc), 'no key in the message');
  // both replaced in the data directory's own file: both named
  fs.writeFileSync(path.join(dataDir, 'secrets'), `hmac_key=${hex()}\nenc_key=${hex()}\n`, { mode: 0o600 });
  r = await refusal(dataDir);
  assert.match(r.stderr, /\(hmac_key and enc_key differ/);
  assert.ok(fs.readFileSync(db).equals(before), 'the database is untouched');

  // the right keys again, from the environment this time: it starts, the user signs in
  fs.rmSync(path.join(dataDir, 'secrets'));
  srv = await startServer({ t, dataDir, set: FAST, env: { GATEHOUSE_HMAC_KEY: keys.hmac, GATEHOUSE_ENC_KEY: keys.enc } });
  assert.equal((await login(srv, phone)).status, 200);
  assert.ok(!fs.existsSync(path.join(dataDir, 'secrets')), 'keys given whole: no file generated');
  await srv.stop();
});

test('secrets.file: a shared, private file of keys, never generated', async (t) => {
  const dir = tempDir();
  const file = path.join(dir, 'cluster.secrets');
  const dataDir = path.join(dir, 'data');
  // missing: a clear refusal, nothing generated in its place
  let r = await refusal(dataDir, ['--set', `secrets.file=${file}`]);
  assert.match(r.stderr, /secrets\.file .*cluster\.secrets: No such file/);
  assert.ok(!fs.existsSync(file));
  // readable by others: refused
  fs.writeFileSync(file, `hmac_key=${hex()}\nenc_key=${hex()}\n`, { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  r = await refusal(dataDir, ['--set', `secrets.file=${file}`]);
  assert.match(r.stderr, /readable or writable by others \(mode 0644\): chmod 600 it/);
  // private: it starts with those keys, and a second data directory (a
  // second node's) with the same file reads the same accounts' hashes
  fs.chmodSync(file, 0o600);
  const srv = await startServer({ t, dataDir, set: { ...FAST, 'secrets.file': file } });
  const phone = cnPhone();
  await registerUser(srv, phone, PW);
  assert.equal((await login(srv, phone)).status, 200);
  await srv.stop();
  assert.ok(!fs.existsSync(path.join(dataDir, 'secrets')), 'data_dir/secrets not generated');
  // the same database with the data directory's own generated keys: refused
  r = await refusal(dataDir, []);
  assert.match(r.stderr, /hmac_key and enc_key differ/);
});
