// Black-box tests of the status page (issue 6): the Statuspage-shaped JSON,
// the HTML page and its headers, incidents run through `gatehouse ctl`,
// component overrides, the admin API's refusals, persistence across a
// restart, and `gatehouse status export`.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/status.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { request, startServer, runGatehouse, tempDir, freePorts, waitUntil } from './lib/harness.mjs';

// the site's pages' policy: the status page shares their headers (tests/e2e/assets.test.mjs)
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const COMPONENT_STATES = ['operational', 'degraded_performance', 'partial_outage', 'major_outage'];
const INCIDENT_STATES = ['investigating', 'identified', 'monitoring', 'resolved'];
const IMPACTS = ['none', 'minor', 'major', 'critical'];
const INDICATORS = ['none', 'minor', 'major', 'critical'];
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const DOCS = ['summary.json', 'status.json', 'components.json', 'incidents.json', 'incidents/unresolved.json'];

function assertTime(v, what, nullable = false) {
  if (nullable && v === null) return;
  assert.equal(typeof v, 'string', `${what} is not a string: ${JSON.stringify(v)}`);
  assert.match(v, ISO, `${what} is not ISO 8601: ${v}`);
  assert.ok(!Number.isNaN(Date.parse(v)), `${what} does not parse: ${v}`);
}

function checkPage(p) {
  assert.equal(typeof p, 'object');
  for (const k of ['id', 'name', 'url', 'time_zone']) assert.equal(typeof p[k], 'string', `page.${k}`);
  assertTime(p.updated_at, 'page.updated_at');
}

function checkStatus(s) {
  assert.ok(INDICATORS.includes(s.indicator), `indicator ${s.indicator}`);
  assert.equal(typeof s.description, 'string');
  assert.ok(s.description.length > 0);
}

function checkComponent(c) {
  for (const k of ['id', 'name', 'description']) assert.equal(typeof c[k], 'string', `component.${k}`);
  assert.ok(COMPONENT_STATES.includes(c.status), `component status ${c.status}`);
  assert.equal(typeof c.position, 'number');
  assertTime(c.created_at, 'component.created_at');
  assertTime(c.updated_at, 'component.updated_at');
  assert.equal(c.override, undefined, 'admin-only field on the public API');
}

function checkIncident(x) {
  for (const k of ['id', 'name']) assert.equal(typeof x[k], 'string', `incident.${k}`);
  assert.ok(INCIDENT_STATES.includes(x.status), `incident status ${x.status}`);
  assert.ok(IMPACTS.includes(x.impact), `impact ${x.impact}`);
  assertTime(x.created_at, 'incident.created_at');
  assertTime(x.updated_at, 'incident.updated_at');
  assertTime(x.resolved_at, 'incident.resolved_at', true);
  assert.equal(x.status === 'resolved', x.resolved_at !== null, 'resolved_at iff resolved');
  assert.ok(Array.isArray(x.incident_updates) && x.incident_updates.length > 0);
  let prev = Infinity;
  for (const u of x.incident_updates) {
    assert.equal(typeof u.body, 'string');
    assert.ok(INCIDENT_STATES.includes(u.status), `update status ${u.status}`);
    assertTime(u.created_at, 'update.created_at');
    assertTime(u.display_at, 'update.display_at');
    const t = Date.parse(u.created_at);
    assert.ok(t <= prev, 'incident_updates newest first');
    prev = t;
  }
  assert.equal(x.incident_updates[0].status, x.status, 'the newest update carries the status');
  assert.ok(Array.isArray(x.components));
  x.components.forEach(checkComponent);
}

/** Validates one document against Statuspage's shape; returns it. */
function checkDoc(name, j) {
  checkPage(j.page);
  if (name === 'summary.json' || name === 'status.json') checkStatus(j.status);
  if (name === 'summary.json' || name === 'components.json') {
    assert.deepEqual(
      j.components.map((c) => c.id),
      ['web', 'api', 'login', 'registration', 'models'],
    );
    j.components.forEach(checkComponent);
  }
  if (name === 'summary.json' || name.startsWith('incidents')) {
    assert.ok(Array.isArray(j.incidents));
    j.incidents.forEach(checkIncident);
    if (name !== 'incidents.json') assert.ok(j.incidents.every((x) => x.status !== 'resolved'));
  }
  if (name === 'summary.json') assert.ok(Array.isArray(j.scheduled_maintenances));
  return j;
}

