// Black-box tests of the AI gateway (issue 5): the OpenAI-compatible chat
// API through the official `openai` client, quotas, usage, bad input, and
// every upstream failure driven by the fake upstream (fake-upstream.mjs,
// a separate process).
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/gateway.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import OpenAI from 'openai';

import { startServer, rawExchange, reqText, request, tempDir, waitUntil, sleep } from './lib/harness.mjs';
import { startFakeUpstream } from './fake-upstream.mjs';
import { solveChallenge } from './lib/pow.mjs';

// ---- accounts: a user with an API key, through the identity API ----

const jsonHeaders = { 'content-type': 'application/json' };

function cookiesOf(res) {
  const out = {};
  for (const c of [].concat(res.headers['set-cookie'] ?? [])) {
    const [kv] = c.split(';');
    const i = kv.indexOf('=');
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

async function solvePow(srv, scope) {
  const pol = (await request(`${srv.url}/api/policy`)).json();
  return pol.pow_bits ? solveChallenge(srv.url, scope) : undefined;
}

/** Registers a new user and creates an API key: {key, keyId, userId}. */
async function newKey(srv) {
  const phone = `+86138${String(crypto.randomInt(1e8)).padStart(8, '0')}`;
  const post = (p, body, headers = {}) =>
    request(`${srv.url}${p}`, { method: 'POST', headers: { ...jsonHeaders, ...headers }, body: JSON.stringify(body) });
  let r = await post('/api/auth/sms-code', { phone, purpose: 'register', pow: await solvePow(srv, 'sms') });
  assert.equal(r.status, 202, r.text());
  const outbox = path.join(srv.dataDir, 'sms-outbox.jsonl');
  const code = await waitUntil(
    () => {
      if (!fs.existsSync(outbox)) return null;
      const lines = fs.readFileSync(outbox, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      return lines.filter((l) => l.to === phone).pop()?.code;
    },
    { what: 'the SMS code' },
  );
  r = await post('/api/auth/register', { phone, code, password: 'correct horse battery staple 1', pow: await solvePow(srv, 'register') });
  assert.equal(r.status, 201, r.text());
  const userId = r.json().user.id;
  const ck = cookiesOf(r);
  r = await post('/api/keys', { name: 'test' }, {
    cookie: `gh_session=${ck.gh_session}; gh_csrf=${ck.gh_csrf}`,
    'x-csrf-token': ck.gh_csrf,
  });
  assert.equal(r.status, 201, r.text());
  const k = r.json();
  return { key: k.key, keyId: Number(k.id), userId: Number(userId) };
}

function client(srv, key, opts = {}) {
  return new OpenAI({ apiKey: key, baseURL: `${srv.url}/v1`, maxRetries: 0, timeout: 20000, ...opts });
}

async function admin(srv, method, p, body) {
  const r = await request(`${srv.adminUrl}${p}`, {
    method,
    headers: { authorization: `Bearer ${srv.adminToken()}`, ...jsonHeaders },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return r;
}

/** POST /v1/chat/completions with fetch; returns {status, headers, text, events}. */
async function chatRaw(srv, key, body, { signal } = {}) {
  const r = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, ...jsonHeaders },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, text, events: sseEvents(text) };
}

function sseEvents(text) {
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6));
}

const hello = [{ role: 'user', content: 'hello brave new world' }];

// ---- the echo model, through the openai client ----

let srv;
let user;

before(async () => {
  srv = await startServer({ name: 'gateway-echo', set: { 'gateway.echo_delay': '2ms', 'gateway.max_tokens_cap': '4096' } });
  user = await newKey(srv);
});

after(async () => {
  await srv?.stop();
});

test('GET /v1/models lists echo', async () => {
  const c = client(srv, user.key);
  const list = await c.models.list();
  const ids = list.data.map((m) => m.id);
  assert.ok(ids.includes('echo'), JSON.stringify(list.data));
  const m = list.data.find((x) => x.id === 'echo');
  assert.equal(m.object, 'model');
  assert.equal(typeof m.created, 'number');
  assert.equal(m.owned_by, 'gatehouse');
});

test('a completion: echo reply, usage, x-request-id', async () => {
  const c = client(srv, user.key);
  const { data, response } = await c.chat.completions.create({ model: 'echo', messages: hello }).withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.match(data.id, /^chatcmpl-/);
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].message.content, 'Echo: hello brave new world');
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.equal(data.usage.completion_tokens, 5);
  // 21 bytes -> 6 tokens, + 4 for the message
  assert.equal(data.usage.prompt_tokens, 10);
  assert.equal(data.usage.total_tokens, 15);
  assert.ok(response.headers.get('x-request-id'));
});

