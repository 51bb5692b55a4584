// Smoke test of the attack lab (bench/attack.sh --smoke): 5-second runs of
// two scenarios (layer-7 flood, registration flood) with the legitimate
// users, against gatehouse (and the nginx setup when nginx is installed).
// It checks that the report and gh_load's numbers are produced and sane:
// every arrival accounted for exactly once, statuses and error kinds adding
// up, latencies ordered, the time series summing to the totals. It does
// NOT check the targets (those are for `make bench-attack` to report).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, tempDir } from './lib/harness.mjs';

const BUILD = path.dirname(BIN);
const GH_LOAD = path.join(BUILD, 'gh_load');

function parseCsv(file) {
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  const head = lines[0].split(',');
  return lines.slice(1).map((l) => {
    const cells = l.split(',');
    const row = {};
    head.forEach((h, i) => {
      const v = cells[i];
      row[h] = v !== '' && !Number.isNaN(Number(v)) ? Number(v) : v;
    });
    return row;
  });
}

function run(cmd, args, opts) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, out }));
  });
}

test('gh_load refuses targets outside loopback', { skip: !fs.existsSync(GH_LOAD) && `${GH_LOAD} not built` }, async () => {
  const dir = tempDir('gh-attack-');
  const conf = path.join(dir, 's.conf');
  fs.writeFileSync(conf, '[scenario]\nduration = 1\n[flood]\nscript = l7flood\nrate = 1\naddr = 127.20.0.0/16\n');
  const r = await run(GH_LOAD, ['--scenario', conf, '--target', '192.0.2.1:80', '--out', dir]);
  assert.equal(r.code, 2, r.out);
  assert.match(r.out, /loopback/);
  fs.writeFileSync(conf, '[scenario]\nduration = 1\n[flood]\nscript = l7flood\nrate = 1\naddr = 10.0.0.0/16\n');
  const r2 = await run(GH_LOAD, ['--scenario', conf, '--target', '127.0.0.1:9', '--out', dir]);
  assert.equal(r2.code, 2, r2.out);
  assert.match(r2.out, /not loopback/);
  fs.writeFileSync(conf, '[scenario]\nduration = 1000\n[flood]\nscript = l7flood\nrate = 1\n');
  const r3 = await run(GH_LOAD, ['--scenario', conf, '--target', '127.0.0.1:9', '--out', dir]);
  assert.equal(r3.code, 2, r3.out);
  assert.match(r3.out, /duration/);
});

test('attack lab smoke: report and numbers are produced and sane', {
  timeout: 240000,
  skip: !fs.existsSync(GH_LOAD) && `${GH_LOAD} not built`,
}, async () => {
  const out = tempDir('gh-attack-smoke-');
  const base = 20000 + Math.floor(Math.random() * 400) * 10;
  const r = await run('bash', ['bench/attack.sh', '--smoke', '--out', out], {
    env: { ...process.env, BUILD, BENCH_PORT_BASE: String(base) },
  });
  fs.writeFileSync(path.join(out, 'attack.log'), r.out);
  assert.equal(r.code, 0, `bench/attack.sh --smoke failed:\n${r.out.slice(-3000)}`);

  const report = fs.readFileSync(path.join(out, 'attack-report.md'), 'utf8');
  assert.match(report, /^# gatehouse attack lab/m);
  assert.match(report, /^## Targets/m);
  for (const s of ['l7-flood', 'reg-flood']) {
    assert.match(report, new RegExp(`^## ${s}: `, 'm'));
    assert.match(report, new RegExp(`^- ${s}: gatehouse legitimate success [0-9.]+ % .*\\*\\*(pass|miss)\\*\\*`, 'm'));
  }
  assert.doesNotMatch(report, /## Broken runs/);

  const runs = fs.readdirSync(path.join(out, 'raw'));
  assert.ok(runs.includes('l7-flood-gatehouse') && runs.includes('reg-flood-gatehouse'), runs.join(' '));
  for (const name of runs) {
    const dir = path.join(out, 'raw', name);
    const rows = parseCsv(path.join(dir, 'summary.csv'));
    const statusCols = Object.keys(rows[0]).filter((k) => /^s(\d+|_other)$/.test(k));
    const errCols = Object.keys(rows[0]).filter((k) => k.startsWith('e_'));
    for (const row of rows) {
      const what = `${name} ${row.group} ${row.phase}`;
      assert.equal(row.sent, row.ok + row.refused + row.failed + row.closed + row.errors, `${what}: outcomes add up to sent`);
      const answered = statusCols.reduce((a, k) => a + row[k], 0);
      assert.equal(answered, row.ok + row.refused + row.failed, `${what}: statuses add up to answered`);
      assert.equal(errCols.reduce((a, k) => a + row[k], 0), row.errors, `${what}: error kinds add up`);
      if (answered > 0) {
        assert.ok(row.p50_ms <= row.p90_ms && row.p90_ms <= row.p99_ms && row.p99_ms <= row.max_ms,
          `${what}: p50 ${row.p50_ms} <= p90 ${row.p90_ms} <= p99 ${row.p99_ms} <= max ${row.max_ms}`);
        assert.ok(row.max_ms > 0 && row.max_ms < 60000, `${what}: max ${row.max_ms} ms`);
      }
    }
    const groups = rows.filter((x) => x.script !== 'action');
    const byKey = Object.fromEntries(groups.map((x) => [`${x.group}/${x.phase}`, x]));
    const legit = byKey['legit/all'];
    assert.ok(legit && legit.sent > 0 && legit.ok > 0, `${name}: the legitimate users ran`);
    assert.ok(byKey['legit/calm'].sent > 0 && byKey['legit/attack'].sent > 0, `${name}: calm and attack phases`);
    assert.ok(byKey['flood/all'].sent > 0, `${name}: the attack ran`);
    for (const g of ['legit', 'flood']) {
      assert.ok(byKey[`${g}/calm`].sent + byKey[`${g}/attack`].sent <= byKey[`${g}/all`].sent, `${name} ${g}: phases within all`);
    }
    // the legitimate users' requests by action add up to the group
    const actions = rows.filter((x) => x.script === 'action' && x.phase === 'all');
    assert.equal(actions.reduce((a, x) => a + x.sent, 0), legit.sent, `${name}: actions add up`);
    // the time series sums to the totals
    const ts = parseCsv(path.join(dir, 'timeseries.csv'));
    for (const g of ['legit', 'flood']) {
      const rowsG = ts.filter((x) => x.group === g);
      assert.equal(rowsG.reduce((a, x) => a + x.sent, 0), byKey[`${g}/all`].sent, `${name} ${g}: time series sent`);
      assert.equal(rowsG.reduce((a, x) => a + x.ok, 0), byKey[`${g}/all`].ok, `${name} ${g}: time series ok`);
    }
    assert.ok(ts.some((x) => x.level >= 0), `${name}: attack level polled from the admin API`);
  }

  const csv = parseCsv(path.join(out, 'attack.csv'));
  const succ = csv.filter((x) => x.metric === 'legit_success');
  assert.ok(succ.length >= 2, 'legit_success rows');
  for (const x of succ) assert.ok(x.value >= 0 && x.value <= 100, `${x.scenario} ${x.setup}: ${x.value}`);
  const rss = csv.filter((x) => x.metric === 'peak_rss_mb');
  for (const x of rss) assert.ok(x.value > 1, `${x.scenario} ${x.setup}: peak RSS ${x.value} MB`);
});
