// Pass-through paths (SPEC section 4): nothing a client puts in its request target steers the
// upstream connection. Crafted paths against base URLs with and without port and path get 400
// or 404, are never sent, and ponder's api_key reaches no other listener; legit pass-through
// paths still go to the base URL's host and port under its path.
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/paths.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { startFake, startPonder } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 60000 };
const SECRET = 'sk-ponder-upstream-secret-4711';

// ---------------------------------------------------------------------------
// local helpers

/** A raw TCP listener that must receive nothing: records every connection and every byte,
 * and answers anything with a small HTTP 200 (so a leak would look like a success). */
async function startTrap(port = 0) {
  const conns = [];
  const sockets = new Set();
  const srv = net.createServer((s) => {
    const rec = { data: '' };
    conns.push(rec);
    sockets.add(s);
    s.on('data', (d) => {
      rec.data += d.toString('latin1');
      if (rec.data.includes('\r\n\r\n'))
        s.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"trap":1}\n');
    });
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((res, rej) => { srv.once('error', rej); srv.listen(port, '127.0.0.1', res); });
  return {
    port: srv.address().port, conns,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

/** A trap on a free port in 10000..19999, so that its number starts with the digit "1". */
async function startTrapWithLeadingOne() {
  for (let i = 0; i < 200; i++) {
    const port = 10000 + Math.floor(Math.random() * 10000);
    try { return await startTrap(port); } catch { /* in use: try another */ }
  }
  throw new Error('no free port in 10000..19999');
}

/** One request over a fresh socket ("connection: close"); resolves { status, head, body }. */
function rawRequest(port, method, target, { headers = {}, body = '' } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const hdrs = { host: 'x', connection: 'close', ...headers };
    if (body) hdrs['content-length'] = Buffer.byteLength(body);
    const lines = Object.entries(hdrs).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    s.on('connect', () => s.write(`${method} ${target} HTTP/1.1\r\n${lines}\r\n${body}`));
    s.on('data', (d) => { buf += d.toString('latin1'); });
    s.on('error', reject);
    const timer = setTimeout(() => s.destroy(), 10000);
    s.on('close', () => {
      clearTimeout(timer);
      const i = buf.indexOf('\r\n\r\n');
      const m = buf.match(/^HTTP\/1\.1 (\d{3})/);
      resolve({ status: m ? Number(m[1]) : 0, head: buf.slice(0, i), body: buf.slice(i + 4) });
    });
  });
}

/** Sends `targets` pipelined on one keep-alive socket; resolves with the statuses in order. */
function pipelined(port, targets) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const statuses = [];
    s.on('connect', () => s.write(targets.map((t) => `GET ${t} HTTP/1.1\r\nhost: x\r\n\r\n`).join('')));
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const m = buf.match(/^HTTP\/1\.1 (\d{3})[^]*?\r\ncontent-length: (\d+)\r\n[^]*?\r\n\r\n/i);
        if (!m || buf.length < m[0].length + Number(m[2])) break;
        statuses.push(Number(m[1]));
        buf = buf.slice(m[0].length + Number(m[2]));
      }
      if (statuses.length === targets.length) { s.destroy(); resolve(statuses); }
    });
    s.on('error', reject);
    s.on('close', () => resolve(statuses));
  });
}

function rssKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

function upstreamCalls(metricsText) {
  let n = 0;
  for (const line of metricsText.split('\n'))
    if (line.startsWith('ponder_upstream_requests_total{')) n += Number(line.split(' ').pop());
  return n;
}

// ---------------------------------------------------------------------------

