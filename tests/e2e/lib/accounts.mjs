// Helpers for the account black-box tests: JSON requests with a cookie
// jar, SMS codes read from the outbox, registration in one call.
import fs from 'node:fs';
import path from 'node:path';

import { request, waitUntil } from './harness.mjs';

/** Settings that keep tests fast and away from the SMS budgets. */
export const FAST = {
  'identity.argon2_ops': '1',
  'identity.argon2_mem': '8k',
  'identity.backoff_base': '0',
  'sms.cooldown': '0',
  'sms.per_number_day': '100000',
  'sms.per_addr_hour': '100000',
  'sms.per_net_hour': '100000',
  'sms.per_prefix_hour': '100000',
  'sms.per_cc_hour': '100000',
  'sms.global_hour': '1000000',
};

let seq = Math.floor(Math.random() * 5000);
/** A fresh valid CN mobile number (E.164). */
export function cnPhone() {
  seq = (seq + 1) % 10000;
  return `+86138${String(Math.floor(Math.random() * 100)).padStart(2, '0')}13${String(seq).padStart(4, '0')}`;
}

export class Jar {
  constructor() {
    this.c = {};
  }
  take(res) {
    for (const line of [].concat(res.headers['set-cookie'] || [])) {
      const [kv] = line.split(';');
      const i = kv.indexOf('=');
      const k = kv.slice(0, i).trim();
      const v = kv.slice(i + 1).trim();
      if (v) this.c[k] = v;
      else delete this.c[k];
    }
  }
  header() {
    return Object.entries(this.c)
      .map(([k, v]) => `${k}=${v}`)
      .join('; ');
  }
  get csrf() {
    return this.c.gh_csrf;
  }
}

/** A JSON request. opts: body (object or string), jar, csrf (bool), bearer, xff (X-Forwarded-For), localAddress, admin token. */
export async function api(base, method, p, opts = {}) {
  const headers = {};
  let body;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  }
  if (opts.jar) {
    const h = opts.jar.header();
    if (h) headers.cookie = h;
    if (opts.csrf !== false && opts.jar.csrf) headers['x-csrf-token'] = opts.jar.csrf;
  }
  if (opts.bearer) headers.authorization = `Bearer ${opts.bearer}`;
  if (opts.xff) headers['x-forwarded-for'] = opts.xff;
  const res = await request(base + p, { method, headers, body, localAddress: opts.localAddress, timeout: opts.timeout });
  if (opts.jar) opts.jar.take(res);
  let json = null;
  try {
    json = res.body.length ? res.json() : null;
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, json, text: res.text(), raw: res };
}

/** Every message of the outbox. */
export function outbox(dataDir) {
  const f = path.join(dataDir, 'sms-outbox.jsonl');
  if (!fs.existsSync(f)) return [];
  return fs
    .readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Requests a code and returns it from the outbox. */
export async function getCode(srv, phone, purpose, opts = {}) {
  const before = outbox(srv.dataDir).length;
  const r = await api(srv.url, 'POST', '/api/auth/sms-code', { body: { phone, purpose }, localAddress: opts.localAddress });
  if (r.status !== 202) throw new Error(`sms-code ${phone} ${purpose}: ${r.status} ${r.text}`);
  const m = await waitUntil(
    () => outbox(srv.dataDir).slice(before).find((x) => x.to === phone.replace(/[ -]/g, '') && x.purpose === purpose),
    { what: `an SMS to ${phone}` },
  );
  return m.code;
}

/** Registers phone with password; returns {jar, user, res}. */
export async function registerUser(srv, phone, password = 'correct horse battery', opts = {}) {
  const code = await getCode(srv, phone, 'register', opts);
  const jar = new Jar();
  const res = await api(srv.url, 'POST', '/api/auth/register', { body: { phone, code, password }, jar, localAddress: opts.localAddress });
  if (res.status !== 201) throw new Error(`register ${phone}: ${res.status} ${res.text}`);
  return { jar, user: res.json.user, res };
}
