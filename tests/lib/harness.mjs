// Test harness: starts the fake upstream (in-process) and the built ponder binary on free
// loopback ports, and stops both. Used by the integration and SDK suites.
import { spawn } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import http from 'node:http';
import assert from 'node:assert/strict';
import { startFake } from '../fake/upstream.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
export const ponderBin = process.env.PONDER_BIN || join(repoRoot, 'build', 'ponder');

export { startFake };

/**
 * Starts ponder. `config` (an object) is written as a JSON config file; `args` are extra CLI
 * flags; `env` extra environment. Resolves once ponder prints its listening line.
 * Returns { port, url, base (url + '/v1'), proc, output(), stop(signal), configPath }.
 */
export async function startPonder({ config = null, args = [], env = {}, timeoutMs = 10000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ponder-test-'));
  const fullArgs = ['--listen', '127.0.0.1:0', ...args];
  let configPath = null;
  if (config) {
    configPath = join(dir, 'ponder.json');
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    fullArgs.unshift('--config', configPath);
  }
  const childEnv = { ...process.env, ...env };
  if (!('OPENAI_API_KEY' in env)) delete childEnv.OPENAI_API_KEY;
  const proc = spawn(ponderBin, fullArgs, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((res) => proc.on('exit', (code, sig) => res({ code, sig })));
  const port = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('ponder did not start:\n' + out)), timeoutMs);
    const check = () => {
      const m = out.match(/listening on \S+:(\d+)/);
      if (m) { clearTimeout(t); res(Number(m[1])); }
    };
    proc.stderr.on('data', check);
    proc.stdout.on('data', check);
    exited.then(({ code }) => { clearTimeout(t); rej(new Error(`ponder exited (${code}):\n` + out)); });
  });
  const url = `http://127.0.0.1:${port}`;
  let stopped = null;
  const p = {
    port, url, base: `${url}/v1`, proc, configPath, dir,
    output: () => out,
    exited,
    // Atomic (write + rename), as config management does: a reload never sees half a file.
    writeConfig(obj) {
      writeFileSync(configPath + '.tmp', JSON.stringify(obj, null, 2));
      renameSync(configPath + '.tmp', configPath);
    },
    async stop(signal = 'SIGTERM') {
      if (!stopped) {
        proc.kill(signal);
        stopped = exited.then((r) => { rmSync(dir, { recursive: true, force: true }); return r; });
      }
      return stopped;
    },
  };
  return p;
}

/** A config pointing the default route at the fake upstream. */
export function configFor(fake, extra = {}) {
  return {
    upstreams: [{ name: 'fake', base_url: `${fake.url}/v1`, retries: 0, timeout_ms: 5000,
                  connect_timeout_ms: 2000 }],
    log: { level: 'warn', access_log: 'off' },
    ...extra,
  };
}

/** Forcing policies and prefix routes shared by the forcing and streaming suites: short,
 * recognisable prompts so the exact upstream messages can be asserted. */
export const PROMPTS = {
  think: 'THINK {think_budget}/{answer_budget}.',
  wait: 'WAIT?',
  continue: 'CONTINUE {think_budget}.',
  answer: 'ANSWER {answer_budget}!',
};
export const chatPolicy = (rounds, extra = {}) => ({
  mode: 'chat', rounds, think_budget: 100, answer_budget: 50, prompts: PROMPTS, ...extra,
});
export const prefillPolicy = (dialect) => ({
  mode: 'prefill', rounds: 2, think_budget: 10, answer_budget: 50, prefill: { dialect },
});
export const route = (name, forcing, extra = {}) => ({ name, match: { path_prefix: `/${name}` }, forcing, ...extra });

/** Raw HTTP over a socket: sends `data`, resolves with everything received until close or
 * `waitMs` of silence. */