async function getDoc(srv, name) {
  const r = await request(`${srv.url}/api/v2/${name}`);
  assert.equal(r.status, 200, `${name}: ${r.status}`);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.match(r.headers['cache-control'] ?? '', /max-age=\d+/);
  return checkDoc(name, r.json());
}

function ctl(srv, args, { token } = {}) {
  return runGatehouse(['ctl', '--admin', `127.0.0.1:${srv.adminPort}`, '--token', token ?? srv.adminToken(), ...args]);
}

async function ctlJson(srv, args) {
  const r = await ctl(srv, ['--json', ...args]);
  assert.equal(r.code, 0, `ctl ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function admin(srv, method, p, body, token = srv.adminToken()) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return request(`${srv.adminUrl}${p}`, { method, headers, body: typeof body === 'string' ? body : body && JSON.stringify(body) });
}

function assertSecurityHeaders(r, what) {
  assert.equal(r.headers['content-security-policy'], CSP, `${what}: CSP`);
  assert.equal(r.headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
  assert.equal(r.headers['referrer-policy'], 'no-referrer', `${what}: Referrer-Policy`);
  assert.equal(r.headers['x-content-type-options'], 'nosniff', `${what}: X-Content-Type-Options`);
  assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin', `${what}: Cross-Origin-Opener-Policy`);
}

test('every status JSON endpoint has the Statuspage shape', async (t) => {
  const srv = await startServer({ t, set: { 'status.page_name': 'Gatehouse Test' } });
  for (const name of DOCS) {
    const j = await getDoc(srv, name);
    assert.equal(j.page.name, 'Gatehouse Test');
  }
  const s = await getDoc(srv, 'status.json');
  assert.deepEqual(s.status, { indicator: 'none', description: 'All Systems Operational' });
  const c = await getDoc(srv, 'components.json');
  assert.ok(c.components.every((x) => x.status === 'operational'));
  assert.deepEqual(
    c.components.map((x) => x.name),
    ['Web', 'API', 'Login', 'Registration', 'Chat models'],
  );
  // conditional GET
  const r1 = await request(`${srv.url}/api/v2/summary.json`);
  const r2 = await request(`${srv.url}/api/v2/summary.json`, { headers: { 'if-none-match': r1.headers.etag } });
  assert.equal(r2.status, 304);
  await srv.stop();
});

test('the status page: security headers, languages, no inline code, its stylesheet', async (t) => {
  const srv = await startServer({ t });
  const r = await request(`${srv.url}/status`);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assertSecurityHeaders(r, '/status');
  const html = r.text();
  assert.match(html, /<html lang="en">/);
  assert.match(html, /All Systems Operational/);
  assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)|\sstyle=|\son[a-z]+=/i, "inline script or style");
  assert.doesNotMatch(html, /http-equiv="refresh"/i, 'the page refreshes by script, which the reader can stop (WCAG 2.2.1)');
  for (const name of ['Web', 'API', 'Login', 'Registration', 'Chat models']) assert.ok(html.includes(name), name);
  assert.equal((html.match(/class="b /g) ?? []).length, 90 * 5, '90 daily bars per component');

  const zh = await request(`${srv.url}/status`, { headers: { 'accept-language': 'zh-CN,zh;q=0.9,en;q=0.8' } });
  assertSecurityHeaders(zh, '/status zh');
  assert.match(zh.text(), /<html lang="zh-CN">/);
  assert.match(zh.text(), /所有系统运行正常/);
  const en = await request(`${srv.url}/status?lang=en`, { headers: { 'accept-language': 'zh-CN' } });
  assert.match(en.text(), /<html lang="en">/);
  const q = await request(`${srv.url}/status`, { headers: { 'accept-language': 'zh;q=0.5, en;q=0.9' } });
  assert.match(q.text(), /<html lang="en">/);
  assert.match((await request(`${srv.url}/status?lang=zh`)).text(), /<html lang="zh-CN">/);

  // every stylesheet and script the page references is served with the right type
  const refs = [...html.matchAll(/(?:href|src)="(\/[^"]*)"/g)].map((m) => m[1]);
  assert.ok(refs.includes('/static/status.css'));
  for (const ref of refs) {
    const a = await request(`${srv.url}${ref}`);
    assert.equal(a.status, 200, `${ref}: ${a.status}`);
  }
  const css = await request(`${srv.url}/static/status.css`);
  assert.match(css.headers['content-type'], /^text\/css/);
  assert.match(css.headers['cache-control'], /max-age/);
  assert.equal((await request(`${srv.url}/static/nope.css`)).status, 404);
  await srv.stop();
});

test('an incident run through gatehouse ctl appears, updates and resolves', async (t) => {
  const srv = await startServer({ t });
  const created = await ctlJson(srv, [
    'incident', 'create',
    '--title', 'Registration temporarily limited',
    '--impact', 'major',
    '--status', 'investigating',
    '--body', 'Due to large-scale malicious attacks, registration is temporarily limited. Existing users can log in as usual.',
    '--components', 'registration',
  ]);
  checkIncident(created);
  const id = created.id;
  assert.match(id, /^[a-z0-9]+$/);

  let un = await getDoc(srv, 'incidents/unresolved.json');
  assert.deepEqual(un.incidents.map((x) => x.id), [id]);
  assert.equal(un.incidents[0].components[0].id, 'registration');
  let st = await getDoc(srv, 'status.json');
  assert.equal(st.status.indicator, 'major');
  assert.equal(st.status.description, 'Partial System Outage');
  let page = (await request(`${srv.url}/status`)).text();
  assert.match(page, /Registration temporarily limited/);
  assert.match(page, /Existing users can log in as usual/);
  assert.match(page, /Investigating/);

  // the table output by default
  const table = await ctl(srv, ['incident', 'update', id, '--status', 'identified', '--body', 'We are blocking the attack.']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`incident ${id}`));
  assert.match(table.stdout, /status identified/);
  page = (await request(`${srv.url}/status`)).text();
  assert.ok(page.indexOf('We are blocking the attack.') < page.indexOf('Existing users can log in'), 'newest update first');
  un = await getDoc(srv, 'incidents/unresolved.json');
  assert.equal(un.incidents[0].status, 'identified');
  assert.equal(un.incidents[0].incident_updates.length, 2);

  const list = await ctl(srv, ['incident', 'list']);
  assert.equal(list.code, 0);
  assert.match(list.stdout, /^ID\s+STATUS\s+IMPACT/m);
  assert.match(list.stdout, new RegExp(`${id}\\s+identified\\s+major`));

  const resolved = await ctlJson(srv, ['incident', 'update', id, '--status', 'resolved', '--body', 'Registration is open again.']);
  assert.equal(resolved.status, 'resolved');
  assertTime(resolved.resolved_at, 'resolved_at');
  un = await getDoc(srv, 'incidents/unresolved.json');
  assert.equal(un.incidents.length, 0);
  const all = await getDoc(srv, 'incidents.json');
  assert.equal(all.incidents[0].id, id);
  assert.equal(all.incidents[0].incident_updates.length, 3);
  st = await getDoc(srv, 'status.json');
  assert.equal(st.status.indicator, 'none');
  page = (await request(`${srv.url}/status`)).text();
  assert.match(page, /Past incidents[\s\S]*Registration temporarily limited/);
  await srv.stop();
});

test('component overrides through gatehouse ctl', async (t) => {
  const srv = await startServer({ t });
  const r = await ctl(srv, ['component', 'set', 'api', 'major_outage']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /api\s+major_outage/);
  let c = await getDoc(srv, 'components.json');
  assert.equal(c.components.find((x) => x.id === 'api').status, 'major_outage');
  assert.deepEqual((await getDoc(srv, 'status.json')).status, { indicator: 'critical', description: 'Major Service Outage' });
  const listed = await ctlJson(srv, ['component', 'list']);
  assert.equal(listed.components.find((x) => x.id === 'api').override, 'major_outage');
  assert.equal((await ctl(srv, ['component', 'clear', 'api'])).code, 0);
  c = await getDoc(srv, 'components.json');
  assert.equal(c.components.find((x) => x.id === 'api').status, 'operational');
  await srv.stop();
});

test('gatehouse ctl: wrong token, unknown command, bad arguments, server down', async (t) => {
  const srv = await startServer({ t });
  const wrong = await ctl(srv, ['incident', 'list'], { token: 'not-the-token' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /401.*token/);

  const unknown = await ctl(srv, ['incident', 'explode']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command/);

  const bad = [
    [['incident', 'create', '--impact', 'minor', '--body', 'b'], /--title is required/],
    [['incident', 'create', '--title', 't', '--impact', 'huge', '--body', 'b'], /unknown impact 'huge'/],
    [['incident', 'create', '--title', 't', '--body', 'b', '--colour', 'red'], /unknown option '--colour'/],
    [['incident', 'create', '--title', 't', '--body', 'b', '--components', 'moon'], /unknown component 'moon'/],
    [['incident', 'update', 'abc', '--status', 'fixed', '--body', 'b'], /unknown status 'fixed'/],
    [['incident', 'update', '--status', 'resolved', '--body', 'b'], /missing argument/],
    [['incident', 'update', 'a/../b', '--status', 'resolved', '--body', 'b'], /invalid incident id/],
    [['component', 'set', 'api'], /missing argument/],
    [['component', 'set', 'api', 'down'], /unknown status 'down'/],
    [['component', 'clear', 'moon'], /unknown component 'moon'/],
  ];
  for (const [args, re] of bad) {
    const r = await ctl(srv, args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.match(r.stderr, /usage:/);
  }
  // the server's refusals exit 1 with its message
  const missing = await ctl(srv, ['incident', 'update', 'nosuchincident', '--status', 'resolved', '--body', 'b']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /404: no incident with id 'nosuchincident'/);

  await srv.stop();
  const [port] = await freePorts(1);
  const down = await runGatehouse(['ctl', '--admin', `127.0.0.1:${port}`, '--token', 'x', 'incident', 'list']);
  assert.equal(down.code, 3);
  assert.match(down.stderr, /cannot reach the admin API/);
});

test('the admin API refuses bad input naming the field', async (t) => {
  const srv = await startServer({ t });
  const cases = [
    ['POST', '/admin/v1/incidents', '{nope', 400, 'invalid_json', null],
    ['POST', '/admin/v1/incidents', '[]', 400, 'invalid_json', null],
    ['POST', '/admin/v1/incidents', { body: 'b' }, 400, 'invalid_request', 'name'],
    ['POST', '/admin/v1/incidents', { name: 'n' }, 400, 'invalid_request', 'body'],
    ['POST', '/admin/v1/incidents', { name: 1, body: 'b' }, 400, 'invalid_request', 'name'],
    ['POST', '/admin/v1/incidents', { name: 'n', body: 'b', impact: 'huge' }, 422, 'invalid_parameter', 'impact'],
    ['POST', '/admin/v1/incidents', { name: 'n', body: 'b', status: 'done' }, 422, 'invalid_parameter', 'status'],
    ['POST', '/admin/v1/incidents', { name: 'n', body: 'b', components: ['moon'] }, 422, 'invalid_parameter', 'components'],
    ['POST', '/admin/v1/incidents', { name: 'x'.repeat(201), body: 'b' }, 422, 'invalid_parameter', 'name'],
    ['POST', '/admin/v1/incidents', { name: 'n', body: 'b', title: 't' }, 400, 'invalid_request', 'title'],
    ['POST', '/admin/v1/incidents/nosuch/updates', { status: 'resolved', body: 'b' }, 404, 'not_found', null],
    ['PUT', '/admin/v1/components/moon', { status: 'operational' }, 404, 'not_found', null],
    ['PUT', '/admin/v1/components/api', { status: 'down' }, 422, 'invalid_parameter', 'status'],
    ['PUT', '/admin/v1/components/api', {}, 400, 'invalid_request', 'status'],
  ];
  for (const [method, p, body, status, code, param] of cases) {
    const r = await admin(srv, method, p, body);
    assert.equal(r.status, status, `${method} ${p} ${JSON.stringify(body)}: ${r.status} ${r.text()}`);
    const e = r.json().error;
    assert.equal(e.code, code);
    if (param) {
      assert.equal(e.param, param);
      assert.ok(e.message.includes(param), `message names ${param}: ${e.message}`);
    }
  }
  assert.equal((await admin(srv, 'GET', '/admin/v1/incidents', undefined, 'wrong')).status, 401);
  const ok = await admin(srv, 'POST', '/admin/v1/incidents', { name: '<b>n</b>', body: 'b', impact: 'none', name_zh: '中文名称' });
  assert.equal(ok.status, 201);
  const html = (await request(`${srv.url}/status`)).text();
  assert.ok(html.includes('&lt;b&gt;n&lt;/b&gt;'), 'incident names are escaped');
  assert.ok((await request(`${srv.url}/status?lang=zh`)).text().includes('中文名称'));
  await srv.stop();
});

test('state survives a restart; status export writes a page that stands alone', async (t) => {
  let srv = await startServer({ t });
  const dataDir = srv.dataDir;
  const x = await ctlJson(srv, ['incident', 'create', '--title', 'Chat answers slow', '--impact', 'minor', '--body', 'Upstream is slow.', '--components', 'models,api']);
  assert.equal((await ctl(srv, ['component', 'set', 'models', 'degraded_performance'])).code, 0);

  // export while the server runs: that is when it is needed
  const dir = path.join(tempDir('gh-export-'), 'site');
  const ex = await runGatehouse(['status', 'export', dir, '--data', dataDir]);
  assert.equal(ex.code, 0, ex.stderr);
  await srv.stop();

  srv = await startServer({ t, dataDir });
  const un = await getDoc(srv, 'incidents/unresolved.json');
  assert.deepEqual(un.incidents.map((i) => i.id), [x.id]);
  const c = await getDoc(srv, 'components.json');
  assert.equal(c.components.find((i) => i.id === 'models').status, 'degraded_performance');
  await srv.stop();

  for (const name of DOCS) {
    const file = path.join(dir, 'api', 'v2', name);
    assert.ok(fs.existsSync(file), `${file} exists`);
    checkDoc(name, JSON.parse(fs.readFileSync(file, 'utf8')));
  }
  const exported = JSON.parse(fs.readFileSync(path.join(dir, 'api/v2/incidents/unresolved.json'), 'utf8'));
  assert.equal(exported.incidents[0].id, x.id);
  for (const page of ['index.html', 'zh.html']) {
    const html = fs.readFileSync(path.join(dir, page), 'utf8');
    assert.match(html, /Chat answers slow/);
    assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)|style=/i);
    const refs = [...html.matchAll(/(?:href|src)="([^"]*)"/g)].map((m) => m[1]);
    assert.ok(refs.includes('status.css'));
    for (const ref of refs) {
      assert.ok(!/^[a-z]+:|^\/|^\?/i.test(ref), `${page}: link ${ref} is not relative to the export`);
      assert.ok(fs.existsSync(path.join(dir, ref)), `${page} references ${ref}, which is missing`);
    }
  }
  assert.match(fs.readFileSync(path.join(dir, 'status.css'), 'utf8'), /\.bars/);

  const usage = await runGatehouse(['status', 'export']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /DIR is missing/);
  assert.equal((await runGatehouse(['status', 'frob'])).code, 2);
});

// Needs the shield's pinnable level (PUT /admin/v1/level) and its call to
// gh_status_attack_level(); skipped while the route does not exist.
test('the attack level opens the templated incident and calm closes it', async (t) => {
  const srv = await startServer({ t, set: { 'status.auto_resolve_delay': '0s' } });
  const pin = await admin(srv, 'PUT', '/admin/v1/level', { level: 'under_attack' });
  if (pin.status === 404) {
    t.skip('PUT /admin/v1/level is not served yet');
    await srv.stop();
    return;
  }
  assert.ok(pin.status < 300, `pin: ${pin.status} ${pin.text()}`);
  const x = await waitUntil(
    async () => (await getDoc(srv, 'incidents/unresolved.json')).incidents.find((i) => i.automatic),
    { timeout: 5000, what: 'the automatic incident' },
  );
  assert.match(x.incident_updates[0].body, /Due to large-scale malicious attacks/);
  assert.match(x.incident_updates[0].body, /Existing users can log in as usual/);
  assert.equal(x.components[0].id, 'registration');
  assert.match((await request(`${srv.url}/status?lang=zh`)).text(), /大规模恶意攻击/);

  const unpin = await admin(srv, 'PUT', '/admin/v1/level', { level: 'normal' });
  assert.ok(unpin.status < 300, `unpin: ${unpin.status} ${unpin.text()}`);
  await waitUntil(async () => (await getDoc(srv, 'incidents/unresolved.json')).incidents.length === 0, {
    timeout: 5000,
    what: 'the automatic incident to close',
  });
  const all = await getDoc(srv, 'incidents.json');
  assert.equal(all.incidents[0].id, x.id);
  assert.equal(all.incidents[0].status, 'resolved');
  await srv.stop();
});
