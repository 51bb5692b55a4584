/* gatehouse proof-of-work solver, run as a Web Worker:
 *
 *   const w = new Worker('/js/pow-worker.js');
 *   w.postMessage({challenge, bits});          // from GET /api/pow/challenge
 *   w.onmessage = (e) => e.data.progress !== undefined
 *       ? showProgress(e.data.progress)         // tries so far, every ~100 ms
 *       : submit(e.data.nonce);                 // decimal string
 *
 * It finds a decimal nonce such that SHA-256(challenge + ":" + nonce)
 * starts with `bits` zero bits (docs/API.md). SHA-256 is
 * computed here in plain JavaScript, not with crypto.subtle.digest: one
 * promise per hash would cost far more than the hash of ~100 bytes, and
 * the blocks holding the fixed challenge are compressed once (midstate).
 * A message {stop: true} ends the search. */
'use strict';

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
  0x5be0cd19];

const W = new Int32Array(64);

/* Compresses the 64-byte block of `bytes` at `off` into state h (Int32Array(8)). */
function compress(h, bytes, off) {
  for (let i = 0; i < 16; i++) {
    const j = off + i * 4;
    W[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15], y = W[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (k + S1 + ch + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const mj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + mj) | 0;
    k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
}

/* True when the digest in h starts with `bits` zero bits. */
function zeroBits(h, bits) {
  for (let i = 0; bits > 0; i++, bits -= 32) {
    const word = h[i] >>> 0;
    if (bits >= 32) {
      if (word !== 0) return false;
    } else if (word >>> (32 - bits) !== 0) {
      return false;
    }
  }
  return true;
}

/* Prepares the search over `challenge + ":" + nonce`; returns a function
 * hashing one nonce (a decimal string) into an Int32Array(8) digest. */
function prepare(challenge) {
  const prefix = new TextEncoder().encode(challenge + ':');
  const mid = Int32Array.from(H0);
  const full = prefix.length - (prefix.length % 64);
  for (let off = 0; off < full; off += 64) compress(mid, prefix, off);
  const tail = prefix.subarray(full);
  const buf = new Uint8Array(192);
  const h = new Int32Array(8);
  return function hash(nonce) {
    buf.fill(0);
    buf.set(tail, 0);
    let n = tail.length;
    for (let i = 0; i < nonce.length; i++) buf[n++] = nonce.charCodeAt(i);
    buf[n++] = 0x80;
    const blocks = n + 8 <= 64 ? 1 : n + 8 <= 128 ? 2 : 3;
    const bitlen = (prefix.length + nonce.length) * 8;
    const end = blocks * 64;
    buf[end - 4] = (bitlen >>> 24) & 0xff;
    buf[end - 3] = (bitlen >>> 16) & 0xff;
    buf[end - 2] = (bitlen >>> 8) & 0xff;
    buf[end - 1] = bitlen & 0xff;
    h.set(mid);
    for (let b = 0; b < blocks; b++) compress(h, buf, b * 64);
    return h;
  };
}

/* Hex of a digest (for tests). */
function hex(h) {
  let s = '';
  for (let i = 0; i < 8; i++) s += (h[i] >>> 0).toString(16).padStart(8, '0');
  return s;
}

let stopped = false;

/* Searches from `start` in batches, yielding to the event loop between
 * them so progress is posted and a stop message is heard. */
function solve(challenge, bits, start, post) {
  const hash = prepare(challenge);
  let nonce = start;
  let tries = 0;
  let lastReport = Date.now();
  stopped = false;
  function batch() {
    for (let i = 0; i < 20000; i++, nonce++, tries++) {
      const s = String(nonce);
      if (zeroBits(hash(s), bits)) {
        post({ nonce: s, tries: tries + 1 });
        return;
      }
    }
    if (stopped) return;
    const now = Date.now();
    if (now - lastReport >= 100) {
      lastReport = now;
      post({ progress: tries });
    }
    setTimeout(batch, 0);
  }
  batch();
}

if (typeof self !== 'undefined') {
  self.onmessage = (e) => {
    const m = e.data || {};
    if (m.stop) {
      stopped = true;
      return;
    }
    const bits = Number(m.bits) | 0;
    if (typeof m.challenge !== 'string' || bits < 0 || bits > 32) {
      self.postMessage({ error: 'expected {challenge: string, bits: 0..32}' });
      return;
    }
    solve(m.challenge, bits, Number(m.start) || 0, (msg) => self.postMessage(msg));
  };
  self.powInternals = { prepare, zeroBits, hex, solve };
}
