// The measuring half of bench/cluster.sh (read its header first): one
// gatehouse node on SQLite (single-node mode) and one on PostgreSQL
// (cluster mode), the same loads against each, alternating, RUNS times.
// Prints "row: SERVER RUN METRIC VALUE UNIT", "md: …" and "ratio: …"
// lines for bench/lib.sh, or "skip: why".
//
// Usage: node bench/tools/cluster.mjs GATEHOUSE TMPDIR SERVER_CPU CLIENT_CPU PORT_BASE
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { pgMissing, startPostgres } from '../../tests/e2e/lib/postgres.mjs';

const [bin, tmp, serverCpu, clientCpu, portBase] = process.argv.slice(2);
const RUNS = Number(process.env.RUNS || 3);
const DURATION = Number(process.env.DURATION || 5);
const CONNS = Number(process.env.CONNS || 8);
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

const why = pgMissing();
if (why) {
  console.log(`skip: ${why}`);
  process.exit(0);
}

/** user+system clock ticks of the processes (all threads). */
function ticks(pids) {
  let t = 0;
  for (const pid of pids) {
    const line = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = line.slice(line.lastIndexOf(') ') + 2).split(' ');
    t += Number(f[11]) + Number(f[12]);
  }
  return t;
}

/** The PostgreSQL server's processes: the postmaster and its children. */
function pgPids(pg) {
  const master = Number(fs.readFileSync(path.join(pg.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const kids = spawnSync('pgrep', ['-P', String(master)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  return [master, ...kids];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const RULES = 'login:global:1/1h';
/* Chat quotas. Default: gatehouse's own defaults, as a node runs out of
 * the box (gateway.user_concurrency = 16, no rate: the cluster node
 * counts the concurrency slots in Redis, and reuses a finished call's for
 * the same user's next call: spare slots, gateway/qshare.c). QUOTAS=1: rpm, tpd and concurrency set, never
 * reached (the whole quota script). QUOTAS=0: no quota at all (no Redis
 * call). */
const QUOTAS = process.env.QUOTAS ?? 'default';
const QUOTA_SET = {
  1: ['gateway.key_rpm=100000000', 'gateway.key_tpm=0', 'gateway.user_rpm=100000000', 'gateway.user_tpm=0',
    'gateway.user_tpd=4000000000', 'gateway.key_concurrency=0', 'gateway.user_concurrency=1000'],
  0: ['gateway.key_rpm=0', 'gateway.key_tpm=0', 'gateway.user_rpm=0', 'gateway.user_tpm=0',
    'gateway.user_tpd=0', 'gateway.key_concurrency=0', 'gateway.user_concurrency=0'],
}[QUOTAS] ?? [];
async function startNode(name, port, extra) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  const log = fs.openSync(path.join(dir, 'gatehouse.log'), 'a');
  const args = ['-c', serverCpu, bin, 'serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${port + 1}`,
    '--data', dir, '--workers', '1', '--set', 'log.access_log=off', '--set', 'log.level=warn',
    '--set', 'identity.cookie_secure=false', '--set', 'gateway.echo=true', '--set', 'gateway.echo_delay=0ms',
    ...QUOTA_SET.flatMap((kv) => ['--set', kv]),
    '--set', `shield.rules=${RULES}`, ...extra];
  const child = spawn('taskset', args, { stdio: ['ignore', log, log] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${fs.readFileSync(path.join(dir, 'gatehouse.log'), 'utf8').slice(-1500)}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  // a user with a session and an API key, through the API
  const phone = '+8613900005678';
  const post = (p, body, headers = {}) =>
    fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  let r = await post('/api/auth/sms-code', { phone, purpose: 'register' });
  if (r.status !== 202) throw new Error(`${name}: sms-code ${r.status}`);
  let code = null;
  for (let i = 0; i < 50 && !code; i++) {
    await sleep(100);
    const f = path.join(dir, 'sms-outbox.jsonl');
    if (fs.existsSync(f)) code = fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.to === phone).at(-1)?.code;
  }
  r = await post('/api/auth/register', { phone, code, password: 'correct horse battery' });
  if (r.status !== 201) throw new Error(`${name}: register ${r.status} ${await r.text()}`);
  const cookies = r.headers.getSetCookie().map((c) => c.split(';')[0]);
  const cookie = cookies.join('; ');
  const csrf = cookies.find((c) => c.startsWith('gh_csrf='))?.slice('gh_csrf='.length);
  r = await post('/api/keys', { name: 'bench' }, { cookie, 'x-csrf-token': csrf });
  if (r.status !== 201 && r.status !== 200) throw new Error(`${name}: key ${r.status} ${await r.text()}`);
  const key = (await r.json()).key;
  await post('/api/auth/login', { phone, password: 'x' }); // spends login:global
  return { name, child, base, cookie, key, dir };
}

function luaFor(load, node) {
  const f = path.join(tmp, `${node.name}-${load}.lua`);
  const lines = {
    me: ['wrk.method = "GET"', `wrk.headers["Cookie"] = "${node.cookie}"`],
    chat: ['wrk.method = "POST"', `wrk.headers["Authorization"] = "Bearer ${node.key}"`, 'wrk.headers["Content-Type"] = "application/json"',
      `wrk.body = '{"model":"echo","stream":true,"messages":[{"role":"user","content":"hello bench, a streamed answer"}]}'`],
    refusal: ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"', `wrk.body = '{"phone":"+8613900005678","password":"x"}'`],
  }[load];
  fs.writeFileSync(f, lines.join('\n') + '\n');
  return f;
}
const PATHS = { me: '/api/me', chat: '/v1/chat/completions', refusal: '/api/auth/login' };
const EXPECT = { me: 200, chat: 200, refusal: 429 };

function toMs(s) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
}

function measure(load, node, pids, redisPid) {
  const parts = pids.map((p) => ticks([p]));
  const t0 = ticks(pids);
  const r = spawnSync('taskset', ['-c', clientCpu, 'wrk', '-t1', `-c${CONNS}`, `-d${DURATION}s`, '--latency', '-s', luaFor(load, node), node.base + PATHS[load]],
    { encoding: 'utf8', timeout: (DURATION + 30) * 1000 });
  const t1 = ticks(pids);
  const partUs = pids.map((p, i) => ((ticks([p]) - parts[i]) / TICK) * 1e6);
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}${r.stdout}`);
  const reqs = Number(/(\d+) requests in/.exec(r.stdout)?.[1] || 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] || 0);
  if (!reqs) throw new Error(`no answers from ${node.name} ${load}: ${r.stdout}`);
  if (EXPECT[load] === 200 && non2xx) throw new Error(`${node.name} ${load}: ${non2xx} of ${reqs} answers not 2xx`);
  if (EXPECT[load] === 429 && non2xx < reqs * 0.99) throw new Error(`${node.name} ${load}: only ${non2xx} of ${reqs} refused`);
  const p99 = toMs(/\s99%\s+(\S+)/.exec(r.stdout)?.[1] || '');
  return { reqs, perS: reqs / DURATION, p99, cpuUs: (((t1 - t0) / TICK) * 1e6) / reqs, nodeUs: partUs[0] / reqs, redisUs: redisPid ? partUs[pids.indexOf(redisPid)] / reqs : 0 };
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** redis-server on port (no persistence, loopback only), or null when it is not installed. */
async function startRedis(port) {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) return null;
  const dir = path.join(tmp, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8' }).stdout.trim() === 'PONG') return p;
    await sleep(100);
  }
  p.kill('SIGKILL');
  throw new Error('redis-server did not answer PING');
}

const pg = await startPostgres();
const nodes = [];
let redis = null;
try {
  const base = Number(portBase) + 20;
  redis = await startRedis(base + 5);
  const clusterSet = ['--set', 'store.backend=postgres', '--set', `store.url=${pg.url}`];
  if (redis) clusterSet.push('--set', `redis.url=redis://127.0.0.1:${base + 5}`);
  nodes.push(await startNode('single', base, []));
  nodes.push(await startNode('cluster', base + 2, clusterSet));
  const got = {};
  for (const load of ['me', 'chat', 'refusal']) {
    for (const n of nodes) got[`${n.name}.${load}`] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const n of run % 2 ? nodes : [...nodes].reverse()) {
        const pids = n.name === 'cluster' ? [n.child.pid, ...pgPids(pg), ...(redis ? [redis.pid] : [])] : [n.child.pid];
        const m = measure(load, n, pids, n.name === 'cluster' ? redis?.pid : undefined);
        got[`${n.name}.${load}`].push(m);
        console.log(`row: ${n.name} ${run} ${load}_per_s ${m.perS.toFixed(0)} 1/s`);
        console.log(`row: ${n.name} ${run} ${load}_p99 ${m.p99.toFixed(3)} ms`);
        console.log(`row: ${n.name} ${run} ${load}_cpu_per_request ${m.cpuUs.toFixed(2)} us`);
        // the node's own share, Redis's; the rest is PostgreSQL's
        console.log(`row: ${n.name} ${run} ${load}_node_cpu_per_request ${m.nodeUs.toFixed(2)} us`);
        if (m.redisUs) console.log(`row: ${n.name} ${run} ${load}_redis_cpu_per_request ${m.redisUs.toFixed(2)} us`);
      }
    }
  }
  const med = (name, load, k) => median(got[`${name}.${load}`].map((m) => m[k]));
  console.log('md: ## Cluster mode against single-node mode (one node each)');
  console.log('md: ');
  console.log(`md: \`bench/cluster.sh\`: one gatehouse worker on CPU ${serverCpu}, wrk \`-t1 -c${CONNS} -d${DURATION}s --latency\` on CPU ${clientCpu},`);
  console.log(`md: the two modes alternating, ${RUNS} runs each, medians. Single-node: SQLite, limits in memory. Cluster:`);
  console.log(`md: PostgreSQL${redis ? ' and Redis (`redis.url`: the shared limits)' : ' (redis-server not installed: no Redis)'} on loopback TCP (throwaway servers, not pinned);`);
  console.log('md: their processes\' CPU time is counted with the node\'s.');
  console.log('md: Loads: `me` GET /api/me with a session; `chat` a streamed echo completion with an API key;');
  console.log(`md: \`refusal\` POST /api/auth/login answered 429 before its body (\`shield.rules = ${RULES}\`, spent).`);
  console.log(`md: Chat quotas: ${{
    1: 'QUOTAS=1: rpm, tpd and concurrency set, never reached (cluster: the quota script, one Redis round trip per call and its settle)',
    0: 'QUOTAS=0: none (no Redis call)',
  }[QUOTAS] ?? 'the defaults (gateway.user_concurrency = 16; cluster: the slots counted in Redis, a finished call's slot reused by the same user's next call on the worker within 50 ms; QUOTAS=0 drops it, QUOTAS=1 sets rates too)'}.`);
  console.log('md: ');
  console.log('md: | load | single req/s | cluster req/s | single p99 ms | cluster p99 ms | p99 ratio (≤ 1.5) | single CPU µs/req | cluster CPU µs/req | CPU ratio (≤ 1.15) |');
  console.log('md: |---|---|---|---|---|---|---|---|---|');
  const ratios = [];
  for (const load of ['me', 'chat', 'refusal']) {
    const s = { perS: med('single', load, 'perS'), p99: med('single', load, 'p99'), cpu: med('single', load, 'cpuUs') };
    const c = { perS: med('cluster', load, 'perS'), p99: med('cluster', load, 'p99'), cpu: med('cluster', load, 'cpuUs') };
    const pr = c.p99 / s.p99, cr = c.cpu / s.cpu;
    console.log(`md: | ${load} | ${s.perS.toFixed(0)} | ${c.perS.toFixed(0)} | ${s.p99.toFixed(2)} | ${c.p99.toFixed(2)} | ${pr.toFixed(2)} ${pr <= 1.5 ? 'pass' : '**miss**'} | ${s.cpu.toFixed(1)} | ${c.cpu.toFixed(1)} | ${cr.toFixed(2)} ${cr <= 1.15 ? 'pass' : '**miss**'} |`);
    ratios.push(`ratio: cluster ${load}: CPU/request cluster ${c.cpu.toFixed(1)} us / single ${s.cpu.toFixed(1)} us = x${cr.toFixed(2)} (target <= 1.15: ${cr <= 1.15 ? 'pass' : 'miss'}), p99 ${c.p99.toFixed(2)} / ${s.p99.toFixed(2)} ms = x${pr.toFixed(2)} (target <= 1.5: ${pr <= 1.5 ? 'pass' : 'miss'})`);
  }
  console.log('md: ');
  for (const r of ratios) console.log(r);
} finally {
  for (const n of nodes) n.child.kill('SIGTERM');
  if (redis) redis.kill('SIGTERM');
  await sleep(300);
  await pg.destroy();
}
