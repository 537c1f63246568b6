// https:// upstreams and the upstream `tls` block (SPEC section 3): certificates made at test
// time by openssl (tests/lib/certs.mjs: a test CA, a server certificate for 127.0.0.1, one for
// another name, an expired one, one from an unrelated CA, a client certificate), node https and
// http2 secure servers (ALPN h2 + http/1.1) as the upstreams. What is checked: the CA in ca_file
// is trusted and the protocol is chosen by ALPN; a wrong CA, a wrong name and an expired
// certificate each end as a 502 upstream_error naming the cause; verify: false works and is
// warned about at start-up; mTLS with cert_file + key_file; tls.server_name sets SNI and the
// name checked; streaming, a forced exchange, stall_timeout_ms, connection reuse and session
// resumption over TLS. dev.sh runs this file with the default client and with
// PONDER_UPSTREAM_CLIENT=curl. Skipped when openssl is missing.
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/tls.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPonder, httpReq, parseSSE, sleep } from '../lib/harness.mjs';
import { makePki, haveOpenssl } from '../lib/certs.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 30000 };
const SKIP = haveOpenssl() ? false : 'needs openssl';
const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/;
const NOPROXY = { https_proxy: '', HTTPS_PROXY: '', http_proxy: '', HTTP_PROXY: '', all_proxy: '', ALL_PROXY: '', no_proxy: '', NO_PROXY: '' };

const CHAT = (content) => JSON.stringify({
  id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});
const CHUNK = (delta, finish = null) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
  choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

/**
 * A TLS upstream on 127.0.0.1: `h2` an http2 secure server with allowHTTP1 (ALPN h2 and
 * http/1.1), else an https server (http/1.1 only). Routes: GET /v1/models; POST
 * /v1/chat/completions (a chat completion, or SSE with stream: true); anything under /stall/
 * is read and never answered; /close/... answers with Connection: close (h1).
 * Records every request (protocol, SNI, client certificate CN) and every handshake.
 */
async function startUpstream({ leaf, h2 = true, mtlsCa = null }) {
  const st = { seen: [], handshakes: 0, resumed: 0, sni: [] };
  const opts = { key: readFileSync(leaf.key), cert: readFileSync(leaf.cert), allowHTTP1: true };
  if (mtlsCa) Object.assign(opts, { requestCert: true, rejectUnauthorized: true, ca: [readFileSync(mtlsCa)] });
  const handler = (req, res) => {
    if (req.url.startsWith('/early/') && req.httpVersion === '2.0') {
      // Answered before the request body was read, then RST_STREAM NO_ERROR: "stop sending"
      // (RFC 9113 section 8.1; nginx's `return` does this). The response stands.
      st.seen.push({ method: req.method, url: req.url, version: req.httpVersion });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(CHAT('early'));
      setImmediate(() => req.stream.close(http2.constants.NGHTTP2_NO_ERROR));
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const sock = req.httpVersion === '2.0' ? req.stream.session.socket : req.socket;
      st.seen.push({ method: req.method, url: req.url, version: req.httpVersion,
        sni: sock.servername, cn: sock.getPeerCertificate?.()?.subject?.CN,
        auth: req.headers.authorization });
      if (req.url.startsWith('/stall/')) return; // never answered
      const close = req.url.startsWith('/close/') && req.httpVersion !== '2.0' ? { connection: 'close' } : {};
      if (req.url.endsWith('/models')) {
        res.writeHead(200, { 'content-type': 'application/json', ...close });
        return res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
      }
      let body = {};
      try { body = JSON.parse(Buffer.concat(chunks).toString() || '{}'); } catch { /* not JSON */ }
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json', ...close });
        return res.end(CHAT(`call ${st.seen.length}`));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', ...close });
      const words = ['one', ' two', ' three', ' four'];
      let i = 0;
      const tick = () => {
        if (res.destroyed) return;
        if (i < words.length) {
          res.write(CHUNK({ content: words[i++] }));
          setTimeout(tick, 20);
        } else {
          res.write(CHUNK({}, 'stop'));
          res.end('data: [DONE]\n\n');
        }
      };
      tick();
    });
  };
  const srv = h2 ? http2.createSecureServer(opts, handler) : https.createServer(opts, handler);
  const sockets = new Set();
  srv.on('secureConnection', (s) => {
    st.handshakes++;
    if (s.isSessionReused()) st.resumed++;
    st.sni.push(s.servername);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  srv.on('tlsClientError', () => {});
  srv.on('session', (sess) => sess.on('error', () => {}));
  srv.on('stream', (s) => s.on('error', () => {}));
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: srv.address().port, st,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

function cfgFor(port, tls, upstream = {}, forcing = { rounds: 0 }, prefix = '') {
  return {
    log: { level: 'warn', access_log: 'off' },
    upstreams: [{ name: 'tls', base_url: `https://127.0.0.1:${port}${prefix}/v1`, retries: 0, timeout_ms: 10000,
                  connect_timeout_ms: 3000, ...(tls ? { tls } : {}), ...upstream }],
    routes: [{ name: 'r', forcing }],
  };
}

async function stopClean(p) {
  const r = await p.stop('SIGTERM');
  assert.equal(r.code, 0, `ponder exit ${JSON.stringify(r)}\n${p.output().slice(-3000)}`);
  assert.doesNotMatch(p.output(), SANITIZER, p.output().slice(-3000));
}

const postChat = (p, body = {}) => httpReq(p.port, {
  method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }),
});

