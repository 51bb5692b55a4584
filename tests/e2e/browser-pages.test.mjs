// What a visitor meets on the pages (issue 13 items 5 and 11), in
// Chromium: the home page's curl example keeps its words whole; the chat
// sidebar shows conversation titles as plain text, has an h1, and names
// its × buttons by what they do; the phone region follows a restricted
// policy in an English browser and any number written with its calling
// code is taken as such; the status page refreshes itself by script
// with a visible, advancing "checked" time the reader can stop, links
// back to the site, and /favicon.ico is there.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, request } from './lib/harness.mjs';
import { SKIP_REASON, assertClean, launchBrowser, openPage, screenshot, setPolicy, registerThroughApi, cnPhone, PHONE_VIEWPORT, WIDE_VIEWPORT } from './lib/browser.mjs';

const SET = { 'identity.argon2_ops': '1', 'identity.argon2_mem': '1m', 'gateway.echo_delay': '1ms' };
const PASSWORD = 'correct horse battery 42';

describe('pages in Chromium', { skip: SKIP_REASON || false }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('home: the curl example breaks only between words, on a phone too', async (t) => {
    const srv = await startServer({ t, set: SET });
    const { page, context, errors } = await openPage(browser, srv, '/', { viewport: PHONE_VIEWPORT });
    const curl = page.locator('#curl');
    assert.match(await curl.textContent(), new RegExp(`^curl ${srv.url.replace(/\./g, '\\.')}/v1/chat/completions \\\\\n`));
    // every word of the command lies on one line of the screen
    const split = await curl.evaluate((code) => {
      const text = code.firstChild;
      const out = [];
      const re = /\S+/g;
      let m;
      while ((m = re.exec(text.nodeValue))) {
        const r = document.createRange();
        r.setStart(text, m.index);
        r.setEnd(text, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].map((x) => Math.round(x.top)));
        if (tops.size > 1) out.push(m[0]);
      }
      return out;
    });
    assert.deepEqual(split, [], `words broken across lines: ${split.join(' ')}`);
    // what does not fit scrolls, and the keyboard can reach it
    assert.equal(await page.locator('pre.code').getAttribute('tabindex'), '0');
    await screenshot(page, 'home-curl-phone');
    assertClean(errors, 'home');
    await context.close();
    await srv.stop();
  });

  test('chat: titles are plain text, the page has an h1, × buttons are named by what they do', async (t) => {
    const srv = await startServer({ t, set: SET });
    const { page, context, errors } = await openPage(browser, srv, null, { viewport: WIDE_VIEWPORT });
    await registerThroughApi(context, srv);
    await page.goto(srv.url + '/chat');
    assert.equal(await page.locator('h1').count(), 1);
    await page.locator('#model option[value="echo"]').waitFor({ state: 'attached' });
    await page.locator('#prompt').fill('## **Bold** plan with `code`, _ease_ and [a link](https://example.com)\n- one\n- two');
    await page.locator('#prompt').press('Enter');
    await page.locator('.turn.assistant[data-state="done"]').waitFor();
    const want = 'Bold plan with code, ease and a link one two';
    const open = page.locator('#conv-list .conv-open');
    assert.equal(await open.textContent(), want);
    // the delete button: its name says what it deletes, the × is only seen
    const del = page.getByRole('button', { name: `Delete conversation ${want}`, exact: true });
    assert.equal(await del.count(), 1);
    assert.equal((await del.innerText()).trim().startsWith('×'), true);
    // a title kept raw by an older version is shown plain too
    await page.evaluate(() => {
      for (const k of Object.keys(localStorage)) {
        if (!k.startsWith('gh_chats:')) continue;
        const s = JSON.parse(localStorage.getItem(k));
        s.convs[0].title = '**old** `title`';
        delete s.convs[0].plainTitle;
        localStorage.setItem(k, JSON.stringify(s));
      }
    });
    await page.reload();
    await page.locator('#conv-list .conv-open').filter({ hasText: /^old title$/ }).waitFor();
    await screenshot(page, 'chat-plain-titles');
    await page.getByRole('button', { name: 'Delete conversation old title', exact: true }).click();
    assert.equal(await page.locator('#conv-list li').count(), 0);
    assertClean(errors, 'chat');
    await context.close();
    await srv.stop();
  });

  test('phone region: a restricted policy picks it in an English browser; numbers with +, ＋ or 00 sign in', async (t) => {
    const srv = await startServer({ t, set: SET });
    const reg = await browser.newContext();
    const { phone } = await registerThroughApi(reg, srv, { phone: cnPhone(), password: PASSWORD });
    await reg.close();
    // open policy: an English browser starts at US, and a number written
    // with its calling code is taken whatever the picker says
    for (const typed of [`＋86 ${phone.national}`, `0086${phone.national}`, `+86 ${phone.national}`]) {
      const { page, context, errors } = await openPage(browser, srv, '/login', { locale: 'en-US' });
      assert.equal(await page.locator('#cc').inputValue(), 'US');
      await page.locator('#phone').fill(typed);
      assert.equal(await page.locator('#cc-prefix').isHidden(), true, `${typed}: the picker's prefix steps aside`);
      await page.locator('#password').fill(PASSWORD);
      await page.locator('#submit').click();
      await page.waitForURL(/\/chat$/);
      assertClean(errors, `login as ${typed}`);
      await context.close();
    }
    // restricted to CN: the English browser starts at CN on every page,
    // and the national number signs in as it is
    await setPolicy(srv, { mode: 'restricted', allowed_regions: ['CN'] });
    for (const p of ['/register', '/login', '/reset-password']) {
      const { page, context, errors } = await openPage(browser, srv, p, { locale: 'en-US' });
      await page.locator('#cc option').first().waitFor({ state: 'attached' });
      assert.equal(await page.locator('#cc').inputValue(), 'CN', `${p}: the region of the policy`);
      assert.equal(await page.locator('#cc-prefix').textContent(), '+86');
      if (p === '/login') {
        await page.locator('#phone').fill(phone.national);
        await page.locator('#password').fill(PASSWORD);
        await page.locator('#submit').click();
        await page.waitForURL(/\/chat$/);
      }
      assertClean(errors, p);
      await context.close();
    }
    await srv.stop();
  });

  test('status: refreshes by script with a visible advancing time the reader can stop; a link home; a favicon', async (t) => {
    const srv = await startServer({ t, set: SET });
    const html = (await request(`${srv.url}/status`)).text();
    assert.doesNotMatch(html, /http-equiv="refresh"/i);
    const ico = await request(`${srv.url}/favicon.ico`);
    assert.equal(ico.status, 200);
    assert.equal(ico.headers['content-type'], 'image/x-icon');
    assert.deepEqual([...ico.body.subarray(0, 4)], [0, 0, 1, 0], 'an ICO file');

    const { page, context, errors } = await openPage(browser, srv, null, { viewport: PHONE_VIEWPORT });
    const fetches = [];
    page.on('request', (r) => {
      if (r.resourceType() === 'fetch' && r.url().includes('/status')) fetches.push(Date.now());
    });
    await page.clock.install();
    await page.goto(srv.url + '/status');
    await page.locator('#refresh').waitFor({ state: 'visible' });
    const first = await page.locator('#checked').getAttribute('datetime');
    assert.ok(first, 'a checked time is shown');
    assert.equal(await page.locator('#auto-refresh').isChecked(), true);
    await screenshot(page, 'status-refresh');
    // something changes on the server; a minute later the open page shows it
    const r = await request(`${srv.adminUrl}/admin/v1/incidents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Chat answers slow', body: 'Looking into it.', impact: 'minor', status: 'investigating' }),
    });
    assert.ok(r.status === 200 || r.status === 201, r.text());
    await page.clock.fastForward(61000);
    await page.locator('.incidents').filter({ hasText: 'Chat answers slow' }).waitFor();
    await page.waitForFunction((t0) => document.getElementById('checked').dateTime !== t0, first);
    const second = await page.locator('#checked').getAttribute('datetime');
    assert.ok(Date.parse(second) - Date.parse(first) >= 60000, `the checked time advanced: ${first} → ${second}`);
    // the reader turns it off: no more fetches, remembered after a reload
    await page.locator('#auto-refresh').uncheck();
    const before = fetches.length;
    await page.clock.fastForward(180000);
    await page.waitForTimeout(300);
    assert.equal(fetches.length, before, 'no refresh once turned off');
    await page.reload();
    await page.locator('#refresh').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#auto-refresh').isChecked(), false, 'the choice is remembered');
    // the way back to the site
    await page.locator('a.home').click();
    await page.waitForURL(srv.url + '/');
    assertClean(errors, 'status');
    await context.close();
    await srv.stop();
  });
});
