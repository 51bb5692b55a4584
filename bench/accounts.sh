#!/usr/bin/env bash
# Login latency while registrations flood the password pool (issue 3).
# Starts gatehouse at the default argon2id cost, measures p50/p99 of logins
# alone, then with a concurrent flood of registrations (valid codes, from
# 127.0.0.2-127.0.0.254), in the same run, and prints the ratio (target:
# p99 with flood <= 2x alone) and registrations/s and logins/s per core.
# Usage: bench/accounts.sh [LOGINS] [FLOOD]   (defaults 200 and 400)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEHOUSE_BIN:-build/gatehouse}
exec node --input-type=module - "$BIN" "${1:-200}" "${2:-400}" <<'JS'
import { startServer } from './tests/e2e/lib/harness.mjs';
import { api, getCode, cnPhone, registerUser } from './tests/e2e/lib/accounts.mjs';
import os from 'node:os';
const [bin, nLogin, nFlood] = [process.argv[2], +process.argv[3], +process.argv[4]];
process.env.GATEHOUSE_BIN = bin;
const budgets = { 'sms.cooldown': '0', 'sms.per_number_day': '1000000', 'sms.per_addr_hour': '1000000',
  'sms.per_net_hour': '1000000', 'sms.per_prefix_hour': '1000000', 'sms.per_cc_hour': '1000000',
  'sms.global_hour': '100000000', 'identity.hash_queue_max': '100000', 'identity.hash_deadline': '10m' };
const srv = await startServer({ name: 'bench-accounts', set: budgets });
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
try {
  const users = [];
  for (let i = 0; i < 8; i++) { const phone = cnPhone(); await registerUser(srv, phone, 'bench password 123'); users.push(phone); }
  async function logins(n, conc) {
    const lat = []; let i = 0;
    await Promise.all(Array.from({ length: conc }, async () => {
      while (i < n) { i++; const phone = users[i % users.length]; const t0 = performance.now();
        const r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'bench password 123' } });
        if (r.status !== 200) throw new Error(`login ${r.status} ${r.text}`);
        lat.push(performance.now() - t0); }
    }));
    return lat;
  }
  const t0 = performance.now();
  const alone = await logins(nLogin, 2);
  const loginRate = nLogin / ((performance.now() - t0) / 1000);
  // codes for the flood
  const flood = [];
  for (let i = 0; i < nFlood; i++) { const phone = cnPhone(); flood.push([phone, await getCode(srv, phone, 'register')]); }
  let done = 0; const f0 = performance.now();
  const floodP = Promise.all(flood.map(([phone, code], k) => api(srv.url, 'POST', '/api/auth/register',
    { body: { phone, code, password: 'bench password 123' }, localAddress: `127.0.0.${2 + (k % 250)}`, timeout: 600000 })
    .then((r) => { if (r.status === 201) done++; })));
  const withFlood = await logins(nLogin, 2);
  await floodP;
  const regRate = done / ((performance.now() - f0) / 1000);
  const cores = os.cpus().length;
  const f = (x) => x.toFixed(1);
  console.log(`logins alone:      p50 ${f(pct(alone, 0.5))} ms  p99 ${f(pct(alone, 0.99))} ms`);
  console.log(`logins with flood: p50 ${f(pct(withFlood, 0.5))} ms  p99 ${f(pct(withFlood, 0.99))} ms`);
  console.log(`ratio p99 flood/alone: ${(pct(withFlood, 0.99) / pct(alone, 0.99)).toFixed(2)} (target <= 2)`);
  console.log(`registrations/s: ${f(regRate)} (${f(regRate / cores)} per core, ${done}/${nFlood} ok)`);
  console.log(`logins/s: ${f(loginRate)} (${f(loginRate / cores)} per core)`);
} finally { await srv.stop().catch(() => srv.kill('SIGKILL')); }
JS
