// Work per request is bounded and accounted: limits.max_upstream_calls (fan-out),
// limits.max_reply_bytes (one reply, one chain's thinking), usage of rounds-0 calls in metrics and
// the access log, upstream failures logged, log writes that never block a loop thread, and the
// start-up / --check-config warning when ponder's own key would be forwarded upstream.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startPonder, startFake, configFor, chat, parseSSE, sleep, chatPolicy, route, waitFor,
  closedPort, ponderBin, metricValue } from '../lib/harness.mjs';

const M = [{ role: 'user', content: 'What is 2+2?' }];


async function metrics(p) {
  return (await fetch(`${p.url}/metrics`)).text();
}

/** A streamed chat request; resolves with {status, raw, events} once the response closes. */
function sse(url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', ...headers },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let raw = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { raw += d; });
      res.on('error', () => {});
      res.on('aborted', () => {});
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode, headers: res.headers, raw, events: parseSSE(raw) });
      };
      res.on('end', finish);
      res.on('close', finish);
    });
    req.end(JSON.stringify(body));
  });
}

describe('limits.max_upstream_calls', () => {
  let fake, p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          route('open', chatPolicy(2), { allow_overrides: true }),
          route('small', chatPolicy(2), { allow_overrides: true, effort: { high: 6 } }),
        ],
        limits: { max_upstream_calls: 256 },
      }),
    });
  });
  after(async () => {
    await p.stop();
    await fake.close();
  });

  it('n: 128 with X-Ponder-Rounds: 32 is refused before any upstream call', async () => {
    fake.reset();
    const r = await chat(`${p.url}/open/v1`, { model: 'm', messages: M, n: 128 },
      { 'x-ponder-rounds': '32' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.equal(r.json.error.param, 'n');
    assert.match(r.json.error.message, /limits\.max_upstream_calls \(256\)/);
    assert.match(r.json.error.message, /4224 upstream calls/);
    await sleep(100);
    assert.equal(fake.log.length, 0, 'no upstream call was made');
  });

  it('counts n x (rounds + 1) and accepts a request at the limit', async () => {
    fake.reset();
    // 85 x (2 + 1) = 255 calls: allowed; 86 x 3 = 258: refused.
    const ok = await chat(`${p.url}/open/v1`, { model: 'm', messages: M, n: 85 });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.choices.length, 85);
    assert.equal(fake.log.length, 255);
    fake.reset();
    const no = await chat(`${p.url}/open/v1`, { model: 'm', messages: M, n: 86 });
    assert.equal(no.status, 400);
    assert.equal(no.json.error.param, 'n');
    assert.equal(fake.log.length, 0);
  });

  it('names the rounds override when n is 1', async () => {
    const cfg = configFor(fake, {
      routes: [route('r', chatPolicy(2), { allow_overrides: true, effort: { high: 6 } })],
      limits: { max_upstream_calls: 5 },
    });
    const q = await startPonder({ config: cfg });
    try {
      fake.reset();
      let r = await chat(`${q.url}/r/v1`, { model: 'm', messages: M }, { 'x-ponder-rounds': '5' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.param, 'x-ponder-rounds');
      r = await chat(`${q.url}/r/v1`, { model: 'm', messages: M, ponder: { rounds: 9 } });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.param, 'ponder.rounds');
      // The effort map's rounds count too (6 + 1 > 5).
      r = await chat(`${q.url}/r/v1`, { model: 'm', messages: M, reasoning_effort: 'high' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.param, 'reasoning_effort');
      assert.match(r.json.error.message, /max_upstream_calls \(5\)/);
      assert.equal(fake.log.length, 0);
      r = await chat(`${q.url}/r/v1`, { model: 'm', messages: M }, { 'x-ponder-rounds': '4' });
      assert.equal(r.status, 200, r.text);
      assert.equal(fake.log.length, 5);
    } finally {
      await q.stop();
    }
  });

  it('validates n: an integer of at least 1', async () => {
    fake.reset();
    for (const n of [0, -1, 1.5, '2', true, 129]) {
      const r = await chat(`${p.url}/open/v1`, { model: 'm', messages: M, n });
      assert.equal(r.status, 400, `n=${JSON.stringify(n)}`);
      assert.equal(r.json.error.param, 'n');
      assert.equal(r.json.error.type, 'invalid_request_error');
    }
    assert.equal(fake.log.length, 0);
  });
});

