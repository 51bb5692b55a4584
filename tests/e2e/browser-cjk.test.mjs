// Chinese text renders as Chinese in the test browser (issue 13, item 4):
// without a CJK font Debian's Chromium draws every zh glyph as the same
// empty box, and screenshots of the zh pages prove nothing. This renders
// a zh page, then draws 中 and an unassigned code point (always the
// .notdef box) in the page's own font stack on a canvas: with a CJK font
// installed the two differ and 中 has ink.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from './lib/harness.mjs';
import { SKIP_REASON, launchBrowser, openPage, screenshot } from './lib/browser.mjs';

describe('CJK text in Chromium', { skip: SKIP_REASON || false }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('zh glyphs are drawn from a real font, not as empty boxes', async (t) => {
    const srv = await startServer({ t });
    const { page, context } = await openPage(browser, srv, '/login?lang=zh');
    assert.equal(await page.locator('html').getAttribute('lang'), 'zh');
    await screenshot(page, 'cjk-login-zh');
    const r = await page.evaluate(() => {
      const font = getComputedStyle(document.body).fontFamily;
      const draw = (ch) => {
        const c = document.createElement('canvas');
        c.width = 48;
        c.height = 48;
        const g = c.getContext('2d');
        g.font = `32px ${font}`;
        g.fillStyle = '#000';
        g.textBaseline = 'top';
        g.fillText(ch, 4, 4);
        const px = g.getImageData(0, 0, 48, 48).data;
        let ink = 0;
        let sig = '';
        for (let i = 3; i < px.length; i += 4) {
          if (px[i] > 0) ink++;
          sig += px[i] > 127 ? '1' : '0';
        }
        return { ink, sig, width: g.measureText(ch).width };
      };
      const zh = draw('中');
      const box = draw('\u{10FFFD}'); // a private-use code point no font maps: the .notdef box
      return {
        font,
        available: document.fonts.check('32px "Noto Sans CJK SC"', '中'),
        zhInk: zh.ink,
        zhWidth: zh.width,
        sameAsBox: zh.sig === box.sig,
      };
    });
    assert.ok(r.zhWidth > 0, `中 has width (${JSON.stringify(r)})`);
    assert.ok(r.zhInk > 20, `中 has ink (${JSON.stringify(r)})`);
    assert.equal(r.sameAsBox, false, `中 is drawn as the empty box: no CJK font (${JSON.stringify(r)})`);
    await context.close();
  });
});