export function rawHttp(port, data, { waitMs = 1000, half = false } = {}) {
  return new Promise((res) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    let t;
    const done = () => { clearTimeout(t); s.destroy(); res(buf); };
    const arm = () => { clearTimeout(t); t = setTimeout(done, waitMs); };
    s.on('connect', () => { if (data) s.write(data); if (half) s.end(); arm(); });
    s.on('data', (d) => { buf += d; arm(); });
    s.on('close', done);
    s.on('error', done);
  });
}

/** Parses an SSE body into the JSON of each data event (and '[DONE]' as the string). */
export function parseSSE(text) {
  const events = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l.startsWith('data:'));
    if (!lines.length) continue;
    const data = lines.map((l) => l.slice(5).trimStart()).join('\n');
    events.push(data === '[DONE]' ? '[DONE]' : JSON.parse(data));
  }
  return events;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** JSON chat request helper. */
export async function chat(base, body, headers = {}) {
  const r = await fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

/** node:http request (no pooling), so arbitrary headers (connection, te, upgrade) can be sent. */
export function httpReq(port, { method = 'GET', path = '/', headers = {}, body = null } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body != null) req.write(body);
    req.end();
  });
}

export async function waitFor(fn, { timeoutMs = 3000, stepMs = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** A loopback port nothing listens on (it was free a moment ago): connections to it are refused. */
export async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Splits complete HTTP/1.1 responses off the front of `buf` (a Buffer). 1xx interim
 * responses are returned too (they have no body). Returns { responses, rest, need }: `need` is
 * the length `buf` must reach before the next response can be complete (0: unknown). */
export function parseResponses(buf) {
  const responses = [];
  let need = 0;
  for (;;) {
    const he = buf.indexOf('\r\n\r\n');
    if (he < 0) break;
    const head = buf.subarray(0, he).toString('latin1').split('\r\n');
    const sm = head[0].match(/^HTTP\/1\.[01] (\d{3})/);
    if (!sm) throw new Error('bad status line: ' + JSON.stringify(head[0]));
    const status = Number(sm[1]);
    const headers = {};
    for (const l of head.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let pos = he + 4;
    let body = Buffer.alloc(0);
    if (status >= 200 && /chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      let ok = false;
      for (;;) {
        const le = buf.indexOf('\r\n', pos);
        if (le < 0) break;
        const size = parseInt(buf.subarray(pos, le).toString('latin1'), 16);
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le);
          if (te < 0) break;
          pos = te + 4;
          ok = true;
          break;
        }
        if (buf.length < le + 2 + size + 2) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        pos = le + 2 + size + 2;
      }
      if (!ok) break;
      body = Buffer.concat(parts);
    } else if (status >= 200) {
      const len = Number(headers['content-length'] || 0);
      if (buf.length < pos + len) { need = pos + len; break; }
      body = buf.subarray(pos, pos + len);
      pos += len;
    }
    let json = null;
    if (body.length < 64 << 20) { try { json = JSON.parse(body.toString('utf8')); } catch { /* not JSON */ } }
    responses.push({ status, headers, body, text: body.toString('utf8'), json });
    buf = buf.subarray(pos);
  }
  return { responses, rest: buf, need };
}

/** The sum of a Prometheus metric's samples whose labels include `labels` (an object), in the
 * /metrics text; null when no sample matches. */
export function metricValue(text, name, labels) {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const lab = line.slice(name.length).match(/^\{([^}]*)\}/);
    const have = lab ? lab[1] : '';
    if (want.every((w) => have.split(',').includes(w))) {
      sum += Number(line.trim().split(' ').pop());
      found = true;
    }
  }
  return found ? sum : null;
}

/** `todo` for tests of behaviour the upstream core (issue 13) brings and main does not have
 * yet: they run and their failures are shown, without failing the suite. PONDER_STRICT_PENDING=1
 * counts them as ordinary tests (use it once that work is merged, then drop the marks). */
export const PENDING_UPSTREAM_CORE = process.env.PONDER_STRICT_PENDING ? false : 'needs the upstream core of issue 13';
