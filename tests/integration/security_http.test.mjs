// Integration tests: the HTTP server against hostile clients, over raw sockets (SPEC section 4:
// trailer fields read and ignored, bounded write queue for a client that does not read, a
// deadline in every connection state, Expect: 100-continue decided after auth, huge
// Content-Length values, valid UTF-8 in every error body).
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/security_http.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { startFake, startPonder, configFor, sleep, httpReq, parseResponses } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 30000 };
const MSG = [{ role: 'user', content: 'What is two plus two?' }];
const CHAT = JSON.stringify({ model: 'fake-model', messages: MSG });

// ---------------------------------------------------------------------------
// helpers

/** A raw client socket that collects bytes, parses responses as they come, and knows when the
 * peer closed. */
class RawConn {
  constructor(port) {
    this.all = [];
    this.parsed = [];
    this.rest = Buffer.alloc(0);
    this.pend = [];
    this.pendLen = 0;
    this.need = 0;
    this.closed = false;
    this.waiters = [];
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setNoDelay(true);
    sockets.add(this);
    this.ready = new Promise((res, rej) => {
      this.sock.once('connect', res);
      this.sock.once('error', rej);
    });
    this.sock.on('data', (d) => { this.all.push(d); this.pend.push(d); this.pendLen += d.length; this.kick(); });
    this.sock.on('error', () => {});
    this.sock.on('close', () => { this.closed = true; this.kick(); });
  }
  /** Every byte received so far. */
  get buf() {
    if (this.all.length > 1) this.all = [Buffer.concat(this.all)];
    return this.all[0] || Buffer.alloc(0);
  }
  parse() {
    if (!this.pendLen || this.rest.length + this.pendLen < this.need) return;
    this.rest = Buffer.concat([this.rest, ...this.pend]);
    this.pend = [];
    this.pendLen = 0;
    const { responses, rest, need } = parseResponses(this.rest);
    for (const r of responses) this.parsed.push(r);
    this.rest = rest;
    this.need = need;
  }
  kick() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  tick() { return new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); }); }
  write(data) { return this.sock.write(data); }
  /** Resolves with every response parsed so far once `n` arrived, the socket closed, or
   * timeoutMs passed. */
  async responses(n, timeoutMs = 5000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      this.parse();
      if (this.parsed.length >= n || this.closed || Date.now() > end) return this.parsed.slice();
      await this.tick();
    }
  }
  async waitClosed(timeoutMs = 3000) {
    const end = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < end) await this.tick();
    return this.closed;
  }
  destroy() { this.sock.destroy(); sockets.delete(this); }
}

function reqText(method, path, { headers = {}, body = null, close = false } = {}) {
  let s = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  if (body != null) s += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  if (close) s += 'Connection: close\r\n';
  return s + '\r\n' + (body ?? '');
}

/** A request with a chunked body (`body` split in two chunks) and `trailer` fields after it. */
function chunkedReq(method, path, body, trailer, headers = {}) {
  let s = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  s += '\r\n';
  const b = Buffer.from(body);
  const half = b.length >> 1;
  for (const part of [b.subarray(0, half), b.subarray(half)]) {
    if (part.length) s += part.length.toString(16) + '\r\n' + part.toString('latin1') + '\r\n';
  }
  return s + '0\r\n' + trailer + '\r\n';
}

/** Trailer field lines: `count` fields whose lines total about `bytes` bytes. */
function trailerFields(count, bytes) {
  if (count === 0) return '';
  const per = Math.max(1, Math.floor(bytes / count) - 'X-T-00000: \r\n'.length);
  let s = '';
  for (let i = 0; i < count; i++) s += `X-T-${String(i).padStart(5, '0')}: ${'v'.repeat(per)}\r\n`;
  return s;
}

async function assertHealthy(p) {
  assert.equal(p.proc.exitCode, null, 'ponder exited:\n' + p.output());
  const r = await httpReq(p.port, { path: '/healthz', headers: { connection: 'close' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { status: 'ok' });
}

async function stopOk(p) {
  const r = await p.stop();
  assert.equal(r.code, 0, 'ponder exit: ' + JSON.stringify(r) + '\n' + p.output());
}

/** VmRSS of a process in KiB. */
function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
  return m ? Number(m[1]) : 0;
}

/** The kernel's view of the loopback TCP socket bound to localPort and connected to
 * remotePort: { state (hex, '01' = ESTABLISHED), txQueue (bytes not yet acknowledged) }, or
 * null when there is none. */
function tcpSocket(localPort, remotePort) {
  const want = [localPort, remotePort].map((n) => n.toString(16).toUpperCase().padStart(4, '0'));
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    if (f[1].endsWith(':' + want[0]) && f[2].endsWith(':' + want[1]))
      return { state: f[3], txQueue: parseInt(f[4].split(':')[0], 16) };
  }
  return null;
}