describe('pass-through paths cannot steer the upstream connection', () => {
  let fake, trap, trap1, p;
  const up = (name, base_url) => ({ name, base_url, api_key: SECRET, retries: 0,
                                    timeout_ms: 3000, connect_timeout_ms: 1000 });
  const rt = (name, upstream) => ({ name, match: { path_prefix: `/${name}` }, upstream,
                                    forcing: { rounds: 0 } });

  before(async () => {
    fake = await startFake({ port: 0 });
    trap = await startTrap();
    trap1 = await startTrapWithLeadingOne();
    p = await startPonder({ config: {
      log: { level: 'warn', access_log: 'off' },
      upstreams: [
        up('noport', 'http://127.0.0.1'),       // no port, no path (DeepSeek's documented style)
        up('short', 'http://127.0.0'),          // a host that a suffix would complete
        up('digit', 'http://127.0.0.1:1'),      // a port that more digits would extend
        up('ok', `http://127.0.0.1:${fake.port}`),   // the fake, no path
        up('okv1', `http://127.0.0.1:${fake.port}/v1/`), // the fake, with path and a trailing slash
      ],
      routes: [
        { name: 'catchall', upstream: 'noport', forcing: { rounds: 0 } },
        rt('short', 'short'), rt('digit', 'digit'), rt('ok', 'ok'), rt('okv1', 'okv1'),
      ],
    } });
  });

  after(async () => {
    if (p) await p.stop();
    await fake?.close();
    await trap?.close();
    await trap1?.close();
  });

  it('crafted paths get 400 or 404 and reach no listener', T, async () => {
    const crafted = [
      // Authority injection: the old join skipped 3 bytes and concatenated the rest.
      [`/ab:${trap.port}/v1/x`, 404],
      [`/ab:${trap.port}/v1/chat/completions`, 404],
      [`/short/ab.1:${trap.port}/v1/x`, 404],
      [`/digit/ab${String(trap1.port).slice(1)}/v1/x`, 404],
      [`/ok/ab:${trap.port}/v1/x`, 404],
      ['/x.attacker.example/v1/x', 404],
      [`/@127.0.0.1:${trap.port}/v1/x`, 404],
      [`http://127.0.0.1:${trap.port}/v1/x`, 404], // absolute-form target
      // Leaving the base path.
      ['/okv1/v1/../../x', 400],
      ['/okv1/v1/../v1/models', 400],
      ['/ok/v1/%2e%2e/x', 400],
      ['/ok/v1/%2E%2E/%2e%2e/x', 400],
      ['/ok/v1/.%2e/x', 400],
      ['/okv1/v1/./x', 400],
      ['/ok/v1/a%2fb', 400],
      ['/ok/v1/a%2F..%2Fb', 400],
      ['/ok/v1/a%5cb', 400],
      ['/ok/v1/a\\b', 400],
      ['/ok/v1/@x', 400],
      [`/ok/v1/@127.0.0.1:${trap.port}/x`, 400],
      [`/ok/v1//127.0.0.1:${trap.port}/x`, 400],
      ['/ok/v1/%c0%ae%c0%ae/x', 400],
      ['/ok/v1/%252e%252e/x', 400],
      ['/ok/v1/x?a\\b', 400],
      ['/v1/../../tenant-b/x', 400],
      ['/v1/%2e%2e/x', 400],
      ['/v1/a%2fb', 400],
      ['/v1/a\\b', 400],
      ['/v1/@x', 400],
    ];
    const before = fake.log.length;
    for (const [target, want] of crafted) {
      const r = await rawRequest(p.port, 'GET', target);
      assert.equal(r.status, want, `${target}: ${r.head}\n${r.body}`);
      const j = JSON.parse(r.body);
      assert.equal(j.error.type, 'invalid_request_error', target);
      assert.ok(!r.body.includes(SECRET));
    }
    // The same crafted paths as POSTs with a body.
    for (const [target, want] of crafted.slice(0, 6)) {
      const r = await rawRequest(p.port, 'POST', target, { headers: { 'content-type': 'application/json' },
                                                          body: '{"model":"m","messages":[]}' });
      assert.equal(r.status, want, target);
    }
    const m = await rawRequest(p.port, 'GET', '/metrics');
    assert.equal(upstreamCalls(m.body), 0, 'no crafted request made an upstream call');
    assert.equal(trap.conns.length, 0, JSON.stringify(trap.conns));
    assert.equal(trap1.conns.length, 0, JSON.stringify(trap1.conns));
    assert.equal(fake.log.length, before, JSON.stringify(fake.log.slice(before)));
  });

  it('legit pass-through paths go to the base host and port, under the base path', T, async () => {
    fake.reset();
    // No path in the base: the client's rest of path starts at "/".
    let r = await rawRequest(p.port, 'GET', '/ok/v1/v1/files/file-abc?purpose=x%20y&after=f.1');
    assert.equal(r.status, 200, r.body);
    let e = JSON.parse(r.body);
    assert.equal(e.path, '/v1/files/file-abc');
    assert.equal(e.query, 'purpose=x%20y&after=f.1');
    assert.equal(e.headers.authorization, `Bearer ${SECRET}`);
    // A path (with a trailing slash in the config): one "/" at the join, escapes kept.
    r = await rawRequest(p.port, 'POST', '/okv1/v1/embeddings', { headers: { 'content-type': 'application/json' },
                                                                  body: '{"input":"a"}' });
    assert.equal(r.status, 200, r.body);
    e = JSON.parse(r.body);
    assert.equal(e.method, 'POST');
    assert.equal(e.path, '/v1/embeddings');
    assert.equal(e.body, '{"input":"a"}');
    for (const [target, path] of [
      ['/okv1/v1/files/a%20b', '/v1/files/a%20b'],
      ['/okv1/v1/models/ft:gpt-3.5-turbo:org:id', '/v1/models/ft:gpt-3.5-turbo:org:id'],
      ['/okv1/v1/files/caf%C3%A9/', '/v1/files/caf%C3%A9/'],
      ['/okv1/v1/x/...', '/v1/x/...'],
    ]) {
      r = await rawRequest(p.port, 'GET', target);
      assert.equal(r.status, 200, `${target}: ${r.body}`);
      assert.equal(JSON.parse(r.body).path, path);
    }
    // An '@' or an authority in the query stays in the query.
    r = await rawRequest(p.port, 'GET', `/okv1/v1/things?u=a@b&next=//127.0.0.1:${trap.port}/`);
    assert.equal(r.status, 200, r.body);
    e = JSON.parse(r.body);
    assert.equal(e.path, '/v1/things');
    assert.equal(e.query, `u=a@b&next=//127.0.0.1:${trap.port}/`);
    // The models list and a chat passed through use the same join.
    r = await rawRequest(p.port, 'GET', '/okv1/v1/models');
    assert.equal(r.status, 200, r.body);
    assert.ok(JSON.parse(r.body).data.some((m) => m.id === 'fake-model'));
    r = await rawRequest(p.port, 'POST', '/okv1/v1/chat/completions', { headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(r.status, 200, r.body);
    const paths = fake.log.map((x) => x.path);
    assert.ok(paths.includes('/v1/models') && paths.includes('/v1/chat/completions'), JSON.stringify(paths));
    assert.equal(trap.conns.length, 0);
    assert.equal(trap1.conns.length, 0);
  });

  it('many crafted authorities grow neither memory nor upstream work', T, async () => {
    const crafted = (i) => [`/ab:${1 + (i % 60000)}/v1/x`, `/h${i}.attacker.example/v1/x`,
                            `/ok/ab:${1 + (i % 60000)}/v1/x`, `/short/ab.${i % 250}:${trap.port}/v1/x`][i % 4];
    const round = async (from, n) => {
      const targets = [];
      for (let i = from; i < from + n; i++) targets.push(crafted(i));
      for (let k = 0; k < targets.length; k += 500) {
        const st = await pipelined(p.port, targets.slice(k, k + 500));
        assert.equal(st.length, Math.min(500, targets.length - k));
        assert.ok(st.every((s) => s === 404), JSON.stringify(st.slice(0, 5)));
      }
    };
    await round(0, 2000); // warm-up: allocator and buffers reach their steady size
    const rss0 = rssKb(p.proc.pid);
    await round(2000, 8000);
    const rss1 = rssKb(p.proc.pid);
    // Under AddressSanitizer freed memory sits in its quarantine, so RSS says nothing there.
    if (!process.env.ASAN_OPTIONS)
      assert.ok(rss1 - rss0 < 4096, `RSS grew from ${rss0} kB to ${rss1} kB over 8000 crafted requests`);
    const m = await rawRequest(p.port, 'GET', '/metrics');
    assert.equal(trap.conns.length, 0);
    // Only the legit calls of the test above reached an upstream.
    assert.ok(upstreamCalls(m.body) <= 10, m.body);
  });
});

describe('upstream URLs are never cut', () => {
  it('a forced call under a base path of 3,000 bytes reaches the upstream whole', T, async () => {
    const fake = await startFake({ port: 0 });
    const long = 'seg-'.repeat(750); // 3,000 bytes: the old fixed buffer held 2,047
    let p;
    try {
      p = await startPonder({ config: {
        log: { level: 'warn', access_log: 'off' },
        upstreams: [{ name: 'fake', base_url: `${fake.url}/${long}/v1`, retries: 0, timeout_ms: 5000 }],
        routes: [{ name: 'r', forcing: { mode: 'chat', rounds: 1, think_budget: 10, answer_budget: 10 } }],
      } });
      const r = await rawRequest(p.port, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }) });
      assert.equal(r.status, 200, r.body);
      assert.equal(fake.log.length, 2);
      for (const c of fake.log) assert.equal(c.path, `/${long}/v1/chat/completions`);
      // A pass-through under the same base, with a long rest and query, is whole too.
      const rest = '/files/' + 'x'.repeat(3000);
      const q = 'q=' + 'y'.repeat(3000);
      const e = await rawRequest(p.port, 'GET', `/v1${rest}?${q}`);
      assert.equal(e.status, 200, e.body);
      assert.equal(JSON.parse(e.body).path, `/${long}/v1${rest}`);
      assert.equal(JSON.parse(e.body).query, q);
    } finally {
      if (p) await p.stop();
      await fake.close();
    }
  });
});