test('a streamed completion read to the end, with usage', async () => {
  const c = client(srv, user.key);
  const stream = await c.chat.completions.create({
    model: 'echo',
    messages: hello,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  const ids = new Set();
  let usage = null;
  let finish = null;
  let n = 0;
  for await (const ch of stream) {
    n++;
    ids.add(ch.id);
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.choices.length) {
      text += ch.choices[0].delta.content ?? '';
      finish = ch.choices[0].finish_reason ?? finish;
      assert.equal(ch.usage, null);
    } else {
      usage = ch.usage;
    }
  }
  assert.equal(text, 'Echo: hello brave new world');
  assert.equal(finish, 'stop');
  assert.equal(ids.size, 1);
  assert.deepEqual(usage, { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
  assert.ok(n >= 7);
});

test('the raw stream: SSE framing, [DONE] last, no usage unless asked', async () => {
  const r = await chatRaw(srv, user.key, { model: 'echo', messages: hello, stream: true });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  assert.ok(r.headers.get('x-request-id'));
  assert.equal(r.events.at(-1), '[DONE]');
  for (const e of r.events.slice(0, -1)) {
    const j = JSON.parse(e);
    assert.equal(j.usage, undefined);
    assert.equal(j.choices.length, 1);
  }
});

test('max_tokens: finish_reason length', async () => {
  const c = client(srv, user.key);
  const r = await c.chat.completions.create({ model: 'echo', messages: hello, max_tokens: 2 });
  assert.equal(r.choices[0].message.content, 'Echo: hello');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 2);
});

test('401 with a wrong key', async () => {
  const c = client(srv, 'sk-' + 'x'.repeat(43));
  await assert.rejects(c.chat.completions.create({ model: 'echo', messages: hello }), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
  const r = await chatRaw(srv, '', { model: 'echo', messages: hello });
  assert.equal(r.status, 401);
  assert.ok(r.headers.get('x-request-id'));
});

test('429 from a tiny quota, reported as RateLimitError, with the x-ratelimit headers', async () => {
  const u = await newKey(srv);
  let r = await admin(srv, 'PUT', `/admin/v1/quotas/keys/${u.keyId}`, { rpm: 2 });
  assert.equal(r.status, 200, r.text());
  assert.equal(r.json().rpm, 2);
  const c = client(srv, u.key);
  const { response } = await c.chat.completions.create({ model: 'echo', messages: hello }).withResponse();
  assert.equal(response.headers.get('x-ratelimit-limit-requests'), '2');
  assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '1');
  assert.match(response.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d+)?s$|^\d+ms$/);
  await c.chat.completions.create({ model: 'echo', messages: hello });
  await assert.rejects(c.chat.completions.create({ model: 'echo', messages: hello }), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.status, 429);
    assert.equal(e.code, 'rate_limited');
    assert.ok(Number(e.headers['retry-after']) >= 1, JSON.stringify(e.headers));
    assert.equal(e.headers['x-ratelimit-remaining-requests'], '0');
    return true;
  });
  // the override is listed, and survives in data_dir
  r = await admin(srv, 'GET', '/admin/v1/quotas');
  assert.ok(r.json().overrides.some((o) => o.kind === 'key' && o.id === u.keyId && o.rpm === 2));
  const saved = JSON.parse(fs.readFileSync(path.join(srv.dataDir, 'quotas.json'), 'utf8'));
  assert.equal(saved[`k:${u.keyId}`].rpm, 2);
  // concurrency 1: a second request while one streams
  r = await admin(srv, 'PUT', `/admin/v1/quotas/keys/${u.keyId}`, { rpm: 0, concurrency: 1 });
  assert.equal(r.status, 200);
  const long = chatRaw(srv, u.key, { model: 'echo', stream: true, messages: [{ role: 'user', content: 'a '.repeat(100) }] });
  await sleep(50);
  const second = await chatRaw(srv, u.key, { model: 'echo', messages: hello });
  assert.equal(second.status, 429);
  assert.match(JSON.parse(second.text).error.message, /concurrent/);
  assert.equal((await long).status, 200);
});

