// A start that fails half-way unwinds what the earlier subsystems made:
// here the gateway refuses a broken quotas.json after identity opened the
// store and started its threads. The process exits 1 naming the file, the
// store is closed (SQLite checkpointed it: no -wal or -shm file is left),
// and under ASan nothing leaks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { freePorts, runGatehouse, tempDir } from './lib/harness.mjs';

test('a gateway that cannot start stops identity: exit 1, store closed, no leak', async () => {
  const data = tempDir('gh-init-unwind-');
  fs.writeFileSync(path.join(data, 'quotas.json'), 'not json\n');
  const [port, adminPort] = await freePorts(2);
  const r = await runGatehouse([
    'serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--data', data,
  ]);
  assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  assert.match(r.stderr, /quotas\.json: not a quota file/);
  assert.ok(fs.existsSync(path.join(data, 'gatehouse.db')), 'identity opened its store first');
  const left = fs.readdirSync(data).filter((f) => /^gatehouse\.db-(wal|shm)$/.test(f));
  assert.deepEqual(left, [], 'the store was closed (checkpointed) before exit');
  assert.doesNotMatch(r.stderr, /LeakSanitizer|AddressSanitizer/);
});
