// A spray of new connections, run as its own process so the test's event
// loop is free for the client it measures:
//
//   node spray.mjs PORT COUNT
//
// opens COUNT connections to 127.0.0.1:PORT, each from its own address of
// 127.1.0.0/16 and up, each sending one POST /api/auth/sms-code with
// Connection: close; prints "ready" once every one is connected and
// written, then one "a" line per connection whose answer began (or "e
// CODE" per one that failed), and exits once each has been answered or
// has failed (or after 60 s).
import net from 'node:net';
import { pathToFileURL } from 'node:url';

const port = Number(process.argv[2]);
const count = Number(process.argv[3]);

export const sprayAddr = (i) => `127.${1 + Math.floor(i / 254 / 256)}.${Math.floor(i / 254) % 256}.${(i % 254) + 1}`;

export function smsCodeRequest(i) {
  const body = JSON.stringify({ phone: `+86138${String(10000000 + i).slice(-8)}`, purpose: 'register' });
  return (
    'POST /api/auth/sms-code HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
  );
}

async function main() {
  let left = count;
  const done = () => {
    if (--left === 0) process.exit(0);
  };
  const written = [];
  for (let i = 0; i < count; i++) {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: sprayAddr(i) });
    let answered = false;
    s.on('data', () => {
      if (answered) return;
      answered = true;
      process.stdout.write('a\n');
      s.destroy();
      done();
    });
    s.on('error', (e) => {
      if (!answered) {
        answered = true;
        process.stdout.write(`e ${e.code}\n`);
        done();
      }
    });
    written.push(
      new Promise((resolve) => {
        s.once('connect', () => s.write(smsCodeRequest(i), () => resolve()));
        s.once('error', resolve);
      }),
    );
  }
  await Promise.all(written);
  process.stdout.write('ready\n');
  setTimeout(() => process.exit(1), 60000).unref();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
