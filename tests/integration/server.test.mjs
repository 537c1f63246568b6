// Integration tests: ponder's HTTP server and proxy behaviour (SPEC sections 2-4).
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/server.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { startFake, startPonder, configFor, rawHttp, parseSSE, sleep, chat, httpReq, waitFor, closedPort, parseResponses } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

// ---------------------------------------------------------------------------
// helpers

const T = { timeout: 10000 };
const MSG = [{ role: 'user', content: 'What is two plus two?' }];

/** Asserts the OpenAI error shape and returns the error object. */
function assertOpenAIError(json, { type, code, param } = {}) {
  assert.ok(json && typeof json === 'object', 'error body must be JSON');
  assert.ok(json.error && typeof json.error === 'object', 'body must have an "error" object: ' + JSON.stringify(json));
  const e = json.error;
  for (const k of ['message', 'type', 'param', 'code']) assert.ok(k in e, `error.${k} missing: ${JSON.stringify(json)}`);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  assert.ok(e.param === null || typeof e.param === 'string');
  assert.ok(e.code === null || typeof e.code === 'string');
  if (type !== undefined) assert.equal(e.type, type);
  if (code !== undefined) assert.equal(e.code, code);
  if (param !== undefined) assert.equal(e.param, param);
  return e;
}

async function get(url, headers = {}) {
  const r = await fetch(url, { headers });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}


/** POSTs JSON and collects the response text, tolerating an aborted/terminated body. */
async function streamText(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
  } catch { /* connection closed mid-body */ }
  return { status: res.status, headers: res.headers, text };
}

async function metrics(p) {
  const r = await httpReq(p.port, { path: '/metrics', headers: { connection: 'close' } });
  assert.equal(r.status, 200);
  return r.text;
}

/** Sum of the samples of a metric whose labels contain every `labels` pair. */
function metricValue(text, name, labels = {}) {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const lbl = m[2] || '';
    if (!Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`))) continue;
    sum += Number(m[3]);
    found = true;
  }
  return found ? sum : null;
}


/** A raw client socket that collects bytes and knows when it was closed. */
class RawConn {
  constructor(port) {
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.error = null;
    this.waiters = [];
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setNoDelay(true);
    this.ready = new Promise((res, rej) => {
      this.sock.once('connect', res);
      this.sock.once('error', rej);
    });
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.kick(); });
    this.sock.on('error', (e) => { this.error = e; });
    this.sock.on('close', () => { this.closed = true; this.kick(); });
  }
  kick() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  write(data) { this.sock.write(data); }
  /** Resolves with `n` parsed responses (or fewer when the socket closed / timed out). */
  async responses(n, timeoutMs = 3000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const { responses } = parseResponses(this.buf);
      if (responses.length >= n || this.closed || Date.now() > end) {
        const parsed = parseResponses(this.buf);
        this.buf = parsed.rest;
        return parsed.responses;
      }
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
  }
  /** Resolves true when the peer closed within timeoutMs. */
  async waitClosed(timeoutMs = 3000) {
    const end = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < end) await new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); });
    return this.closed;
  }
  destroy() { this.sock.destroy(); }
}

function reqText(method, path, { headers = {}, body = null, close = false } = {}) {
  let s = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  if (body != null) s += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  if (close) s += 'Connection: close\r\n';
  return s + '\r\n' + (body ?? '');
}

function chatBody(extra = {}) {
  return JSON.stringify({ model: 'fake-model', messages: MSG, ...extra });
}

async function assertHealthy(p) {
  const r = await httpReq(p.port, { path: '/healthz', headers: { connection: 'close' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { status: 'ok' });
}

/** A raw upstream that records the exact request head bytes and answers a fixed chat completion. */
async function startRawUpstream() {
  const heads = [];
  const socks = new Set();
  const reply = JSON.stringify({
    id: 'chatcmpl-raw', object: 'chat.completion', created: 0, model: 'raw',
    choices: [{ index: 0, message: { role: 'assistant', content: 'raw answer' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  });
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const he = buf.indexOf('\r\n\r\n');
        if (he < 0) return;
        const head = buf.subarray(0, he).toString('latin1');
        const cl = Number((head.match(/\r\ncontent-length:\s*(\d+)/i) || [])[1] || 0);
        if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
          const end = buf.indexOf('\r\n0\r\n\r\n', he);
          if (end < 0) return;
          heads.push(head);
          buf = buf.subarray(end + 7);
        } else {
          if (buf.length < he + 4 + cl) return;
          heads.push(head);
          buf = buf.subarray(he + 4 + cl);
        }
        s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(reply)}\r\n\r\n${reply}`);
      }
    });
    s.on('error', () => {});
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    heads,
    headerValues(head, name) {
      return head.split('\r\n').slice(1).filter((l) => l.toLowerCase().startsWith(name.toLowerCase() + ':'))
        .map((l) => l.slice(l.indexOf(':') + 1).trim());
    },
    close: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }),
  };
}

async function stopOk(p) {
  const { code, sig } = await p.stop();
  assert.equal(sig, null, 'ponder was killed by a signal:\n' + p.output());
  assert.equal(code, 0, 'ponder exit code after SIGTERM:\n' + p.output());
}

