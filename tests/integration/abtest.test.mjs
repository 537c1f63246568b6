// Routes, A/B variants, per-request control, metrics values, feedback, access log and reload
// under load, against the real binary and the fake upstream.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startFake, startPonder, configFor, chat, sleep, metricValue } from '../lib/harness.mjs';

function fnv1a64(bytes) {
  let h = 14695981039346656037n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 1099511628211n);
  return h;
}
function expectedVariant(route, key, variants) {
  let bucket = fnv1a64(Buffer.concat([Buffer.from(route), Buffer.from([0]), Buffer.from(key)])) %
    BigInt(variants.reduce((s, v) => s + v.weight, 0));
  for (const v of variants) {
    if (bucket < BigInt(v.weight)) return v.name;
    bucket -= BigInt(v.weight);
  }
  return null;
}


const VARIANTS = [
  { name: 'control', weight: 1, forcing: { rounds: 0 } },
  { name: 'deep', weight: 3, forcing: { rounds: 2 } },
];

describe('routes, A/B experiment and metrics', () => {
  let fake, p, logDir, logPath;
  before(async () => {
    fake = await startFake();
    logDir = mkdtempSync(join(tmpdir(), 'ponder-log-'));
    logPath = join(logDir, 'access.log');
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          { name: 'math', match: { path_prefix: '/math' }, model: 'mapped-model',
            forcing: { rounds: 1 } },
          { name: 'exp', match: { models: ['exp-model'] }, sticky: 'header:x-user-id',
            allow_overrides: true, effort: { low: 1, high: 3 }, variants: VARIANTS },
          { name: 'locked', match: { models: ['locked-model'] }, forcing: { rounds: 1 } },
        ],
        log: { level: 'warn', access_log: logPath },
      }),
    });
  });
  after(async () => {
    const r = await p.stop();
    assert.equal(r.code, 0);
    await fake.close();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('path prefix route maps the model and forces its rounds', async () => {
    fake.reset();
    const r = await chat(`${p.url}/math/v1`, { model: 'asked', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-ponder-route'), 'math');
    assert.equal(r.headers.get('x-ponder-rounds'), '1');
    assert.equal(r.json.model, 'asked');
    assert.equal(fake.log.length, 2);
    assert.ok(fake.log.every((c) => c.body.model === 'mapped-model'));
  });

  test('unknown model without a catch-all is 404 model_not_found', async () => {
    const r = await chat(p.base, { model: 'nope', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 'model_not_found');
  });

  test('sticky assignment follows the documented FNV-1a-64 hash', async () => {
    const seen = {};
    for (let i = 0; i < 40; i++) {
      const user = `user-${i}`;
      const want = expectedVariant('exp', user, VARIANTS);
      const r = await chat(p.base, { model: 'exp-model', messages: [{ role: 'user', content: 'q' }] },
        { 'x-user-id': user });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-ponder-variant'), want, user);
      assert.equal(r.headers.get('x-ponder-rounds'), want === 'deep' ? '2' : '0');
      seen[want] = (seen[want] || 0) + 1;
      // Same user, same variant, again.
      const again = await chat(p.base, { model: 'exp-model', messages: [{ role: 'user', content: 'q' }] },
        { 'x-user-id': user });
      assert.equal(again.headers.get('x-ponder-variant'), want);
    }
    assert.ok(seen.control > 0 && seen.deep > 0);
  });

  test('the README worked example', () => {
    assert.equal(fnv1a64(Buffer.from('math\0user-42', 'latin1')), 0xa8f6557c1d2315e3n);
    assert.equal(expectedVariant('math', 'user-42', [{ name: 'control', weight: 1 }, { name: 'deep', weight: 1 }]), 'deep');
  });

  test('reasoning_effort via the effort map sets rounds and is not forwarded', async () => {
    fake.reset();
    const r = await chat(p.base, { model: 'exp-model', reasoning_effort: 'high',
      messages: [{ role: 'user', content: 'q' }] }, { 'x-user-id': 'user-1' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-ponder-rounds'), '3');
    assert.equal(fake.log.length, 4);
    assert.ok(fake.log.every((c) => !('reasoning_effort' in c.body)));
  });

  test('overrides by header and body; 400 on a route without allow_overrides', async () => {
    fake.reset();
    let r = await chat(p.base, { model: 'exp-model', messages: [{ role: 'user', content: 'q' }] },
      { 'x-ponder-rounds': '4', 'x-user-id': 'u' });
    assert.equal(r.headers.get('x-ponder-rounds'), '4');
    r = await chat(p.base, { model: 'exp-model', ponder: { variant: 'control' },
      messages: [{ role: 'user', content: 'q' }] }, { 'x-user-id': 'u' });
    assert.equal(r.headers.get('x-ponder-variant'), 'control');
    assert.ok(fake.log.every((c) => !('ponder' in c.body)));
    r = await chat(p.base, { model: 'locked-model', ponder: { rounds: 3 },
      messages: [{ role: 'user', content: 'q' }] });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.match(r.json.error.message, /locked/);
    r = await chat(p.base, { model: 'locked-model', messages: [{ role: 'user', content: 'q' }] },
      { 'x-ponder-rounds': '3' });
    assert.equal(r.status, 400);
    r = await chat(p.base, { model: 'exp-model', ponder: { rounds: 99 },
      messages: [{ role: 'user', content: 'q' }] });
    assert.equal(r.status, 400);
  });

  test('metrics after a known sequence of requests, feedback, promtool and the access log', async () => {
    // A fresh ponder so the counters start at zero.
    const q = await startPonder({ config: JSON.parse(readFileSync(p.configPath, 'utf8')) });
    try {
      fake.reset();
      fake.script(...Array.from({ length: 12 }, () => ({ content: 'one two three',
        usage: { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 } })));
      const ids = [];
      // Three forced requests on "math" (rounds 1 => 2 calls each).
      for (let i = 0; i < 3; i++) {
        const r = await chat(`${q.url}/math/v1`, { model: 'm', messages: [{ role: 'user', content: 'x' }] });
        assert.equal(r.status, 200);
        ids.push(r.headers.get('x-request-id'));
      }
      // One 400 on math.
      const bad = await chat(`${q.url}/math/v1`, { model: 'm', messages: [] });
      assert.equal(bad.status, 400);
      let fb = await fetch(`${q.base}/ponder/feedback`, { method: 'POST',
        headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: ids[0], score: 1 }) });
      assert.equal(fb.status, 200);
      const fbBody = await fb.json();
      assert.equal(fbBody.route, 'math');
      assert.equal(fbBody.variant, 'default');
      fb = await fetch(`${q.base}/ponder/feedback`, { method: 'POST',
        headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: ids[1], score: 0.5 }) });
      assert.equal(fb.status, 200);
      fb = await fetch(`${q.base}/ponder/feedback`, { method: 'POST',
        headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: 'nope', score: 1 }) });
      assert.equal(fb.status, 404);
      assert.equal((await fb.json()).error.type, 'invalid_request_error');

      const text = await (await fetch(`${q.url}/metrics`)).text();
      const L = { route: 'math', variant: 'default' };
      assert.equal(metricValue(text, 'ponder_requests_total', { ...L, code: '200' }), 3);
      assert.equal(metricValue(text, 'ponder_think_rounds_total', L), 3);
      assert.equal(metricValue(text, 'ponder_tokens_total', { ...L, type: 'prompt' }), 60);
      assert.equal(metricValue(text, 'ponder_tokens_total', { ...L, type: 'completion' }), 18);
      assert.equal(metricValue(text, 'ponder_tokens_total', { ...L, type: 'reasoning' }), 9);
      assert.equal(metricValue(text, 'ponder_request_duration_seconds_count', L), 3);
      assert.equal(metricValue(text, 'ponder_feedback_total', L), 2);
      assert.equal(metricValue(text, 'ponder_feedback_score_sum', L), 1.5);
      assert.equal(metricValue(text, 'ponder_upstream_requests_total', { upstream: 'fake', code: '200' }), 6);
      assert.equal(metricValue(text, 'ponder_upstream_duration_seconds_count', { upstream: 'fake' }), 6);
      assert.equal(metricValue(text, 'ponder_inflight_requests', {}), 0);
      assert.equal(metricValue(text, 'ponder_client_disconnects_total', {}), 0);
      // promtool (Debian package prometheus) accepts the exposition.
      let promtool = null;
      try { promtool = execFileSync('sh', ['-c', 'command -v promtool']).toString().trim(); } catch { /* absent */ }
      if (promtool) {
        execFileSync(promtool, ['check', 'metrics'], { input: text });
      }

      // The access log has one JSON line per request with the documented keys.
      await sleep(100);
      const lines = readFileSync(logPath, 'utf8')
        .trim().split('\n').map((l) => JSON.parse(l));
      const mine = lines.filter((l) => ids.includes(l.request_id));
      assert.equal(mine.length, 3);
      for (const l of mine) {
        for (const k of ['ts', 'request_id', 'route', 'variant', 'rounds', 'upstream_calls', 'status',
          'duration_ms', 'stream', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens'])
          assert.ok(k in l, k);
        assert.equal(l.route, 'math');
        assert.equal(l.rounds, 1);
        assert.equal(l.upstream_calls, 2);
        assert.equal(l.status, 200);
        assert.equal(l.stream, false);
        assert.equal(l.prompt_tokens, 20);
      }
    } finally {
      assert.equal((await q.stop()).code, 0);
    }
  });
});

describe('SIGHUP reload under load', () => {
  test('no request fails while the config is reloaded repeatedly', async () => {
    const fake = await startFake();
    const cfg = configFor(fake, { routes: [{ name: 'r', forcing: { rounds: 1 } }] });
    const p = await startPonder({ config: cfg, args: ['--workers', '2'] });
    try {
      let stop = false;
      let ok = 0;
      const failures = [];
      const rounds = new Set();
      const client = async () => {
        while (!stop) {
          const r = await chat(p.base, { model: 'm', messages: [{ role: 'user', content: 'x' }] });
          if (r.status === 200) { ok++; rounds.add(r.headers.get('x-ponder-rounds')); } else failures.push(`${r.status} ${r.text}`);
        }
      };
      const clients = Array.from({ length: 8 }, client);
      for (let i = 0; i < 6; i++) {
        await sleep(150);
        cfg.routes[0].forcing.rounds = (i % 2) + 1;
        p.writeConfig(cfg);
        p.proc.kill('SIGHUP');
      }
      // A bad file is reported and the old config stays.
      p.writeConfig({ ...cfg, bogus_key: 1 });
      p.proc.kill('SIGHUP');
      await sleep(200);
      stop = true;
      await Promise.all(clients);
      assert.deepEqual(failures, []);
      assert.ok(ok > 20, `only ${ok} requests`);
      assert.ok(rounds.has('1') && rounds.has('2'), `rounds seen: ${[...rounds]}`);
      assert.match(p.output(), /bogus_key/);
      const r = await chat(p.base, { model: 'm', messages: [{ role: 'user', content: 'x' }] });
      assert.equal(r.status, 200);
    } finally {
      assert.equal((await p.stop()).code, 0);
      await fake.close();
    }
  });
});
