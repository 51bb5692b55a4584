// A fake OpenAI-compatible model server for the gateway's black-box tests,
// run as its own process. Its behaviour is chosen by the model name the
// gateway sends (the upstream_model of the upstreams file), so one fake
// serves every scenario at once:
//
//   ok                    a normal answer ("Hello from fake", 3 tokens)
//   slow-first-byte:MS    wait MS before the response head, then ok
//   status:CODE           answer CODE with an OpenAI error body (429 adds Retry-After: 1)
//   reset-after:N         stream N chunks, then reset the connection
//   malformed-after:N     stream N chunks, then an event that is not JSON
//   endless:MS            a chunk every MS until the client goes away
//   flood                 chunks as fast as the socket takes them, until it closes
//   multiline             a chunk, then one event whose data lines spell
//                         "{", "", "data: [DONE]", "}" (issue 10 item 14), then the rest
//   pretty                every event's JSON pretty-printed over several data: lines
//   error-event           a chunk, then an error event naming an internal host
//   after-done            the normal stream, then a chunk after [DONE]
//   reasoning             DeepSeek-reasoner style: reasoning_content first (message
//                         and deltas), then the answer; usage with the cache and
//                         reasoning details (REASONING_USAGE)
//   tools                 two parallel tool calls (get_weather, get_time), their
//                         arguments streamed in pieces under each call's index;
//                         logprobs on every choice; finish_reason tool_calls
//
// POST /v1/completions (fill-in-the-middle, any model): a text_completion
// whose text is "<FIM:" + prompt + "|" + suffix + ">" (streamed in 3 chunks).
//
// Every answer carries system_fingerprint and the model name it was asked
// for (the upstream's), and error bodies name an internal host: what the
// gateway must not pass on.
//
// Run:   node tests/e2e/fake-upstream.mjs   -> prints "PORT <n>" on stdout
// Control: GET /_log -> [{id, model, stream, include_usage, keys, max_tokens, start, closedAt,
//                          bytes, chunks}] (keys: the body's top-level field names)
//          POST /_reset clears the log.
// As a module: const fake = await startFakeUpstream(); fake.url, fake.log(), fake.stop().
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The usage of the reasoning mode: DeepSeek's and OpenAI's detail fields. */
export const REASONING_USAGE = {
  prompt_tokens: 11,
  completion_tokens: 7,
  total_tokens: 18,
  prompt_cache_hit_tokens: 8,
  prompt_cache_miss_tokens: 3,
  prompt_tokens_details: { cached_tokens: 8 },
  completion_tokens_details: { reasoning_tokens: 4 },
};

