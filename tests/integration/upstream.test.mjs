// The upstream client, driven through ponder against upstreams that write exact bytes: keep-alive
// reuse and its limits, keep-alive connections the server dropped, every response framing, 1xx,
// HEAD, name resolution, and bad responses. http:// upstreams use the native HTTP/1.1 client
// (proxy/upstream_h1.c); with PONDER_UPSTREAM_CLIENT=curl the same checks run against libcurl,
// and only the wording of error messages is left unchecked there.
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/upstream.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { startPonder, startFake, httpReq, sleep, closedPort } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 20000 };
const NATIVE = process.env.PONDER_UPSTREAM_CLIENT !== 'curl';
/** Checks an error message's wording (the native client's own). */
const wording = (msg, re) => { if (NATIVE) assert.match(msg, re); };

/** A TCP upstream: for every request head read on a connection, `reply(sock, head, state)`
 * writes whatever bytes it likes. Counts connections and the most open at once. */
async function startRawUpstream(reply) {
  const sockets = new Set();
  const stats = { connections: 0, open: 0, maxOpen: 0, requests: 0 };
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    stats.connections++;
    stats.open++;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    sock.on('close', () => { sockets.delete(sock); stats.open--; });
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    const state = { n: 0 };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        const m = /content-length:\s*(\d+)/i.exec(head);
        const len = m ? Number(m[1]) : 0;
        if (buf.length < end + 4 + len) return;
        const body = buf.subarray(end + 4, end + 4 + len).toString();
        buf = buf.subarray(end + 4 + len);
        stats.requests++;
        state.n++;
        reply(sock, head, state, body);
      }
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  return {
    port, stats,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

const CHAT = JSON.stringify({
  id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});

const ok = (body, extra = '') =>
  `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

function cfgFor(port, upstream = {}, host = '127.0.0.1') {
  return {
    log: { level: 'warn', access_log: 'off' },
    upstreams: [{ name: 'raw', base_url: `http://${host}:${port}/v1`, retries: 0, timeout_ms: 5000, ...upstream }],
    routes: [{ name: 'r', forcing: { rounds: 0 } }],
  };
}

async function withRaw(reply, fn, { upstream = {}, host } = {}) {
  const up = await startRawUpstream(reply);
  let p = null;
  try {
    p = await startPonder({ config: cfgFor(up.port, upstream, host) });
    await fn(p, up);
  } finally {
    if (p) {
      const r = await p.stop('SIGTERM');
      assert.equal(r.code, 0, `ponder exit ${JSON.stringify(r)}\n${p.output().slice(-2000)}`);
    }
    await up.close();
  }
}

const chatBody = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello' }] });
const postChat = (p) => httpReq(p.port, {
  method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody,
});
const get = (p, path, method = 'GET') => httpReq(p.port, { method, path });

describe('upstream client: connection reuse', () => {
  it('serves 2000 sequential requests over one kept-alive upstream connection', T, async () => {
    await withRaw((sock) => sock.write(ok(CHAT)), async (p, up) => {
      for (let i = 0; i < 2000; i++) {
        const r = await postChat(p);
        assert.equal(r.status, 200, `request ${i}: ${r.text}`);
      }
      assert.equal(up.stats.connections, 1);
      assert.equal(up.stats.requests, 2000);
    });
  });

  it('holds to max_connections and queues the rest', T, async () => {
    const reply = (sock) => setTimeout(() => sock.write(ok(CHAT)), 100);
    await withRaw(reply, async (p, up) => {
      const rs = await Promise.all(Array.from({ length: 12 }, () => postChat(p)));
      for (const r of rs) assert.equal(r.status, 200, r.text);
      assert.ok(up.stats.maxOpen <= 2, `max open ${up.stats.maxOpen}`);
      assert.equal(up.stats.requests, 12);
    }, { upstream: { max_connections: 2 } });
  });

  it('sends a request again on a new connection when the server dropped the idle one', T, async () => {
    // Closes every connection 30 ms after answering, without saying so.
    const reply = (sock) => { sock.write(ok(CHAT)); setTimeout(() => sock.destroy(), 30); };
    await withRaw(reply, async (p, up) => {
      for (let i = 0; i < 5; i++) {
        const r = await postChat(p);
        assert.equal(r.status, 200, `request ${i}: ${r.text}`);
        await sleep(80);
      }
      assert.equal(up.stats.requests, 5);
      assert.equal(up.stats.connections, 5);
    });
  });

  it('does not reuse a connection the server asked to close', T, async () => {
    const reply = (sock) => sock.write(ok(CHAT, 'Connection: close\r\n'));
    await withRaw(reply, async (p, up) => {
      for (let i = 0; i < 3; i++) assert.equal((await postChat(p)).status, 200);
      assert.equal(up.stats.connections, 3);
    });
  });
});

