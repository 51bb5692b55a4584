/* /account: who am I, change my password, export my data, log out,
 * delete my account. */
'use strict';

(async () => {
  const $ = (id) => document.getElementById(id);
  const msg = $('account-msg');
  const me = await GH.requireLogin();
  const u = (me && me.user) || {};
  $('me-phone').textContent = u.phone || '';
  $('me-region').textContent = u.region ? `${u.region} (+${u.calling_code})` : '';
  $('me-created').textContent = GH.fmtTime(u.created_at);
  $('me-last').textContent = u.last_login_at ? GH.fmtTime(u.last_login_at) : '';

  function forget() {
    // this browser's conversations of this account
    if (u.id !== undefined) localStorage.removeItem('gh_chats:' + u.id);
  }

  /* the password: the current one, then the new one; the other
   * sessions end (and, when ticked, every API key) */
  $('pw-username').value = u.phone || '';
  $('pw-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const cur = $('cur-password');
    const next = $('new-password');
    const pwMsg = $('pw-msg');
    if (!cur.value) return cur.focus();
    if (next.value.length < 8) {
      next.focus();
      return GH.say(pwMsg, GH.t('pw.too_short'));
    }
    const submit = $('pw-submit');
    submit.disabled = true;
    submit.textContent = GH.t('account.changing');
    const revoke = $('pw-revoke-keys').checked;
    const r = await GH.api('POST', '/api/me/password', { current_password: cur.value, password: next.value, revoke_keys: revoke });
    submit.disabled = false;
    submit.textContent = GH.t('account.change_password');
    if (!r.ok) {
      if (r.error.code === 'wrong_password') {
        cur.focus();
        cur.select();
      }
      return GH.say(pwMsg, r.status === 503 ? GH.t('err.busy_service', { n: r.retryAfter || 5 }) : GH.errorText(r));
    }
    cur.value = next.value = '';
    const n = Number(r.data && r.data.sessions_ended) || 0;
    const k = Number(r.data && r.data.keys_revoked) || 0;
    GH.say(pwMsg, GH.t(revoke ? 'account.changed_keys' : 'account.changed', { n, k }), 'ok');
  });

  $('logout').addEventListener('click', async () => {
    $('logout').disabled = true;
    const r = await GH.api('POST', '/api/auth/logout');
    if (!r.ok && r.status !== 401) {
      $('logout').disabled = false;
      GH.say(msg, GH.errorText(r));
      return;
    }
    location.assign('/');
  });

  $('delete').addEventListener('click', () => {
    $('delete').hidden = true;
    $('delete-confirm').hidden = false;
    $('delete-no').focus();
  });
  $('delete-no').addEventListener('click', () => {
    $('delete-confirm').hidden = true;
    $('delete').hidden = false;
    $('delete').focus();
  });
  $('delete-yes').addEventListener('click', async () => {
    $('delete-yes').disabled = true;
    const r = await GH.api('DELETE', '/api/me');
    if (!r.ok) {
      $('delete-yes').disabled = false;
      GH.say(msg, GH.errorText(r));
      return;
    }
    forget();
    location.assign('/');
  });
})();
