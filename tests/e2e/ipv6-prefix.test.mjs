// The default rules hold IPv6 sprays at the /48 as they hold IPv4 ones at
// the /24 (issue 10, item 12): logins from hundreds of /64s of one /48 are
// refused with 429 once the /48's allowance is spent, while a client of
// another /48 still signs in. The client addresses arrive in
// X-Forwarded-For from a trusted proxy (127.0.0.1), as behind HAProxy.
//
//   GATEHOUSE_BIN=build/gatehouse node --test tests/e2e/ipv6-prefix.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from './lib/harness.mjs';
import { FAST, api, cnPhone } from './lib/accounts.mjs';

const SPRAY_MAX = 2000; // login:prefix48 allows a burst of 300, then 10/s

function login(srv, xff) {
  const body = { phone: cnPhone(), password: 'not the password 123' };
  return api(srv.url, 'POST', '/api/auth/login', { body, xff });
}

test('default rules: a /48 spraying from many /64s is refused, another /48 is not', async (t) => {
  const srv = await startServer({ t, set: { ...FAST, 'shield.trusted_proxies': '127.0.0.1/32' } });
  const statuses = {};
  let refusedWithRetry = 0;
  // Spray until 30 refusals or SPRAY_MAX requests: the allowance refills at
  // 10/s, so how many pass depends on how fast this machine answers (a
  // sanitizer build on a loaded machine hashes passwords slowly); the bound
  // below is computed from the time the spray took, never assumed.
  const t0 = Date.now();
  for (let i = 0; i < SPRAY_MAX && (statuses[429] || 0) < 30; i++) {
    // a new /64 of 2001:db8:77::/48 each time
    const r = await login(srv, `2001:db8:77:${i.toString(16)}::1`);
    statuses[r.status] = (statuses[r.status] || 0) + 1;
    if (r.status === 429) {
      assert.equal(r.json.error.code, 'rate_limited');
      if (Number(r.headers['retry-after']) >= 1) refusedWithRetry++;
    }
  }
  const elapsed = (Date.now() - t0) / 1000;
  // before the prefix48 defaults every one of these reached the password check
  assert.equal(statuses[429], 30, `429s from one /48: ${JSON.stringify(statuses)}`);
  assert.equal(refusedWithRetry, statuses[429]);
  const allowed = statuses[401] || 0;
  assert.ok(allowed >= 250, `the allowance still lets a /48 in: ${JSON.stringify(statuses)}`);
  assert.ok(allowed <= 300 + 10 * elapsed + 5, `${allowed} passed in ${elapsed.toFixed(1)} s: over burst + rate`);
  // a client of another /48 is untouched
  const other = await login(srv, '2001:db8:99:1::1');
  assert.equal(other.status, 401, other.text);
});
