// Raw HTTP/1.1 on TCP for black-box tests: a socket wrapper that collects
// what the server sends, a one-shot exchange, a response parser that splits
// pipelined answers (Content-Length, chunked, until-close), and a small
// request helper on node:http that never pools connections.
import net from 'node:net';
import http from 'node:http';

const NO_BODY = (status) => (status >= 100 && status < 200) || status === 204 || status === 304;

function headerEnd(buf, from) {
  const i = buf.indexOf('\r\n\r\n', from, 'latin1');
  return i < 0 ? -1 : i + 4;
}

function parseHead(text) {
  const lines = text.split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0].slice(0, 200))}`);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const c = line.indexOf(':');
    if (c <= 0) throw new Error(`bad header line: ${JSON.stringify(line.slice(0, 200))}`);
    const name = line.slice(0, c).trim();
    const value = line.slice(c + 1).trim();
    rawHeaders.push([name, value]);
    const k = name.toLowerCase();
    headers[k] = k in headers ? `${headers[k]}, ${value}` : value;
  }
  return { version: m[1], status: Number(m[2]), reason: m[3] ?? '', headers, rawHeaders };
}

/* Parses a chunked body starting at buf[pos]. Returns {body, end} or null
 * if incomplete. */
function parseChunked(buf, pos) {
  const parts = [];
  for (;;) {
    const eol = buf.indexOf('\r\n', pos, 'latin1');
    if (eol < 0) return null;
    const sizeText = buf.toString('latin1', pos, eol).split(';')[0].trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)}`);
    const size = parseInt(sizeText, 16);
    pos = eol + 2;
    if (size === 0) {
      // trailers, then an empty line
      for (;;) {
        const e = buf.indexOf('\r\n', pos, 'latin1');
        if (e < 0) return null;
        const empty = e === pos;
        pos = e + 2;
        if (empty) return { body: Buffer.concat(parts), end: pos };
      }
    }
    if (buf.length < pos + size + 2) return null;
    parts.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
}

function makeResponse(head, body) {
  return {
    ...head,
    body,
    text() {
      return body.toString('utf8');
    },
    json() {
      return JSON.parse(body.toString('utf8'));
    },
  };
}

/**
 * Splits buf into HTTP/1.x responses.
 * opts.head: true if every final response answers a HEAD request, or an
 *   array of booleans indexed by final response (interim 1xx are not counted).
 * opts.eof: the connection has closed (a body without length ends there).
 * Returns {responses, offset, incomplete}: responses (interim ones have
 * interim: true; end is the offset just past each), the bytes consumed, and whether a partial response follows.
 */
export function parseResponses(buf, opts = {}) {
  const responses = [];
  let pos = 0;
  let finals = 0;
  while (pos < buf.length) {
    const he = headerEnd(buf, pos);
    if (he < 0) return { responses, offset: pos, incomplete: true };
    const head = parseHead(buf.toString('latin1', pos, he - 4));
    const isHead = Array.isArray(opts.head) ? !!opts.head[finals] : !!opts.head;
    if (head.status >= 100 && head.status < 200) {
      pos = he;
      responses.push(makeResponse({ ...head, interim: true, end: pos }, Buffer.alloc(0)));
      continue;
    }
    let body;
    let end;
    if (isHead || NO_BODY(head.status)) {
      body = Buffer.alloc(0);
      end = he;
    } else if (/\bchunked\b/i.test(head.headers['transfer-encoding'] ?? '')) {
      const r = parseChunked(buf, he);
      if (!r) return { responses, offset: pos, incomplete: true };
      body = r.body;
      end = r.end;
    } else if ('content-length' in head.headers) {
      const n = Number(head.headers['content-length']);
      if (!Number.isInteger(n) || n < 0) throw new Error(`bad Content-Length ${head.headers['content-length']}`);
      if (buf.length < he + n) return { responses, offset: pos, incomplete: true };
      body = buf.subarray(he, he + n);
      end = he + n;
    } else {
      if (!opts.eof) return { responses, offset: pos, incomplete: true };
      body = buf.subarray(he);
      end = buf.length;
    }
    responses.push(makeResponse({ ...head, interim: false, end }, Buffer.from(body)));
    finals++;
    pos = end;
  }
  return { responses, offset: pos, incomplete: false };
}

/**
 * A client socket that records everything the server sends.
 * Use RawConn.open(port, {host, localAddress, timeout}).
 */
