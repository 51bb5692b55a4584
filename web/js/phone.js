/* The calling-code selector and phone field of /register and /login.
 *
 *   const ph = GHPhone.setup(policy, {restrict: true});
 *   ph.number()      // "+8613800138000" (or the typed +…, ＋… or 00… number), '' if empty
 *   ph.refused()     // the policy message when the number's region cannot register now, else ''
 *
 * With restrict, regions the policy allows come first; the others are
 * greyed (disabled) and the policy's message is shown under the selector.
 * Without, a restricted policy still picks the first region (so that a
 * Chinese number signs in from an English browser). */
'use strict';

const GHPhone = (() => {
  // [ISO region, calling code, English name, Chinese name]
  const REGIONS = [
    ['CN', '86', 'China mainland', '中国大陆'],
    ['HK', '852', 'Hong Kong', '中国香港'],
    ['MO', '853', 'Macao', '中国澳门'],
    ['TW', '886', 'Taiwan', '中国台湾'],
    ['US', '1', 'United States', '美国'],
    ['CA', '1', 'Canada', '加拿大'],
    ['GB', '44', 'United Kingdom', '英国'],
    ['DE', '49', 'Germany', '德国'],
    ['FR', '33', 'France', '法国'],
    ['JP', '81', 'Japan', '日本'],
    ['KR', '82', 'South Korea', '韩国'],
    ['SG', '65', 'Singapore', '新加坡'],
    ['MY', '60', 'Malaysia', '马来西亚'],
    ['TH', '66', 'Thailand', '泰国'],
    ['VN', '84', 'Vietnam', '越南'],
    ['PH', '63', 'Philippines', '菲律宾'],
    ['ID', '62', 'Indonesia', '印度尼西亚'],
    ['IN', '91', 'India', '印度'],
    ['PK', '92', 'Pakistan', '巴基斯坦'],
    ['BD', '880', 'Bangladesh', '孟加拉国'],
    ['AU', '61', 'Australia', '澳大利亚'],
    ['NZ', '64', 'New Zealand', '新西兰'],
    ['RU', '7', 'Russia', '俄罗斯'],
    ['UA', '380', 'Ukraine', '乌克兰'],
    ['PL', '48', 'Poland', '波兰'],
    ['NL', '31', 'Netherlands', '荷兰'],
    ['ES', '34', 'Spain', '西班牙'],
    ['IT', '39', 'Italy', '意大利'],
    ['SE', '46', 'Sweden', '瑞典'],
    ['CH', '41', 'Switzerland', '瑞士'],
    ['TR', '90', 'Türkiye', '土耳其'],
    ['IL', '972', 'Israel', '以色列'],
    ['AE', '971', 'United Arab Emirates', '阿联酋'],
    ['SA', '966', 'Saudi Arabia', '沙特阿拉伯'],
    ['EG', '20', 'Egypt', '埃及'],
    ['NG', '234', 'Nigeria', '尼日利亚'],
    ['ZA', '27', 'South Africa', '南非'],
    ['BR', '55', 'Brazil', '巴西'],
    ['MX', '52', 'Mexico', '墨西哥'],
    ['AR', '54', 'Argentina', '阿根廷'],
  ];
  const byIso = new Map(REGIONS.map((r) => [r[0], r]));

  /* A number written with its calling code, whatever the region picker
   * says: "+86 138…", the full-width "＋86…" of a Chinese keyboard, or
   * "0086…"; as "+86…", or null for a national number. */
  function international(value) {
    const v = value.trim().replace(/^＋/, '+');
    if (v.startsWith('+')) return v;
    return /^00[1-9]/.test(v) ? '+' + v.slice(2) : null;
  }

  function setup(policy, { restrict = false } = {}) {
    const sel = document.getElementById('cc');
    const input = document.getElementById('phone');
    const prefix = document.getElementById('cc-prefix');
    const hint = document.getElementById('cc-hint');
    const zh = GH.lang === 'zh';
    const limited = restrict && policy && policy.mode === 'restricted';
    const allowed = new Set(limited ? policy.allowed_regions || [] : REGIONS.map((r) => r[0]));
    const msg = limited ? GH.policyMessage(policy) : '';
    const label = (r) => `${zh ? r[3] : r[2]} +${r[1]}`;

    sel.replaceChildren();
    if (limited) {
      const ok = GH.el('optgroup', { label: GH.t('phone.allowed_group') });
      const no = GH.el('optgroup', { label: GH.t('phone.other_group') });
      for (const iso of policy.allowed_regions || []) {
        const r = byIso.get(iso);
        if (r) ok.append(GH.el('option', { value: r[0], text: label(r) }));
      }
      for (const r of REGIONS) {
        if (allowed.has(r[0])) continue;
        no.append(
          GH.el('option', { value: r[0], disabled: true, title: msg, text: `${label(r)} — ${GH.t('phone.unavailable')}` }),
        );
      }
      sel.append(ok, no);
      GH.say(hint, msg, 'warn');
    } else {
      for (const r of REGIONS) sel.append(GH.el('option', { value: r[0], text: label(r) }));
      GH.say(hint, '');
    }
    // a sensible first choice: while the policy restricts registration,
    // its first region (on every page: that is who signs up and signs in
    // now), else by language
    const regions = policy && policy.mode === 'restricted' ? policy.allowed_regions || [] : [];
    const first = regions.find((iso) => byIso.has(iso)) || (zh ? 'CN' : 'US');
    const remembered = localStorage.getItem('gh_region');
    sel.value = remembered && allowed.has(remembered) && byIso.has(remembered) ? remembered : first || 'CN';
    const sync = () => {
      const r = byIso.get(sel.value);
      prefix.textContent = r ? '+' + r[1] : '+';
      prefix.hidden = international(input.value) !== null;
    };
    sel.addEventListener('change', () => {
      localStorage.setItem('gh_region', sel.value);
      sync();
    });
    input.addEventListener('input', sync);
    sync();

    function number() {
      const raw = input.value.trim();
      if (!raw) return '';
      const full = international(raw);
      if (full !== null) return full;
      const r = byIso.get(sel.value);
      return '+' + (r ? r[1] : '') + raw.replace(/^0+/, '');
    }

    /* The policy message if this number clearly cannot register now. */
    function refused() {
      if (!limited) return '';
      const full = international(input.value);
      if (full === null) return allowed.has(sel.value) ? '' : msg;
      const digits = full.replace(/[^0-9]/g, '');
      const codes = [];
      for (const iso of allowed) {
        const r = byIso.get(iso);
        if (!r) return ''; // an allowed region we cannot map: let the server decide
        codes.push(r[1]);
      }
      return codes.some((c) => digits.startsWith(c)) ? '' : msg;
    }

    return { number, refused, input, select: sel };
  }

  return { setup, REGIONS };
})();
