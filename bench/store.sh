#!/usr/bin/env bash
# Registrations per second of the PostgreSQL store against the SQLite
# store, same machine, same run, same durability (issue 14): SQLite with
# synchronous=FULL, PostgreSQL with fsync=on and synchronous_commit=on, a
# throwaway server (tests/e2e/lib/postgres.mjs) on loopback TCP. The load
# is build/store_bench: registrations written as the identity module
# writes them (user with sealed phone, login result, session, audit row:
# one job), CONCURRENCY jobs queued at once so the writer's group commit
# can batch them. Argon2id is left out: it costs the same on both and
# would hide the store. Medians of 3 runs per level.
# Usage: bench/store.sh   (or bench/run.sh store: writes bench/results/store.*)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init store
TOOL="$BUILD/store_bench"
[ -x "$TOOL" ] || die "$TOOL not built (cmake --build build --target store_bench)"
command -v node >/dev/null || die "node missing"

cd "$BENCH_ROOT"
node --input-type=module - "$TOOL" "$BENCH_TMP" <<'JS' | bench_lines
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pgMissing, startPostgres } from './tests/e2e/lib/postgres.mjs';

const [tool, tmp] = process.argv.slice(2);
const why = pgMissing();
if (why) { console.log(`skip: ${why}`); process.exit(0); }
const pg = await startPostgres();
const levels = [[1, 200], [16, 2000], [128, 6000]];
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const run = (args) => JSON.parse(execFileSync(tool, args, { encoding: 'utf8', timeout: 300000, stdio: ['ignore', 'pipe', 'pipe'] }).trim());
const table = [];
let k = 0;
try {
  for (const [conc, n] of levels) {
    const got = { sqlite: [], postgres: [] };
    for (let r = 1; r <= 3; r++) {
      k++;
      const lite = run(['sqlite', path.join(tmp, `bench-${k}.db`), String(n), String(conc)]);
      const db = pg.database(`bench_${k}`);
      const post = run(['postgres', db.url, String(n), String(conc)]);
      for (const x of [lite, post]) {
        if (x.ok !== n) throw new Error(`${x.backend}: ${x.ok} of ${n} registrations ok`);
        got[x.backend].push(x.per_s);
        console.log(`row: ${x.backend} ${r} registrations_per_s_c${conc} ${x.per_s} 1/s`);
      }
    }
    const ls = median(got.sqlite), ps = median(got.postgres);
    console.log(`row: sqlite median registrations_per_s_c${conc} ${ls} 1/s`);
    console.log(`row: postgres median registrations_per_s_c${conc} ${ps} 1/s`);
    table.push([conc, n, ls, ps]);
  }
} finally {
  await pg.destroy();
}
console.log('md: ## Store: registrations/s, PostgreSQL vs SQLite');
console.log('md: ');
console.log('md: `bench/store.sh`: build/store_bench writes registrations (user with a sealed phone, login');
console.log('md: result, session, audit row: one job) through the store with CONCURRENCY jobs queued;');
console.log('md: SQLite synchronous=FULL in a temp dir, PostgreSQL 15 fsync=on synchronous_commit=on on');
console.log('md: loopback TCP, same disk. Medians of 3 runs. Argon2id left out (same cost on both).');
console.log('md: ');
console.log('md: | queued jobs | registrations per run | SQLite /s | PostgreSQL /s | PostgreSQL / SQLite |');
console.log('md: |---|---|---|---|---|');
for (const [conc, n, ls, ps] of table) console.log(`md: | ${conc} | ${n} | ${ls.toFixed(0)} | ${ps.toFixed(0)} | ${(ps / ls).toFixed(2)} |`);
console.log('md: ');
console.log('md: Reading: a SQLite statement is a call inside the process; a PostgreSQL statement is a');
console.log('md: round trip to another process (prepared once per connection), about five per');
console.log('md: registration (savepoint, user, login result, session, audit), so PostgreSQL gives less');
console.log('md: per node; group commit removes the fsync per job on both (compare 1 with 128 queued).');
console.log('md: Neither is the limit of registrations: argon2id at its default cost hashes about 7 per');
console.log('md: second per core (bench/results/accounts.md), hundreds of times less than either store.');
console.log('md: ');
for (const [conc, , ls, ps] of table)
  console.log(`ratio: store registrations/s with ${conc} queued: PostgreSQL ${ps.toFixed(0)} / SQLite ${ls.toFixed(0)} = ${(ps / ls).toFixed(2)}`);
JS
