// https:// upstreams through an HTTP CONNECT proxy (a real tinyproxy this test starts), and the
// upstream `tls` block: ca_file, cert_file + key_file (mTLS), verify: false. The upstream is a
// node https server with certificates made by openssl at test time. The default run tests the
// native clients (HTTP/2 by ALPN, HTTP/1.1 with "http2: false" or when the server chooses it,
// h2c), PONDER_UPSTREAM_CLIENT=curl tests libcurl (h2c stays native there). Skipped when
// tinyproxy or openssl is missing (./dev.sh test installs both).
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/upstream_proxy.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { startPonder, httpReq, parseSSE, sleep, closedPort } from '../lib/harness.mjs';
import { makePki } from '../lib/certs.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 30000 };
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const SKIP = !have('tinyproxy') || !have('openssl') ? 'needs tinyproxy and openssl' : false;
const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/;

/** A self-signed certificate for 127.0.0.1 (it is its own CA): { cert, key } paths. */
function makeCert(dir, name) {
  const key = join(dir, `${name}.key`), cert = join(dir, `${name}.pem`);
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { cert, key };
}

const CHAT = (content) => JSON.stringify({
  id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});
const BIG = 'x'.repeat(300 * 1024);
const ERR = (msg) => JSON.stringify({ error: { message: msg, type: 'server_error', param: null, code: null } });

/** The https upstream: /v1/status/N answers N with a JSON error; /v1/chat/completions answers
 * a chat completion (a 300 KiB one) or, with stream: true, SSE events written apart. */
async function startTlsUpstream(tls) {
  const seen = [];
  const srv = https.createServer(tls, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, cert: req.socket.getPeerCertificate?.()?.subject?.CN });
      const st = /^\/v1\/status\/(\d+)/.exec(req.url);
      if (st) {
        const body = ERR(`upstream says ${st[1]}`);
        res.writeHead(Number(st[1]), { 'content-type': 'application/json', 'x-upstream': 'yes' });
        return res.end(body);
      }
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
      if (!body.stream) {
        const out = CHAT(BIG);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        return res.end(out);
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const words = ['one', ' two', ' three', ' four'];
      let i = 0;
      const tick = () => {
        if (i < words.length) {
          res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
            choices: [{ index: 0, delta: { content: words[i++] }, finish_reason: null }] })}\n\n`);
          setTimeout(tick, 20);
        } else {
          res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
            choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
          res.end('data: [DONE]\n\n');
        }
      };
      tick();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, seen, close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }) };
}

/** tinyproxy in the foreground, CONNECT allowed to one port only; resolves once it accepts. */
async function startTinyproxy(dir, connectPorts) {
  const port = await closedPort();
  const conf = join(dir, `tinyproxy-${port}.conf`);
  const allow = [connectPorts].flat().map((n) => `ConnectPort ${n}\n`).join('');
  writeFileSync(conf, `Port ${port}\nListen 127.0.0.1\nAllow 127.0.0.1\n${allow}` +
    'LogLevel Error\nTimeout 60\nMaxClients 50\n');
  const proc = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => proc.on('exit', r));
  for (let i = 0; ; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (i > 100 || proc.exitCode !== null) throw new Error(`tinyproxy did not start:\n${out}`);
    await sleep(50);
  }
  return { port, output: () => out, stop: async () => { proc.kill('SIGTERM'); await exited; } };
}

function cfgFor(port, tls, upstream = {}) {
  return {
    log: { level: 'warn', access_log: 'off' },
    upstreams: [{ name: 'tls', base_url: `https://127.0.0.1:${port}/v1`, retries: 0, timeout_ms: 10000,
                  connect_timeout_ms: 3000, tls, ...upstream }],
    routes: [{ name: 'r', forcing: { rounds: 0 } }],
  };
}

async function stopClean(p) {
  const r = await p.stop('SIGTERM');
  assert.equal(r.code, 0, `ponder exit ${JSON.stringify(r)}\n${p.output().slice(-3000)}`);
  assert.doesNotMatch(p.output(), SANITIZER, p.output().slice(-3000));
}