/** The tool calls of the tools mode, as a client reassembles them. */
export const TOOL_CALLS = [
  { id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Hangzhou","unit":"c"}' } },
  { id: 'call_t2', type: 'function', function: { name: 'get_time', arguments: '{"tz":"Asia/Shanghai"}' } },
];

const LOGPROBS = {
  content: [{ token: 'x', logprob: -0.25, bytes: [120], top_logprobs: [{ token: 'x', logprob: -0.25, bytes: [120] }] }],
};

/** Splits s into n pieces (the last takes the rest). */
function pieces(s, n) {
  const k = Math.ceil(s.length / n);
  const out = [];
  for (let i = 0; i < s.length; i += k) out.push(s.slice(i, i + k));
  return out;
}

function chunk(id, model, delta, finish = null, usage) {
  const o = {
    id,
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: 'fp_gpu-node-17',
    choices: [{ index: 0, delta, finish_reason: finish }],
  };
  if (usage !== undefined) o.usage = usage;
  return `data: ${JSON.stringify(o)}\n\n`;
}

/** The same event with its JSON pretty-printed, one data: line per line. */
function pretty(event) {
  const o = JSON.parse(event.slice(6));
  return `${JSON.stringify(o, null, 2)
    .split('\n')
    .map((l) => `data: ${l}`)
    .join('\n')}\n\n`;
}

function serve() {
  const log = [];
  let seq = 0;
  const server = http.createServer(async (req, res) => {
    if (req.url === '/_log') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(log));
      return;
    }
    if (req.url === '/_reset' && req.method === 'POST') {
      log.length = 0;
      res.writeHead(204).end();
      return;
    }
    let body = '';
    for await (const d of req) body += d;
    const fim = req.url === '/v1/completions';
    if ((req.url !== '/v1/chat/completions' && !fim) || req.method !== 'POST') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
      return;
    }
    let j;
    try {
      j = JSON.parse(body);
    } catch {
      res.writeHead(400).end('{"error":{"message":"bad json"}}');
      return;
    }
    const model = String(j.model || '');
    const [mode, arg] = model.split(':');
    const entry = {
      id: ++seq,
      model,
      stream: !!j.stream,
      include_usage: !!j.stream_options?.include_usage,
      keys: Object.keys(j),
      path: req.url,
      body: j,
      max_tokens: j.max_tokens,
      authorization: req.headers.authorization || null,
      start: Date.now(),
      closedAt: null,
      bytes: 0,
      chunks: 0,
    };
    log.push(entry);
    res.on('close', () => {
      entry.closedAt = Date.now();
    });
    const id = `chatcmpl-fake${entry.id}`;
    const write = (s) => {
      entry.bytes += s.length;
      entry.chunks++;
      return res.write(s);
    };
    if (mode === 'status') {
      const code = Number(arg);
      const h = { 'content-type': 'application/json' };
      if (code === 429) h['retry-after'] = '1';
      res.writeHead(code, h);
      const message = `fake says ${code}: token limit on gpu-node-17.corp.internal:8000`;
      res.end(JSON.stringify({ error: { message, type: 'x', code: `fake_${code}` } }));
      return;
    }
    if (mode === 'slow-first-byte') await sleep(Number(arg));
    if (res.destroyed) return;
    if (fim) {
      const text = `<FIM:${j.prompt}|${j.suffix ?? ''}>`;
      const usage = { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 };
      const base = { id: `cmpl-fake${entry.id}`, object: 'text_completion', created: 1, model, system_fingerprint: 'fp_gpu-node-17' };
      if (!j.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ...base, choices: [{ index: 0, text, logprobs: null, finish_reason: 'stop' }], usage }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const parts = pieces(text, 3);
      parts.forEach((t, i) =>
        write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, text: t, logprobs: null, finish_reason: i === parts.length - 1 ? 'stop' : null }] })}\n\n`),
      );
      if (entry.include_usage) write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
      write('data: [DONE]\n\n');
      res.end();
      return;
    }
    if (mode === 'reasoning' || mode === 'tools') {
      const base = { id, object: 'chat.completion.chunk', created: 1, model, system_fingerprint: 'fp_gpu-node-17' };
      const usage = mode === 'reasoning' ? REASONING_USAGE : { prompt_tokens: 11, completion_tokens: 9, total_tokens: 20 };
      if (!j.stream) {
        const message =
          mode === 'reasoning'
            ? { role: 'assistant', reasoning_content: 'The user greets; greet back.', content: 'Hello!' }
            : { role: 'assistant', content: null, tool_calls: TOOL_CALLS };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            ...base,
            object: 'chat.completion',
            choices: [{ index: 0, message, logprobs: mode === 'tools' ? LOGPROBS : null, finish_reason: mode === 'tools' ? 'tool_calls' : 'stop' }],
            usage,
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const ev = (delta, finish = null, extra = {}) =>
        write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, logprobs: mode === 'tools' ? LOGPROBS : null, finish_reason: finish }], ...extra })}\n\n`);
      if (mode === 'reasoning') {
        ev({ role: 'assistant', content: null, reasoning_content: '' });
        for (const r of ['The user', ' greets;', ' greet back.']) ev({ content: null, reasoning_content: r });
        for (const w of ['Hello', '!']) ev({ content: w, reasoning_content: null });
        ev({}, 'stop');
      } else {
        ev({ role: 'assistant', content: null });
        TOOL_CALLS.forEach((tc, index) => {
          ev({ tool_calls: [{ index, id: tc.id, type: 'function', function: { name: tc.function.name, arguments: '' } }] });
          for (const a of pieces(tc.function.arguments, 4)) ev({ tool_calls: [{ index, function: { arguments: a } }] });
        });
        ev({}, 'tool_calls');
      }
      if (entry.include_usage) write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
      write('data: [DONE]\n\n');
      res.end();
      return;
    }
    const words = ['Hello', ' from', ' fake'];
    if (!j.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model,
          system_fingerprint: 'fp_gpu-node-17',
          choices: [{ index: 0, message: { role: 'assistant', content: words.join('') }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 },
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    write(chunk(id, model, { role: 'assistant', content: '' }, null, entry.include_usage ? null : undefined));
    if (mode === 'reset-after' || mode === 'malformed-after') {
      for (let i = 0; i < Number(arg); i++) {
        write(chunk(id, model, { content: ` w${i}` }));
        await sleep(20);
      }
      if (mode === 'reset-after') {
        res.socket.resetAndDestroy ? res.socket.resetAndDestroy() : res.socket.destroy();
      } else {
        write('data: {"id":"x","choices":[{"delta":{"content":"oops"\n\n');
        await sleep(20);
        res.end();
      }
      return;
    }
    if (mode === 'endless') {
      let i = 0;
      while (!res.destroyed && !res.writableEnded) {
        write(chunk(id, model, { content: ` t${i++}` }));
        await sleep(Number(arg) || 50);
      }
      return;
    }
    if (mode === 'flood') {
      const filler = 'x'.repeat(1000);
      let i = 0;
      while (!res.destroyed) {
        if (!write(chunk(id, model, { content: `${i++}${filler}` }))) {
          await new Promise((r) => {
            const done = () => {
              res.off('drain', done);
              res.off('close', done);
              r();
            };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
      return;
    }
    if (mode === 'multiline') {
      write(chunk(id, model, { content: 'Hello' }));
      write('data: {\ndata:\ndata: data: [DONE]\ndata: }\n\n');
      write(chunk(id, model, { content: ' forged' }));
      write('data: [DONE]\n\n');
      res.end();
      return;
    }
    if (mode === 'error-event') {
      write(chunk(id, model, { content: 'Hello' }));
      write('data: {"id":"x","error":{"message":"CUDA out of memory on gpu-node-17.corp.internal","type":"x"}}\n\n');
      res.end();
      return;
    }
    const out = mode === 'pretty' ? (s) => write(pretty(s)) : write;
    for (const w of words) out(chunk(id, model, { content: w }));
    out(chunk(id, model, {}, 'stop'));
    if (entry.include_usage)
      out(
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 1, model, system_fingerprint: 'fp_gpu-node-17', choices: [], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 } })}\n\n`,
      );
    write('data: [DONE]\n\n');
    if (mode === 'after-done') write(chunk(id, model, { content: ' late' }));
    res.end();
  });
  server.keepAliveTimeout = 30000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`PORT ${server.address().port}\n`);
  });
}

/** Spawns the fake in its own process; resolves when it listens. */
export function startFakeUpstream() {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.on('error', reject);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m && !proc.fakeReady) {
        proc.fakeReady = true;
        const url = `http://127.0.0.1:${m[1]}`;
        resolve({
          url,
          port: Number(m[1]),
          async log() {
            return (await fetch(`${url}/_log`)).json();
          },
          async reset() {
            await fetch(`${url}/_reset`, { method: 'POST' });
          },
          stop() {
            proc.kill('SIGKILL');
          },
        });
      }
    });
    proc.on('exit', (code) => {
      if (!proc.fakeReady) reject(new Error(`fake upstream exited (${code})`));
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve();
