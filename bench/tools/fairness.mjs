// The load of bench/fairness.sh (issue 15's benchmark): against a gatehouse
// whose model `sim` is the model-server simulator, 50 users (the first 45
// registered, then AGE_S + 1 s later the last 5: with
// gateway.tier_established_age = AGE_S the 45 are "established" and the 5
// "new" for the rest of the run), each with an API key. A calm phase
// (arrivals at CALM × capacity, established users only) gives the calm
// time to first token; then arrivals at LOAD × capacity (Poisson, the user
// drawn uniformly, the answer's size from a Zipf mix) for SAT_S seconds.
// Every call is streamed; time to first token = until the first `data:`
// event with content. Prints Markdown on stdout and "RATIO <text>" lines.
//
// Environment: GH_URL, GH_DATA (the data directory: the SMS outbox),
// SLOTS, TPS, TTFT_MS (the simulator's), AGE_S, CALM_S, SAT_S, LOAD, CALM,
// DEADLINE_S (the gateway's queue_timeout).
import fs from 'node:fs';
import path from 'node:path';

const env = (k, d) => (process.env[k] !== undefined ? Number(process.env[k]) : d);
const URL0 = process.env.GH_URL;
const DATA = process.env.GH_DATA;
const SLOTS = env('SLOTS', 4);
const TPS = env('TPS', 100);
const TTFT = env('TTFT_MS', 50);
const AGE_S = env('AGE_S', 75);
const CALM_S = env('CALM_S', 6);
const SAT_S = env('SAT_S', 60);
const LOAD = env('LOAD', 3);
const CALM = env('CALM', 0.3);
const DEADLINE_S = env('DEADLINE_S', 10);
const USERS = 50;
const NEW_USERS = 5;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// answer sizes (tokens), Zipf: weight 1/rank
const SIZES = [8, 16, 32, 64, 128, 256];
const W = SIZES.map((_, i) => 1 / (i + 1));
const WSUM = W.reduce((a, b) => a + b, 0);
function drawSize() {
  let x = Math.random() * WSUM;
  for (let i = 0; i < SIZES.length; i++) if ((x -= W[i]) <= 0) return SIZES[i];
  return SIZES[SIZES.length - 1];
}
const meanTokens = SIZES.reduce((a, s, i) => a + (s * W[i]) / WSUM, 0);
const meanService = TTFT / 1000 + meanTokens / TPS; // seconds per call in a slot
const capacity = SLOTS / meanService; // calls per second

let phoneSeq = Math.floor(Math.random() * 9000);
async function register() {
  phoneSeq++;
  const phone = `+86139${String(Math.floor(Math.random() * 100)).padStart(2, '0')}77${String(phoneSeq % 10000).padStart(4, '0')}`;
  const post = (p, body, headers = {}) =>
    fetch(URL0 + p, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const r1 = await post('/api/auth/sms-code', { phone, purpose: 'register' });
  if (r1.status !== 202) throw new Error(`sms-code ${r1.status} ${await r1.text()}`);
  let code;
  for (let i = 0; i < 100 && !code; i++) {
    const lines = fs.existsSync(path.join(DATA, 'sms-outbox.jsonl')) ? fs.readFileSync(path.join(DATA, 'sms-outbox.jsonl'), 'utf8').split('\n') : [];
    for (const l of lines) if (l.includes(`"to":"${phone}"`)) code = JSON.parse(l).code;
    if (!code) await sleep(50);
  }
  if (!code) throw new Error(`no SMS code for ${phone}`);
  const r2 = await post('/api/auth/register', { phone, code, password: 'correct horse battery' });
  if (r2.status !== 201) throw new Error(`register ${r2.status} ${await r2.text()}`);
  const cookies = r2.headers.getSetCookie().map((c) => c.split(';')[0]);
  const csrf = cookies.find((c) => /^(__Host-)?gh_csrf=/.test(c)).split('=')[1];
  const r3 = await post('/api/keys', { name: 'bench' }, { cookie: cookies.join('; '), 'x-csrf-token': csrf });
  if (r3.status !== 201) throw new Error(`keys ${r3.status} ${await r3.text()}`);
  return (await r3.json()).key;
}

/** One streamed call: {user, tier, phase, tokens, status, ok, ttft (ms), waited (ms), answered}. */
async function call(u, tokens, phase) {
  const t0 = performance.now();
  const rec = { user: u.i, tier: u.tier, phase, tokens, status: 0, ok: false, ttft: null, total: null };
  try {
    const res = await fetch(`${URL0}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${u.key}` },
      body: JSON.stringify({ model: 'sim', stream: true, messages: [{ role: 'user', content: `bench [tokens=${tokens}]` }] }),
      signal: AbortSignal.timeout((DEADLINE_S + 60) * 1000),
    });
    rec.status = res.status;
    if (res.status !== 200) {
      await res.text();
      rec.total = performance.now() - t0;
      return rec;
    }
    const dec = new TextDecoder();
    let text = '';
    for await (const chunk of res.body) {
      text += dec.decode(chunk, { stream: true });
      if (rec.ttft === null && /"content":"[^"]/.test(text)) rec.ttft = performance.now() - t0;
    }
    rec.ok = text.endsWith('data: [DONE]\n\n');
  } catch {
    rec.status = -1;
  }
  rec.total = performance.now() - t0;
  return rec;
}

