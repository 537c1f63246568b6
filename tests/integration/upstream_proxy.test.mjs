// https:// upstreams through an HTTP CONNECT proxy (a real tinyproxy this test starts), and the
// upstream `tls` block: ca_file, cert_file + key_file (mTLS), verify: false. The upstream is a
// node https server with certificates made by openssl at test time. https:// always goes
// through libcurl, so both suite runs (native default, PONDER_UPSTREAM_CLIENT=curl) test the same
// client. Skipped when tinyproxy or openssl is missing (./dev.sh test installs both).
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
import { startPonder, httpReq, parseSSE, sleep, closedPort } from '../lib/harness.mjs';

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
async function startTinyproxy(dir, connectPort) {
  const port = await closedPort();
  const conf = join(dir, 'tinyproxy.conf');
  writeFileSync(conf, `Port ${port}\nListen 127.0.0.1\nAllow 127.0.0.1\nConnectPort ${connectPort}\n` +
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
    for (const tls of [{ ca_file: join(dir, 'missing.pem') }, { cert_file: client.cert }, { server_name: 'not a host name' }]) {
      await assert.rejects(startPonder({ config: cfgFor(1, tls), env: NOPROXY }), /exited \(2\)|tls/);
    }
  });
});
