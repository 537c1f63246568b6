// Feedback tokens across replicas (SPEC section 7): every chat completions and Responses reply
// (streamed or not, forced or passed through) carries x-ponder-feedback-token; any ponder with
// the same feedback.secret accepts it and counts it in its own /metrics, also after a restart;
// another secret, an altered or truncated token 403; an expired one or one from the future 403;
// a route or variant the current config no longer has 404 (after a reload or a restart); a
// missing or non-finite score 400. Without a secret the key is random per process and shared by
// its workers. Tokens are also built here from the documented layout with node's own HMAC, so
// the format and the age checks are tested independently of ponder's issuer.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startFake, startPonder, configFor, httpReq, metricValue, waitFor, ponderBin,
} from '../lib/harness.mjs';

const SECRET = 'correct horse battery staple, 32+ bytes of it';
const VARIANTS = [
  { name: 'control', weight: 1, forcing: { rounds: 0 } },
  { name: 'deep', weight: 1, forcing: { rounds: 1, think_budget: 20, answer_budget: 20 } },
];
const routesAll = [
  { name: 'exp', match: { path_prefix: '/exp' }, allow_overrides: true, variants: VARIANTS },
  { name: 'solo', match: { path_prefix: '/solo' }, forcing: { rounds: 0 } },
];

function cfg(fake, { secret = '${FB_SECRET}', routes = routesAll, extra = {} } = {}) {
  const c = configFor(fake, { routes, ...extra });
  if (secret !== null) c.feedback = { secret, ...(extra.feedback || {}) };
  return c;
}

