/* /login: by password or by SMS code; the incident banner. */
'use strict';

(async () => {
  const $ = (id) => document.getElementById(id);
  const form = $('login-form');
  const formMsg = $('form-msg');
  const submitBtn = $('submit');
  const sendBtn = $('send');
  const code = $('code');
  const pw = $('password');

  GH.incidentBanner();
  const phone = GHPhone.setup(await GH.policy(), { restrict: false });

  const mode = () => form.querySelector('input[name=mode]:checked').value;
  function showMode() {
    const byCode = mode() === 'code';
    $('pw-field').hidden = byCode;
    $('code-field').hidden = !byCode;
    GH.say(formMsg, '');
  }
  for (const r of form.querySelectorAll('input[name=mode]')) r.addEventListener('change', showMode);
  showMode();

  let cancelWait = null;
  function wait(seconds, key, again) {
    if (cancelWait) cancelWait();
    cancelWait = GH.sayCountdown(formMsg, seconds, key, again);
  }

  function refusal(r, again, retryPow) {
    const c = r.error.code;
    if (r.status === 503 || c === 'busy') return wait(r.retryAfter || 5, 'err.busy_service', again);
    if (c === 'rate_limited') return wait(r.retryAfter || 1, 'err.rate_limited', null);
    if (c === 'pow_required' && retryPow) return retryPow();
    if (c === 'unauthorized') return GH.say(formMsg, GH.t(mode() === 'code' ? 'err.wrong_login_code' : 'err.wrong_login'));
    GH.say(formMsg, GH.errorText(r, null));
  }

  async function proof(scope) {
    try {
      const res = await GH.solvePow(scope);
      return { challenge: res.challenge, nonce: res.nonce };
    } catch {
      GH.say(formMsg, GH.t('err.pow'));
      return null;
    }
  }

  async function sendCode(pow) {
    const number = phone.number();
    if (!number) return GH.say(formMsg, GH.t('err.phone_required'));
    sendBtn.disabled = true;
    sendBtn.textContent = GH.t('sms.sending');
    const body = { phone: number, purpose: 'login' };
    if (pow) body.pow = pow;
    const r = await GH.api('POST', '/api/auth/sms-code', body);
    sendBtn.disabled = false;
    sendBtn.textContent = GH.t('sms.send');
    if (r.ok) {
      GH.say(formMsg, '');
      GH.say($('send-msg'), GH.t('sms.sent', { phone: number }), 'ok');
      sendBtn.disabled = true;
      GH.countdown(
        Number.isFinite(Number(r.data && r.data.retry_after)) ? Number(r.data.retry_after) : 60,
        (n) => (sendBtn.textContent = GH.t('sms.resend_in', { n })),
        () => {
          sendBtn.disabled = false;
          sendBtn.textContent = GH.t('sms.resend');
        },
      );
      code.focus();
      return;
    }
    refusal(r, () => sendCode(), pow ? null : async () => {
      const p = await proof('sms');
      if (p) sendCode(p);
    });
  }
  sendBtn.addEventListener('click', () => sendCode());

  async function login(pow) {
    const number = phone.number();
    if (!number) return GH.say(formMsg, GH.t('err.phone_required'));
    const body = { phone: number };
    if (mode() === 'code') {
      if (!/^[0-9]{6}$/.test(code.value.trim())) return GH.say(formMsg, GH.t('err.code_required'));
      body.code = code.value.trim();
    } else {
      if (!pw.value) {
        pw.focus();
        return;
      }
      body.password = pw.value;
    }
    if (pow) body.pow = pow;
    submitBtn.disabled = true;
    submitBtn.textContent = GH.t('login.submitting');
    const r = await GH.api('POST', '/api/auth/login', body);
    submitBtn.disabled = false;
    submitBtn.textContent = GH.t('login.submit');
    if (r.ok) {
      GH.say(formMsg, GH.t('login.done'), 'ok');
      location.assign(GH.nextPath('/chat'));
      return;
    }
    refusal(r, () => login(), pow ? null : async () => {
      const p = await proof('login');
      if (p) login(p);
    });
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (cancelWait) cancelWait();
    login();
  });
})();
