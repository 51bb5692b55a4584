// A second server cannot silently share the public port (issue 13, item
// 1): with SO_REUSEPORT the kernel used to let a forgotten second
// instance bind beside the first and spread clients over two databases
// (random 401s). Start-up now fails with a clear message when anything
// already listens on the address; gatehouse's own workers still share it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { freePorts, request, runGatehouse, startServer, tempDir } from './lib/harness.mjs';

function serveArgs(port, adminPort) {
  return ['serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`,
    '--data', tempDir(), '--workers', '2', '--set', 'identity.cookie_secure=false'];
}

test('a second gatehouse on the same public port refuses to start', async (t) => {
  const srv = await startServer({ t, workers: 2 });
  const [adminPort] = await freePorts(1);
  const r = await runGatehouse(serveArgs(srv.port, adminPort), { timeout: 10000 });
  assert.notEqual(r.code, 0, `the second instance exited ${r.code} (signal ${r.signal})`);
  assert.equal(r.signal, null, 'it stopped by itself, not by the timeout');
  assert.match(r.stderr, /already in use by another process/);
  // the first one serves on, alone
  for (let i = 0; i < 20; i++) assert.equal((await request(`${srv.url}/healthz`)).status, 200);
  await srv.stop();
});

test('anything else listening on the address stops start-up', async () => {
  const other = net.createServer();
  await new Promise((res) => other.listen(0, '127.0.0.1', res));
  const [adminPort] = await freePorts(1);
  const port = other.address().port;
  const r = await runGatehouse(serveArgs(port, adminPort), { timeout: 10000 });
  other.close();
  assert.notEqual(r.code, 0);
  assert.equal(r.signal, null);
  assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use by another process`));
});