async function phase(users, rate, seconds, name) {
  const calls = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const u = users[Math.floor(Math.random() * users.length)];
    calls.push(call(u, drawSize(), name));
    await sleep((-Math.log(1 - Math.random()) / rate) * 1000);
  }
  return Promise.all(calls);
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const jain = (xs) => {
  const sum = xs.reduce((a, b) => a + b, 0);
  const sq = xs.reduce((a, b) => a + b * b, 0);
  return sq ? (sum * sum) / (xs.length * sq) : 1;
};
const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
/** Max-min fair shares (water-filling) of a capacity among demands: each
 * gets min(demand, level), the level set so that the shares sum to the
 * capacity (or everyone gets their demand, if that is less). */
const maxMinShares = (demands, capacity) => {
  const order = demands.map((d, i) => [d, i]).sort((a, b) => a[0] - b[0]);
  const out = new Array(demands.length).fill(0);
  let left = capacity;
  for (let k = 0; k < order.length; k++) {
    const [d, i] = order[k];
    const level = left / (order.length - k);
    out[i] = Math.min(d, level);
    left -= out[i];
  }
  return out;
};

const t0 = Date.now();
const users = [];
for (let i = 0; i < USERS - NEW_USERS; i++) users.push({ i, tier: 'established', key: await register() });
// the 45 pass tier_established_age; the 5 registered after stay younger than it for the run
await sleep((AGE_S + 1) * 1000);
for (let i = USERS - NEW_USERS; i < USERS; i++) users.push({ i, tier: 'new', key: await register() });
const tNew = Date.now();

const calm = await phase(users.slice(0, USERS - NEW_USERS), CALM * capacity, CALM_S, 'calm');
const satStart = Date.now();
const sat = await phase(users, LOAD * capacity, SAT_S, 'saturated');
const satWall = (Date.now() - satStart) / 1000;
// the tier is decided at admission: the last arrival must come before the new accounts age
if (satStart + SAT_S * 1000 - tNew > AGE_S * 1000) console.error('fairness: warning: arrivals outlasted tier_established_age: the new accounts turned established');

const calmTtft = calm.filter((r) => r.ok).map((r) => r.ttft);
const calmP50 = pct(calmTtft, 50);
const calmP99 = pct(calmTtft, 99);

const out = [];
out.push('## Fairness under saturation (issue 15)');
out.push('');
out.push(`The simulator: ${SLOTS} slots, ${TPS} tokens/s, first token after ${TTFT} ms; answers of ${SIZES.join('/')} tokens, Zipf (mean ${meanTokens.toFixed(0)}): capacity ${capacity.toFixed(1)} calls/s. ` +
  `${USERS} users (${USERS - NEW_USERS} established, ${NEW_USERS} new); calm: ${calm.length} calls in ${CALM_S} s (${CALM} × capacity, established users); ` +
  `saturated: ${sat.length} calls arriving in ${SAT_S} s (${LOAD} × capacity), the last answer ${satWall.toFixed(0)} s after the first arrival; queue deadline ${DEADLINE_S} s.`);
