// The web chat while the model servers are full (issue 15 item 3), in
// Chromium: a call waiting in the gateway's fair queue shows "waiting,
// position N" from the stream's ": queue position=N" comment, then its
// answer; a 503 busy answer (the estimated wait passes the queue deadline)
// shows the message with a retry button counting down Retry-After, which
// retries the same message. The gateway in front of the model-server
// simulator with 1 slot, held by another account's long call. Generous
// timeouts: the machine may be loaded.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, tempDir, waitUntil } from './lib/harness.mjs';
import { FAST, api, cnPhone as apiPhone, registerUser } from './lib/accounts.mjs';
import { SKIP_REASON, assertClean, launchBrowser, openPage, screenshot, registerThroughApi, WIDE_VIEWPORT } from './lib/browser.mjs';
import { startModelSim } from './model-sim.mjs';

const LONG = 60000;

/** A simulator with one slot and a gateway whose model `sim` is capped at it. */
async function start(t, set = {}) {
  const sim = await startModelSim({ slots: 1, ttft: 20, tps: 50, tokens: 5 });
  const file = path.join(tempDir('gh-ups-'), 'upstreams.ini');
  fs.writeFileSync(file, `[upstream sim]\nmodel = sim\nbase_url = ${sim.url}/v1\nmax_concurrent = 1\n`);
  const srv = await startServer({
    t,
    set: { ...FAST, 'identity.argon2_mem': '1m', 'gateway.upstreams_file': file, 'gateway.user_concurrency': '0', ...set },
  });
  return { sim, srv };
}

/** Another account's streamed call that holds the slot until abort(). */
async function holdSlot(srv, sim, tag = 'hold [tokens=3000]') {
  const { jar } = await registerUser(srv, apiPhone());
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'holder' }, jar });
  assert.equal(k.status, 201, k.text);
  const ac = new AbortController();
  const done = fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${k.json.key}` },
    body: JSON.stringify({ model: 'sim', stream: true, messages: [{ role: 'user', content: tag }] }),
    signal: ac.signal,
  })
    .then((r) => r.text())
    .catch(() => null);
  await waitUntil(async () => (await sim.stats()).active === 1, { what: 'the slot held', timeout: LONG });
  return {
    release: async () => {
      ac.abort();
      await done;
      await waitUntil(async () => (await sim.stats()).active === 0, { what: 'the slot free', timeout: LONG });
    },
    key: k.json.key,
  };
}

/** The chat page of a new account, model `sim` picked. */
async function chatPage(browser, srv, locale) {
  const { page, context, errors } = await openPage(browser, srv, null, { locale, viewport: WIDE_VIEWPORT });
  page.setDefaultTimeout(LONG);
  await registerThroughApi(context, srv);
  await page.goto(srv.url + '/chat');
  await page.locator('#model option[value="sim"]').waitFor({ state: 'attached' });
  await page.locator('#model').selectOption('sim');
  return { page, context, errors };
}

describe('the web chat while the model servers are full', { skip: SKIP_REASON || false }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('a waiting call shows "waiting, position 1", then its answer', { timeout: 180000 }, async (t) => {
    const { sim, srv } = await start(t);
    const { page, context, errors } = await chatPage(browser, srv, 'en-US');
    const hold = await holdSlot(srv, sim);
    await page.locator('#prompt').fill('hello');
    await page.locator('#send').click();
    const turn = page.locator('.turn.assistant').last();
    const note = turn.locator('.note.queue[data-position="1"]');
    await note.waitFor();
    assert.equal(await note.textContent(), 'Waiting for a free model server, position 1 in line…');
    assert.equal(await turn.getAttribute('data-state'), 'streaming');
    await screenshot(page, 'chat-queue-waiting');
    // the slot frees: the answer comes, the note goes
    await hold.release();
    await page.locator('.turn.assistant[data-state="done"]').waitFor();
    assert.equal(await page.locator('.note.queue').count(), 0);
    assert.ok((await turn.locator('.body').textContent()).trim().length > 0, 'the answer is shown');
    assertClean(errors, 'chat waiting');
    await context.close();
    await srv.stop();
    sim.stop();
  });

  test('503 busy: the message and a retry button counting down Retry-After; it retries the same message (Chinese)', { timeout: 180000 }, async (t) => {
    // a queue deadline of 1 s, and a model whose calls take ~3 s: with the
    // slot held, the estimated wait passes it and the answer is 503 at once
    const { sim, srv } = await start(t, { 'gateway.queue_timeout': '1s' });
    await holdSlot(srv, sim, 'seed [ttft=3000] [tokens=1]'); // left to finish: the mean service time
    await waitUntil(async () => (await sim.stats()).active === 0, { what: 'the seed call done', timeout: LONG });
    const { page, context, errors } = await chatPage(browser, srv, 'zh-CN');
    const hold = await holdSlot(srv, sim);
    await page.locator('#prompt').fill('你好 busy');
    await page.locator('#send').click();
    const failed = page.locator('.turn.assistant[data-state="error"]');
    await failed.waitFor();
    const note = failed.locator('.note.error');
    const text = await note.textContent();
    const m = /服务器繁忙，请 (\d+) 秒后重试。/.exec(text);
    assert.ok(m, text);
    const delay = Number(m[1]);
    assert.ok(delay >= 2 && delay <= 30, `Retry-After ${delay}`);
    const btn = failed.locator('button.retry');
    assert.match(await btn.textContent(), /^\d+ 秒后重试$/);
    assert.ok(Number(await btn.getAttribute('data-wait')) > 0);
    await screenshot(page, 'chat-busy-retry');
    // the countdown ends: the plain label
    await waitUntil(async () => (await btn.textContent()) === '重试', { what: 'the countdown to end', timeout: LONG, every: 200 });
    // the slot frees; the retry sends the same message and gets the answer
    await hold.release();
    await btn.click();
    await page.locator('.turn.assistant[data-state="done"]').waitFor();
    assert.equal(await page.locator('.turn.user').count(), 1, 'the same message, not a second one');
    const log = await sim.log();
    assert.ok(log.some((e) => e.tag === '你好 busy' && e.ended), 'the retried message reached the model');
    assertClean(errors, 'chat busy');
    await context.close();
    await srv.stop();
    sim.stop();
  });
});