// ---------------------------------------------------------------------------
// 1. basic HTTP server behaviour

describe('HTTP server', () => {
  let fake;
  let p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        limits: { max_body_bytes: 4096, max_header_bytes: 8192, header_timeout_ms: 300 },
        routes: [
          { name: 'mapped', match: { models: ['alias-model'] }, model: 'real-model', allow_overrides: true,
            forcing: { rounds: 0 } },
          { name: 'declared', match: { models: ['declared-a', 'declared-b'] }, forcing: { rounds: 0 } },
          { name: 'plain', forcing: { rounds: 0 } },
        ],
      }),
    });
  });
  after(async () => {
    await stopOk(p);
    await fake.close();
  });

  it('GET /healthz returns 200 {"status":"ok"} with an x-request-id', T, async () => {
    const r = await get(`${p.url}/healthz`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
    assert.match(r.headers.get('content-type') || '', /application\/json/);
    assert.ok(r.headers.get('x-request-id'), 'x-request-id missing');
  });

  it('x-request-id: generated when absent, unique, on every kind of response', T, async () => {
    const a = await get(`${p.url}/healthz`);
    const b = await get(`${p.url}/healthz`);
    const idA = a.headers.get('x-request-id');
    const idB = b.headers.get('x-request-id');
    assert.ok(idA && idB);
    assert.notEqual(idA, idB);
    assert.match(idA, /^[\x21-\x7e]{1,128}$/);
    const responses = [
      await get(`${p.url}/metrics`),
      await get(`${p.url}/nope`),
      await get(`${p.base}/chat/completions`),
      await chat(p.base, '{bad json'),
      await chat(p.base, { model: 'fake-model', messages: MSG }),
      await get(`${p.base}/models`),
    ];
    for (const r of responses) assert.ok(r.headers.get('x-request-id'), `status ${r.status} lacks x-request-id`);
  });

  it('x-request-id: a valid client id is echoed (and forwarded upstream)', T, async () => {
    fake.reset();
    const id = 'client-id_123.abc:XYZ~!';
    const h = await get(`${p.url}/healthz`, { 'x-request-id': id });
    assert.equal(h.headers.get('x-request-id'), id);
    const max = 'r'.repeat(128);
    assert.equal((await get(`${p.url}/healthz`, { 'x-request-id': max })).headers.get('x-request-id'), max);
    const c = await chat(p.base, { model: 'fake-model', messages: MSG }, { 'x-request-id': id });
    assert.equal(c.status, 200);
    assert.equal(c.headers.get('x-request-id'), id);
    assert.equal(fake.log.length, 1);
    assert.equal(fake.log[0].headers['x-request-id'], id);
    const e = await chat(p.base, '{bad', { 'x-request-id': id });
    assert.equal(e.status, 400);
    assert.equal(e.headers.get('x-request-id'), id);
  });

  it('x-request-id: an invalid or too long client id is replaced', T, async () => {
    const bad = ['r'.repeat(129), 'has space', 'tab\there', 'caf\u00e9'];
    for (const id of bad) {
      const r = await get(`${p.url}/healthz`, { 'x-request-id': id });
      assert.equal(r.status, 200);
      const got = r.headers.get('x-request-id');
      assert.ok(got, 'x-request-id missing');
      assert.notEqual(got, id, `invalid id ${JSON.stringify(id)} echoed`);
      assert.match(got, /^[\x21-\x7e]{1,128}$/);
    }
  });

  it('keep-alive: several sequential requests on one socket', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    try {
      for (let i = 0; i < 4; i++) {
        const body = i % 2 ? chatBody() : null;
        c.write(body ? reqText('POST', '/v1/chat/completions', { headers: { 'Content-Type': 'application/json' }, body })
          : reqText('GET', '/healthz'));
        const [r] = await c.responses(1);
        assert.ok(r, `no response #${i}`);
        assert.equal(r.status, 200);
        if (body) assert.equal(r.json.object, 'chat.completion');
        else assert.deepEqual(r.json, { status: 'ok' });
        assert.equal(c.closed, false, 'server closed a keep-alive connection');
      }
    } finally {
      c.destroy();
    }
  });

  it('pipelining: 3 requests written at once get 3 responses in order', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    try {
      c.write(
        reqText('GET', '/healthz', { headers: { 'X-Request-Id': 'pipe-1' } }) +
        reqText('POST', '/v1/chat/completions', { headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'pipe-2' },
          body: chatBody({ messages: [{ role: 'user', content: 'pipelined second request' }] }) }) +
        reqText('GET', '/nope', { headers: { 'X-Request-Id': 'pipe-3' } }),
      );
      const rs = await c.responses(3);
      assert.equal(rs.length, 3, 'expected 3 responses');
      assert.equal(rs[0].status, 200);
      assert.deepEqual(rs[0].json, { status: 'ok' });
      assert.equal(rs[0].headers['x-request-id'], 'pipe-1');
      assert.equal(rs[1].status, 200);
      assert.match(rs[1].json.choices[0].message.content, /pipelined second request/);
      assert.equal(rs[1].headers['x-request-id'], 'pipe-2');
      assert.equal(rs[2].status, 404);
      assertOpenAIError(rs[2].json);
      assert.equal(rs[2].headers['x-request-id'], 'pipe-3');
    } finally {
      c.destroy();
    }
  });

  it('chunked request body to /v1/chat/completions works', T, async () => {
    fake.reset();
    const body = chatBody({ messages: [{ role: 'user', content: 'chunked body arrives intact' }] });
    const parts = [body.slice(0, 10), body.slice(10, 25), body.slice(25)];
    let raw = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
    for (const part of parts) raw += `${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`;
    raw += '0\r\n\r\n';
    const c = new RawConn(p.port);
    await c.ready;
    c.write(raw);
    const [r] = await c.responses(1);
    c.destroy();
    assert.ok(r, 'no response');
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.choices[0].message.content, /chunked body arrives intact/);
    assert.equal(fake.log.length, 1);
    assert.deepEqual(fake.log[0].body.messages, [{ role: 'user', content: 'chunked body arrives intact' }]);
  });

  it('413 for a Content-Length body over max_body_bytes, then still serving', T, async () => {
    const big = chatBody({ messages: [{ role: 'user', content: 'x'.repeat(6000) }] });
    const c = new RawConn(p.port);
    await c.ready;
    c.write(reqText('POST', '/v1/chat/completions', { headers: { 'Content-Type': 'application/json' }, body: big }));
    const [r] = await c.responses(1);
    c.destroy();
    assert.ok(r, 'no response');
    assert.equal(r.status, 413);
    assertOpenAIError(r.json);
    assert.ok(r.headers['x-request-id']);
    await assertHealthy(p);
  });

  it('413 for a chunked body over max_body_bytes, then still serving', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    let raw = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      'Transfer-Encoding: chunked\r\n\r\n';
    const piece = 'y'.repeat(1000);
    for (let i = 0; i < 8; i++) raw += `${piece.length.toString(16)}\r\n${piece}\r\n`;
    raw += '0\r\n\r\n';
    c.write(raw);
    const [r] = await c.responses(1);
    c.destroy();
    assert.ok(r, 'no response');
    assert.equal(r.status, 413);
    assertOpenAIError(r.json);
    await assertHealthy(p);
  });

  it('431 for a request head over max_header_bytes, then still serving', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    c.write(reqText('GET', '/healthz', { headers: { 'X-Huge': 'h'.repeat(20000) } }));
    const [r] = await c.responses(1);
    c.destroy();
    assert.ok(r, 'no response');
    assert.equal(r.status, 431);
    assertOpenAIError(r.json);
    await assertHealthy(p);
  });

  it('408 request_timeout when the head does not arrive within header_timeout_ms, then close', T, async () => {
    const c = new RawConn(p.port);
    await c.ready;
    const t0 = Date.now();
    c.write('GET /heal');
    const closed = await c.waitClosed(3000);
    const elapsed = Date.now() - t0;
    const rs = parseResponses(c.buf).responses;
    c.destroy();
    assert.ok(closed, 'connection was not closed after header_timeout_ms');
    assert.ok(elapsed >= 250, `closed too early (${elapsed} ms)`);
    assert.equal(rs.length, 1, 'expected one 408 response, got: ' + c.buf.toString());
    assert.equal(rs[0].status, 408);
    assertOpenAIError(rs[0].json, { code: 'request_timeout' });
    await assertHealthy(p);
  });

  it('malformed HTTP gets 400 and the connection is closed', T, async () => {
    for (const junk of ['THIS IS NOT HTTP\r\n\r\n', 'GET /healthz HTTP/1.1\r\nbad header line without colon\r\n\r\n',
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n']) {
      const c = new RawConn(p.port);
      await c.ready;
      c.write(junk);
      const closed = await c.waitClosed(2000);
      const rs = parseResponses(c.buf).responses;
      c.destroy();
      assert.ok(closed, `connection not closed after ${JSON.stringify(junk)}`);
      assert.equal(rs.length, 1, `expected one response to ${JSON.stringify(junk)}`);
      assert.equal(rs[0].status, 400);
      assertOpenAIError(rs[0].json);
    }
    await assertHealthy(p);
  });

  it('malformed JSON → 400 invalid_request_error', T, async () => {
    const r = await chat(p.base, '{"model": "fake-model", "messages": [');
    assert.equal(r.status, 400);
    assertOpenAIError(r.json, { type: 'invalid_request_error' });
  });

  it('missing / empty / non-array messages → 400 with param "messages"', T, async () => {
    for (const body of [{ model: 'fake-model' }, { model: 'fake-model', messages: [] },
      { model: 'fake-model', messages: 'hello' }]) {
      const r = await chat(p.base, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assertOpenAIError(r.json, { type: 'invalid_request_error', param: 'messages' });
    }
  });

  it('a bad field type (n: "x") → 400 invalid_request_error', T, async () => {
    fake.reset();
    const r = await chat(p.base, { model: 'fake-model', messages: MSG, n: 'x' });
    assert.equal(r.status, 400);
    assertOpenAIError(r.json, { type: 'invalid_request_error' });
    const r2 = await chat(p.base, { model: 'fake-model', messages: MSG, stream: 'yes' });
    assert.equal(r2.status, 400);
    assertOpenAIError(r2.json, { type: 'invalid_request_error' });
    const r3 = await chat(p.base, '[1,2,3]');
    assert.equal(r3.status, 400);
    assertOpenAIError(r3.json, { type: 'invalid_request_error' });
    assert.equal(fake.log.length, 0, 'invalid requests must not reach the upstream');
  });

  it('unknown path → 404; wrong method → 405 (OpenAI error shape)', T, async () => {
    const r = await get(`${p.url}/nope`);
    assert.equal(r.status, 404);
    assertOpenAIError(r.json);
    const r2 = await get(`${p.url}/v2/chat/completions`);
    assert.equal(r2.status, 404);
    assertOpenAIError(r2.json);
    const m = await get(`${p.base}/chat/completions`);
    assert.equal(m.status, 405);
    assertOpenAIError(m.json);
    const m2 = await httpReq(p.port, { method: 'DELETE', path: '/v1/chat/completions' });
    assert.equal(m2.status, 405);
    assertOpenAIError(m2.json);
  });

  it('GET /v1/models: the upstream list plus declared route models', T, async () => {
    const r = await get(`${p.base}/models`);
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'list');
    const ids = r.json.data.map((m) => m.id);
    for (const id of ['fake-model', 'alias-model', 'declared-a', 'declared-b']) assert.ok(ids.includes(id), `${id} missing: ${ids}`);
    assert.equal(ids.filter((x) => x === 'declared-a').length, 1);
    for (const m of r.json.data) assert.equal(m.object, 'model');
  });

  it('pass-through: POST /v1/embeddings relays method, query, body and status', T, async () => {
    fake.reset();
    const body = '{"model":"text-embedding-3-small","input":["a","b"],"x":1.50}';
    const r = await httpReq(p.port, { method: 'POST', path: '/v1/embeddings?foo=bar&x=%20y',
      headers: { 'content-type': 'application/json' }, body });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.method, 'POST');
    assert.equal(r.json.path, '/v1/embeddings');
    assert.equal(r.json.query, 'foo=bar&x=%20y');
    assert.equal(r.json.body, body, 'body must be relayed byte for byte');
    assert.ok(r.headers['x-request-id']);
    const d = await httpReq(p.port, { method: 'DELETE', path: '/v1/files/file-abc' });
    assert.equal(d.status, 200);
    assert.equal(d.json.method, 'DELETE');
    assert.equal(d.json.path, '/v1/files/file-abc');
    fake.fault({ status: 418, message: 'teapot says no', code: 'teapot' });
    try {
      const e = await httpReq(p.port, { method: 'POST', path: '/v1/embeddings', headers: { 'content-type': 'application/json' }, body });
      assert.equal(e.status, 418);
      assert.equal(e.json.error.message, 'teapot says no');
      assert.equal(e.json.error.code, 'teapot');
    } finally {
      fake.reset();
    }
  });

  it('headers forwarded upstream per SPEC 4 (and hop-by-hop / custom ones not)', T, async () => {
    fake.reset();
    const headers = {
      'content-type': 'application/json',
      accept: 'application/json',
      'openai-organization': 'org-test',
      'openai-project': 'proj-test',
      'x-request-id': 'fwd-req-1',
      connection: 'keep-alive, x-hop-marker',
      'x-hop-marker': 'hop',
      te: 'trailers',
      upgrade: 'websocket',
      'keep-alive': 'timeout=5',
      'proxy-authorization': 'Basic cHJveHk6c2VjcmV0',
      'x-custom': 'custom-value',
    };
    for (const [path, body] of [['/v1/chat/completions', chatBody()], ['/v1/embeddings', '{"input":"x"}']]) {
      fake.reset();
      const r = await httpReq(p.port, { method: 'POST', path, headers, body });
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.equal(fake.log.length, 1);
      const h = fake.log[0].headers;
      assert.match(h['content-type'] || '', /^application\/json/, path);
      assert.equal(h.accept, 'application/json', path);
      assert.equal(h['openai-organization'], 'org-test', path);
      assert.equal(h['openai-project'], 'proj-test', path);
      assert.equal(h['x-request-id'], 'fwd-req-1', path);
      assert.equal(h['x-custom'], undefined, `${path}: x-custom forwarded`);
      assert.equal(h['x-hop-marker'], undefined, `${path}: header named in Connection forwarded`);
      assert.equal(h.te, undefined, `${path}: te forwarded`);
      assert.equal(h.upgrade, undefined, `${path}: upgrade forwarded`);
      assert.equal(h['keep-alive'], undefined, `${path}: keep-alive forwarded`);
      assert.equal(h['proxy-authorization'], undefined, `${path}: proxy-authorization forwarded`);
      assert.ok(!/x-hop-marker/i.test(h.connection || ''), `${path}: client connection header forwarded`);
    }
  });

  it('rounds 0: exactly one upstream call with the client body (ponder field removed, model mapped)', T, async () => {
    fake.reset();
    const client = {
      model: 'alias-model', messages: MSG, temperature: 0.3, top_p: 0.9, seed: 7, user: 'u-1',
      max_tokens: 50, stop: ['END'], custom_field: { a: [1, 2] }, ponder: { rounds: 0 },
    };
    const r = await chat(p.base, client);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-ponder-route'), 'mapped');
    assert.equal(r.headers.get('x-ponder-rounds'), '0');
    assert.equal(fake.log.length, 1, 'exactly one upstream call');
    const up = fake.log[0];
    assert.equal(up.method, 'POST');
    assert.equal(up.path, '/v1/chat/completions');
    const expected = { ...client, model: 'real-model' };
    delete expected.ponder;
    assert.deepEqual(up.body, expected);
    assert.equal(r.json.model, 'alias-model', 'SPEC 5: the response carries the model the client asked for');

    fake.reset();
    const plain = { model: 'whatever-model', messages: MSG, temperature: 1, logprobs: false, n: 1 };
    const r2 = await chat(p.base, plain);
    assert.equal(r2.status, 200);
    assert.equal(r2.headers.get('x-ponder-route'), 'plain');
    assert.equal(r2.headers.get('x-ponder-variant'), 'default');
    assert.equal(r2.headers.get('x-ponder-rounds'), '0');
    assert.equal(fake.log.length, 1);
    assert.deepEqual(fake.log[0].body, plain, 'without a route model the body goes upstream as it is');
    assert.equal(r2.json.choices[0].message.content, 'Answer to: What is two plus two?');
  });

  it('rounds 0 with a mapped model: every SSE chunk carries the model the client asked for', T, async () => {
    fake.reset();
    const { status, text } = await streamText(`${p.base}/chat/completions`,
      { model: 'alias-model', messages: MSG, stream: true });
    assert.equal(status, 200);
    assert.equal(fake.log[0].body.model, 'real-model');
    const events = parseSSE(text).filter((e) => e !== '[DONE]');
    assert.ok(events.length > 2);
    for (const e of events) assert.equal(e.model, 'alias-model', 'SPEC 5: chunks carry the requested model');
  });

  it('rounds 0: SSE is passed through chunk by chunk', T, async () => {
    fake.reset();
    fake.script({ tokens: 20, token_delay_ms: 60 });
    const t0 = Date.now();
    const res = await fetch(`${p.base}/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: chatBody({ stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') || '', /text\/event-stream/);
    assert.ok(res.headers.get('x-request-id'));
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = '';
    let firstAt = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const s = dec.decode(value, { stream: true });
      if (firstAt === null && s.includes('data:')) firstAt = Date.now() - t0;
      text += s;
    }
    const total = Date.now() - t0;
    assert.ok(firstAt !== null, 'no data received');
    assert.ok(total >= 1000, `stream too fast (${total} ms) for 22 events x 60 ms`);
    assert.ok(firstAt < total - 700, `first chunk at ${firstAt} ms, stream ended at ${total} ms: not streamed`);
    const events = parseSSE(text);
    assert.equal(events.at(-1), '[DONE]');
    const content = events.filter((e) => e !== '[DONE]').map((e) => e.choices?.[0]?.delta?.content ?? '').join('');
    assert.equal(content, Array.from({ length: 20 }, (_, i) => `tok${i}`).join(' '));
    assert.equal(fake.log.length, 1);
  });
});

// ---------------------------------------------------------------------------
// 2. auth

describe('auth', () => {
  let fake;
  let p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        auth: { keys: ['sk-client-good', 'sk-client-other'] },
        routes: [{ name: 'only', match: { models: ['m1'] }, forcing: { rounds: 0 } },
          { name: 'pre', match: { path_prefix: '/pre' }, forcing: { rounds: 0 } }],
      }),
    });
  });
  after(async () => {
    await stopOk(p);
    await fake.close();
  });

  it('no key or a bad key → 401 invalid_api_key; a good key → 200', T, async () => {
    const body = { model: 'm1', messages: MSG };
    const none = await chat(p.base, body);
    assert.equal(none.status, 401);
    assertOpenAIError(none.json, { code: 'invalid_api_key' });
    assert.ok(none.headers.get('x-request-id'));
    const bad = await chat(p.base, body, { authorization: 'Bearer sk-client-bad' });
    assert.equal(bad.status, 401);
    assertOpenAIError(bad.json, { code: 'invalid_api_key' });
    const prefix = await chat(p.base, body, { authorization: 'Bearer sk-client-goo' });
    assert.equal(prefix.status, 401, 'a prefix of a key must not be accepted');
    const noBearer = await chat(p.base, body, { authorization: 'sk-client-good' });
    assert.equal(noBearer.status, 401);
    const good = await chat(p.base, body, { authorization: 'Bearer sk-client-good' });
    assert.equal(good.status, 200, good.text);
    const other = await chat(p.base, body, { authorization: 'Bearer sk-client-other' });
    assert.equal(other.status, 200);
  });

  it('pass-through and /v1/models need the key too', T, async () => {
    const m = await get(`${p.base}/models`);
    assert.equal(m.status, 401);
    assertOpenAIError(m.json, { code: 'invalid_api_key' });
    const e = await httpReq(p.port, { method: 'POST', path: '/v1/embeddings', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(e.status, 401);
    // no catch-all route here, so the models list is asked through the prefixed route
    const ok = await get(`${p.url}/pre/v1/models`, { authorization: 'Bearer sk-client-good' });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.json.data.some((m) => m.id === 'm1'));
  });

  it('/healthz and /metrics need no key', T, async () => {
    const h = await get(`${p.url}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(h.json, { status: 'ok' });
    const m = await get(`${p.url}/metrics`);
    assert.equal(m.status, 200);
    assert.ok(!m.text.includes('sk-client-good'), 'secret in metrics');
  });

  it('an unknown model without a catch-all route → 404 model_not_found', T, async () => {
    const r = await chat(p.base, { model: 'not-declared', messages: MSG }, { authorization: 'Bearer sk-client-good' });
    assert.equal(r.status, 404);
    assertOpenAIError(r.json, { code: 'model_not_found' });
  });
});

