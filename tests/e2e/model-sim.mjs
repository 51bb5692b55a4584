// A model-server simulator for the gateway's tests and benchmarks (issue 15
// item 7): an OpenAI-compatible server that saturates like a GPU server. It
// has a fixed number of slots (calls decoded at once); a call beyond them
// waits in the simulator's own queue (or is refused, see `full`), in
// arrival order or, with `priority`, by the request's `priority` field
// (lower first, as vLLM's --scheduling-policy priority). A call in a slot
// answers after `ttft` ms, then one token every 1000/`tps` ms.
//
// Options (command line `--name value`, or the object given to
// startModelSim, or POST /_config with a JSON object at run time):
//   slots      4        calls decoded at once
//   tps        50       tokens per second per call
//   ttft       100      ms from taking a slot to the first token
//   tokens     8        completion tokens per answer (max_tokens caps it)
//   priority   false    schedule the waiting calls by `priority` (lower first)
//   queue      1000     calls that may wait; beyond: the `full` answer
//   full       queue    what a call gets when slots and queue are full: 429 or 503
//   reasoning  0        reasoning_content tokens before the answer
//   tools      false    answer a request carrying `tools` with a tool call
//   status     0        answer every call with this HTTP status (429/503/500…)
// Per call, the last user message may carry directives: `[tokens=N]`,
// `[status=N]`, `[reasoning=N]`, `[tool]`, `[ttft=MS]`.
//
// Usage reported: prompt_tokens (ceil(bytes/4) of the messages), the
// completion, prompt_cache_hit_tokens / _miss_tokens, prompt_tokens_details
// .cached_tokens and completion_tokens_details.reasoning_tokens (DeepSeek's
// and OpenAI's shapes).
//
// Control: GET /_log -> [{seq, id, tag, user, priority, model, stream,
//   max_tokens, keys, arrived, started, ended, status}] (ms since the epoch;
//   tag: the last user message's text, user: the body's `user`);
//   GET /_stats -> {active, waiting, served, max_active}; POST /_reset
//   clears the log; POST /_config {…} changes options.
// Run:   node tests/e2e/model-sim.mjs --slots 4 --tps 50   -> "PORT <n>" on stdout
// As a module: const sim = await startModelSim({slots: 4}); sim.url,
//   await sim.log(), await sim.config({…}), sim.stop().
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const DEFAULTS = {
  slots: 4,
  tps: 50,
  ttft: 100,
  tokens: 8,
  priority: false,
  queue: 1000,
  full: 'queue',
  reasoning: 0,
  tools: false,
  status: 0,
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z_]+)$/.exec(argv[i]);
    if (!m) continue;
    const k = m[1];
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) o[k] = true;
    else o[k] = next, i++;
  }
  return o;
}

function normalize(o, into) {
  for (const [k, v] of Object.entries(o)) {
    if (!(k in DEFAULTS)) continue;
    if (typeof DEFAULTS[k] === 'number') into[k] = Number(v);
    else if (typeof DEFAULTS[k] === 'boolean') into[k] = v === true || v === 'true' || v === '1' || v === 1;
    else into[k] = String(v);
  }
  return into;
}

function lastUserText(j) {
  const msgs = Array.isArray(j.messages) ? j.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i];
    if (m && m.role === 'user') {
      if (typeof m.content === 'string') return m.content;
      if (Array.isArray(m.content)) return m.content.map((p) => p?.text ?? '').join('');
    }
  }
  return typeof j.prompt === 'string' ? j.prompt : '';
}

function directive(text, name) {
  const m = new RegExp(`\\[${name}(?:=(\\d+))?\\]`).exec(text);
  if (!m) return undefined;
  return m[1] === undefined ? true : Number(m[1]);
}