const NOPROXY = { https_proxy: '', HTTPS_PROXY: '', http_proxy: '', HTTP_PROXY: '', all_proxy: '', ALL_PROXY: '', no_proxy: '', NO_PROXY: '' };
const postChat = (p, body) => httpReq(p.port, {
  method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }),
});

describe('https upstream through an HTTP CONNECT proxy', { skip: SKIP }, () => {
  let dir, server, up, proxy, p;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ponder-proxy-test-'));
    server = makeCert(dir, 'server');
    up = await startTlsUpstream({ cert: readFileSync(server.cert), key: readFileSync(server.key) });
    proxy = await startTinyproxy(dir, up.port);
    p = await startPonder({ config: cfgFor(up.port, { ca_file: server.cert }),
      env: { ...NOPROXY, https_proxy: `http://127.0.0.1:${proxy.port}` } });
  });
  after(async () => {
    if (p) await stopClean(p);
    if (proxy) await proxy.stop();
    if (up) await up.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('relays an upstream 429 and 500 with their own status, headers and body', T, async () => {
    for (const code of [429, 500, 503]) {
      const r = await httpReq(p.port, { path: `/v1/status/${code}` });
      assert.equal(r.status, code, r.text);
      assert.deepEqual(JSON.parse(r.text), JSON.parse(ERR(`upstream says ${code}`)));
      assert.equal(r.headers['proxy-agent'], undefined, 'nothing of the proxy\'s answer is relayed');
    }
    assert.ok(up.seen.length >= 3, 'the calls reached the upstream');
  });

  it('a 300 KiB JSON reply arrives whole', T, async () => {
    const r = await postChat(p, {});
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(r.json.choices[0].message.content, BIG);
  });

  it('streams SSE through the proxy', T, async () => {
    const r = await postChat(p, { stream: true });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /text\/event-stream/);
    const ev = parseSSE(r.text);
    assert.equal(ev.at(-1), '[DONE]');
    const text = ev.filter((e) => e !== '[DONE]').map((e) => e.choices?.[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'one two three four');
  });

  it('went through the proxy: with tinyproxy gone the call fails as a 502, logged at warn with the request id', T, async () => {
    const q = await startPonder({ config: cfgFor(up.port, { ca_file: server.cert }),
      env: { ...NOPROXY, https_proxy: `http://127.0.0.1:${await closedPort()}` } });
    try {
      const r = await httpReq(q.port, { path: '/v1/status/200', headers: { 'x-request-id': 'req-proxy-gone', authorization: 'Bearer sk-client-secret' } });
      assert.equal(r.status, 502, r.text);
      await sleep(100);
      const line = q.output().split('\n').find((l) => /warn/.test(l) && /upstream/.test(l));
      assert.ok(line, q.output());
      assert.match(line, / warn \[req-proxy-gone\] upstream call failed: route=\S+ upstream=\S+ status=0 cause=connect \(/);
      assert.doesNotMatch(q.output(), /sk-client-secret/);
    } finally {
      await stopClean(q);
    }
  });
});

describe('upstream tls keys', { skip: SKIP }, () => {
  let dir, server, client, other;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ponder-tls-test-'));
    server = makeCert(dir, 'server');
    client = makeCert(dir, 'client');
    other = makeCert(dir, 'other');
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  async function tryWith(tlsServer, tls, path = '/v1/status/200') {
    const up = await startTlsUpstream(tlsServer);
    const p = await startPonder({ config: cfgFor(up.port, tls), env: NOPROXY });
    let r;
    try {
      r = await httpReq(p.port, { path });
    } finally {
      await stopClean(p);
      await up.close();
    }
    // Read after the stop: log lines are written by ponder's log thread, flushed on exit.
    return { status: r.status, text: r.text, seen: up.seen, output: p.output() };
  }
  const serverTls = () => ({ cert: readFileSync(server.cert), key: readFileSync(server.key) });

  it('ca_file: trusted with it, refused (502) with another CA', T, async () => {
    assert.equal((await tryWith(serverTls(), { ca_file: server.cert })).status, 200);
    const r = await tryWith(serverTls(), { ca_file: other.cert });
    assert.equal(r.status, 502, r.text);
    assert.match(r.output, /warn .*upstream call failed: .*status=0 cause=\S+ \(.*certificate/);
  });

  it('verify: false skips the certificate check, and is warned about at start-up', T, async () => {
    const r = await tryWith(serverTls(), { verify: false });
    assert.equal(r.status, 200, r.text);
    assert.match(r.output, /warn upstream "tls": tls\.verify is false/);
  });

  it('cert_file + key_file: the client certificate is presented (mTLS)', T, async () => {
    const mtls = { ...serverTls(), requestCert: true, rejectUnauthorized: true, ca: [readFileSync(client.cert)] };
    const ok = await tryWith(mtls, { ca_file: server.cert, cert_file: client.cert, key_file: client.key });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.seen[0].cert, 'client');
    const none = await tryWith(mtls, { ca_file: server.cert });
    assert.equal(none.status, 502, none.text);
  });

  it('an HTTP/2 https upstream (ALPN h2): statuses and bodies come from its own head', T, async () => {
    const srv = http2.createSecureServer({ ...serverTls() });
    srv.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const st = /^\/v1\/status\/(\d+)/.exec(headers[':path']);
      if (st) {
        stream.respond({ ':status': Number(st[1]), 'content-type': 'application/json' });
        return stream.end(ERR(`h2 says ${st[1]}`));
      }
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(CHAT('over h2'));
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const p = await startPonder({ config: cfgFor(srv.address().port, { ca_file: server.cert }), env: NOPROXY });
    try {
      for (const code of [200, 429, 500]) {
        const r = await httpReq(p.port, { path: `/v1/status/${code}` });
        assert.equal(r.status, code, r.text);
        assert.deepEqual(JSON.parse(r.text), JSON.parse(ERR(`h2 says ${code}`)));
      }
      const r = await postChat(p, {});
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].message.content, 'over h2');
    } finally {
      await stopClean(p);
      await new Promise((r) => srv.close(r));
    }
  });

  it('a tls block with an unreadable file or a certificate without its key does not start', T, async () => {
    // (a well-formed tls.server_name is a valid key, SPEC section 3: tls.test.mjs tests what it does.)
    for (const tls of [{ ca_file: join(dir, 'missing.pem') }, { cert_file: client.cert }, { server_name: 'not a host name' }]) {
      await assert.rejects(startPonder({ config: cfgFor(1, tls), env: NOPROXY }), /exited \(2\)|tls/);
    }
  });
});