/** Waits until ponder has begun answering on the client socket `conn` (its side holds unsent
 * bytes), then resolves with the milliseconds until ponder closed it (its side is no longer an
 * established socket), or null when it did not within closeMs. Works without the client
 * reading: the client's own socket would not notice the close until it reads. */
async function timeToClose(p, conn, { startMs = 30000, closeMs }) {
  const local = conn.sock.localPort;
  const seen = (pred, ms) => waitUntil(() => pred(tcpSocket(p.port, local)), ms);
  const open = (s) => s && s.state === '01';
  if (!(await seen((s) => !open(s) || s.txQueue > 0, startMs))) assert.fail('ponder never answered');
  const t0 = Date.now();
  return (await seen((s) => !open(s), closeMs)) ? Date.now() - t0 : null;
}

async function waitUntil(fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (fn()) return true;
    if (Date.now() > end) return false;
    await sleep(25);
  }
}

/** Every raw client socket a test opened, closed by the suites' after() even when a test
 * failed halfway. */
const sockets = new Set();
function destroyAll() { for (const c of sockets) c.destroy(); }

/** An upstream with big replies: GET .../v1/models is a `modelsBytes` JSON list; any other
 * request gets `streamBytes` of text, streamed with backpressure (chunked). */
async function startBigUpstream({ modelsBytes = 8 << 20, streamBytes = 32 << 20 } = {}) {
  const one = (i) => JSON.stringify({ id: 'model-' + String(i).padStart(8, '0'), object: 'model', created: 0, owned_by: 'big' });
  const per = one(0).length + 1;
  const n = Math.ceil(modelsBytes / per);
  const models = Buffer.from(JSON.stringify({ object: 'list', data: Array.from({ length: n }, (_, i) => JSON.parse(one(i))) }));
  const block = Buffer.alloc(64 * 1024, 'x');
  const socks = new Set();
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'GET' && req.url.endsWith('/v1/models')) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': models.length });
        res.end(models);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      const pump = () => {
        while (sent < streamBytes) {
          sent += block.length;
          if (!res.write(block)) { res.once('drain', pump); return; }
        }
        res.end();
      };
      pump();
    });
  });
  srv.on('connection', (s) => { socks.add(s); s.on('close', () => socks.delete(s)); });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  return {
    url: `http://127.0.0.1:${port}`,
    async close() { for (const s of socks) s.destroy(); await new Promise((r) => srv.close(r)); },
  };
}

// ---------------------------------------------------------------------------
// 1. trailer fields of a chunked body