function serve(opts) {
  const cfg = normalize(opts, { ...DEFAULTS });
  const log = [];
  const waiting = []; // {entry, prio, seq, wake}
  let active = 0;
  let maxActive = 0;
  let served = 0;
  let seq = 0;

  function pump() {
    while (active < cfg.slots && waiting.length) {
      let best = 0;
      if (cfg.priority)
        for (let i = 1; i < waiting.length; i++)
          if (waiting[i].prio < waiting[best].prio || (waiting[i].prio === waiting[best].prio && waiting[i].seq < waiting[best].seq)) best = i;
      const w = waiting.splice(best, 1)[0];
      active++;
      maxActive = Math.max(maxActive, active);
      w.wake(true);
    }
  }

  async function takeSlot(entry, prio, res) {
    if (active < cfg.slots && !waiting.length) {
      active++;
      maxActive = Math.max(maxActive, active);
      return true;
    }
    // full: 'queue' waits up to `queue` calls (then 429); '429'/'503' refuse at once
    if (cfg.full !== 'queue' || waiting.length >= cfg.queue) return false;
    return new Promise((resolve) => {
      const w = { entry, prio, seq: entry.seq, wake: resolve };
      waiting.push(w);
      res.on('close', () => {
        const i = waiting.indexOf(w);
        if (i >= 0) {
          waiting.splice(i, 1);
          resolve(false);
        }
      });
    });
  }

  function release() {
    active--;
    served++;
    pump();
  }

  const server = http.createServer(async (req, res) => {
    if (req.url === '/_log') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(log));
      return;
    }
    if (req.url === '/_stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ active, waiting: waiting.length, served, max_active: maxActive, config: cfg }));
      return;
    }
    let body = '';
    for await (const d of req) body += d;
    if (req.url === '/_reset' && req.method === 'POST') {
      log.length = 0;
      maxActive = active;
      served = 0;
      res.writeHead(204).end();
      return;
    }
    if (req.url === '/_config' && req.method === 'POST') {
      try {
        normalize(JSON.parse(body || '{}'), cfg);
      } catch {
        res.writeHead(400).end();
        return;
      }
      pump();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(cfg));
      return;
    }
    if (req.method === 'GET' && (req.url === '/v1/models' || req.url === '/models')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'sim', object: 'model', created: 1, owned_by: 'sim' }] }));
      return;
    }
    const chat = req.url === '/v1/chat/completions' || req.url === '/chat/completions';
    const fim = req.url === '/v1/completions' || req.url === '/completions' || req.url === '/beta/completions';
    if (req.method !== 'POST' || (!chat && !fim)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
      return;
    }
    let j;
    try {
      j = JSON.parse(body);
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad json","type":"invalid_request_error"}}');
      return;
    }
    const tag = lastUserText(j);
    const entry = {
      seq: ++seq,
      id: `chatcmpl-sim${seq}`,
      tag,
      user: j.user ?? null,
      priority: j.priority ?? null,
      model: String(j.model ?? ''),
      stream: !!j.stream,
      max_tokens: j.max_tokens ?? null,
      keys: Object.keys(j),
      arrived: Date.now(),
      started: null,
      ended: null,
      status: null,
    };
    log.push(entry);
    if (log.length > 100000) log.shift();
    const status = directive(tag, 'status') ?? cfg.status;
    if (status) {
      entry.status = status;
      entry.ended = Date.now();
      const h = { 'content-type': 'application/json' };
      if (status === 429 || status === 503) h['retry-after'] = '1';
      res.writeHead(status, h);
      res.end(JSON.stringify({ error: { message: `simulated ${status}`, type: 'server_error', code: `sim_${status}` } }));
      return;
    }
    const prio = Number.isFinite(Number(j.priority)) ? Number(j.priority) : 0;
    const got = await takeSlot(entry, prio, res);
    if (!got) {
      entry.ended = Date.now();
      if (res.destroyed) {
        entry.status = 499;
        return;
      }
      const code = cfg.full === '503' ? 503 : 429; // a full queue answers 429
      entry.status = code;
      res.writeHead(code, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: { message: 'simulated: every slot is busy', type: 'server_error', code: `sim_${code}` } }));
      return;
    }
    entry.started = Date.now();
    let released = false;
    const done = () => {
      if (!released) {
        released = true;
        entry.ended = Date.now();
        release();
      }
    };
    res.on('close', done);
    try {
      await answer(j, entry, tag, res, fim);
    } finally {
      done();
    }
  });

  async function answer(j, entry, tag, res, fim) {
    const ttft = directive(tag, 'ttft') ?? cfg.ttft;
    const want = directive(tag, 'tokens') ?? cfg.tokens;
    const ntok = Math.max(0, Math.min(want, Number(j.max_tokens) > 0 ? Number(j.max_tokens) : want));
    const nreason = directive(tag, 'reasoning') ?? cfg.reasoning;
    const tool = (cfg.tools || directive(tag, 'tool')) && Array.isArray(j.tools) && j.tools.length > 0;
    const per = cfg.tps > 0 ? 1000 / cfg.tps : 0;
    const promptBytes = Buffer.byteLength(JSON.stringify(j.messages ?? j.prompt ?? ''));
    const promptTokens = Math.ceil(promptBytes / 4);
    const cached = Math.floor(promptTokens / 2);
    const toolName = tool ? String(j.tools[0]?.function?.name ?? 'tool') : '';
    const toolArgs = JSON.stringify({ echo: tag.slice(0, 64) });
    const words = Array.from({ length: ntok }, (_, i) => (i ? ` w${i}` : 'w0'));
    const thoughts = Array.from({ length: nreason }, (_, i) => (i ? ` t${i}` : 't0'));
    const completion = tool ? Math.ceil(toolArgs.length / 4) : ntok;
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completion + nreason,
      total_tokens: promptTokens + completion + nreason,
      prompt_cache_hit_tokens: cached,
      prompt_cache_miss_tokens: promptTokens - cached,
      prompt_tokens_details: { cached_tokens: cached },
      completion_tokens_details: { reasoning_tokens: nreason },
    };
    const finish = tool ? 'tool_calls' : ntok < want ? 'length' : 'stop';
    const created = Math.floor(Date.now() / 1000);
    const model = entry.model;
    await sleep(ttft);
    if (res.destroyed) return;
    // the decode time of the whole answer, in token steps
    const steps = nreason + (tool ? 2 : ntok);
    if (!entry.stream) {
      await sleep(per * Math.max(0, steps - 1));
      if (res.destroyed) return;
      entry.status = 200;
      res.writeHead(200, { 'content-type': 'application/json' });
      if (fim) {
        res.end(JSON.stringify({ id: entry.id, object: 'text_completion', created, model, choices: [{ index: 0, text: words.join(''), finish_reason: finish, logprobs: null }], usage }));
        return;
      }
      const message = { role: 'assistant', content: tool ? null : words.join('') };
      if (nreason) message.reasoning_content = thoughts.join('');
      if (tool) message.tool_calls = [{ id: `call_sim${entry.seq}`, type: 'function', function: { name: toolName, arguments: toolArgs } }];
      res.end(JSON.stringify({ id: entry.id, object: 'chat.completion', created, model, system_fingerprint: 'fp_sim', choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage }));
      return;
    }
    entry.status = 200;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const ev = (choices, extra = {}) => `data: ${JSON.stringify({ id: entry.id, object: fim ? 'text_completion' : 'chat.completion.chunk', created, model, system_fingerprint: 'fp_sim', choices, ...extra })}\n\n`;
    const write = async (s) => {
      if (res.destroyed) return false;
      if (!res.write(s)) await new Promise((r) => (res.once('drain', r), res.once('close', r)));
      return !res.destroyed;
    };
    if (fim) {
      for (let i = 0; i < words.length; i++) {
        if (i) await sleep(per);
        if (!(await write(ev([{ index: 0, text: words[i], finish_reason: null, logprobs: null }])))) return;
      }
      await write(ev([{ index: 0, text: '', finish_reason: finish, logprobs: null }]));
    } else {
      if (!(await write(ev([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }])))) return;
      let first = true;
      const step = async (delta) => {
        if (!first) await sleep(per);
        first = false;
        return write(ev([{ index: 0, delta, logprobs: null, finish_reason: null }]));
      };
      for (const t of thoughts) if (!(await step({ reasoning_content: t }))) return;
      if (tool) {
        const half = Math.ceil(toolArgs.length / 2);
        if (!(await step({ tool_calls: [{ index: 0, id: `call_sim${entry.seq}`, type: 'function', function: { name: toolName, arguments: toolArgs.slice(0, half) } }] }))) return;
        if (!(await step({ tool_calls: [{ index: 0, function: { arguments: toolArgs.slice(half) } }] }))) return;
      } else {
        for (const w of words) if (!(await step({ content: w }))) return;
      }
      if (!(await write(ev([{ index: 0, delta: {}, logprobs: null, finish_reason: finish }])))) return;
    }
    if (j.stream_options?.include_usage) await write(ev([], { usage }));
    await write('data: [DONE]\n\n');
    res.end();
  }

  server.keepAliveTimeout = 30000;
  server.listen(Number(opts.port ?? 0), '127.0.0.1', () => {
    process.stdout.write(`PORT ${server.address().port}\n`);
  });
}

/** Spawns the simulator in its own process; resolves when it listens. */
export function startModelSim(opts = {}) {
  const argv = [];
  for (const [k, v] of Object.entries(opts)) argv.push(`--${k}`, String(v));
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...argv], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.on('error', reject);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m && !proc.simReady) {
        proc.simReady = true;
        const url = `http://127.0.0.1:${m[1]}`;
        resolve({
          url,
          port: Number(m[1]),
          async log() {
            return (await fetch(`${url}/_log`)).json();
          },
          async stats() {
            return (await fetch(`${url}/_stats`)).json();
          },
          async reset() {
            await fetch(`${url}/_reset`, { method: 'POST' });
          },
          async config(o) {
            return (await fetch(`${url}/_config`, { method: 'POST', body: JSON.stringify(o) })).json();
          },
          stop() {
            proc.kill('SIGKILL');
          },
        });
      }
    });
    proc.on('exit', (code) => {
      if (!proc.simReady) reject(new Error(`model simulator exited (${code})`));
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(parseArgs(process.argv.slice(2)));
