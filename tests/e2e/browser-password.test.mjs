// Password reset and change on the web pages, in Chromium: /login's
// "Forgot password?" leads to /reset-password (SMS code from the outbox,
// the key-revocation choice, a proof of work when the server asks for
// one, English and Chinese); /account changes the password with the
// current one, ending the other sessions. And POST /api/me/password's
// refusals, without a browser.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from './lib/harness.mjs';
import { FAST, Jar, api, registerUser, cnPhone as apiPhone } from './lib/accounts.mjs';
import { SKIP_REASON, assertClean, launchBrowser, openPage, screenshot, smsCode, outboxCount, cnPhone, registerThroughApi, WIDE_VIEWPORT } from './lib/browser.mjs';

const SET = { ...FAST, 'identity.argon2_mem': '1m' };
const OLD = 'correct horse battery 42';
const NEW = 'purple elephant sings 77';

/** A context signed in as a new account, with one API key. */
async function member(browser, srv) {
  const context = await browser.newContext({ viewport: WIDE_VIEWPORT });
  const { phone } = await registerThroughApi(context, srv, { password: OLD });
  const csrf = (await context.cookies()).find((c) => c.name === 'gh_csrf').value;
  const k = await context.request.post(`${srv.url}/api/keys`, { data: { name: 'laptop' }, headers: { 'x-csrf-token': csrf } });
  assert.equal(k.status(), 201, await k.text());
  return { context, phone, key: (await k.json()).key };
}