describe('limits.max_reply_bytes', () => {
  let fake, p;
  const LIMIT = 65536;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          route('big', chatPolicy(4, { think_budget: 10000000 })),
          route('one', chatPolicy(1, { think_budget: 10000000 })),
          route('plain', { rounds: 0 }),
        ],
        limits: { max_reply_bytes: LIMIT },
      }),
    });
  });
  after(async () => {
    await p.stop();
    await fake.close();
  });

  it('one non-streamed reply over the limit: 502 upstream_error', async () => {
    fake.reset();
    fake.script({ tokens: 20000 }); // ~130 KB of content in one JSON reply
    const r = await chat(`${p.url}/one/v1`, { model: 'm', messages: M });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.type, 'upstream_error');
    assert.match(r.json.error.message, /limits\.max_reply_bytes \(65536 bytes\)/);
  });

  it('one streamed thinking call over the limit (max_tokens ignored): error event, then the end', async () => {
    fake.reset();
    fake.script({ tokens: 20000 }); // ~130 KB of thinking, relayed until the cap
    const r = await sse(`${p.url}/one/v1/chat/completions`, { model: 'm', messages: M, stream: true });
    assert.equal(r.status, 200);
    const last = r.events[r.events.length - 1];
    assert.ok(!r.events.includes('[DONE]'), 'no [DONE]');
    assert.equal(last.error.type, 'upstream_error');
    assert.match(last.error.message, /max_reply_bytes/);
    let thinking = 0;
    for (const e of r.events) thinking += e.choices?.[0]?.delta?.reasoning_content?.length ?? 0;
    assert.ok(thinking <= LIMIT && thinking > LIMIT / 2, `relayed ${thinking} bytes of thinking`);
    assert.equal(fake.log.length, 1, 'no answer call after the cap');
  });

  it('a streamed answer is relayed, not held: it may be longer than the limit', async () => {
    fake.reset();
    fake.script({ content: 'short' }, { tokens: 20000 });
    const r = await sse(`${p.url}/one/v1/chat/completions`,
      { model: 'm', messages: M, stream: true, max_tokens: 100000 });
    assert.equal(r.status, 200);
    assert.equal(r.events[r.events.length - 1], '[DONE]');
    let content = 0;
    for (const e of r.events) content += e.choices?.[0]?.delta?.content?.length ?? 0;
    assert.ok(content > LIMIT, `relayed ${content} bytes of answer`);
  });

  const longThought = (k) => ({ reasoning_content: String(k).repeat(20000), content: '' });

  it('a chain\'s thinking over the limit across calls (not streamed): 502', async () => {
    fake.reset();
    // Four thinking calls of 20,000 bytes each: every reply is under the limit, their sum is not.
    fake.script(longThought(1), longThought(2), longThought(3), longThought(4));
    const r = await chat(`${p.url}/big/v1`, { model: 'm', messages: M });
    assert.equal(r.status, 502, r.text.slice(0, 300));
    assert.equal(r.json.error.type, 'upstream_error');
    assert.match(r.json.error.message, /thinking .*limits\.max_reply_bytes/);
    assert.equal(fake.log.length, 4, 'no answer call after the cap');
  });

  it('a chain\'s thinking over the limit across calls (streamed): error event', async () => {
    fake.reset();
    fake.script(longThought(1), longThought(2), longThought(3), longThought(4));
    const r = await sse(`${p.url}/big/v1/chat/completions`, { model: 'm', messages: M, stream: true });
    assert.equal(r.status, 200);
    assert.ok(!r.events.includes('[DONE]'));
    const last = r.events[r.events.length - 1];
    assert.equal(last.error.type, 'upstream_error');
    assert.match(last.error.message, /thinking/);
    let thinking = 0;
    for (const e of r.events) thinking += e.choices?.[0]?.delta?.reasoning_content?.length ?? 0;
    assert.ok(thinking <= LIMIT, `relayed ${thinking} bytes of thinking`);
  });

  it('a rounds-0 reply passed through is bounded too', async () => {
    fake.reset();
    fake.script({ tokens: 20000 });
    const r = await chat(`${p.url}/plain/v1`, { model: 'm', messages: M });
    assert.equal(r.status, 502);
    assert.match(r.json.error.message, /max_reply_bytes/);
    fake.reset();
    const ok = await chat(`${p.url}/plain/v1`, { model: 'm', messages: M });
    assert.equal(ok.status, 200);
  });
});