describe('upstream client: response framing', () => {
  it('chunked bodies split at every byte boundary', T, async () => {
    const reply = (sock) => {
      const wire = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nTransfer-Encoding: chunked\r\n' +
        'X-Extra:   padded value  \r\nX-Empty:\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n';
      let i = 0;
      const step = () => { if (i < wire.length) { sock.write(wire[i++]); setImmediate(step); } };
      step();
    };
    await withRaw(reply, async (p) => {
      const r = await get(p, '/v1/things');
      assert.equal(r.status, 200);
      assert.equal(r.text, 'hello, world');
      assert.equal(r.headers['x-extra'], 'padded value');
      assert.equal(r.headers['x-empty'], '');
    });
  });

  it('a body that ends with the connection', T, async () => {
    const reply = (sock) => { sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end'); sock.end(); };
    await withRaw(reply, async (p) => {
      const r = await get(p, '/v1/things');
      assert.equal(r.status, 200);
      assert.equal(r.text, 'until the end');
    });
  });

  it('skips 100 Continue and relays the final response', T, async () => {
    const reply = (sock) => sock.write('HTTP/1.1 100 Continue\r\n\r\n' + ok('{"x":1}'));
    await withRaw(reply, async (p) => {
      const r = await get(p, '/v1/things');
      assert.equal(r.status, 200);
      assert.equal(r.text, '{"x":1}');
    });
  });

  it('HEAD: a Content-Length with no body does not hang the connection', T, async () => {
    const reply = (sock, head) => sock.write(head.startsWith('HEAD ')
      ? 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n' : ok('{"x":2}'));
    await withRaw(reply, async (p, up) => {
      const h = await get(p, '/v1/things', 'HEAD');
      assert.equal(h.status, 200);
      const r = await get(p, '/v1/things');
      assert.equal(r.text, '{"x":2}');
      assert.equal(up.stats.connections, 1);
    });
  });

  it('relays a 204 without a body, then reuses the connection', T, async () => {
    const reply = (sock, head, st) => sock.write(st.n === 1 ? 'HTTP/1.1 204 No Content\r\n\r\n' : ok('{"x":3}'));
    await withRaw(reply, async (p, up) => {
      assert.equal((await get(p, '/v1/things', 'DELETE')).status, 204);
      assert.equal((await get(p, '/v1/things')).text, '{"x":3}');
      assert.equal(up.stats.connections, 1);
    });
  });

  it('sends the method, path, query, Host, headers and body it was given', T, async () => {
    let seen = null;
    const reply = (sock, head, st, body) => { seen = { head, body }; sock.write(ok('{}')); };
    await withRaw(reply, async (p, up) => {
      const r = await httpReq(p.port, {
        method: 'PUT', path: '/v1/files/abc?purpose=x&y=1', headers: { 'content-type': 'text/plain' }, body: 'payload',
      });
      assert.equal(r.status, 200);
      const lines = seen.head.split('\r\n');
      assert.equal(lines[0], 'PUT /v1/files/abc?purpose=x&y=1 HTTP/1.1');
      assert.ok(lines.includes(`Host: 127.0.0.1:${up.port}`), seen.head);
      assert.ok(lines.includes('Content-Length: 7'), seen.head);
      assert.ok(lines.some((l) => /^x-request-id: \S+/i.test(l)), seen.head);
      assert.equal(seen.body, 'payload');
    });
  });
});

describe('upstream client: failures', () => {
  it('a response that is not HTTP is a 502, and ponder goes on', T, async () => {
    const reply = (sock, head, st) => { if (st.n === 1 && /things/.test(head)) sock.end('NOT HTTP AT ALL\r\n\r\n'); else sock.write(ok('{"x":4}')); };
    await withRaw(reply, async (p) => {
      const r = await get(p, '/v1/things');
      assert.equal(r.status, 502);
      assert.equal(r.json.error.type, 'upstream_error');
      assert.equal((await get(p, '/v1/other')).status, 200);
    });
  });

  it('a response head over 100 KiB is a 502', T, async () => {
    const reply = (sock, head) => sock.write(/huge/.test(head)
      ? `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(110 * 1024)}\r\nContent-Length: 2\r\n\r\n{}` : ok('{}'));
    await withRaw(reply, async (p) => {
      const r = await get(p, '/v1/huge');
      assert.equal(r.status, 502);
      wording(r.json.error.message, /response head is over/);
      assert.equal((await get(p, '/v1/small')).status, 200);
    });
  });

  it('an upstream that closes before answering is a 502', T, async () => {
    await withRaw((sock) => sock.destroy(), async (p) => {
      const r = await postChat(p);
      assert.equal(r.status, 502);
      wording(r.json.error.message, /Empty reply/);
    });
  });

  it('an upstream that stalls mid-head times out as a 504', T, async () => {
    await withRaw((sock) => sock.write('HTTP/1.1 200 OK\r\nContent-'), async (p) => {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 504);
      assert.ok(Date.now() - t0 < 3000);
    }, { upstream: { timeout_ms: 400 } });
  });

  it('a refused connection is retried, then reported as 502', T, async () => {
    const port = await closedPort();
    const p = await startPonder({ config: cfgFor(port, { retries: 2 }) });
    try {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 502);
      wording(r.json.error.message, /Failed to connect .*refused/i);
      assert.ok(Date.now() - t0 >= 140, 'two backoffs of 50 and 100 ms');
    } finally {
      await p.stop('SIGTERM');
    }
  });
});

