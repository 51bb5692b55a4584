// The echo model without max_tokens (issue 13, item 8): its answer stops
// at 256 words (finish_reason "length") instead of echoing a long prompt
// one word per tick for minutes; max_tokens above that is honoured.
// Through the official npm openai client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import OpenAI from 'openai';

import { startServer } from './lib/harness.mjs';
import { FAST, api, cnPhone, registerUser } from './lib/accounts.mjs';

let srv;
let client;

before(async () => {
  srv = await startServer({ name: 'echo-cap', set: { ...FAST, 'gateway.echo_delay': '1ms', 'gateway.max_tokens_cap': '4096' } });
  const { jar } = await registerUser(srv, cnPhone());
  const r = await api(srv.url, 'POST', '/api/keys', { jar, body: { name: 'echo' } });
  assert.equal(r.status, 201, r.text);
  client = new OpenAI({ apiKey: r.json.key, baseURL: `${srv.url}/v1`, maxRetries: 0, timeout: 60000 });
});

after(async () => {
  await srv?.stop();
});

const words = (n) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');
const long = [{ role: 'user', content: words(2000) }];

test('without max_tokens a long prompt gets 256 words and finish_reason "length"', async () => {
  const r = await client.chat.completions.create({ model: 'echo', messages: long });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 256);
  const got = r.choices[0].message.content.split(' ');
  assert.equal(got.length, 256);
  assert.equal(got[0], 'Echo:');
  assert.equal(got[255], 'w254');
});

test('streamed the same: 256 words, then "length"', async () => {
  const stream = await client.chat.completions.create({ model: 'echo', messages: long, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const ch = chunk.choices[0];
    if (!ch) continue;
    text += ch.delta?.content ?? '';
    finish = ch.finish_reason ?? finish;
  }
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 256);
  assert.equal(text.split(' ').length, 256);
});

test('max_tokens above the default is honoured; a short prompt still stops by itself', async () => {
  const r = await client.chat.completions.create({ model: 'echo', messages: long, max_tokens: 300 });
  assert.equal(r.usage.completion_tokens, 300);
  assert.equal(r.choices[0].finish_reason, 'length');
  const short = await client.chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: words(10) }] });
  assert.equal(short.choices[0].finish_reason, 'stop');
  assert.equal(short.usage.completion_tokens, 11); // "Echo:" and the 10 words
});
