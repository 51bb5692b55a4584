/* /keys: create (the key shown once, with a copy button), list with last
 * use, revoke; usage per day from /api/usage. */
'use strict';

(async () => {
  const $ = (id) => document.getElementById(id);
  const msg = $('keys-msg');
  const intro = $('keys-intro');
  intro.textContent = intro.dataset.template.replace('{base}', location.origin + '/v1');

  await GH.requireLogin();
  let names = new Map();

  async function loadKeys() {
    const r = await GH.api('GET', '/api/keys');
    const body = $('keys-body');
    body.replaceChildren();
    if (!r.ok) {
      GH.say(msg, GH.errorText(r));
      return;
    }
    const keys = (r.data && r.data.data) || [];
    names = new Map(keys.map((k) => [k.id, k.name]));
    $('keys-empty').hidden = keys.length > 0;
    $('keys-table').hidden = keys.length === 0;
    for (const k of keys) {
      const revoked = !!k.revoked_at;
      const actions = GH.el('td', { class: 'actions' });
      if (revoked) actions.append(GH.el('span', { class: 'tag', text: GH.t('keys.revoked') }));
      else actions.append(revokeButton(k));
      body.append(
        GH.el(
          'tr',
          { 'data-key-id': String(k.id), class: revoked ? 'revoked' : null },
          GH.el('td', { 'data-label': GH.t('keys.col_name'), text: k.name }),
          GH.el('td', { 'data-label': GH.t('keys.col_prefix') }, GH.el('code', { text: k.prefix + '…' })),
          GH.el('td', { 'data-label': GH.t('keys.col_created'), text: GH.fmtTime(k.created_at) }),
          GH.el('td', { 'data-label': GH.t('keys.col_last_used'), text: k.last_used_at ? GH.fmtTime(k.last_used_at) : GH.t('keys.never') }),
          actions,
        ),
      );
    }
  }

  /* Revoke asks once in place: the first press arms, the second revokes. */
  function revokeButton(k) {
    const b = GH.el('button', { type: 'button', class: 'danger small', text: GH.t('keys.revoke'), 'aria-label': GH.t('keys.revoke_label', { name: k.name }) });
    b.addEventListener('click', async () => {
      if (b.dataset.armed !== '1') {
        b.dataset.armed = '1';
        GH.say(msg, GH.t('keys.revoke_confirm', { name: k.name }), 'warn');
        b.textContent = GH.t('keys.revoke') + ' ✓';
        return;
      }
      b.disabled = true;
      const r = await GH.api('DELETE', '/api/keys/' + encodeURIComponent(k.id));
      if (!r.ok && r.status !== 404) {
        b.disabled = false;
        GH.say(msg, GH.errorText(r));
        return;
      }
      GH.say(msg, '');
      await loadKeys();
    });
    return b;
  }

  $('create-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('key-name').value.trim();
    if (!name) {
      $('key-name').focus();
      return;
    }
    $('create').disabled = true;
    const r = await GH.api('POST', '/api/keys', { name });
    $('create').disabled = false;
    if (!r.ok) {
      GH.say(msg, GH.errorText(r));
      return;
    }
    GH.say(msg, '');
    $('key-name').value = '';
    $('new-key-value').value = r.data.key;
    $('new-key').hidden = false;
    $('copy').textContent = GH.t('keys.copy');
    $('new-key-value').focus();
    $('new-key-value').select();
    await loadKeys();
  });

  $('copy').addEventListener('click', async () => {
    const input = $('new-key-value');
    let ok = false;
    try {
      await navigator.clipboard.writeText(input.value);
      ok = true;
    } catch {
      input.select();
      ok = document.execCommand && document.execCommand('copy');
    }
    if (ok) $('copy').textContent = GH.t('keys.copied');
  });

  async function loadUsage() {
    const r = await GH.api('GET', '/api/usage?days=30');
    const body = $('usage-body');
    body.replaceChildren();
    const rows = r.ok && r.data && Array.isArray(r.data.data) ? r.data.data : [];
    const days = new Map();
    for (const u of rows) {
      const d = days.get(u.date) || { requests: 0, tokens: 0 };
      d.requests += u.requests || 0;
      d.tokens += u.total_tokens || 0;
      days.set(u.date, d);
    }
    const sorted = [...days.entries()].sort((a, b) => (a[0] < b[0] ? 1 : -1));
    const max = Math.max(1, ...sorted.map(([, d]) => d.tokens));
    $('usage-empty').hidden = sorted.length > 0;
    $('usage-table').hidden = sorted.length === 0;
    if (!r.ok) GH.say($('usage-empty'), GH.errorText(r));
    for (const [date, d] of sorted) {
      const bar = GH.el('meter', { min: '0', max: String(max), value: String(d.tokens), 'aria-hidden': 'true' });
      body.append(
        GH.el(
          'tr',
          null,
          GH.el('td', { 'data-label': GH.t('usage.col_date'), text: date }),
          GH.el('td', { 'data-label': GH.t('usage.col_requests'), class: 'num', text: d.requests.toLocaleString() }),
          GH.el('td', { 'data-label': GH.t('usage.col_tokens'), class: 'num' }, bar, ' ', d.tokens.toLocaleString()),
        ),
      );
    }
  }

  await Promise.all([loadKeys(), loadUsage()]);
})();