describe('trailer fields', () => {
  let fake;
  let p;
  const MAX_HEADER = 4096;
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, { limits: { max_header_bytes: MAX_HEADER } }) });
  });
  after(async () => {
    destroyAll();
    await stopOk(p);
    await fake.close();
  });

  // Each kind of endpoint, with the status it answers.
  const endpoints = [
    { name: '/healthz', method: 'GET', path: '/healthz', body: '', status: 200 },
    { name: '/metrics', method: 'GET', path: '/metrics', body: '', status: 200 },
    { name: '/v1/models (pass-through)', method: 'GET', path: '/v1/models', body: '', status: 200 },
    { name: 'pass-through with a body', method: 'POST', path: '/v1/embeddings', body: '{"input":"x"}', status: 200,
      headers: { 'content-type': 'application/json' } },
    { name: '/v1/chat/completions', method: 'POST', path: '/v1/chat/completions', body: CHAT, status: 200,
      headers: { 'content-type': 'application/json' } },
    { name: '404 path', method: 'POST', path: '/nowhere', body: 'abc', status: 404 },
  ];
  const sizes = [
    { name: 'no trailer', fields: 0, bytes: 0 },
    { name: 'one small trailer', fields: 1, bytes: 20 },
    { name: 'many trailers (more fields than a head may have)', fields: 300, bytes: 3600 },
    { name: 'trailers over max_header_bytes', fields: 80, bytes: MAX_HEADER + 2000, over: true },
  ];

  for (const ep of endpoints) {
    for (const sz of sizes) {
      it(`${ep.name}, ${sz.name}, then a pipelined request`, T, async () => {
        const c = new RawConn(p.port);
        await c.ready;
        const trailer = trailerFields(sz.fields, sz.bytes);
        c.write(chunkedReq(ep.method, ep.path, ep.body, trailer, ep.headers) +
                reqText('GET', '/healthz'));
        const rs = await c.responses(2, 8000);
        c.destroy();
        if (sz.over) {
          // The trailer section is bounded like a head: 431, and the connection closes (the
          // pipelined request after it is never answered).
          assert.equal(rs.length, 1, JSON.stringify(rs.map((r) => r.status)));
          assert.equal(rs[0].status, 431);
          assert.equal(rs[0].json.error.code, 'request_header_fields_too_large');
        } else {
          assert.equal(rs.length, 2, 'responses: ' + JSON.stringify(rs.map((r) => r.status)));
          assert.equal(rs[0].status, ep.status, rs[0].text);
          assert.equal(rs[1].status, 200);
          assert.deepEqual(rs[1].json, { status: 'ok' });
        }
        await assertHealthy(p);
      });
    }
  }

  it('trailers are not request headers: a trailer cannot set x-request-id or authorization', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write(chunkedReq('POST', '/v1/embeddings', '{"input":"x"}',
      'X-Request-Id: from-trailer\r\nAuthorization: Bearer trailer\r\n', { 'content-type': 'application/json' }));
    const [r] = await c.responses(1);
    c.destroy();
    assert.equal(r.status, 200, r.text);
    assert.notEqual(r.headers['x-request-id'], 'from-trailer');
    assert.equal(r.json.headers['x-request-id'], r.headers['x-request-id']);
    assert.equal(r.json.headers.authorization, undefined);
  });

  it('a folded (obs-fold) header value reaches the upstream on one line, without its line break', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write('POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
            'OpenAI-Organization: org-a\r\n org-b\r\n\tX-Injected: 1\r\nContent-Length: 2\r\n\r\n{}');
    const [r] = await c.responses(1);
    c.destroy();
    assert.equal(r.status, 200, r.text);
    const org = r.json.headers['openai-organization'];
    assert.ok(!/[\r\n]/.test(org), JSON.stringify(org));
    assert.equal(org.replace(/\s+/g, ' '), 'org-a org-b X-Injected: 1');
    assert.equal(r.json.headers['x-injected'], undefined);
  });

  it('a request with trailers sent a few bytes at a time, then pipelined requests', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    const data = Buffer.from(
      chunkedReq('POST', '/v1/embeddings', '{"input":"x"}', trailerFields(150, 3000), { 'content-type': 'application/json' }) +
      chunkedReq('GET', '/healthz', '', trailerFields(40, 800)) +
      reqText('GET', '/metrics'));
    for (let i = 0; i < data.length; i += 97) {
      c.write(data.subarray(i, i + 97));
      if (i % 970 === 0) await sleep(1);
    }
    const rs = await c.responses(3, 8000);
    c.destroy();
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
    assert.deepEqual(rs[1].json, { status: 'ok' });
    await assertHealthy(p);
  });

  it('many requests with trailers pipelined in one write', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    let s = '';
    for (let i = 0; i < 50; i++) s += chunkedReq('GET', i % 2 ? '/healthz' : '/nope', 'ab', trailerFields(1 + (i % 7), 30 + i * 10));
    c.write(s);
    const rs = await c.responses(50, 8000);
    c.destroy();
    assert.equal(rs.length, 50);
    rs.forEach((r, i) => assert.equal(r.status, i % 2 ? 200 : 404));
    await assertHealthy(p);
  });
});

// ---------------------------------------------------------------------------
// 2. a client that sends pipelined requests and never reads