describe('upstream client: names', () => {
  it('resolves a host name and falls back across its addresses', T, async () => {
    // "localhost" may resolve to ::1 first; the upstream listens on 127.0.0.1 only.
    await withRaw((sock) => sock.write(ok(CHAT)), async (p) => {
      for (let i = 0; i < 3; i++) assert.equal((await postChat(p)).status, 200);
    }, { host: 'localhost' });
  });

  it('an unknown host name is a 502 that names it', T, async () => {
    const p = await startPonder({ config: cfgFor(9, {}, 'no-such-host.invalid') });
    try {
      const r = await postChat(p);
      assert.equal(r.status, 502);
      wording(r.json.error.message, /Could not resolve host: no-such-host\.invalid/);
    } finally {
      await p.stop('SIGTERM');
    }
  });
});

describe('upstream client: streaming', () => {
  it('relays a slow chunked SSE stream event by event, and a client abort closes the upstream', T, async () => {
    let closed = false;
    const reply = (sock) => {
      sock.on('close', () => { closed = true; });
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
      let i = 0;
      const t = setInterval(() => {
        if (sock.destroyed) return clearInterval(t);
        const ev = `data: {"i":${i++}}\n\n`;
        sock.write(`${Buffer.byteLength(ev).toString(16)}\r\n${ev}\r\n`);
      }, 50);
    };
    await withRaw(reply, async (p) => {
      const got = await new Promise((resolve, reject) => {
        const req = http.request({ port: p.port, path: '/v1/events', method: 'GET' }, (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
            if ((text.match(/data:/g) || []).length >= 3) { req.destroy(); resolve(text); }
          });
        });
        req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
        req.end();
      });
      assert.match(got, /data: \{"i":0\}\n\ndata: \{"i":1\}\n\ndata: \{"i":2\}/);
      await sleep(300);
      assert.ok(closed, 'the upstream connection was closed after the client left');
    });
  });
});

