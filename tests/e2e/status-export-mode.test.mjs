// `gatehouse status export DIR` writes files a web server running as
// another user can read: 0644 (directories 0755) less the operator's umask,
// not the 0600 of the server's own state (issue 13, item 6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, childEnv, tempDir } from './lib/harness.mjs';

/** Runs `status export` under umask, returns {dir, res}. */
function exportWith(umask) {
  const dir = path.join(tempDir('gh-export-mode-'), 'site');
  const data = tempDir('gh-export-data-');
  const res = spawnSync('/bin/sh', ['-c', `umask ${umask} && exec "$0" "$@"`, BIN, 'status', 'export', dir, '--data', data], {
    env: childEnv(),
    encoding: 'utf8',
    timeout: 15000,
  });
  return { dir, res };
}

/** Every file and directory under dir, with its permission bits. */
function modes(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath ?? e.path, e.name);
    out.push({ p: path.relative(dir, p), dir: e.isDirectory(), mode: fs.statSync(p).mode & 0o777 });
  }
  return out;
}

for (const [umask, file, directory] of [
  ['022', 0o644, 0o755],
  ['027', 0o640, 0o750],
]) {
  test(`status export under umask ${umask}: files ${file.toString(8)}, directories ${directory.toString(8)}`, () => {
    const { dir, res } = exportWith(umask);
    assert.equal(res.status, 0, res.stderr);
    const all = modes(dir);
    const files = all.filter((m) => !m.dir);
    assert.ok(files.some((m) => m.p === 'index.html'), 'index.html exported');
    assert.ok(files.some((m) => m.p === path.join('api', 'v2', 'summary.json')), 'summary.json exported');
    for (const m of all) {
      const want = m.dir ? directory : file;
      assert.equal(m.mode, want, `${m.p}: mode ${m.mode.toString(8)}, want ${want.toString(8)}`);
    }
    assert.ok(!all.some((m) => m.p.endsWith('.tmp')), 'no temporary file left');
  });
}