export class RawConn {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.closed = false; // the server's side ended (FIN) or the socket closed
    this.error = null; // e.g. ECONNRESET, EPIPE
    this.consumed = 0; // bytes taken by readResponses so far
    this.finals = 0; // final responses taken so far
    this.waiters = new Set();
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._wake();
    });
    sock.on('end', () => {
      this.closed = true;
      this._wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this._wake();
    });
    sock.on('error', (e) => {
      this.error = e;
      this.closed = true;
      this._wake();
    });
  }

  static open(port, opts = {}) {
    const { host = '127.0.0.1', localAddress, timeout = 5000 } = opts;
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host, localAddress, allowHalfOpen: true });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, timeout);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        sock.setNoDelay(true);
        resolve(new RawConn(sock));
      });
    });
  }

  _wake() {
    for (const w of this.waiters) w();
  }

  /** Writes bytes (string as latin1 or Buffer); resolves once handed to the kernel. */
  write(data) {
    return new Promise((resolve) => {
      if (this.sock.destroyed || this.sock.writableEnded) return resolve(false);
      this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, (err) => {
        if (err && !this.error) this.error = err;
        resolve(!err);
      });
    });
  }

  /** Resolves true when pred() holds, false after timeout ms; rejects if
   * pred throws (e.g. the server sent something unparsable). */
  waitFor(pred, timeout = 5000) {
    return new Promise((resolve, reject) => {
      let timer;
      const finish = (fn, v) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn(v);
      };
      const check = () => {
        try {
          if (pred()) finish(resolve, true);
        } catch (e) {
          finish(reject, e);
        }
      };
      timer = setTimeout(() => {
        try {
          finish(resolve, !!pred());
        } catch (e) {
          finish(reject, e);
        }
      }, timeout);
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves true once the server closed the connection, false after timeout. */
  waitClose(timeout = 5000) {
    return this.waitFor(() => this.closed, timeout);
  }

  /** Text received so far (latin1). */
  text() {
    return this.buf.toString('latin1');
  }

  /**
   * Waits for n more final responses (interim 1xx are returned too, before
   * the final one they precede). opts.head as in parseResponses, indexed
   * from this call. Throws on timeout with what arrived.
   */
  async readResponses(n = 1, opts = {}) {
    const { timeout = 5000 } = opts;
    let result;
    const enough = () => {
      const rest = this.buf.subarray(this.consumed);
      result = parseResponses(rest, { head: opts.head, eof: this.closed });
      return result.responses.filter((r) => !r.interim).length >= n;
    };
    const ok = await this.waitFor(enough, timeout);
    if (!ok) {
      const got = this.buf.subarray(this.consumed).toString('latin1').slice(0, 500);
      throw new Error(
        `expected ${n} response(s) within ${timeout} ms; closed=${this.closed} ` +
          `error=${this.error?.code ?? ''}; received: ${JSON.stringify(got)}`,
      );
    }
    // take exactly n finals (and the interims before them)
    const out = [];
    let finals = 0;
    let taken = 0;
    for (const r of result.responses) {
      if (finals >= n) break;
      out.push(r);
      taken = r.end;
      if (!r.interim) finals++;
    }
    this.consumed += taken;
    this.finals += finals;
    return out;
  }

  /** Waits for one final response and returns it (interims dropped). */
  async readResponse(opts = {}) {
    const rs = await this.readResponses(1, opts);
    return rs[rs.length - 1];
  }

  end() {
    this.sock.end();
  }

  destroy() {
    this.sock.destroy();
  }
}

/**
 * Connects, writes bytes, and collects what comes back until the server
 * closes or timeout ms pass. Never throws for connection errors: they are
 * reported. Returns {data, text, closed, error, connectError, elapsedMs,
 * responses (parsed, best effort)}.
 */
export async function rawExchange(port, bytes, opts = {}) {
  const { timeout = 5000, localAddress, host = '127.0.0.1', head } = opts;
  const t0 = performance.now();
  let c;
  try {
    c = await RawConn.open(port, { host, localAddress, timeout });
  } catch (e) {
    return { data: Buffer.alloc(0), text: '', closed: true, error: e, connectError: e, elapsedMs: 0, responses: [] };
  }
  try {
    if (bytes !== undefined && bytes !== null) await c.write(bytes);
    const closed = await c.waitClose(timeout);
    let responses = [];
    try {
      responses = parseResponses(c.buf, { head, eof: true }).responses;
    } catch {
      responses = [];
    }
    return {
      data: c.buf,
      text: c.text(),
      closed,
      error: c.error,
      connectError: null,
      elapsedMs: performance.now() - t0,
      responses,
    };
  } finally {
    c.destroy();
  }
}

/**
 * One request with node:http, on its own connection (no pooling, so no
 * socket lingers to count against per-address limits).
 * Returns {status, headers, body (Buffer), text(), json()}.
 */
export function request(url, opts = {}) {
  const { method = 'GET', headers = {}, body, timeout = 10000, localAddress } = opts;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, localAddress }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const b = Buffer.concat(parts);
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: b,
          text: () => b.toString('utf8'),
          json: () => JSON.parse(b.toString('utf8')),
        });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`${method} ${url} timed out after ${timeout} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** "GET /path HTTP/1.1" with Host and optional extra header lines. */
export function reqText(method, path, extra = [], body = '') {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: gatehouse.test', ...extra];
  if (body && !extra.some((h) => /^content-length:|^transfer-encoding:/i.test(h))) {
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
