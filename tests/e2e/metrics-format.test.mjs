// Black-box test of the /metrics exposition (issue 13 item 3): after some
// traffic (200s, 404s, a 429, a failed login) the admin listener's /metrics
// passes `promtool check metrics` (Debian's prometheus package) with no
// lint finding, and the official Python client's parser reads it as typed
// families, one per name, all named gatehouse_*.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/metrics-format.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, request, tempDir, writeArtifact } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';

const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = [{"name": f.name, "type": f.type, "samples": len(f.samples)}
       for f in text_string_to_metric_families(sys.stdin.read())]
print(json.dumps(out))
`;

// Debian's python3-prometheus-client is for /usr/bin/python3, which a
// pyenv or venv python3 earlier in PATH does not see
const PYTHON = [process.env.PYTHON, 'python3', '/usr/bin/python3'].find(
  (py) => py && spawnSync(py, ['-c', 'import prometheus_client']).status === 0,
);

function missingTools() {
  const why = [];
  if (spawnSync('promtool', ['--version']).status !== 0) why.push('promtool (apt-get install prometheus)');
  if (!PYTHON) why.push('prometheus_client (apt-get install python3-prometheus-client)');
  return why.length ? `missing ${why.join(', ')}: run scripts/deps.sh` : false;
}

test('/metrics passes promtool check metrics and the Python client parser', { skip: missingTools() }, async (t) => {
  // an upstream (never called) so the per-upstream families are rendered too
  const ups = path.join(tempDir('gh-ups-'), 'upstreams.ini');
  fs.writeFileSync(ups, '[upstream a]\nmodel = m\nbase_url = http://127.0.0.1:9/v1\nupstream_model = ok\n');
  const srv = await startServer({
    t,
    set: { ...FAST, 'shield.rules': 'anon:addr:3/1s', 'gateway.upstreams_file': ups },
  });
  // traffic: a login failure, 200s, 404s, then a 429 from the anon rule
  const phone = cnPhone();
  await registerUser(srv, phone, 'correct horse battery');
  const bad = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: 'not the password' } });
  assert.equal(bad.status, 401);
  const statuses = [];
  for (let i = 0; i < 6; i++) statuses.push((await request(`${srv.url}/no-such-page-${i}`)).status);
  for (let i = 0; i < 3; i++) statuses.push((await request(`${srv.url}/healthz`)).status);
  // the anon class (the shield's API routes) meets its 3/1s rule
  for (let i = 0; i < 5; i++) statuses.push((await request(`${srv.url}/api/pow/challenge?scope=register`)).status);
  assert.ok(statuses.includes(404), `a 404 among ${statuses}`);
  assert.ok(statuses.includes(429), `a 429 among ${statuses}`);
  await request(`http://127.0.0.1:${srv.adminPort}/no-such-admin-page`);

  const text = await srv.metrics();
  writeArtifact('metrics-format.txt', text);

  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool check metrics exit ${check.status}:\n${check.stdout}${check.stderr}`);
  assert.equal(`${check.stdout}${check.stderr}`.trim(), '', 'promtool lint findings');

  const py = spawnSync(PYTHON, ['-c', PARSE], { input: text, encoding: 'utf8' });
  assert.equal(py.status, 0, `prometheus_client parser: ${py.stderr}`);
  const families = JSON.parse(py.stdout);
  assert.ok(families.length > 20, `${families.length} families`);
  const seen = new Set();
  for (const f of families) {
    assert.notEqual(f.type, 'unknown', `family ${f.name} has no type`);
    assert.match(f.name, /^gatehouse_/, `family ${f.name} lacks the gatehouse_ prefix`);
    assert.ok(!seen.has(f.name), `family ${f.name} appears twice`);
    seen.add(f.name);
  }
  for (const name of [
    'gatehouse_http_requests',
    'gatehouse_http_request_duration_seconds',
    'gatehouse_shield_rate_limited',
    'gatehouse_upstream_requests',
  ]) {
    assert.ok(seen.has(name), `family ${name} parsed`);
  }

  // no empty label values, no "other0"; whole numbers without exponents
  assert.doesNotMatch(text, /=""/, 'an empty label value');
  assert.doesNotMatch(text, /status="other\d/);
  assert.doesNotMatch(text, /_total(\{[^}]*\})? [0-9.]+e\+/, 'a counter printed with an exponent');
  assert.doesNotMatch(text, /_milli\b/);
  await srv.stop();
});
