// What a new operator meets first (issue 13, items 9 and 10), checked as
// they would meet it:
//  - the README's operator session runs as written: every `gatehouse ctl`
//    line of it, the incident update with the id `incident create` prints
//    (the README used to say `incident update 1`, which fails);
//  - `make run LISTEN=… ADMIN_LISTEN=…` serves on those ports, builds only
//    the server, without make's "Entering directory" lines;
//  - the docs stand alone: no link out of the repository, no macOS-only
//    `open`, every ctl command docs/API.md shows exists;
//  - ctl: `--for 10` is refused (no unit) and leaves a 10 m window alone;
//    `policy set` says which pinned window it replaced; `policy show`
//    prints regions only in restricted mode; unknown commands and options
//    name the nearest one;
//  - configuration: a repeated key names both lines, a line without `=`
//    says so, an unknown key names the nearest one, a duration needs a unit.
//
// Run from the repository root:
//   GATEHOUSE_BIN=build/gatehouse node --test --test-concurrency=1 tests/e2e/ops-ux.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { BIN, childEnv, freePorts, runGatehouse, sleep, startServer, tempDir, waitUntil } from './lib/harness.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

let srv;

function ctl(args) {
  return runGatehouse(['ctl', '--admin', `127.0.0.1:${srv.adminPort}`, '--token', srv.adminToken(), ...args]);
}