describe('usage of rounds-0 (pass-through) chat calls', () => {
  let fake, p, dir, logPath;
  before(async () => {
    fake = await startFake();
    dir = mkdtempSync(join(tmpdir(), 'ponder-limits-'));
    logPath = join(dir, 'access.log');
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          route('ctl', { rounds: 0 }),
          route('ctlmap', { rounds: 0 }, { model: 'mapped' }),
          route('ctlab', null, { variants: [{ name: 'control', weight: 1, forcing: { rounds: 0 } }],
            allow_overrides: true }),
        ].map((r) => { if (!r.forcing) delete r.forcing; return r; }),
        log: { level: 'warn', access_log: logPath },
      }),
    });
  });
  after(async () => {
    await p.stop();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const logLines = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '')
    .split('\n').filter(Boolean).map((l) => JSON.parse(l));

  async function check(routeName, variant, body, expectUsage) {
    const before = await metrics(p);
    const tok = (t, text) => metricValue(text, 'ponder_tokens_total', { route: routeName, variant, type: t }) ?? 0;
    const r = body.stream
      ? await sse(`${p.url}/${routeName}/v1/chat/completions`, body)
      : await chat(`${p.url}/${routeName}/v1`, body);
    assert.equal(r.status, 200);
    const usage = body.stream ? r.events.find((e) => e !== '[DONE]' && e.usage)?.usage : r.json.usage;
    assert.ok(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0, 'the upstream reported usage');
    const id = body.stream ? r.headers['x-request-id'] : r.headers.get('x-request-id');
    const line = await waitFor(() => logLines().find((l) => l.request_id === id), { what: 'access log line' });
    const after = await metrics(p);
    if (expectUsage) {
      assert.equal(line.prompt_tokens, usage.prompt_tokens);
      assert.equal(line.completion_tokens, usage.completion_tokens);
      assert.equal(tok('prompt', after) - tok('prompt', before), usage.prompt_tokens);
      assert.equal(tok('completion', after) - tok('completion', before), usage.completion_tokens);
    }
    return { r, line };
  }

  it('a JSON reply\'s usage is counted in ponder_tokens_total and the access log', async () => {
    fake.reset();
    await check('ctl', 'default', { model: 'm', messages: M }, true);
  });

  it('with a mapped model too', async () => {
    fake.reset();
    await check('ctlmap', 'default', { model: 'm', messages: M }, true);
  });

  it('the A/B control arm (rounds 0 variant) is not free', async () => {
    fake.reset();
    await check('ctlab', 'control', { model: 'm', messages: M }, true);
  });

  it('a stream\'s usage chunk (include_usage) is counted; the relayed bytes are the upstream\'s', async () => {
    fake.reset();
    const { r } = await check('ctl', 'default',
      { model: 'm', messages: M, stream: true, stream_options: { include_usage: true } }, true);
    const up = await fetch(`${fake.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: M, stream: true, stream_options: { include_usage: true } }),
    }).then((x) => x.text());
    const strip = (t) => t.replace(/"id":"[^"]*"/g, '').replace(/"created":\d+/g, '');
    assert.equal(strip(r.raw), strip(up), 'relayed unchanged');
  });

  it('a mapped stream\'s usage chunk is counted too', async () => {
    fake.reset();
    await check('ctlmap', 'default',
      { model: 'm', messages: M, stream: true, stream_options: { include_usage: true } }, true);
  });

  it('reasoning tokens of a reasoning model passed through are counted', async () => {
    fake.reset();
    fake.script({ reasoning_content: 'hmm let me think', content: 'four' });
    const before = await metrics(p);
    const r = await chat(`${p.url}/ctl/v1`, { model: 'm', messages: M });
    assert.equal(r.status, 200);
    const rt = r.json.usage.completion_tokens_details.reasoning_tokens;
    assert.ok(rt > 0);
    await waitFor(async () => {
      const after = await metrics(p);
      const d = (metricValue(after, 'ponder_tokens_total', { route: 'ctl', type: 'reasoning' }) ?? 0) -
        (metricValue(before, 'ponder_tokens_total', { route: 'ctl', type: 'reasoning' }) ?? 0);
      return d === rt;
    }, { what: 'reasoning tokens counted' });
  });
});

describe('backpressure with n > 1 streamed chains', () => {
  let fake, p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, { routes: [route('fan', chatPolicy(1, { think_budget: 3 }))] }) });
  });
  after(async () => {
    await p.stop();
    await fake.close();
  });

  it('a slow reader gets every chain whole: chains resumed in turn after each drain', async () => {
    fake.reset();
    const TOK = 3000, N = 6;
    fake.fault({ tokens: TOK }); // thinking capped at 3 tokens, answers of 3,000 tokens each
    const body = JSON.stringify({ model: 'm', messages: M, stream: true, n: N, max_tokens: 100000 });
    const raw = await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p.port, path: '/fan/v1/chat/completions',
        method: 'POST', agent: false, headers: { 'content-type': 'application/json' } });
      req.on('error', reject);
      req.on('response', (res) => {
        let text = '';
        let got = 0;
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
          got += d.length;
          if (got > 32768) { // read slowly: ponder's write queue fills and drains again and again
            got = 0;
            res.pause();
            setTimeout(() => res.resume(), 20);
          }
        });
        res.on('end', () => resolve(text));
        res.on('error', reject);
      });
      req.end(body);
    });
    const events = parseSSE(raw);
    assert.equal(events[events.length - 1], '[DONE]');
    const content = Array(N).fill('');
    const finish = Array(N).fill(null);
    for (const e of events) {
      if (e === '[DONE]' || !e.choices?.length) continue;
      const c = e.choices[0];
      if (typeof c.delta?.content === 'string') content[c.index] += c.delta.content;
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
    const want = Array.from({ length: TOK }, (_, i) => (i ? ' tok' : 'tok') + i).join('');
    for (let i = 0; i < N; i++) {
      assert.ok(content[i].endsWith(want), `choice ${i} complete (${content[i].length} bytes)`);
      assert.equal(finish[i], 'stop');
    }
  });
});

describe('upstream failures are logged', () => {
  let fake, p;
  const SECRET = 'sk-limits-test-secret-123';
  before(async () => {
    fake = await startFake();
    const cfg = configFor(fake, { routes: [route('f', chatPolicy(1)), route('z', { rounds: 0 })] });
    cfg.upstreams[0].api_key = SECRET;
    cfg.upstreams.push({ name: 'down', base_url: `http://127.0.0.1:${await closedPort()}/v1`,
      retries: 0, connect_timeout_ms: 1000 });
    cfg.routes.push(route('d', { rounds: 0 }, { upstream: 'down' }));
    p = await startPonder({ config: cfg });
  });
  after(async () => {
    await p.stop();
    await fake.close();
  });

  it('a forced call\'s error status: warn with request id, route, upstream and status', async () => {
    fake.reset();
    fake.script({ status: 503 });
    const r = await chat(`${p.url}/f/v1`, { model: 'm', messages: M }, { 'x-request-id': 'req-fail-1' });
    assert.equal(r.status, 503);
    const line = await waitFor(() => p.output().split('\n').find((l) => l.includes('[req-fail-1]')),
      { what: 'the warning' });
    assert.match(line, / warn \[req-fail-1\] upstream call failed: route=f upstream=fake status=503 /);
    assert.match(line, /code=server_error/);
  });

  it('a pass-through call that cannot connect: warn with its cause', async () => {
    const r = await chat(`${p.url}/d/v1`, { model: 'm', messages: M }, { 'x-request-id': 'req-fail-2' });
    assert.equal(r.status, 502);
    const line = await waitFor(() => p.output().split('\n').find((l) => l.includes('[req-fail-2]')),
      { what: 'the warning' });
    assert.match(line, /route=d upstream=down status=0 cause=connect/);
  });

  it('an invalid reply is logged; secrets never are', async () => {
    fake.reset();
    fake.script({ invalid_json: true });
    const r = await chat(`${p.url}/z/v1`, { model: 'm', messages: M }, { 'x-request-id': 'req-fail-3' });
    assert.equal(r.status, 502);
    const line = await waitFor(() => p.output().split('\n').find((l) => l.includes('[req-fail-3]')),
      { what: 'the warning' });
    assert.match(line, /route=z upstream=fake status=200 cause=reply not a JSON object/);
    assert.ok(!p.output().includes(SECRET), 'the api key is never logged');
  });
});

