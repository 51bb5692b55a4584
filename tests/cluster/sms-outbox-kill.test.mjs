// The SMS outbox (issue 14, item 5): an SMS acknowledged with 202 on the
// shared store is a row of sms_outbox, written in the transaction that
// stores its code; a node that dies with it undelivered leaves the row,
// and another node's sweeper claims it once its lease ran out and sends
// it: at least once. Two nodes on one PostgreSQL (scripts/cluster.sh)
// send through the webhook sender to a receiver that is not
// listening yet (node 1's retries keep the messages in flight), node 1 is
// SIGKILLed, then the receiver starts and node 2 delivers them.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/cluster/sms-outbox-kill.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

import { api, cnPhone } from '../e2e/lib/accounts.mjs';
import { waitUntil } from '../e2e/lib/harness.mjs';
import { Cluster, missing } from './lib.mjs';

const opts = missing ? { skip: missing } : {};

/** A port nothing listens on (yet). */
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

let cl;
let receiver;
const got = []; // the webhook bodies received

before(async () => {
  if (missing) return;
  const port = await freePort();
  const hook = [`sms.sender=webhook`, `sms.webhook_url=http://127.0.0.1:${port}/sms`, 'sms.webhook_retries=20', 'sms.webhook_timeout=1s'];
  cl = new Cluster({ nodes: 2, set: ['sms.outbox_lease=2s', ...hook] });
  cl.hookPort = port;
  await cl.up();
});
after(() => {
  receiver?.close();
  cl?.down();
});

test('SMS acknowledged before a SIGKILL are delivered by another node', opts, async (t) => {
  const phones = Array.from({ length: 6 }, () => cnPhone());
  for (const phone of phones) {
    const r = await api(cl.url(1), 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
    assert.equal(r.status, 202, r.text);
  }
  // the receiver is not there: node 1 keeps retrying, the rows stay
  assert.equal(Number(cl.psql('SELECT count(*) FROM sms_outbox').trim()), phones.length);
  // sealed: neither the numbers nor the codes are readable in the table
  const raw = cl.psql("SELECT encode(msg, 'escape') FROM sms_outbox");
  for (const p of phones) assert.ok(!raw.includes(p.slice(1)), 'a phone number in clear');

  process.kill(Number(fs.readFileSync(path.join(cl.dir, 'node1.pid'), 'utf8')), 'SIGKILL');
  const t0 = Date.now();
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push(JSON.parse(body));
      res.writeHead(200).end();
    });
  });
  await new Promise((resolve) => receiver.listen(cl.hookPort, '127.0.0.1', resolve));

  await waitUntil(() => phones.every((p) => got.some((m) => m.to === p)), { what: 'every acknowledged SMS at the receiver', timeout: 20000 });
  t.diagnostic(`all ${phones.length} delivered ${Date.now() - t0} ms after the kill (${got.length} deliveries: at least once)`);
  // each with a code the cluster still accepts: node 2 registers with it
  const m = got.find((x) => x.to === phones[0]);
  const r = await api(cl.url(2), 'POST', '/api/auth/register', { body: { phone: phones[0], code: m.code, password: 'correct horse battery' } });
  assert.equal(r.status, 201, r.text);
  // delivered rows are deleted, and the sweeper's work is counted
  await waitUntil(() => Number(cl.psql('SELECT count(*) FROM sms_outbox').trim()) === 0, { what: 'an empty outbox' });
  assert.ok((await cl.metric(2, 'gatehouse_sms_outbox_claimed_total')) >= phones.length);
  assert.ok((await cl.metric(2, 'gatehouse_sms_outbox_delivered_total')) >= phones.length);
});

test('a graceful stop leaves undelivered SMS in the outbox; the restarted nodes deliver them', opts, async (t) => {
  await new Promise((resolve) => {
    receiver.close(resolve);
    receiver.closeAllConnections();
  });
  const phones = Array.from({ length: 3 }, () => cnPhone());
  for (const phone of phones) {
    const r = await api(cl.url(2), 'POST', '/api/auth/sms-code', { body: { phone, purpose: 'register' } });
    assert.equal(r.status, 202, r.text);
  }
  const pid = Number(fs.readFileSync(path.join(cl.dir, 'node2.pid'), 'utf8'));
  process.kill(pid, 'SIGTERM');
  await waitUntil(
    () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    },
    { what: 'node 2 stopped', timeout: 15000 },
  );
  // not counted as failed, not deleted: still in the table
  assert.equal(Number(cl.psql('SELECT count(*) FROM sms_outbox').trim()), phones.length);
  const before = got.length;
  await new Promise((resolve) => receiver.listen(cl.hookPort, '127.0.0.1', resolve));
  const r = cl.run('up'); // starts the stopped nodes again
  assert.equal(r.code, 0, r.out);
  await waitUntil(() => phones.every((p) => got.slice(before).some((m) => m.to === p)), { what: 'the SMS left at the stop', timeout: 20000 });
  await waitUntil(() => Number(cl.psql('SELECT count(*) FROM sms_outbox').trim()) === 0, { what: 'an empty outbox' });
  t.diagnostic(`${got.length - before} deliveries of ${phones.length} messages after the restart`);
});
