// Several X-Forwarded-For lines (issue 10, item 9). Behind HAProxy's
// "option forwardfor" a client's own X-Forwarded-For line comes first and
// the balancer's line with the real address is appended after it. The lines
// are joined in order and walked from the right, so the forged first line
// cannot move the client's budget to an address of its choosing.
//
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/xff-lines.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { rawExchange, startServer } from './lib/harness.mjs';

const BUDGET = 5;

function get(srv, xffLines) {
  const lines = ['GET / HTTP/1.1', 'Host: gatehouse.test', ...xffLines.map((v) => `X-Forwarded-For: ${v}`), 'Connection: close'];
  return rawExchange(srv.port, lines.join('\r\n') + '\r\n\r\n');
}

test('two X-Forwarded-For lines, forged first and real second: the budget is the real address\'s', async (t) => {
  const srv = await startServer({
    t,
    set: { 'shield.trusted_proxies': '127.0.0.1/32', 'shield.rules': `anon:addr:${BUDGET}/1h:burst=${BUDGET}` },
  });
  const statuses = [];
  for (let i = 0; i < BUDGET * 2; i++) {
    // a new forged address each time; the balancer's line is always the same
    const res = await get(srv, [`198.51.100.${i + 1}`, '192.0.2.10']);
    statuses.push(res.responses[0]?.status);
  }
  // before the fix the forged line won and every request had a fresh budget
  assert.deepEqual(statuses.slice(0, BUDGET), Array(BUDGET).fill(200), JSON.stringify(statuses));
  assert.deepEqual(statuses.slice(BUDGET), Array(BUDGET).fill(429), JSON.stringify(statuses));
  // another real client behind the same balancer keeps its own budget
  let res = await get(srv, ['198.51.100.1', '192.0.2.11']);
  assert.equal(res.responses[0]?.status, 200, res.text.slice(0, 300));
  // the same two addresses in one line mean the same
  res = await get(srv, ['198.51.100.77, 192.0.2.10']);
  assert.equal(res.responses[0]?.status, 429, res.text.slice(0, 300));
  // a trusted hop at the start of the last line: the walk goes on into the line before
  res = await get(srv, ['192.0.2.10', '127.0.0.1']);
  assert.equal(res.responses[0]?.status, 429, res.text.slice(0, 300));
  await srv.stop();
});