describe('logging never blocks a loop thread', () => {
  it('a stderr pipe nobody reads: requests still complete, lines are dropped and counted, SIGTERM exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ponder-limits-'));
    const cfgPath = join(dir, 'ponder.json');
    writeFileSync(cfgPath, JSON.stringify({
      upstreams: [{ name: 'x', base_url: 'http://127.0.0.1:9/v1' }],
      log: { level: 'info', access_log: '-' },
    }));
    const proc = spawn(ponderBin, ['--config', cfgPath, '--listen', '127.0.0.1:0'],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise((res) => proc.on('exit', (code, sig) => res({ code, sig })));
    try {
      let out = '';
      const port = await new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error('no listening line: ' + out)), 10000);
        const onData = (d) => {
          out += d;
          const m = out.match(/listening on \S+:(\d+)/);
          if (m) {
            clearTimeout(t);
            proc.stderr.off('data', onData);
            proc.stderr.pause(); // from now on nobody reads the pipe
            res(Number(m[1]));
          }
        };
        proc.stderr.on('data', onData);
      });
      // Each 404 writes an access-log line of ~600 bytes: 4,000 of them are far more than the
      // pipe, node's own buffer and ponder's queue together hold.
      const path = '/' + 'a'.repeat(480);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      const get = (pth) => new Promise((res, rej) => {
        const req = http.get({ host: '127.0.0.1', port, path: pth, agent, timeout: 5000 }, (r) => {
          let body = '';
          r.on('data', (d) => { body += d; });
          r.on('end', () => res({ status: r.statusCode, body }));
        });
        req.on('timeout', () => { req.destroy(new Error('request timed out: the worker is blocked')); });
        req.on('error', rej);
      });
      const t0 = Date.now();
      for (let i = 0; i < 4000; i += 8) {
        const rs = await Promise.all(Array.from({ length: 8 }, () => get(path)));
        for (const r of rs) assert.equal(r.status, 404);
      }
      const secs = (Date.now() - t0) / 1000;
      assert.ok(secs < 30, `4,000 requests took ${secs} s`);
      const m = await get('/metrics');
      assert.equal(m.status, 200);
      const dropped = metricValue(m.body, 'ponder_log_dropped_total', {});
      assert.ok(dropped > 0, `ponder_log_dropped_total ${dropped}`);
      agent.destroy();
      const t1 = Date.now();
      proc.kill('SIGTERM');
      const r = await Promise.race([exited, sleep(10000).then(() => ({ code: 'hung' }))]);
      assert.equal(r.code, 0, `exit ${JSON.stringify(r)}`);
      assert.ok(Date.now() - t1 < 8000, 'exited promptly');
    } finally {
      proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the proxy key forwarded upstream is warned about', () => {
  let dir;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'ponder-limits-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const run = (cfg) => {
    const f = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(f, JSON.stringify(cfg));
    const env = { ...process.env };
    delete env.OPENAI_API_KEY;
    return spawnSync(ponderBin, ['--config', f, '--check-config'], { encoding: 'utf8', env });
  };

  it('--check-config: auth.keys and an upstream without api_key', () => {
    const r = run({ auth: { keys: ['ponder-key-1'] },
      upstreams: [{ name: 'keyed', base_url: 'http://127.0.0.1:9/v1', api_key: 'sk-x' },
                  { name: 'open', base_url: 'http://127.0.0.1:9/v1' }] });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: auth\.keys is set but upstream "open" has no api_key/);
    assert.ok(!r.stderr.includes('"keyed"'));
    assert.ok(!r.stderr.includes('ponder-key-1') && !r.stdout.includes('ponder-key-1'));
  });

  it('no warning when every upstream has its key, or without auth.keys', () => {
    let r = run({ auth: { keys: ['k'] },
      upstreams: [{ name: 'keyed', base_url: 'http://127.0.0.1:9/v1', api_key: 'sk-x' }] });
    assert.equal(r.status, 0);
    assert.doesNotMatch(r.stderr, /warning/);
    r = run({ upstreams: [{ name: 'open', base_url: 'http://127.0.0.1:9/v1' }] });
    assert.equal(r.status, 0);
    assert.doesNotMatch(r.stderr, /warning/);
  });

  it('at start-up too', async () => {
    const p = await startPonder({ config: { auth: { keys: ['k'] },
      upstreams: [{ name: 'open', base_url: 'http://127.0.0.1:9/v1' }], log: { level: 'warn' } } });
    try {
      await waitFor(() => /warn auth\.keys is set but upstream "open" has no api_key/.test(p.output()),
        { what: 'the start-up warning' });
    } finally {
      await p.stop();
    }
  });
});
