// The penalty box counts refusals made before the body (issue 11, items 2
// and 3 together): a spray whose /24 a prefix rule already refuses is
// answered 429 from its headers, and each of those refusals counts towards
// shield.ban_after like any other, so the /24 is banned: its next
// connections are closed at accept, and once the listening socket's
// filter holds the ban (within 200 ms) their SYNs get no answer. Before,
// only the refusal that set the memo counted (one per retry time): a
// sprayed /24 was never banned.
// Without the kernel set: runs anywhere, no namespace or privilege needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { startServer, metricValue, waitUntil } from './lib/harness.mjs';
import { FAST } from './lib/accounts.mjs';
import { smsCodeRequest } from './lib/spray.mjs';

// What one sms-code request from `from` sees: "answered <status>",
// "closed" (accepted, then closed with no answer: the penalty box at
// accept) or "no SYN-ACK" (the connection never opened: the listening
// socket's filter dropped its SYN; the kernel retries a SYN after 1 s, so
// 1.5 s without one is a drop).
function send(port, from, i, ms = 5000) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let data = '';
    let connected = false;
    const done = (what) => {
      clearTimeout(timer);
      s.destroy();
      resolve(what);
    };
    const timer = setTimeout(() => done(connected ? 'no answer' : 'no SYN-ACK'), ms);
    s.on('connect', () => {
      connected = true;
      s.write(smsCodeRequest(i));
    });
    s.on('data', (d) => {
      data += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (m) done(`answered ${m[1]}`);
    });
    s.on('error', () => done('closed'));
    s.on('close', () => done(data ? 'answered ?' : 'closed'));
  });
}

test('penalty box: refusals before the body count, so a sprayed /24 is banned; its SYNs are then dropped by the listening socket', async (t) => {
  const srv = await startServer({
    t,
    workers: 1,
    set: {
      ...FAST,
      'shield.rules': 'register:prefix:2/1m',
      'shield.ban_after': '5',
      'shield.ban_window': '1m',
      'shield.ban_time': '1m',
    },
  });
  // one request per new connection, each from its own address of 127.0.7.0/24
  const seen = [];
  for (let i = 0; i < 7; i++) seen.push(await send(srv.port, `127.0.7.${i + 1}`, i));
  assert.deepEqual(seen.slice(2), Array(5).fill('answered 429'), `2 pass, then refused: ${seen}`);
  let m = await srv.metrics();
  assert.ok(metricValue(m, 'gatehouse_shield_refused_before_body_total') >= 4,
    `the later refusals were made from the headers\n${m.split('\n').filter((l) => l.includes('before_body')).join('\n')}`);

  // 5 refusals by the prefix rule, 4 of them before the body: banned
  const next = await send(srv.port, '127.0.7.100', 100, 1500);
  const bans = await fetch(`${srv.adminUrl}/admin/v1/bans`, { headers: { authorization: `Bearer ${srv.adminToken()}` } }).then((r) => r.json());
  if (bans.socket_filter === 'refused') {
    // a kernel that wants CAP_NET_ADMIN for a TCP socket's filter, which this process lacks
    assert.equal(next, 'closed', `the /24's next connection is closed at accept (got: ${next})`);
  } else {
    assert.equal(bans.socket_filter, 'on');
    assert.ok(['closed', 'no SYN-ACK'].includes(next),
      `the /24's next connection is closed at accept, or dropped once the filter holds the ban (got: ${next})`);
    await waitUntil(async () => metricValue(await srv.metrics(), 'gatehouse_shield_socket_ban_entries') === 1, {
      what: 'the ban in the listening socket\'s filter',
    });
    const later = await send(srv.port, '127.0.7.101', 101, 1500);
    assert.equal(later, 'no SYN-ACK', 'the filter drops the SYN of any address of the /24');
  }
  m = await srv.metrics();
  assert.equal(metricValue(m, 'gatehouse_shield_bans_total', { reason: 'refusals' }), 1);
  assert.equal(metricValue(m, 'gatehouse_shield_ban_refused_total'), next === 'closed' ? 1 : 0,
    'closed at accept only before the filter held the ban');

  // another /24 is served
  const other = await send(srv.port, '127.0.8.1', 200);
  assert.notEqual(other, 'closed', 'another /24 is not banned');
  assert.notEqual(other, 'answered 429', 'another /24 is not refused');
  srv.kill('SIGTERM');
  await srv.expectCleanExit();
});
