/* The status page's refresh: every minute it fetches the page again and
 * swaps in what changed, and shows when it last checked. The reader can
 * turn it off (remembered in this browser). Without scripts the page is
 * complete; only the refresh is missing. */
'use strict';

(() => {
  const box = document.getElementById('refresh');
  const toggle = document.getElementById('auto-refresh');
  const checked = document.getElementById('checked');
  if (!box || !toggle || !checked) return;
  const KEY = 'gh_status_refresh';
  const EVERY_MS = 60000;
  let timer = null;

  function stamp() {
    const d = new Date();
    checked.dateTime = d.toISOString();
    // UTC, like the page's other times
    checked.textContent = d.toISOString().slice(11, 19) + ' UTC';
  }

  async function refresh() {
    try {
      const res = await fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const main = doc.querySelector('main');
      const updated = doc.getElementById('updated');
      if (!main || !updated) return;
      // keep the past incidents the reader opened
      const open = new Set([...document.querySelectorAll('details[open]')].map((d) => d.closest('article')?.id));
      for (const a of main.querySelectorAll('article')) if (open.has(a.id)) a.querySelector('details')?.setAttribute('open', '');
      document.querySelector('main').replaceWith(main);
      document.getElementById('updated').replaceWith(updated);
      stamp();
    } catch {
      /* offline for a moment: the next round tries again */
    }
  }

  function arm() {
    clearInterval(timer);
    timer = toggle.checked ? setInterval(refresh, EVERY_MS) : null;
  }

  let on = true;
  try {
    on = localStorage.getItem(KEY) !== 'off';
  } catch {
    /* no storage (a file:// copy in some browsers): on */
  }
  toggle.checked = on;
  toggle.addEventListener('change', () => {
    try {
      localStorage.setItem(KEY, toggle.checked ? 'on' : 'off');
    } catch {
      /* not remembered, still obeyed */
    }
    arm();
  });
  stamp();
  box.hidden = false;
  arm();
})();
