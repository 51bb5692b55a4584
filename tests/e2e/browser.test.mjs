// The web pages in a real browser (Debian's Chromium through
// playwright-core): registration with an SMS code from the outbox, login,
// streaming chat with the echo model, the refusals of restricted and busy
// registration, the proof of work, API keys, the account page, the
// language switch and the security headers. Each test saves screenshots
// under $GATEHOUSE_TEST_OUT. Skips cleanly when /usr/bin/chromium is
// missing.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, request, waitUntil } from './lib/harness.mjs';
import {
  SKIP_REASON,
  launchBrowser,
  openPage,
  screenshot,
  smsCode,
  outboxCount,
  setPolicy,
  setLevel,
  cnPhone,
  registerThroughPage,
  registerThroughApi,
  PHONE_VIEWPORT,
  WIDE_VIEWPORT,
} from './lib/browser.mjs';

// fast password hashing, a short busy retry, a visible stream
const BASE_SET = {
  'identity.argon2_ops': '1',
  'identity.argon2_mem': '1m',
  'identity.busy_retry': '2s',
  'gateway.echo_delay': '40ms',
};

function start(t, set = {}) {
  return startServer({ t, set: { ...BASE_SET, ...set } });
}

function assertClean(errors, what) {
  assert.deepEqual(errors, [], `${what}: errors in the page:\n${errors.join('\n')}`);
}

