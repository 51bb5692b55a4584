// Black-box test of "waiting, position N" (issue 15 item 3): a streamed
// call that waits in the gateway's fair queue gets its place in line as
// the SSE comment ": queue position=N" at once, and again when it moves;
// a comment, so OpenAI clients skip it. The real binary in front of the
// model-server simulator with 1 slot, held busy by a long call.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/queue-position.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';
import { startModelSim } from './model-sim.mjs';

let sim, srv;

before(async () => {
  sim = await startModelSim({ slots: 1, ttft: 20, tps: 50, tokens: 5 });
  const file = path.join(tempDir('gh-ups-'), 'upstreams.ini');
  fs.writeFileSync(file, `[upstream sim]\nmodel = sim\nbase_url = ${sim.url}/v1\nmax_concurrent = 1\n`);
  // keep-alives every 10 s (the default): the position must not wait for one
  srv = await startServer({ name: 'queue-position', set: { ...FAST, 'gateway.upstreams_file': file, 'gateway.user_concurrency': '0' } });
});

after(async () => {
  await srv?.stop();
  sim?.stop();
});

async function apiKey() {
  const { jar } = await registerUser(srv, cnPhone());
  const r = await api(srv.url, 'POST', '/api/keys', { body: { name: 'qp' }, jar });
  assert.equal(r.status, 201, r.text);
  return r.json.key;
}

/** A streamed call whose text is collected as it comes: {text, events: [{at, text}], done}. */
function stream(key, tag) {
  const out = { text: '', events: [] };
  out.done = (async () => {
    const res = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'sim', stream: true, messages: [{ role: 'user', content: tag }] }),
      signal: AbortSignal.timeout(60000),
    });
    out.status = res.status;
    const dec = new TextDecoder();
    for await (const chunk of res.body) {
      const text = dec.decode(chunk, { stream: true });
      out.text += text;
      out.events.push({ at: Date.now(), text });
    }
    return out;
  })();
  return out;
}

const positions = (text) => [...text.matchAll(/^: queue position=(\d+)$/gm)].map((m) => Number(m[1]));

test('a waiting stream is told its place in line at once, and as it moves', async () => {
  const [a, b, c] = [await apiKey(), await apiKey(), await apiKey()];
  // a holds the one slot for ~4 s
  const hold = stream(a, 'hold [tokens=200]');
  await waitUntil(async () => (await sim.stats()).active === 1, { what: 'the slot taken', timeout: 20000 });
  const first = stream(b, 'first [tokens=100]');
  await waitUntil(() => positions(first.text).length > 0, { what: "the first waiter's position", timeout: 20000 });
  const second = stream(c, 'second');
  await waitUntil(() => positions(second.text).length > 0, { what: "the second waiter's position", timeout: 20000 });
  // told before the slot freed: not a keep-alive's 10 s later, not with the answer
  const log = await sim.log();
  const held = log.find((e) => e.tag.startsWith('hold'));
  assert.ok(!held.ended, 'the slot was still held when both waiters knew their place');
  assert.equal(positions(first.text)[0], 1, first.text);
  assert.equal(positions(second.text)[0], 2, second.text);

  for (const r of await Promise.all([hold.done, first.done, second.done])) {
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /data: \[DONE\]\n\n$/);
  }
  // the comments come before any data, and the second moved up while the first ran (~2 s)
  for (const r of [first, second]) assert.match(r.text, /^(: [^\n]*\n\n)+data: /, r.text);
  assert.deepEqual(positions(second.text).slice(0, 2), [2, 1], second.text);
  // the call that never waited gets none
  assert.deepEqual(positions(hold.text), []);
});
