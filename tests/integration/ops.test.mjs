// Integration tests: ponder's CLI, configuration, signals and workers (SPEC sections 2, 3, 9).
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/integration/ops.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFake, startPonder, configFor, ponderBin, sleep, httpReq, waitFor, closedPort } from '../lib/harness.mjs';

delete process.env.PONDER_UPSTREAM;
delete process.env.OPENAI_BASE_URL;
delete process.env.OPENAI_API_KEY;

const T = { timeout: 15000 };
const MSG = [{ role: 'user', content: 'What is two plus two?' }];

// ---------------------------------------------------------------------------
// helpers

const tmp = mkdtempSync(join(tmpdir(), 'ponder-ops-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let fileSeq = 0;
function writeTmp(name, text) {
  const path = join(tmp, `${++fileSeq}-${name}`);
  writeFileSync(path, text);
  return path;
}

/** Runs ponder to completion: { code, signal, stdout, stderr, out }. Kills it after timeoutMs. */
function run(args, { env = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const childEnv = { ...process.env, ...env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
    const proc = spawn(ponderBin, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('exit', (code, signal) => {
      clearTimeout(t);
      // let the pipes drain
      setImmediate(() => resolve({ code, signal, stdout, stderr, out: stdout + stderr }));
    });
  });
}


function chatReq(port, body = { model: 'fake-model', messages: MSG }, headers = {}, path = '/v1/chat/completions') {
  return httpReq(port, { method: 'POST', path, headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body) });
}

function metricSum(text, name, labels = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    if (!Object.entries(labels).every(([k, v]) => (m[2] || '').includes(`${k}="${v}"`))) continue;
    sum += Number(m[3]);
  }
  return sum;
}


/** Resolves 'refused' | 'closed' | 'open' for a new TCP connection to port. */
function probeConnect(port, waitMs = 300) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let state = null;
    const done = (v) => { if (state) return; state = v; clearTimeout(t); s.destroy(); resolve(v); };
    const t = setTimeout(() => done('open'), waitMs + 1000);
    s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'closed'));
    s.on('connect', () => {
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      s.on('data', (d) => { if (/^HTTP\/1\.1 200/.test(String(d))) done('open'); });
      s.on('close', () => done('closed'));
      setTimeout(() => done('open'), waitMs);
    });
  });
}

async function stopOk(p) {
  const { code, sig } = await p.stop();
  assert.equal(sig, null, 'ponder was killed by a signal:\n' + p.output());
  assert.equal(code, 0, 'ponder exit code after SIGTERM:\n' + p.output());
}

// ---------------------------------------------------------------------------
// 1. command line