async function post(port, path, body, headers = {}) {
  return httpReq(port, {
    method: 'POST', path, body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/** One reply of the given API, streamed or not, on the given variant; returns its headers. */
async function served(p, { api, stream, variant, prefix = '/exp' }) {
  const path = api === 'chat' ? `${prefix}/v1/chat/completions` : `${prefix}/v1/responses`;
  const body = api === 'chat'
    ? { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream }
    : { model: 'm', input: 'hi', stream };
  const r = await post(p.port, path, body, variant ? { 'x-ponder-variant': variant } : {});
  assert.equal(r.status, 200, r.text);
  if (stream) assert.match(r.headers['content-type'], /text\/event-stream/);
  const tok = r.headers['x-ponder-feedback-token'];
  assert.ok(tok, `a feedback token on ${api} stream=${stream} ${variant || ''}`);
  assert.match(tok, /^[A-Za-z0-9_-]+$/, 'base64url without padding');
  return { token: tok, id: r.headers['x-request-id'], route: r.headers['x-ponder-route'],
           variant: r.headers['x-ponder-variant'] };
}

const feedback = (p, body) => post(p.port, '/v1/ponder/feedback', body);

function assertError(r, status, code, param) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error, `an OpenAI error object: ${r.text}`);
  assert.equal(typeof r.json.error.message, 'string');
  assert.equal(r.json.error.type, status === 500 ? 'server_error' : 'invalid_request_error');
  if (code !== undefined) assert.equal(r.json.error.code, code);
  if (param !== undefined) assert.equal(r.json.error.param, param);
}

async function fbMetric(p, name, labels) {
  const r = await httpReq(p.port, { path: '/metrics' });
  return metricValue(r.text, name, labels) ?? 0;
}

/** A token built from the documented layout: kind, issued (5 bytes), len+route, len+variant,
 * the id (ponder's "req_" + 32 hex packed into 16 bytes, else len+text), HMAC-SHA256. */
function makeToken(secret, route, variant, id, issued) {
  const parts = [Buffer.alloc(6)];
  parts[0].writeUIntBE(issued, 1, 5);
  const packed = /^req_[0-9a-f]{32}$/.test(id);
  parts[0][0] = packed ? 2 : 1;
  for (const s of [route, variant]) parts.push(Buffer.from([Buffer.byteLength(s)]), Buffer.from(s));
  if (packed) parts.push(Buffer.from(id.slice(4), 'hex'));
  else parts.push(Buffer.from([Buffer.byteLength(id)]), Buffer.from(id));
  const payload = Buffer.concat(parts);
  const mac = createHmac('sha256', secret).update(payload).digest();
  return Buffer.concat([payload, mac]).toString('base64url');
}

const now = () => Math.floor(Date.now() / 1000);
const CASES = [];
for (const api of ['chat', 'responses'])
  for (const stream of [false, true])
    for (const variant of ['control', 'deep']) CASES.push({ api, stream, variant });

describe('feedback tokens across instances', () => {
  let fake, a, b, c;
  const env = { FB_SECRET: SECRET };
  before(async () => {
    fake = await startFake();
    [a, b, c] = await Promise.all([
      startPonder({ config: cfg(fake), env, args: ['--workers', '2'] }),
      startPonder({ config: cfg(fake), env }),
      startPonder({ config: cfg(fake), env: { FB_SECRET: 'another secret entirely' } }),
    ]);
  });
  after(async () => {
    for (const p of [a, b, c]) if (p) assert.equal((await p.stop()).code, 0);
    await fake.close();
  });

  it('a token from A is accepted by B and counted in B\'s metrics: chat and responses, streamed and not, forced and passed through', async () => {
    for (const k of CASES) {
      const t = await served(a, k);
      assert.equal(t.variant, k.variant);
      assert.equal(t.route, 'exp');
      const L = { route: 'exp', variant: k.variant };
      const before = await fbMetric(b, 'ponder_feedback_total', L);
      const sumBefore = await fbMetric(b, 'ponder_feedback_score_sum', L);
      const r = await feedback(b, { token: t.token, score: 0.25 });
      assert.equal(r.status, 200, `${JSON.stringify(k)}: ${r.text}`);
      assert.deepEqual(r.json, { status: 'ok', request_id: t.id, route: 'exp', variant: k.variant });
      assert.equal(await fbMetric(b, 'ponder_feedback_total', L), before + 1);
      assert.equal(await fbMetric(b, 'ponder_feedback_score_sum', L), sumBefore + 0.25);
      // A accepts its own token too, and A's count is its own.
      assert.equal((await feedback(a, { token: t.token, score: 1 })).status, 200);
    }
    // The pass-through fast path of a single-policy route, and a client's own request id.
    const r = await post(a.port, '/solo/v1/chat/completions',
      { model: 'm', messages: [{ role: 'user', content: 'hi' }] }, { 'x-request-id': 'client-id-42' });
    assert.equal(r.status, 200);
    const fb = await feedback(b, { token: r.headers['x-ponder-feedback-token'], score: -3 });
    assert.equal(fb.status, 200, fb.text);
    assert.deepEqual(fb.json, { status: 'ok', request_id: 'client-id-42', route: 'solo', variant: 'default' });
    assert.equal(await fbMetric(b, 'ponder_feedback_score_sum', { route: 'solo', variant: 'default' }), -3);
  });

  it('another secret, an altered, truncated or forged token: 403', async () => {
    const t = await served(a, { api: 'chat', stream: false, variant: 'deep' });
    assertError(await feedback(c, { token: t.token, score: 1 }), 403, 'invalid_feedback_token', 'token');
    for (let i = 0; i < t.token.length; i += 7) {
      const ch = t.token[i] === 'A' ? 'B' : 'A';
      const bad = t.token.slice(0, i) + ch + t.token.slice(i + 1);
      assertError(await feedback(b, { token: bad, score: 1 }), 403, 'invalid_feedback_token', 'token');
    }
    for (const cut of [1, 2, 10, 43])
      assertError(await feedback(b, { token: t.token.slice(0, -cut), score: 1 }), 403, 'invalid_feedback_token');
    for (const bad of ['', 'x', `${t.token}=`, `${t.token}A`, 'A'.repeat(5000), t.token.replace(/-/g, '+')])
      if (bad !== t.token) assertError(await feedback(b, { token: bad, score: 1 }), 403, 'invalid_feedback_token');
    // A token built with the wrong key but the right layout.
    assertError(await feedback(b, { token: makeToken('guess', 'exp', 'deep', t.id, now()), score: 1 }),
      403, 'invalid_feedback_token');
    // None of these counted.
    const L = { route: 'exp', variant: 'deep' };
    const n = await fbMetric(c, 'ponder_feedback_total', L);
    assert.equal(n, 0);
  });

  it('the documented layout: a token built here is accepted; expired and future ones 403; a route or variant not configured 404', async () => {
    const ok = await feedback(b, { token: makeToken(SECRET, 'exp', 'deep', 'req_00112233445566778899aabbccddeeff', now()), score: 2 });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.request_id, 'req_00112233445566778899aabbccddeeff');
    const okText = await feedback(b, { token: makeToken(SECRET, 'exp', 'control', 'my id', now() - 60), score: 2 });
    assert.equal(okText.status, 200, okText.text);
    assert.equal(okText.json.request_id, 'my id');
    // The issuer's token equals the one built here from its headers (same second).
    for (let tries = 0; ; tries++) {
      const t0 = now();
      const t = await served(a, { api: 'chat', stream: false, variant: 'control' });
      if (now() !== t0 && tries < 5) continue;
      assert.equal(t.token, makeToken(SECRET, 'exp', 'control', t.id, t0));
      break;
    }
    assertError(await feedback(b, { token: makeToken(SECRET, 'exp', 'deep', 'x', now() - 604800 - 30), score: 1 }),
      403, 'feedback_token_expired', 'token');
    assertError(await feedback(b, { token: makeToken(SECRET, 'exp', 'deep', 'x', now() + 3600), score: 1 }),
      403, 'invalid_feedback_token', 'token');
    assert.equal((await feedback(b, { token: makeToken(SECRET, 'exp', 'deep', 'x', now() + 5), score: 1 })).status, 200,
      'a few seconds of clock skew are tolerated');
    assertError(await feedback(b, { token: makeToken(SECRET, 'gone', 'deep', 'x', now()), score: 1 }),
      404, 'route_not_found', 'token');
    assertError(await feedback(b, { token: makeToken(SECRET, 'exp', 'shallow', 'x', now()), score: 1 }),
      404, 'variant_not_found', 'token');
    assertError(await feedback(b, { token: makeToken(SECRET, 'solo', 'deep', 'x', now()), score: 1 }),
      404, 'variant_not_found');
  });

  it('a missing or non-finite score, a token of the wrong type: 400', async () => {
    const t = await served(a, { api: 'responses', stream: true, variant: 'deep' });
    const L = { route: 'exp', variant: 'deep' };
    const n = await fbMetric(b, 'ponder_feedback_total', L);
    assertError(await feedback(b, { token: t.token }), 400, null, 'score');
    assertError(await feedback(b, { token: t.token, score: null }), 400, null, 'score');
    assertError(await feedback(b, { token: t.token, score: 'NaN' }), 400, null, 'score');
    assertError(await feedback(b, { token: t.token, score: '1' }), 400, null, 'score');
    assertError(await feedback(b, `{"token": "${t.token}", "score": 1e999}`), 400);
    assertError(await feedback(b, `{"token": "${t.token}", "score": -1e400}`), 400);
    assertError(await feedback(b, `{"token": "${t.token}", "score": NaN}`), 400);
    assertError(await feedback(b, `{"token": "${t.token}", "score": Infinity}`), 400);
    assertError(await feedback(b, { token: 42, score: 1 }), 400, null, 'token');
    assertError(await feedback(b, { token: null, score: 1 }), 400, null, 'token');
    assertError(await feedback(b, [t.token, 1]), 400);
    assertError(await feedback(b, { score: 1 }), 400, null, 'request_id');
    assert.equal(await fbMetric(b, 'ponder_feedback_total', L), n, 'nothing counted');
    assert.equal((await feedback(b, { token: t.token, score: 1e300 })).status, 200);
  });

  it('the request_id form keeps working on the instance that served it', async () => {
    const t = await served(b, { api: 'chat', stream: true, variant: 'deep' });
    const r = await feedback(b, { request_id: t.id, score: 1 });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'ok', request_id: t.id, route: 'exp', variant: 'deep' });
    assertError(await feedback(c, { request_id: t.id, score: 1 }), 404, 'request_not_found', 'request_id');
    assertError(await feedback(b, { request_id: t.id, score: 'x' }), 400, null, 'score');
  });

  it('a restart with the same secret still accepts; a config without the variant or route 404', async () => {
    const deep = await served(a, { api: 'chat', stream: false, variant: 'deep' });
    const control = await served(a, { api: 'responses', stream: false, variant: 'control' });
    const solo = await served(a, { api: 'chat', stream: true, prefix: '/solo' });
    assert.equal((await a.stop()).code, 0);
    a = await startPonder({ config: cfg(fake), env });
    let r = await feedback(a, { token: deep.token, score: 1 });
    assert.equal(r.status, 200, r.text);
    assert.equal(await fbMetric(a, 'ponder_feedback_total', { route: 'exp', variant: 'deep' }), 1);

    // A reload without the variant `deep`: its tokens 404, the others still count.
    a.writeConfig(cfg(fake, { routes: [{ ...routesAll[0], variants: [VARIANTS[0]] }, routesAll[1]] }));
    a.proc.kill('SIGHUP');
    await waitFor(async () => (await feedback(a, { token: deep.token, score: 1 })).status === 404,
      { what: 'the reload', timeoutMs: 5000 });
    assertError(await feedback(a, { token: deep.token, score: 1 }), 404, 'variant_not_found', 'token');
    assert.equal((await feedback(a, { token: control.token, score: 1 })).status, 200);

    // A restart without the route `exp`.
    assert.equal((await a.stop()).code, 0);
    a = await startPonder({ config: cfg(fake, { routes: [routesAll[1]] }), env });
    assertError(await feedback(a, { token: control.token, score: 1 }), 404, 'route_not_found', 'token');
    assert.equal((await feedback(a, { token: solo.token, score: 1 })).status, 200);

    // A reload with another secret refuses every earlier token.
    a.writeConfig(cfg(fake, { routes: [routesAll[1]], secret: 'rotated' }));
    a.proc.kill('SIGHUP');
    await waitFor(async () => (await feedback(a, { token: solo.token, score: 1 })).status === 403,
      { what: 'the reload', timeoutMs: 5000 });
    r = await post(a.port, '/solo/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal((await feedback(a, { token: r.headers['x-ponder-feedback-token'], score: 1 })).status, 200);
    assertError(await feedback(b, { token: r.headers['x-ponder-feedback-token'], score: 1 }), 403, 'invalid_feedback_token');
  });

  it('max_age_s: an older token is refused', async () => {
    const short = await startPonder({ config: cfg(fake, { extra: { feedback: { max_age_s: 100 } } }), env });
    try {
      assertError(await feedback(short, { token: makeToken(SECRET, 'exp', 'deep', 'x', now() - 130), score: 1 }),
        403, 'feedback_token_expired');
      assert.equal((await feedback(short, { token: makeToken(SECRET, 'exp', 'deep', 'x', now() - 50), score: 1 })).status, 200);
    } finally {
      assert.equal((await short.stop()).code, 0);
    }
  });
});

