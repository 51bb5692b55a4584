// The penalty box (issue 11, item 3), black-box, in a network namespace
// the test makes itself: `unshare -n` runs lib/penalty-box-ns.mjs, which
// brings lo up, starts gatehouse with shield.kernel_ban on and floods it
// from loopback addresses; nothing touches the host's network or firewall.
// What a client sees: a source refused ban_after times is banned and its
// next connection attempts get no answer at all (the SYN is dropped), other
// sources are served, the ban expires by itself, a /24 sprayed through its
// prefix rule is banned whole, an allow-listed source is never banned (nor
// a /24 that holds it), an operator's `block --for` bans, and stopping the
// server removes the nftables table. Without CAP_NET_ADMIN the log says so
// once, and the listening sockets' filter drops banned sources' SYNs
// instead (closed at accept until it holds a new ban) where the kernel
// lets the process have one (Linux 6.1 does; recent kernels want
// CAP_NET_ADMIN for it too), else banned sources are closed at accept.
// Needs root (or user namespaces), unshare, ip, nft and nf_tables: skipped
// with the reason otherwise.
import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { BIN, tempDir } from './lib/harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INNER = path.join(HERE, 'lib', 'penalty-box-ns.mjs');

function unavailable() {
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && nft list tables'], { encoding: 'utf8' });
  if (r.error) return `unshare not found (${r.error.code}): apt-get install util-linux`;
  if (r.status !== 0)
    return `cannot make a network namespace with nftables here (needs root, iproute2, nftables, nf_tables): ${(r.stderr || '').trim().slice(0, 200)}`;
  return false;
}
const skip = unavailable();

// Runs the inner script in a fresh namespace; resolves with its facts.
function inNamespace(mode, bin) {
  return new Promise((resolve, reject) => {
    const p = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" "${INNER}" ${mode}`], {
      env: { ...process.env, GATEHOUSE_BIN: bin },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120000);
    p.on('error', reject);
    p.on('close', () => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('FACTS '));
      if (!line) return reject(new Error(`no facts from the namespace; stdout:\n${out.slice(-2000)}\nstderr:\n${err.slice(-2000)}`));
      const facts = JSON.parse(line.slice(6));
      if (facts.error) return reject(new Error(`in the namespace: ${facts.error}\nserver stderr:\n${facts.stderrTail || ''}`));
      resolve(facts);
    });
  });
}

test('penalty box with kernel_ban: SYNs of a banned source are dropped; bans expire; allow list never banned; table removed at stop', { skip }, async () => {
  const f = await inNamespace('kernel', BIN);
  const ctx = JSON.stringify(f, null, 1).slice(0, 6000);
  try {

    assert.equal(f.tableAtStart, true, `the nftables table exists while the server runs\n${ctx}`);
    assert.equal(f.kernelState, 'on');

    // the flood: 2 pass (burst 2), 5 refused (ban_after 5), then silence
    assert.deepEqual(f.flood.slice(0, 7), [200, 200, 429, 429, 429, 429, 429]);
    assert.ok(f.flood.length <= 9, `the source is cut off right after its 5th refusal: ${f.flood}`);
    assert.ok(['timeout', 'closed'].includes(f.flood.at(-1)), `the flood ends without an answer: ${f.flood}`);
    assert.equal(f.floodedNext, 'timeout', 'its next connection gets no SYN-ACK: dropped in the kernel');
    assert.equal(f.otherSource, 'answered 200', 'another address is served');
    const ban = f.bansAfterFlood.bans.find((b) => b.cidr === '127.0.0.2/32');
    assert.ok(ban, `GET /admin/v1/bans lists the source\n${ctx}`);
    assert.equal(ban.reason, 'refusals');
    assert.ok(ban.remaining_s >= 1 && ban.remaining_s <= 8, `remaining time within ban_time: ${ban.remaining_s}`);
    assert.ok(f.kernelEntryWait >= 0, 'the ban reaches the kernel set');
    assert.match(f.kernelSet, /127\.0\.0\.2 timeout 8s expires/, 'the kernel set holds it with its own timeout');
    assert.match(f.ctlBans, /127\.0\.0\.2\/32\s+refusals\s+\d+ s left/, `gatehouse ctl bans: ${f.ctlBans}`);
    assert.match(f.ctlBans, /kernel set: on \(table inet ghtest\)\n/, 'no socket filter while the kernel set holds the bans');
    assert.equal(f.bansAfterFlood.socket_filter, 'off');

    // a spray over one /24 refused by its prefix rule bans the /24
    assert.ok(f.prefixBans.includes('127.0.7.0/24'), `the /24 is banned: ${f.prefixBans}`);
    assert.equal(f.prefixOtherAddress, 'timeout', 'an address of that /24 that never sent is dropped too');

    // a /24 holding an allow-listed address: addresses only, and the allowed one is served
    assert.ok(!f.allowPrefixBans.includes('127.0.9.0/24'), `never the /24 of an allow-listed address: ${f.allowPrefixBans}`);
    assert.ok(f.allowPrefixBans.length >= 1 && f.allowPrefixBans.every((c) => c.endsWith('/32')), `its sprayers are banned one by one: ${f.allowPrefixBans}`);
    assert.ok(!f.allowPrefixBans.includes('127.0.9.5/32'));
    assert.equal(f.allowFlood.length, 30);
    assert.ok(f.allowFlood.every((s) => s === 200), `the allow-listed source is never refused: ${f.allowFlood}`);
    assert.equal(f.allowNext, 'answered 200');
    assert.equal(f.allowOperator.status, 422, 'an operator cannot ban a prefix holding an allow-listed address');
    assert.equal(f.allowOperator.json.error.code, 'invalid_parameter');

    // an operator's ban with --for
    assert.equal(f.operator.status, 201);
    assert.deepEqual(f.operator.json, { cidr: '127.0.0.6/32', added: true, for_seconds: 8, kernel: true });
    assert.equal(f.operatorNext, 'timeout', 'the operator-banned source gets no answer');
    assert.equal(f.liftedBefore, 'timeout');
    assert.equal(f.lift.status, 200, JSON.stringify(f.lift));
    assert.equal(f.liftedAfter, 'answered 200', 'unblock lifts the ban, in the kernel too');
    assert.equal(f.liftAgain, 404);

    // /metrics counts additions and drops
    const m = f.metrics;
    assert.ok(m['gatehouse_shield_bans_total{reason="refusals"}'] >= 2);
    assert.equal(m['gatehouse_shield_bans_total{reason="operator"}'], 2);
    assert.ok(m.gatehouse_shield_kernel_ban_added_total >= 3);
    assert.ok(m.gatehouse_shield_kernel_ban_dropped_packets_total >= 1, `the kernel's drops are counted\n${ctx}`);
    assert.equal(m.gatehouse_shield_kernel_ban_active, 1);
    assert.equal(m.gatehouse_shield_socket_ban_entries, 0, 'no socket filter while the kernel set holds the bans');

    // the ban expires by itself, in the kernel and in memory
    assert.match(f.expired.probe, /^answered /, `answered again once the ban expired\n${ctx}`);
    assert.deepEqual(f.bansAfterExpiry, []);
    assert.doesNotMatch(f.kernelSetAfterExpiry, /127\.0\.0\.2 /);

    // stopping the server removes the table
    assert.equal(f.sanitizer, null, 'no sanitizer report');
    assert.deepEqual(f.exit, { code: 0, signal: null });
    assert.equal(f.tableAfterStop, false, `the table is gone after stop: ${f.tables}`);
  } catch (e) {
    e.message += `\nwhat the namespace saw: ${ctx}`;
    throw e;
  }
});