describe('web pages in Chromium', { skip: SKIP_REASON || false }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('register with an SMS code, log in, chat with the echo model (streamed)', async (t) => {
    const srv = await start(t);
    const { page, errors, context } = await openPage(browser, srv, '/register');
    await screenshot(page, 'register-open');
    const { phone, password } = await registerThroughPage(page, srv);
    await context.close();

    // a fresh browser: log in by password
    const s2 = await openPage(browser, srv, '/login', { viewport: WIDE_VIEWPORT });
    const p2 = s2.page;
    await p2.locator('#cc').selectOption('CN');
    await p2.locator('#phone').fill(phone.national);
    await p2.locator('#password').fill('wrong password 1');
    await p2.locator('#submit').click();
    await p2.locator('#form-msg').filter({ hasText: /wrong|too many/i }).waitFor();
    await p2.locator('#password').fill(password);
    // the first failure sets a short back-off: retry until it has passed
    await waitUntil(
      async () => {
        await p2.locator('#submit').click();
        await p2.waitForURL(/\/chat$/, { timeout: 1500 });
        return true;
      },
      { timeout: 10000, every: 200, what: 'login by password' },
    );

    // chat: the answer streams in, Markdown renders, HTML does not
    await p2.locator('#model').filter({ has: p2.locator('option[value="echo"]') }).waitFor();
    await p2.evaluate(() => {
      window.__lens = [];
      const log = document.getElementById('messages');
      new MutationObserver(() => {
        const a = log.querySelector('.turn.assistant[data-state="streaming"] .body');
        if (a) window.__lens.push(a.textContent.length);
      }).observe(log, { subtree: true, childList: true, characterData: true });
    });
    const words = 'one two three four five six seven eight nine ten eleven twelve';
    await p2.locator('#prompt').fill(`hello **bold** <img src=x id=evil> \`code\` ${words}`);
    await p2.locator('#prompt').press('Enter');
    const answer = p2.locator('.turn.assistant').last();
    await answer.and(p2.locator('[data-state="streaming"]')).waitFor();
    await screenshot(p2, 'chat-streaming');
    await answer.and(p2.locator('[data-state="done"]')).waitFor();
    const lens = await p2.evaluate(() => window.__lens.filter((n) => n > 1));
    assert.ok(new Set(lens).size >= 3, `the answer should grow while streaming; lengths seen: ${lens.join(',')}`);
    const text = await answer.locator('.body').textContent();
    assert.match(text, /twelve/);
    assert.equal(await answer.locator('.body strong').count() >= 1, true, 'Markdown bold rendered');
    assert.equal(await p2.locator('#messages img, #evil').count(), 0, 'no HTML injected from the answer');
    assert.match(text, /<img src=x id=evil>/, 'the HTML shows as text');
    await screenshot(p2, 'chat-done');

    // the conversation is kept in the browser
    await p2.reload();
    await p2.locator('.turn.assistant .body').filter({ hasText: 'twelve' }).waitFor();
    assert.equal(await p2.locator('#conv-list li').count(), 1);
    assertClean(errors, 'register');
    assertClean(s2.errors, 'login and chat');
    await s2.context.close();
    await srv.stop();
  });

  test('chat: stop button ends the stream, errors show in place with retry', async (t) => {
    const srv = await start(t, { 'gateway.echo_delay': '150ms' });
    const { page, context, errors } = await openPage(browser, srv, null);
    await registerThroughApi(context, srv);
    await page.goto(srv.url + '/chat');
    await page.locator('#model option[value="echo"]').waitFor({ state: 'attached' });
    const long = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ');
    await page.locator('#prompt').fill(long);
    await page.locator('#send').click();
    await page.locator('.turn.assistant[data-state="streaming"]').waitFor();
    await page.locator('#stop').click();
    await page.locator('.turn.assistant[data-state="stopped"]').waitFor();
    const got = await page.locator('.turn.assistant .body').textContent();
    assert.ok(!got.includes('w59'), 'stopped before the end');
    assert.equal(await page.locator('#send').isVisible(), true);

    // an error in place: the model disappears from under the picker
    await page.evaluate(() => {
      const o = document.createElement('option');
      o.value = o.textContent = 'no-such-model';
      document.getElementById('model').append(o);
      document.getElementById('model').value = 'no-such-model';
    });
    await page.locator('#new-chat').click();
    await page.locator('#prompt').fill('hi');
    await page.locator('#prompt').press('Enter');
    const failed = page.locator('.turn.assistant[data-state="error"]');
    await failed.waitFor();
    await failed.locator('button.retry').waitFor();
    await screenshot(page, 'chat-error-retry');
    // retry with a model that exists
    await page.locator('#model').selectOption('echo');
    await failed.locator('button.retry').click();
    await page.locator('.turn.assistant[data-state="done"]').filter({ hasText: 'hi' }).waitFor();
    assertClean(errors, 'chat stop/retry');
    await context.close();
    await srv.stop();
  });

  test('restricted: a +1 number shows the policy message, a +86 number registers', async (t) => {
    const srv = await start(t);
    const pol = await setPolicy(srv, { mode: 'restricted', allowed_regions: ['CN'] });
    const message = pol.message.en;
    assert.match(message, /\+86/);
    const { page, context, errors } = await openPage(browser, srv, '/register');
    // the selector: CN first, the others greyed, the message shown
    await page.locator('#cc-hint').filter({ hasText: message }).waitFor();
    assert.equal(await page.locator('#cc option[value="US"]').isDisabled(), true);
    assert.equal(await page.locator('#cc option[value="CN"]').isDisabled(), false);
    assert.equal(await page.locator('#cc').inputValue(), 'CN');
    // a +1 number typed in full
    await page.locator('#phone').fill('+1 202 555 0143');
    const before = outboxCount(srv);
    await page.locator('#send').click();
    await page.locator('#form-msg').filter({ hasText: message }).waitFor();
    await screenshot(page, 'register-restricted-refused');
    // and the server refuses it too, with the same message
    const r = await context.request.post(`${srv.url}/api/auth/sms-code`, { data: { phone: '+12025550143', purpose: 'register' } });
    assert.equal(r.status(), 403);
    assert.equal((await r.json()).error.code, 'registration_restricted');
    assert.equal(outboxCount(srv), before, 'no SMS for a refused number');
    // a +86 number registers
    await page.locator('#phone').fill('');
    await registerThroughPage(page, srv);
    await screenshot(page, 'register-restricted-done');
    assertClean(errors, 'restricted');
    await context.close();
    await srv.stop();
  });

  test('restricted, in Chinese: the Chinese policy message', async (t) => {
    const srv = await start(t);
    const pol = await setPolicy(srv, { mode: 'restricted', allowed_regions: ['CN'] });
    const { page, context, errors } = await openPage(browser, srv, '/register', { locale: 'zh-CN' });
    assert.equal(await page.locator('html').getAttribute('lang'), 'zh');
    await page.locator('#cc-hint').filter({ hasText: pol.message.zh }).waitFor();
    await page.locator('#phone').fill('+1 202 555 0143');
    await page.locator('#send').click();
    await page.locator('#form-msg').filter({ hasText: pol.message.zh }).waitFor();
    await screenshot(page, 'register-restricted-zh');
    assertClean(errors, 'restricted zh');
    await context.close();
    await srv.stop();
  });

  test('busy: the retry message appears, registration succeeds after the policy reopens', async (t) => {
    const srv = await start(t);
    await setPolicy(srv, { mode: 'busy' });
    const { page, context, errors } = await openPage(browser, srv, '/register');
    const phone = cnPhone();
    await page.locator('#cc').selectOption('CN');
    await page.locator('#phone').fill(phone.national);
    await page.locator('#send').click();
    await page.locator('#form-msg').filter({ hasText: /Registration may be busy, please retry in \d+ s/ }).waitFor();
    await screenshot(page, 'register-busy');
    // it retries by itself; once open again, the code is sent without a click
    const after = outboxCount(srv);
    await setPolicy(srv, { mode: 'open' });
    await page.locator('#send-msg').filter({ hasText: phone.e164 }).waitFor();
    const code = await smsCode(srv, phone.e164, 'register', { after });
    await page.locator('#code').fill(code);
    await page.locator('#password').fill('correct horse battery 42');
    await page.locator('#submit').click();
    await page.waitForURL(/\/chat$/);
    await screenshot(page, 'register-busy-done');
    assertClean(errors, 'busy');
    await context.close();
    await srv.stop();
  });

  test('proof of work: progress appears and completes, then registration succeeds', async (t) => {
    const srv = await start(t);
    await setPolicy(srv, { mode: 'open', pow_bits: 14 });
    const { page, context, errors } = await openPage(browser, srv, null);
    await page.addInitScript(() => {
      window.__powStates = [];
      document.addEventListener('DOMContentLoaded', () => {
        const box = document.getElementById('pow');
        if (!box) return;
        new MutationObserver(() => window.__powStates.push(`${box.hidden ? 'hidden' : 'shown'}:${box.dataset.state || ''}`)).observe(box, {
          attributes: true,
          subtree: true,
          childList: true,
          characterData: true,
        });
      });
    });
    await page.goto(srv.url + '/register');
    await page.locator('#pow').waitFor({ state: 'visible', timeout: 30000 }); // after /api/policy: slow under ASan on a busy machine
    await page.locator('#pow[data-state="done"]').waitFor({ timeout: 30000 });
    assert.equal(await page.locator('#pow-progress').evaluate((p) => p.value), 100);
    const states = await page.evaluate(() => window.__powStates);
    assert.ok(states.includes('shown:working'), `progress shown while working; states: ${states.join(' ')}`);
    await screenshot(page, 'register-pow-done');
    await registerThroughPage(page, srv);
    assertClean(errors, 'pow');
    await context.close();
    await srv.stop();
  });

  test('proof of work in the elevated attack level (not in the policy): solved before registering', async (t) => {
    const srv = await start(t, { 'shield.elevated_pow_bits': '14' });
    await setLevel(srv, 'elevated');
    const ch = await request(`${srv.url}/api/pow/challenge?scope=register`);
    assert.equal(ch.status, 200, ch.text());
    assert.equal(ch.json().bits, 14);
    const { page, context, errors } = await openPage(browser, srv, '/register');
    await page.locator('#pow').waitFor({ state: 'visible', timeout: 30000 }); // after /api/policy: slow under ASan on a busy machine
    await page.locator('#pow[data-state="done"]').waitFor({ timeout: 30000 });
    await screenshot(page, 'register-pow-elevated');
    await registerThroughPage(page, srv);
    assertClean(errors, 'pow elevated');
    await context.close();
    await srv.stop();
  });

  test('login: the incident banner shows the current notice; login by SMS code', async (t) => {
    // no cool-down between the registration code and the login code of one number
    const srv = await start(t, { 'sms.cooldown': '0s' });
    const ctxReg = await browser.newContext();
    const { phone } = await registerThroughApi(ctxReg, srv);
    await ctxReg.close();
    const body = 'Due to large-scale malicious attacks, registration is temporarily limited. Existing users can log in as usual.';
    const r = await request(`${srv.adminUrl}/admin/v1/incidents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Registration limited', name_zh: '注册受限', body, body_zh: '由于大规模恶意攻击，注册暂时受限。老用户可正常登录。', impact: 'minor', status: 'identified' }),
    });
    assert.ok(r.status === 200 || r.status === 201, `create incident: ${r.status} ${r.text()}`);
    const { page, context, errors } = await openPage(browser, srv, '/login');
    await page.locator('#banner').filter({ hasText: 'Registration limited' }).filter({ hasText: 'Existing users can log in' }).waitFor();
    await page.locator('input[name=mode][value=code]').check();
    await page.locator('#cc').selectOption('CN');
    await page.locator('#phone').fill(phone.national);
    const after = outboxCount(srv);
    await page.locator('#send').click();
    const code = await smsCode(srv, phone.e164, 'login', { after });
    await page.locator('#code').fill(code);
    await screenshot(page, 'login-incident-banner');
    await page.locator('#submit').click();
    await page.waitForURL(/\/chat$/);
    // and in Chinese
    // what the page's incident requests got, for the message if it fails
    const seen = [];
    const zhCtx = await browser.newContext({ locale: 'en-US', viewport: PHONE_VIEWPORT });
    zhCtx.on('response', (res) => {
      if (res.url().includes('/api/v2/incidents/')) seen.push(`${res.status()} ${res.headers()['retry-after'] || ''}`);
    });
    zhCtx.on('requestfailed', (req) => {
      if (req.url().includes('/api/v2/incidents/')) seen.push(`failed: ${req.failure()?.errorText}`);
    });
    const zh = await openPage(browser, srv, '/login?lang=zh', { context: zhCtx });
    // under a momentary refusal (429/503) the page asks again after the
    // Retry-After it is given (up to 4 times, at most 5 s each): wait
    // that long, and say what it got if the notice never shows
    await zh.page.locator('#banner').filter({ hasText: '注册受限' }).waitFor({ timeout: 30000 }).catch((e) => {
      throw new Error(`zh banner not shown: incident requests answered [${seen.join('; ')}]: ${e.message}`);
    });
    await screenshot(zh.page, 'login-incident-banner-zh');
    assertClean(errors, 'login banner');
    assertClean(zh.errors, 'login banner zh');
    await zh.context.close();
    await context.close();
    await srv.stop();
  });

  test('keys page creates a key (shown once), lists it with its use, and revokes it', async (t) => {
    const srv = await start(t);
    const { page, context, errors } = await openPage(browser, srv, null, { viewport: WIDE_VIEWPORT });
    await registerThroughApi(context, srv);
    await page.goto(srv.url + '/keys');
    await page.locator('#keys-empty').waitFor({ state: 'visible' });
    await page.locator('#key-name').fill('laptop');
    await page.locator('#create').click();
    await page.locator('#new-key').waitFor({ state: 'visible' });
    const key = await page.locator('#new-key-value').inputValue();
    assert.match(key, /^sk-/);
    const row = page.locator('#keys-body tr').filter({ hasText: 'laptop' });
    await row.waitFor();
    await screenshot(page, 'keys-created');

    // the key works, and its use shows in the usage table
    const models = await request(`${srv.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(models.status, 200);
    const chat = await request(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'echo', messages: [{ role: 'user', content: 'count me' }] }),
    });
    assert.equal(chat.status, 200, chat.text());
    await page.reload();
    await page.locator('#usage-body tr').first().waitFor();
    await screenshot(page, 'keys-usage');

    // revoke: press, confirm, gone from use
    const revoke = page.locator('#keys-body tr').filter({ hasText: 'laptop' }).locator('button');
    await revoke.click();
    await page.locator('#keys-msg').filter({ hasText: 'laptop' }).waitFor();
    await revoke.click();
    await waitUntil(
      async () => {
        const rows = page.locator('#keys-body tr').filter({ hasText: 'laptop' });
        return (await rows.count()) === 0 || (await rows.locator('.tag').count()) === 1;
      },
      { what: 'the key revoked in the list' },
    );
    const after = await request(`${srv.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(after.status, 401, 'a revoked key is refused');
    await screenshot(page, 'keys-revoked');
    assertClean(errors, 'keys');
    await context.close();
    await srv.stop();
  });

  test('account page: export my data, log out, delete the account', async (t) => {
    const srv = await start(t);
    const { page, context, errors } = await openPage(browser, srv, null);
    const { phone } = await registerThroughApi(context, srv);
    await page.goto(srv.url + '/account');
    await page.locator('#me-phone').filter({ hasText: phone.e164 }).waitFor();
    await screenshot(page, 'account');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#export').click()]);
    const file = await download.path();
    const fs = await import('node:fs');
    const exported = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(JSON.stringify(exported).includes(phone.e164), true, 'the export holds the phone number');
    await page.locator('#delete').click();
    await page.locator('#delete-confirm').waitFor({ state: 'visible' });
    await screenshot(page, 'account-delete-confirm');
    await page.locator('#delete-yes').click();
    await page.waitForURL(srv.url + '/');
    const me = await context.request.get(`${srv.url}/api/me`);
    assert.equal(me.status(), 401, 'the session is gone with the account');
    assertClean(errors, 'account');
    await context.close();
    await srv.stop();
  });

  test('language: Accept-Language picks Chinese, the switch remembers English', async (t) => {
    const srv = await start(t);
    const { page, context, errors } = await openPage(browser, srv, '/', { locale: 'zh-CN' });
    assert.equal(await page.locator('html').getAttribute('lang'), 'zh');
    await screenshot(page, 'home-zh-phone');
    await page.locator('#lang-switch').click();
    await page.waitForURL(/lang=en/);
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await page.goto(srv.url + '/login');
    assert.equal(await page.locator('html').getAttribute('lang'), 'en', 'the choice is remembered');
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement && document.activeElement.className);
    assert.equal(first, 'skip', 'the first Tab reaches the skip link');
    await screenshot(page, 'login-en-phone');
    assertClean(errors, 'language');
    await context.close();
    await srv.stop();
  });

  test('signed-out visitors of /chat go to /login and come back after logging in', async (t) => {
    const srv = await start(t);
    const reg = await browser.newContext();
    const { phone, password } = await registerThroughApi(reg, srv);
    await reg.close();
    const { page, context, errors } = await openPage(browser, srv, '/chat');
    await page.waitForURL(/\/login\?next=%2Fchat$/);
    await page.locator('#cc').selectOption('CN');
    await page.locator('#phone').fill(phone.national);
    await page.locator('#password').fill(password);
    await page.locator('#password').press('Enter'); // the keyboard submits
    await page.waitForURL(/\/chat$/);
    await page.locator('#model option[value="echo"]').waitFor({ state: 'attached' });
    assertClean(errors, 'redirect');
    await context.close();
    await srv.stop();
  });

  test('every page: security headers, no CSP violation, both languages and sizes render', async (t) => {
    const srv = await start(t);
    for (const p of ['/', '/register', '/login', '/reset-password', '/chat', '/keys', '/account']) {
      const r = await request(srv.url + p, { headers: { 'accept-language': 'zh-CN,zh;q=0.9,en;q=0.8' } });
      assert.equal(r.status, 200, p);
      assert.match(r.headers['content-type'], /^text\/html/);
      const csp = r.headers['content-security-policy'] || '';
      for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "worker-src 'self'"])
        assert.ok(csp.includes(d), `${p}: CSP lacks ${d}: ${csp}`);
      assert.equal(r.headers['x-frame-options'], 'DENY', p);
      assert.equal(r.headers['referrer-policy'], 'no-referrer', p);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', p);
      assert.match(r.text(), /<html lang="zh">/, p);
      assert.doesNotMatch(r.text(), /<script>|<style|\sstyle="|\son[a-z]+="/i, `${p}: no inline script or style`);
      const again = await request(srv.url + p, { headers: { 'if-none-match': r.headers.etag, 'accept-language': 'zh-CN' } });
      assert.equal(again.status, 304, `${p}: ETag revalidation`);
    }
    const css = await request(srv.url + '/css/site.css?v=nope');
    assert.equal(css.status, 200);
    assert.match(css.headers['content-type'], /^text\/css/);
    assert.equal(css.headers['cache-control'], 'no-cache');
    const page = await request(srv.url + '/');
    const versioned = /href="(\/css\/site\.css\?v=[0-9a-f]+)"/.exec(page.text())[1];
    const css2 = await request(srv.url + versioned);
    assert.match(css2.headers['cache-control'], /immutable/);
    assert.equal((await request(srv.url + '/js/nope.js')).status, 404);

    // a logged-in browser visits every page in both languages, phone and wide
    const ctx = await browser.newContext({ viewport: PHONE_VIEWPORT });
    await registerThroughApi(ctx, srv);
    for (const [lang, vp] of [
      ['en', PHONE_VIEWPORT],
      ['zh', WIDE_VIEWPORT],
    ]) {
      for (const p of ['/', '/register', '/login', '/reset-password', '/chat', '/keys', '/account']) {
        const { page: pg, errors } = await openPage(browser, srv, null, { context: ctx });
        await pg.setViewportSize(vp);
        await pg.goto(`${srv.url}${p}?lang=${lang}`);
        await pg.waitForLoadState('networkidle');
        await screenshot(pg, `page${p === '/' ? '-home' : p.replace('/', '-')}-${lang}-${vp.width}`);
        assertClean(errors, `${p} (${lang})`);
        await pg.close();
      }
    }
    await ctx.close();
    await srv.stop();
  });
});
