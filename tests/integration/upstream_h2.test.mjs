// The native HTTP/2 upstream client (proxy/upstream_h2.c): an upstream with `http2: true` is
// spoken to in h2c with prior knowledge, its requests multiplexed as streams over few
// connections. The upstream here is Node's http2 server; clients reach ponder over HTTP/1.1.
// PONDER_UPSTREAM_CLIENT=curl does not change this path (it is about HTTP/1.1 vs libcurl).
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/upstream_h2.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startPonder, httpReq, parseSSE, sleep, waitFor, closedPort } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 30000 };

/** An h2c upstream: `handle(stream, headers, req, stats)` runs once a request's body has been
 * read. Counts sessions, streams, the most streams open at once, and how streams ended. */
async function startH2(handle, { settings } = {}) {
  const stats = { sessions: 0, streams: 0, open: 0, maxOpen: 0, requests: [], rstCodes: [] };
  const sessions = new Set();
  const srv = http2.createServer(settings ? { settings } : {});
  srv.on('session', (s) => {
    stats.sessions++;
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  srv.on('stream', (stream, headers) => {
    stats.streams++;
    stats.open++;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    stream.on('close', () => { stats.open--; stats.rstCodes.push(stream.rstCode); });
    stream.on('error', () => {});
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      const req = { headers, body: Buffer.concat(chunks).toString('utf8') };
      stats.requests.push(req);
      handle(stream, headers, req, stats);
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: srv.address().port, stats, sessions,
    close: () => new Promise((r) => { for (const s of sessions) s.destroy(); srv.close(() => r()); }),
  };
}

function cfgFor(port, upstream = {}) {
  return {
    log: { level: 'warn', access_log: 'off' },
    upstreams: [{ name: 'h2', base_url: `http://127.0.0.1:${port}/v1`, http2: true, retries: 0,
                  timeout_ms: 5000, connect_timeout_ms: 2000, ...upstream }],
    routes: [{ name: 'r', forcing: { rounds: 0 } }],
  };
}

const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/;

async function stopClean(p) {
  const r = await p.stop('SIGTERM');
  assert.equal(r.code, 0, `ponder exit ${JSON.stringify(r)}\n${p.output().slice(-3000)}`);
  assert.doesNotMatch(p.output(), SANITIZER, p.output().slice(-3000));
}

async function withH2(handle, fn, { upstream = {}, settings } = {}) {
  const up = await startH2(handle, { settings });
  let p = null;
  try {
    p = await startPonder({ config: cfgFor(up.port, upstream) });
    await fn(p, up);
  } finally {
    if (p) await stopClean(p);
    await up.close();
  }
}

const CHAT = JSON.stringify({
  id: 'chatcmpl-h2', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'over h2' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
});
const chatBody = (extra = {}) => JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello' }], ...extra });
const postChat = (p, body = chatBody()) => httpReq(p.port, {
  method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body,
});
const replyChat = (stream, status = 200, body = CHAT, extra = {}) => {
  if (stream.destroyed) return;
  stream.respond({ ':status': status, 'content-type': 'application/json', ...extra });
  stream.end(body);
};

const chunk = (i) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm',
  choices: [{ index: 0, delta: { content: `t${i}` }, finish_reason: null }] })}\n\n`;

/** Streams SSE chunks every `ms` until `n` were sent (then [DONE]) or the stream went away. */
function sseReply(stream, { n = Infinity, ms = 40, onTick } = {}) {
  stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
  let i = 0;
  const t = setInterval(() => {
    if (stream.destroyed || stream.closed) return clearInterval(t);
    if (onTick && onTick(i, stream) === false) return clearInterval(t);
    if (i >= n) { clearInterval(t); stream.end('data: [DONE]\n\n'); return; }
    stream.write(chunk(i++));
  }, ms);
}

/** An SSE request to ponder over HTTP/1.1: resolves with the text once the response ends (or
 * breaks off); `onText(text, req)` sees it grow. */
function sseReq(p, { onText } = {}) {
  return new Promise((resolve) => {
    let text = '';
    let done = false;
    const end = (how) => { if (!done) { done = true; resolve({ text, how }); } };
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; if (onText) onText(text, req); });
      res.on('end', () => end('end'));
      res.on('aborted', () => end('aborted'));
      res.on('error', () => end('error'));
      res.on('close', () => end('close'));
    });
    req.on('error', () => end('error'));
    req.end(chatBody({ stream: true }));
  });
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

describe('h2c upstream: requests and responses', () => {
  it('relays a chat completion exactly and sends the method, path, headers and body', T, async () => {
    const body = chatBody({ temperature: 0.5 });
    await withH2((stream, headers) => {
      if (headers[':path'].startsWith('/v1/things')) {
        stream.respond({ ':status': 201, 'content-type': 'text/plain', 'x-upstream-id': 'abc 123' });
        stream.end('thing body');
      } else {
        replyChat(stream, 200, CHAT, { 'x-upstream-id': 'chat-1' });
      }
    }, async (p, up) => {
      const r = await postChat(p, body);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.text, CHAT);
      const seen = up.stats.requests[0];
      assert.equal(seen.headers[':method'], 'POST');
      assert.equal(seen.headers[':path'], '/v1/chat/completions');
      assert.equal(seen.headers[':scheme'], 'http');
      assert.equal(seen.headers[':authority'], 'models.internal'); // the configured Host
      assert.equal(seen.headers.host, undefined);
      assert.equal(seen.headers['content-type'], 'application/json');
      assert.equal(seen.headers['content-length'], String(Buffer.byteLength(body)));
      assert.equal(seen.headers['x-custom'], 'yes');
      assert.equal(seen.headers.connection, undefined);
      assert.equal(seen.body, body);

      // A pass-through call relays the status and the upstream's headers.
      const g = await httpReq(p.port, { method: 'GET', path: '/v1/things/7?x=1&y=2' });
      assert.equal(g.status, 201);
      assert.equal(g.text, 'thing body');
      assert.equal(g.headers['x-upstream-id'], 'abc 123');
      assert.equal(up.stats.requests[1].headers[':path'], '/v1/things/7?x=1&y=2');
      assert.equal(up.stats.requests[1].headers[':method'], 'GET');
      assert.equal(up.stats.sessions, 1);
    }, { upstream: { headers: { Host: 'models.internal', 'X-Custom': 'yes', Connection: 'keep-alive' } } });
  });

  it('runs 200 concurrent requests as streams of one session', T, async () => {
    await withH2((stream) => setTimeout(() => replyChat(stream), 50), async (p, up) => {
      const rs = await Promise.all(Array.from({ length: 200 }, () => postChat(p)));
      for (const r of rs) assert.equal(r.status, 200, r.text);
      for (const r of rs) assert.equal(r.text, CHAT);
      assert.equal(up.stats.sessions, 1);
      assert.equal(up.stats.requests.length, 200);
      assert.ok(up.stats.maxOpen > 50, `max open streams ${up.stats.maxOpen}`);
    });
  });

  it('keeps to the server\'s SETTINGS_MAX_CONCURRENT_STREAMS and queues the rest', T, async () => {
    await withH2((stream) => setTimeout(() => replyChat(stream), 30), async (p, up) => {
      const rs = await Promise.all(Array.from({ length: 20 }, () => postChat(p)));
      for (const r of rs) assert.equal(r.status, 200, r.text);
      assert.equal(up.stats.requests.length, 20);
      assert.ok(up.stats.maxOpen <= 2, `max open streams ${up.stats.maxOpen}`);
      assert.equal(up.stats.sessions, 1);
    }, { settings: { maxConcurrentStreams: 2 }, upstream: { max_connections: 1 } });
  });
});

describe('h2c upstream: review regressions', () => {
  it('time waiting for a stream slot does not count against connect_timeout_ms', T, async () => {
    await withH2((stream) => setTimeout(() => replyChat(stream), 400), async (p, up) => {
      const rs = await Promise.all([0, 1, 2].map(() => postChat(p)));
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200], rs.map((r) => r.text).join('\n'));
      assert.equal(up.stats.maxOpen, 1);
      assert.equal(up.stats.sessions, 1);
    }, { settings: { maxConcurrentStreams: 1 }, upstream: { connect_timeout_ms: 250, max_connections: 1 } });
  });
});

describe('h2c upstream: streaming', () => {
  it('relays SSE event by event; a client abort resets only its own stream', T, async () => {
    await withH2((stream, headers, req) => {
      const n = JSON.parse(req.body).stream_options ? 10 : Infinity;
      sseReply(stream, { n, ms: 40 });
    }, async (p, up) => {
      // B runs to its end on the same session while A is aborted after three events.
      const bDone = new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => { text += d; });
          res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], text }));
        });
        req.end(chatBody({ stream: true, stream_options: { include_usage: false } }));
      });
      const times = [];
      const a = await sseReq(p, {
        onText: (text, req) => {
          times.push(Date.now());
          if ((text.match(/^data:/gm) || []).length >= 3) req.destroy();
        },
      });
      const evA = parseSSE(a.text.split('\n\n').slice(0, 3).join('\n\n') + '\n\n');
      assert.deepEqual(evA.map((e) => e.choices[0].delta.content), ['t0', 't1', 't2']);
      assert.ok(times.length >= 3 && times[times.length - 1] - times[0] >= 50, 'events arrived one by one');
      // The upstream saw A's stream reset (NGHTTP2_CANCEL), while B goes on.
      await waitFor(() => up.stats.rstCodes.includes(http2.constants.NGHTTP2_CANCEL), { what: 'RST_STREAM CANCEL' });
      const b = await bDone;
      assert.equal(b.status, 200);
      assert.match(b.type, /text\/event-stream/);
      const evB = parseSSE(b.text);
      assert.equal(evB.length, 11);
      assert.equal(evB[10], '[DONE]');
      assert.equal(evB[9].choices[0].delta.content, 't9');
      assert.equal(up.stats.sessions, 1);
    });
  });

  it('backpressure: a slow reader holds the upstream stream back, memory stays bounded, and the body arrives whole', T, async () => {
    const CH = 16 * 1024;
    const TOTAL = 40 * 1024 * 1024;
    const sent = { bytes: 0, hash: null };
    const handle = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
      const h = crypto.createHash('sha256');
      let i = 0;
      const pump = () => {
        while (sent.bytes < TOTAL) {
          const b = Buffer.alloc(CH, i++ % 251);
          h.update(b);
          sent.bytes += CH;
          if (!stream.write(b)) { stream.once('drain', pump); return; }
        }
        sent.hash = h.digest('hex');
        stream.end();
      };
      pump();
    };
    await withH2(handle, async (p) => {
      const pid = p.proc.pid;
      const rss0 = rssKiB(pid);
      let rssMax = rss0;
      const sampler = setInterval(() => { try { rssMax = Math.max(rssMax, rssKiB(pid)); } catch { /* gone */ } }, 20);
      try {
        const res = await new Promise((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: p.port, path: '/v1/blob', agent: false }, resolve);
          req.on('error', reject);
          req.end();
        });
        assert.equal(res.statusCode, 200);
        const h = crypto.createHash('sha256');
        let got = 0;
        let stalledGap = -1;
        await new Promise((resolve, reject) => {
          res.on('data', (d) => {
            h.update(d);
            got += d.length;
            if (stalledGap < 0 && got >= 1024 * 1024) {
              // Stop reading for a while: the upstream must stop too, well short of the end.
              res.pause();
              setTimeout(() => { stalledGap = sent.bytes - got; res.resume(); }, 800);
            }
          });
          res.on('end', resolve);
          res.on('error', reject);
        });
        assert.equal(got, TOTAL);
        assert.equal(h.digest('hex'), sent.hash);
        assert.ok(stalledGap >= 0 && stalledGap < 24 * 1024 * 1024,
          `the upstream ran ${stalledGap} bytes ahead of a reader that stopped`);
      } finally {
        clearInterval(sampler);
      }
      assert.ok(rssMax - rss0 < 100 * 1024, `ponder's RSS grew by ${rssMax - rss0} KiB`);
    });
  });
});