describe('write-queue watermark', () => {
  let p;
  before(async () => { p = await startPonder({ config: { auth: { keys: ['sk-k'] }, log: { level: 'warn', access_log: 'off' } } }); });
  after(async () => { destroyAll(); await stopOk(p); });

  it('a pipelined /healthz flood from a non-reader keeps RSS bounded; every answer arrives in order', { timeout: 60000 }, async () => {
    await assertHealthy(p);
    const base = rssKiB(p.proc.pid);
    const c = new RawConn(p.port);
    await c.ready;
    c.sock.pause(); // the client reads nothing
    let sent = 0;
    let maxGrowth = 0;
    const batch = () => {
      let s = '';
      for (let i = 0; i < 2000; i++) s += `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: r${sent++}\r\n\r\n`;
      return s;
    };
    // Flood for 2.5 s, as fast as the socket takes it, watching ponder's memory.
    const end = Date.now() + 2500;
    let blocked = false;
    while (Date.now() < end) {
      maxGrowth = Math.max(maxGrowth, rssKiB(p.proc.pid) - base);
      if (maxGrowth > 64 * 1024) break;
      if (blocked) { await sleep(20); blocked = c.sock.writableNeedDrain; continue; }
      blocked = !c.write(batch());
      await new Promise((r) => setImmediate(r));
    }
    await sleep(300);
    maxGrowth = Math.max(maxGrowth, rssKiB(p.proc.pid) - base);
    assert.ok(maxGrowth < 64 * 1024, `ponder RSS grew by ${maxGrowth} KiB for one non-reading client`);
    assert.ok(sent > 2000, 'the flood was sent');
    // Now read: every request sent gets its answer, in order.
    c.sock.resume();
    const rs = await c.responses(sent, 30000);
    c.destroy();
    assert.equal(rs.length, sent, `answers: ${rs.length} of ${sent}`);
    for (let i = 0; i < rs.length; i++) {
      if (rs[i].status !== 200 || rs[i].headers['x-request-id'] !== `r${i}`)
        assert.fail(`answer ${i}: ${rs[i].status} ${rs[i].headers['x-request-id']}`);
    }
    await assertHealthy(p);
  });

  it('a flood of /metrics, 401, 404 and 405 answers is bounded the same way', { timeout: 60000 }, async () => {
    const kinds = [
      ['GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n', 200],
      ['GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n', 401],
      ['GET /nope HTTP/1.1\r\nHost: x\r\n\r\n', 404],
      ['POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n', 405],
    ];
    const base = rssKiB(p.proc.pid);
    const c = new RawConn(p.port);
    await c.ready;
    c.sock.pause();
    let sent = 0;
    const end = Date.now() + 2000;
    let maxGrowth = 0;
    while (Date.now() < end && maxGrowth < 64 * 1024) {
      let s = '';
      for (let i = 0; i < 1000; i++, sent++) s += kinds[sent % kinds.length][0];
      if (!c.write(s)) await Promise.race([new Promise((r) => c.sock.once('drain', r)), sleep(100)]);
      maxGrowth = Math.max(maxGrowth, rssKiB(p.proc.pid) - base);
    }
    assert.ok(maxGrowth < 64 * 1024, `ponder RSS grew by ${maxGrowth} KiB`);
    c.sock.resume();
    const rs = await c.responses(sent, 30000);
    c.destroy();
    assert.equal(rs.length, sent);
    rs.forEach((r, i) => { if (r.status !== kinds[i % kinds.length][1]) assert.fail(`answer ${i}: ${r.status}`); });
    await assertHealthy(p);
  });
});

// ---------------------------------------------------------------------------
// 3. a deadline in every state: stalled readers after Connection: close / HTTP/1.0

describe('stalled readers', () => {
  let big;
  let p;
  const IDLE = 400;
  before(async () => {
    big = await startBigUpstream();
    p = await startPonder({
      config: {
        upstreams: [{ name: 'big', base_url: `${big.url}/v1`, retries: 0, timeout_ms: 120000, connect_timeout_ms: 2000 }],
        limits: { idle_timeout_ms: IDLE },
        log: { level: 'warn', access_log: 'off' },
      },
    });
  });
  after(async () => {
    destroyAll();
    await stopOk(p);
    await big.close();
  });

  const cases = [
    { name: 'Connection: close, a big /v1/models list (answered whole, then flushing)',
      data: 'GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' },
    { name: 'HTTP/1.0, a big /v1/models list',
      data: 'GET /v1/models HTTP/1.0\r\nHost: x\r\n\r\n' },
    { name: 'Connection: close, a big streamed pass-through (in flight, paused)',
      data: 'POST /v1/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}' },
    { name: 'HTTP/1.0, a big streamed pass-through',
      data: 'POST /v1/big HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}' },
    { name: 'keep-alive, a big streamed pass-through',
      data: 'POST /v1/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}' },
  ];
  for (const tc of cases) {
    it(`${tc.name}: a client that never reads is closed within a few idle_timeout_ms`, T, async () => {
      const c = new RawConn(p.port);
      await c.ready;
      c.sock.pause();
      c.write(tc.data);
      // From the moment ponder starts answering, a few idle periods at most.
      const ms = await timeToClose(p, c, { closeMs: 10 * IDLE });
      c.destroy();
      assert.ok(ms !== null, `ponder still holds the socket of a client that read nothing for ${10 * IDLE} ms`);
      await assertHealthy(p);
    });
  }

  for (const [what, req] of [
    ['a big /v1/models list', 'GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['a big streamed pass-through', 'POST /v1/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}'],
  ]) {
    it(`a slow reader of ${what} that keeps taking bytes is not closed`, { timeout: 60000 }, async () => {
      const c = new RawConn(p.port);
      await c.ready;
      c.write(req);
      // Read in bursts with pauses shorter than idle_timeout_ms but, together, much longer.
      const start = Date.now();
      while (!c.closed && Date.now() - start < 50000) {
        c.sock.pause();
        await sleep(IDLE / 4);
        c.sock.resume();
        await sleep(IDLE / 8);
      }
      const rs = await c.responses(1, 1000);
      c.destroy();
      assert.equal(rs.length, 1, 'the whole answer arrived');
      assert.equal(rs[0].status, 200);
      assert.ok(rs[0].body.length >= 8 << 20, 'body of ' + rs[0].body.length);
    });
  }
});

