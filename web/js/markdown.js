/* A small, safe Markdown renderer for chat answers.
 *
 *   GHMarkdown.render(text, node)   replaces node's children
 *   GHMarkdown.plain(text)          the text it shows, on one line (titles)
 *
 * Safety by construction: the text is never parsed as HTML. Every piece
 * becomes a text node; only a whitelist of elements is ever created
 * (p, br, strong, em, del, code, pre, h3–h6, ul, ol, li, blockquote, hr,
 * a), and links only with http:, https: or mailto: URLs. Raw HTML in the
 * input shows as the text it is. An unclosed code fence (an answer still
 * streaming) renders as code so far. */
'use strict';

const GHMarkdown = (() => {
  const h = (tag, attrs) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    return n;
  };

  function safeUrl(u) {
    try {
      const url = new URL(u);
      return ['http:', 'https:', 'mailto:'].includes(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  }

  function link(href, text) {
    const a = h('a', { href, rel: 'noopener noreferrer nofollow', target: '_blank' });
    a.textContent = text;
    return a;
  }

  // inline patterns, in priority order for matches at the same position
  const INLINE = [
    { re: /`([^`\n]+)`/, make: (m) => Object.assign(h('code'), { textContent: m[1] }) },
    {
      re: /\[([^\]\n]{1,500})\]\(([^\s()]{1,2000})\)/,
      make: (m) => {
        const href = safeUrl(m[2]);
        if (!href) return document.createTextNode(m[0]);
        const a = link(href, '');
        inline(m[1], a);
        return a;
      },
    },
    {
      re: /\bhttps?:\/\/[^\s<>()"'`]+[^\s<>()"'`.,;:!?]/,
      make: (m) => {
        const href = safeUrl(m[0]);
        return href ? link(href, m[0]) : document.createTextNode(m[0]);
      },
    },
    { re: /\*\*(?=\S)([\s\S]*?\S)\*\*/, tag: 'strong' },
    { re: /__(?=\S)([\s\S]*?\S)__/, tag: 'strong' },
    { re: /~~(?=\S)([\s\S]*?\S)~~/, tag: 'del' },
    { re: /\*(?=[^\s*])([^*\n]*?[^\s*])\*/, tag: 'em' },
    { re: /(?<![A-Za-z0-9_])_(?=[^\s_])([^_\n]*?[^\s_])_(?![A-Za-z0-9_])/, tag: 'em' },
  ];

  function inline(text, parent, depth = 0) {
    let rest = text;
    while (rest) {
      let best = null;
      if (depth < 8) {
        for (const p of INLINE) {
          const m = p.re.exec(rest);
          if (m && (!best || m.index < best.m.index)) best = { p, m };
        }
      }
      if (!best) {
        parent.append(document.createTextNode(rest));
        return;
      }
      const { p, m } = best;
      if (m.index) parent.append(document.createTextNode(rest.slice(0, m.index)));
      if (p.tag) {
        const n = h(p.tag);
        inline(m[1], n, depth + 1);
        parent.append(n);
      } else {
        parent.append(p.make(m));
      }
      rest = rest.slice(m.index + m[0].length);
    }
  }

  // inline text with single newlines as line breaks
  function lines(textLines, parent) {
    textLines.forEach((l, i) => {
      if (i) parent.append(h('br'));
      inline(l, parent);
    });
  }

  const FENCE = /^\s{0,3}(```+|~~~+)\s*([A-Za-z0-9_+.#-]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const HR = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const UL = /^(\s*)[-*+]\s+(.*)$/;
  const OL = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;

  function blocks(src, parent, depth = 0) {
    const L = src.replace(/\r\n?/g, '\n').split('\n');
    let i = 0;
    while (i < L.length) {
      const line = L[i];
      let m;
      if (!line.trim()) {
        i++;
        continue;
      }
      if ((m = FENCE.exec(line))) {
        const fence = m[1];
        const body = [];
        i++;
        while (i < L.length && !(L[i].trim().startsWith(fence[0].repeat(fence.length)) && !L[i].trim().replace(/[`~]/g, ''))) body.push(L[i++]);
        i++; // the closing fence (or the end)
        const pre = h('pre');
        const code = h('code');
        if (m[2]) code.className = 'lang-' + m[2];
        code.textContent = body.join('\n');
        pre.append(code);
        parent.append(pre);
        continue;
      }
      if ((m = HEADING.exec(line))) {
        const n = h('h' + Math.min(6, m[1].length + 2));
        inline(m[2], n);
        parent.append(n);
        i++;
        continue;
      }
      if (HR.test(line)) {
        parent.append(h('hr'));
        i++;
        continue;
      }
      if (QUOTE.test(line) && depth < 4) {
        const body = [];
        while (i < L.length && (m = QUOTE.exec(L[i]))) {
          body.push(m[1]);
          i++;
        }
        const q = h('blockquote');
        blocks(body.join('\n'), q, depth + 1);
        parent.append(q);
        continue;
      }
      if (UL.test(line) || OL.test(line)) {
        const ordered = !UL.test(line);
        const list = h(ordered ? 'ol' : 'ul');
        if (ordered) {
          const start = Number(OL.exec(line)[2]);
          if (start !== 1) list.setAttribute('start', String(start));
        }
        let item = null;
        while (i < L.length) {
          const l = L[i];
          const mu = UL.exec(l);
          const mo = OL.exec(l);
          const mi = ordered ? mo : mu;
          if (mi) {
            item = h('li');
            inline(ordered ? mo[3] : mu[2], item);
            list.append(item);
            i++;
          } else if (l.trim() && /^\s{2,}/.test(l) && item) {
            // a continuation line of the item
            item.append(h('br'));
            inline(l.trim(), item);
            i++;
          } else {
            break;
          }
        }
        parent.append(list);
        continue;
      }
      // a paragraph: until a blank line or another block
      const para = [];
      while (
        i < L.length &&
        L[i].trim() &&
        !FENCE.test(L[i]) &&
        !HEADING.test(L[i]) &&
        !HR.test(L[i]) &&
        !QUOTE.test(L[i]) &&
        !(para.length && (UL.test(L[i]) || OL.test(L[i])))
      ) {
        para.push(L[i]);
        i++;
      }
      if (!para.length) {
        // a line that looked like a block but was not one (e.g. a lone list marker)
        para.push(L[i]);
        i++;
      }
      const p = h('p');
      lines(para, p);
      parent.append(p);
    }
  }

  function render(text, node) {
    const frag = document.createDocumentFragment();
    blocks(String(text || ''), frag);
    node.replaceChildren(frag);
  }

  const BLOCK = /^(P|LI|H[1-6]|PRE|BLOCKQUOTE|BR|HR|UL|OL)$/;

  /* What render shows, without its marks, as one line: a conversation's
   * title from its first prompt. */
  function plain(text) {
    const box = document.createElement('div');
    render(text, box);
    const parts = [];
    (function walk(n) {
      for (const c of n.childNodes) {
        if (c.nodeType === Node.TEXT_NODE) {
          parts.push(c.nodeValue);
          continue;
        }
        const block = BLOCK.test(c.nodeName);
        if (block) parts.push(' ');
        walk(c);
        if (block) parts.push(' ');
      }
    })(box);
    return parts.join('').replace(/\s+/g, ' ').trim();
  }

  return { render, plain };
})();