describe('h2c upstream: retries and failures', () => {
  it('retries a 503 and relays the 200 that follows', T, async () => {
    await withH2((stream, headers, req, stats) => {
      if (stats.requests.length === 1)
        replyChat(stream, 503, JSON.stringify({ error: { message: 'busy', type: 'overloaded' } }), { 'retry-after-ms': '20' });
      else
        replyChat(stream);
    }, async (p, up) => {
      const r = await postChat(p);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.text, CHAT);
      assert.equal(up.stats.requests.length, 2);
    }, { upstream: { retries: 1 } });
  });

  it('a stream reset (not REFUSED_STREAM) is not sent again: the server may have done the work', T, async () => {
    await withH2((stream) => {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }, async (p, up) => {
      const r = await postChat(p);
      assert.equal(r.status, 502, r.text);
      assert.equal(r.json.error.type, 'upstream_error');
      assert.equal(up.stats.requests.length, 1, 'one request only, despite retries: 2');
    }, { upstream: { retries: 2 } });
  });

  it('a session destroyed while the request is processed is not sent again', T, async () => {
    await withH2((stream) => {
      setTimeout(() => stream.session.destroy(), 50);
    }, async (p, up) => {
      const r = await postChat(p);
      assert.equal(r.status, 502, r.text);
      assert.equal(up.stats.requests.length, 1, 'one request only, despite retries: 2');
      const again = await postChat(p); // the next call gets a new session and fails the same way
      assert.equal(again.status, 502);
      assert.equal(up.stats.requests.length, 2);
    }, { upstream: { retries: 2 } });
  });

  it('a refused connection is retried, then reported as an OpenAI-shaped 502', T, async () => {
    const port = await closedPort();
    const p = await startPonder({ config: cfgFor(port, { retries: 2 }) });
    try {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 502);
      assert.equal(r.json.error.type, 'upstream_error');
      assert.equal(r.json.error.code, 'upstream_error');
      assert.match(r.json.error.message, /refused/i);
      assert.ok(Date.now() - t0 >= 140, 'two backoffs of 50 and 100 ms');
    } finally {
      await stopClean(p);
    }
  });

  it('an upstream that never answers times out as a 504 and its stream is reset', T, async () => {
    await withH2(() => {}, async (p, up) => {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 504, r.text);
      assert.equal(r.json.error.code, 'upstream_timeout');
      assert.ok(Date.now() - t0 < 3000);
      await waitFor(() => up.stats.rstCodes.length === 1, { what: 'the stream reset' });
      assert.equal(up.stats.rstCodes[0], http2.constants.NGHTTP2_CANCEL);
    }, { upstream: { timeout_ms: 300 } });
  });

  it('after GOAWAY or a closed session, the next requests go on a new connection', T, async () => {
    let held = null; // when set, requests wait here instead of being answered
    await withH2((stream) => {
      if (held) held.push(stream);
      else replyChat(stream);
    }, async (p, up) => {
      assert.equal((await postChat(p)).status, 200);
      for (const s of up.sessions) s.goaway();
      await sleep(100);
      const rs = await Promise.all([0, 1, 2].map(() => postChat(p)));
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200], rs.map((r) => r.text).join('\n'));
      assert.equal(up.stats.sessions, 2);
      for (const s of up.sessions) s.close();
      await sleep(100);
      assert.equal((await postChat(p)).status, 200);
      for (const s of up.sessions) s.destroy();
      await sleep(100);
      assert.equal((await postChat(p)).status, 200);
      assert.equal(up.stats.sessions, 4);

      // GOAWAY naming the first of four open streams: the three above it were not processed
      // and go again on a new connection, without counting as attempts (retries is 0).
      held = [];
      const before = up.stats.requests.length;
      const racing = Promise.all([0, 1, 2, 3].map(() => postChat(p)));
      await waitFor(() => held.length === 4, { what: 'four held streams' });
      const ids = held.map((s) => s.id).sort((a, b) => a - b);
      const session = held[0].session;
      const keep = held.find((s) => s.id === ids[0]);
      held = null;
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, ids[0]);
      replyChat(keep);
      const rs2 = await racing;
      for (const r of rs2) assert.equal(r.status, 200, r.text);
      assert.equal(up.stats.sessions, 5);
      assert.equal(up.stats.requests.length, before + 4 + 3);
    });
  });

  it('a session destroyed mid-response breaks that stream off, and ponder goes on', T, async () => {
    let first = true;
    await withH2((stream) => {
      if (!first) return replyChat(stream);
      first = false;
      sseReply(stream, { ms: 30, onTick: (i, s) => { if (i === 3) { s.session.destroy(); return false; } return true; } });
    }, async (p) => {
      const r = await sseReq(p);
      const events = parseSSE(r.text);
      assert.deepEqual(events.slice(0, 3).map((e) => e.choices[0].delta.content), ['t0', 't1', 't2']);
      assert.ok(!events.includes('[DONE]'), r.text);
      const last = events[events.length - 1];
      assert.equal(last.error.type, 'upstream_error', r.text);
      assert.equal((await postChat(p)).status, 200);
    });
  });
});