// ---- proxies on every framing (issue 13): http:// in absolute-form, https:// by CONNECT then
// TLS (HTTP/1.1 or h2 by ALPN), the upstream `proxy` key, https_proxy / http_proxy / no_proxy,
// a proxy that refuses CONNECT, and what a proxy gets to see of the upstream's api key.

const API_KEY = 'sk-upstream-key-never-to-the-proxy';

/** An upstream that records what reached it: plain http (`tls` unset) or an http2 secure
 * server with allowHTTP1 (ALPN h2 + http/1.1). GET .../models answers a model list. */
async function startRecordingUpstream(tls = null) {
  const seen = [];
  const handler = (req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ url: req.url, version: req.httpVersion, via: req.headers.via, authorization: req.headers.authorization,
        proxyAuthorization: req.headers['proxy-authorization'] });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
    });
  };
  const srv = tls ? http2.createSecureServer({ ...tls, allowHTTP1: true }, handler) : http.createServer(handler);
  const socks = new Set();
  srv.on(tls ? 'secureConnection' : 'connection', (s) => { socks.add(s); s.on('close', () => socks.delete(s)); });
  srv.on('session', (sess) => sess.on('error', () => {}));
  srv.on('tlsClientError', () => {});
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, seen,
    close: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }) };
}

/** A minimal HTTP proxy that records every byte a client sends it: CONNECT opens a tunnel;
 * anything else (absolute-form) is piped as it is to the host its request line names. */