test('402 insufficient_balance when the daily tokens are spent', async () => {
  const u = await newKey(srv);
  let r = await admin(srv, 'PUT', `/admin/v1/quotas/users/${u.userId}`, { tpd: 20 });
  assert.equal(r.status, 200, r.text());
  const c = client(srv, u.key);
  await c.chat.completions.create({ model: 'echo', messages: hello }); // 15 tokens
  await c.chat.completions.create({ model: 'echo', messages: hello }); // 30: spent
  await assert.rejects(c.chat.completions.create({ model: 'echo', messages: hello }), (e) => {
    assert.equal(e.status, 402);
    assert.equal(e.code, 'insufficient_balance');
    return true;
  });
  r = await admin(srv, 'DELETE', `/admin/v1/quotas/users/${u.userId}`);
  assert.equal(r.status, 200);
  await c.chat.completions.create({ model: 'echo', messages: hello });
});

test('GET /api/usage: the caller\'s keys per day', async () => {
  const u = await newKey(srv);
  const c = client(srv, u.key);
  await c.chat.completions.create({ model: 'echo', messages: hello });
  await c.chat.completions.create({ model: 'echo', messages: hello });
  const r = await request(`${srv.url}/api/usage`, { headers: { authorization: `Bearer ${u.key}` } });
  assert.equal(r.status, 200, r.text());
  const rows = r.json().data;
  assert.equal(rows.length, 1);
  assert.equal(rows[0].key_id, u.keyId);
  assert.equal(rows[0].requests, 2);
  assert.equal(rows[0].total_tokens, 30);
  assert.match(rows[0].date, /^\d{4}-\d{2}-\d{2}$/);
  const none = await request(`${srv.url}/api/usage`);
  assert.equal(none.status, 401);
  // kept in the store's usage table (counts only: it has no column for
  // text), not in a file of its own
  assert.ok(!fs.existsSync(path.join(srv.dataDir, 'usage.jsonl')));
});

