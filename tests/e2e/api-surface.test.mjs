// Black-box tests of the API surface clients expect (issue 15 item 6),
// through the official `openai` clients where they exist:
// GET /v1/models/{id} (models.retrieve), reasoning_content, streamed
// tool_calls reassembled by index, logprobs and the usage cache/reasoning
// fields passed through and recorded, DeepSeek's GET /user/balance,
// POST /beta/completions (fill-in-the-middle), an error inside a started
// stream as one data: {"error":…} event, and the echo model's JSON and
// tool-call answers. The model server is tests/e2e/fake-upstream.mjs.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/api-surface.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import OpenAI from 'openai';

import { startServer, request, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';
import { startFakeUpstream, REASONING_USAGE, TOOL_CALLS } from './fake-upstream.mjs';

let srv;
let fake;
let user; // {key, keyId, userId, jar}

const hello = [{ role: 'user', content: 'hello brave new world' }];

async function newUser() {
  const { jar, user: u } = await registerUser(srv, cnPhone());
  const r = await api(srv.url, 'POST', '/api/keys', { body: { name: 'api-surface' }, jar });
  assert.equal(r.status, 201, r.text);
  return { key: r.json.key, keyId: Number(r.json.id), userId: Number(u.id), jar };
}

function client(key = user.key) {
  return new OpenAI({ apiKey: key, baseURL: `${srv.url}/v1`, maxRetries: 0, timeout: 20000 });
}

async function post(p, body, key = user.key) {
  const r = await fetch(`${srv.url}${p}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  const events = text
    .split('\n\n')
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6));
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: r.status, headers: r.headers, text, json, events };
}

async function admin(method, p, body) {
  return request(`${srv.adminUrl}${p}`, {
    method,
    headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

before(async () => {
  fake = await startFakeUpstream();
  const up = (name, model, upstreamModel, extra = '') =>
    `[upstream ${name}]\nmodel = ${model}\nbase_url = ${fake.url}/v1\nupstream_model = ${upstreamModel}\n${extra}\n`;
  const file = path.join(tempDir('gh-ups-'), 'upstreams.ini');
  fs.writeFileSync(
    file,
    [
      up('reasoner', 'deepseek-reasoner', 'reasoning'),
      up('tooler', 'tool-model', 'tools'),
      up('slash', 'deepseek-ai/DeepSeek-V3', 'ok'),
      up('broken', 'broken', 'reset-after:2'),
      up('coder-a', 'deepseek-coder', 'ok', 'fim = true'),
      // the same model without fim: a FIM call must never go there
      up('coder-b', 'deepseek-coder', 'status:404'),
      up('chat-only', 'deepseek-chat', 'ok'),
    ].join('\n'),
  );
  srv = await startServer({
    name: 'api-surface',
    set: { ...FAST, 'gateway.upstreams_file': file, 'gateway.echo_delay': '0' },
  });
  user = await newUser();
});

after(async () => {
  await srv?.stop();
  fake?.stop();
});

// ---- GET /v1/models/{id} ----

test('models.retrieve: echo, an upstream model, a name with a slash; 404 model_not_found otherwise', async () => {
  const c = client();
  const echo = await c.models.retrieve('echo');
  assert.deepEqual(Object.keys(echo).sort(), ['created', 'id', 'object', 'owned_by']);
  assert.equal(echo.id, 'echo');
  assert.equal(echo.object, 'model');
  const list = await c.models.list();
  assert.equal(echo.created, list.data.find((m) => m.id === 'echo').created);
  assert.equal((await c.models.retrieve('deepseek-reasoner')).id, 'deepseek-reasoner');
  assert.equal((await c.models.retrieve('deepseek-ai/DeepSeek-V3')).id, 'deepseek-ai/DeepSeek-V3');
  await assert.rejects(c.models.retrieve('gpt-9'), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.param, 'model');
    assert.match(e.message, /gpt-9/);
    return true;
  });
  // the error shape on the wire, and no answer without a key
  const raw = await request(`${srv.url}/v1/models/gpt-9`, { headers: { authorization: `Bearer ${user.key}` } });
  assert.equal(raw.status, 404);
  assert.equal(raw.json().error.type, 'invalid_request_error');
  assert.ok(raw.headers['x-request-id']);
  assert.equal((await request(`${srv.url}/v1/models/echo`)).status, 401);
});

// ---- pass-through: reasoning_content, tool_calls, logprobs, usage details ----

test('reasoning_content in deltas and in the message; usage cache and reasoning fields passed through', async () => {
  const c = client();
  const stream = await c.chat.completions.create({
    model: 'deepseek-reasoner',
    messages: hello,
    stream: true,
    stream_options: { include_usage: true },
  });
  let reasoning = '';
  let content = '';
  let usage = null;
  for await (const ch of stream) {
    assert.equal(ch.model, 'deepseek-reasoner');
    assert.equal(ch.system_fingerprint, undefined);
    if (!ch.choices.length) usage = ch.usage;
    else {
      reasoning += ch.choices[0].delta.reasoning_content ?? '';
      content += ch.choices[0].delta.content ?? '';
    }
  }
  assert.equal(reasoning, 'The user greets; greet back.');
  assert.equal(content, 'Hello!');
  assert.deepEqual(usage, REASONING_USAGE);

  const r = await c.chat.completions.create({ model: 'deepseek-reasoner', messages: hello });
  assert.equal(r.choices[0].message.reasoning_content, 'The user greets; greet back.');
  assert.equal(r.choices[0].message.content, 'Hello!');
  assert.deepEqual(r.usage, REASONING_USAGE);

  // a multi-turn request carrying reasoning_content in an assistant message is accepted
  const again = await c.chat.completions.create({
    model: 'deepseek-reasoner',
    messages: [...hello, { role: 'assistant', content: 'Hello!', reasoning_content: 'greet' }, { role: 'user', content: 'again' }],
  });
  assert.equal(again.choices[0].message.content, 'Hello!');
});

test('streamed tool calls reassembled by index; logprobs passed through; non-streamed tool_calls', async () => {
  const c = client();
  const tools = ['get_weather', 'get_time'].map((name) => ({
    type: 'function',
    function: { name, parameters: { type: 'object', properties: {} } },
  }));
  const messages = [{ role: 'user', content: 'weather and time in Hangzhou?' }];
  // the SDK's own reassembly (ChatCompletionStream merges deltas by index)
  const runner = c.beta.chat.completions.stream({ model: 'tool-model', messages, tools, logprobs: true, top_logprobs: 1 });
  const chunks = [];
  runner.on('chunk', (ch) => chunks.push(ch));
  const final = await runner.finalChatCompletion();
  const calls = final.choices[0].message.tool_calls;
  assert.deepEqual(
    calls.map((t) => ({ id: t.id, type: t.type, function: { name: t.function.name, arguments: t.function.arguments } })),
    TOOL_CALLS,
  );
  for (const t of calls) assert.ok(JSON.parse(t.function.arguments));
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  const withIndex = chunks.flatMap((ch) => ch.choices[0]?.delta?.tool_calls ?? []);
  assert.ok(withIndex.length >= 8, `${withIndex.length} tool_call deltas`);
  for (const d of withIndex) assert.equal(typeof d.index, 'number');
  assert.ok(withIndex.some((d) => d.index === 1));
  assert.equal(chunks[1].choices[0].logprobs.content[0].logprob, -0.25);
  assert.deepEqual(chunks[1].choices[0].logprobs.content[0].bytes, [120]);

  const r = await c.chat.completions.create({ model: 'tool-model', messages, tools, logprobs: true });
  assert.deepEqual(r.choices[0].message.tool_calls, TOOL_CALLS);
  assert.equal(r.choices[0].logprobs.content[0].top_logprobs[0].token, 'x');
});

test('usage records keep the cached and reasoning tokens (/api/usage, from the store\'s usage table)', async () => {
  const u = await newUser();
  const c = client(u.key);
  await c.chat.completions.create({ model: 'deepseek-reasoner', messages: hello });
  const s = await c.chat.completions.create({ model: 'deepseek-reasoner', messages: hello, stream: true });
  for await (const ch of s) void ch; // the usage chunk is read even when the client did not ask
  // each call: 11 prompt (8 from the cache), 7 completion (4 reasoning)
  const row = await waitUntil(
    async () => {
      const r = await api(srv.url, 'GET', '/api/usage', { bearer: u.key });
      assert.equal(r.status, 200, r.text);
      const x = r.json.data.find((y) => y.key_id === u.keyId);
      return x && x.requests === 2 ? x : null;
    },
    { what: 'two calls counted' },
  );
  assert.equal(row.prompt_tokens, 22);
  assert.equal(row.completion_tokens, 14);
  assert.equal(row.cached_tokens, 16);
  assert.equal(row.reasoning_tokens, 8);
  assert.equal(row.total_tokens, 36);
});

// ---- an error inside a started stream ----

test('a stream that breaks after its first chunks ends with one data: {"error":…} event, which the SDK throws', async () => {
  const r = await post('/v1/chat/completions', { model: 'broken', messages: hello, stream: true });
  assert.equal(r.status, 200);
  const errors = r.events.filter((e) => e.startsWith('{"error"'));
  assert.equal(errors.length, 1, r.text);
  assert.equal(r.events.at(-1), errors[0], 'the error event is the last one');
  assert.ok(!r.events.includes('[DONE]'));
  const e = JSON.parse(errors[0]).error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(e.type, 'server_error');
  assert.equal(e.code, 'upstream_error');
  assert.ok(r.events.length >= 3, 'content came before the error');

  const stream = await client().chat.completions.create({ model: 'broken', messages: hello, stream: true });
  let text = '';
  await assert.rejects(
    (async () => {
      for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
    })(),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError, String(err));
      assert.match(err.message, /stream broke off/);
      return true;
    },
  );
  assert.equal(text, ' w0 w1');
});

// ---- GET /user/balance ----

test('GET /user/balance: DeepSeek shape from the daily allowance, with a key or a session', async () => {
  const u = await newUser();
  const bal = async (opts = { bearer: u.key }) => {
    const r = await api(srv.url, 'GET', '/user/balance', opts);
    assert.equal(r.status, 200, r.text);
    assert.ok(r.headers['x-request-id']);
    return r.json;
  };
  // no daily allowance (the default): available, nothing to count
  assert.deepEqual(await bal(), { is_available: true, balance_infos: [] });
  let r = await admin('PUT', `/admin/v1/quotas/users/${u.userId}`, { tpd: 1000 });
  assert.equal(r.status, 200, r.text());
  assert.deepEqual(await bal(), {
    is_available: true,
    balance_infos: [{ currency: 'TOKENS', total_balance: '1000', granted_balance: '1000', topped_up_balance: '0' }],
  });
  const done = await client(u.key).chat.completions.create({ model: 'echo', messages: hello });
  const spent = done.usage.total_tokens;
  let b = await bal();
  assert.equal(b.balance_infos[0].total_balance, String(1000 - spent));
  assert.equal(typeof b.balance_infos[0].total_balance, 'string');
  // the session sees the same; a key's own smaller allowance wins
  assert.equal((await bal({ jar: u.jar })).balance_infos[0].total_balance, String(1000 - spent));
  r = await admin('PUT', `/admin/v1/quotas/keys/${u.keyId}`, { tpd: 100 });
  assert.equal(r.status, 200);
  assert.equal((await bal()).balance_infos[0].total_balance, String(100 - spent));
  // spent: not available
  r = await admin('PUT', `/admin/v1/quotas/keys/${u.keyId}`, { tpd: spent });
  b = await bal();
  assert.equal(b.is_available, false);
  assert.equal(b.balance_infos[0].total_balance, '0');
  // no credentials
  r = await request(`${srv.url}/user/balance`);
  assert.equal(r.status, 401);
  assert.equal(r.json().error.code, 'invalid_api_key');
});

// ---- POST /beta/completions ----

test('POST /beta/completions: relayed to base_url/completions of the fim upstreams only', async () => {
  await fake.reset();
  const body = { model: 'deepseek-coder', prompt: 'def f(', suffix: 'return 1', max_tokens: 64 };
  for (let i = 0; i < 4; i++) {
    const r = await post('/beta/completions', body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'text_completion');
    assert.equal(r.json.model, 'deepseek-coder');
    assert.equal(r.json.system_fingerprint, undefined);
    assert.equal(r.json.choices[0].text, '<FIM:def f(|return 1>');
    assert.ok(r.headers.get('x-request-id'));
  }
  // through the SDK's legacy completions with the DeepSeek beta base URL
  const beta = new OpenAI({ apiKey: user.key, baseURL: `${srv.url}/beta`, maxRetries: 0 });
  const s = await beta.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  for await (const ch of s) {
    if (ch.choices.length) text += ch.choices[0].text;
    else usage = ch.usage;
  }
  assert.equal(text, '<FIM:def f(|return 1>');
  assert.equal(usage.total_tokens, 12);
  const log = await fake.log();
  assert.equal(log.length, 5);
  for (const l of log) {
    assert.equal(l.path, '/v1/completions');
    assert.equal(l.model, 'ok', 'never the upstream without fim');
    assert.equal(l.body.prompt, 'def f(');
    assert.equal(l.body.suffix, 'return 1');
    assert.equal(l.max_tokens, 64);
  }
});

test('POST /beta/completions: 400 for a model without fim, echo or a bad body; 404 for an unknown model', async () => {
  let r = await post('/beta/completions', { model: 'deepseek-chat', prompt: 'x' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'model');
  assert.match(r.json.error.message, /fill-in-the-middle/);
  r = await post('/beta/completions', { model: 'echo', prompt: 'x' });
  assert.equal(r.status, 400);
  r = await post('/beta/completions', { model: 'nope', prompt: 'x' });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'model_not_found');
  r = await post('/beta/completions', { model: 'deepseek-coder' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'prompt');
  r = await post('/beta/completions', { model: 'deepseek-coder', prompt: 'x', best_of: 4 });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'unknown_parameter');
  assert.equal(r.json.error.param, 'best_of');
  r = await post('/beta/completions', { model: 'deepseek-coder', prompt: 'x', logprobs: 21 });
  assert.equal(r.status, 422);
  r = await post('/beta/completions', '{"model":');
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'invalid_json');
  r = await post('/beta/completions', { model: 'deepseek-coder', prompt: 'x' }, 'sk-' + 'x'.repeat(43));
  assert.equal(r.status, 401);
});

// ---- the echo model: JSON and tool calls ----

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' }, unit: { type: 'string', enum: ['c', 'f'] }, note: { type: 'string' } },
      required: ['city', 'days', 'unit'],
    },
  },
};
const clock = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } };

test('echo: response_format json_object answers a JSON object, streamed or not', async () => {
  const c = client();
  const text = 'say "hi"  twice\tand 你好 \\ ok';
  const messages = [{ role: 'user', content: text }];
  const r = await c.chat.completions.create({ model: 'echo', messages, response_format: { type: 'json_object' } });
  assert.deepEqual(JSON.parse(r.choices[0].message.content), { echo: text });
  assert.equal(r.choices[0].finish_reason, 'stop');
  const s = await c.chat.completions.create({ model: 'echo', messages, response_format: { type: 'json_object' }, stream: true });
  let content = '';
  let n = 0;
  for await (const ch of s) {
    content += ch.choices[0]?.delta?.content ?? '';
    n++;
  }
  assert.deepEqual(JSON.parse(content), { echo: text });
  assert.ok(n > 3, `${n} chunks`);
  // a long word without spaces still adds up
  const long = 'x'.repeat(300) + 'é'.repeat(100);
  const s2 = await c.chat.completions.create({
    model: 'echo',
    messages: [{ role: 'user', content: long }],
    response_format: { type: 'json_object' },
    stream: true,
  });
  content = '';
  for await (const ch of s2) content += ch.choices[0]?.delta?.content ?? '';
  assert.deepEqual(JSON.parse(content), { echo: long });
});

test('echo: tools answer a tool call when the last message names one, streamed or not', async () => {
  const c = client();
  const messages = [{ role: 'user', content: 'call get_weather for Paris' }];
  const want = { city: 'call get_weather for Paris', days: 0, unit: 'c' };
  const r = await c.chat.completions.create({ model: 'echo', messages, tools: [clock, weather] });
  const m = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(m.content, null);
  assert.equal(m.tool_calls.length, 1);
  assert.equal(m.tool_calls[0].type, 'function');
  assert.match(m.tool_calls[0].id, /^call_/);
  assert.equal(m.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), want);

  const final = await c.beta.chat.completions.stream({ model: 'echo', messages, tools: [clock, weather] }).finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), want);
  assert.equal(final.choices[0].finish_reason, 'tool_calls');

  // tool_choice required: the first tool (all its parameters when none is required)
  const req = await c.chat.completions.create({ model: 'echo', messages: hello, tools: [clock, weather], tool_choice: 'required' });
  assert.equal(req.choices[0].message.tool_calls[0].function.name, 'get_time');
  assert.deepEqual(JSON.parse(req.choices[0].message.tool_calls[0].function.arguments), { tz: 'hello brave new world' });
  // a named function
  const named = await c.chat.completions.create({
    model: 'echo',
    messages: hello,
    tools: [clock, weather],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  assert.equal(named.choices[0].message.tool_calls[0].function.name, 'get_weather');

  // no call: tool_choice none, a message naming no tool, or the tool's result last
  for (const extra of [
    { messages, tool_choice: 'none' },
    { messages: hello },
    {
      messages: [
        ...messages,
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
    },
  ]) {
    const a = await c.chat.completions.create({ model: 'echo', tools: [clock, weather], ...extra });
    assert.equal(a.choices[0].finish_reason, 'stop', JSON.stringify(extra));
    assert.match(a.choices[0].message.content, /^Echo: /);
    assert.equal(a.choices[0].message.tool_calls, undefined);
  }
});

// ---- the official Python client, where it is installed ----

const PYTHON = [process.env.PYTHON, 'python3', '/usr/bin/python3'].find(
  (py) => py && spawnSync(py, ['-c', 'import openai']).status === 0,
);

const PY = `
import json, os, sys
from openai import OpenAI
c = OpenAI(api_key=os.environ["KEY"], base_url=os.environ["BASE"] + "/v1", max_retries=0)
out = {"retrieve": c.models.retrieve("deepseek-reasoner").id}
s = c.chat.completions.create(model="tool-model", messages=[{"role": "user", "content": "x"}],
                              tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
                              stream=True)
calls = {}
for ch in s:
    for d in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
        e = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
        e["id"] = d.id or e["id"]
        if d.function and d.function.name: e["name"] = d.function.name
        if d.function and d.function.arguments: e["arguments"] += d.function.arguments
out["calls"] = [calls[i] for i in sorted(calls)]
r = c.chat.completions.create(model="deepseek-reasoner", messages=[{"role": "user", "content": "x"}])
out["reasoning"] = (r.choices[0].message.model_extra or {}).get("reasoning_content")
out["usage"] = r.usage.model_dump(exclude_none=True)
print(json.dumps(out))
`;

test('the official Python client: models.retrieve, streamed tool calls, reasoning_content, usage details', {
  skip: PYTHON ? false : 'the openai Python package is not installed (Debian 12 has no python3-openai)',
}, () => {
  const py = spawnSync(PYTHON, ['-c', PY], { env: { ...process.env, KEY: user.key, BASE: srv.url }, encoding: 'utf8', timeout: 60000 });
  assert.equal(py.status, 0, py.stderr);
  const out = JSON.parse(py.stdout);
  assert.equal(out.retrieve, 'deepseek-reasoner');
  assert.deepEqual(
    out.calls,
    TOOL_CALLS.map((t) => ({ id: t.id, name: t.function.name, arguments: t.function.arguments })),
  );
  assert.equal(out.reasoning, 'The user greets; greet back.');
  assert.equal(out.usage.prompt_tokens_details.cached_tokens, 8);
  assert.equal(out.usage.completion_tokens_details.reasoning_tokens, 4);
  assert.equal(out.usage.prompt_cache_hit_tokens, 8);
});
