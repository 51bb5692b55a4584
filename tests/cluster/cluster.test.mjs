// The cluster (issue 14): scripts/cluster.sh up starts a throwaway
// PostgreSQL, three gatehouse nodes sharing it and one secrets file, and
// HAProxy in front; the tests talk to the nodes directly and through
// HAProxy, then take a node away. Skipped with a message where
// PostgreSQL or HAProxy is not installed.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, childEnv, tempDir, waitUntil } from '../e2e/lib/harness.mjs';
import { Jar, api, cnPhone, outbox } from '../e2e/lib/accounts.mjs';
import { pgMissing } from '../e2e/lib/postgres.mjs';
import { freeBase } from './lib.mjs';

const PW = 'correct horse battery';
const SCRIPT = path.resolve('scripts/cluster.sh');
const haproxyMissing = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).status !== 0;
const missing = pgMissing() || (haproxyMissing ? 'haproxy not found (apt-get install haproxy, or scripts/deps.sh test)' : '');
const opts = missing ? { skip: missing } : {};

let dir, base, env;

function cluster(cmd) {
  const r = spawnSync('bash', [SCRIPT, cmd], { env, encoding: 'utf8', timeout: 120000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const nodeUrl = (i) => `http://127.0.0.1:${base + 10 + i}`;
const lbUrl = () => `http://127.0.0.1:${base}`;

before(async () => {
  if (missing) return;
  const parent = tempDir('gh-cluster-');
  fs.chmodSync(parent, 0o711); // as root, PostgreSQL runs as `postgres`: it must pass through
  dir = path.join(parent, 'cluster');
  base = await freeBase();
  env = childEnv({ CLUSTER_DIR: dir, PORT_BASE: String(base), GATEHOUSE: BIN, NODES: '3', NODE_SET: '--set identity.argon2_ops=1 --set identity.argon2_mem=8k --set sms.cooldown=0' });
  const r = cluster('up');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`gatehouse cluster: http://127\\.0\\.0\\.1:${base}/`));
});

after(() => {
  if (!missing && dir) {
    const r = cluster('down');
    if (r.code !== 0) console.error(r.out);
  }
});

/** The SMS code sent to phone, from whichever node's outbox has it. */
async function codeFor(phone) {
  return waitUntil(
    () => {
      for (let i = 1; i <= 3; i++) {
        const m = outbox(path.join(dir, `node${i}`)).filter((x) => x.to === phone).at(-1);
        if (m) return m.code;
      }
      return null;
    },
    { what: `the SMS code for ${phone}` },
  );
}

test('status: every part up', opts, () => {
  const r = cluster('status');
  assert.equal(r.code, 0, r.out);
  for (const part of ['postgresql', 'node1', 'node2', 'node3', 'haproxy']) assert.match(r.out, new RegExp(`^${part} +up`, 'm'));
});

let phone, jar;

test('register through node 1, log in through node 2, use the session through node 3', opts, async () => {
  phone = cnPhone();
  let r = await api(nodeUrl(1), 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
  assert.equal(r.status, 202, r.text);
  const code = await codeFor(phone);
  r = await api(nodeUrl(1), 'POST', '/api/auth/register', { body: { phone, code, password: PW } });
  assert.equal(r.status, 201, r.text);
  jar = new Jar();
  r = await api(nodeUrl(2), 'POST', '/api/auth/login', { body: { phone, password: PW }, jar });
  assert.equal(r.status, 200, r.text);
  r = await api(nodeUrl(3), 'GET', '/api/me', { jar });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.user.phone, phone, 'node 3 reads the phone node 1 sealed');
});

/** /api/me lines in each node's access log (index 1..3). */
function meCounts() {
  const n = [0];
  for (let i = 1; i <= 3; i++) {
    const f = path.join(dir, `node${i}`, 'access.log');
    n.push(fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.includes('"path":"/api/me"')).length : 0);
  }
  return n;
}

test('through HAProxy: the node a client is on is killed; its requests move to another node, its session with them', opts, async () => {
  const before = meCounts();
  for (let i = 0; i < 6; i++) {
    const r = await api(lbUrl(), 'GET', '/api/me', { jar });
    assert.equal(r.status, 200, r.text);
  }
  // the client's node (balance source: one node while it is up)
  const home = await waitUntil(() => {
    const now = meCounts();
    const i = [1, 2, 3].find((k) => now[k] - before[k] >= 6);
    return i ?? null;
  }, { what: 'the access log lines' });
  const pid = Number(fs.readFileSync(path.join(dir, `node${home}.pid`), 'utf8'));
  process.kill(pid, 'SIGKILL');
  await waitUntil(() => spawnSync('kill', ['-0', String(pid)]).status !== 0, { what: `node ${home} gone` });
  // HAProxy retries the refused connection on another node at once
  for (let i = 0; i < 12; i++) {
    const r = await api(lbUrl(), 'GET', '/api/me', { jar });
    assert.equal(r.status, 200, `request ${i} after the kill: ${r.status} ${r.text}`);
    assert.equal(r.json.user.phone, phone);
  }
  const s = cluster('status');
  assert.notEqual(s.code, 0);
  assert.match(s.out, new RegExp(`^node${home} +down`, 'm'));
  // a new account through the balancer registers, and signs in on any live node
  const p2 = cnPhone();
  let r = await api(lbUrl(), 'POST', '/api/auth/sms-code', { body: { phone: p2, purpose: 'register' } });
  assert.equal(r.status, 202, r.text);
  r = await api(lbUrl(), 'POST', '/api/auth/register', { body: { phone: p2, code: await codeFor(p2), password: PW } });
  assert.equal(r.status, 201, r.text);
  const other = [1, 2, 3].find((k) => k !== home);
  r = await api(nodeUrl(other), 'POST', '/api/auth/login', { body: { phone: p2, password: PW } });
  assert.equal(r.status, 200, r.text);
});
