// Helpers of the cluster tests: scripts/cluster.sh on a free port range,
// each node's URLs and outbox, psql on the cluster's PostgreSQL, metrics.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { BIN, assertNoSanitizerReport, childEnv, metricValue, request, tempDir, waitUntil } from '../e2e/lib/harness.mjs';
import { Jar, api, outbox } from '../e2e/lib/accounts.mjs';
import { pgBinDir, pgMissing } from '../e2e/lib/postgres.mjs';

export const PW = 'correct horse battery';
const SCRIPT = path.resolve('scripts/cluster.sh');
const haproxyMissing = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).status !== 0;
export const missing = pgMissing() || (haproxyMissing ? 'haproxy not found (apt-get install haproxy, or scripts/deps.sh test)' : '');

function free(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port whose 24 ports from it are free (the script's layout). */
export async function freeBase() {
  for (let i = 0; i < 50; i++) {
    const b = 20000 + Math.floor(Math.random() * 20000);
    let ok = true;
    for (let p = b; p < b + 24 && ok; p++) ok = await free(p);
    if (ok) return b;
  }
  throw new Error('no 24 free ports in a row');
}

/**
 * A cluster of `nodes` nodes: set (settings of every node, "k=v" strings)
 * and perNode ({i: [settings]}). up() starts it, down() stops it.
 */
export class Cluster {
  constructor({ nodes = 3, set = [], perNode = {} } = {}) {
    this.nodes = nodes;
    this.set = set;
    this.perNode = perNode;
  }

  run(cmd) {
    const r = spawnSync('bash', [SCRIPT, cmd], { env: this.env, encoding: 'utf8', timeout: 120000 });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  }

  async up() {
    const parent = tempDir('gh-cluster-');
    fs.chmodSync(parent, 0o711); // as root, PostgreSQL runs as `postgres`: it must pass through
    this.dir = path.join(parent, 'cluster');
    this.base = await freeBase();
    const extra = {};
    const flags = (list) => list.map((kv) => `--set ${kv}`).join(' ');
    for (const [i, list] of Object.entries(this.perNode)) extra[`NODE_SET_${i}`] = flags(list);
    this.env = childEnv({
      CLUSTER_DIR: this.dir,
      PORT_BASE: String(this.base),
      GATEHOUSE: BIN,
      NODES: String(this.nodes),
      NODE_SET: flags(['identity.argon2_ops=1', 'identity.argon2_mem=8k', 'sms.cooldown=0', ...this.set]),
      ...extra,
    });
    const r = this.run('up');
    assert.equal(r.code, 0, r.out);
  }

  /** Stops everything; then no node's log may hold a sanitizer report. */
  down() {
    if (!this.dir) return;
    const r = this.run('down');
    if (r.code !== 0) console.error(r.out);
    for (let i = 1; i <= this.nodes; i++) {
      const f = path.join(this.dir, `node${i}`, 'gatehouse.log');
      if (fs.existsSync(f)) assertNoSanitizerReport(fs.readFileSync(f, 'utf8'), `node ${i}`);
    }
  }

  url(i) {
    return `http://127.0.0.1:${this.base + 10 + i}`;
  }

  /** HAProxy's URL: the cluster as clients see it. */
  lbUrl() {
    return `http://127.0.0.1:${this.base}`;
  }

  /** Node i's process id. */
  pid(i) {
    return Number(fs.readFileSync(path.join(this.dir, `node${i}.pid`), 'utf8'));
  }

  adminUrl(i) {
    return `http://127.0.0.1:${this.base + 20 + i}`;
  }

  adminToken(i) {
    return fs.readFileSync(path.join(this.dir, `node${i}`, 'admin.token'), 'utf8').trim();
  }

  /** An admin API request to node i: {status, json, text}. */
  async admin(i, method, p, body) {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers = { authorization: `Bearer ${this.adminToken(i)}` };
    if (text !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(text)); // node frames a DELETE body only when told its length
    }
    const r = await request(`${this.adminUrl(i)}${p}`, { method, headers, body: text });
    let json = null;
    try {
      json = r.body.length ? r.json() : null;
    } catch {
      json = null;
    }
    return { status: r.status, json, text: r.text() };
  }

  async metric(i, name, labels = {}) {
    const r = await request(`${this.adminUrl(i)}/metrics`);
    return metricValue(r.text(), name, labels) ?? 0;
  }

  /** psql on the cluster's database; the output of sql. */
  psql(sql) {
    const r = spawnSync(path.join(pgBinDir(), 'psql'), ['-X', '-q', '-A', '-t', '-h', '127.0.0.1', '-p', String(this.base + 1), '-U', 'gatehouse', '-d', 'gatehouse', '-c', sql], {
      env: { ...process.env, PGPASSWORD: fs.readFileSync(path.join(this.dir, 'pg', 'password'), 'utf8').trim() },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  }

  /**
   * The last SMS code sent to phone for purpose, whichever node's outbox
   * has it (a new code replaces the old one), sent at or after since
   * (ms); waits up to timeout ms.
   */
  async codeFor(phone, purpose = 'register', timeout = 5000, since = 0) {
    const from = new Date(since).toISOString();
    return waitUntil(
      () => {
        let last = null;
        for (let i = 1; i <= this.nodes; i++) {
          const m = outbox(path.join(this.dir, `node${i}`)).filter((x) => x.to === phone && x.purpose === purpose && x.ts >= from).at(-1);
          if (m && (!last || m.ts > last.ts)) last = m;
        }
        return last?.code ?? null;
      },
      { what: `the SMS code for ${phone}`, timeout },
    );
  }

  /** Registers phone through node i; returns the new account's id. */
  async register(i, phone) {
    let r = await api(this.url(i), 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
    assert.equal(r.status, 202, r.text);
    r = await api(this.url(i), 'POST', '/api/auth/register', { body: { phone, code: await this.codeFor(phone), password: PW } });
    assert.equal(r.status, 201, r.text);
    return r.json.user.id;
  }

  /** Signs in through node i: a new jar. */
  async login(i, phone) {
    const jar = new Jar();
    const r = await api(this.url(i), 'POST', '/api/auth/login', { body: { phone, password: PW }, jar });
    assert.equal(r.status, 200, r.text);
    return jar;
  }
}

/**
 * Polls fn (an async status getter) until it returns want; the time it
 * took in ms. Throws past limitMs (with the last status).
 */
export async function timeUntil(fn, want, limitMs) {
  const t0 = Date.now();
  let last;
  for (;;) {
    last = await fn();
    const dt = Date.now() - t0;
    if (last === want) return dt;
    if (dt > limitMs) throw new Error(`still ${last} after ${dt} ms (wanted ${want} within ${limitMs} ms)`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