// ---------------------------------------------------------------------------
// 4. Expect: 100-continue is answered after auth; 5. huge Content-Length values

describe('Expect: 100-continue and Content-Length', () => {
  let fake;
  let p;
  const KEY = 'sk-client-good';
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, { auth: { keys: [KEY] }, limits: { max_body_bytes: 1000 } }),
    });
  });
  after(async () => {
    destroyAll();
    await stopOk(p);
    await fake.close();
  });

  const expectHead = (path, headers = {}, len = CHAT.length) => {
    let s = `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n`;
    for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
    return s + (len == null ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${len}\r\n`) + '\r\n';
  };

  for (const [label, headers] of [['no key', {}], ['a bad key', { Authorization: 'Bearer sk-nope' }],
    ['a prefix of the key', { Authorization: 'Bearer sk-client-goo' }]]) {
    for (const [kind, len] of [['Content-Length', CHAT.length], ['chunked', null]]) {
      it(`${label}, ${kind}: 401 without 100 Continue and without waiting for the body`, T, async () => {
        const c = new RawConn(p.port);
        await c.ready;
        c.write(expectHead('/v1/chat/completions', headers, len));
        const rs = await c.responses(1, 3000);
        assert.ok(rs.length >= 1, 'no answer before the body was sent');
        assert.equal(rs[0].status, 401, 'first response: ' + rs[0].status);
        assert.equal(rs[0].json.error.code, 'invalid_api_key');
        assert.equal(rs[0].headers.connection, 'close');
        assert.ok(!c.buf.toString('latin1').includes('100 Continue'));
        assert.ok(await c.waitClosed(3000), 'the connection closes after the early answer');
        c.destroy();
        await assertHealthy(p);
      });
    }
  }

  it('a bad key on a pass-through path: 401 before the body', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write(expectHead('/v1/embeddings', {}, 10));
    const rs = await c.responses(1, 3000);
    c.destroy();
    assert.equal(rs[0]?.status, 401);
  });

  it('the good key: 100 Continue, then the body, then 200', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write(expectHead('/v1/chat/completions', { Authorization: `Bearer ${KEY}` }));
    const first = await c.responses(1, 3000);
    assert.equal(first[0]?.status, 100);
    c.write(CHAT + reqText('GET', '/healthz'));
    const rs = await c.responses(3, 5000);
    c.destroy();
    assert.deepEqual(rs.map((r) => r.status), [100, 200, 200], rs.map((r) => r.text).join('\n'));
    assert.equal(rs[1].json.object, 'chat.completion');
  });

  it('/healthz needs no key: 100 Continue, then 200', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write('POST /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n');
    const first = await c.responses(1, 3000);
    assert.equal(first[0]?.status, 100);
    c.write('{}');
    const rs = await c.responses(2, 3000);
    c.destroy();
    assert.equal(rs[1].status, 405); // POST /healthz: the usual answer, after the body
  });

  it('HTTP/1.0 with Expect: the expectation is ignored (no 100 Continue), the body is read', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write('POST /healthz HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n');
    await sleep(300);
    assert.equal(c.buf.length, 0, 'answered before the body: ' + c.buf.toString('latin1'));
    c.write('{}');
    const rs = await c.responses(1, 3000);
    c.destroy();
    assert.deepEqual(rs.map((r) => r.status), [405]);
  });

  it('a body over max_body_bytes announced with Expect: 413 without 100 Continue', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write(expectHead('/v1/chat/completions', { Authorization: `Bearer ${KEY}` }, 5000));
    const rs = await c.responses(1, 3000);
    assert.equal(rs[0]?.status, 413);
    assert.ok(!c.buf.toString('latin1').includes('100 Continue'));
    assert.ok(await c.waitClosed(3000));
    c.destroy();
  });

  for (const cl of ['9223372036854775807', '9223372036854775808', '18446744073709551615', '12345678901234567890']) {
    it(`Content-Length ${cl}: 413 at once, then still serving`, T, async () => {
      const c = new RawConn(p.port);
      await c.ready;
      c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${cl}\r\n\r\n{"model":`);
      const rs = await c.responses(1, 3000);
      assert.equal(rs[0]?.status, 413, 'no 413 for an announced length over the limit');
      assert.equal(rs[0].json.error.code, 'request_too_large');
      assert.ok(await c.waitClosed(3000));
      c.destroy();
      await assertHealthy(p);
    });
  }
});