// ---------------------------------------------------------------------------
// 3. upstream auth: api_key as Bearer when configured, else the client's Authorization; never both

describe('upstream authorization', () => {
  let raw;
  let p;
  before(async () => {
    raw = await startRawUpstream();
    p = await startPonder({
      config: {
        upstreams: [
          { name: 'keyed', base_url: `${raw.url}/v1`, api_key: 'sk-upstream-key', retries: 0, timeout_ms: 2000 },
          { name: 'open', base_url: `${raw.url}/v1`, retries: 0, timeout_ms: 2000 },
        ],
        log: { level: 'warn', access_log: 'off' },
        routes: [
          { name: 'keyed', match: { path_prefix: '/keyed' }, upstream: 'keyed', forcing: { rounds: 0 } },
          { name: 'open', upstream: 'open', forcing: { rounds: 0 } },
        ],
      },
    });
  });
  after(async () => {
    await stopOk(p);
    await raw.close();
  });

  const cases = [
    ['keyed chat', '/keyed/v1/chat/completions', 'Bearer sk-upstream-key'],
    ['keyed pass-through', '/keyed/v1/embeddings', 'Bearer sk-upstream-key'],
    ['open chat', '/v1/chat/completions', 'Bearer sk-from-client'],
    ['open pass-through', '/v1/embeddings', 'Bearer sk-from-client'],
  ];
  for (const [name, path, want] of cases) {
    it(`${name}: upstream gets exactly one Authorization "${want}"`, T, async () => {
      raw.heads.length = 0;
      const r = await httpReq(p.port, { method: 'POST', path, body: chatBody(),
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-from-client' } });
      assert.equal(r.status, 200, r.text);
      assert.equal(raw.heads.length, 1);
      assert.deepEqual(raw.headerValues(raw.heads[0], 'authorization'), [want]);
      assert.match(raw.heads[0], /^POST \/v1\/(chat\/completions|embeddings) HTTP\/1\.1/);
    });
  }

  it('open upstream, no client Authorization: none sent upstream', T, async () => {
    raw.heads.length = 0;
    const r = await httpReq(p.port, { method: 'POST', path: '/v1/chat/completions', body: chatBody(),
      headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200);
    assert.deepEqual(raw.headerValues(raw.heads[0], 'authorization'), []);
  });
});

// ---------------------------------------------------------------------------
// 4. upstream errors, timeouts, retries

describe('upstream errors', () => {
  let fake;
  let p;
  let deadPort;
  before(async () => {
    fake = await startFake();
    deadPort = await closedPort();
    const up = (name, extra) => ({ name, base_url: `${fake.url}/v1`, retries: 0, timeout_ms: 5000,
      connect_timeout_ms: 1000, ...extra });
    p = await startPonder({
      config: {
        upstreams: [
          up('fake'),
          up('short', { timeout_ms: 300 }),
          up('dead', { base_url: `http://127.0.0.1:${deadPort}/v1` }),
          up('retry', { retries: 2 }),
        ],
        log: { level: 'warn', access_log: 'off' },
        routes: [
          { name: 'short', match: { path_prefix: '/short' }, upstream: 'short', forcing: { rounds: 0 } },
          { name: 'dead', match: { path_prefix: '/dead' }, upstream: 'dead', forcing: { rounds: 0 } },
          { name: 'retry', match: { path_prefix: '/retry' }, upstream: 'retry', forcing: { rounds: 0 } },
          { name: 'forced', match: { path_prefix: '/forced' }, upstream: 'fake', forcing: { rounds: 2 } },
          { name: 'plain', upstream: 'fake', forcing: { rounds: 0 } },
        ],
      },
    });
  });
  after(async () => {
    await stopOk(p);
    await fake.close();
  });

  const body = { model: 'fake-model', messages: MSG };

  for (const [label, prefix] of [['rounds 0', ''], ['rounds 2', '/forced']]) {
    it(`${label}: upstream 429 with retry-after is relayed (status, body, header)`, T, async () => {
      fake.reset();
      fake.script({ status: 429, retry_after: 7, message: 'slow down please' });
      const r = await chat(`${p.url}${prefix}/v1`, body);
      assert.equal(r.status, 429);
      assert.deepEqual(r.json, { error: { message: 'slow down please', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } });
      assert.equal(r.headers.get('retry-after'), '7');
      assert.ok(r.headers.get('x-request-id'));
      assert.equal(fake.log.length, 1, 'retries: 0 means one call');
    });

    it(`${label}: upstream 500 OpenAI-shaped is relayed`, T, async () => {
      fake.reset();
      fake.script({ status: 500, message: 'the model is on fire', code: 'fire' });
      const r = await chat(`${p.url}${prefix}/v1`, body);
      assert.equal(r.status, 500);
      assert.deepEqual(r.json, { error: { message: 'the model is on fire', type: 'server_error', param: null, code: 'fire' } });
    });
  }

  it('upstream 400 OpenAI-shaped is relayed', T, async () => {
    fake.reset();
    fake.script({ status: 400, message: 'bad temperature', code: 'invalid_value' });
    const r = await chat(p.base, body);
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: { message: 'bad temperature', type: 'invalid_request_error', param: null, code: 'invalid_value' } });
  });

  for (const [label, prefix] of [['rounds 0', ''], ['rounds 2', '/forced']]) {
    it(`${label}: a non-JSON 5xx body → 502 upstream_error`, T, async () => {
      fake.reset();
      fake.script({ status: 503, plain_status_body: '<html>Service Unavailable</html>' });
      const r = await chat(`${p.url}${prefix}/v1`, body);
      assert.equal(r.status, 502);
      assertOpenAIError(r.json, { code: 'upstream_error' });
    });

    it(`${label}: invalid JSON with 200 → 502 upstream_error`, T, async () => {
      fake.reset();
      fake.script({ invalid_json: true });
      const r = await chat(`${p.url}${prefix}/v1`, body);
      assert.equal(r.status, 502, r.text);
      assertOpenAIError(r.json, { code: 'upstream_error' });
    });
  }

  it('a dead upstream (connection refused) → 502 quickly', T, async () => {
    const t0 = Date.now();
    const r = await chat(`${p.url}/dead/v1`, body);
    assert.equal(r.status, 502);
    assertOpenAIError(r.json, { code: 'upstream_error' });
    assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
    const pt = await httpReq(p.port, { method: 'POST', path: '/dead/v1/embeddings', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(pt.status, 502);
    assertOpenAIError(pt.json, { code: 'upstream_error' });
  });

  it('a hanging upstream with timeout_ms 300 → 504 upstream_timeout', T, async () => {
    fake.reset();
    fake.script({ hang: true });
    const t0 = Date.now();
    const r = await chat(`${p.url}/short/v1`, body);
    const dt = Date.now() - t0;
    assert.equal(r.status, 504);
    assertOpenAIError(r.json, { code: 'upstream_timeout' });
    assert.ok(dt >= 250 && dt < 2500, `took ${dt} ms`);
  });

  it('a hanging upstream stream with timeout_ms 300 → 504 upstream_timeout', T, async () => {
    fake.reset();
    fake.script({ hang: true });
    const r = await chat(`${p.url}/short/v1`, { ...body, stream: true });
    assert.equal(r.status, 504);
    assertOpenAIError(r.json, { code: 'upstream_timeout' });
  });

  it('an upstream that resets the connection → 502', T, async () => {
    fake.reset();
    fake.script({ reset: true });
    const r = await chat(p.base, body);
    assert.equal(r.status, 502);
    assertOpenAIError(r.json, { code: 'upstream_error' });
  });

  for (const [label, prefix] of [['rounds 0', ''], ['rounds 2', '/forced']]) {
    it(`${label}: a mid-stream upstream cut is an SSE error event without [DONE]`, T, async () => {
      fake.reset();
      fake.script({ tokens: 10, cut_after: 4 });
      const { status, text } = await streamText(`${p.url}${prefix}/v1/chat/completions`, { ...body, stream: true });
      assert.equal(status, 200);
      const events = parseSSE(text);
      assert.ok(!events.includes('[DONE]'), 'a failed stream must not end with [DONE]');
      const last = events.at(-1);
      assert.ok(last && last.error, 'last event must be an error: ' + text.slice(-300));
      assertOpenAIError(last);
      assert.equal(events.filter((e) => e.error).length, 1, 'exactly one error event');
    });
  }

  it('still serving after the errors', T, async () => {
    fake.reset();
    await assertHealthy(p);
    const r = await chat(p.base, body);
    assert.equal(r.status, 200);
    const r2 = await chat(`${p.url}/short/v1`, body);
    assert.equal(r2.status, 200);
  });

  it('retries: 2 with [503, 503, ok] → 200 after 3 calls', T, async () => {
    fake.reset();
    fake.script({ status: 503 }, { status: 503 }, {});
    const r = await chat(`${p.url}/retry/v1`, body);
    assert.equal(r.status, 200, r.text);
    assert.equal(fake.log.length, 3);
    for (const e of fake.log) assert.deepEqual(e.body, fake.log[0].body, 'a retry resends the same body');
  });

  it('retries: 2 with [503, 503, 503] → the last 503 is relayed after 3 calls', T, async () => {
    fake.reset();
    fake.script({ status: 503, message: 'm1' }, { status: 503, message: 'm2' }, { status: 503, message: 'm3' }, {});
    const r = await chat(`${p.url}/retry/v1`, body);
    assert.equal(r.status, 503);
    assertOpenAIError(r.json, { type: 'server_error' });
    assert.equal(fake.log.length, 3);
  });

  it('retries: a connect/reset error is retried', T, async () => {
    fake.reset();
    fake.script({ reset: true }, {});
    const r = await chat(`${p.url}/retry/v1`, body);
    assert.equal(r.status, 200);
    assert.equal(fake.log.length, 2);
  });

  it('retries: a 400 is not retried', T, async () => {
    fake.reset();
    fake.script({ status: 400 }, {});
    const r = await chat(`${p.url}/retry/v1`, body);
    assert.equal(r.status, 400);
    assert.equal(fake.log.length, 1);
  });

  it('retries: a 429 with retry-after 1 waits about a second', T, async () => {
    fake.reset();
    fake.script({ status: 429, retry_after: 1 }, {});
    const t0 = Date.now();
    const r = await chat(`${p.url}/retry/v1`, body);
    const dt = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.equal(fake.log.length, 2);
    const gap = fake.log[1].ts - fake.log[0].ts;
    assert.ok(gap >= 900, `retry after ${gap} ms, expected ≥ ~1000`);
    assert.ok(dt < 4000, `took ${dt} ms`);
  });
});

// ---------------------------------------------------------------------------
// 5. client disconnects

describe('client disconnect', () => {
  let fake;
  let p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, { routes: [{ name: 'plain', forcing: { rounds: 0 } },
      { name: 'forced', match: { path_prefix: '/forced' }, forcing: { rounds: 2 } }] }) });
  });
  after(async () => {
    await stopOk(p);
    await fake.close();
  });

  it('aborting a request to a hanging upstream counts a disconnect and frees the request', T, async () => {
    fake.reset();
    fake.script({ hang: true });
    const before0 = metricValue(await metrics(p), 'ponder_client_disconnects_total') ?? 0;
    const ac = new AbortController();
    const pr = fetch(`${p.base}/chat/completions`, { method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json' }, body: chatBody() }).catch((e) => e);
    await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
    assert.equal(metricValue(await metrics(p), 'ponder_inflight_requests'), 1);
    ac.abort();
    await pr;
    await waitFor(async () => {
      const m = await metrics(p);
      return metricValue(m, 'ponder_client_disconnects_total') >= before0 + 1 &&
        metricValue(m, 'ponder_inflight_requests') === 0;
    }, { what: 'disconnect counted and inflight 0' });
  });

  it('aborting a stream stops the upstream transfer', T, async () => {
    fake.reset();
    fake.script({ tokens: 400, token_delay_ms: 20 });
    const ac = new AbortController();
    const res = await fetch(`${p.base}/chat/completions`, { method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json' }, body: chatBody({ stream: true }) });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read();
    ac.abort();
    await reader.read().catch(() => {});
    await sleep(500);
    const e1 = fake.state.events;
    await sleep(500);
    const e2 = fake.state.events;
    assert.equal(e2, e1, `upstream kept streaming after the client left (${e1} → ${e2} events)`);
    assert.ok(e2 < 100, `upstream wrote ${e2} events`);
    await waitFor(async () => metricValue(await metrics(p), 'ponder_inflight_requests') === 0, { what: 'inflight 0' });
  });

  it('aborting a forced (rounds 2) stream stops the upstream transfer', T, async () => {
    fake.reset();
    fake.script({ tokens: 400, token_delay_ms: 20 });
    const base = fake.state.events;
    const ac = new AbortController();
    const res = await fetch(`${p.url}/forced/v1/chat/completions`, { method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json' }, body: chatBody({ stream: true }) });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read();
    ac.abort();
    await reader.read().catch(() => {});
    await sleep(500);
    const e1 = fake.state.events;
    await sleep(500);
    assert.equal(fake.state.events, e1, 'upstream kept streaming after the client left');
    assert.ok(e1 - base < 100);
    assert.equal(fake.log.length, 1, 'no further thinking calls after the client left');
    await waitFor(async () => metricValue(await metrics(p), 'ponder_inflight_requests') === 0, { what: 'inflight 0' });
    const r = await chat(p.base, { model: 'fake-model', messages: MSG });
    assert.equal(r.status, 200);
  });
});

// ---------------------------------------------------------------------------
// 6. max_connections

describe('max_connections', () => {
  let fake;
  let p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, { limits: { max_connections: 2 } }) });
  });
  after(async () => {
    await stopOk(p);
    await fake.close();
  });

  it('the 3rd concurrent connection gets 503 or is closed; serving resumes after', T, async () => {
    const a = new RawConn(p.port);
    const b = new RawConn(p.port);
    await a.ready;
    await b.ready;
    for (const c of [a, b]) {
      c.write(reqText('GET', '/healthz'));
      const [r] = await c.responses(1);
      assert.equal(r?.status, 200);
    }
    const c3 = new RawConn(p.port);
    await c3.ready.catch(() => {});
    c3.write(reqText('GET', '/healthz'));
    const closed = await c3.waitClosed(3000);
    const rs = parseResponses(c3.buf).responses;
    c3.destroy();
    assert.ok(closed, 'the 3rd connection was neither refused nor closed');
    if (rs.length) {
      assert.equal(rs[0].status, 503);
      assertOpenAIError(rs[0].json);
    }
    // the first two still work
    a.write(reqText('GET', '/healthz'));
    assert.equal((await a.responses(1))[0]?.status, 200);
    a.destroy();
    b.destroy();
    await waitFor(async () => {
      const r = await rawHttp(p.port, reqText('GET', '/healthz', { close: true }), { waitMs: 500 });
      return r.startsWith('HTTP/1.1 200');
    }, { what: 'serving again after the connections closed' });
  });
});
