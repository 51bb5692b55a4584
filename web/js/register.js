/* /register: phone, SMS code with a resend countdown, password with a
 * strength hint, proof of work when the policy asks for it, and a clear
 * message for every refusal (restricted, busy with automatic retry,
 * closed, rate limited, invalid phone, wrong code). */
'use strict';

(async () => {
  const $ = (id) => document.getElementById(id);
  const form = $('reg-form');
  const sendBtn = $('send');
  const sendMsg = $('send-msg');
  const formMsg = $('form-msg');
  const submitBtn = $('submit');
  const code = $('code');
  const pw = $('password');
  const powBox = $('pow');
  const powBar = $('pow-progress');
  const powLabel = $('pow-label');

  GH.incidentBanner();
  let policy = await GH.policy();
  showPolicy(policy);
  let phone = GHPhone.setup(policy, { restrict: true });

  function showPolicy(p) {
    const n = $('policy');
    // restricted: the message stands under the region selector instead
    if (p && p.mode !== 'open' && p.mode !== 'restricted') GH.say(n, GH.policyMessage(p), p.mode === 'closed' ? 'error' : 'warn');
    else GH.say(n, '');
  }

  /* ---- password strength: a hint, the server has the last word ---- */
  const COMMON = /^(password|passw0rd|qwerty|123456|12345678|111111|abc123|iloveyou|admin|welcome|letmein|monkey|dragon|football|woaini|5201314)/i;
  function strength(s) {
    if (s.length < 8) return { score: s.length ? 0 : -1, key: 'pw.too_short' };
    if (COMMON.test(s) || /^(.)\1+$/.test(s) || /^(0123456789|1234567890|abcdefgh)/i.test(s)) return { score: 0, key: 'pw.common' };
    let classes = 0;
    for (const re of [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/]) if (re.test(s)) classes++;
    let score = (s.length >= 12 ? 2 : 1) + (classes >= 3 ? 1 : 0) + (s.length >= 16 ? 1 : 0);
    if (classes === 1 && s.length < 12) score = 1;
    score = Math.min(4, score);
    return { score, key: ['pw.weak', 'pw.weak', 'pw.fair', 'pw.good', 'pw.strong'][score] };
  }
  pw.addEventListener('input', () => {
    const s = strength(pw.value);
    $('pw-meter').value = Math.max(0, s.score);
    $('pw-meter').hidden = s.score < 0;
    $('pw-strength').textContent = s.score < 0 ? '' : GH.t(s.key);
  });

  /* ---- proof of work, solved ahead when the policy asks for it ---- */
  let pow = null; // {promise, result}
  // the policy's pow_bits, or the shield's own (an elevated attack level)
  let powNeeded = !!(policy && policy.pow_bits > 0);
  function startPow(fetched) {
    powBox.hidden = false;
    powBar.removeAttribute('value');
    powLabel.textContent = GH.t('pow.start');
    const job = { result: null };
    job.promise = GH.solvePow('register', (f) => {
      powBar.value = Math.round(f * 100);
      powLabel.textContent = f >= 1 ? GH.t('pow.done') : GH.t('pow.working', { p: Math.round(f * 100) });
    }, fetched).then(
      (res) => {
        job.result = res;
        powBox.dataset.state = 'done';
        powLabel.textContent = GH.t('pow.done');
        return res;
      },
      (err) => {
        powBox.dataset.state = 'failed';
        throw err;
      },
    );
    job.promise.catch(() => {});
    powBox.dataset.state = 'working';
    pow = job;
    return job;
  }
  /* A fresh, unexpired solution (solving now if needed), or null when the
   * policy asks for none. Each solution is used once. */
  async function takePow(force) {
    if (!force && !powNeeded && !(policy && policy.pow_bits > 0)) return null;
    if (!pow || (pow.result && pow.result.expiresAt - Date.now() < 5000)) startPow();
    const job = pow;
    let res;
    try {
      res = await job.promise;
    } catch (e) {
      pow = null;
      throw e;
    }
    pow = null;
    return { challenge: res.challenge, nonce: res.nonce };
  }
  if (powNeeded) startPow();
  else {
    // the attack level may ask for a proof the policy does not show
    GH.api('GET', '/api/pow/challenge?scope=register').then((r) => {
      if (r.ok && r.data && Number(r.data.bits) > 0 && typeof r.data.challenge === 'string' && !pow) {
        powNeeded = true;
        startPow(r.data);
      }
    });
  }

  /* ---- refusals that wait: busy (automatic retry) and rate limits ---- */
  let cancelWait = null;
  function stopWaiting() {
    if (cancelWait) cancelWait();
    cancelWait = null;
  }
  /* Shows "Registration may be busy, please retry in N s" and runs again()
   * when the time is up. */
  function busyRetry(seconds, again) {
    stopWaiting();
    cancelWait = GH.countdown(
      Math.max(1, seconds),
      (n) => GH.say(formMsg, GH.t('err.busy', { n }), 'warn'),
      () => {
        cancelWait = null;
        GH.say(formMsg, GH.t('err.busy_now'), 'warn');
        again();
      },
    );
  }

  let cancelResend = null;
  function resendCountdown(seconds) {
    if (cancelResend) cancelResend();
    sendBtn.disabled = true;
    cancelResend = GH.countdown(
      seconds,
      (n) => (sendBtn.textContent = GH.t('sms.resend_in', { n })),
      () => {
        cancelResend = null;
        sendBtn.disabled = false;
        sendBtn.textContent = GH.t('sms.resend');
      },
    );
  }

  /* Answers that mean the policy changed under us. */
  async function policyRefusal(r) {
    policy = await GH.refreshPolicy();
    showPolicy(policy);
    const keep = phone.input.value;
    phone = GHPhone.setup(policy, { restrict: true });
    phone.input.value = keep;
    GH.say(formMsg, GH.errorText(r, policy), 'error');
  }

  /* ---- send code ---- */
  function checkPhone() {
    const number = phone.number();
    if (!number) {
      GH.say(formMsg, GH.t('err.phone_required'));
      phone.input.focus();
      return null;
    }
    const refused = phone.refused();
    if (refused) {
      GH.say(formMsg, refused, 'error');
      return null;
    }
    return number;
  }

  async function sendCode(withPow) {
    const number = checkPhone();
    if (!number) return;
    stopWaiting();
    sendBtn.disabled = true;
    sendBtn.textContent = GH.t('sms.sending');
    const body = { phone: number, purpose: 'register' };
    if (withPow) body.pow = withPow;
    const r = await GH.api('POST', '/api/auth/sms-code', body);
    sendBtn.textContent = GH.t('sms.send');
    sendBtn.disabled = false;
    if (r.ok) {
      GH.say(formMsg, '');
      GH.say(sendMsg, GH.t('sms.sent', { phone: number }), 'ok');
      const ra = Number(r.data && r.data.retry_after);
      resendCountdown(Number.isFinite(ra) ? ra : 60);
      code.focus();
      return;
    }
    await refusal(r, () => sendCode(), 'sms', !!withPow);
  }
  sendBtn.addEventListener('click', () => sendCode());

  /* ---- register ---- */
  async function register(forcePow) {
    const number = checkPhone();
    if (!number) return;
    if (!/^[0-9]{6}$/.test(code.value.trim())) {
      GH.say(formMsg, GH.t('err.code_required'));
      code.focus();
      return;
    }
    if (pw.value.length < 8) {
      GH.say(formMsg, GH.t('pw.too_short'));
      pw.focus();
      return;
    }
    stopWaiting();
    submitBtn.disabled = true;
    submitBtn.textContent = GH.t('register.submitting');
    let proof = null;
    try {
      proof = await takePow(forcePow);
    } catch (e) {
      submitBtn.disabled = false;
      submitBtn.textContent = GH.t('register.submit');
      if (e.result && !e.result.ok && e.result.status) return refusal(e.result, () => register(forcePow), 'register', true);
      GH.say(formMsg, GH.t('err.pow'));
      return;
    }
    const body = { phone: number, code: code.value.trim(), password: pw.value };
    if (proof) body.pow = proof;
    const r = await GH.api('POST', '/api/auth/register', body);
    submitBtn.disabled = false;
    submitBtn.textContent = GH.t('register.submit');
    if (r.ok) {
      GH.say(formMsg, GH.t('register.done'), 'ok');
      location.assign(GH.nextPath('/chat'));
      return;
    }
    // a used solution is gone: solve the next one ahead
    if (powNeeded || (policy && policy.pow_bits > 0)) startPow();
    if (r.error.code === 'account_exists') {
      GH.say(formMsg, GH.t('err.account_exists') + ' ', 'error', GH.el('a', { href: '/login', text: GH.t('register.login_instead') }));
      return;
    }
    await refusal(r, () => register(forcePow), 'register', !!forcePow);
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    register();
  });

  /* Every refusal of sms-code and register. */
  async function refusal(r, again, scope, triedPow) {
    const c = r.error.code;
    if (r.status === 503 || c === 'busy') return busyRetry(r.retryAfter || 5, again);
    if (c === 'rate_limited') {
      stopWaiting();
      cancelWait = GH.countdown(
        Math.max(1, r.retryAfter || 1),
        (n) => GH.say(formMsg, GH.t('err.rate_limited', { n }), 'warn'),
        () => GH.say(formMsg, ''),
      );
      return;
    }
    if (c === 'registration_restricted' || c === 'registration_closed') return policyRefusal(r);
    if (c === 'pow_required' && !triedPow) {
      // the server wants a proof we did not send: solve one for this step, once
      GH.say(formMsg, '');
      if (scope === 'sms') {
        try {
          powBox.hidden = false;
          const res = await GH.solvePow('sms', (f) => {
            powBar.value = Math.round(f * 100);
            powLabel.textContent = GH.t('pow.working', { p: Math.round(f * 100) });
          });
          powLabel.textContent = GH.t('pow.done');
          return sendCode({ challenge: res.challenge, nonce: res.nonce });
        } catch {
          GH.say(formMsg, GH.t('err.pow'));
          return;
        }
      }
      return register(true);
    }
    if (c === 'invalid_code') {
      code.focus();
      code.select();
    }
    GH.say(formMsg, GH.errorText(r, policy), 'error');
  }
})();