test('bad input: each with its status, code and field', async () => {
  const k = user.key;
  let r = await chatRaw(srv, k, '{"model":"echo",');
  assert.equal(r.status, 400);
  let e = JSON.parse(r.text).error;
  assert.equal(e.code, 'invalid_json');
  assert.ok(r.headers.get('x-request-id'));

  r = await chatRaw(srv, k, { model: 'echo', messages: hello, stream: 'yes' });
  assert.equal(r.status, 400);
  e = JSON.parse(r.text).error;
  assert.equal(e.param, 'stream');
  assert.equal(e.type, 'invalid_request_error');

  r = await chatRaw(srv, k, { model: 'echo', messages: [{ role: 'user', content: 42 }] });
  assert.equal(r.status, 400);
  e = JSON.parse(r.text).error;
  assert.equal(e.param, 'messages');
  assert.match(e.message, /messages\[0\]\.content/);

  r = await chatRaw(srv, k, { model: 'echo', messages: 'hi' });
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.text).error.param, 'messages');

  const c = client(srv, k);
  await assert.rejects(c.chat.completions.create({ model: 'gpt-nonexistent', messages: hello }), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
    assert.equal(err.code, 'model_not_found');
    assert.equal(err.param, 'model');
    return true;
  });
  await assert.rejects(c.chat.completions.create({ model: 'echo', messages: hello, max_tokens: 5000 }), (err) => {
    assert.ok(err instanceof OpenAI.UnprocessableEntityError, String(err));
    assert.equal(err.code, 'invalid_parameter');
    assert.equal(err.param, 'max_tokens');
    assert.match(err.message, /4096/);
    return true;
  });

  // 10 MB: refused by its declared size, before the body is read (sending
  // the bytes too would only race the server's close with a reset)
  let res = await rawExchange(
    srv.port,
    reqText('POST', '/v1/chat/completions', [
      `Authorization: Bearer ${k}`,
      'Content-Type: application/json',
      `Content-Length: ${10 * 1024 * 1024}`,
    ]),
  );
  assert.equal(res.responses[0]?.status, 413, res.text.slice(0, 300));
  // and 10 MB sent chunked: refused when the body passes the cap
  const piece = `{"model":"echo","messages":[{"role":"user","content":"${'x'.repeat(64 * 1024)}`;
  const c2 = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${k}`, ...jsonHeaders },
    body: new ReadableStream({
      start(ctl) {
        ctl.enqueue(new TextEncoder().encode(piece));
        for (let i = 0; i < 160; i++) ctl.enqueue(new TextEncoder().encode('y'.repeat(64 * 1024)));
        ctl.close();
      },
    }),
    duplex: 'half',
  }).catch((err) => ({ status: `error ${err.cause?.code ?? err.message}` }));
  assert.ok(c2.status === 413 || /ECONNRESET|EPIPE|UND_ERR_SOCKET/.test(String(c2.status)), String(c2.status));
});

test('the client leaves mid-stream: the echo stops, the quota is released', async () => {
  const u = await newKey(srv);
  await admin(srv, 'PUT', `/admin/v1/quotas/keys/${u.keyId}`, { concurrency: 1 });
  const ac = new AbortController();
  const r = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${u.key}`, ...jsonHeaders },
    body: JSON.stringify({ model: 'echo', stream: true, messages: [{ role: 'user', content: 'w '.repeat(2000) }] }),
    signal: ac.signal,
  });
  const reader = r.body.getReader();
  await reader.read();
  ac.abort();
  // the concurrency slot comes back once the server saw the close
  await waitUntil(async () => (await chatRaw(srv, u.key, { model: 'echo', messages: hello })).status === 200, {
    what: 'the slot released',
  });
});

// ---- upstreams, with the fake upstream ----

let up;
let fakeA;
let fakeB;
let upUser;

async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}

test('upstreams: setup', async () => {
  fakeA = await startFakeUpstream();
  fakeB = await startFakeUpstream();
  const dead = await closedPort();
  const ini = (name, model, base, upstreamModel, extra = '') =>
    `[upstream ${name}]\nmodel = ${model}\nbase_url = ${base}/v1\nupstream_model = ${upstreamModel}\n${extra}\n`;
  const file = path.join(tempDir('gh-ups-'), 'upstreams.ini');
  fs.writeFileSync(
    file,
    [
      ini('plain', 'relay', fakeA.url, 'ok', 'api_key_env = FAKE_UPSTREAM_KEY'),
      ini('slow', 'slow', fakeA.url, 'slow-first-byte:1200'),
      ini('dead', 'refused', `http://127.0.0.1:${dead}`, 'ok', 'weight = 1000000\nconnect_timeout = 1s'),
      ini('alive', 'refused', fakeB.url, 'ok'),
      ini('five-hundred', 'fails', fakeA.url, 'status:500', 'weight = 1000000'),
      ini('fine', 'fails', fakeB.url, 'ok'),
      ini('limited', 'cool', fakeA.url, 'status:429', 'weight = 1000000'),
      ini('spare', 'cool', fakeB.url, 'ok'),
      ini('resetting', 'reset', fakeA.url, 'reset-after:3'),
      ini('garbled', 'malformed', fakeA.url, 'malformed-after:2'),
      ini('endless', 'endless', fakeA.url, 'endless:30'),
      ini('flood', 'flood', fakeA.url, 'flood'),
      ini('refuses-client', 'badreq', fakeA.url, 'status:400'),
    ].join('\n'),
  );
  up = await startServer({
    name: 'gateway-upstreams',
    env: { FAKE_UPSTREAM_KEY: 'sk-upstream-secret' },
    set: {
      'gateway.upstreams_file': file,
      'gateway.keepalive': '200ms',
      'gateway.cooldown': '30s',
    },
  });
  upUser = await newKey(up);
});

