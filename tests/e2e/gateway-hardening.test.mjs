// Black-box tests of the gateway against a client and an upstream that
// read the code (issue 10, items 13 and 14): backend fields that would
// lift the caps, max_tokens always bounded, the upstream's own words and
// names kept from the client, and an upstream that tries to forge or cut
// events in the client's stream. The upstream is tests/e2e/fake-upstream.mjs.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/gateway-hardening.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import OpenAI from 'openai';

import { startServer, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';
import { startFakeUpstream } from './fake-upstream.mjs';

const CAP = 2048;
const hello = [{ role: 'user', content: 'hello' }];
// the fields of docs/API.md's allow-list
const ALLOWED = new Set(
  ('model messages stream stream_options max_tokens max_completion_tokens temperature top_p n ' +
    'presence_penalty frequency_penalty stop logprobs top_logprobs response_format tools ' +
    'tool_choice parallel_tool_calls user seed logit_bias functions function_call thinking ' +
    'reasoning_effort').split(' '),
);
// what reached a model server verbatim before the fix
const BACKEND = { min_tokens: 100000, ignore_eos: true, n_predict: -1, best_of: 50 };

let fake;
let srv; // unknown_fields = reject (the default)
let drop; // unknown_fields = drop
let keyOf = new Map();

async function newKey(s) {
  const { jar } = await registerUser(s, cnPhone());
  const r = await api(s.url, 'POST', '/api/keys', { body: { name: 'hardening' }, jar });
  assert.equal(r.status, 201, r.text);
  return r.json.key;
}

function upstreamsFile() {
  const ini = (model, upstreamModel) =>
    `[upstream ${model}]\nmodel = ${model}\nbase_url = ${fake.url}/v1\nupstream_model = ${upstreamModel}\n`;
  const file = path.join(tempDir('gh-hard-'), 'upstreams.ini');
  fs.writeFileSync(
    file,
    [
      ini('pub', 'internal-model-v3'),
      ini('shiny', 'pretty'),
      ini('multi', 'multiline'),
      ini('errev', 'error-event'),
      ini('late', 'after-done'),
      ini('bad400', 'status:400'),
      ini('bad422', 'status:422'),
    ].join('\n'),
  );
  return file;
}

before(async () => {
  fake = await startFakeUpstream();
  const file = upstreamsFile();
  const set = { ...FAST, 'gateway.upstreams_file': file, 'gateway.max_tokens_cap': String(CAP) };
  srv = await startServer({ name: 'gateway-hardening', set });
  drop = await startServer({ name: 'gateway-hardening-drop', set: { ...set, 'gateway.unknown_fields': 'drop' } });
  keyOf.set(srv, await newKey(srv));
  keyOf.set(drop, await newKey(drop));
});

after(async () => {
  await srv?.stop();
  await drop?.stop();
  fake?.stop();
});

async function chat(s, body) {
  const r = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keyOf.get(s)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, id: r.headers.get('x-request-id'), text: await r.text() };
}

/** The events of an SSE text, strictly: every event must be exactly one
 * "data: " line (comments aside), as the gateway promises. */
function events(text) {
  assert.ok(text.endsWith('\n\n'), 'the stream ends after a whole event');
  const out = [];
  for (const block of text.slice(0, -2).split('\n\n')) {
    const lines = block.split('\n').filter((l) => !l.startsWith(':'));
    if (!lines.length) continue;
    assert.equal(lines.length, 1, `one line per event: ${JSON.stringify(block)}`);
    assert.ok(lines[0].startsWith('data: '), lines[0]);
    out.push(lines[0].slice(6));
  }
  return out;
}

async function lastUpstreamCall() {
  const log = await fake.log();
  return log.at(-1);
}

test('unknown fields -> 400 naming the field; nothing reaches the upstream', async () => {
  await fake.reset();
  for (const [name, value] of Object.entries(BACKEND)) {
    const r = await chat(srv, { model: 'pub', messages: hello, [name]: value });
    assert.equal(r.status, 400, r.text);
    const e = JSON.parse(r.text).error;
    assert.equal(e.param, name);
    assert.equal(e.code, 'unknown_parameter');
    assert.match(e.message, new RegExp(name));
  }
  const all = await chat(srv, { model: 'pub', messages: hello, ...BACKEND });
  assert.equal(all.status, 400);
  assert.ok(Object.keys(BACKEND).includes(JSON.parse(all.text).error.param));
  // below the top level too
  const nested = await chat(srv, { model: 'pub', messages: [{ role: 'user', content: 'x', chat_template_kwargs: {} }] });
  assert.equal(nested.status, 400);
  assert.match(JSON.parse(nested.text).error.message, /messages\[0\]\.chat_template_kwargs/);
  const so = await chat(srv, { model: 'pub', messages: hello, stream: true, stream_options: { continuous_usage_stats: true } });
  assert.equal(so.status, 400);
  assert.equal(JSON.parse(so.text).error.param, 'stream_options.continuous_usage_stats');
  assert.equal((await fake.log()).length, 0, 'the upstream was called');
});