describe('upstream client: review regressions', () => {
  it('an answer that comes before the request body was written does not get the connection reused', T, async () => {
    // The upstream answers (keep-alive) on the first bytes of a 12 MB upload and stops reading
    // for a second; a second request follows at once and must not share that connection.
    let conns = 0;
    const heads = [];
    const srv = net.createServer((sock) => {
      conns++;
      let answered = false;
      sock.on('error', () => {});
      sock.on('data', (d) => {
        const s = d.toString('latin1');
        for (const m of s.matchAll(/(?:^|\n)(POST \S+ HTTP\/1\.1)/g)) heads.push(m[1]);
        if (answered) return;
        answered = true;
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"data":[]}');
        sock.pause();
        setTimeout(() => sock.resume(), 1000);
      });
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const port = srv.address().port;
    const cfg = cfgFor(port);
    cfg.limits = { max_body_bytes: 32 << 20 };
    const p = await startPonder({ config: cfg });
    try {
      const big = JSON.stringify({ input: 'x'.repeat(12 << 20) });
      const hdrs = { 'content-type': 'application/json' };
      const r1 = await httpReq(p.port, { method: 'POST', path: '/v1/embeddings', headers: hdrs, body: big });
      assert.equal(r1.status, 200);
      const r2 = await httpReq(p.port, { method: 'POST', path: '/v1/embeddings', headers: hdrs, body: '{"input":"second"}' });
      assert.equal(r2.status, 200);
      assert.equal(conns, 2, 'the second request went on a connection of its own');
      assert.ok(heads.every((h) => h === 'POST /v1/embeddings HTTP/1.1'), JSON.stringify(heads));
    } finally {
      const r = await p.stop('SIGTERM');
      srv.close();
      assert.equal(r.code, 0, p.output().slice(-1500));
    }
  });

  it('time waiting for a connection slot does not count against connect_timeout_ms', T, async () => {
    const reply = (sock) => setTimeout(() => sock.end(ok(CHAT, 'Connection: close\r\n')), 400);
    await withRaw(reply, async (p) => {
      const rs = await Promise.all([0, 1, 2].map(() => postChat(p)));
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200], rs.map((r) => r.text).join('\n'));
    }, { upstream: { connect_timeout_ms: 250, max_connections: 1 } });
  });

  it('a forced request with a field nested 300 deep is forwarded whole', T, async () => {
    let deep = '"bottom"';
    for (let i = 0; i < 300; i++) deep = `[${deep}]`;
    const bodies = [];
    const up = await startRawUpstream((sock, head, st, body) => { bodies.push(body); sock.write(ok(CHAT)); });
    const cfg = cfgFor(up.port);
    cfg.routes = [{ name: 'f', forcing: { rounds: 1 } }];
    const p = await startPonder({ config: cfg });
    try {
      const r = await httpReq(p.port, {
        method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' },
        body: `{"model":"m","messages":[{"role":"user","content":"q"}],"metadata_x":${deep}}`,
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(bodies.length, 2);
      for (const b of bodies) assert.ok(b.includes(`"metadata_x":${deep}`));
    } finally {
      await p.stop('SIGTERM');
      await up.close();
    }
  });

  it('a Host header from the upstream config replaces the URL\'s, and Content-Length is never doubled', T, async () => {
    let head = '';
    await withRaw((sock, h) => { head = h; sock.write(ok(CHAT)); }, async (p) => {
      assert.equal((await postChat(p)).status, 200);
      const lines = head.split('\r\n').map((l) => l.toLowerCase());
      assert.deepEqual(lines.filter((l) => l.startsWith('host:')), ['host: models.internal']);
      assert.equal(lines.filter((l) => l.startsWith('content-length:')).length, 1);
    }, { upstream: { headers: { Host: 'models.internal', 'Content-Length': '1' } } });
  });
});

describe('upstream client: the whole call is bounded by timeout_ms', () => {
  it('slow 503s with retries stop at timeout_ms, backoff included (504)', T, async () => {
    // Each answer takes 400 ms; four attempts with their backoff (250, 500, 1000 ms) would take
    // over 3 s, but timeout_ms is 1000 for the whole call.
    const reply = (sock) => setTimeout(() => sock.write(
      'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'), 400);
    await withRaw(reply, async (p, up) => {
      const t0 = Date.now();
      const r = await postChat(p);
      const took = Date.now() - t0;
      assert.equal(r.status, 504, r.text);
      assert.ok(took >= 900 && took < 1900, `took ${took} ms`);
      assert.ok(up.stats.requests <= 2, `${up.stats.requests} attempts`);
    }, { upstream: { timeout_ms: 1000, retries: 3 } });
  });

  it('a retry-after past the deadline: the 429 itself is relayed at once', T, async () => {
    const body = JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error' } });
    const reply = (sock) => sock.write('HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n' +
      `Retry-After: 20\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await withRaw(reply, async (p, up) => {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 429, r.text);
      assert.match(r.text, /slow down/);
      assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
      assert.equal(up.stats.requests, 1);
    }, { upstream: { timeout_ms: 2000, retries: 2 } });
  });

  it('a retry-after that fits is still honoured', T, async () => {
    const reply = (sock, head, st) => sock.write(st.n === 1
      ? 'HTTP/1.1 503 Busy\r\nRetry-After-Ms: 300\r\nContent-Length: 0\r\n\r\n' : ok(CHAT));
    await withRaw(reply, async (p, up) => {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 200, r.text);
      assert.ok(Date.now() - t0 >= 280);
      assert.equal(up.stats.requests, 2);
    }, { upstream: { timeout_ms: 3000, retries: 1 } });
  });

  it('a connect that keeps failing stops retrying at timeout_ms', T, async () => {
    const port = await closedPort();
    const p = await startPonder({ config: cfgFor(port, { retries: 20, timeout_ms: 500 }) });
    try {
      const t0 = Date.now();
      const r = await postChat(p);
      const took = Date.now() - t0;
      // 20 backoffs from 50 ms doubling (capped at 3.2 s) would take about a minute.
      assert.ok(r.status === 502 || r.status === 504, r.text);
      assert.ok(took < 1500, `took ${took} ms`);
    } finally {
      await p.stop('SIGTERM');
    }
  });
});

/** Every raw byte ponder answered with (head and body), from a raw socket. */
async function rawGet(p, path) {
  const sock = net.connect(p.port, '127.0.0.1');
  sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const chunks = [];
  for await (const c of sock) chunks.push(c);
  return Buffer.concat(chunks).toString('latin1');
}

describe('upstream client: header fields with control bytes', () => {
  it('a bare CR in an upstream header value never reaches the client', T, async () => {
    const reply = (sock, head) => sock.write(/evil/.test(head)
      ? 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Evil: a\rb\r\nX-Good: fine\r\nContent-Length: 2\r\n\r\n{}'
      : ok('{}'));
    await withRaw(reply, async (p) => {
      const raw = await rawGet(p, '/v1/evil');
      const head = raw.slice(0, raw.indexOf('\r\n\r\n') + 2);
      assert.doesNotMatch(head, /\r(?!\n)/, JSON.stringify(head));
      assert.doesNotMatch(head, /x-evil/i, JSON.stringify(head));
      // The field is dropped (libcurl) or the response refused (llhttp rejects a bare CR).
      assert.match(raw, /^HTTP\/1\.1 (200|502) /);
      if (raw.startsWith('HTTP/1.1 200')) assert.match(head, /x-good: fine/i);
      assert.equal((await get(p, '/v1/again')).status, 200, 'ponder goes on');
    });
  });

  it('a retry-after with a CR is not read as a delay', T, async () => {
    // Taken as "30", this would hold the retry for 30 s; dropped, the 250 ms backoff applies.
    const reply = (sock, head, st) => sock.write(st.n === 1
      ? 'HTTP/1.1 503 Busy\r\nRetry-After: 30\rX\r\nContent-Length: 0\r\n\r\n' : ok(CHAT));
    await withRaw(reply, async (p) => {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
      assert.ok(r.status === 200 || r.status === 502, r.text);
    }, { upstream: { retries: 1, timeout_ms: 40000 } });
  });
});

describe('upstream client: the request sent is the same on every backend', () => {
  // The fake upstream echoes unknown /v1/ paths: method, path, headers, body.
  async function echo(req) {
    const fake = await startFake({ port: 0 });
    const p = await startPonder({ config: cfgFor(fake.port, { retries: 0 }) });
    try {
      const r = await httpReq(p.port, req);
      assert.equal(r.status, 200, r.text);
      return r.json;
    } finally {
      await p.stop('SIGTERM');
      await fake.close();
    }
  }
  const names = (h) => Object.keys(h).sort();

  it('a POST without a content-type gets none invented', T, async () => {
    const e = await echo({ method: 'POST', path: '/v1/echo/a', body: 'x=1' });
    assert.equal(e.method, 'POST');
    assert.equal(e.body, 'x=1');
    assert.deepEqual(names(e.headers), ['content-length', 'host', 'x-request-id'], JSON.stringify(e.headers));
    assert.equal(e.headers['content-length'], '3');
  });

  it('a GET with a body sends it, with its Content-Length', T, async () => {
    const e = await echo({ method: 'GET', path: '/v1/echo/b?q=1', headers: { 'content-length': '5' }, body: 'hello' });
    assert.equal(e.method, 'GET');
    assert.equal(e.body, 'hello');
    assert.equal(e.headers['content-length'], '5');
    assert.deepEqual(names(e.headers), ['content-length', 'host', 'x-request-id'], JSON.stringify(e.headers));
  });

  it('a GET without a body, and a DELETE, carry no framing at all', T, async () => {
    for (const method of ['GET', 'DELETE']) {
      const e = await echo({ method, path: '/v1/echo/c' });
      assert.equal(e.method, method);
      assert.equal(e.body, '');
      assert.deepEqual(names(e.headers), ['host', 'x-request-id'], `${method}: ${JSON.stringify(e.headers)}`);
    }
  });

  it('a PUT with an empty body says Content-Length: 0; the client\'s content-type and accept go through', T, async () => {
    const e = await echo({ method: 'PUT', path: '/v1/echo/d', headers: { 'content-type': 'text/plain', accept: 'text/csv' } });
    assert.equal(e.headers['content-length'], '0');
    assert.equal(e.headers['content-type'], 'text/plain');
    assert.equal(e.headers.accept, 'text/csv');
  });
});

describe('upstream client: failures are logged', () => {
  it('a refused connect and a timeout are logged at warn with the request id, and no secret', T, async () => {
    const port = await closedPort();
    const cfg = cfgFor(port, { api_key: 'sk-upstream-secret', retries: 1 });
    const p = await startPonder({ config: cfg });
    try {
      const r = await httpReq(p.port, { method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-refused-1', authorization: 'Bearer sk-client' },
        body: chatBody });
      assert.equal(r.status, 502);
      await sleep(100);
      // One line per failed call, written by the exchange (route, upstream, status, cause with
      // the client's own detail); the backend does not log the same failure again.
      const lines = p.output().split('\n').filter((l) => /upstream/.test(l) && / warn /.test(l));
      assert.equal(lines.length, 1, p.output());
      assert.match(lines[0], / warn \[req-refused-1\] upstream call failed: route=r upstream=raw status=0 cause=connect \(/);
      assert.match(lines[0], new RegExp(`127\\.0\\.0\\.1.*${port}`));
      assert.doesNotMatch(p.output(), /sk-upstream-secret|sk-client/);
    } finally {
      await p.stop('SIGTERM');
    }
    await withRaw(() => {}, async (q) => {
      const r = await httpReq(q.port, { method: 'GET', path: '/v1/hangs', headers: { 'x-request-id': 'req-hang-2' } });
      assert.equal(r.status, 504);
      await sleep(100);
      assert.match(q.output(), / warn \[req-hang-2\] upstream call failed: .*status=0 cause=timeout \(/);
    }, { upstream: { timeout_ms: 300 } });
  });
});

/** The payload of a chunked body. */
function dechunk(s) {
  let out = '', i = 0;
  for (;;) {
    const eol = s.indexOf('\r\n', i);
    if (eol < 0) return out;
    const n = parseInt(s.slice(i, eol), 16);
    if (!n) return out;
    out += s.slice(eol + 2, eol + 2 + n);
    i = eol + 2 + n + 2;
  }
}

describe('upstream client: a pause holds across a pending retry', () => {
  // n: 2 streamed: one chain's answer is a long stream the client does not read yet, so ponder
  // pauses every chain; the other chain got a 503 (retry after 1 s), and its retry then starts
  // while paused. Its data must wait for the resume, not be taken in while the client's queue is
  // full (the libcurl client ignored a pause between attempts). Both streams arrive whole.
  it('a slow reader, a 503-then-200 chain and a streaming chain: both choices arrive whole', T, async () => {
    const fake = await startFake({ port: 0 });
    const cfg = cfgFor(fake.port, { retries: 2, timeout_ms: 20000 });
    cfg.routes = [{ name: 'r', forcing: { mode: 'chat', rounds: 1, think_budget: 100000, answer_budget: 50 } }];
    const p = await startPonder({ config: cfg });
    const N = 60000;
    try {
      fake.script({ tokens: N }, { status: 503, retry_after: 1 }, { tokens: N });
      const sock = net.connect(p.port, '127.0.0.1');
      const body = JSON.stringify({ model: 'm', stream: true, n: 2, messages: [{ role: 'user', content: 'q' }] });
      await new Promise((r) => sock.on('connect', r));
      sock.pause();
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Connection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      await sleep(2500); // the retry fired during the pause
      const chunks = [];
      sock.on('data', (c) => chunks.push(c));
      sock.resume();
      await new Promise((r) => sock.on('close', r));
      const raw = Buffer.concat(chunks).toString('utf8');
      assert.match(raw, /^HTTP\/1\.1 200 /);
      const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
      let text = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      if (/transfer-encoding: chunked/i.test(head)) text = dechunk(text);
      const content = ['', ''];
      for (const m of text.matchAll(/^data: (\{.*\})$/gm)) {
        const ev = JSON.parse(m[1]);
        for (const c of ev.choices || []) content[c.index] += (c.delta?.reasoning_content ?? '') + (c.delta?.content ?? '');
      }
      const want = Array.from({ length: N }, (_, i) => `tok${i}`).join(' ');
      // Each chain's thinking is one of the long streams, then its short answer.
      assert.ok(content[0].startsWith(want), `choice 0: ${content[0].slice(0, 80)}... (${content[0].length})`);
      assert.ok(content[1].startsWith(want), `choice 1: ${content[1].slice(0, 80)}... (${content[1].length})`);
      assert.match(text, /data: \[DONE\]/);
      const calls = fake.log.filter((e) => e.path.endsWith('/chat/completions'));
      assert.equal(calls.length, 5, 'two thinking calls (one retried) and two answers');
    } finally {
      await p.stop('SIGTERM');
      await fake.close();
    }
  });
});

describe('upstream client: the pool\'s bounds', () => {
  it('max_connections: two upstreams on one origin keep their own slots', T, async () => {
    // Each reply waits 150 ms, so calls overlap: "one" (1 slot) never has two connections open,
    // "many" opens one per concurrent call.
    const up = await startRawUpstream((sock) => { setTimeout(() => sock.write(ok(CHAT)), 150); });
    const base = `http://127.0.0.1:${up.port}/v1`;
    const p = await startPonder({ config: {
      log: { level: 'warn', access_log: 'off' },
      upstreams: [{ name: 'one', base_url: base, max_connections: 1, retries: 0 },
        { name: 'many', base_url: base, max_connections: 8, retries: 0 }],
      routes: [{ name: 'one', match: { path_prefix: '/one' }, upstream: 'one', forcing: { rounds: 0 } },
        { name: 'many', match: { path_prefix: '/many' }, upstream: 'many', forcing: { rounds: 0 } }],
    } });
    const call = (prefix) => httpReq(p.port, { method: 'POST', path: `${prefix}/v1/chat/completions`,
      headers: { 'content-type': 'application/json' }, body: chatBody });
    try {
      let rs = await Promise.all([call('/one'), call('/one'), call('/one')]);
      for (const r of rs) assert.equal(r.status, 200, r.text);
      if (NATIVE) assert.equal(up.stats.maxOpen, 1); // libcurl: one pool, the largest upstream's
      rs = await Promise.all([call('/many'), call('/many'), call('/many')]);
      for (const r of rs) assert.equal(r.status, 200, r.text);
      if (NATIVE) assert.ok(up.stats.maxOpen >= 3, `most open at once: ${up.stats.maxOpen}`);
    } finally {
      await p.stop('SIGTERM');
      await up.close();
    }
  });

  it('max_connection_requests and max_connection_age_ms retire connections', T, async () => {
    if (!NATIVE) return; // libcurl has no bound on the calls per connection
    await withRaw((sock) => sock.write(ok(CHAT)), async (p, up) => {
      for (let i = 0; i < 4; i++) assert.equal((await postChat(p)).status, 200);
      assert.equal(up.stats.connections, 2); // two calls per connection
    }, { upstream: { max_connection_requests: 2 } });
    await withRaw((sock) => sock.write(ok(CHAT)), async (p, up) => {
      assert.equal((await postChat(p)).status, 200);
      assert.equal((await postChat(p)).status, 200);
      assert.equal(up.stats.connections, 1); // young enough
      await sleep(700);
      assert.equal((await postChat(p)).status, 200);
      assert.equal(up.stats.connections, 2);
    }, { upstream: { max_connection_age_ms: 500 } });
  });
});

describe('upstream client: stall_timeout_ms', () => {
  // Every backend this run covers: the native HTTP/1.1 and h2c clients, or libcurl.
  const BACKENDS = NATIVE ? [{ name: 'h1', h2c: false }, { name: 'h2c', h2c: true }] : [{ name: 'curl', h2c: false }];
  const STALL = 300;
  const stallCfg = (fake, h2c) => {
    const cfg = cfgFor(fake.port, { retries: 1, timeout_ms: 20000, stall_timeout_ms: STALL, ...(h2c ? { http2: true } : {}) });
    cfg.log.level = 'error';
    return cfg;
  };

  for (const B of BACKENDS) {
    it(`${B.name}: an upstream that accepts and then says nothing is cut at stall_timeout_ms (504), not timeout_ms`, T, async () => {
      const fake = await startFake({ port: 0, h2c: B.h2c });
      const p = await startPonder({ config: stallCfg(fake, B.h2c) });
      try {
        fake.script({ hang: true });
        const t0 = Date.now();
        const r = await postChat(p);
        const took = Date.now() - t0;
        assert.equal(r.status, 504, r.text);
        assert.equal(JSON.parse(r.text).error.code, 'upstream_timeout');
        assert.match(r.text, /no data from the upstream for 300 ms/);
        assert.ok(took >= STALL - 20 && took < 3000, `took ${took} ms`);
        // A stall is a timeout: not retried (the upstream may be working on the request).
        assert.equal(fake.log.filter((e) => e.path.endsWith('/chat/completions')).length, 1);
      } finally {
        await p.stop('SIGTERM');
        await fake.close();
      }
    });

    it(`${B.name}: a client that stops reading for longer than stall_timeout_ms does not trip it`, T, async () => {
      // A long stream the client does not read for 1.5 s: ponder pauses the upstream transfer, so
      // the upstream sends nothing for far longer than 300 ms. That silence is ponder's own, not
      // the upstream's: the stream arrives whole once the client reads again.
      const fake = await startFake({ port: 0, h2c: B.h2c });
      const p = await startPonder({ config: stallCfg(fake, B.h2c) });
      const N = 60000;
      try {
        fake.script({ tokens: N });
        const sock = net.connect(p.port, '127.0.0.1');
        const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'q' }] });
        await new Promise((r) => sock.on('connect', r));
        sock.pause();
        sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Connection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        await sleep(1500);
        const chunks = [];
        sock.on('data', (c) => chunks.push(c));
        sock.resume();
        await new Promise((r) => sock.on('close', r));
        const raw = Buffer.concat(chunks).toString('utf8');
        assert.match(raw, /^HTTP\/1\.1 200 /);
        const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
        let text = raw.slice(raw.indexOf('\r\n\r\n') + 4);
        if (/transfer-encoding: chunked/i.test(head)) text = dechunk(text);
        assert.doesNotMatch(text, /no data from the upstream/);
        let content = '';
        for (const m of text.matchAll(/^data: (\{.*\})$/gm)) {
          for (const c of JSON.parse(m[1]).choices || []) content += c.delta?.content ?? '';
        }
        assert.equal(content, Array.from({ length: N }, (_, i) => `tok${i}`).join(' '));
        assert.match(text, /data: \[DONE\]/);
      } finally {
        await p.stop('SIGTERM');
        await fake.close();
      }
    });
  }
});
