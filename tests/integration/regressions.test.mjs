// Regression tests for connection-handling defects found in review (pipelining backpressure,
// Upgrade requests, HEAD, 204 framing, disconnects while not reading, idle timer vs. queued
// output, access log/metrics for ponder's own replies).
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/regressions.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { readFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFake, startPonder, configFor, sleep } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 15000 };
const PASS_ROUTE = [{ name: 'r', forcing: { rounds: 0 } }];

// ---------------------------------------------------------------------------
// helpers

/** Runs fn(ponder, fake) with the fake upstream (unless fake: false) and ponder; always stops
 * both, and asserts ponder exits 0 after SIGTERM. */
async function withPonder(cfgFn, fn, { fake: useFake = true } = {}) {
  const fake = useFake ? await startFake({ port: 0 }) : null;
  let p = null;
  let failure = null;
  try {
    p = await startPonder({ config: cfgFn(fake) });
    await fn(p, fake);
  } catch (e) {
    failure = e;
  }
  const r = p ? await p.stop('SIGTERM') : null;
  if (fake) await fake.close();
  if (failure) throw failure;
  assert.equal(r.code, 0, `ponder exit ${JSON.stringify(r)}\n${p.output().slice(-2000)}`);
}

/** Starts a tiny node:http upstream; `handler(req, res)`. Returns { port, url, log, close }. */
async function startTinyUpstream(handler) {
  const log = [];
  const sockets = new Set();
  const srv = http.createServer((req, res) => {
    log.push({ method: req.method, path: req.url });
    handler(req, res);
  });
  srv.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  return {
    port, url: `http://127.0.0.1:${port}`, log,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

function upstreamCfg(up, { timeout_ms = 5000, limits } = {}) {
  const cfg = {
    upstreams: [{ name: 'u', base_url: `${up.url}/v1`, retries: 0, timeout_ms, connect_timeout_ms: 2000 }],
    log: { level: 'warn', access_log: 'off' },
  };
  if (limits) cfg.limits = limits;
  return cfg;
}

/**
 * Parses consecutive HTTP/1.1 responses from `buf`. `methods[i]` is the method of the i-th
 * request (HEAD responses have no body). `closed`: the peer closed (ends a close-delimited body).
 * Returns { responses: [{status, headers, head, body (Buffer), start, end}], garbage }: garbage is
 * set when bytes that are not a status line follow a complete response.
 */
function parseResponses(buf, methods = [], closed = false) {
  const responses = [];
  let off = 0;
  for (;;) {
    if (off >= buf.length) return { responses, garbage: null };
    const prefix = buf.toString('latin1', off, Math.min(buf.length, off + 9));
    if (!'HTTP/1.1 '.startsWith(prefix) && !prefix.startsWith('HTTP/1.1 '))
      return { responses, garbage: buf.toString('latin1', off, off + 200) };
    const he = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (he < 0) return { responses, garbage: null };
    const head = buf.toString('latin1', off, he);
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3})/.exec(lines[0]);
    if (!m) return { responses, garbage: head.slice(0, 200) };
    const status = Number(m[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const method = methods[responses.length] || 'GET';
    let p = he + 4;
    let body;
    if (method === 'HEAD' || status < 200 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) return { responses, garbage: null };
        const size = parseInt(buf.toString('latin1', p, le), 16);
        if (Number.isNaN(size)) return { responses, garbage: buf.toString('latin1', p, p + 200) };
        if (size === 0) {
          // optional trailers, then an empty line
          const te = buf.indexOf('\r\n', le + 2, 'latin1');
          if (te < 0) return { responses, garbage: null };
          if (te === le + 2) { p = te + 2; break; }
          const tend = buf.indexOf('\r\n\r\n', le + 2, 'latin1');
          if (tend < 0) return { responses, garbage: null };
          p = tend + 4;
          break;
        }
        if (le + 2 + size + 2 > buf.length) return { responses, garbage: null };
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (p + n > buf.length) return { responses, garbage: null };
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      if (!closed) return { responses, garbage: null };
      body = buf.subarray(p);
      p = buf.length;
    }
    responses.push({ status, headers, head, body, start: off, end: p });
    off = p;
  }
}

/** A raw loopback client socket that accumulates everything it receives. */
class RawClient {
  constructor(port) {
    this.sock = net.connect(port, '127.0.0.1');
    this.chunks = [];
    this.size = 0;
    this.closed = false;
    this.waiters = new Set();
    this.connected = new Promise((r) => this.sock.once('connect', r));
    this.sock.on('data', (d) => { this.chunks.push(d); this.size += d.length; this.kick(); });
    this.sock.on('close', () => { this.closed = true; this.kick(); });
    this.sock.on('error', () => {});
  }
  get data() {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }
  kick() { for (const w of [...this.waiters]) w(); }
  write(s) { this.sock.write(s); }
  parse(methods) { return parseResponses(this.data, methods, this.closed); }
  /** Resolves with pred()'s value once truthy; rejects after timeoutMs. */
  until(pred, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      let t;
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { cleanup(); reject(e); return; }
        if (v) { cleanup(); resolve(v); }
      };
      const cleanup = () => { clearTimeout(t); this.waiters.delete(check); };
      t = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; closed=${this.closed}; ` +
          `received ${this.size} bytes: ${JSON.stringify(this.data.toString('latin1', 0, 600))}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
  /** Waits for n complete responses (fails on garbage between responses). */
  async responses(n, methods, timeoutMs, what = `${n} responses`) {
    return this.until(() => {
      const r = this.parse(methods);
      if (r.garbage !== null) throw new Error(`unexpected bytes after response ${r.responses.length}: ${JSON.stringify(r.garbage)}`);
      if (r.responses.length >= n) return r.responses;
      if (this.closed) {
        throw new Error(`connection closed by ponder after ${this.size} bytes and ${r.responses.length} ` +
          `complete responses, waiting for ${what}: ${JSON.stringify(this.data.toString('latin1', 0, 400))}`);
      }
      return null;
    }, timeoutMs, what);
  }
  destroy() { this.sock.destroy(); }
}

const post = (path, body, extra = '') =>
  `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
  `content-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nhost: x\r\n${extra}\r\n`;

async function metricsText(p) {
  return (await fetch(`${p.url}/metrics`)).text();
}
function metricValue(text, re) {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m) { found = true; sum += Number(m[1]); }
  }
  return found ? sum : null;
}

// ---------------------------------------------------------------------------

describe('regressions', () => {
  it('1. pipelined 1 MB request behind an in-flight chat: reading resumes, both 200 in order', T, async () => {
    await withPonder((fake) => configFor(fake, { limits: { idle_timeout_ms: 5000 }, routes: PASS_ROUTE }), async (p, fake) => {
      fake.script({ content: 'first reply', delay_ms: 300 });
      const small = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
      const big = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(1 << 20) + ' tail' }] });
      const c = new RawClient(p.port);
      try {
        await c.connected;
        const t0 = Date.now();
        c.write(post('/v1/chat/completions', small) + post('/v1/chat/completions', big));
        const rs = await c.responses(2, [], 4500, 'both pipelined responses');
        const elapsed = Date.now() - t0;
        assert.ok(elapsed < 3000, `second answer took ${elapsed} ms (idle_timeout_ms is 5000)`);
        assert.deepEqual(rs.map((r) => r.status), [200, 200], rs.map((r) => r.head).join('\n\n'));
        const j1 = JSON.parse(rs[0].body.toString('utf8'));
        const j2 = JSON.parse(rs[1].body.toString('utf8'));
        assert.equal(j1.choices[0].message.content, 'first reply');
        assert.match(j2.choices[0].message.content, /^Answer to: .* tail$/);
        assert.equal(rs.length, 2);
      } finally {
        c.destroy();
      }
    });
  });

  it('2. GET with Connection: Upgrade / Upgrade: h2c gets one 200 and the connection keeps serving', T, async () => {
    await withPonder((fake) => configFor(fake), async (p) => {
      const c = new RawClient(p.port);
      try {
        await c.connected;
        c.write(get('/healthz', 'connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n') +
                get('/healthz'));
        const rs = await c.responses(2, [], 3000, 'two /healthz responses');
        assert.deepEqual(rs.map((r) => r.status), [200, 200], rs.map((r) => r.head).join('\n\n'));
        assert.deepEqual(JSON.parse(rs[0].body.toString()), { status: 'ok' });
        assert.deepEqual(JSON.parse(rs[1].body.toString()), { status: 'ok' });
        // Nothing more arrives (no extra 400) and the connection stays open.
        await sleep(500);
        const after = c.parse([]);
        assert.equal(after.garbage, null);
        assert.equal(after.responses.length, 2, 'exactly two responses');
        assert.equal(c.data.length, rs[1].end, 'no bytes after the second response');
        assert.equal(c.closed, false, 'connection still open');
        // And it still serves a third request.
        c.write(get('/healthz'));
        const rs3 = await c.responses(3, [], 3000, 'third response');
        assert.equal(rs3[2].status, 200);
      } finally {
        c.destroy();
      }
    });
  });

  it('3. HEAD: pass-through answers promptly; ponder\'s own 405 has no body', T, async () => {
    await withPonder((fake) => {
      const cfg = configFor(fake);
      cfg.upstreams[0].timeout_ms = 10000;
      return cfg;
    }, async (p, fake) => {
      // HEAD passed through to the fake's /v1/* echo, then a GET on the same socket.
      const c = new RawClient(p.port);
      try {
        await c.connected;
        const t0 = Date.now();
        c.write(`HEAD /v1/files HTTP/1.1\r\nhost: x\r\n\r\n` + get('/healthz'));
        const rs = await c.responses(2, ['HEAD', 'GET'], 4000, 'HEAD /v1/files then GET /healthz');
        const elapsed = Date.now() - t0;
        assert.ok(elapsed < 2000, `took ${elapsed} ms (upstream timeout_ms 10000)`);
        assert.equal(rs[0].status, 200, rs[0].head);
        assert.equal(rs[1].status, 200, rs[1].head);
        assert.deepEqual(JSON.parse(rs[1].body.toString()), { status: 'ok' });
        const log = await (await fetch(`${fake.url}/_fake/log`)).json();
        assert.ok(log.some((e) => e.method === 'HEAD' && e.path.endsWith('/v1/files')),
          `fake saw ${JSON.stringify(log.map((e) => [e.method, e.path]))}`);
      } finally {
        c.destroy();
      }
      // HEAD /healthz: 405, headers only, then the next response starts right after.
      const d = new RawClient(p.port);
      try {
        await d.connected;
        d.write(`HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n` + get('/healthz'));
        const rs = await d.responses(2, ['HEAD', 'GET'], 3000, 'HEAD /healthz then GET /healthz');
        assert.equal(rs[0].status, 405, rs[0].head);
        assert.equal(rs[1].start, rs[0].end, 'no body bytes after the HEAD response head');
        assert.equal(rs[1].status, 200, rs[1].head);
        assert.deepEqual(JSON.parse(rs[1].body.toString()), { status: 'ok' });
        await sleep(200);
        assert.equal(d.data.length, rs[1].end, 'no stray bytes');
      } finally {
        d.destroy();
      }
    });
  });

  it('4. a passed-through 204 has no body framing and keep-alive continues', T, async () => {
    const up = await startTinyUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.method === 'DELETE' && req.url === '/v1/things/1') { res.statusCode = 204; res.end(); }
        else { res.statusCode = 404; res.setHeader('content-type', 'application/json'); res.end('{"error":{"message":"no"}}'); }
      });
    });
    try {
      await withPonder(() => upstreamCfg(up), async (p) => {
        // Raw socket: DELETE then GET pipelined.
        const c = new RawClient(p.port);
        try {
          await c.connected;
          c.write(`DELETE /v1/things/1 HTTP/1.1\r\nhost: x\r\n\r\n` + get('/healthz'));
          const rs = await c.responses(2, ['DELETE', 'GET'], 3000, '204 then 200');
          assert.equal(rs[0].status, 204, rs[0].head);
          assert.equal(rs[0].headers['transfer-encoding'], undefined, rs[0].head);
          assert.equal(rs[0].headers['content-length'], undefined, rs[0].head);
          assert.equal(rs[1].start, rs[0].end);
          assert.equal(rs[1].status, 200, rs[1].head);
          assert.deepEqual(JSON.parse(rs[1].body.toString()), { status: 'ok' });
          await sleep(200);
          assert.equal(c.data.length, rs[1].end, 'no stray bytes (e.g. "0\\r\\n\\r\\n")');
        } finally {
          c.destroy();
        }
        // node:http keep-alive agent: the next request reuses the socket and parses fine.
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        const doReq = (method, path) => new Promise((resolve, reject) => {
          const rq = http.request({ host: '127.0.0.1', port: p.port, method, path, agent }, (r) => {
            const parts = [];
            r.on('data', (d) => parts.push(d));
            r.on('end', () => resolve({ status: r.statusCode, headers: r.headers,
              body: Buffer.concat(parts).toString(), reused: rq.reusedSocket }));
          });
          rq.on('error', reject);
          rq.end();
        });
        try {
          const r1 = await doReq('DELETE', '/v1/things/1');
          assert.equal(r1.status, 204);
          assert.equal(r1.headers['transfer-encoding'], undefined);
          assert.equal(r1.body, '');
          await sleep(100); // let any stray bytes arrive on the pooled socket
          const r2 = await doReq('GET', '/healthz');
          assert.equal(r2.status, 200);
          assert.deepEqual(JSON.parse(r2.body), { status: 'ok' });
          assert.equal(r2.reused, true, 'keep-alive socket reused');
        } finally {
          agent.destroy();
        }
        assert.ok(up.log.filter((e) => e.method === 'DELETE' && e.path === '/v1/things/1').length >= 2);
      }, { fake: false });
    } finally {
      await up.close();
    }
  });

  it('5. a client that resets while ponder is not reading is noticed (inflight back to 0)', T, async () => {
    await withPonder((fake) => {
      const cfg = configFor(fake, { routes: PASS_ROUTE, shutdown_grace_ms: 2000 });
      cfg.upstreams[0].timeout_ms = 0;
      return cfg;
    }, async (p, fake) => {
      fake.script({ tokens: 2000000 }, { tokens: 2000000 });
      const b = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      const extra = 'x'.repeat(400 * 1024);
      const s = net.connect(p.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.pause(); // never read: ponder's output to us backs up
      s.write(post('/v1/chat/completions', b) +
        `POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-length: ${extra.length}\r\n\r\n${extra}`);
      // Wait until the stream is in flight and its output is stuck.
      const inflight = (t) => metricValue(t, /^ponder_inflight_requests (\d+(?:\.\d+)?)$/);
      const t0 = Date.now();
      while (inflight(await metricsText(p)) !== 1) {
        assert.ok(Date.now() - t0 < 5000, 'stream never became in flight');
        await sleep(50);
      }
      await sleep(1000);
      assert.equal(inflight(await metricsText(p)), 1, 'stream still in flight before the reset');
      s.resetAndDestroy();
      const t1 = Date.now();
      let text = '';
      for (;;) {
        text = await metricsText(p);
        const disc = metricValue(text, /^ponder_client_disconnects_total (\d+(?:\.\d+)?)$/);
        if (inflight(text) === 0 && disc >= 1) break;
        if (Date.now() - t1 > 3000) {
          assert.fail('after reset: ' + text.split('\n')
            .filter((l) => /^ponder_(inflight_requests|client_disconnects_total) /.test(l)).join(' | '));
        }
        await sleep(100);
      }
      assert.ok(Date.now() - t1 < 3000);
    });
  });

  it('6. a large non-stream reply read by a client pausing past idle_timeout_ms arrives whole', T, async () => {
    // A non-stream chat reply is relayed in one piece: after it is queued the request is done and
    // the connection is "idle" while megabytes still wait for the paused reader.
    const content = 'word '.repeat(3 * 1024 * 1024).trimEnd(); // ~15 MB
    const reply = Buffer.from(JSON.stringify({
      id: 'chatcmpl-big', object: 'chat.completion', created: 0, model: 'm',
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 1, completion_tokens: 3 * 1024 * 1024, total_tokens: 3 * 1024 * 1024 + 1 },
    }));
    const up = await startTinyUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': reply.length });
        res.end(reply);
      });
    });
    try {
      await withPonder(() => {
        const cfg = upstreamCfg(up, { timeout_ms: 10000, limits: { idle_timeout_ms: 1000 } });
        cfg.routes = PASS_ROUTE;
        cfg.shutdown_grace_ms = 2000;
        return cfg;
      }, async (p) => {
        const c = new RawClient(p.port);
        try {
          await c.connected;
          c.write(post('/v1/chat/completions',
            JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'big please' }] })));
          await c.until(() => c.size > 0, 5000, 'first bytes');
          c.sock.pause();
          // Longer than idle_timeout_ms (1000) but under two timer periods, so both an
          // "idle means nothing queued" and a "close only a reader that makes no progress for a
          // whole period" policy must deliver everything. (The periods start when the reply is
          // queued, a little before the first bytes arrive here: a slow machine, such as an
          // ASan build under load, may take up to ~700 ms for that and still pass.)
          await sleep(1300);
          c.sock.resume();
          const rs = await c.responses(1, ['POST'], 8000, 'the whole ~15 MB body');
          assert.equal(rs[0].status, 200, rs[0].head);
          const j = JSON.parse(rs[0].body.toString('utf8'));
          assert.equal(j.choices[0].message.content.length, content.length);
        } finally {
          c.destroy();
        }
      }, { fake: false });
    } finally {
      await up.close();
    }
  });

  it('7. access log and metrics count ponder\'s own 404 and 405 replies', T, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ponder-reg-'));
    const logPath = join(dir, 'access.log');
    try {
      await withPonder((fake) => configFor(fake, { log: { level: 'warn', access_log: logPath } }), async (p) => {
        const r404 = await fetch(`${p.url}/no/such/path`);
        assert.equal(r404.status, 404);
        await r404.text();
        const r405 = await fetch(`${p.url}/healthz`, { method: 'POST', body: '{}' });
        assert.equal(r405.status, 405);
        await r405.text();

        let entries = [];
        const t0 = Date.now();
        for (;;) {
          const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
          entries = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
          if (entries.some((e) => e.status === 404) && entries.some((e) => e.status === 405)) break;
          if (Date.now() - t0 > 3000) assert.fail(`access log: ${text}`);
          await sleep(50);
        }
        const e404 = entries.find((e) => e.status === 404);
        const e405 = entries.find((e) => e.status === 405);
        assert.equal(e404.path, '/no/such/path');
        assert.equal(e404.method, 'GET');
        assert.equal(e405.path, '/healthz');
        assert.equal(e405.method, 'POST');

        const m = await metricsText(p);
        const n404 = metricValue(m, /^ponder_requests_total\{[^}]*code="404"[^}]*\} (\d+(?:\.\d+)?)$/);
        assert.ok(n404 >= 1, `ponder_requests_total code 404: ${n404}\n` +
          m.split('\n').filter((l) => l.startsWith('ponder_requests_total')).join('\n'));
        const n405 = metricValue(m, /^ponder_requests_total\{[^}]*code="405"[^}]*\} (\d+(?:\.\d+)?)$/);
        assert.ok(n405 >= 1, `ponder_requests_total code 405: ${n405}`);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