async function ok(args) {
  const r = await ctl(args);
  assert.equal(r.code, 0, `ctl ${args.join(' ')}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

async function refused(args, re) {
  const r = await ctl(args);
  assert.equal(r.code, 2, `ctl ${args.join(' ')}: exit ${r.code}\nstderr: ${r.stderr}`);
  assert.match(r.stderr, re, `ctl ${args.join(' ')}`);
  assert.equal(r.stdout, '', 'nothing on stdout when refused');
  return r;
}

before(async () => {
  srv = await startServer({ name: 'ops-ux' });
});

after(async () => {
  if (srv) await srv.stop();
});

// ---- the README as written ----

/** The fenced ```sh blocks of markdown text. */
function shellBlocks(md) {
  return [...md.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Splits one shell command line into words: double and single quotes,
 * backslash-newline continuations, `# comments` outside quotes. */
function shellWords(line) {
  const words = [];
  let cur = null;
  let quote = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      cur = cur ?? '';
    } else if (ch === '#' && cur === null) {
      break;
    } else if (/\s/.test(ch)) {
      if (cur !== null) words.push(cur);
      cur = null;
    } else {
      cur = (cur ?? '') + ch;
    }
  }
  assert.equal(quote, null, `unbalanced quote in: ${line}`);
  if (cur !== null) words.push(cur);
  return words;
}

/** The commands of a block: continuations joined, comment lines kept
 * apart ({comment}) so that a shown output can be checked. */
function blockLines(block) {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

test("the README's operator session runs as written, incident update with the id create printed", async () => {
  const block = shellBlocks(README).find((b) => b.includes('gatehouse ctl incident create'));
  assert.ok(block, 'the README has an operator session with incident create');
  const lines = blockLines(block);
  let createdId = null;
  let readmeId = null;
  let shownCreate = null; // the README's comment showing what create prints
  let ran = 0;
  for (const [n, line] of lines.entries()) {
    if (line.startsWith('#')) continue;
    const words = shellWords(line);
    if (words[0] !== 'gatehouse' || words[1] !== 'ctl') continue;
    let args = words.slice(2);
    if (args[0] === 'top') args = args.map((a) => (a === '--watch' ? '--count' : a)).concat(args.includes('--watch') ? ['1'] : []);
    if (args[0] === 'incident' && args[1] === 'update') {
      readmeId = args[2];
      assert.ok(createdId, 'the README creates the incident before it updates it');
      args[2] = createdId;
    }
    const out = await ok(args);
    ran++;
    if (args[0] === 'incident' && args[1] === 'create') {
      const m = /^incident (\S+): (.*)$/m.exec(out);
      assert.ok(m, `incident create prints the id: ${out}`);
      createdId = m[1];
      assert.match(createdId, /^[a-z0-9]{6,32}$/, 'incident ids are short strings');
      shownCreate = lines[n + 1];
      assert.ok(shownCreate?.startsWith('#'), 'the README shows what create prints, under it');
      const shown = shownCreate.replace(/^#\s*/, '').replace(/\s+<-.*$/, '').trimEnd();
      assert.equal(shown, out.split('\n')[0].replace(createdId, readmeIdFrom(lines)), 'the README shows what create prints');
    }
    if (args[0] === 'incident' && args[1] === 'update') {
      assert.match(out, new RegExp(`^incident ${createdId}: `, 'm'));
      assert.match(out, /status resolved/);
    }
  }
  assert.ok(readmeId, 'the README updates the incident');
  assert.notEqual(readmeId, '1', 'incident ids are strings, not numbers');
  assert.ok(ran >= 6, `ran ${ran} ctl commands of the README`);
  // the incident is resolved on the public JSON
  const inc = await (await fetch(`${srv.url}/api/v2/incidents.json`)).json();
  const mine = inc.incidents.find((i) => i.id === createdId);
  assert.ok(mine, 'the incident is public');
  assert.equal(mine.status, 'resolved');
  assert.equal(mine.name, 'Registration limited');
  // leave the server as the other tests expect it
  await ok(['level', 'unpin']);
  await ok(['unblock', '203.0.113.0/24']);
  await ok(['policy', 'set', 'open', '--pow-bits', '0']);
});

/** The id the README's incident update line uses. */
function readmeIdFrom(lines) {
  const upd = lines.find((l) => l.startsWith('gatehouse ctl incident update'));
  return shellWords(upd)[4];
}

test('docs stand alone: no links out of the repository, no macOS-only open, ctl commands that exist', async () => {
  const docs = ['README.md', 'CHANGELOG.md', ...fs.readdirSync(path.join(ROOT, 'docs'), { recursive: true }).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const f of docs) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    assert.doesNotMatch(text, /\.\.\/shared|CONTRACT\.md|DESIGN\.md/, `${f} points outside the repository`);
  }
  assert.ok(fs.existsSync(path.join(ROOT, 'docs/STYLE.md')), 'the style guide is in docs/');
  assert.match(README, /docs\/STYLE\.md/);
  assert.match(README, /docs\/API\.md/);
  for (const b of shellBlocks(README)) assert.doesNotMatch(b, /^open /m, 'open URL is macOS only');
  // every `gatehouse ctl` line docs/API.md shows is a command ctl knows
  const api = fs.readFileSync(path.join(ROOT, 'docs/API.md'), 'utf8');
  const help = (await runGatehouse(['ctl', 'help'])).stdout;
  const known = [...help.matchAll(/^ {2}(\S+(?: [a-z]+)?)/gm)].map((m) => m[1]);
  const shown = [...api.matchAll(/^gatehouse ctl ([a-z]+)(?: ([a-z]+))?/gm)];
  assert.ok(shown.length >= 8, 'docs/API.md lists the ctl commands');
  for (const m of shown) {
    const two = `${m[1]} ${m[2] ?? ''}`.trim();
    assert.ok(known.includes(two) || known.includes(m[1]), `docs/API.md shows 'ctl ${two}', which ctl help does not list`);
  }
});

// ---- ctl ----

test('ctl --for needs a unit: 10 is refused and the 10 m window stays', async () => {
  const pinned = JSON.parse(await ok(['--json', 'policy', 'set', 'busy', '--for', '10m']));
  assert.ok(pinned.until, 'a pinned policy has an end');
  await refused(['policy', 'set', 'busy', '--for', '10'], /--for '10' is missing its unit: write e\.g\. 10m for minutes, 10h for hours or 10s for seconds/);
  await refused(['level', 'pin', 'elevated', '--for', '10'], /--for '10' is missing its unit/);
  await refused(['policy', 'set', 'busy', '--for', '500ms'], /--for expects at least 1s, not '500ms'/);
  await refused(['policy', 'set', 'busy', '--for', 'soon'], /--for expects a duration with its unit \(e\.g\. 90s, 30m, 2h, 1d\), not 'soon'/);
  const after = JSON.parse(await ok(['--json', 'policy', 'show']));
  assert.equal(after.mode, 'busy');
  assert.equal(after.until, pinned.until, 'the refused command changed nothing');
  // replacing a pinned window is said, not silent
  const out = await ok(['policy', 'set', 'busy', '--for', '90s']);
  assert.match(out, new RegExp(`^replaced: +busy until ${pinned.until.replace(/[.]/g, '\\.')}$`, 'm'));
  const back = await ok(['policy', 'set', 'open', '--pow-bits', '0']);
  assert.match(back, /^replaced: +busy until /m);
  // nothing pinned: nothing replaced
  assert.doesNotMatch(await ok(['policy', 'set', 'open', '--pow-bits', '0']), /replaced/);
});

test('ctl policy show prints regions only in restricted mode', async () => {
  let out = await ok(['policy', 'set', 'open', '--pow-bits', '0']);
  assert.doesNotMatch(out, /regions/, `open mode:\n${out}`);
  out = await ok(['policy', 'show']);
  assert.match(out, /^mode: +open$/m);
  assert.doesNotMatch(out, /regions/);
  out = await ok(['policy', 'set', 'restricted', '--regions', 'CN,HK']);
  assert.match(out, /^regions: +CN,HK$/m);
  out = await ok(['policy', 'set', 'busy']);
  assert.doesNotMatch(out, /regions/, `busy mode:\n${out}`);
  // --json keeps the whole document
  const j = JSON.parse(await ok(['--json', 'policy', 'show']));
  assert.ok(Array.isArray(j.allowed_regions));
  await ok(['policy', 'set', 'open', '--pow-bits', '0']);
});

test('ctl: unknown commands and options name the nearest one', async () => {
  await refused(['polcy', 'show'], /unknown command 'polcy show' \(did you mean 'policy show'\?\)/);
  await refused(['policy', 'shwo'], /did you mean 'policy show'\?/);
  await refused(['tpo'], /did you mean 'top'\?/);
  await refused(['policy'], /'policy' needs one of: show, set/);
  await refused(['incident', 'explode'], /unknown command 'incident explode' \('incident' takes create, update, list\)/);
  const far = await refused(['frobnicate'], /unknown command 'frobnicate'\n/);
  assert.doesNotMatch(far.stderr, /did you mean/, 'no guess when nothing is near');
  await refused(['policy', 'set', 'busy', '--regoins', 'CN'], /unknown option '--regoins' \(did you mean --regions\?\)/);
  const top = await runGatehouse(['serv']);
  assert.equal(top.code, 2);
  assert.match(top.stderr, /unknown command 'serv' \(did you mean serve\?/);
});

// ---- configuration ----

async function configError(content) {
  const file = path.join(tempDir('gh-ops-ux-'), 'gatehouse.conf');
  fs.writeFileSync(file, content);
  const r = await runGatehouse(['config', '--config', file]);
  assert.equal(r.code, 2, `exit ${r.code} for:\n${content}\nstderr: ${r.stderr}`);
  assert.equal(r.stdout, '');
  return r.stderr.replaceAll(file, 'FILE');
}

test('configuration mistakes are named: repeated key, missing =, typo, duration without unit', async () => {
  assert.match(
    await configError('[limits]\nidle_timeout = 10m\nheader_max = 32k\nidle_timeout = 10s\n'),
    /FILE:4: \[limits\] idle_timeout: set twice, on line 2 and on line 4 \(keep one\)/,
  );
  assert.match(
    await configError('[server]\nlisten 127.0.0.1:8181\n'),
    /FILE:2: \[server\] listen: the '=' is missing \(write listen = 127\.0\.0\.1:8181\)/,
  );
  assert.match(await configError('[limits]\nidle_timout = 30s\n'), /FILE:2: \[limits\] idle_timout: unknown key \(did you mean idle_timeout\?\)/);
  assert.match(await configError('[limts]\nidle_timeout = 30s\n'), /unknown section \(did you mean \[limits\]\?\)/);
  assert.match(await configError('[limits]\nidle_timeout = 30\n'), /FILE:2: \[limits\] idle_timeout: '30' has no unit \(write e\.g\. 30s or 30ms\)/);
  // serve refuses the same file before it listens
  const file = path.join(tempDir('gh-ops-ux-'), 'dup.conf');
  fs.writeFileSync(file, '[server]\nworkers = 1\nworkers = 2\n');
  const r = await runGatehouse(['serve', '--config', file, '--listen', '127.0.0.1:1', '--data', tempDir()]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /set twice, on line 2 and on line 3/);
  // the shipped configurations load
  for (const f of ['conf/dev.conf', 'conf/gatehouse.conf']) {
    const c = await runGatehouse(['config', '--config', path.join(ROOT, f)]);
    assert.equal(c.code, 0, `${f}: ${c.stderr}`);
  }
});

// ---- make run ----

test('make run LISTEN=… ADMIN_LISTEN=… serves there, builds only the server, quietly', async (t) => {
  // make run configures its build folder as RelWithDebInfo: run it only on
  // such a folder (the normal build), never on the sanitizer build
  const buildDir = path.dirname(BIN);
  const cache = path.join(buildDir, 'CMakeCache.txt');
  if (!fs.existsSync(cache) || !/^CMAKE_BUILD_TYPE:STRING=RelWithDebInfo$/m.test(fs.readFileSync(cache, 'utf8')) || /^GH_SANITIZE:BOOL=ON$/m.test(fs.readFileSync(cache, 'utf8'))) {
    t.skip(`${buildDir} is not the RelWithDebInfo build make run uses`);
    return;
  }
  assert.match(README, /make run LISTEN=127\.0\.0\.1:8181 ADMIN_LISTEN=127\.0\.0\.1:9191/, 'the README shows how');
  const [port, adminPort] = await freePorts(2);
  const data = tempDir('gh-make-run-');
  const p = spawn('make', ['run', `BUILD=${path.relative(ROOT, buildDir)}`, 'JOBS=2', `LISTEN=127.0.0.1:${port}`, `ADMIN_LISTEN=127.0.0.1:${adminPort}`], {
    cwd: ROOT,
    // as from an operator's shell: under `make test` the environment says
    // this is a sub-make (MAKELEVEL), and make would print its directory
    env: (({ MAKELEVEL, MAKEFLAGS, MFLAGS, ...rest }) => rest)(childEnv({ GATEHOUSE_DATA: data })),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, stopped like Ctrl-C stops it
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const exited = new Promise((r) => p.on('close', r));
  try {
    await waitUntil(
      async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
        } catch {
          return false;
        }
      },
      { timeout: 240000, every: 250, what: `make run serving on ${port}\n${out}` },
    );
    const m = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
    assert.equal(m.status, 200, 'the admin listener is on ADMIN_LISTEN');
    assert.doesNotMatch(out, /Entering directory|Leaving directory/, out);
    assert.doesNotMatch(out, /Built target (gh_load|spray|pow_solve|idle_conns|test_)/, `make run builds only the server:\n${out}`);
    assert.match(out, new RegExp(`--listen 127\\.0\\.0\\.1:${port} --admin-listen 127\\.0\\.0\\.1:${adminPort}`));
    assert.ok(fs.existsSync(path.join(data, 'admin.token')), 'GATEHOUSE_DATA is honoured');
  } finally {
    try {
      process.kill(-p.pid, 'SIGINT');
    } catch {}
    const done = await Promise.race([exited, sleep(15000).then(() => 'timeout')]);
    if (done === 'timeout') process.kill(-p.pid, 'SIGKILL');
  }
});