describe('command line', () => {
  it('--version prints the version and exits 0', T, async () => {
    const r = await run(['--version']);
    assert.equal(r.code, 0);
    assert.match(r.out, /ponder\s+v?\d+\.\d+\.\d+/);
  });

  it('--help prints usage with every flag and exits 0', T, async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0);
    for (const f of ['--config', '--listen', '--upstream', '--rounds', '--workers', '--log-level', '--check-config', '--version', '--help']) {
      assert.ok(r.out.includes(f), `--help lacks ${f}`);
    }
  });

  it('bad usage exits 1', T, async () => {
    for (const args of [['--no-such-flag'], ['--listen'], ['--rounds', 'abc'], ['--rounds', '-1'],
      ['--log-level', 'loud'], ['--workers', 'x'], ['--listen', 'not-an-address'], ['stray-argument']]) {
      const r = await run(['--check-config', ...args]);
      assert.equal(r.code, 1, `ponder ${args.join(' ')} exited ${r.code}:\n${r.out}`);
      assert.ok(r.out.length > 0, `no message for ${args.join(' ')}`);
    }
  });

  it('a missing config file exits 1', T, async () => {
    const r = await run(['--config', join(tmp, 'does-not-exist.yaml'), '--check-config']);
    assert.equal(r.code, 1);
    assert.match(r.out, /does-not-exist\.yaml/);
  });

  it('a port already in use exits 2', T, async () => {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const port = srv.address().port;
      const r = await run(['--listen', `127.0.0.1:${port}`, '--upstream', 'http://127.0.0.1:9/v1']);
      assert.equal(r.code, 2, r.out);
      assert.ok(r.out.length > 0, 'no message about the port');
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('--listen overrides the config file listen', T, async () => {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const fake = await startFake();
    try {
      // the file names a busy port; the harness passes --listen 127.0.0.1:0, which must win
      const p = await startPonder({ config: { ...configFor(fake), listen: `127.0.0.1:${srv.address().port}` } });
      assert.notEqual(p.port, srv.address().port);
      const r = await httpReq(p.port, { path: '/healthz' });
      assert.equal(r.status, 200);
      await stopOk(p);
    } finally {
      await new Promise((r) => srv.close(r));
      await fake.close();
    }
  });

  it('listen from the config file is used without --listen', T, async () => {
    const port = await closedPort();
    const fake = await startFake();
    const path = writeTmp('listen.json', JSON.stringify({ ...configFor(fake), listen: `127.0.0.1:${port}` }));
    const proc = spawn(ponderBin, ['--config', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
    try {
      const r = await waitFor(async () => {
        try { return await httpReq(port, { path: '/healthz' }); } catch { return null; }
      }, { what: `ponder on port ${port}` });
      assert.equal(r.status, 200);
    } finally {
      proc.kill('SIGTERM');
      const { code } = await exited;
      await fake.close();
      assert.equal(code, 0);
    }
  });
});

// ---------------------------------------------------------------------------
// 2. --check-config

describe('--check-config', () => {
  const goodYaml = `# a valid config
listen: 127.0.0.1:0
shutdown_grace_ms: 1234
upstreams:
  - name: up
    base_url: \${PT_BASE:-http://127.0.0.1:9/v1}
    api_key: \${PT_SECRET}
    timeout_ms: 4321
auth:
  keys: ["client-secret-key-1"]
routes:
  - name: "\${PT_ROUTE}"
    match: {models: [m1]}
    forcing: {rounds: 3}
`;
  const env = { PT_SECRET: 'sk-verysecret-abc123', PT_ROUTE: 'route-from-env', PT_BASE: undefined };

  it('a valid YAML file: effective config printed, secrets redacted, exit 0', T, async () => {
    const path = writeTmp('good.yaml', goodYaml);
    const r = await run(['--config', path, '--check-config'], { env });
    assert.equal(r.code, 0, r.out);
    assert.ok(r.stdout.includes('<redacted>'), 'api_key not shown as <redacted>:\n' + r.stdout);
    assert.match(r.stdout, /api_key:\s*"?<redacted>"?/);
    assert.ok(!r.out.includes('sk-verysecret-abc123'), 'upstream api_key leaked');
    assert.ok(!r.out.includes('client-secret-key-1'), 'auth key leaked');
    assert.match(r.stdout, /shutdown_grace_ms:\s*1234/);
    assert.match(r.stdout, /timeout_ms:\s*4321/);
    assert.match(r.stdout, /rounds:\s*3/);
    // defaults are filled in
    assert.match(r.stdout, /max_body_bytes:\s*16777216/);
    assert.match(r.stdout, /retries:\s*2/);
  });

  it('${VAR} and ${VAR:-default} are resolved', T, async () => {
    const path = writeTmp('vars.yaml', goodYaml);
    const r = await run(['--config', path, '--check-config'], { env });
    assert.equal(r.code, 0, r.out);
    assert.ok(r.stdout.includes('route-from-env'), '${PT_ROUTE} not resolved');
    assert.ok(r.stdout.includes('http://127.0.0.1:9/v1'), '${PT_BASE:-default} default not used');
    assert.ok(!r.stdout.includes('${'), 'unresolved ${...} in output');
    const r2 = await run(['--config', path, '--check-config'], { env: { ...env, PT_BASE: 'http://127.0.0.1:7777/v1' } });
    assert.equal(r2.code, 0, r2.out);
    assert.ok(r2.stdout.includes('http://127.0.0.1:7777/v1'), '${PT_BASE:-default} ignores the set variable');
    assert.ok(!r2.stdout.includes('http://127.0.0.1:9/v1'));
  });

  it('flags override the file (--workers, --listen, --log-level)', T, async () => {
    const path = writeTmp('flags.yaml', goodYaml + 'workers: 1\nlog:\n  level: error\n');
    const r = await run(['--config', path, '--check-config', '--workers', '3', '--listen', '127.0.0.1:4567',
      '--log-level', 'debug'], { env });
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /workers:\s*3/);
    assert.match(r.stdout, /listen:\s*"?127\.0\.0\.1:4567"?/);
    assert.match(r.stdout, /level:\s*"?debug"?/);
  });

  it('an invalid YAML file: every problem as FILE:LINE: message, exit 1', T, async () => {
    const path = writeTmp('bad.yaml', `listen: 127.0.0.1:0
bogus_key: 1
limits:
  max_body_bytes: -5
upstreams:
  - name: up
    base_urll: http://127.0.0.1:9/v1
routes:
  - name: r
    reasoning: sideways
    forcing:
      mode: telepathy
`);
    const r = await run(['--config', path, '--check-config']);
    assert.equal(r.code, 1, r.out);
    const lines = r.out.split('\n');
    for (const [line, word] of [[2, 'bogus_key'], [4, 'max_body_bytes'], [7, 'base_urll'], [10, 'reasoning'], [12, 'mode']]) {
      const l = lines.find((x) => x.startsWith(`${path}:${line}: `));
      assert.ok(l, `no "${path}:${line}: message" line in:\n${r.out}`);
      assert.ok(l.includes(word) || lines.some((x) => x.startsWith(`${path}:${line}: `) && x.includes(word)),
        `line ${line} message does not name ${word}: ${l}`);
    }
    // also refuses to start with it
    const r2 = await run(['--config', path]);
    assert.equal(r2.code, 1);
  });

  it('a YAML syntax error is reported with FILE:LINE, exit 1', T, async () => {
    const path = writeTmp('syntax.yaml', 'listen: 127.0.0.1:0\nlimits:\n  max_body_bytes: [1, 2\n');
    const r = await run(['--config', path, '--check-config']);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: `));
  });

  it('a route naming an unknown upstream is an error', T, async () => {
    const path = writeTmp('upname.yaml', `upstreams:
  - name: up
    base_url: http://127.0.0.1:9/v1
routes:
  - name: r
    upstream: nope
`);
    const r = await run(['--config', path, '--check-config']);
    assert.equal(r.code, 1, r.out);
    assert.ok(r.out.includes(`${path}:6: `), r.out);
  });

  it('a JSON config works (check and serve)', T, async () => {
    const cfg = {
      upstreams: [{ name: 'up', base_url: '${PT_BASE:-http://127.0.0.1:9/v1}', api_key: '${PT_SECRET}' }],
      routes: [{ name: 'j', forcing: { rounds: 4 } }],
    };
    const path = writeTmp('good.json', JSON.stringify(cfg, null, 2));
    const r = await run(['--config', path, '--check-config'], { env });
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /rounds:\s*4/);
    assert.ok(r.stdout.includes('<redacted>'));
    assert.ok(!r.out.includes('sk-verysecret-abc123'));
    const bad = writeTmp('bad.json', '{\n  "listen": "127.0.0.1:0",\n  "nope": true\n}\n');
    const r2 = await run(['--config', bad, '--check-config']);
    assert.equal(r2.code, 1, r2.out);
    assert.ok(r2.out.includes(`${bad}:3: `), r2.out);
  });

  it('a JSON config serves requests', T, async () => {
    const fake = await startFake();
    const p = await startPonder({ config: configFor(fake, { routes: [{ name: 'j', forcing: { rounds: 1 } }] }) });
    try {
      const r = await chatReq(p.port);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-ponder-route'], 'j');
      assert.equal(r.headers['x-ponder-rounds'], '1');
      assert.equal(fake.log.length, 2);
    } finally {
      await stopOk(p);
      await fake.close();
    }
  });
});

// ---------------------------------------------------------------------------
// 3. built-in defaults (no config file)

describe('defaults without a config file', () => {
  let a;
  let b;
  before(async () => {
    a = await startFake();
    b = await startFake();
  });
  after(async () => {
    await a.close();
    await b.close();
  });

  it('--upstream is the upstream; default 2 rounds; catch-all chat route', T, async () => {
    a.reset();
    const p = await startPonder({ args: ['--upstream', `${a.url}/v1`] });
    try {
      const r = await chatReq(p.port, { model: 'any-model', messages: MSG });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-ponder-rounds'], '2');
      assert.equal(a.log.length, 3, '2 thinking calls + 1 answer call');
      assert.equal(r.json.model, 'any-model');
      assert.ok(r.json.choices[0].message.reasoning_content, 'default reasoning: field');
      const m = await httpReq(p.port, { path: '/v1/models' });
      assert.equal(m.status, 200);
      assert.ok(m.json.data.some((x) => x.id === 'fake-model'));
    } finally {
      await stopOk(p);
    }
  });

  it('--rounds sets the rounds of the default route', T, async () => {
    a.reset();
    const p = await startPonder({ args: ['--upstream', `${a.url}/v1`, '--rounds', '0'] });
    try {
      const r = await chatReq(p.port);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-ponder-rounds'], '0');
      assert.equal(a.log.length, 1);
    } finally {
      await stopOk(p);
    }
  });

  it('$PONDER_UPSTREAM is used, and beats $OPENAI_BASE_URL; --upstream beats both', T, async () => {
    a.reset();
    b.reset();
    const env = { PONDER_UPSTREAM: `${a.url}/v1`, OPENAI_BASE_URL: `${b.url}/v1` };
    const p = await startPonder({ args: ['--rounds', '0'], env });
    try {
      assert.equal((await chatReq(p.port)).status, 200);
      assert.equal(a.log.length, 1);
      assert.equal(b.log.length, 0);
    } finally {
      await stopOk(p);
    }
    a.reset();
    const p2 = await startPonder({ args: ['--rounds', '0', '--upstream', `${b.url}/v1`], env: { PONDER_UPSTREAM: `${a.url}/v1` } });
    try {
      assert.equal((await chatReq(p2.port)).status, 200);
      assert.equal(b.log.length, 1);
      assert.equal(a.log.length, 0);
    } finally {
      await stopOk(p2);
    }
  });

  it('$OPENAI_BASE_URL is used when nothing else is set', T, async () => {
    b.reset();
    const p = await startPonder({ args: ['--rounds', '0'], env: { OPENAI_BASE_URL: `${b.url}/v1` } });
    try {
      const r = await chatReq(p.port);
      assert.equal(r.status, 200, r.text);
      assert.equal(b.log.length, 1);
      assert.equal(b.log[0].path, '/v1/chat/completions');
    } finally {
      await stopOk(p);
    }
  });

  it('$OPENAI_API_KEY is sent upstream as Bearer (instead of the client\'s Authorization)', T, async () => {
    a.reset();
    const p = await startPonder({ args: ['--upstream', `${a.url}/v1`, '--rounds', '0'], env: { OPENAI_API_KEY: 'sk-env-key-42' } });
    try {
      assert.equal((await chatReq(p.port, undefined, { authorization: 'Bearer sk-client-key' })).status, 200);
      assert.equal((await chatReq(p.port)).status, 200);
      const e = await httpReq(p.port, { method: 'POST', path: '/v1/embeddings', body: '{}', headers: { 'content-type': 'application/json' } });
      assert.equal(e.status, 200);
      assert.equal(a.log.length, 3);
      for (const entry of a.log) assert.equal(entry.headers.authorization, 'Bearer sk-env-key-42');
      assert.ok(!p.output().includes('sk-env-key-42'), 'the key appears in ponder\'s output');
      const m = await httpReq(p.port, { path: '/metrics' });
      assert.ok(!m.text.includes('sk-env-key-42'), 'the key appears in metrics');
    } finally {
      await stopOk(p);
    }
  });

  it('without $OPENAI_API_KEY the client\'s Authorization is forwarded', T, async () => {
    a.reset();
    const p = await startPonder({ args: ['--upstream', `${a.url}/v1`, '--rounds', '0'] });
    try {
      assert.equal((await chatReq(p.port, undefined, { authorization: 'Bearer sk-client-key' })).status, 200);
      assert.equal(a.log[0].headers.authorization, 'Bearer sk-client-key');
      assert.equal((await chatReq(p.port)).status, 200);
      assert.equal(a.log[1].headers.authorization, undefined);
    } finally {
      await stopOk(p);
    }
  });
});

// ---------------------------------------------------------------------------
// 4. signals

describe('SIGTERM / SIGINT', () => {
  let fake;
  before(async () => { fake = await startFake(); });
  after(async () => { await fake.close(); });

  it('an in-flight request completes after SIGTERM; new connections are refused; exit 0', T, async () => {
    fake.reset();
    fake.script({ delay_ms: 800 });
    const p = await startPonder({ config: configFor(fake, { shutdown_grace_ms: 5000, routes: [{ name: 'r', forcing: { rounds: 0 } }] }) });
    const inflight = chatReq(p.port).then((r) => ({ ...r, at: Date.now() }));
    await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
    const t0 = Date.now();
    p.proc.kill('SIGTERM');
    await sleep(150);
    assert.equal(await probeConnect(p.port), 'refused', 'a new connection was accepted during shutdown');
    const r = await inflight;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion');
    const { code, sig } = await p.exited;
    const exitAt = Date.now();
    assert.equal(sig, null);
    assert.equal(code, 0, p.output());
    assert.ok(exitAt >= r.at, 'ponder exited before the in-flight response was delivered');
    assert.ok(exitAt - t0 < 3000, `shutdown took ${exitAt - t0} ms`);
    await p.stop();
  });

  it('an in-flight stream completes after SIGTERM', T, async () => {
    fake.reset();
    fake.script({ tokens: 10, token_delay_ms: 60 });
    const p = await startPonder({ config: configFor(fake, { shutdown_grace_ms: 5000, routes: [{ name: 'r', forcing: { rounds: 0 } }] }) });
    const inflight = chatReq(p.port, { model: 'fake-model', messages: MSG, stream: true });
    await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
    await sleep(100);
    p.proc.kill('SIGTERM');
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.match(r.text, /data: \[DONE\]/);
    assert.match(r.text, /tok9/);
    const { code } = await p.exited;
    assert.equal(code, 0, p.output());
    await p.stop();
  });

  it('shutdown_grace_ms bounds the wait for a hanging request; exit 0', T, async () => {
    fake.reset();
    fake.script({ hang: true });
    const p = await startPonder({ config: configFor(fake, { shutdown_grace_ms: 200, routes: [{ name: 'r', forcing: { rounds: 0 } }] }) });
    const inflight = chatReq(p.port).catch((e) => e);
    await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
    const t0 = Date.now();
    p.proc.kill('SIGTERM');
    const { code, sig } = await p.exited;
    const dt = Date.now() - t0;
    assert.equal(sig, null);
    assert.equal(code, 0, p.output());
    assert.ok(dt >= 150, `exited after ${dt} ms, before the grace period`);
    assert.ok(dt < 2000, `exited after ${dt} ms; grace is 200 ms`);
    await inflight; // settles (an error response or a closed connection)
    await p.stop();
  });

  it('idle keep-alive connections do not hold up shutdown', T, async () => {
    const p = await startPonder({ config: configFor(fake, { shutdown_grace_ms: 10000 }) });
    const s = net.connect(p.port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    s.on('error', () => {});
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => s.once('data', r));
    const t0 = Date.now();
    p.proc.kill('SIGTERM');
    const { code } = await p.exited;
    s.destroy();
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 2000, `shutdown took ${Date.now() - t0} ms with an idle connection`);
    await p.stop();
  });

  it('SIGINT is a graceful stop too (exit 0)', T, async () => {
    const p = await startPonder({ config: configFor(fake) });
    assert.equal((await httpReq(p.port, { path: '/healthz' })).status, 200);
    const { code, sig } = await p.stop('SIGINT');
    assert.equal(sig, null);
    assert.equal(code, 0, p.output());
  });
});

describe('SIGHUP reload', () => {
  let fake;
  before(async () => { fake = await startFake(); });
  after(async () => { await fake.close(); });

  const cfg = (rounds, extra = {}) => configFor(fake, { routes: [{ name: 'r', forcing: { rounds } }], ...extra });

  it('new requests use the reloaded config; a bad file keeps the old one', T, async () => {
    const p = await startPonder({ config: cfg(1) });
    try {
      let r = await chatReq(p.port);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-ponder-rounds'], '1');

      p.writeConfig(cfg(2));
      p.proc.kill('SIGHUP');
      await waitFor(async () => (await chatReq(p.port)).headers['x-ponder-rounds'] === '2', { what: 'rounds 2 after SIGHUP' });

      // a bad file: reported, old config stays
      const outBefore = p.output().length;
      writeFileSync(p.configPath, JSON.stringify({ ...cfg(5), bogus_key: true }, null, 2));
      p.proc.kill('SIGHUP');
      await waitFor(() => /bogus_key/.test(p.output().slice(outBefore)), { what: 'the reload error to be reported' });
      for (let i = 0; i < 3; i++) {
        r = await chatReq(p.port);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers['x-ponder-rounds'], '2', 'the old config must stay after a bad reload');
      }
      assert.equal((await httpReq(p.port, { path: '/healthz' })).status, 200);

      // a syntax error too
      writeFileSync(p.configPath, '{ "routes": [ ');
      p.proc.kill('SIGHUP');
      await sleep(300);
      r = await chatReq(p.port);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-ponder-rounds'], '2');

      // and a later good file is picked up
      p.writeConfig(cfg(3));
      p.proc.kill('SIGHUP');
      await waitFor(async () => (await chatReq(p.port)).headers['x-ponder-rounds'] === '3', { what: 'rounds 3 after SIGHUP' });
    } finally {
      await stopOk(p);
    }
  });

  it('reload can change routes and upstream settings', T, async () => {
    const other = await startFake();
    const p = await startPonder({ config: cfg(0) });
    try {
      fake.reset();
      assert.equal((await chatReq(p.port)).status, 200);
      assert.equal(fake.log.length, 1);
      p.writeConfig({
        upstreams: [{ name: 'other', base_url: `${other.url}/v1`, retries: 0, timeout_ms: 5000 }],
        log: { level: 'warn', access_log: 'off' },
        routes: [{ name: 'renamed', forcing: { rounds: 0 } }],
      });
      p.proc.kill('SIGHUP');
      await waitFor(async () => (await chatReq(p.port)).headers['x-ponder-route'] === 'renamed', { what: 'the new route' });
      assert.ok(other.log.length >= 1, 'the new upstream was not used');
    } finally {
      await stopOk(p);
      await other.close();
    }
  });

  it('an in-flight request finishes on the old config during a reload', T, async () => {
    fake.reset();
    fake.script({ delay_ms: 800 });
    const p = await startPonder({ config: cfg(1) });
    try {
      const inflight = chatReq(p.port);
      await waitFor(() => fake.log.length === 1, { what: 'the first upstream call' });
      p.writeConfig(cfg(3));
      p.proc.kill('SIGHUP');
      await waitFor(async () => (await chatReq(p.port)).headers['x-ponder-rounds'] === '3', { what: 'rounds 3 after SIGHUP' });
      const r = await inflight;
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-ponder-rounds'], '1', 'the in-flight request must keep its old policy');
      assert.ok(r.json.choices[0].message.content);
    } finally {
      await stopOk(p);
    }
  });
});

// ---------------------------------------------------------------------------
// 5. workers

describe('workers', () => {
  it('workers: 2 serves concurrent requests and /metrics aggregates both workers', T, async () => {
    const fake = await startFake();
    const p = await startPonder({ config: configFor(fake, { workers: 2, routes: [{ name: 'w', forcing: { rounds: 0 } }] }) });
    try {
      fake.script(Array.from({ length: 20 }, () => ({ delay_ms: 100 })));
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        chatReq(p.port, { model: 'fake-model', messages: [{ role: 'user', content: `question ${i}` }] })));
      rs.forEach((r, i) => {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.choices[0].message.content, `Answer to: question ${i}`);
      });
      assert.equal(fake.log.length, 20);
      // several fresh connections, which the kernel spreads over the workers: every one must see the totals
      for (let i = 0; i < 6; i++) {
        const m = await httpReq(p.port, { path: '/metrics' });
        assert.equal(m.status, 200);
        assert.equal(metricSum(m.text, 'ponder_requests_total', { route: 'w' }), 20, 'ponder_requests_total:\n' +
          m.text.split('\n').filter((l) => l.startsWith('ponder_requests_total')).join('\n'));
        assert.equal(metricSum(m.text, 'ponder_upstream_requests_total'), 20);
        assert.equal(metricSum(m.text, 'ponder_inflight_requests'), 0);
      }
    } finally {
      await stopOk(p);
      await fake.close();
    }
  });

  it('workers: 0 (one per core) and --workers 2 over a file with workers: 1 start and serve', T, async () => {
    const fake = await startFake();
    for (const opts of [{ config: configFor(fake, { workers: 0 }) }, { config: configFor(fake, { workers: 1 }), args: ['--workers', '2'] }]) {
      const p = await startPonder(opts);
      try {
        const rs = await Promise.all(Array.from({ length: 6 }, () => httpReq(p.port, { path: '/healthz' })));
        for (const r of rs) assert.equal(r.status, 200);
      } finally {
        await stopOk(p);
      }
    }
    await fake.close();
  });

  it('SIGHUP and SIGTERM with workers: 2', T, async () => {
    const fake = await startFake();
    const p = await startPonder({ config: configFor(fake, { workers: 2, routes: [{ name: 'w', forcing: { rounds: 1 } }] }) });
    try {
      p.writeConfig(configFor(fake, { workers: 2, routes: [{ name: 'w', forcing: { rounds: 2 } }] }));
      p.proc.kill('SIGHUP');
      // every connection, whichever worker takes it, must see the new config
      await waitFor(async () => {
        const rs = await Promise.all(Array.from({ length: 6 }, () => chatReq(p.port)));
        return rs.every((r) => r.status === 200 && r.headers['x-ponder-rounds'] === '2');
      }, { what: 'all workers on the new config' });
    } finally {
      await stopOk(p);
      await fake.close();
    }
  });
});

// ---------------------------------------------------------------------------
// 6. signals during a drain (SPEC section 9): SIGHUP is ignored, a second SIGTERM/SIGINT aborts
// what is left at once, and no signal kills the process while requests are in flight.

/** Sends `signals` (round robin) to proc as fast as the event loop allows until it exits or
 * `max` were sent. Resolves with the number sent. */
function signalStorm(proc, signals, { max = 100000, exited } = {}) {
  return new Promise((resolve) => {
    let n = 0;
    let over = false;
    exited.then(() => { over = true; });
    const tick = () => {
      for (let i = 0; i < 20 && !over && n < max; i++) {
        try { proc.kill(signals[n % signals.length]); } catch { over = true; }
        n++;
      }
      if (over || n >= max) resolve(n);
      else setImmediate(tick);
    };
    tick();
  });
}

async function exitedCleanly(p, what) {
  const { code, sig } = await p.exited;
  assert.equal(sig, null, `${what}: ponder was killed by ${sig}:\n${p.output()}`);
  assert.equal(code, 0, `${what}: exit code:\n${p.output()}`);
}

describe('signals during the drain', () => {
  let fake;
  before(async () => { fake = await startFake(); });
  after(async () => { await fake.close(); });
  const drainCfg = (extra = {}) => configFor(fake, { shutdown_grace_ms: 10000, routes: [{ name: 'r', forcing: { rounds: 0 } }], ...extra });

  it('a SIGHUP storm during the drain is ignored: the in-flight request completes, exit 0', T, async () => {
    fake.reset();
    fake.script({ delay_ms: 1200 });
    const p = await startPonder({ config: drainCfg() });
    const inflight = chatReq(p.port);
    await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
    p.proc.kill('SIGTERM');
    await sleep(50);
    const sent = await signalStorm(p.proc, ['SIGHUP'], { max: 2000, exited: p.exited });
    assert.ok(sent >= 2000, `the storm stopped after ${sent}: ponder exited during it:\n${p.output()}`);
    const r = await inflight;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion');
    await exitedCleanly(p, 'SIGHUP storm');
    assert.ok(!/reloaded/.test(p.output()), 'a SIGHUP during the drain reloaded the config');
    await p.stop();
  });

  for (const [first, second] of [['SIGTERM', 'SIGTERM'], ['SIGTERM', 'SIGINT'], ['SIGINT', 'SIGTERM']]) {
    it(`${first} then ${second} aborts the drain at once (exit 0)`, T, async () => {
      fake.reset();
      fake.script({ hang: true });
      const p = await startPonder({ config: drainCfg() });
      const inflight = chatReq(p.port).then((r) => r, (e) => e);
      await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
      p.proc.kill(first);
      await sleep(300);
      assert.equal(p.proc.exitCode, null, 'ponder did not wait for the hanging request');
      const t0 = Date.now();
      p.proc.kill(second);
      await exitedCleanly(p, `${first} + ${second}`);
      const dt = Date.now() - t0;
      assert.ok(dt < 2000, `the abort took ${dt} ms (grace is 10 s)`);
      const r = await inflight; // the aborted request settles: an error status or a closed connection
      assert.ok(r instanceof Error || r.status >= 500, `the aborted request got ${r.status}`);
      await p.stop();
    });
  }

  it('a mixed storm from the first SIGTERM until the process is gone never kills it (workers: 1 and 2)', { timeout: 30000 }, async () => {
    for (const workers of [1, 2]) {
      for (const signals of [['SIGHUP'], ['SIGHUP', 'SIGTERM', 'SIGINT']]) {
        fake.reset();
        fake.script(...Array.from({ length: 4 }, () => ({ delay_ms: 300 })));
        const p = await startPonder({ config: drainCfg({ workers }) });
        const inflight = Array.from({ length: 4 }, () => chatReq(p.port).then((r) => r, (e) => e));
        await waitFor(() => fake.log.length === 4, { what: 'the upstream calls' });
        p.proc.kill('SIGTERM');
        // until the exit: covers the drain, the loop's end and the teardown after it
        await signalStorm(p.proc, signals, { exited: p.exited });
        await exitedCleanly(p, `workers ${workers}, storm of ${signals.join('/')}`);
        const rs = await Promise.all(inflight);
        if (signals.length === 1) {
          for (const r of rs) assert.equal(r.status, 200, `a request was dropped during a SIGHUP storm: ${r.message || r.text}`);
        }
        await p.stop();
      }
    }
  });

  it('the teardown after the drain: repeated stops under a SIGHUP storm all exit 0', { timeout: 30000 }, async () => {
    // nothing in flight, so the storm overlaps the end of the loops and the teardown after them
    for (let i = 0; i < 12; i++) {
      const p = await startPonder({ config: drainCfg({ workers: 1 + (i % 2) }) });
      p.proc.kill('SIGTERM');
      await signalStorm(p.proc, ['SIGHUP'], { exited: p.exited });
      await exitedCleanly(p, `stop ${i}`);
      await p.stop();
    }
  });

  it('a SIGHUP storm while serving reloads without dropping anything', T, async () => {
    fake.reset();
    fake.script({ delay_ms: 500 });
    const p = await startPonder({ config: drainCfg() });
    try {
      const inflight = chatReq(p.port);
      await waitFor(() => fake.log.length === 1, { what: 'the upstream call' });
      await signalStorm(p.proc, ['SIGHUP'], { max: 300, exited: p.exited });
      assert.equal(p.proc.exitCode, null, p.output());
      assert.equal((await inflight).status, 200);
      assert.equal((await httpReq(p.port, { path: '/healthz' })).status, 200);
    } finally {
      await stopOk(p);
    }
  });
});

// ---------------------------------------------------------------------------
// 7. a busy port (SPEC section 9): another process listening on it is a start-up error (exit 2),
// another ponder included, although ponder's own workers share the port with SO_REUSEPORT.

describe('busy port', () => {
  it('a second ponder on the same port exits 2 and the first keeps serving', T, async () => {
    const fake = await startFake();
    for (const workersA of [1, 2]) {
      const a = await startPonder({ config: configFor(fake), args: ['--workers', String(workersA)] });
      try {
        for (const workersB of ['1', '2']) {
          const r = await run(['--listen', `127.0.0.1:${a.port}`, '--workers', workersB, '--upstream', 'http://127.0.0.1:9/v1']);
          assert.equal(r.code, 2, `a second ponder (workers ${workersB}) on ${a.port} exited ${r.code} ${r.signal}:\n${r.out}`);
          assert.match(r.out, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${a.port}: Address already in use`));
          assert.ok(!/listening on/.test(r.out), r.out);
        }
        // every new connection still reaches the first one
        const rs = await Promise.all(Array.from({ length: 12 }, () => httpReq(a.port, { path: '/healthz' })));
        for (const x of rs) assert.equal(x.status, 200);
        assert.equal(a.proc.exitCode, null);
      } finally {
        await stopOk(a);
      }
    }
    await fake.close();
  });

  it('a ponder started on a port it just freed (TIME_WAIT connections) starts again', T, async () => {
    const fake = await startFake();
    const a = await startPonder({ config: configFor(fake), args: ['--workers', '2'] });
    const port = a.port;
    for (let i = 0; i < 4; i++) assert.equal((await httpReq(port, { path: '/healthz', headers: { connection: 'close' } })).status, 200);
    await stopOk(a);
    const path = writeTmp('restart.json', JSON.stringify({ ...configFor(fake), listen: `127.0.0.1:${port}`, workers: 2 }));
    const proc = spawn(ponderBin, ['--config', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
    try {
      const r = await waitFor(async () => {
        try { return await httpReq(port, { path: '/healthz' }); } catch { return null; }
      }, { what: `ponder again on port ${port}` });
      assert.equal(r.status, 200);
    } finally {
      proc.kill('SIGTERM');
      const { code } = await exited;
      await fake.close();
      assert.equal(code, 0);
    }
  });
});