describe('h2c upstream: the whole call is bounded by timeout_ms', () => {
  it('slow 503s with retries stop at timeout_ms, backoff included (504)', T, async () => {
    // Each answer takes 400 ms; four attempts with their backoff would take over 3 s.
    const busy = JSON.stringify({ error: { message: 'busy', type: 'overloaded' } });
    await withH2((stream) => setTimeout(() => { if (!stream.destroyed) replyChat(stream, 503, busy); }, 400), async (p, up) => {
      const t0 = Date.now();
      const r = await postChat(p);
      const took = Date.now() - t0;
      assert.equal(r.status, 504, r.text);
      assert.ok(took >= 900 && took < 1900, `took ${took} ms`);
      assert.ok(up.stats.requests.length <= 2, `${up.stats.requests.length} attempts`);
    }, { upstream: { timeout_ms: 1000, retries: 3 } });
  });

  it('a retry-after past the deadline: the 429 itself is relayed at once', T, async () => {
    const slow = JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error' } });
    await withH2((stream) => replyChat(stream, 429, slow, { 'retry-after': '20' }), async (p, up) => {
      const t0 = Date.now();
      const r = await postChat(p);
      assert.equal(r.status, 429, r.text);
      assert.match(r.text, /slow down/);
      assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
      assert.equal(up.stats.requests.length, 1);
    }, { upstream: { timeout_ms: 2000, retries: 2 } });
  });

  it('a connect that keeps failing stops retrying at timeout_ms, logged at warn with the request id', T, async () => {
    const port = await closedPort();
    const p = await startPonder({ config: cfgFor(port, { retries: 20, timeout_ms: 500 }) });
    try {
      const t0 = Date.now();
      const r = await httpReq(p.port, { method: 'POST', path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-h2-refused' }, body: chatBody() });
      assert.ok(r.status === 502 || r.status === 504, r.text);
      assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
      await sleep(100);
      assert.match(p.output(), / warn \[req-h2-refused\] upstream call failed: .*status=0 cause=(connect|timeout) \(/);
    } finally {
      await stopClean(p);
    }
  });
});

describe('h2c upstream: a response that ends the request early', () => {
  // RFC 9113 section 8.1: a server may answer before it read the whole request, then send
  // RST_STREAM NO_ERROR to stop the rest; the client must not discard the response (nginx's
  // `return` does this). tls.test.mjs checks the same over TLS with ALPN h2.
  it('a complete response, then RST_STREAM NO_ERROR while the body is still going out, is relayed', T, async () => {
    const srv = http2.createServer();
    let streams = 0;
    srv.on('stream', (stream) => {
      streams++;
      stream.on('error', () => {});
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', content: 'early' }, finish_reason: 'stop' }] }));
      setImmediate(() => stream.close(http2.constants.NGHTTP2_NO_ERROR));
    });
    srv.on('session', (s) => s.on('error', () => {}));
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const p = await startPonder({ config: cfgFor(srv.address().port) });
    try {
      const big = 'x'.repeat(300 * 1024); // over the stream's initial window: still sending
      for (let i = 0; i < 3; i++) {
        const r = await httpReq(p.port, { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: big }] }) });
        assert.equal(r.status, 200, r.text.slice(0, 300));
        assert.equal(r.json.choices[0].message.content, 'early');
      }
      assert.equal(streams, 3);
    } finally {
      await p.stop();
      await new Promise((r) => srv.close(r));
    }
  });
});