// ---------------------------------------------------------------------------
// 6. error bodies are valid UTF-8 JSON whatever the client sent

describe('UTF-8 in error bodies', () => {
  let fake;
  let p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          { name: 'exp', match: { models: ['exp-model'] }, allow_overrides: true,
            variants: [{ name: 'a', weight: 1, forcing: { rounds: 0 } }, { name: 'b', weight: 1, forcing: { rounds: 0 } }] },
          { name: 'only', match: { models: ['m1'] }, forcing: { rounds: 0 } },
        ],
      }),
    });
  });
  after(async () => {
    destroyAll();
    await stopOk(p);
    await fake.close();
  });

  const strict = new TextDecoder('utf-8', { fatal: true });
  function assertUtf8Error(r, status) {
    assert.equal(r.status, status, r.text);
    const text = strict.decode(r.body); // throws on invalid UTF-8
    const j = JSON.parse(text);
    assert.equal(typeof j.error.message, 'string');
    return j.error;
  }
  async function send(bytes) {
    const c = new RawConn(p.port);
    await c.ready;
    c.write(bytes);
    const [r] = await c.responses(1, 5000);
    c.destroy();
    assert.ok(r, 'no response');
    return r;
  }

  it('a path with invalid UTF-8 quoted in a 404', T, async () => {
    const r = await send(Buffer.concat([Buffer.from('GET /bad'), Buffer.from([0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf4, 0x90]),
      Buffer.from('/end HTTP/1.1\r\nHost: x\r\n\r\n')]));
    const e = assertUtf8Error(r, 404);
    assert.ok(e.message.includes('/bad\uFFFD'), e.message);
    assert.ok(e.message.includes('/end'), e.message);
  });

  it('a valid UTF-8 path is quoted unchanged', T, async () => {
    const r = await send(Buffer.from('GET /caf\u00e9/\u{1F600} HTTP/1.1\r\nHost: x\r\n\r\n', 'utf8'));
    const e = assertUtf8Error(r, 404);
    assert.ok(e.message.includes('/caf\u00e9/\u{1F600}'), e.message);
  });

  it('a long path cut inside a character', T, async () => {
    const path = '/' + 'a'.repeat(198) + '\u00e9\u00e9\u00e9';
    const r = await send(Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 'utf8'));
    assertUtf8Error(r, 404);
  });

  it('an X-Ponder-Variant header with invalid UTF-8 quoted in a 400', T, async () => {
    const body = JSON.stringify({ model: 'exp-model', messages: MSG });
    const head = Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nX-Ponder-Variant: v`);
    const r = await send(Buffer.concat([head, Buffer.from([0xc0, 0xaf, 0xfe, 0x80]), Buffer.from('\r\n\r\n' + body)]));
    const e = assertUtf8Error(r, 400);
    assert.equal(e.param, 'x-ponder-variant');
  });

  it('a model name cut inside a character in a 404 model_not_found', T, async () => {
    const model = 'm'.repeat(199) + '\u00e9\u00e9';
    const body = JSON.stringify({ model, messages: MSG });
    const r = await send(reqText('POST', '/v1/chat/completions', { headers: { 'Content-Type': 'application/json' }, body }));
    const e = assertUtf8Error(r, 404);
    assert.equal(e.code, 'model_not_found');
  });

  it('still serving', T, async () => { await assertHealthy(p); });
});