async function keyWorks(srv, context, key) {
  const r = await context.request.get(`${srv.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  return r.status() === 200;
}

async function signedIn(srv, context) {
  return (await context.request.get(`${srv.url}/api/me`)).status() === 200;
}

describe('password reset and change in Chromium', { skip: SKIP_REASON || false }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('Forgot password? → SMS code → new password with the keys revoked → log in with it', async (t) => {
    const srv = await startServer({ t, set: SET });
    const m = await member(browser, srv);
    const { page, context, errors } = await openPage(browser, srv, '/login');
    await page.locator('#forgot').click();
    await page.waitForURL(/\/reset-password$/);
    assert.equal(await page.locator('h1').textContent(), 'Reset your password');
    await page.locator('#cc').selectOption('CN');
    await page.locator('#phone').fill(m.phone.national);
    const after = outboxCount(srv);
    await page.locator('#send').click();
    await page.locator('#send-msg').filter({ hasText: m.phone.e164 }).waitFor();
    const code = await smsCode(srv, m.phone.e164, 'reset', { after });
    await page.locator('#code').fill(code);
    await page.locator('#password').fill(NEW);
    await page.locator('#revoke-keys').check();
    await screenshot(page, 'reset-filled');
    await page.locator('#submit').click();
    await page.locator('#form-msg[data-kind="ok"]').filter({ hasText: 'every session is signed out and 1 API keys are revoked' }).waitFor();
    await screenshot(page, 'reset-done');
    // what the reset did: the old session and the key are gone
    assert.equal(await signedIn(srv, m.context), false, 'the session from before the reset is signed out');
    assert.equal(await keyWorks(srv, m.context, m.key), false, 'the key is revoked');
    // the link logs in with the new password
    await page.locator('#reset-login').click();
    await page.waitForURL(/\/login$/);
    await page.locator('#cc').selectOption('CN');
    await page.locator('#phone').fill(m.phone.national);
    await page.locator('#password').fill(NEW);
    await page.locator('#submit').click();
    await page.waitForURL(/\/chat$/);
    assertClean(errors, 'reset');
    await m.context.close();
    await context.close();
    await srv.stop();
  });

  test('in Chinese, keys kept, and a proof of work when the server asks for one', async (t) => {
    const srv = await startServer({ t, set: SET });
    const m = await member(browser, srv);
    const { page, context, errors } = await openPage(browser, srv, null, { locale: 'zh-CN' });
    // the first code request is refused for want of a proof (as the
    // server does for registration codes under a pow policy)
    const bodies = [];
    await page.route('**/api/auth/sms-code', async (route) => {
      const body = JSON.parse(route.request().postData());
      bodies.push(body);
      if (bodies.length === 1)
        return route.fulfill({
          status: 403,
          contentType: 'application/json',
          body: JSON.stringify({ error: { message: 'proof of work required', type: 'permission_error', param: 'pow', code: 'pow_required' } }),
        });
      return route.continue();
    });
    await page.goto(srv.url + '/login');
    assert.equal(await page.locator('html').getAttribute('lang'), 'zh');
    await page.locator('#forgot').filter({ hasText: '忘记密码' }).click();
    await page.waitForURL(/\/reset-password$/);
    assert.equal(await page.locator('h1').textContent(), '重置密码');
    await page.locator('#cc').selectOption('CN');
    await page.locator('#phone').fill(m.phone.national);
    const after = outboxCount(srv);
    await page.locator('#send').click();
    await page.locator('#pow[data-state="done"]').waitFor({ timeout: 30000 });
    await page.locator('#send-msg').filter({ hasText: m.phone.e164 }).waitFor();
    assert.equal(bodies.length, 2);
    assert.equal(bodies[0].pow, undefined);
    assert.match(String(bodies[1].pow?.challenge), /./, 'the retry carries a solved challenge');
    assert.equal(bodies[1].purpose, 'reset');
    const code = await smsCode(srv, m.phone.e164, 'reset', { after });
    // a wrong code first: the message says so, in Chinese
    await page.locator('#code').fill(code === '000000' ? '111111' : '000000');
    await page.locator('#password').fill(NEW);
    await page.locator('#submit').click();
    await page.locator('#form-msg[data-kind="error"]').waitFor();
    assert.match(await page.locator('#form-msg').textContent(), /[\u4e00-\u9fff]/);
    await page.locator('#code').fill(code);
    await page.locator('#submit').click();
    await page.locator('#form-msg[data-kind="ok"]').filter({ hasText: '密码已更改' }).waitFor();
    await screenshot(page, 'reset-done-zh');
    assert.equal(await signedIn(srv, m.context), false, 'the old session is signed out');
    assert.equal(await keyWorks(srv, m.context, m.key), true, 'the key stays when not asked to revoke');
    assertClean(errors, 'reset zh');
    await m.context.close();
    await context.close();
    await srv.stop();
  });

  test('/account: a wrong current password is refused; the right one changes it and ends the other sessions', async (t) => {
    const srv = await startServer({ t, set: SET });
    const m = await member(browser, srv);
    // a second browser signed in to the same account
    const other = await browser.newContext();
    const li = await other.request.post(`${srv.url}/api/auth/login`, { data: { phone: m.phone.e164, password: OLD } });
    assert.equal(li.status(), 200, await li.text());
    const { page, errors } = await openPage(browser, srv, '/account', { context: m.context });
    await page.locator('#me-phone').filter({ hasText: m.phone.e164 }).waitFor();
    await page.locator('#cur-password').fill('not my password 1');
    await page.locator('#new-password').fill(NEW);
    await page.locator('#pw-submit').click();
    await page.locator('#pw-msg').filter({ hasText: 'The current password is wrong.' }).waitFor();
    await screenshot(page, 'account-password-wrong');
    assert.equal(await signedIn(srv, other), true, 'nothing changed');
    await page.locator('#cur-password').fill(OLD);
    await page.locator('#new-password').fill(NEW);
    await page.locator('#pw-submit').click();
    await page.locator('#pw-msg[data-kind="ok"]').filter({ hasText: 'Password changed. 1 other sessions signed out.' }).waitFor();
    await screenshot(page, 'account-password-changed');
    assert.equal(await signedIn(srv, m.context), true, 'this browser stays signed in');
    assert.equal(await signedIn(srv, other), false, 'the other browser is signed out');
    assert.equal(await keyWorks(srv, m.context, m.key), true, 'keys stay unless asked');
    const old = await other.request.post(`${srv.url}/api/auth/login`, { data: { phone: m.phone.e164, password: OLD } });
    assert.equal(old.status(), 401, 'the old password no longer signs in');
    const neu = await other.request.post(`${srv.url}/api/auth/login`, { data: { phone: m.phone.e164, password: NEW } });
    assert.equal(neu.status(), 200, 'the new one does');
    // again in Chinese, revoking the keys
    await page.goto(srv.url + '/account?lang=zh');
    await page.locator('#cur-password').fill(NEW);
    await page.locator('#new-password').fill(OLD);
    await page.locator('#pw-revoke-keys').check();
    await page.locator('#pw-submit').click();
    await page.locator('#pw-msg[data-kind="ok"]').filter({ hasText: '已吊销 1 个 API 密钥' }).waitFor();
    await screenshot(page, 'account-password-changed-zh');
    assert.equal(await keyWorks(srv, m.context, m.key), false, 'the key is revoked');
    assert.equal(await signedIn(srv, m.context), true);
    assertClean(errors, 'account password');
    await other.close();
    await m.context.close();
    await srv.stop();
  });
});

test('POST /api/me/password: session and CSRF required, clear 4xx for bad input', async (t) => {
  const srv = await startServer({ t, set: SET });
  const phone = apiPhone();
  const { jar } = await registerUser(srv, phone, OLD);
  const body = { current_password: OLD, password: NEW };
  let r = await api(srv.url, 'POST', '/api/me/password', { body });
  assert.equal(r.status, 401, r.text);
  r = await api(srv.url, 'POST', '/api/me/password', { body, jar, csrf: false });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.error.code, 'forbidden');
  r = await api(srv.url, 'POST', '/api/me/password', { body: { password: NEW }, jar });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /^current_password: required/);
  r = await api(srv.url, 'POST', '/api/me/password', { body: { current_password: OLD, password: 'short' }, jar });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.param, 'password');
  r = await api(srv.url, 'POST', '/api/me/password', { body: { ...body, revoke_keys: 'yes' }, jar });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /revoke_keys/);
  r = await api(srv.url, 'POST', '/api/me/password', { body: { current_password: 'x'.repeat(2000), password: NEW }, jar });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /current_password: too long/);
  r = await api(srv.url, 'POST', '/api/me/password', { body: { current_password: 'wrong one', password: NEW }, jar });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'wrong_password');
  assert.equal(r.json.error.param, 'current_password');
  // with an API key alone: not this route
  const k = await api(srv.url, 'POST', '/api/keys', { body: { name: 'k' }, jar });
  r = await api(srv.url, 'POST', '/api/me/password', { body, bearer: k.json.key });
  assert.equal(r.status, 401);
  r = await api(srv.url, 'POST', '/api/me/password', { body: { ...body, revoke_keys: true }, jar });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { changed: true, sessions_ended: 0, keys_revoked: 1 });
  r = await api(srv.url, 'GET', '/api/me', { jar });
  assert.equal(r.status, 200, 'the session that changed it stays');
  const fresh = new Jar();
  r = await api(srv.url, 'POST', '/api/auth/login', { body: { phone, password: NEW }, jar: fresh });
  assert.equal(r.status, 200);
  await srv.stop();
});