describe('error bodies quote client bytes as valid JSON text', () => {
  it('a chat body with invalid UTF-8 gets a 400 whose body is UTF-8 JSON', T, async () => {
    const fake = await startFake({ port: 0 });
    let p;
    try {
      p = await startPonder({ config: { log: { level: 'warn', access_log: 'off' },
        upstreams: [{ name: 'fake', base_url: `${fake.url}/v1`, retries: 0 }] } });
      const body = Buffer.from('{\t"  \\\xcf\xa0Sl\xca\t', 'latin1');
      const raw = await new Promise((resolve, reject) => {
        const s = net.connect(p.port, '127.0.0.1');
        const chunks = [];
        s.on('connect', () => {
          s.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n` +
                  `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
          s.write(body);
        });
        s.on('data', (d) => chunks.push(d));
        s.on('error', reject);
        s.on('close', () => resolve(Buffer.concat(chunks)));
      });
      const i = raw.indexOf('\r\n\r\n');
      assert.match(raw.subarray(0, i).toString('latin1'), /^HTTP\/1\.1 400 /);
      const text = new TextDecoder('utf-8', { fatal: true }).decode(raw.subarray(i + 4));
      assert.equal(JSON.parse(text).error.type, 'invalid_request_error');
      assert.equal(fake.log.length, 0);
    } finally {
      if (p) await p.stop();
      await fake.close();
    }
  });
});
