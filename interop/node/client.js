#!/usr/bin/node
// npm ws peer of the Duplex interop tests (version pinned by package-lock.json).
//
// Usage: /usr/bin/node node/client.js ws://127.0.0.1:PORT
//
// Runs every case as a client of the Go test's server (our websocket.Open
// echo handler) and prints one JSON line per case with what it observed; the
// Go test (scripts_test.go) makes the assertions. Exit status: 0 when every
// case ran without error, 1 when some case reported an error, 2 on a crash.
//
// Case names and the server protocol are those of common_test.go:
// ?mode=echo|stream&case=NAME, "#cmd ping", "#cmd close CODE REASON".
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];
const KINDS = ['text', 'binary'];
const MODES = ['whole', 'peer-frag', 'our-frag'];
// plain: no permessage-deflate offered; deflate: offered (ws's default)
const COMPRESSIONS = ['plain', 'deflate'];
const CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999];
const OP_TIMEOUT = 60000; // ms, one case
const MAX_SIZE = 32 << 20; // the peer's read limit, above the largest message

const ALPHABET = [...'abcdefghijklmnopqrstuvwxyz01234567 ', 'é', 'ß', '€', '漢', '😀', '𝄞', 'ж'];
const TEXT_BLOCK = Buffer.from(
  Array.from({ length: 1500 }, (_, i) => ALPHABET[(i * 7 + Math.floor(i / 5)) % ALPHABET.length]).join(''),
);
const BIN_BLOCK = Buffer.from(Array.from({ length: 4093 }, (_, i) => (i * 131 + Math.floor(i / 256)) & 0xff));

const closeReason = (code) => `reason ${code} ✓`;
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const fragChunk = (n) => Math.min(Math.floor(n / 3) + 1, 4093);

