/* gatehouse pages: what every page shares.
 *
 * GH.t(key, vars)     the page language's string (web/i18n/*.json), {name} filled in
 * GH.api(method, path, body)  fetch with JSON and the CSRF header; never throws:
 *                     {ok, status, data, error: {code, message, param}, retryAfter}
 * GH.el(tag, attrs, ...children)  builds DOM; text is always text, never HTML
 * GH.say(node, text, kind)  shows a message (kind: 'error', 'ok', 'info'); '' hides
 * GH.countdown(s, tick, done)  calls tick(n) each second, then done(); returns a cancel function
 * GH.sayCountdown(node, s, key, again)  a warning counting down in node, then again()
 * GH.policy()          GET /api/policy (cached for the page's life)
 * GH.requireLogin()    GET /api/me, or off to /login?next=…
 * GH.powBox(box, msg)  proof(scope) solving a proof of work with its progress in box
 *
 * No framework and no innerHTML: untrusted text only ever goes through
 * textContent. */
'use strict';

const GH = (() => {
  const strings = JSON.parse(document.getElementById('gh-i18n').textContent);
  const lang = document.documentElement.lang === 'zh' ? 'zh' : 'en';

  function t(key, vars) {
    let s = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m));
    return s;
  }

  function cookie(name) {
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
    }
    return '';
  }

  /* The CSRF cookie: __Host-gh_csrf where cookies are Secure (https),
   * gh_csrf on a plain-http development server. */
  const csrfToken = () => cookie('__Host-gh_csrf') || cookie('gh_csrf');
  const loggedIn = () => csrfToken() !== '';

  function retryAfterOf(res) {
    const h = res.headers.get('Retry-After');
    if (!h) return 0;
    const n = Number(h);
    if (Number.isFinite(n)) return Math.max(0, Math.ceil(n));
    const d = Date.parse(h);
    return Number.isFinite(d) ? Math.max(0, Math.ceil((d - Date.now()) / 1000)) : 0;
  }

  /* JSON in, JSON out; never throws. */
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD') {
      const csrf = csrfToken();
      if (csrf) headers['X-CSRF-Token'] = csrf;
    }
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
        signal: opts.signal,
      });
    } catch (e) {
      if (e && e.name === 'AbortError') return { ok: false, status: 0, aborted: true, error: { code: 'aborted', message: '' } };
      return { ok: false, status: 0, error: { code: 'network', message: t('err.network') } };
    }
    let data = null;
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    const out = { ok: res.ok, status: res.status, data, retryAfter: retryAfterOf(res), res };
    if (!res.ok) {
      const e = (data && data.error) || {};
      out.error = {
        code: e.code || String(res.status),
        message: e.message || res.statusText || String(res.status),
        param: e.param || null,
      };
    }
    return out;
  }

  /* DOM builder. attrs: {class, text, on: {click: fn}, …attributes}. */
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') n.textContent = v;
      else if (k === 'class') n.className = v;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) n.addEventListener(ev, fn);
      else n.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function say(node, text, kind = 'error', ...extra) {
    if (!node) return;
    node.replaceChildren();
    if (!text && !extra.length) {
      node.hidden = true;
      return;
    }
    node.append(text, ...extra);
    node.dataset.kind = kind;
    node.hidden = false;
  }

  function countdown(seconds, tick, done) {
    let n = Math.max(0, Math.ceil(seconds));
    let timer = null;
    const step = () => {
      if (n <= 0) {
        timer = null;
        done && done();
        return;
      }
      tick && tick(n);
      n -= 1;
      timer = setTimeout(step, 1000);
    };
    step();
    return () => {
      if (timer) clearTimeout(timer);
      timer = null;
    };
  }

  /* Shows t(key, {n}) in node as a warning counting down from seconds
   * (at least 1), then hides it and runs again(); returns the cancel. */
  function sayCountdown(node, seconds, key, again) {
    return countdown(
      Math.max(1, seconds),
      (n) => say(node, t(key, { n }), 'warn'),
      () => {
        say(node, '');
        if (again) again();
      },
    );
  }

  let policyP = null;
  function policy() {
    if (!policyP) {
      policyP = api('GET', '/api/policy').then((r) => (r.ok && r.data ? r.data : null));
    }
    return policyP;
  }
  function refreshPolicy() {
    policyP = null;
    return policy();
  }
  const policyMessage = (p) => (p && p.message ? p.message[lang] || p.message.en || '' : '');

  async function requireLogin() {
    const r = await api('GET', '/api/me');
    if (r.status === 401) {
      location.assign('/login?next=' + encodeURIComponent(location.pathname));
      return new Promise(() => {}); // never resolves: we are leaving
    }
    return r.ok ? r.data : null;
  }

  function fmtTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', {
      year: 'numeric',
      month: 'short',
      day: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
    });
  }

  /* The user-facing text of an API error (registration messages come from
   * the policy, in the page's language). */
  function errorText(r, pol) {
    const e = r.error || {};
    switch (e.code) {
      case 'network':
        return t('err.network');
      case 'invalid_phone':
        return t('err.invalid_phone');
      case 'invalid_code':
        return t('err.invalid_code');
      case 'rate_limited':
        return t('err.rate_limited', { n: r.retryAfter || 1 });
      case 'registration_restricted':
        return policyMessage(pol) || (lang === 'en' ? e.message : t('err.restricted'));
      case 'registration_closed':
        return policyMessage(pol) || (lang === 'en' ? e.message : t('err.closed'));
      case 'account_exists':
        return t('err.account_exists');
      case 'unauthorized':
        return t('err.unauthorized');
      case 'insufficient_balance':
        return t('err.insufficient_balance');
      case 'model_not_found':
        return t('err.model_not_found');
      case 'pow_required':
        return t('err.pow');
      case 'wrong_password':
        return t('err.wrong_password');
      case 'invalid_parameter':
        if (e.param === 'password') return t('err.password', { why: e.message.replace(/^password: /, '') });
        return t('err.generic', { message: e.message });
      default:
        return t('err.generic', { message: e.message || e.code || '?' });
    }
  }

  /* The incident banner: the newest unresolved incident of the status page. */
  async function incidentBanner() {
    const node = document.getElementById('banner');
    if (!node) return;
    // under pressure an anonymous request may be refused for a moment
    // (429/503 with Retry-After): the notice matters most then, so it is
    // asked again, a few times, after the delay the server names (capped)
    let r = await api('GET', '/api/v2/incidents/unresolved.json');
    for (let tries = 0; !r.ok && (r.status === 429 || r.status === 503 || r.status === 0) && tries < 4; tries++) {
      const wait = Math.min(Math.max(Number(r.retryAfter) || 1, 1), 5);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      r = await api('GET', '/api/v2/incidents/unresolved.json');
    }
    const list = r.ok && r.data && Array.isArray(r.data.incidents) ? r.data.incidents : [];
    if (!list.length) return;
    const inc = list[0];
    const ups = Array.isArray(inc.incident_updates) ? inc.incident_updates : [];
    const up = ups[0] || {};
    const name = (lang === 'zh' && inc.name_zh) || inc.name || t('notice.incident');
    const body = (lang === 'zh' && up.body_zh) || up.body || '';
    node.replaceChildren(
      el('strong', { text: name }),
      body ? ' ' + body + ' ' : ' ',
      el('a', { href: '/status?lang=' + lang, text: t('notice.status_link') }),
    );
    node.dataset.impact = inc.impact || 'minor';
    node.hidden = false;
  }

  /* Navigation: members see chat/keys/account, guests register/login. */
  function setupNav() {
    document.body.classList.add(loggedIn() ? 'is-member' : 'is-guest');
    const page = document.body.dataset.page;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === page) a.setAttribute('aria-current', 'page');
    }
    // the language switch keeps the rest of the query (?next=…)
    const sw = document.getElementById('lang-switch');
    if (sw && location.search) {
      const q = new URLSearchParams(location.search);
      q.set('lang', sw.getAttribute('hreflang'));
      sw.href = '?' + q.toString();
    }
  }

  /* Where to go after logging in: ?next= if it is a local path. */
  function nextPath(fallback = '/chat') {
    const n = new URLSearchParams(location.search).get('next') || '';
    return /^\/[A-Za-z0-9/_-]*$/.test(n) && !n.startsWith('//') ? n : fallback;
  }

  /* Proof of work in the Web Worker (web/js/pow-worker.js): resolves to
   * {challenge, nonce, expiresAt}; progress(fraction 0..1) on the way.
   * fetched: a challenge already fetched ({challenge, bits, expires_at}). */
  function solvePow(scope, progress, fetched) {
    return (async () => {
      let ch = fetched;
      if (!ch) {
        const r = await api('GET', '/api/pow/challenge?scope=' + encodeURIComponent(scope));
        if (!r.ok || !r.data || typeof r.data.challenge !== 'string') {
          const err = new Error('challenge');
          err.result = r;
          throw err;
        }
        ch = r.data;
      }
      const { challenge, bits } = ch;
      const expiresAt = Number(ch.expires_at) * 1000 || Date.now() + 60000;
      if (!bits) return { challenge, nonce: '0', expiresAt };
      const url = document.body.dataset.powWorker || '/js/pow-worker.js';
      const expected = Math.pow(2, bits);
      return new Promise((resolve, reject) => {
        const w = new Worker(url);
        w.onmessage = (e) => {
          const m = e.data || {};
          if (m.nonce !== undefined) {
            w.terminate();
            progress && progress(1);
            resolve({ challenge, nonce: String(m.nonce), expiresAt });
          } else if (m.progress !== undefined) {
            // the chance of having found it by now: a smooth bar that never lies about 100 %
            progress && progress(Math.min(0.99, 1 - Math.exp(-m.progress / expected)));
          } else if (m.error) {
            w.terminate();
            reject(new Error(m.error));
          }
        };
        w.onerror = (e) => {
          w.terminate();
          reject(new Error(e.message || 'worker'));
        };
        w.postMessage({ challenge, bits });
      });
    })();
  }

  /* The proof-of-work box of a form (web/pages/_pow.html): returns
   * proof(scope), which solves one with its progress in box and resolves
   * to {challenge, nonce}, or to null after saying why in msg. */
  function powBox(box, msg) {
    const bar = box.querySelector('progress');
    const label = box.querySelector('label');
    const show = (f) => {
      bar.value = Math.round(f * 100);
      label.textContent = f >= 1 ? t('pow.done') : t('pow.working', { p: Math.round(f * 100) });
    };
    return async (scope) => {
      box.hidden = false;
      box.dataset.state = 'working';
      bar.removeAttribute('value');
      label.textContent = t('pow.start');
      try {
        const res = await solvePow(scope, show);
        box.dataset.state = 'done';
        show(1);
        return { challenge: res.challenge, nonce: res.nonce };
      } catch {
        box.dataset.state = 'failed';
        say(msg, t('err.pow'));
        return null;
      }
    };
  }

  document.addEventListener('DOMContentLoaded', setupNav);

  return {
    lang,
    t,
    cookie,
    csrfToken,
    loggedIn,
    api,
    el,
    say,
    countdown,
    sayCountdown,
    policy,
    refreshPolicy,
    policyMessage,
    requireLogin,
    fmtTime,
    errorText,
    incidentBanner,
    nextPath,
    solvePow,
    powBox,
  };
})();