test('the upstream receives max_tokens = min(requested, cap) and only allowed fields', async () => {
  await fake.reset();
  const cases = [
    [{}, CAP],
    [{ max_tokens: 100 }, 100],
    [{ max_completion_tokens: 50 }, 50],
    [{ max_tokens: 300, max_completion_tokens: 9 }, 9],
    [{ max_tokens: CAP }, CAP],
  ];
  for (const [extra, want] of cases) {
    for (const stream of [false, true]) {
      const r = await chat(srv, { model: 'pub', messages: hello, stream, n: 1, seed: 7, user: 'u1', ...extra });
      assert.equal(r.status, 200, r.text);
      const call = await lastUpstreamCall();
      assert.equal(call.max_tokens, want, JSON.stringify({ extra, call }));
      assert.ok(call.keys.every((k) => ALLOWED.has(k)), call.keys.join());
      assert.ok(!call.keys.includes('max_completion_tokens'));
    }
  }
  const over = await chat(srv, { model: 'pub', messages: hello, max_tokens: CAP + 1 });
  assert.equal(over.status, 422);
});

test('unknown_fields = drop: accepted, and none of them leaves', async () => {
  await fake.reset();
  for (const stream of [false, true]) {
    const r = await chat(drop, {
      model: 'pub',
      messages: [{ role: 'user', content: 'hi', chat_template_kwargs: { x: 1 } }],
      stream,
      stream_options: stream ? { include_usage: true, continuous_usage_stats: true } : undefined,
      ...BACKEND,
    });
    assert.equal(r.status, 200, r.text);
    const call = await lastUpstreamCall();
    assert.equal(call.max_tokens, CAP);
    assert.deepEqual(call.keys.filter((k) => !ALLOWED.has(k)), []);
  }
});

test('the upstream\'s error text never reaches the client; it is in the error log', async () => {
  for (const [model, status] of [
    ['bad400', 400],
    ['bad422', 422],
  ]) {
    for (const stream of [false, true]) {
      const r = await chat(srv, { model, messages: hello, stream });
      assert.equal(r.status, status, r.text);
      assert.doesNotMatch(r.text, /gpu-node|fake says|corp\.internal/);
      assert.match(JSON.parse(r.text).error.message, /model server refused/);
      await waitUntil(() => srv.stderr().includes(r.id) && /gpu-node-17/.test(srv.stderr()), {
        what: 'the original text in the error log with the request id',
      });
    }
  }
  // an error event in the middle of a stream
  const r = await chat(srv, { model: 'errev', messages: hello, stream: true });
  assert.equal(r.status, 200);
  assert.doesNotMatch(r.text, /gpu-node|CUDA|corp\.internal/);
  const ev = events(r.text);
  assert.equal(JSON.parse(ev.at(-1)).error.code, 'upstream_error');
  assert.ok(!ev.includes('[DONE]'));
});

test('model rewritten, system_fingerprint gone: plain and streamed answers', async () => {
  const plain = await chat(srv, { model: 'pub', messages: hello });
  assert.equal(plain.status, 200);
  assert.doesNotMatch(plain.text, /internal-model|fp_gpu|system_fingerprint/);
  const j = JSON.parse(plain.text);
  assert.equal(j.model, 'pub');
  assert.equal(j.choices[0].message.content, 'Hello from fake');

  for (const model of ['pub', 'shiny']) {
    const s = await chat(srv, { model, messages: hello, stream: true, stream_options: { include_usage: true } });
    assert.equal(s.status, 200);
    assert.doesNotMatch(s.text, /internal-model|fp_gpu|system_fingerprint|"pretty"/);
    const ev = events(s.text);
    assert.equal(ev.at(-1), '[DONE]');
    const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
    assert.ok(chunks.every((c) => c.model === model), s.text);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'Hello from fake');
    assert.equal(chunks.at(-1).usage.total_tokens, 14);
  }

  // and through the official client, which parses the stream itself
  const c = new OpenAI({ apiKey: keyOf.get(srv), baseURL: `${srv.url}/v1`, maxRetries: 0 });
  let text = '';
  for await (const ch of await c.chat.completions.create({ model: 'shiny', messages: hello, stream: true })) {
    assert.equal(ch.model, 'shiny');
    assert.equal(ch.system_fingerprint, undefined);
    text += ch.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, 'Hello from fake');
});

test('multi-line data cannot forge an early [DONE]: the stream ends with an error event', async () => {
  const r = await chat(srv, { model: 'multi', messages: hello, stream: true });
  assert.equal(r.status, 200);
  const ev = events(r.text);
  assert.ok(!ev.includes('[DONE]'), r.text);
  assert.ok(!ev.includes('{'), r.text);
  assert.doesNotMatch(r.text, /forged/);
  assert.equal(ev.length, 3, r.text); // role chunk, "Hello", the error
  assert.equal(JSON.parse(ev[1]).choices[0].delta.content, 'Hello');
  const err = JSON.parse(ev[2]).error;
  assert.equal(err.code, 'upstream_error');
  assert.match(err.message, /malformed/);
});

test('nothing after [DONE] reaches the client', async () => {
  const r = await chat(srv, { model: 'late', messages: hello, stream: true });
  assert.equal(r.status, 200);
  const ev = events(r.text);
  assert.equal(ev.at(-1), '[DONE]');
  assert.equal(ev.filter((e) => e === '[DONE]').length, 1);
  assert.doesNotMatch(r.text, /" late"/);
});