describe('TLS upstreams', { skip: SKIP }, () => {
  let dir, pki;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ponder-tls-'));
    pki = makePki(dir);
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  /** One ponder against one upstream: fn(p, up) runs between their starts and stops. The
   * output is read after the stop (log lines are flushed on exit). */
  async function withPair(upOpts, tls, fn, { upstream = {}, forcing, prefix, env = {} } = {}) {
    const up = await startUpstream(upOpts);
    let p;
    try {
      p = await startPonder({ config: cfgFor(up.port, tls, upstream, forcing, prefix), env: { ...NOPROXY, ...env } });
      await fn(p, up);
    } finally {
      if (p) await stopClean(p);
      await up.close();
    }
    return { up, output: p.output() };
  }
  const models = (p) => httpReq(p.port, { path: '/v1/models' });

  for (const h2 of [false, true]) {
    const proto = h2 ? 'HTTP/2' : 'HTTP/1.1';
    it(`ca_file: a server certificate from that CA is trusted; ${proto} as ALPN chose it`, T, async () => {
      const { up } = await withPair({ leaf: pki.server, h2 }, { ca_file: pki.ca.cert }, async (p) => {
        const r = await models(p);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.data[0].id, 'm');
      });
      assert.equal(up.st.seen.length, 1);
      assert.equal(up.st.seen[0].version, h2 ? '2.0' : '1.1', 'the protocol the upstream saw');
    });
  }

  it('http2: false offers only HTTP/1.1 by ALPN, to a server that would speak h2', T, async () => {
    const { up } = await withPair({ leaf: pki.server, h2: true }, { ca_file: pki.ca.cert }, async (p) => {
      for (let i = 0; i < 2; i++) {
        const r = await models(p);
        assert.equal(r.status, 200, r.text);
      }
    }, { upstream: { http2: false } });
    assert.deepEqual(up.st.seen.map((s) => s.version), ['1.1', '1.1']);
    assert.equal(up.st.handshakes, 1, 'one keep-alive connection');
  });

  /** A 502 upstream_error whose message names the cause; the call never reached the handler. */
  async function refused(leaf, tls, cause) {
    const { up, output } = await withPair({ leaf }, tls, async (p) => {
      const r = await models(p);
      assert.equal(r.status, 502, r.text);
      assert.equal(r.json?.error?.type, 'upstream_error', r.text);
      assert.equal(r.json?.error?.code, 'upstream_error', r.text);
      assert.match(r.json.error.message, cause, r.text);
    });
    assert.equal(up.st.seen.length, 0, 'no request went over an unverified connection');
    assert.match(output, /warn .*upstream call failed: .*status=0 cause=/);
  }

  it('a certificate from another CA: 502 upstream_error naming the certificate problem', T, async () => {
    await refused(pki.stranger, { ca_file: pki.ca.cert }, /certificate|issuer|unknown ca/i);
  });

  it('a certificate for another name: 502 upstream_error naming the name mismatch', T, async () => {
    await refused(pki.other, { ca_file: pki.ca.cert }, /name|host|match/i);
  });

  it('an expired certificate: 502 upstream_error saying it expired', T, async () => {
    await refused(pki.expired, { ca_file: pki.ca.cert }, /expired/i);
  });

  it('no ca_file: the system store does not know the test CA (502)', T, async () => {
    await refused(pki.server, null, /certificate|issuer|self.signed|unknown ca/i);
  });

  it('verify: false accepts any certificate, and is warned about at start-up', T, async () => {
    const { output } = await withPair({ leaf: pki.stranger }, { verify: false }, async (p) => {
      const r = await models(p);
      assert.equal(r.status, 200, r.text);
    });
    assert.match(output, /warn upstream "tls": tls\.verify is false/);
  });

  it('cert_file + key_file: the client certificate is presented (mTLS); without it the call fails', T, async () => {
    const mtls = { leaf: pki.server, mtlsCa: pki.ca.cert };
    const { up } = await withPair(mtls, { ca_file: pki.ca.cert, cert_file: pki.client.cert, key_file: pki.client.key },
      async (p) => {
        const r = await models(p);
        assert.equal(r.status, 200, r.text);
      });
    assert.equal(up.st.seen[0].cn, 'ponder-client');
    await withPair(mtls, { ca_file: pki.ca.cert }, async (p) => {
      const r = await models(p);
      assert.equal(r.status, 502, r.text);
      assert.equal(r.json?.error?.type, 'upstream_error', r.text);
    });
  });

  it('tls.server_name: SNI and the name checked, for a certificate of another name', T, async () => {
    const { up } = await withPair({ leaf: pki.other }, { ca_file: pki.ca.cert, server_name: 'other.test' }, async (p) => {
      const r = await models(p);
      assert.equal(r.status, 200, r.text);
    });
    assert.equal(up.st.sni[0], 'other.test', 'the SNI the server saw');
    assert.equal(up.st.seen.length, 1);
  });

  for (const h2 of [false, true]) {
    const proto = h2 ? 'HTTP/2' : 'HTTP/1.1';
    it(`${proto}: SSE streams through, and several calls share one TLS connection`, T, async () => {
      const { up } = await withPair({ leaf: pki.server, h2 }, { ca_file: pki.ca.cert }, async (p) => {
        for (let i = 0; i < 4; i++) {
          const r = await postChat(p, { stream: true });
          assert.equal(r.status, 200, r.text);
          const ev = parseSSE(r.text);
          assert.equal(ev.at(-1), '[DONE]');
          assert.equal(ev.filter((e) => e !== '[DONE]').map((e) => e.choices?.[0]?.delta?.content ?? '').join(''),
            'one two three four');
        }
        const r = await models(p);
        assert.equal(r.status, 200, r.text);
      });
      assert.equal(up.st.seen.length, 5);
      assert.equal(up.st.handshakes, 1, `one TLS handshake for 5 sequential calls (saw ${up.st.handshakes})`);
    });

    it(`${proto}: a forced exchange (rounds 2) over TLS makes its 3 calls`, T, async () => {
      const { up } = await withPair({ leaf: pki.server, h2 }, { ca_file: pki.ca.cert }, async (p) => {
        const r = await postChat(p, {});
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.object, 'chat.completion');
        assert.ok(r.json.choices[0].message.content, r.text);
      }, { forcing: { rounds: 2 } });
      assert.equal(up.st.seen.length, 3, 'two thinking calls and the answer');
      assert.ok(up.st.seen.every((s) => s.url === '/v1/chat/completions' && s.version === (h2 ? '2.0' : '1.1')));
      assert.equal(up.st.handshakes, 1);
    });

    it(`${proto}: stall_timeout_ms: an upstream that says nothing is cut with 504 upstream_timeout`, T, async () => {
      await withPair({ leaf: pki.server, h2 }, { ca_file: pki.ca.cert }, async (p) => {
        const t0 = Date.now();
        const r = await postChat(p, {});
        const took = Date.now() - t0;
        assert.equal(r.status, 504, r.text);
        assert.equal(r.json?.error?.code, 'upstream_timeout', r.text);
        assert.ok(took >= 350 && took < 5000, `cut after ${took} ms (stall 400, timeout 20000)`);
      }, { upstream: { stall_timeout_ms: 400, timeout_ms: 20000 }, prefix: '/stall' });
    });
  }

  it('HTTP/2: a complete response, then RST_STREAM NO_ERROR while the request body is still going out, is relayed', T, async () => {
    const big = 'x'.repeat(300 * 1024); // more than the stream's initial window: still sending
    const { up } = await withPair({ leaf: pki.server, h2: true }, { ca_file: pki.ca.cert }, async (p) => {
      for (let i = 0; i < 3; i++) {
        const r = await httpReq(p.port, { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: big }] }) });
        assert.equal(r.status, 200, r.text.slice(0, 300));
        assert.equal(r.json.choices[0].message.content, 'early');
      }
    }, { prefix: '/early' });
    assert.equal(up.st.seen.length, 3);
  });

  it('session resumption: a new connection to the same upstream resumes the TLS session', T, async () => {
    // The upstream closes every connection after its answer (HTTP/1.1 Connection: close), so
    // each call makes a new connection: after the first, each should resume the first's session.
    const { up } = await withPair({ leaf: pki.server, h2: false }, { ca_file: pki.ca.cert }, async (p) => {
      for (let i = 0; i < 3; i++) {
        const r = await models(p);
        assert.equal(r.status, 200, r.text);
        await sleep(50);
      }
    }, { prefix: '/close' });
    assert.equal(up.st.handshakes, 3, 'a connection per call');
    assert.ok(up.st.resumed >= 1, `resumed ${up.st.resumed} of ${up.st.handshakes} handshakes`);
  });
});
