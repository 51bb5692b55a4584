/* /reset-password: phone, SMS code (purpose reset), new password, and the
 * choice to revoke every API key too; a proof of work when the server asks
 * for one. A reset signs out every session, so the page ends with a link
 * to /login. */
'use strict';

(async () => {
  const $ = (id) => document.getElementById(id);
  const form = $('reset-form');
  const formMsg = $('form-msg');
  const sendBtn = $('send');
  const submitBtn = $('submit');
  const code = $('code');
  const pw = $('password');

  GH.incidentBanner();
  const phone = GHPhone.setup(await GH.policy(), { restrict: false });
  const proof = GH.powBox($('pow'), formMsg);

  let cancelWait = null;
  function wait(seconds, key, again) {
    if (cancelWait) cancelWait();
    cancelWait = GH.sayCountdown(formMsg, seconds, key, again);
  }

  /* Every refusal; run(pow) repeats the step, with a proof of scope when
   * the server asked for one (once). */
  async function refusal(r, run, scope, triedPow) {
    const c = r.error.code;
    if (r.status === 503 || c === 'busy') return wait(r.retryAfter || 5, 'err.busy_service', () => run());
    if (c === 'rate_limited') return wait(r.retryAfter || 1, 'err.rate_limited', null);
    if (c === 'pow_required' && !triedPow) {
      const p = await proof(scope);
      return p && run(p);
    }
    if (c === 'invalid_code') {
      code.focus();
      code.select();
    }
    GH.say(formMsg, GH.errorText(r), 'error');
  }

  async function sendCode(pow) {
    const number = phone.number();
    if (!number) {
      phone.input.focus();
      return GH.say(formMsg, GH.t('err.phone_required'));
    }
    sendBtn.disabled = true;
    sendBtn.textContent = GH.t('sms.sending');
    const body = { phone: number, purpose: 'reset' };
    if (pow) body.pow = pow;
    const r = await GH.api('POST', '/api/auth/sms-code', body);
    sendBtn.disabled = false;
    sendBtn.textContent = GH.t('sms.send');
    if (!r.ok) return refusal(r, sendCode, 'sms', !!pow);
    GH.say(formMsg, '');
    GH.say($('send-msg'), GH.t('sms.sent', { phone: number }), 'ok');
    const ra = Number(r.data && r.data.retry_after);
    sendBtn.disabled = true;
    GH.countdown(
      Number.isFinite(ra) ? ra : 60,
      (n) => (sendBtn.textContent = GH.t('sms.resend_in', { n })),
      () => {
        sendBtn.disabled = false;
        sendBtn.textContent = GH.t('sms.resend');
      },
    );
    code.focus();
  }
  sendBtn.addEventListener('click', () => sendCode());

  async function reset(pow) {
    const number = phone.number();
    if (!number) return GH.say(formMsg, GH.t('err.phone_required'));
    if (!/^[0-9]{6}$/.test(code.value.trim())) {
      code.focus();
      return GH.say(formMsg, GH.t('err.code_required'));
    }
    if (pw.value.length < 8) {
      pw.focus();
      return GH.say(formMsg, GH.t('pw.too_short'));
    }
    const body = { phone: number, code: code.value.trim(), password: pw.value, revoke_keys: $('revoke-keys').checked };
    if (pow) body.pow = pow;
    submitBtn.disabled = true;
    submitBtn.textContent = GH.t('reset.submitting');
    const r = await GH.api('POST', '/api/auth/password-reset', body);
    submitBtn.disabled = false;
    submitBtn.textContent = GH.t('reset.submit');
    if (!r.ok) return refusal(r, reset, 'login', !!pow);
    const n = r.data && Number.isFinite(Number(r.data.keys_revoked)) ? Number(r.data.keys_revoked) : -1;
    pw.value = '';
    code.value = '';
    GH.say(
      formMsg,
      GH.t(n >= 0 ? 'reset.done_keys' : 'reset.done', { n }) + ' ',
      'ok',
      GH.el('a', { href: '/login', id: 'reset-login', text: GH.t('reset.login') }),
    );
    $('reset-login').focus();
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (cancelWait) cancelWait();
    reset();
  });
})();
