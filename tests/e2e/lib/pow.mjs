// Proof of work for the black-box tests: fetch a challenge and find a
// nonce the way a browser does (SHA-256 of "challenge:nonce" with the
// asked leading zero bits).
import crypto from 'node:crypto';

import { request } from './harness.mjs';

/** Leading zero bits of a digest. */
function zeroBits(h) {
  let zeros = 0;
  for (const byte of h) {
    if (byte !== 0) return zeros + Math.clz32(byte) - 24;
    zeros += 8;
  }
  return zeros;
}

/** A solved challenge of scope from the server at base: {challenge, nonce}. */
export async function solveChallenge(base, scope) {
  const ch = (await request(`${base}/api/pow/challenge?scope=${scope}`)).json();
  for (let n = 0; ; n++) {
    if (zeroBits(crypto.createHash('sha256').update(`${ch.challenge}:${n}`).digest()) >= ch.bits)
      return { challenge: ch.challenge, nonce: String(n) };
  }
}
