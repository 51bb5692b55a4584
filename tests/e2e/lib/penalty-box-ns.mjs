// Runs inside a network namespace of its own (tests/e2e/penalty-box.test.mjs
// starts it under `unshare -n` after `ip link set lo up`): starts gatehouse
// with the penalty box on, floods it from loopback addresses, looks at what
// clients and the kernel see, and prints what it saw as one JSON line. It
// asserts nothing itself, so the test outside reports each fact by name.
// Usage: node penalty-box-ns.mjs kernel|nocap
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { request, runGatehouse, sleep, startServer, tempDir, waitUntil } from './harness.mjs';

const mode = process.argv[2] || 'kernel';
const TABLE = 'ghtest';
const BAN_S = 8; // long enough for the steps below on a loaded machine
const facts = { mode };

function nft(...args) {
  try {
    return { ok: true, out: execFileSync('nft', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    return { ok: false, out: String(e.stderr || e.message) };
  }
}

// Waits (up to 3 s) for the kernel set to hold addr; the ms it took, or -1.
async function inKernelSet(addr) {
  if (mode !== 'kernel') return -1;
  const t0 = Date.now();
  while (Date.now() - t0 < 3000) {
    if (nft('list', 'set', 'inet', TABLE, 'ban4').out.includes(addr)) return Date.now() - t0;
    await sleep(20);
  }
  return -1;
}

// What one client from `from` sees: "answered <status>", "timeout" (no
// SYN-ACK: the kernel's set or the listening socket's filter dropped it) or
// "closed" (accepted, then closed with no answer: the penalty box at
// accept).
function probe(port, from, ms = 1500) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let data = '';
    let connected = false;
    const done = (what) => {
      clearTimeout(timer);
      s.destroy();
      resolve(what);
    };
    const timer = setTimeout(() => done(connected ? 'no answer' : 'timeout'), ms);
    s.on('connect', () => {
      connected = true;
      s.write('GET /api/policy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    });
    s.on('data', (d) => {
      data += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (m) done(`answered ${m[1]}`);
    });
    s.on('error', () => done(connected ? 'closed' : 'error'));
    s.on('close', () => done(data ? 'answered ?' : 'closed'));
  });
}

// Sends up to n requests from one address, each on a new connection, and
// stops at the first that gets no answer. Returns what each saw: the
// status, or probe's word for the silent one.
async function flood(port, from, n) {
  const seen = [];
  for (let i = 0; i < n; i++) {
    const r = await probe(port, from, 1500);
    const m = /^answered (\d+)$/.exec(r);
    seen.push(m ? Number(m[1]) : r);
    if (!m) break;
  }
  return seen;
}

async function admin(srv, method, p, body) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = { authorization: `Bearer ${srv.adminToken()}` };
  // node sends a DELETE's body without a length unless told
  if (text !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  const r = await request(srv.adminUrl + p, { method, headers, body: text });
  return { status: r.status, json: r.body.length ? r.json() : null };
}

const cidrs = (bans) => bans.json.bans.map((b) => b.cidr);

async function metric(srv, name) {
  const text = await srv.metrics();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}

async function main() {
  const dir = tempDir('gh-penalty-');
  const allow = path.join(dir, 'allow.txt');
  fs.writeFileSync(allow, '127.0.9.5\n');
  const srv = await startServer({
    name: `penalty-box-${mode}`,
    workers: 2,
    set: {
      'shield.rules': 'anon:addr:2/10s:burst=2,anon:prefix:10/10s:burst=10',
      'shield.allow_file': allow,
      'shield.ban_after': '5',
      'shield.ban_window': '10s',
      'shield.ban_time': `${BAN_S}s`,
      'shield.kernel_ban': 'true',
      'shield.kernel_ban_table': TABLE,
    },
  });
  const port = srv.port;
  facts.tableAtStart = nft('list', 'table', 'inet', TABLE).ok;
  const bans0 = await admin(srv, 'GET', '/admin/v1/bans');
  facts.kernelState = bans0.json.kernel;
  facts.kernelLogLines = (srv.stderr().match(/"event":"kernel_ban"/g) || []).length;
  facts.kernelLog = (srv.stderr().match(/.*"event":"kernel_ban".*/) || [''])[0];

  // a source that keeps sending after its 429s: 2 pass, 5 refused, banned
  facts.flood = await flood(port, '127.0.0.2', 30);
  // the kernel entry lands from the ban thread's queue (closed at accept until then)
  facts.kernelEntryWait = await inKernelSet('127.0.0.2');
  facts.floodedNext = await probe(port, '127.0.0.2');
  facts.otherSource = await probe(port, '127.0.0.3');
  const bans1 = await admin(srv, 'GET', '/admin/v1/bans');
  facts.bansAfterFlood = bans1.json;
  facts.kernelSet = nft('list', 'set', 'inet', TABLE, 'ban4').out;
  const ctl = await runGatehouse(['ctl', '--admin', `127.0.0.1:${srv.adminPort}`, '--token', srv.adminToken(), 'bans']);
  facts.ctlBans = ctl.stdout + ctl.stderr;

  // a spray from many addresses of one /24: its prefix rule refuses, the /24 is banned
  for (let i = 10; i < 40 && !cidrs(await admin(srv, 'GET', '/admin/v1/bans')).includes('127.0.7.0/24'); i++)
    await flood(port, `127.0.7.${i}`, 2);
  facts.prefixBans = cidrs(await admin(srv, 'GET', '/admin/v1/bans'));
  facts.prefixKernelWait = await inKernelSet('127.0.7.0/24');
  facts.prefixOtherAddress = await probe(port, '127.0.7.200');

  // the same spray in a /24 that holds an allow-listed address: only
  // addresses are banned, never the /24, and the allowed one is served
  facts.allowPrefixBans = [];
  for (let i = 10; i < 40; i++) {
    await flood(port, `127.0.9.${i}`, 2);
    for (const c of cidrs(await admin(srv, 'GET', '/admin/v1/bans')))
      if (c.startsWith('127.0.9.') && !facts.allowPrefixBans.includes(c)) facts.allowPrefixBans.push(c);
  }
  facts.allowFlood = await flood(port, '127.0.9.5', 30);
  facts.allowNext = await probe(port, '127.0.9.5');
  facts.allowOperator = await admin(srv, 'POST', '/admin/v1/lists/block', { cidr: '127.0.9.0/24', for_seconds: 60 });

  // an operator's ban with --for
  facts.operator = await admin(srv, 'POST', '/admin/v1/lists/block', { cidr: '127.0.0.6', for_seconds: BAN_S });
  facts.operatorKernelWait = await inKernelSet('127.0.0.6');
  facts.operatorNext = await probe(port, '127.0.0.6');
  // and lifted by `ctl unblock` before its time
  await admin(srv, 'POST', '/admin/v1/lists/block', { cidr: '127.0.0.7', for_seconds: 600 });
  await inKernelSet('127.0.0.7');
  facts.liftedBefore = await probe(port, '127.0.0.7');
  facts.lift = await admin(srv, 'DELETE', '/admin/v1/lists/block', { cidr: '127.0.0.7' });
  facts.liftedAfter = await probe(port, '127.0.0.7', 2500);
  facts.liftAgain = (await admin(srv, 'DELETE', '/admin/v1/lists/block', { cidr: '127.0.0.7' })).status;

  await waitUntil(async () => (await metric(srv, 'gatehouse_shield_kernel_ban_dropped_packets_total')) > 0, {
    timeout: 4000,
    what: 'the drop counter',
  }).catch(() => {});
  facts.metrics = {};
  for (const m of [
    'gatehouse_shield_bans_total{reason="refusals"}',
    'gatehouse_shield_bans_total{reason="operator"}',
    'gatehouse_shield_kernel_ban_dropped_packets_total',
    'gatehouse_shield_kernel_ban_added_total',
    'gatehouse_shield_kernel_ban_active',
    'gatehouse_shield_ban_refused_total',
    'gatehouse_shield_socket_ban_entries',
  ]) {
    const text = await srv.metrics();
    const line = text.split('\n').find((l) => l.startsWith(m + ' '));
    facts.metrics[m] = line ? Number(line.split(' ').pop()) : null;
  }

  // the entry expires by itself
  const t0 = Date.now();
  let after = '';
  while (Date.now() - t0 < (BAN_S + 8) * 1000) {
    after = await probe(port, '127.0.0.2', 1000);
    if (after.startsWith('answered')) break;
    await sleep(250);
  }
  facts.expired = { probe: after, afterMs: Date.now() - t0 };
  facts.bansAfterExpiry = cidrs(await admin(srv, 'GET', '/admin/v1/bans')).filter((c) => c === '127.0.0.2/32');
  facts.kernelSetAfterExpiry = nft('list', 'set', 'inet', TABLE, 'ban4').out;

  srv.kill('SIGTERM');
  facts.exit = await srv.exited;
  facts.tableAfterStop = nft('list', 'table', 'inet', TABLE).ok;
  facts.tables = nft('list', 'tables').out;
  facts.stderrTail = srv.stderr().slice(-2000);
  const san = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.exec(srv.stderr());
  facts.sanitizer = san ? srv.stderr().slice(san.index, san.index + 3000) : null;
}

main()
  .catch((e) => {
    facts.error = String(e && e.stack ? e.stack : e);
  })
  .finally(() => {
    process.stdout.write('\nFACTS ' + JSON.stringify(facts) + '\n');
    process.exit(0);
  });
