// A throwaway PostgreSQL for black-box tests: a fresh data directory in a
// temp dir, listening on a free loopback port (and a unix socket in the
// same temp dir), password authentication, removed afterwards.
//
//   const pg = await startPostgres({ t });   // null when the binaries are missing (pgMissing says why)
//   ... pg.url (with the password), pg.urlNoPassword, pg.password, pg.port ...
//   pg.psql('SELECT 1')   // rows as text, one per line
//   const db = pg.database('t1')   // another database: db.url, db.psql(sql)
//   await pg.stop(); await pg.start();   // an outage and a recovery
//   pg.freeze(); pg.thaw();   // a server that stops answering, and answers again
//
// initdb refuses to run as root: as root, every server command runs as
// the `postgres` user the Debian package creates, and the temp dir is
// given to it. The server is stopped (immediate) at process exit even
// when a test fails.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePorts } from './harness.mjs';

/** The directory of initdb/pg_ctl (newest installed version), or null. */
export function pgBinDir() {
  const root = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')));
  } catch {
    /* not installed */
  }
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length) return path.join(root, versions[0], 'bin');
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  return onPath ? path.dirname(onPath) : null;
}

function postgresUser() {
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Why a PostgreSQL cannot be started here, or '' when it can. */
export function pgMissing() {
  const bin = pgBinDir();
  if (!bin) return 'PostgreSQL binaries not found (apt-get install postgresql, or scripts/deps.sh test)';
  if (spawnSync('sh', ['-c', 'command -v psql'], { encoding: 'utf8' }).status !== 0)
    return 'psql not found (apt-get install postgresql-client)';
  if (process.getuid?.() === 0 && !postgresUser())
    return 'running as root without a `postgres` user to run initdb as (apt-get install postgresql creates it)';
  return '';
}

const running = new Set();
process.on('exit', () => {
  for (const pg of running) pg.killNow();
});

/** Starts a server; resolves with its handle, or null when pgMissing(). */
export async function startPostgres({ t, db = 'gatehouse', user = 'gatehouse' } = {}) {
  if (pgMissing()) return null;
  const bin = pgBinDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const password = crypto.randomBytes(12).toString('hex');
  const pwfile = path.join(dir, 'pw');
  fs.writeFileSync(pwfile, password + '\n', { mode: 0o600 });
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : null;
  if (owner) {
    fs.chownSync(dir, owner.uid, owner.gid);
    fs.chownSync(pwfile, owner.uid, owner.gid);
  }
  // as root: runuser -u postgres -- CMD; otherwise CMD
  const run = (cmd, args, opts = {}) => {
    const [file, argv] = owner ? ['runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args]] : [path.join(bin, cmd), args];
    return spawnSync(file, argv, { encoding: 'utf8', cwd: dir, timeout: 60000, ...opts });
  };
  const init = run('initdb', ['-D', data, '-U', user, '-A', 'scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C', '--no-sync']);
  if (init.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  }
  fs.rmSync(pwfile);
  const [port] = await freePorts(1);
  const opts = `-h 127.0.0.1 -p ${port} -k ${dir} -c fsync=on -c synchronous_commit=on -c max_connections=50 -c shared_buffers=16MB`;

  const pg = {
    port,
    dir,
    user,
    db,
    password,
    url: `postgresql://${user}:${password}@127.0.0.1:${port}/${db}`,
    urlNoPassword: `postgresql://${user}@127.0.0.1:${port}/${db}`,
    dataDir: data, // postmaster.pid's first line is the server's pid
    up: false,
    log: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''),

    async start() {
      const r = run('pg_ctl', ['-D', data, '-l', log, '-o', opts, '-w', '-t', '30', 'start']);
      if (r.status !== 0) throw new Error(`pg_ctl start failed: ${r.stderr || r.stdout}\n${pg.log().slice(-2000)}`);
      pg.up = true;
    },

    /** mode: fast (disconnects clients, clean shutdown) or immediate (a crash). */
    async stop(mode = 'fast') {
      const r = run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']);
      if (r.status !== 0) throw new Error(`pg_ctl stop failed: ${r.stderr || r.stdout}`);
      pg.up = false;
    },

    /** Creates database name; returns {url, urlNoPassword, psql(sql)} for it. */
    database(name) {
      pg.psql(`CREATE DATABASE ${name}`, 'postgres');
      return {
        url: `postgresql://${user}:${password}@127.0.0.1:${port}/${name}`,
        urlNoPassword: `postgresql://${user}@127.0.0.1:${port}/${name}`,
        psql: (sql) => pg.psql(sql, name),
      };
    },

    /** Runs SQL with psql on database dbname (default db); returns stdout. */
    psql(sql, dbname = db) {
      return execFileSync('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', dbname, '-c', sql], {
        encoding: 'utf8',
        env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '5' },
        timeout: 15000,
      });
    },

    /** SIGSTOP the server and its backends: connections stay open and
     * nothing answers (a hung server, or a network that drops packets). */
    frozen: [],
    freeze() {
      const pm = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const kids = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pm)], { encoding: 'utf8' })
        .stdout.split('\n')
        .map((x) => Number(x.trim()))
        .filter(Boolean);
      pg.frozen = [pm, ...kids];
      for (const pid of pg.frozen) process.kill(pid, 'SIGSTOP');
    },
    thaw() {
      for (const pid of pg.frozen) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          /* gone */
        }
      }
      pg.frozen = [];
    },

    killNow() {
      pg.thaw();
      if (pg.up) run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop']);
      pg.up = false;
      fs.rmSync(dir, { recursive: true, force: true });
      running.delete(pg);
    },

    /** Stops the server and removes its files. */
    async destroy() {
      pg.killNow();
    },
  };
  running.add(pg);
  if (t) t.after(() => pg.destroy());
  await pg.start();
  if (db !== 'postgres') pg.psql(`CREATE DATABASE ${db}`, 'postgres');
  return pg;
}