async function startRecordingProxy() {
  const conns = []; // { head, bytes: Buffer[] }
  const socks = new Set();
  const srv = net.createServer((c) => {
    socks.add(c);
    c.on('close', () => socks.delete(c));
    c.on('error', () => {});
    const rec = { head: '', bytes: [] };
    conns.push(rec);
    let buf = Buffer.alloc(0), target = null;
    c.on('data', (d) => {
      rec.bytes.push(d);
      if (target) return;
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      rec.head = buf.subarray(0, end).toString('latin1');
      const [method, uri] = rec.head.split(' ');
      let host, port;
      if (method === 'CONNECT') [host, port] = uri.split(':');
      else ({ hostname: host, port } = new URL(uri));
      target = net.connect(Number(port), host);
      socks.add(target);
      target.on('close', () => { socks.delete(target); c.destroy(); });
      target.on('error', () => c.destroy());
      c.on('close', () => target.destroy());
      target.on('connect', () => {
        if (method === 'CONNECT') {
          c.write('HTTP/1.1 200 Connection established\r\n\r\n');
          if (buf.length > end + 4) target.write(buf.subarray(end + 4));
        } else target.write(buf);
        c.pipe(target);
        target.pipe(c);
      });
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, conns,
    close: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }) };
}

function upCfg(baseUrl, extra = {}) {
  return {
    log: { level: 'warn', access_log: 'off' },
    upstreams: [{ name: 'up', base_url: baseUrl, retries: 0, timeout_ms: 10000, connect_timeout_ms: 3000, ...extra }],
    routes: [{ name: 'r', forcing: { rounds: 0 } }],
  };
}

describe('proxies on every framing', { skip: SKIP }, () => {
  let dir, pki, plain, secure, proxy;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ponder-proxy-fr-'));
    pki = makePki(dir);
    plain = await startRecordingUpstream();
    secure = await startRecordingUpstream({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) });
    proxy = await startTinyproxy(dir, [secure.port]);
  });
  after(async () => {
    if (proxy) await proxy.stop();
    if (plain) await plain.close();
    if (secure) await secure.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const httpsUrl = (host = '127.0.0.1') => `https://${host}:${secure.port}/v1`;
  const tls = () => ({ tls: { ca_file: pki.ca.cert } });

  /** One models call through a ponder with this config and environment. */
  async function call(config, env) {
    const p = await startPonder({ config, env: { ...NOPROXY, ...env } });
    try {
      return await httpReq(p.port, { path: '/v1/models' });
    } finally {
      await stopClean(p);
    }
  }
  const viaTinyproxy = (s) => /tinyproxy/i.test(s?.via ?? '');

  it('http:// through $http_proxy: absolute-form, the proxy forwards it (Via)', T, async () => {
    const n = plain.seen.length;
    const r = await call(upCfg(`http://127.0.0.1:${plain.port}/v1`), { http_proxy: `http://127.0.0.1:${proxy.port}` });
    assert.equal(r.status, 200, r.text);
    assert.ok(viaTinyproxy(plain.seen[n]), `reached the upstream through the proxy: ${JSON.stringify(plain.seen[n])}`);
  });

  it('https:// through $https_proxy: CONNECT, then TLS, h2 by ALPN inside the tunnel', T, async () => {
    const n = secure.seen.length;
    const r = await call(upCfg(httpsUrl(), tls()), { https_proxy: `http://127.0.0.1:${proxy.port}` });
    assert.equal(r.status, 200, r.text);
    assert.equal(secure.seen[n].version, '2.0');
    // With the proxy gone the same config cannot reach the upstream: the call did use it.
    const gone = await call(upCfg(httpsUrl(), tls()), { https_proxy: `http://127.0.0.1:${await closedPort()}` });
    assert.equal(gone.status, 502, gone.text);
  });

  it('the upstream `proxy` key, for https:// and http://, without any environment', T, async () => {
    const via = `http://127.0.0.1:${proxy.port}`;
    let r = await call(upCfg(httpsUrl(), { ...tls(), proxy: via }), {});
    assert.equal(r.status, 200, r.text);
    r = await call(upCfg(httpsUrl(), { ...tls(), proxy: `http://127.0.0.1:${await closedPort()}` }), {});
    assert.equal(r.status, 502, `a dead proxy key fails the call: ${r.text}`);
    const n = plain.seen.length;
    r = await call(upCfg(`http://127.0.0.1:${plain.port}/v1`, { proxy: via }), {});
    assert.equal(r.status, 200, r.text);
    assert.ok(viaTinyproxy(plain.seen[n]), JSON.stringify(plain.seen[n]));
  });

  it('the `proxy` key wins over $https_proxy', T, async () => {
    const r = await call(upCfg(httpsUrl(), { ...tls(), proxy: `http://127.0.0.1:${proxy.port}` }),
      { https_proxy: `http://127.0.0.1:${await closedPort()}` });
    assert.equal(r.status, 200, r.text);
  });

  it('no_proxy: a listed host (exact, or a .domain suffix, in a list) goes direct', T, async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    let r = await call(upCfg(httpsUrl(), tls()), { https_proxy: dead, no_proxy: 'example.invalid,127.0.0.1' });
    assert.equal(r.status, 200, r.text);
    r = await call(upCfg(httpsUrl('localhost'), tls()), { https_proxy: dead, no_proxy: 'example.invalid, .localhost' });
    assert.equal(r.status, 200, r.text);
    r = await call(upCfg(httpsUrl('localhost'), tls()), { https_proxy: dead, no_proxy: 'example.invalid' });
    assert.equal(r.status, 502, `a host not listed uses the (dead) proxy: ${r.text}`);
  });

  it('no_proxy for http://: a listed host goes direct, another uses $http_proxy', T, async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    let r = await call(upCfg(`http://localhost:${plain.port}/v1`), { http_proxy: dead, no_proxy: '.localhost' });
    assert.equal(r.status, 200, r.text);
    r = await call(upCfg(`http://localhost:${plain.port}/v1`), { http_proxy: dead, no_proxy: 'example.invalid' });
    assert.equal(r.status, 502, `not listed: through the dead proxy: ${r.text}`);
  });

  it('a proxy that refuses CONNECT: 502 upstream_error naming the proxy', T, async () => {
    const strict = await startTinyproxy(dir, [1]); // CONNECT allowed to port 1 only
    try {
      const r = await call(upCfg(httpsUrl(), tls()), { https_proxy: `http://127.0.0.1:${strict.port}` });
      assert.equal(r.status, 502, r.text);
      assert.equal(r.json?.error?.type, 'upstream_error', r.text);
      assert.match(r.json.error.message, /proxy|CONNECT/i, r.text);
    } finally {
      await strict.stop();
    }
  });

  it('https:// through a proxy: the api key never crosses it in clear, and is never the Proxy-Authorization', T, async () => {
    const rec = await startRecordingProxy();
    try {
      const n = secure.seen.length;
      const r = await call(upCfg(httpsUrl(), { ...tls(), api_key: API_KEY }), { https_proxy: `http://u1:pw1@127.0.0.1:${rec.port}` });
      assert.equal(r.status, 200, r.text);
      assert.equal(secure.seen[n].authorization, `Bearer ${API_KEY}`, 'the key reached the upstream');
      assert.ok(rec.conns.length >= 1);
      for (const c of rec.conns) {
        assert.match(c.head, /^CONNECT 127\.0\.0\.1:\d+ HTTP\/1\.[01]\r\n/);
        assert.doesNotMatch(Buffer.concat(c.bytes).toString('latin1'), new RegExp(API_KEY), 'the key in clear on the proxy\'s side');
        const pa = /\r\nproxy-authorization: *([^\r]*)/i.exec(c.head)?.[1];
        assert.equal(pa, `Basic ${Buffer.from('u1:pw1').toString('base64')}`, 'the proxy URL\'s credentials, and only they');
      }
    } finally {
      await rec.close();
    }
  });

  it('http:// through a proxy: the Proxy-Authorization is never the api key', T, async () => {
    const rec = await startRecordingProxy();
    try {
      const n = plain.seen.length;
      const r = await call(upCfg(`http://127.0.0.1:${plain.port}/v1`, { api_key: API_KEY }), { http_proxy: `http://127.0.0.1:${rec.port}` });
      assert.equal(r.status, 200, r.text);
      assert.ok(rec.conns.length >= 1, 'the call went through the proxy');
      assert.match(rec.conns[0].head, /^GET http:\/\/127\.0\.0\.1:\d+\/v1\/models HTTP\/1\.1\r\n/, 'absolute-form');
      assert.doesNotMatch(rec.conns[0].head, /proxy-authorization/i, 'no proxy credentials were given');
      assert.equal(plain.seen[n].authorization, `Bearer ${API_KEY}`);
      assert.equal(plain.seen[n].proxyAuthorization, undefined);
    } finally {
      await rec.close();
    }
  });
});
