// Starts and stops gatehouse for black-box tests.
//
//   const srv = await startServer({ t, workers: 2, set: { 'limits.body_max': '1k' } });
//   ... srv.url, srv.adminUrl, srv.port, srv.adminPort, srv.dataDir ...
//   await srv.stop();   // SIGTERM, exit code 0, no sanitizer report
//
// With `t` (the node:test context) the server is killed in t.after even
// when the test fails; its stderr is then written under
// $GATEHOUSE_TEST_OUT. The binary is $GATEHOUSE_BIN (default
// build/gatehouse, relative to the current directory).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';

import { request } from './http1.mjs';

export * from './http1.mjs';

export const BIN = path.resolve(process.env.GATEHOUSE_BIN || 'build/gatehouse');
export const TEST_OUT = process.env.GATEHOUSE_TEST_OUT || '';

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)|runtime error:/;

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** promise's value, or null if ms pass first (the timer is cleared, so it
 * never holds the test process open). */
export function withTimeout(promise, ms) {
  let timer;
  return Promise.race([
    promise,
    new Promise((r) => {
      timer = setTimeout(() => r(null), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls fn (sync or async) every `every` ms until it returns a truthy
 * value; returns it, or throws after timeout ms naming what. */
export async function waitUntil(fn, { timeout = 5000, every = 25, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` + (last instanceof Error ? `: ${last.message}` : ''));
    }
    await sleep(every);
  }
}

/** A fresh temporary directory (removed at process exit unless kept for artifacts). */
const tmpDirs = [];
export function tempDir(prefix = 'gh-e2e-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}
process.on('exit', () => {
  if (process.env.GATEHOUSE_KEEP_TMP) return;
  for (const d of tmpDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
});

/** n distinct free loopback ports (bound together, then released). */
export async function freePorts(n = 2) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((res, rej) => {
        s.once('error', rej);
        s.listen(0, '127.0.0.1', res);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** The admin token the server wrote to dataDir/admin.token. */
export function adminToken(dataDir) {
  return fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
}

function safeName(s) {
  return String(s || 'server').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120);
}

/** Writes an artifact file under $GATEHOUSE_TEST_OUT (no-op if unset). */
export function writeArtifact(name, content) {
  if (!TEST_OUT) return null;
  fs.mkdirSync(TEST_OUT, { recursive: true });
  const p = path.join(TEST_OUT, safeName(name));
  fs.writeFileSync(p, content);
  return p;
}

/** Environment for a child: ours without GATEHOUSE_* (so a developer's
 * settings cannot leak in), plus extra. */
export function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GATEHOUSE_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Runs the binary to completion (for commands that exit by themselves).
 * Returns {code, signal, stdout, stderr}.
 */
export function runGatehouse(args, { env = {}, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('error', (e) => {
      clearTimeout(timer);
      live.delete(p);
      reject(e);
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(p);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Asserts no sanitizer report in text. */
export function assertNoSanitizerReport(text, what = 'server') {
  const m = SANITIZER_RE.exec(text);
  if (m) {
    const at = Math.max(0, m.index - 200);
    assert.fail(`${what}: sanitizer report in stderr:\n${text.slice(at, at + 4000)}`);
  }
}

/**
 * Starts `gatehouse serve` on two free loopback ports with a fresh data
 * directory and waits until /healthz answers on both listeners.
 *
 * opts:
 *   t        node:test context: kill the server in t.after, keep stderr on failure
 *   name     artifact name (default: t.name)
 *   workers  --workers (default 2)
 *   set      {'section.key': 'value'} passed as --set (identity.cookie_secure
 *            is false unless set: plain http, as conf/dev.conf)
 *   env      extra environment (GATEHOUSE_* of the caller's are not inherited)
 *   config   INI text, written to a temp file passed as --config (srv.configPath)
 *   configPath  an existing config file instead
 *   dataDir  data directory (default: a fresh temp dir)
 *   args     extra command-line arguments
 *   readyTimeout  ms to wait for /healthz (default 20000; sanitizer builds are slow)
 *
 * Returns {url, adminUrl, port, adminPort, dataDir, configPath, proc,
 *   stderr(), stdout(), exited (promise of {code, signal}), stop(),
 *   kill(signal), waitStderr(re), metrics(), adminToken()}.
 */
export async function startServer(opts = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      lastErr = e;
      // a port taken between picking and binding: try other ports
      if (!e.portRace) throw e;
    }
  }
  throw lastErr;
}

const serverNames = new Map(); // artifact names in use, so a second server does not overwrite

async function startOnce(opts) {
  const { t, workers = 2, set = {}, env = {}, config, args = [], readyTimeout = 20000 } = opts;
  const base = opts.name || t?.name || 'server';
  const seen = (serverNames.get(base) ?? 0) + 1;
  serverNames.set(base, seen);
  const name = seen > 1 ? `${base}-${seen}` : base;
  const dataDir = opts.dataDir || path.join(tempDir(), 'data');
  let configPath = opts.configPath;
  if (config !== undefined) {
    configPath = path.join(tempDir('gh-conf-'), 'gatehouse.conf');
    fs.writeFileSync(configPath, config);
  }
  const [port, adminPort] = await freePorts(2);
  const argv = [
    'serve',
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
    '--data',
    dataDir,
    '--workers',
    String(workers),
  ];
  if (configPath) argv.push('--config', configPath);
  // plain http on loopback, as conf/dev.conf: cookies without Secure and
  // without the __Host- prefix unless a test asks (web-security.test.mjs)
  const sets = { 'identity.cookie_secure': 'false', ...set };
  for (const [k, v] of Object.entries(sets)) argv.push('--set', `${k}=${v}`);
  argv.push(...args);

  const proc = spawn(BIN, argv, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let stderr = '';
  let stdout = '';
  const stderrWaiters = new Set();
  proc.stderr.on('data', (d) => {
    stderr += d;
    for (const w of stderrWaiters) w();
  });
  proc.stdout.on('data', (d) => (stdout += d));
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      exitInfo = { code, signal };
      live.delete(proc);
      for (const w of stderrWaiters) w();
      resolve(exitInfo);
    });
    proc.on('error', (e) => {
      exitInfo = { code: null, signal: null, error: e };
      live.delete(proc);
      resolve(exitInfo);
    });
  });

  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  let stopped = false;

  const srv = {
    url,
    adminUrl,
    port,
    adminPort,
    dataDir,
    configPath,
    proc,
    argv,
    exited,
    stderr: () => stderr,
    stdout: () => stdout,
    get exitInfo() {
      return exitInfo;
    },
    adminToken: () => adminToken(dataDir),

    /** Sends a signal; resolves at once (use srv.exited to wait). */
    kill(signal = 'SIGKILL') {
      if (!exitInfo) proc.kill(signal);
      return exited;
    },

    /** Resolves with the stderr text once re matches it; throws after timeout. */
    waitStderr(re, timeout = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(stderr);
          if (m) {
            done();
            resolve(m);
          } else if (exitInfo) {
            done();
            reject(new Error(`server exited (${JSON.stringify(exitInfo)}) before stderr matched ${re}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`stderr did not match ${re} within ${timeout} ms; stderr:\n${stderr.slice(-3000)}`));
        }, timeout);
        const done = () => {
          clearTimeout(timer);
          stderrWaiters.delete(check);
        };
        stderrWaiters.add(check);
        check();
      });
    },

    /** GET /metrics on the admin listener, as text. */
    async metrics() {
      const r = await request(`${adminUrl}/metrics`);
      assert.equal(r.status, 200, `/metrics answered ${r.status}`);
      return r.text();
    },

    /** Waits for the exit after a signal already sent; asserts code 0 and a clean stderr. */
    async expectCleanExit(timeout = 20000) {
      const info = await withTimeout(exited, timeout);
      if (!info) {
        proc.kill('SIGKILL');
        await exited;
        keepArtifacts('did-not-exit');
        assert.fail(`server did not exit within ${timeout} ms of SIGTERM; stderr:\n${stderr.slice(-3000)}`);
      }
      stopped = true;
      try {
        assertNoSanitizerReport(stderr, name);
        assert.equal(info.signal, null, `server died of ${info.signal}; stderr:\n${stderr.slice(-3000)}`);
        assert.equal(info.code, 0, `server exit code ${info.code}; stderr:\n${stderr.slice(-3000)}`);
      } catch (e) {
        keepArtifacts('bad-exit');
        throw e;
      }
      return info;
    },

    /** SIGTERM, wait, assert exit code 0 and no sanitizer report. */
    async stop(timeout = 20000) {
      if (exitInfo) {
        stopped = true;
        assertNoSanitizerReport(stderr, name);
        assert.equal(exitInfo.code, 0, `server had already exited with ${JSON.stringify(exitInfo)}`);
        return exitInfo;
      }
      proc.kill('SIGTERM');
      return srv.expectCleanExit(timeout);
    },

    /** For t.after: kills a server still running and keeps its stderr. */
    async cleanup() {
      if (!exitInfo) {
        proc.kill('SIGTERM');
        const info = await withTimeout(exited, 10000);
        if (!info) {
          proc.kill('SIGKILL');
          await exited;
        }
        keepArtifacts('not-stopped-by-test');
      } else if (!stopped) {
        keepArtifacts('exited');
      }
      // a sanitizer report fails the test even if it did not stop the server itself
      if (SANITIZER_RE.test(stderr)) {
        keepArtifacts('sanitizer');
        assertNoSanitizerReport(stderr, name);
      }
    },
  };

  const reasons = [];
  function keepArtifacts(why) {
    reasons.push(why);
    const p = writeArtifact(
      `${name}.stderr.log`,
      `# ${reasons.join(', ')}\n# ${BIN} ${argv.join(' ')}\n# exit ${JSON.stringify(exitInfo)}\n${stderr}`,
    );
    if (p && stdout) writeArtifact(`${name}.stdout.log`, stdout);
    return p;
  }

  if (t) t.after(() => srv.cleanup());

  // wait for both listeners
  const t0 = Date.now();
  try {
    for (const base of [adminUrl, url]) {
      await waitUntil(
        async () => {
          if (exitInfo) {
            const e = new Error(`server exited during start (${JSON.stringify(exitInfo)}); stderr:\n${stderr.slice(-3000)}`);
            e.exited = true;
            throw e;
          }
          const r = await request(`${base}/healthz`, { timeout: 2000 });
          return r.status === 200;
        },
        { timeout: Math.max(1000, readyTimeout - (Date.now() - t0)), every: 50, what: `${base}/healthz` },
      ).catch((e) => {
        if (exitInfo) {
          const err = new Error(`server exited during start (${JSON.stringify(exitInfo)}); stderr:\n${stderr.slice(-3000)}`);
          err.portRace = /cannot listen|Address already in use|EADDRINUSE/i.test(stderr);
          throw err;
        }
        throw e;
      });
    }
  } catch (e) {
    if (!exitInfo) {
      proc.kill('SIGKILL');
      await exited;
    }
    stopped = true;
    if (!e.portRace) keepArtifacts('start-failed');
    throw e;
  }
  return srv;
}

/** Parses Prometheus text into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let lm;
      while ((lm = re.exec(m[3]))) labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** Sum of the samples named name whose labels include all of want. */
export function metricValue(text, name, want = {}) {
  let sum = 0;
  let found = false;
  for (const s of parseMetrics(text)) {
    if (s.name !== name) continue;
    if (Object.entries(want).every(([k, v]) => s.labels[k] === v)) {
      sum += s.value;
      found = true;
    }
  }
  return found ? sum : undefined;
}
