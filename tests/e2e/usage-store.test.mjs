// Black-box tests of usage records in the store (issue 14 item 1): what
// /api/usage shows survives a restart (it is the store's usage table, not
// a file), and a usage.jsonl left by an older version is moved into the
// store once and renamed, never counted twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';

const hello = [{ role: 'user', content: 'a brave new word' }];

async function chat(srv, key) {
  const r = await api(srv.url, 'POST', '/v1/chat/completions', { bearer: key, body: { model: 'echo', messages: hello } });
  assert.equal(r.status, 200, r.text);
  return r.json.usage;
}

/** The caller's /api/usage rows by date. */
async function usage(srv, key) {
  const r = await api(srv.url, 'GET', '/api/usage', { bearer: key });
  assert.equal(r.status, 200, r.text);
  return Object.fromEntries(r.json.data.map((x) => [x.date, x]));
}

const today = () => new Date().toISOString().slice(0, 10);
const dayNumber = (date) => Math.floor(Date.parse(`${date}T00:00:00Z`) / 86400000);

test('usage is kept in the store: it survives a restart; an old usage.jsonl is moved in once', async (t) => {
  const dataDir = path.join(tempDir(), 'data');
  let srv = await startServer({ t, dataDir, set: FAST });
  const { jar, user } = await registerUser(srv, cnPhone());
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'u' }, jar });
  assert.equal(k.status, 201, k.text);
  const key = k.json.key;
  const keyId = Number(k.json.id ?? k.json.key_id);
  const per = await chat(srv, key);
  await chat(srv, key);
  const perCall = per.total_tokens;
  await waitUntil(async () => (await usage(srv, key))[today()]?.requests === 2, { what: 'two calls counted' });
  await srv.stop(); // the writer hands what it holds to the store before the store closes
  assert.ok(!fs.existsSync(path.join(dataDir, 'usage.jsonl')), 'no file of its own');

  srv = await startServer({ t, dataDir, set: FAST, name: 'usage-restart' });
  let rows = await usage(srv, key);
  assert.equal(rows[today()].requests, 2, 'loaded from the store');
  assert.equal(rows[today()].total_tokens, 2 * perCall);
  await chat(srv, key);
  await waitUntil(async () => (await usage(srv, key))[today()]?.requests === 3, { what: 'a third call' });
  await srv.stop();

  // an older version's file: two calls of the day before, one torn line
  const yesterday = new Date(Date.now() - 86400000).toISOString().slice(0, 10);
  const line = (extra) =>
    JSON.stringify({ ts: `${yesterday}T12:00:00Z`, day: dayNumber(yesterday), key_id: keyId, user_id: Number(user.id), model: 'echo', prompt_tokens: 5, completion_tokens: 3, cached_tokens: 1, reasoning_tokens: 0, cut_short: false, status: 200, ...extra });
  const legacy = path.join(dataDir, 'usage.jsonl');
  fs.writeFileSync(legacy, `${line()}\n${line({ cut_short: true })}\n{"ts":"tor`, { mode: 0o600 });
  srv = await startServer({ t, dataDir, set: FAST, name: 'usage-import' });
  // the log's own thread writes it: it may come after the server answers
  await srv.waitStderr(/"event":"usage_imported"/);
  assert.ok(!fs.existsSync(legacy) && fs.existsSync(`${legacy}.imported`), 'renamed once moved');
  rows = await usage(srv, key);
  assert.equal(rows[yesterday].requests, 2);
  assert.equal(rows[yesterday].prompt_tokens, 10);
  assert.equal(rows[yesterday].completion_tokens, 6);
  assert.equal(rows[yesterday].cached_tokens, 2);
  assert.equal(rows[yesterday].cut_short, 1);
  assert.equal(rows[today()].requests, 3);
  await srv.stop();

  // started again: nothing imported twice
  srv = await startServer({ t, dataDir, set: FAST, name: 'usage-again' });
  await srv.waitStderr(/"event":"listening"/); // logged after the import would be
  assert.doesNotMatch(srv.stderr(), /"event":"usage_imported"/);
  rows = await usage(srv, key);
  assert.equal(rows[yesterday].requests, 2);
  assert.equal(rows[today()].requests, 3);
  await srv.stop();
});
