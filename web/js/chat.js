/* /chat: streaming answers read with fetch + ReadableStream from
 * /v1/chat/completions (SSE), rendered as they arrive through the safe
 * Markdown renderer; a stop button (AbortController); conversations kept
 * in localStorage per user; the model picker from /v1/models; errors shown
 * in place with a retry button. While the gateway's fair queue holds the
 * call, its SSE comments ": queue position=N" show "waiting, position N";
 * a 503 busy answer shows its Retry-After as a countdown on the button. */
'use strict';

(async () => {
  const $ = (id) => document.getElementById(id);
  const list = $('conv-list');
  const msgs = $('messages');
  const empty = $('chat-empty');
  const prompt = $('prompt');
  const sendBtn = $('send');
  const stopBtn = $('stop');
  const modelSel = $('model');
  const sidebar = $('sidebar');
  const toggle = $('toggle-sidebar');

  const me = await GH.requireLogin();
  const KEY = 'gh_chats:' + (me && me.user ? me.user.id : 'me');
  const MAX_CONVS = 50;

  /* ---- storage ---- */
  function load() {
    try {
      const s = JSON.parse(localStorage.getItem(KEY) || 'null');
      if (s && Array.isArray(s.convs)) return s;
    } catch {
      /* a damaged store starts afresh */
    }
    return { convs: [], current: null };
  }
  const state = load();
  function save() {
    state.convs.sort((a, b) => b.updated - a.updated);
    state.convs.length = Math.min(state.convs.length, MAX_CONVS);
    for (;;) {
      try {
        localStorage.setItem(KEY, JSON.stringify(state));
        return;
      } catch {
        // full: drop the oldest conversation other than the current one
        const i = state.convs.findLastIndex((c) => c.id !== state.current);
        if (i < 0) return;
        state.convs.splice(i, 1);
      }
    }
  }
  const current = () => state.convs.find((c) => c.id === state.current) || null;
  function newConv() {
    const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 8), title: '', model: modelSel.value, updated: Date.now(), messages: [] };
    state.convs.unshift(c);
    state.current = c.id;
    return c;
  }

  /* ---- models ---- */
  const models = await GH.api('GET', '/v1/models');
  const ids = models.ok && models.data && Array.isArray(models.data.data) ? models.data.data.map((m) => m.id) : [];
  for (const id of ids) modelSel.append(GH.el('option', { value: id, text: id }));
  const lastModel = localStorage.getItem('gh_model');
  if (lastModel && ids.includes(lastModel)) modelSel.value = lastModel;
  modelSel.addEventListener('change', () => {
    localStorage.setItem('gh_model', modelSel.value);
    const c = current();
    if (c) c.model = modelSel.value;
  });
  if (!ids.length) {
    GH.say(empty, models.ok ? GH.t('chat.no_models') : GH.errorText(models), 'error');
    sendBtn.disabled = true;
  }

  /* A conversation's title: its first prompt as the plain text it shows. */
  const titleOf = (text) => (GHMarkdown.plain(text) || text).slice(0, 60);

  /* ---- rendering ---- */
  function renderList() {
    list.replaceChildren();
    for (const c of state.convs) {
      if (c.title && !c.plainTitle) {
        // titles kept before they were plain text
        c.title = titleOf(c.title);
        c.plainTitle = true;
      }
      const title = c.title || GH.t('chat.untitled');
      const open = GH.el('button', {
        type: 'button',
        class: 'conv-open',
        'aria-current': c.id === state.current ? 'true' : null,
        text: title,
        on: {
          click: () => {
            if (busy) return;
            state.current = c.id;
            if (c.model && ids.includes(c.model)) modelSel.value = c.model;
            renderList();
            renderConv();
            closeSidebar();
            prompt.focus();
          },
        },
      });
      // the name is the words read out; the × is only seen
      const del = GH.el('button', {
        type: 'button',
        class: 'conv-del',
        title: GH.t('chat.delete'),
        on: {
          click: () => {
            if (busy && c.id === state.current) return;
            state.convs = state.convs.filter((x) => x !== c);
            if (state.current === c.id) state.current = state.convs[0] ? state.convs[0].id : null;
            save();
            renderList();
            renderConv();
          },
        },
      });
      del.append(
        GH.el('span', { 'aria-hidden': 'true', text: '×' }),
        GH.el('span', { class: 'visually-hidden', text: GH.t('chat.delete_label', { title }) }),
      );
      list.append(GH.el('li', null, open, del));
    }
  }

  function messageNode(m, i) {
    const body = GH.el('div', { class: 'body' });
    const node = GH.el(
      'article',
      { class: 'turn ' + (m.role === 'user' ? 'user' : 'assistant'), 'data-index': String(i) },
      GH.el('h2', { class: 'who', text: m.role === 'user' ? GH.t('chat.you') : GH.t('chat.assistant') }),
      body,
    );
    fillMessage(node, m);
    return node;
  }

  function fillMessage(node, m) {
    const body = node.querySelector('.body');
    if (m.role === 'user') body.textContent = m.content;
    else GHMarkdown.render(m.content || (m.state === 'streaming' ? GH.t('chat.thinking') : ''), body);
    node.dataset.state = m.state || 'done';
    node.querySelector('.note')?.remove();
    if (m.state === 'streaming' && !m.content && m.queuePos) {
      node.append(GH.el('p', { class: 'note queue', role: 'status', 'data-position': String(m.queuePos), text: GH.t('chat.waiting', { n: m.queuePos }) }));
    }
    if (m.state === 'stopped') node.append(GH.el('p', { class: 'note', text: GH.t('chat.stopped') }));
    if (m.state === 'error') {
      node.append(
        GH.el(
          'p',
          { class: 'note error', role: 'alert' },
          m.error || GH.t('err.network'),
          ' ',
          retryButton(m),
        ),
      );
    }
  }

  /* The retry button; after a busy answer it counts down the seconds the
   * server suggested (Retry-After). It retries the same message whenever
   * pressed. */
  function retryButton(m) {
    const btn = GH.el('button', { type: 'button', class: 'secondary retry', text: GH.t('chat.retry'), on: { click: retry } });
    const tick = () => {
      const left = Math.ceil(((m.retryAt || 0) - Date.now()) / 1000);
      btn.textContent = left > 0 ? GH.t('chat.retry_in', { n: left }) : GH.t('chat.retry');
      btn.dataset.wait = String(Math.max(0, left));
      return left > 0;
    };
    if (tick()) {
      const timer = setInterval(() => {
        if (!btn.isConnected || !tick()) clearInterval(timer);
      }, 1000);
    }
    return btn;
  }

  function renderConv() {
    const c = current();
    msgs.replaceChildren(empty);
    empty.hidden = !!(c && c.messages.length);
    if (!c) return;
    c.messages.forEach((m, i) => msgs.append(messageNode(m, i)));
    msgs.scrollTop = msgs.scrollHeight;
  }

  /* ---- sending and streaming ---- */
  let busy = false;
  let controller = null;

  function setBusy(b) {
    busy = b;
    sendBtn.hidden = b;
    stopBtn.hidden = !b;
    modelSel.disabled = b;
    if (b) stopBtn.focus();
    else if (document.activeElement === stopBtn || document.activeElement === document.body) prompt.focus();
  }

  async function send() {
    const text = prompt.value.trim();
    if (!text || busy || !ids.length) return;
    let c = current();
    if (!c) c = newConv();
    c.model = modelSel.value;
    if (!c.title) {
      c.title = titleOf(text);
      c.plainTitle = true;
    }
    c.messages.push({ role: 'user', content: text });
    prompt.value = '';
    await answer(c);
  }

  function retry() {
    const c = current();
    if (!c || busy) return;
    const last = c.messages[c.messages.length - 1];
    if (last && last.role === 'assistant') c.messages.pop();
    answer(c);
  }

  async function answer(c) {
    const history = c.messages
      .filter((m) => m.state !== 'error' && m.content)
      .map((m) => ({ role: m.role, content: m.content }));
    const m = { role: 'assistant', content: '', state: 'streaming' };
    c.messages.push(m);
    c.updated = Date.now();
    save();
    renderList();
    renderConv();
    const node = msgs.lastElementChild;
    setBusy(true);
    controller = new AbortController();

    let pending = false;
    const paint = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        const atBottom = msgs.scrollHeight - msgs.scrollTop - msgs.clientHeight < 40;
        fillMessage(node, m);
        if (atBottom) msgs.scrollTop = msgs.scrollHeight;
      });
    };
    let lastSave = Date.now();

    try {
      const res = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'text/event-stream',
          'X-CSRF-Token': GH.csrfToken(),
        },
        credentials: 'same-origin',
        body: JSON.stringify({ model: c.model, messages: history, stream: true }),
        signal: controller.signal,
      });
      if (!res.ok) {
        let data = null;
        try {
          data = await res.json();
        } catch {
          data = null;
        }
        const e = (data && data.error) || {};
        const ra = Number(res.headers.get('Retry-After')) || 0;
        if (res.status === 401) location.assign('/login?next=/chat');
        m.state = 'error';
        if (res.status === 503 && e.code === 'busy' && ra > 0) {
          m.error = GH.t('chat.busy', { n: ra });
          m.retryAt = Date.now() + ra * 1000;
          return;
        }
        m.error = GH.errorText({ error: { code: e.code || String(res.status), message: e.message || res.statusText, param: e.param }, retryAfter: ra });
        return;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buf += chunk.value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          const q = /^: ?queue position=(\d+)/.exec(line);
          if (q) {
            m.queuePos = Number(q[1]);
            paint();
            continue;
          }
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') {
            done = true;
            break;
          }
          let ev;
          try {
            ev = JSON.parse(data);
          } catch {
            continue;
          }
          if (ev.error) {
            m.state = 'error';
            m.error = GH.errorText({ error: { code: ev.error.code || 'error', message: ev.error.message || '' }, retryAfter: 0 });
            done = true;
            break;
          }
          const delta = ev.choices && ev.choices[0] && ev.choices[0].delta;
          if (delta && typeof delta.content === 'string') {
            m.content += delta.content;
            paint();
          }
        }
        if (Date.now() - lastSave > 1000) {
          lastSave = Date.now();
          save();
        }
      }
      if (done) reader.cancel().catch(() => {});
      if (m.state === 'streaming') {
        if (done) m.state = 'done';
        else {
          // the stream ended without [DONE]: say so, keep what came
          m.state = 'error';
          m.error = GH.t('err.stream_cut');
        }
      }
    } catch (e) {
      if (e && e.name === 'AbortError') m.state = 'stopped';
      else {
        m.state = 'error';
        m.error = GH.t('err.network');
      }
    } finally {
      controller = null;
      delete m.queuePos;
      c.updated = Date.now();
      save();
      fillMessage(node, m);
      setBusy(false);
      msgs.scrollTop = msgs.scrollHeight;
    }
  }

  /* ---- events ---- */
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });
  stopBtn.addEventListener('click', () => controller && controller.abort());
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (sidebar.classList.contains('open')) {
      closeSidebar();
      toggle.focus();
    } else if (controller) controller.abort();
  });
  $('new-chat').addEventListener('click', () => {
    if (busy) return;
    state.current = null;
    renderList();
    renderConv();
    closeSidebar();
    prompt.focus();
  });
  function closeSidebar() {
    sidebar.classList.remove('open');
    toggle.setAttribute('aria-expanded', 'false');
  }
  toggle.addEventListener('click', () => {
    const open = sidebar.classList.toggle('open');
    toggle.setAttribute('aria-expanded', String(open));
  });

  if (state.current && !current()) state.current = null;
  const c0 = current();
  if (c0 && c0.model && ids.includes(c0.model)) modelSel.value = c0.model;
  renderList();
  renderConv();
  prompt.focus();
})();