describe('feedback tokens without a secret', () => {
  let fake, d, e;
  before(async () => {
    fake = await startFake();
    [d, e] = await Promise.all([
      startPonder({ config: cfg(fake, { secret: null }), args: ['--workers', '2'] }),
      startPonder({ config: cfg(fake, { secret: null }) }),
    ]);
  });
  after(async () => {
    for (const p of [d, e]) if (p) assert.equal((await p.stop()).code, 0);
    await fake.close();
  });

  it('a random key per process, shared by its workers, refused by another process', async () => {
    // Fresh connections spread over both workers (SO_REUSEPORT); every token must pass on
    // every connection.
    const tokens = [];
    for (let i = 0; i < 12; i++)
      tokens.push((await served(d, { api: i % 2 ? 'responses' : 'chat', stream: i % 3 === 0, variant: 'deep' })).token);
    for (const t of tokens) {
      assert.equal((await feedback(d, { token: t, score: 1 })).status, 200);
      assertError(await feedback(e, { token: t, score: 1 }), 403, 'invalid_feedback_token');
    }
    assert.equal(await fbMetric(d, 'ponder_feedback_total', { route: 'exp', variant: 'deep' }), 12);
  });
});

describe('feedback.secret is a secret', () => {
  it('--check-config redacts it; a bad max_age_s is a config error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ponder-fb-'));
    try {
      const path = join(dir, 'c.yaml');
      writeFileSync(path, 'feedback:\n  secret: "${FB_SECRET}"\n  max_age_s: 60\n');
      const out = execFileSync(ponderBin, ['--check-config', '--config', path],
        { env: { ...process.env, FB_SECRET: SECRET }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      assert.ok(!out.includes(SECRET) && !out.includes('horse'), out);
      assert.match(out, /feedback:\n\s+secret: "<redacted>"\n\s+max_age_s: 60/);
      writeFileSync(path, 'feedback:\n  max_age_s: 0\n');
      let err = null;
      try {
        execFileSync(ponderBin, ['--check-config', '--config', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (x) { err = x; }
      assert.ok(err, 'max_age_s 0 is refused');
      assert.match(String(err.stderr), /max_age_s/);
      writeFileSync(path, 'feedback:\n  secrte: x\n');
      err = null;
      try {
        execFileSync(ponderBin, ['--check-config', '--config', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (x) { err = x; }
      assert.ok(err && /secret/.test(String(err.stderr)), 'an unknown key, with its did-you-mean');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