test('upstream: relay, streamed and not; usage forwarded only when asked', async () => {
  const c = client(up, upUser.key);
  const list = await c.models.list();
  assert.ok(list.data.some((m) => m.id === 'relay'));
  const r = await c.chat.completions.create({ model: 'relay', messages: hello });
  assert.equal(r.choices[0].message.content, 'Hello from fake');
  assert.equal(r.usage.total_tokens, 14);

  let s = await chatRaw(up, upUser.key, { model: 'relay', messages: hello, stream: true });
  assert.equal(s.status, 200);
  assert.equal(s.events.at(-1), '[DONE]');
  assert.ok(!s.events.some((e) => e !== '[DONE]' && JSON.parse(e).choices.length === 0), 'usage chunk not asked for');

  const stream = await c.chat.completions.create({
    model: 'relay',
    messages: hello,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const ch of stream) {
    if (ch.choices.length) text += ch.choices[0].delta.content ?? '';
    else usage = ch.usage;
  }
  assert.equal(text, 'Hello from fake');
  assert.equal(usage.total_tokens, 14);

  // the gateway always asked the upstream for usage, with the upstream's key
  const log = await fakeA.log();
  const streamed = log.filter((l) => l.model === 'ok' && l.stream);
  assert.ok(streamed.length >= 2 && streamed.every((l) => l.include_usage));
  assert.ok(log.every((l) => l.model !== 'ok' || l.authorization === 'Bearer sk-upstream-secret'));
});

test('upstream: slow first byte -> keep-alive comments arrive', async () => {
  const r = await chatRaw(up, upUser.key, { model: 'slow', messages: hello, stream: true });
  assert.equal(r.status, 200);
  const before = r.text.split('data: ')[0];
  const n = (before.match(/^: keep-alive$/gm) ?? []).length;
  assert.ok(n >= 3, `expected keep-alive comments before the first event, got ${JSON.stringify(before)}`);
  assert.equal(r.events.at(-1), '[DONE]');
});

test('upstream: connection refused -> failover to the second upstream', async () => {
  const c = client(up, upUser.key);
  const r = await c.chat.completions.create({ model: 'refused', messages: hello });
  assert.equal(r.choices[0].message.content, 'Hello from fake');
});

test('upstream: 500 before the first byte -> failover', async () => {
  const s = await chatRaw(up, upUser.key, { model: 'fails', messages: hello, stream: true });
  assert.equal(s.status, 200);
  const text = s.events
    .slice(0, -1)
    .map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '')
    .join('');
  assert.equal(text, 'Hello from fake');
  assert.ok((await fakeA.log()).some((l) => l.model === 'status:500'));
});

