// Accessibility: axe-core (tests/package.json) runs in Chromium on every
// page, English and Chinese, light and dark, signed in with something on
// each page (a conversation, a key, an open incident); no serious or
// critical violation is allowed, nor a page without h1 or a control
// whose name does not contain its visible label. The browser context
// bypasses the pages' CSP so that the test can inject axe (only here:
// the pages keep theirs).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { startServer, request } from './lib/harness.mjs';
import { SKIP_REASON as BROWSER_SKIP, launchBrowser, screenshot, registerThroughApi, WIDE_VIEWPORT } from './lib/browser.mjs';

let AXE = '';
try {
  AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
} catch {
  /* reported as the skip reason */
}
const SKIP_REASON = BROWSER_SKIP || (AXE ? '' : 'axe-core is not installed (cd tests && npm ci)');

export const PAGES = ['/', '/register', '/login', '/reset-password', '/chat', '/keys', '/account', '/status'];

// and these whatever their impact (the first is experimental, off by default)
const ALSO = ['label-content-name-mismatch', 'page-has-heading-one'];

/** axe's serious and critical violations on the page, one line each. */
export async function axeViolations(page) {
  await page.addScriptTag({ path: AXE });
  const res = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ['violations'], rules: { 'label-content-name-mismatch': { enabled: true } } }),
  );
  return res.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical' || ALSO.includes(v.id))
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length} nodes: ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}${v.nodes[0]?.failureSummary ? ` — ${v.nodes[0].failureSummary.replace(/\s+/g, ' ')}` : ''})`);
}

describe('axe-core on every page', { skip: SKIP_REASON || false }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('no serious or critical violation, en and zh, light and dark', async (t) => {
    const srv = await startServer({ t, set: { 'identity.argon2_ops': '1', 'identity.argon2_mem': '1m', 'gateway.echo_delay': '1ms' } });
    // an open incident and a restricted policy: the banner, the notices and the status colours show
    const inc = await request(`${srv.adminUrl}/admin/v1/incidents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${srv.adminToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Registration limited', name_zh: '注册受限', body: 'Existing users can log in.', body_zh: '老用户可正常登录。', impact: 'minor', status: 'identified' }),
    });
    assert.ok(inc.status === 200 || inc.status === 201, inc.text());
    const problems = [];
    for (const colorScheme of ['light', 'dark']) {
      const context = await browser.newContext({ bypassCSP: true, viewport: WIDE_VIEWPORT, colorScheme });
      await registerThroughApi(context, srv);
      const page = await context.newPage();
      page.setDefaultTimeout(30000);
      // something in each list: a conversation, a key
      await page.goto(srv.url + '/chat');
      await page.locator('#model option[value="echo"]').waitFor({ state: 'attached' });
      await page.locator('#prompt').fill('hello **there**');
      await page.locator('#prompt').press('Enter');
      await page.locator('.turn.assistant[data-state="done"]').waitFor();
      await page.goto(srv.url + '/keys');
      await page.locator('#key-name').fill('laptop');
      await page.locator('#create').click();
      await page.locator('#keys-body tr').first().waitFor();
      for (const lang of ['en', 'zh']) {
        for (const p of PAGES) {
          await page.goto(`${srv.url}${p}?lang=${lang}`);
          await page.waitForLoadState('networkidle');
          const v = await axeViolations(page);
          if (v.length) {
            problems.push(`${p} (${lang}, ${colorScheme}):\n  ${v.join('\n  ')}`);
            await screenshot(page, `a11y${p === '/' ? '-home' : p.replace('/', '-')}-${lang}-${colorScheme}`);
          }
        }
      }
      await context.close();
    }
    assert.deepEqual(problems, [], `axe-core found:\n${problems.join('\n')}`);
    await srv.stop();
  });
});