// payload: n bytes; binary covers all byte values, text is valid UTF-8 with
// 1 to 4 byte sequences (a sequence cut at the end is replaced by dots).
function payload(kind, n) {
  if (n === 0) return Buffer.alloc(0);
  const p = Buffer.alloc(n, kind === 'text' ? TEXT_BLOCK : BIN_BLOCK);
  if (kind === 'text') {
    let j = n - 1;
    while (j > 0 && n - j < 4 && (p[j] & 0xc0) === 0x80) j--;
    const lead = p[j];
    const len = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    if (j + len > n) p.fill('.', j);
  }
  return p;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Peer wraps a ws client with promise-based recv/close.
class Peer {
  constructor(url, comp) {
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    this.pongs = [];
    this.ws = new WebSocket(url, {
      maxPayload: MAX_SIZE,
      handshakeTimeout: OP_TIMEOUT,
      perMessageDeflate: comp !== 'plain',
    });
    this.closedPromise = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString('utf8') };
        for (const w of this.waiters.splice(0)) w.reject(new ClosedError(this.closed));
        resolve(this.closed);
      });
    });
    this.ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(m);
      else this.queue.push(m);
    });
    this.ws.on('pong', (data) => this.pongs.push(data));
    this.ws.on('error', (err) => {
      this.error = err;
    });
  }

  open() {
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('close', (code) => reject(new Error(`closed with ${code} before opening`)));
    });
  }

  recv() {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.reject(new ClosedError(this.closed));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  send(data, opts) {
    return new Promise((resolve, reject) => this.ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
  }

  // close starts the closing handshake and resolves with the close frame received.
  close(code, reason) {
    if (!this.closed && this.ws.readyState !== WebSocket.CLOSED) this.ws.close(code, reason);
    return this.closedPromise;
  }

  terminate() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

class ClosedError extends Error {
  constructor(closed) {
    super(`connection closed: ${closed.code} ${JSON.stringify(closed.reason)}`);
    this.closed = closed;
  }
}

async function connect(base, mode, name, comp = 'deflate') {
  const p = new Peer(`${base}/?mode=${mode}&case=${encodeURIComponent(name)}`, comp);
  try {
    await p.open();
  } catch (err) {
    p.terminate();
    throw err;
  }
  return p;
}

async function messageCase(rec, base, comp, mode, kind, size) {
  const p = await connect(base, mode === 'our-frag' ? 'stream' : 'echo', rec.case, comp);
  try {
    const data = payload(kind, size);
    const binary = kind === 'binary';
    Object.assign(rec, { sent_type: kind, sent_len: data.length, sent_sha256: sha(data) });
    if (mode === 'peer-frag') {
      // ws sends a fragmented message with send(..., { fin: false }) for
      // every fragment but the last.
      const chunk = fragChunk(size);
      let off = 0;
      do {
        const end = Math.min(off + chunk, data.length);
        await p.send(data.subarray(off, end), { binary, fin: end === data.length });
        off = end;
      } while (off < data.length);
    } else {
      await p.send(data, { binary });
    }
    const m = await p.recv();
    Object.assign(rec, {
      recv_type: m.isBinary ? 'binary' : 'text',
      recv_len: m.data.length,
      recv_sha256: sha(m.data),
    });
    await p.close(1000);
  } finally {
    p.terminate();
  }
}

async function pingPeer(rec, base) {
  const p = await connect(base, 'echo', 'ping-peer');
  try {
    const data = Buffer.from('node-ping \x00\xff', 'latin1');
    rec.ping_hex = data.toString('hex');
    const pong = new Promise((resolve) => p.ws.once('pong', resolve));
    p.ws.ping(data);
    rec.pong_hex = (await pong).toString('hex');
    await p.send('after-ping');
    rec.after = (await p.recv()).data.toString('utf8');
    await p.close(1000);
  } finally {
    p.terminate();
  }
}

async function pingOurs(rec, base) {
  const p = await connect(base, 'echo', 'ping-ours');
  try {
    await p.send('#cmd ping');
    rec.reply = (await p.recv()).data.toString('utf8'); // ws answers pings automatically
    await p.close(1000);
  } finally {
    p.terminate();
  }
}

async function closePeer(rec, base, code) {
  const p = await connect(base, 'echo', rec.case);
  try {
    const got = await p.close(code, closeReason(code)); // the 'close' event: our echo
    rec.code = got.code;
    rec.reason = got.reason;
  } finally {
    p.terminate();
  }
}

async function closeOurs(rec, base, code) {
  const p = await connect(base, 'echo', rec.case);
  try {
    await p.send(`#cmd close ${code} ${closeReason(code)}`);
    try {
      const m = await p.recv();
      rec.error = `received ${JSON.stringify(m.data.toString())} instead of the close frame`;
    } catch (err) {
      if (!(err instanceof ClosedError)) throw err;
    }
    const got = await p.closedPromise;
    rec.code = got.code;
    rec.reason = got.reason;
  } finally {
    p.terminate();
  }
}

async function run(name, fn, ...args) {
  const rec = { case: name };
  try {
    await withTimeout(fn(rec, ...args), OP_TIMEOUT, name);
  } catch (err) {
    rec.error = `${err && err.stack ? err.stack.split('\n')[0] : err}`;
  }
  process.stdout.write(JSON.stringify(rec) + '\n');
  return !('error' in rec);
}

async function main(base) {
  let ok = true;
  for (const comp of COMPRESSIONS)
    for (const mode of MODES)
      for (const kind of KINDS)
        for (const size of SIZES) {
          const name = comp === 'plain' ? `${mode}-${kind}-${size}` : `${comp}-${mode}-${kind}-${size}`;
          ok = (await run(name, messageCase, base, comp, mode, kind, size)) && ok;
        }
  ok = (await run('ping-peer', pingPeer, base)) && ok;
  ok = (await run('ping-ours', pingOurs, base)) && ok;
  for (const code of CLOSE_CODES) ok = (await run(`close-peer-${code}`, closePeer, base, code)) && ok;
  for (const code of CLOSE_CODES) ok = (await run(`close-ours-${code}`, closeOurs, base, code)) && ok;
  return ok;
}

if (process.argv.length !== 3) {
  process.stderr.write('usage: node client.js ws://HOST:PORT\n');
  process.exit(2);
}
process.stdout.write(`ws ${require('ws/package.json').version}\n`);
main(process.argv[2]).then(
  (ok) => process.exit(ok ? 0 : 1),
  (err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(2);
  },
);
