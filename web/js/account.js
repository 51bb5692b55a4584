/* /account: who am I, export my data, log out, delete my account. */
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