out.push('');
out.push('| tier | calls | success | 503 busy at once | busy after waiting | TTFT p50 (ms) | TTFT p99 (ms) | share of capacity | share of users | Jain (served / max-min fair share) | Jain (served / asked) | Jain (served / asked) of chance alone |');
out.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
const servedAll = sat.filter((r) => r.ok).reduce((a, r) => a + TTFT / 1000 + r.tokens / TPS, 0);
const rows = {};
for (const tier of ['established', 'new']) {
  const rs = sat.filter((r) => r.tier === tier);
  const ok = rs.filter((r) => r.ok);
  const busy = rs.filter((r) => r.status === 503).length;
  // waited to the queue deadline: the stream had started (its position), so the busy answer is an error event
  const timedOut = rs.filter((r) => r.status === 200 && !r.ok).length;
  const served = ok.reduce((a, r) => a + TTFT / 1000 + r.tokens / TPS, 0);
  const ids = users.filter((u) => u.tier === tier).map((u) => u.i);
  const ratio = ids.map((id) => {
    const asked = rs.filter((r) => r.user === id).reduce((a, r) => a + r.tokens, 0);
    const got = ok.filter((r) => r.user === id).reduce((a, r) => a + r.tokens, 0);
    return asked ? got / asked : 1;
  });
  // Jain's index as Jain, Chiu and Hawe define it: each user's throughput
  // over its fair throughput. Under overload the fair throughput is not
  // what a user asked (nobody can have that) but its max-min fair share of
  // what the tier was served: light users all they asked, heavy users an
  // equal part of the rest. Measured in slot time (first-token wait plus
  // tokens at the simulator's rate), what a call takes of the capacity.
  const slot = (r) => TTFT / 1000 + r.tokens / TPS;
  const demand = ids.map((id) => rs.filter((r) => r.user === id).reduce((a, r) => a + slot(r), 0));
  const gotSlot = ids.map((id) => ok.filter((r) => r.user === id).reduce((a, r) => a + slot(r), 0));
  const fair = maxMinShares(demand, gotSlot.reduce((a, b) => a + b, 0));
  const fairRatio = ids.map((id, k) => (fair[k] > 0 ? gotSlot[k] / fair[k] : 1)).filter((x, k) => demand[k] > 0);
  // The index of a server that gave every call of the tier the same chance
  // (the tier's success rate), for these very calls: with a handful of
  // calls per user and Zipf sizes, chance alone keeps the index below 1;
  // the mean over 200 draws is the figure to read the measured one against.
  const p = rs.length ? ok.length / rs.length : 0;
  let chance = 0;
  for (let d = 0; d < 200; d++) {
    chance += jain(ids.map((id) => {
      const mine = rs.filter((r) => r.user === id);
      const asked = mine.reduce((a, r) => a + r.tokens, 0);
      const got = mine.reduce((a, r) => a + (Math.random() < p ? r.tokens : 0), 0);
      return asked ? got / asked : 1;
    }));
  }
  chance /= 200;
  const row = {
    calls: rs.length,
    success: rs.length ? ok.length / rs.length : NaN,
    busy,
    p50: pct(ok.map((r) => r.ttft), 50),
    p99: pct(ok.map((r) => r.ttft), 99),
    share: servedAll ? served / servedAll : NaN,
    jain: jain(ratio),
    jainFair: jain(fairRatio),
    chance,
  };
  rows[tier] = row;
  out.push(`| ${tier} | ${row.calls} | ${(row.success * 100).toFixed(1)} % | ${busy} | ${timedOut} | ${f0(row.p50)} | ${f0(row.p99)} | ${(row.share * 100).toFixed(1)} % | ${((ids.length / USERS) * 100).toFixed(0)} % | ${row.jainFair.toFixed(3)} | ${row.jain.toFixed(3)} | ${row.chance.toFixed(3)} |`);
}
const lost = sat.filter((r) => r.status !== 200 && r.status !== 503).length;
const late = sat.filter((r) => !r.ok && r.total > (DEADLINE_S + 5) * 1000).length;
const est = rows.established;
out.push('');
out.push(`Calm (established users, ${CALM} × capacity): TTFT p50 ${f0(calmP50)} ms, p99 ${f0(calmP99)} ms. ` +
  `Under saturation the established users' p99 is ${(est.p99 / calmP99).toFixed(2)} × calm (target ≤ 2). ` +
  `Calls neither answered nor refused (errors, resets): ${lost}; failed after more than the deadline + 5 s: ${late} (target 0).`);
out.push('');
console.log(out.join('\n'));
for (const [tier, r] of Object.entries(rows)) {
  console.log(`ROW ${tier}_success ${(r.success * 100).toFixed(1)} %`);
  console.log(`ROW ${tier}_ttft_p50 ${f0(r.p50)} ms`);
  console.log(`ROW ${tier}_ttft_p99 ${f0(r.p99)} ms`);
  console.log(`ROW ${tier}_share ${(r.share * 100).toFixed(1)} %`);
  console.log(`ROW ${tier}_jain_fair_share ${r.jainFair.toFixed(3)} index`);
  console.log(`ROW ${tier}_jain ${r.jain.toFixed(3)} index`);
  console.log(`ROW ${tier}_jain_chance ${r.chance.toFixed(3)} index`);
}
console.log(`ROW calm_ttft_p99 ${f0(calmP99)} ms`);
console.log(`ROW late ${late} calls`);
console.log(`RATIO fairness: established p99 TTFT ${f0(est.p99)} ms = ${(est.p99 / calmP99).toFixed(2)} x calm ${f0(calmP99)} ms (target <= 2), success ${(est.success * 100).toFixed(1)} % vs new ${(rows.new.success * 100).toFixed(1)} %, Jain established ${est.jainFair.toFixed(3)} against max-min fair shares (target >= 0.9: ${est.jainFair >= 0.9 ? 'pass' : 'miss'}; served/asked ${est.jain.toFixed(3)}, chance alone ${est.chance.toFixed(3)}), late ${late}`);