test("penalty box without CAP_NET_ADMIN: said once in the log; banned sources' SYNs dropped by the listening sockets' filter, or closed at accept where the kernel refuses one", { skip }, async (t) => {
  const setpriv = spawnSync('setpriv', ['--version']);
  if (setpriv.error) return t.skip('setpriv (util-linux) not found');
  // the same binary with CAP_NET_ADMIN out of its bounding set
  const wrapper = path.join(tempDir('gh-nocap-'), 'gatehouse-nocap');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec setpriv --bounding-set -net_admin -- "${BIN}" "$@"\n`, { mode: 0o755 });
  const f = await inNamespace('nocap', wrapper);
  const ctx = JSON.stringify(f, null, 1).slice(0, 6000);
  try {

    assert.equal(f.tableAtStart, false, 'no table was made');
    assert.equal(f.kernelState, 'unavailable');
    assert.equal(f.kernelLogLines, 1, `said once: ${f.kernelLog}`);
    assert.deepEqual(f.flood.slice(0, 7), [200, 200, 429, 429, 429, 429, 429]);
    assert.equal(f.otherSource, 'answered 200');
    assert.equal(f.allowNext, 'answered 200');
    assert.equal(f.liftedAfter, 'answered 200', 'unblock lifts the ban');
    assert.equal(f.metrics.gatehouse_shield_kernel_ban_active, 0);
    const state = f.bansAfterFlood.socket_filter;
    if (state === 'on') {
      assert.match(f.kernelLog, /cannot be made.*listening sockets' filter drops banned sources' SYNs instead/);
      // right after the ban it is closed at accept; within 200 ms the filter holds it
      assert.ok(['closed', 'timeout'].includes(f.flood.at(-1)), `the banned source gets no answer: ${f.flood}`);
      assert.equal(f.floodedNext, 'timeout', 'its next connection gets no SYN-ACK: dropped by the socket filter');
      assert.equal(f.prefixOtherAddress, 'timeout', 'the banned /24 is in the filter');
      assert.equal(f.operatorNext, 'timeout');
      assert.equal(f.liftedBefore, 'timeout');
      assert.ok(f.metrics.gatehouse_shield_socket_ban_entries >= 2, `bans in the filter: ${f.metrics.gatehouse_shield_socket_ban_entries}`);
    } else {
      assert.equal(state, 'refused', 'the kernel refused the socket filter');
      assert.match(f.kernelLog, /cannot be made.*closed at accept instead \(the kernel refuses a filter on the listening sockets too\)/);
      assert.equal(f.flood.at(-1), 'closed', `the banned source is closed at accept: ${f.flood}`);
      assert.equal(f.floodedNext, 'closed');
      assert.equal(f.prefixOtherAddress, 'closed');
      assert.equal(f.operatorNext, 'closed');
      assert.equal(f.liftedBefore, 'closed');
      assert.ok(f.metrics.gatehouse_shield_ban_refused_total >= 3);
      assert.equal(f.metrics.gatehouse_shield_socket_ban_entries, 0);
    }
    assert.equal(f.metrics.gatehouse_shield_kernel_ban_added_total, 0);
    assert.match(f.expired.probe, /^answered /);
    assert.equal(f.sanitizer, null, 'no sanitizer report');
    assert.deepEqual(f.exit, { code: 0, signal: null });
  } catch (e) {
    e.message += `\nwhat the namespace saw: ${ctx}`;
    throw e;
  }
});