test('upstream: 429 -> cool-down (the next request skips it)', async () => {
  await fakeA.reset();
  const c = client(up, upUser.key);
  for (let i = 0; i < 3; i++) {
    const r = await c.chat.completions.create({ model: 'cool', messages: hello });
    assert.equal(r.choices[0].message.content, 'Hello from fake');
  }
  const hits = (await fakeA.log()).filter((l) => l.model === 'status:429').length;
  assert.equal(hits, 1, 'the limited upstream was asked again during its cool-down');
  const st = (await admin(up, 'GET', '/admin/v1/upstreams')).json();
  assert.equal(st.upstreams.find((u) => u.name === 'limited').state, 'cooling_down');
  const metrics = await up.metrics();
  assert.match(metrics, /gatehouse_upstream_up\{upstream="limited",model="cool"\} 0/);
  assert.match(metrics, /gatehouse_upstream_up\{upstream="spare",model="cool"\} 1/);
});

test('upstream: 400 goes back to the client, in the gateway\'s words', async () => {
  const c = client(up, upUser.key);
  await assert.rejects(c.chat.completions.create({ model: 'badreq', messages: hello }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /refused the request/);
    assert.doesNotMatch(e.message, /fake says/); // the upstream's text stays in the error log
    return true;
  });
});

test('upstream: reset mid-stream -> one error event, then the end', async () => {
  const r = await chatRaw(up, upUser.key, { model: 'reset', messages: hello, stream: true });
  assert.equal(r.status, 200);
  const errors = r.events.filter((e) => e.startsWith('{"error"'));
  assert.equal(errors.length, 1, r.text);
  assert.equal(r.events.at(-1), errors[0]);
  assert.ok(!r.events.includes('[DONE]'));
  assert.equal(r.events.length, 1 + 3 + 1); // role chunk, 3 words, the error
});

test('upstream: a malformed chunk -> one error event', async () => {
  const r = await chatRaw(up, upUser.key, { model: 'malformed', messages: hello, stream: true });
  assert.equal(r.status, 200);
  const last = JSON.parse(r.events.at(-1));
  assert.equal(last.error.code, 'upstream_error');
  assert.match(last.error.message, /malformed/);
  assert.equal(r.events.filter((e) => e.startsWith('{"error"')).length, 1);
});

test('upstream: client disconnect mid-stream -> the upstream connection closes within a second', async () => {
  await fakeA.reset();
  const ac = new AbortController();
  const r = await fetch(`${up.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${upUser.key}`, ...jsonHeaders },
    body: JSON.stringify({ model: 'endless', messages: hello, stream: true }),
    signal: ac.signal,
  });
  const reader = r.body.getReader();
  await reader.read();
  await reader.read();
  const t0 = Date.now();
  ac.abort();
  const entry = await waitUntil(
    async () => (await fakeA.log()).find((l) => l.model === 'endless:30' && l.closedAt),
    { timeout: 3000, what: 'the upstream saw the close' },
  );
  assert.ok(entry.closedAt - t0 < 1000, `closed after ${entry.closedAt - t0} ms`);
});

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

test('upstream: a slow reader -> the transfer pauses, memory stays bounded', async () => {
  await fakeA.reset();
  const rss0 = rssKb(up.proc.pid);
  const sock = net.connect(up.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const body = JSON.stringify({ model: 'flood', messages: hello, stream: true });
  sock.write(
    reqText('POST', '/v1/chat/completions', [`Authorization: Bearer ${upUser.key}`, 'Content-Type: application/json'], body),
  );
  sock.pause(); // read nothing
  await sleep(2500);
  const entry = (await fakeA.log()).find((l) => l.model === 'flood');
  const rss1 = rssKb(up.proc.pid);
  sock.destroy();
  assert.ok(entry, 'the flood started');
  // without backpressure the fake would have pushed hundreds of MB by now
  assert.ok(entry.bytes < 32 * 1024 * 1024, `upstream pushed ${entry.bytes} bytes`);
  assert.ok(rss1 - rss0 < 32 * 1024, `RSS grew by ${rss1 - rss0} kB`);
  await waitUntil(async () => (await fakeA.log()).find((l) => l.model === 'flood')?.closedAt, {
    timeout: 3000,
    what: 'the flood stopped',
  });
});

test('upstreams: teardown', async () => {
  await up?.stop();
  fakeA?.stop();
  fakeB?.stop();
});
