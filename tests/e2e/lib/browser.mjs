// Browser helpers for tests/e2e/browser.test.mjs: Debian's Chromium driven
// by playwright-core, plus the bits of gatehouse the page tests need (SMS
// codes from the outbox, the admin policy, screenshots).
//
//   const browser = await launchBrowser();          // null: skip (reason in SKIP_REASON)
//   const { page, errors } = await openPage(browser, srv, '/register', { locale: 'en-US' });
//   const code = await smsCode(srv, '+8613800138001', 'register');
//   await setPolicy(srv, { mode: 'restricted', allowed_regions: ['CN'] });
//   await screenshot(page, 'register-restricted');
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

import { request, waitUntil, writeArtifact } from './harness.mjs';

export const CHROMIUM = process.env.GATEHOUSE_CHROMIUM || '/usr/bin/chromium';

let pw = null;
let importError = null;
try {
  pw = await import('playwright-core');
} catch (e) {
  importError = e;
}

/** Why the browser tests cannot run here, or '' when they can. */
export const SKIP_REASON = !fs.existsSync(CHROMIUM)
  ? `${CHROMIUM} is missing (scripts/deps.sh test installs the chromium package)`
  : !pw
    ? `playwright-core is not installed (cd tests && npm ci): ${importError?.message}`
    : '';

export async function launchBrowser() {
  if (SKIP_REASON) return null;
  return pw.chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export const PHONE_VIEWPORT = { width: 390, height: 800 };
export const WIDE_VIEWPORT = { width: 1280, height: 860 };

/**
 * A fresh context (own cookies and storage) and page at srv.url + path.
 * errors collects page errors, console errors and CSP violations, so a
 * test can assert the page ran cleanly.
 */
export async function openPage(browser, srv, urlPath = '/', { locale = 'en-US', viewport = PHONE_VIEWPORT, context } = {}) {
  const ctx = context || (await browser.newContext({ locale, viewport, acceptDownloads: true }));
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // refusals the tests provoke on purpose show as failed loads; CSP and script errors do not
    if (/Failed to load resource/.test(text)) return;
    errors.push(`console: ${text}`);
  });
  page.setDefaultTimeout(15000);
  if (urlPath !== null) await page.goto(srv.url + urlPath);
  return { page, context: ctx, errors };
}

/** Asserts that the page ran cleanly (openPage's errors are empty). */
export function assertClean(errors, what) {
  assert.deepEqual(errors, [], `${what}: errors in the page:\n${errors.join('\n')}`);
}

/** Saves a PNG of the page under $GATEHOUSE_TEST_OUT/browser-<name>.png. */
export async function screenshot(page, name, { fullPage = true } = {}) {
  try {
    const png = await page.screenshot({ fullPage });
    return writeArtifact(`browser-${name}.png`, png);
  } catch (e) {
    // a screenshot is evidence, not the test: never fail on it
    process.stderr.write(`screenshot ${name}: ${e.message}\n`);
    return null;
  }
}

function outboxLines(srv) {
  const p = path.join(srv.dataDir, 'sms-outbox.jsonl');
  let text = '';
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch {
    return [];
  }
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      /* a line being written */
    }
  }
  return out;
}

/** How many messages the outbox holds now (pass to smsCode as `after`). */
export function outboxCount(srv) {
  return outboxLines(srv).length;
}

/** The code of the newest SMS to `to` (E.164) for `purpose` after the
 * first `after` messages; waits for it. */
export async function smsCode(srv, to, purpose, { after = 0, timeout = 10000 } = {}) {
  const msg = await waitUntil(
    () => {
      const lines = outboxLines(srv).slice(after);
      for (let i = lines.length - 1; i >= 0; i--) if (lines[i].to === to && lines[i].purpose === purpose) return lines[i];
      return null;
    },
    { timeout, what: `an SMS to ${to} (${purpose}) in ${srv.dataDir}/sms-outbox.jsonl` },
  );
  assert.match(String(msg.code), /^[0-9]{6}$/);
  return String(msg.code);
}

/** PUT /admin/v1/policy with the admin token; returns the new policy. */
export async function setPolicy(srv, body) {
  const r = await request(`${srv.adminUrl}/admin/v1/policy`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, `PUT /admin/v1/policy answered ${r.status}: ${text}`);
  return JSON.parse(text);
}

let phoneSeq = 0;
/** A fresh valid mainland mobile number: national digits and E.164. */
export function cnPhone() {
  phoneSeq += 1;
  const national = `1380013${String((process.pid * 7 + phoneSeq * 13) % 10000).padStart(4, '0')}`;
  return { national, e164: `+86${national}` };
}

/** Registers through the page (/register must be open in page): CN region,
 * SMS code from the outbox, password; waits for /chat. */
export async function registerThroughPage(page, srv, { phone = cnPhone(), password = 'correct horse battery 42' } = {}) {
  await page.locator('#cc').selectOption('CN');
  await page.locator('#phone').fill(phone.national);
  const after = outboxCount(srv);
  await page.locator('#send').click();
  await page.locator('#send-msg').filter({ hasText: phone.e164 }).waitFor();
  const code = await smsCode(srv, phone.e164, 'register', { after });
  await page.locator('#code').fill(code);
  await page.locator('#password').fill(password);
  await page.locator('#submit').click();
  await page.waitForURL(/\/chat$/);
  return { phone, password };
}

/** Registers through the API inside a browser context, so the context
 * holds the session cookies (for tests about other pages). */
export async function registerThroughApi(context, srv, { phone = cnPhone(), password = 'correct horse battery 42' } = {}) {
  const after = outboxCount(srv);
  const r1 = await context.request.post(`${srv.url}/api/auth/sms-code`, { data: { phone: phone.e164, purpose: 'register' } });
  assert.equal(r1.status(), 202, `sms-code answered ${r1.status()}: ${await r1.text()}`);
  const code = await smsCode(srv, phone.e164, 'register', { after });
  const r2 = await context.request.post(`${srv.url}/api/auth/register`, { data: { phone: phone.e164, code, password } });
  assert.equal(r2.status(), 201, `register answered ${r2.status()}: ${await r2.text()}`);
  return { phone, password };
}

/** PUT /admin/v1/level {level} (pins the shield's attack level). */
export async function setLevel(srv, level) {
  const r = await request(`${srv.adminUrl}/admin/v1/level`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ level }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, `PUT /admin/v1/level answered ${r.status}: ${text}`);
  return JSON.parse(text);
}
