// ponder's benchmark driver. bench/run.sh starts the processes and calls
//   node bench/bench.mjs ENV.json
// ENV.json names every process (port, pid). This file measures, then writes the markdown report
// (bench/results/bench-*.md, latest.md) and the chart (latest.png). Progress goes to stderr.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const QUICK = !!env.quick;
const CFG = QUICK
  ? { seqRounds: 3, seqSecs: 1, seqWarmSecs: 0.5, wrkSecs: 2, streamSecs: 2, passes: 1,
      memLevels: [1000], memTokens: 8, conns: 64 }
  : { seqRounds: 7, seqSecs: 1, seqWarmSecs: 1, wrkSecs: 3, streamSecs: 2, passes: 3,
      memLevels: [1000, 10000], memTokens: 15, conns: 64 };
const REQ_TIMEOUT_MS = 2000;   // one probe request

const t0 = Date.now();
const log = (...m) => process.stderr.write(
  `[bench ${new Date().toTimeString().slice(0, 8)} +${((Date.now() - t0) / 1000).toFixed(0)}s] ${m.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- children (wrk, gnuplot) are stopped when we are -----------------------------------------
const children = new Set();
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const c of children) try { c.kill('SIGTERM'); } catch {}
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

// ---- request bodies and targets -----------------------------------------------------------------
const MSG = [{ role: 'user', content: 'Say hello to the benchmark.' }];
const CHAT_BODY = JSON.stringify({ model: 'fake-model', messages: MSG });
const STREAM_BODY = JSON.stringify({ model: 'fake-model', stream: true, messages: MSG });
// (f): the same question through the Responses API (SPEC section 10).
const RESP_BODY = JSON.stringify({ model: 'fake-model', input: MSG[0].content });
const RESP_STREAM_BODY = JSON.stringify({ model: 'fake-model', stream: true, input: MSG[0].content });
const AUTH = { authorization: 'Bearer sk-bench' };
const portkeyHeaders = (port) => ({
  'x-portkey-provider': 'openai',
  'x-portkey-custom-host': `http://127.0.0.1:${port}/v1`,
});

const T = {
  direct: { label: 'direct (no proxy)', port: env.fast.port, path: '/v1/chat/completions', pids: [] },
  ponder: { label: 'ponder, rounds 0', port: env.ponder1.port, path: '/r0/v1/chat/completions',
    pids: [env.ponder1.pid], rounds: 0, isPonder: true },
  ponder_r1: { label: 'ponder, forced rounds 1', port: env.ponder1.port, path: '/r1/v1/chat/completions',
    pids: [env.ponder1.pid], rounds: 1, isPonder: true },
  ponder_r6: { label: 'ponder, forced rounds 6', port: env.ponder1.port, path: '/r6/v1/chat/completions',
    pids: [env.ponder1.pid], rounds: 6, isPonder: true },
  ponder2: { label: 'ponder workers 2, rounds 0', port: env.ponder2.port, path: '/r0/v1/chat/completions',
    pids: [env.ponder2.pid], rounds: 0, isPonder: true },
  ponder2_r6: { label: 'ponder workers 2, rounds 6', port: env.ponder2.port, path: '/r6/v1/chat/completions',
    pids: [env.ponder2.pid], rounds: 6, isPonder: true },
  nginx: { label: 'nginx (1 worker)', port: env.nginx.port, path: '/v1/chat/completions',
    streamPath: '/s/v1/chat/completions', pids: [env.nginx.pid], peer: true },
  portkey: { label: 'Portkey gateway', port: env.portkey.port, path: '/v1/chat/completions',
    headers: portkeyHeaders(env.fast.port), pids: [env.portkey.pid], peer: true },
  // (e) HTTPS: the same TLS upstream (nginx `return`, TLS 1.3) reached directly, through ponder
  // (tls.ca_file) and through nginx (proxy_pass https:// with a keep-alive pool, verify on).
  tls_direct: { label: 'HTTPS direct (no proxy)', port: env.tlsUp.port, scheme: 'https', path: '/v1/chat/completions', pids: [] },
  tls_ponder: { label: 'ponder → HTTPS, rounds 0', port: env.ponderTls.port, path: '/r0/v1/chat/completions',
    pids: [env.ponderTls.pid], rounds: 0, isPonder: true },
  tls_ponder_h1: { label: 'ponder → HTTPS, rounds 0, `http2: false`', port: env.ponderTls.port, path: '/h1r0/v1/chat/completions',
    pids: [env.ponderTls.pid], rounds: 0, isPonder: true },
  tls_ponder_r6: { label: 'ponder → HTTPS, forced rounds 6', port: env.ponderTls.port, path: '/r6/v1/chat/completions',
    pids: [env.ponderTls.pid], rounds: 6, isPonder: true },
  tls_nginx: { label: 'nginx → HTTPS (1 worker)', port: env.nginxTls.port, path: '/v1/chat/completions',
    pids: [env.nginxTls.pid], peer: true },
};
// (f) Responses against chat completions on the same routes (same policies, same upstream).
T.resp = { label: 'ponder Responses, rounds 0', port: env.ponder1.port, path: '/r0/v1/responses',
  pids: [env.ponder1.pid], rounds: 0, isPonder: true, body: RESP_BODY };
T.resp_r1 = { label: 'ponder Responses, forced rounds 1', port: env.ponder1.port, path: '/r1/v1/responses',
  pids: [env.ponder1.pid], rounds: 1, isPonder: true, body: RESP_BODY };
for (const [k, t] of Object.entries(T)) t.key = k;

// ---- /proc helpers -------------------------------------------------------------------------------
const TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100; } catch { return 100; } })();
function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / TCK };
  } catch { return null; }
}
function withDescendants(pids) {
  const all = new Set(pids);
  let grew = pids.length > 0;
  const table = [];
  if (grew) for (const d of fs.readdirSync('/proc')) if (/^\d+$/.test(d)) {
    const st = procStat(d); if (st) table.push([Number(d), st.ppid]);
  }
  while (grew) {
    grew = false;
    for (const [p, pp] of table) if (all.has(pp) && !all.has(p)) { all.add(p); grew = true; }
  }
  return [...all];
}
const cpuOf = (pids) => withDescendants(pids).reduce((a, p) => a + (procStat(p)?.cpu || 0), 0);
function memOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1] || 0);
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch { return null; }
}
const alive = (pid) => { const s = procStat(pid); return !!s && s.state !== 'Z' && s.state !== 'X'; };
function fdCount(pid) { try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return null; } }

const problems = [];  // things that went wrong, for the report
function checkAlive(phase) {
  for (const [name, p] of Object.entries({ ponder: env.ponder1, 'ponder workers 2': env.ponder2,
    'ponder (memory run)': env.ponderMem, 'ponder (HTTPS)': env.ponderTls, 'nginx TLS upstream': env.tlsUp, nginx: env.nginx, Portkey: env.portkey,
    'Portkey (memory run)': env.portkeyMem, 'fake upstream': env.fast, 'slow upstream': env.slow })) {
    if (!p.dead && !alive(p.pid)) {
      p.dead = true;
      let tail = '';
      try {
        tail = fs.readFileSync(p.err, 'utf8').split('\n').filter((l) => l.trim() && !/listening on|Starting AI Gateway/.test(l))
          .slice(-6).join(' | ').slice(0, 600);
      } catch {}
      problems.push(`${name} (pid ${p.pid}) exited during ${phase}${tail ? `; its stderr ends: \`${tail}\`` : ''}.`);
      log(`!! ${name} exited during ${phase}`);
    }
  }
}

// ---- HTTP helpers --------------------------------------------------------------------------------
function request(t, { agent = false, body = CHAT_BODY, pathOverride, timeoutMs = REQ_TIMEOUT_MS, keep = false } = {}) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    let done = false;
    const finish = (r) => { if (!done) { done = true; clearTimeout(timer); resolve(r); } };
    const req = http.request({
      host: '127.0.0.1', port: t.port, path: pathOverride || t.path, method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
        ...AUTH, ...(t.headers || {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => { if (keep) chunks.push(c); });
      res.on('end', () => {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        finish({ ok: res.statusCode === 200, status: res.statusCode, ms, headers: res.headers,
          body: keep ? Buffer.concat(chunks).toString() : '', reused: req.reusedSocket });
      });
      res.on('error', (e) => finish({ ok: false, err: e.code || e.message }));
    });
    const timer = setTimeout(() => { req.destroy(); finish({ ok: false, err: 'timeout' }); }, timeoutMs);
    req.on('error', (e) => finish({ ok: false, err: e.code || e.message }));
    req.end(body);
  });
}
const countEvents = (sse) => (sse.match(/^data: /gm) || []).length;

// Sanity probes: one request, then keep-alive reuse (3 requests on one connection).
async function probe(t) {
  const r = await request(t, { keep: true, body: t.body || CHAT_BODY });
  const out = { status: r.status ?? r.err, rounds: r.headers?.['x-ponder-rounds'] };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let ok = 0, reused = 0, err = null;
  for (let i = 0; i < 3; i++) {
    const k = await request(t, { agent, body: t.body || CHAT_BODY });
    if (k.ok) { ok++; if (k.reused) reused++; } else { err = k.err || k.status; break; }
  }
  agent.destroy();
  out.keepalive = ok === 3 && reused === 2 ? 'ok'
    : `${ok === 3 ? 'not reused' : `request ${ok + 1} of 3 on one keep-alive connection failed (${err})`}`;
  return out;
}

// ---- (a) sequential overhead ----------------------------------------------------------------------
const median = (a) => { if (!a.length) return NaN; const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// One keep-alive connection per target and one request at a time (wrk -t1 -c1), so the figure is
// the proxy's own latency rather than a client's: a Node http client adds ~200 µs and event-loop
// jitter of its own per request, enough to hide a proxy's few tens of µs (an earlier version of
// this bench measured nginx as 25 µs faster than no proxy at all).
async function sequential(list = [T.direct, T.ponder, T.nginx, T.portkey], tag = 'a') {
  const st = new Map(list.map((t) => [t, { p50: [], p99: [], n: 0, errors: 0, failed: null }]));
  log(`(${tag}) sequential: warm-up ${CFG.seqWarmSecs} s per target`);
  for (const t of list) await runWrk(t, { secs: CFG.seqWarmSecs, conns: 1, threads: 1 });
  for (let r = 0; r < CFG.seqRounds; r++) {
    const order = list.map((_, i) => list[(i + r) % list.length]);
    const line = {};
    for (const t of order) {
      const s = st.get(t);
      const w = await runWrk(t, { secs: CFG.seqSecs, conns: 1, threads: 1 });
      if (w.failed) { s.failed = w.failed; s.p50.push(NaN); s.p99.push(NaN); line[t.key] = 'failed'; continue; }
      s.n += w.requests - w.status;
      s.errors += w.errors;
      s.p50.push(w.p50_us / 1000);
      s.p99.push(w.p99_us / 1000);
      line[t.key] = `${(w.p50_us / 1000).toFixed(3)} ms`;
    }
    log(`(${tag}) round ${r + 1}/${CFG.seqRounds}: ` + list.map((t) => `${t.key} ${line[t.key]}`).join(', '));
  }
  const res = {};
  for (const t of list) {
    const s = st.get(t);
    res[t.key] = { label: t.label, p50: median(s.p50.filter(Number.isFinite)), p99: median(s.p99.filter(Number.isFinite)),
      n: s.n, errors: s.errors, failed: s.failed, broken: !!s.failed || s.errors > 0 };
  }
  // overhead: median over rounds of (target's round p50 − direct's round p50), paired by round
  const dm = st.get(list[0]).p50; // the list's first target is its direct control
  for (const t of list) {
    const diffs = st.get(t).p50.map((m, i) => m - dm[i]).filter(Number.isFinite);
    res[t.key].overhead = res[t.key].failed || !diffs.length ? NaN : median(diffs);
  }
  return res;
}

// ---- wrk ------------------------------------------------------------------------------------------
function runWrk(t, { body = CHAT_BODY, secs, pathOverride, conns = CFG.conns, threads = 2 }) {
  body = t.body || body; // a target that speaks another API brings its own body
  return new Promise((resolve) => {
    const url = `${t.scheme || 'http'}://127.0.0.1:${t.port}${pathOverride || t.path}`;
    const hdrs = Object.entries({ ...AUTH, ...(t.headers || {}) }).map(([k, v]) => `${k}: ${v}`).join('\n');
    const c = spawn('wrk', [`-t${threads}`, `-c${conns}`, `-d${secs}s`, '--timeout', '2s',
      '-s', path.join(HERE, 'wrk', 'post.lua'), url], {
      env: { ...process.env, WRK_BODY: body, WRK_HEADERS: hdrs }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    let out = '', err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', (code) => {
      children.delete(c);
      const m = out.match(/WRK_JSON (\{.*\})/);
      if (!m) { resolve({ failed: `wrk exited ${code}: ${(err || out).trim().slice(0, 200)}` }); return; }
      const j = JSON.parse(m[1]);
      j.rps = j.requests / (j.duration_us / 1e6);
      j.errors = j.connect + j.read + j.write + j.status + j.timeout;
      // Connections that stop answering are only counted by wrk once they are 2 s old: flag a
      // run in which the connections did not even make 3 requests each.
      j.stalled = j.requests < 3 * conns;
      if (j.stalled) j.errors++;
      resolve(j);
    });
  });
}
async function measureWrk(t, opts) {
  const c0 = cpuOf(t.pids);
  const w = await runWrk(t, opts);
  const cpu = cpuOf(t.pids) - c0;
  if (!w.failed) w.cpu = cpu;
  return w;
}
const fmtErr = (w) => w.failed ? w.failed
  : (w.errors ? [...Object.entries({ connect: w.connect, read: w.read, write: w.write, 'non-2xx': w.status, timeout: w.timeout })
    .filter(([, v]) => v).map(([k, v]) => `${v} ${k}`),
  ...(w.stalled ? [`stalled: ${w.requests} responses on ${CFG.conns} connections`] : [])].join(', ') : '0');

// Runs wrk against every target in `passes` interleaved passes (the order rotates), so a burst of
// load from elsewhere on the machine hits one pass of each target rather than one whole target.
// Per target: the median pass's rate, CPU and errors summed over the passes.
async function wrkPasses(list, { body, secs, passes, tag, describe }) {
  const runs = new Map(list.map((t) => [t, []]));
  for (let p = 0; p < passes; p++) {
    const order = list.map((_, i) => list[(i + p) % list.length]);
    for (const t of order) {
      const w = await measureWrk(t, { body, secs });
      runs.get(t).push(w);
      log(`(${tag}) pass ${p + 1}/${passes} ${t.label}: ${w.failed ? 'FAILED ' + w.failed : `${w.rps.toFixed(0)} req/s` +
        (w.errors ? `, errors ${fmtErr(w)}` : '')}`);
      await sleep(200);
    }
  }
  const out = new Map();
  for (const t of list) {
    const ok = runs.get(t).filter((w) => !w.failed);
    if (!ok.length) { out.set(t, runs.get(t)[0]); continue; }
    const sum = (k) => ok.reduce((a, w) => a + (w[k] || 0), 0);
    const c = { rps: median(ok.map((w) => w.rps)), rpsAll: ok.map((w) => w.rps), requests: sum('requests'),
      cpu: sum('cpu'), p99_us: median(ok.map((w) => w.p99_us)), stalled: ok.some((w) => w.stalled) };
    for (const k of ['connect', 'read', 'write', 'status', 'timeout', 'errors']) c[k] = sum(k);
    if (ok.length < runs.get(t).length) { c.errors++; c.failedPasses = runs.get(t).length - ok.length; }
    out.set(t, c);
    if (describe) log(describe(t, c));
  }
  return out;
}

// Non-streamed throughput of `list` (wrk passes), with upstream calls and proxy CPU per request
// and per upstream call; `tag` names the section in the progress lines.
async function throughputOf(list, tag) {
  const runs = await wrkPasses(list, { body: CHAT_BODY, secs: CFG.wrkSecs, passes: CFG.passes, tag });
  const res = {};
  for (const t of list) {
    const w = runs.get(t);
    const calls = (t.rounds ?? 0) + 1;
    res[t.key] = { label: t.label, ...w, calls, ups: w.rps * calls,
      cpuPerReqUs: t.pids.length && w.requests ? w.cpu / w.requests * 1e6 : NaN,
      cpuPerCallUs: t.pids.length && w.requests ? w.cpu / (w.requests * calls) * 1e6 : NaN };
    log(`(${tag}) ${t.label}: ${w.failed ? 'FAILED ' + w.failed : `median ${w.rps.toFixed(0)} req/s, errors ${fmtErr(w)}` +
      (t.pids.length ? `, proxy CPU ${res[t.key].cpuPerReqUs.toFixed(1)} µs/req` : '')}`);
  }
  return res;
}

const throughput = () => throughputOf(
  [T.direct, T.ponder, T.ponder_r1, T.ponder_r6, T.ponder2, T.ponder2_r6, T.nginx, T.portkey], 'b');

// ---- (e) HTTPS upstream ------------------------------------------------------------------------
async function https() {
  const seq = await sequential([T.tls_direct, T.tls_ponder, T.tls_ponder_h1, T.tls_nginx], 'e');
  const tput = await throughputOf([T.tls_direct, T.tls_ponder, T.tls_ponder_h1, T.tls_ponder_r6, T.tls_nginx], 'e');
  return { seq, tput };
}

// ---- (c) streaming relay --------------------------------------------------------------------------
async function streaming() {
  const all = [
    { ...T.direct },
    { ...T.ponder },
    { ...T.ponder_r1 },
    { ...T.nginx, path: T.nginx.streamPath },
  ];
  const res = {};
  const list = [];
  for (const t of all) {
    const p = await request(t, { body: STREAM_BODY, keep: true, timeoutMs: 5000 });
    const doneOk = p.ok && /data: \[DONE\]/.test(p.body);
    if (!p.ok || !doneOk) {
      res[t.key] = { label: t.label, failed: `probe: ${p.err || 'status ' + p.status}${p.ok && !doneOk ? ', no [DONE]' : ''}` };
      log(`(c) ${t.label}: ${res[t.key].failed}`);
      continue;
    }
    t.events = countEvents(p.body);
    list.push(t);
  }
  const runs = await wrkPasses(list, { body: STREAM_BODY, secs: CFG.streamSecs, passes: CFG.passes, tag: 'c' });
  for (const t of list) {
    const w = runs.get(t), events = t.events;
    res[t.key] = { label: t.label, events, ...w, chunksPerSec: w.rps * events,
      cpuPerMChunks: t.pids.length && w.requests ? w.cpu / (w.requests * events) * 1e6 : NaN };
    log(`(c) ${t.label}: ${w.failed ? 'FAILED ' + w.failed : `${w.rps.toFixed(0)} streams/s x ${events} events = ` +
      `${res[t.key].chunksPerSec.toFixed(0)} chunks/s, errors ${fmtErr(w)}` +
      (t.pids.length ? `, ${res[t.key].cpuPerMChunks.toFixed(2)} CPU s per 1M chunks` : '')}`);
  }
  // keep the table order
  return Object.fromEntries(all.map((t) => [t.key, res[t.key]]));
}

// ---- (f) Responses against chat completions ------------------------------------------------------
// The same question as a chat request and as a Responses request on the same route, non-streamed
// and streamed, rounds 0 (chat: the byte relay; Responses: one translated call through the engine)
// and forced rounds 1: proxy CPU per request, interleaved passes as in (b).
async function responsesApi() {
  const list = [];
  for (const stream of [false, true]) {
    for (const [c, r] of [[T.ponder, T.resp], [T.ponder_r1, T.resp_r1]]) {
      const tag = stream ? ', stream' : '';
      list.push({ ...c, key: `${c.key}${stream ? '_s' : ''}`, label: `${c.label}, chat${tag}`, api: 'chat', stream,
        body: stream ? STREAM_BODY : CHAT_BODY });
      list.push({ ...r, key: `${r.key}${stream ? '_s' : ''}`, label: `${r.label}${tag}`, api: 'responses', stream,
        body: stream ? RESP_STREAM_BODY : RESP_BODY, chat: `${c.key}${stream ? '_s' : ''}` });
    }
  }
  const res = {};
  const ok = [];
  for (const t of list) {
    const p = await request(t, { body: t.body, keep: true, timeoutMs: 5000 });
    const done = !t.stream || (t.api === 'chat' ? /data: \[DONE\]/.test(p.body) : /event: response\.completed/.test(p.body));
    if (!p.ok || !done) {
      res[t.key] = { label: t.label, failed: `probe: ${p.err || 'status ' + p.status}${p.ok && !done ? ', incomplete stream' : ''}` };
      log(`(f) ${t.label}: ${res[t.key].failed}`);
      continue;
    }
    ok.push(t);
  }
  const runs = await wrkPasses(ok, { secs: CFG.streamSecs, passes: CFG.passes, tag: 'f' });
  for (const t of ok) {
    const w = runs.get(t);
    res[t.key] = { label: t.label, api: t.api, chat: t.chat, rounds: t.rounds, stream: t.stream, ...w,
      cpuPerReqUs: w.requests ? w.cpu / w.requests * 1e6 : NaN };
    log(`(f) ${t.label}: ${w.failed ? 'FAILED ' + w.failed : `median ${w.rps.toFixed(0)} req/s, errors ${fmtErr(w)}, ` +
      `proxy CPU ${res[t.key].cpuPerReqUs.toFixed(1)} µs/req`}`);
  }
  return Object.fromEntries(list.map((t) => [t.key, res[t.key]]));
}

// ---- (d) memory with many slow streams ------------------------------------------------------------
async function slowConfig(body) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: env.slow.port, path: '/_slow/config', method: 'POST',
      agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
    (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', () => resolve(0));
    req.end(data);
  });
}

// Opens n streams through t (fresh connections, ~2,000 per second), each 1 s per event and
// `tokens` content events long; samples t's memory until every stream ended or a deadline.
// base: t's idle VmRSS (KiB) before any of these runs.
async function holdStreams(t, n, tokens, base) {
  if (!alive(env.slow.pid)) return { label: t.label, n, skipped: 'the slow upstream had exited' };
  await slowConfig({ delay_ms: 1000, tokens });
  const pid = t.pid;
  const st = { started: 0, established: 0, inflight: 0, peakInflight: 0, completed: 0, errors: 0, kinds: {} };
  let closing = false;
  const reqs = [];
  const bad = (k) => { st.errors++; st.kinds[k] = (st.kinds[k] || 0) + 1; };
  const open = () => {
    st.started++;
    let established = false, finished = false, tail = '';
    const end = (err) => {
      if (finished || closing) return; finished = true;
      if (established) st.inflight--;
      if (err) bad(err); else st.completed++;
    };
    const req = http.request({ host: '127.0.0.1', port: t.port, path: t.path, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(STREAM_BODY),
        ...AUTH, ...(t.headers || {}) } }, (res) => {
      if (res.statusCode !== 200) { res.resume(); end(`status ${res.statusCode}`); return; }
      res.on('data', (c) => {
        if (!established) {
          established = true; st.established++; st.inflight++;
          if (st.inflight > st.peakInflight) st.peakInflight = st.inflight;
        }
        tail = (tail + c.toString()).slice(-64);
      });
      res.on('end', () => end(/data: \[DONE\]/.test(tail) ? null : 'stream ended without [DONE]'));
      res.on('error', (e) => end(e.code || 'response error'));
    });
    req.on('error', (e) => end(e.code || e.message));
    req.end(STREAM_BODY);
    reqs.push(req);
    return () => finished;
  };
  const finishedFns = [];
  let peak = { rss: 0, hwm: 0 }, peakFds = 0;
  const sampler = setInterval(() => {
    const m = memOf(pid); if (m) { peak.rss = Math.max(peak.rss, m.rss); peak.hwm = Math.max(peak.hwm, m.hwm); }
    const f = fdCount(pid); if (f) peakFds = Math.max(peakFds, f);
  }, 100);
  const tStart = Date.now();
  const batch = 100;
  for (let i = 0; i < n; i += batch) {
    for (let j = i; j < Math.min(n, i + batch); j++) finishedFns.push(open());
    await sleep(50);
  }
  const rampMs = Date.now() - tStart;
  const deadline = Date.now() + (tokens + 45) * 1000;
  let lastLog = 0;
  while (Date.now() < deadline && finishedFns.some((f) => !f())) {
    await sleep(200);
    if (Date.now() - lastLog > 5000) {
      lastLog = Date.now();
      log(`(d) ${t.label} ${n}: in flight ${st.inflight}, peak ${st.peakInflight}, completed ${st.completed}, errors ${st.errors}`);
    }
  }
  clearInterval(sampler);
  const unfinished = finishedFns.filter((f) => !f()).length;
  if (unfinished) { st.errors += unfinished; st.kinds['unfinished at deadline'] = unfinished; }
  closing = true;
  for (const r of reqs) r.destroy();
  const m = memOf(pid);
  if (m) peak.hwm = Math.max(peak.hwm, m.hwm);
  const res = { label: t.label, n, tokens, rampMs, ...st, kinds: { ...st.kinds }, baseRssKiB: base, peakRssKiB: peak.rss, hwmKiB: peak.hwm,
    peakFds, alive: alive(pid), totalMs: Date.now() - tStart };
  res.kibPerStream = res.peakInflight ? (res.hwmKiB - res.baseRssKiB) / res.peakInflight : NaN;
  log(`(d) ${t.label} ${n}: peak in flight ${res.peakInflight}, VmHWM ${(res.hwmKiB / 1024).toFixed(1)} MiB ` +
    `(idle ${(res.baseRssKiB / 1024).toFixed(1)} MiB), ${res.kibPerStream.toFixed(1)} KiB/stream, errors ${res.errors}` +
    (res.errors ? ` ${JSON.stringify(res.kinds)}` : '') + (res.alive ? '' : ' -- PROCESS DIED'));
  await sleep(1500);  // let sockets close
  return res;
}

async function memory() {
  const res = { direct: [], ponder: [], portkey: [] };
  const pt = { label: 'ponder', port: env.ponderMem.port, path: '/r0/v1/chat/completions', pid: env.ponderMem.pid };
  const kt = { label: 'Portkey', port: env.portkeyMem.port, path: '/v1/chat/completions', pid: env.portkeyMem.pid,
    headers: portkeyHeaders(env.slow.port) };
  const dt = { label: 'direct (no proxy)', port: env.slow.port, path: '/v1/chat/completions', pid: env.slow.pid };
  const pBase = memOf(pt.pid)?.rss, kBase = memOf(kt.pid)?.rss, dBase = memOf(dt.pid)?.rss;
  // control: the same streams straight to the upstream, so harness limits show up as such
  for (const n of CFG.memLevels) res.direct.push(await holdStreams(dt, n, CFG.memTokens + (n >= 10000 ? 5 : 0), dBase));
  checkAlive('the direct memory runs');
  for (const n of CFG.memLevels) {
    if (!alive(pt.pid)) { res.ponder.push({ n, skipped: 'process died' }); continue; }
    res.ponder.push(await holdStreams(pt, n, CFG.memTokens + (n >= 10000 ? 5 : 0), pBase));
    checkAlive(`the ponder memory run with ${n} streams`);
  }
  for (const n of CFG.memLevels) {
    const prev = res.portkey[res.portkey.length - 1];
    if (!alive(kt.pid)) { res.portkey.push({ n, skipped: 'process died' }); continue; }
    if (prev && prev.errors > prev.n * 0.01) { res.portkey.push({ n, skipped: `${prev.errors} errors at ${prev.n}` }); continue; }
    res.portkey.push(await holdStreams(kt, n, CFG.memTokens + (n >= 10000 ? 5 : 0), kBase));
    checkAlive(`the Portkey memory run with ${n} streams`);
  }
  return res;
}

// ---- report ---------------------------------------------------------------------------------------
const f = (x, d = 0) => (x == null || !Number.isFinite(x)) ? 'n/a' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const ratio = (x, best) => {
  if (!Number.isFinite(x) || !Number.isFinite(best) || best <= 0) return '';
  const r = x / best, a = Math.abs(r);
  return ` (×${a >= 10 ? r.toFixed(0) : a >= 0.1 || a === 0 ? r.toFixed(2) : r.toPrecision(2)})`;
};
const bestOf = (vals, lower) => { const v = vals.filter(Number.isFinite); return v.length ? (lower ? Math.min(...v) : Math.max(...v)) : NaN; };

function report({ seq, tput, strm, mem, tls, rapi, probes, started, secs }) {
  const L = [];
  const stamp = started.toISOString().replace('T', ' ').slice(0, 19);
  L.push(`# ponder benchmark — ${stamp} UTC${QUICK ? ' (--quick)' : ''}`, '');
  L.push(`ponder ${env.ponder_version.replace(/^ponder\s*/, '')} (commit ${env.commit}, release build), ${env.nginx_version}, ` +
    `Portkey gateway 1.15.2 on Node ${env.node_version}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), ` +
    `loopback only; open-files limit ${env.nofile}; load average ${started.load} at the start, ` +
    `${os.loadavg()[0].toFixed(2)} at the end. Upstream: tests/fake/upstream.mjs --fast ` +
    `(memory runs: bench/slow-upstream.mjs, 1 s between stream events). Run took ${secs.toFixed(0)} s.`, '');
  L.push('Ratios in parentheses are to the best peer (nginx or Portkey) in this run.', '');

  // sanity
  L.push('## Sanity probes', '', '| target | status | x-ponder-rounds | keep-alive reuse |', '|---|---|---|---|');
  for (const [k, p] of Object.entries(probes)) L.push(`| ${T[k].label} | ${p.status} | ${p.rounds ?? '—'} | ${p.keepalive} |`);
  L.push('');

  // (a)
  const peerOv = bestOf([seq.nginx.overhead, seq.portkey.overhead], true);
  const peerP50 = bestOf([seq.nginx.p50, seq.portkey.p50], true);
  const peerP99 = bestOf([seq.nginx.p99, seq.portkey.p99], true);
  L.push(`## (a) Sequential latency: one keep-alive connection, one request at a time (wrk -t1 -c1), ${CFG.seqRounds} interleaved rounds × ${CFG.seqSecs} s per target`, '',
    '| target | p50 (median of round p50s) | overhead vs direct (median of per-round p50 differences) | p99 (median of round p99s) | requests ok | errors |', '|---|---|---|---|---|---|');
  for (const k of ['direct', 'ponder', 'nginx', 'portkey']) {
    const s = seq[k];
    const d = k === 'direct';
    L.push(`| ${s.label} | ${f(s.p50, 3)} ms${d ? '' : ratio(s.p50, peerP50)} | ${d ? '—' : f(s.overhead * 1000, 0) + ' µs' + ratio(s.overhead, peerOv)} | ` +
      `${f(s.p99, 3)} ms${d ? '' : ratio(s.p99, peerP99)} | ${f(s.n)} | ${s.failed ? s.failed : s.errors} |`);
  }
  L.push('', 'wrk reports latency in whole µs; its own cost per request is a few µs, so small overheads are visible.', '');

  // (b)
  const peerRps = bestOf([tput.nginx.rps, tput.portkey.rps]);
  const peerCpu = bestOf([tput.nginx.cpuPerReqUs, tput.portkey.cpuPerReqUs], true);
  L.push(`## (b) Throughput, wrk ${CFG.conns} connections, ${CFG.passes} interleaved pass(es) × ${CFG.wrkSecs} s, non-streamed`, '',
    '| target | requests/s | upstream calls/s | proxy CPU per request | proxy CPU per upstream call | p99 | errors |', '|---|---|---|---|---|---|---|');
  for (const [k, w] of Object.entries(tput)) {
    if (w.failed) { L.push(`| ${w.label} | FAILED: ${w.failed} | | | | | |`); continue; }
    L.push(`| ${w.label} | ${f(w.rps)}${k === 'direct' ? '' : ratio(w.rps, peerRps)} | ${f(w.ups)} | ` +
      `${k === 'direct' ? '—' : f(w.cpuPerReqUs, 1) + ' µs' + ratio(w.cpuPerReqUs, peerCpu)} | ` +
      `${k === 'direct' ? '—' : f(w.cpuPerCallUs, 1) + ' µs' + ratio(w.cpuPerCallUs, peerCpu)} | ${f(w.p99_us / 1000, 2)} ms | ${fmtErr(w)} |`);
  }
  L.push('', 'Requests/s: the median pass. Upstream calls per request = rounds + 1. Proxy CPU = utime+stime of the proxy ' +
    'process (and its children) over all passes, divided by all requests.', '');

  // (c)
  const sp = strm.nginx || {};
  L.push(`## (c) Streaming relay, wrk ${CFG.conns} connections, ${CFG.passes} interleaved pass(es) × ${CFG.streamSecs} s, stream: true`, '',
    '| target | events per stream | streams/s | SSE chunks/s | proxy CPU s per 1M chunks | errors |', '|---|---|---|---|---|---|');
  for (const [k, s] of Object.entries(strm)) {
    if (s.failed) { L.push(`| ${s.label} | FAILED: ${s.failed} | | | | |`); continue; }
    L.push(`| ${s.label} | ${s.events} | ${f(s.rps)} | ${f(s.chunksPerSec)}${k === 'direct' ? '' : ratio(s.chunksPerSec, sp.chunksPerSec)} | ` +
      `${k === 'direct' ? '—' : f(s.cpuPerMChunks, 2) + ratio(s.cpuPerMChunks, sp.cpuPerMChunks)} | ${fmtErr(s)} |`);
  }
  L.push('', 'The forced stream (rounds 1) relays two upstream streams per client stream, so its events per stream differ.', '');

  // (d)
  const pkByN = new Map(mem.portkey.map((r) => [r.n, r]));
  L.push('## (d) Memory: concurrent slow streams (ponder rounds 0 pass-through, `http2: true` to the upstream; bench/slow-upstream.mjs, 1 s between events)', '',
    '| target | streams | peak in flight | idle RSS | peak RSS (VmHWM) | RSS per in-flight stream | peak fds | errors |', '|---|---|---|---|---|---|---|---|');
  for (const r of mem.direct) {
    if (r.skipped) { L.push(`| direct (no proxy, control) | ${f(r.n)} | skipped: ${r.skipped} | | | | | |`); continue; }
    L.push(`| direct (no proxy, control) | ${f(r.n)} | ${f(r.peakInflight)} | — | — | — | — | ` +
      `${r.errors}${r.errors ? ' ' + JSON.stringify(r.kinds) : ''} |`);
  }
  for (const r of [...mem.ponder, ...mem.portkey]) {
    const label = mem.ponder.includes(r) ? 'ponder' : 'Portkey';
    if (r.skipped) { L.push(`| ${label} | ${f(r.n)} | skipped: ${r.skipped} | | | | | |`); continue; }
    const pk = label === 'ponder' ? pkByN.get(r.n) : r;
    L.push(`| ${label} | ${f(r.n)} | ${f(r.peakInflight)} | ${f(r.baseRssKiB / 1024, 1)} MiB | ` +
      `${f(r.hwmKiB / 1024, 1)} MiB${ratio(r.hwmKiB, pk?.hwmKiB)} | ${f(r.kibPerStream, 1)} KiB${ratio(r.kibPerStream, pk?.kibPerStream)} | ` +
      `${f(r.peakFds)} | ${r.errors}${r.errors ? ' ' + JSON.stringify(r.kinds) : ''}${r.alive ? '' : ' — process died'} |`);
  }
  L.push('', `RSS per stream = (VmHWM − idle VmRSS before the first run) / peak in-flight streams. Levels run one after ` +
    `the other in the same process. The open-files limit here is ${env.nofile}: a proxy speaking HTTP/1.1 to its upstream ` +
    `holds two sockets per stream, so ponder's memory run uses its h2c upstream client (\`http2: true\`; the slow upstream ` +
    `allows 1,000 streams per connection) and holds one socket per stream plus a few upstream connections. ` +
    `Portkey and the control speak HTTP/1.1 to the upstream.`, '');

  // (e)
  const es = tls.seq, et = tls.tput;
  L.push(`## (e) HTTPS upstream: nginx \`return\` over TLS 1.3 (h2 + http/1.1 by ALPN, a test CA), reached directly, through ponder (\`tls.ca_file\`) and through nginx (\`proxy_pass https://\`, keep-alive pool, \`proxy_ssl_verify on\`)`, '',
    `Sequential: wrk -t1 -c1, ${CFG.seqRounds} interleaved rounds × ${CFG.seqSecs} s; throughput: wrk ${CFG.conns} connections, ${CFG.passes} interleaved pass(es) × ${CFG.wrkSecs} s, non-streamed.`, '',
    '| target | p50 | added latency vs direct | requests/s | upstream calls/s | proxy CPU per request | proxy CPU per upstream call | errors |',
    '|---|---|---|---|---|---|---|---|');
  for (const k of ['tls_direct', 'tls_ponder', 'tls_ponder_h1', 'tls_ponder_r6', 'tls_nginx']) {
    const s = es[k], w = et[k], d = k === 'tls_direct', pn = k === 'tls_nginx';
    const seqCell = s ? `${f(s.p50, 3)} ms${d || pn ? '' : ratio(s.p50, es.tls_nginx.p50)} | ` +
      `${d ? '—' : f(s.overhead * 1000, 0) + ' µs' + (pn ? '' : ratio(s.overhead, es.tls_nginx.overhead))}` : '— | —';
    if (w.failed) { L.push(`| ${w.label} | ${seqCell} | FAILED: ${w.failed} | | | | |`); continue; }
    L.push(`| ${w.label} | ${seqCell} | ${f(w.rps)}${d || pn ? '' : ratio(w.rps, et.tls_nginx.rps)} | ${f(w.ups)} | ` +
      `${d ? '—' : f(w.cpuPerReqUs, 1) + ' µs'} | ${d ? '—' : f(w.cpuPerCallUs, 1) + ' µs'} | ${fmtErr(w)}${s && s.errors ? `, sequential: ${s.failed || s.errors}` : ''} |`);
  }
  L.push('', 'Ratios in this table are to nginx → HTTPS. ponder reaches the TLS upstream with its native clients: HTTP/2 by ALPN (as nginx offers it) by default, HTTP/1.1 with `http2: false`; nginx proxies over HTTP/1.1 keep-alive connections.', '');

  // (f)
  L.push(`## (f) Responses API against chat completions: the same question on the same route, wrk ${CFG.conns} connections, ${CFG.passes} interleaved pass(es) × ${CFG.streamSecs} s`, '',
    '| target | requests/s | proxy CPU per request | vs chat on the same route | errors |', '|---|---|---|---|---|');
  for (const w of Object.values(rapi)) {
    if (w.failed) { L.push(`| ${w.label} | FAILED: ${w.failed} | | | |`); continue; }
    const c = w.chat ? rapi[w.chat] : null;
    L.push(`| ${w.label} | ${f(w.rps)} | ${f(w.cpuPerReqUs, 1)} µs | ${c && !c.failed ? ratio(w.cpuPerReqUs, c.cpuPerReqUs).trim() : '—'} | ${fmtErr(w)} |`);
  }
  L.push('', 'At rounds 0 chat completions are relayed byte for byte while a Responses request is translated and runs as one ' +
    'plain engine call (its reply read and written as a Responses object or event stream).', '');

  // targets
  const tg = [];
  const add = (name, measured, pass, note = '') => tg.push({ name, measured, pass, note });
  const pOv = seq.ponder.overhead, nOv = seq.nginx.overhead, kOv = seq.portkey.overhead;
  const seqOk = !seq.ponder.broken;
  add('sequential overhead ≤ 1.5× nginx', `${f(pOv * 1000)} µs vs nginx ${f(nOv * 1000)} µs${ratio(pOv, nOv)}`,
    seqOk && pOv <= 1.5 * Math.max(nOv, 0), seqOk ? '' : 'ponder had errors');
  add('sequential overhead ≤ 1/10 Portkey', `${f(pOv * 1000)} µs vs Portkey ${f(kOv * 1000)} µs${ratio(pOv, kOv)}`, seqOk && pOv <= kOv / 10,
    seqOk ? '' : 'ponder had errors');
  const tp = tput.ponder, tOk = !tp.failed && tp.errors === 0;
  add('pass-through throughput ≥ 0.8× nginx', `${f(tp.rps)} vs ${f(tput.nginx.rps)} req/s${ratio(tp.rps, tput.nginx.rps)}`,
    tOk && tp.rps >= 0.8 * tput.nginx.rps, tOk ? '' : `ponder had errors: ${fmtErr(tp)}`);
  add('pass-through throughput ≥ 10× Portkey', `${f(tp.rps)} vs ${f(tput.portkey.rps)} req/s${ratio(tp.rps, tput.portkey.rps)}`,
    tOk && tp.rps >= 10 * tput.portkey.rps, tOk ? '' : `ponder had errors: ${fmtErr(tp)}`);
  for (const k of ['ponder_r1', 'ponder_r6']) {
    const w = tput[k], ok = tOk && !w.failed && w.errors === 0;
    add(`forced (rounds ${T[k].rounds}) CPU per upstream call ≤ 1.5× pass-through`,
      `${f(w.cpuPerCallUs, 1)} vs ${f(tp.cpuPerCallUs, 1)} µs${ratio(w.cpuPerCallUs, tp.cpuPerCallUs)}`,
      ok && w.cpuPerCallUs <= 1.5 * tp.cpuPerCallUs, ok ? '' : `errors: ${fmtErr(w)}`);
  }
  for (const r of mem.ponder) {
    if (r.skipped) { add(`≤ 32 KiB RSS per idle in-flight stream (${f(r.n)})`, 'not measured', false, r.skipped); continue; }
    add(`≤ 32 KiB RSS per idle in-flight stream (${f(r.n)})`, `${f(r.kibPerStream, 1)} KiB`, r.kibPerStream <= 32 && r.errors === 0,
      [r.kibPerStream > 32 ? 'over 32 KiB' : '', r.errors ? `${r.errors} errors` : ''].filter(Boolean).join('; '));
  }
  const r10 = mem.ponder.find((r) => r.n === 10000);
  if (r10 && !r10.skipped) {
    add('10,000 concurrent streams, no error', `${r10.errors} errors, peak ${f(r10.peakInflight)} in flight`,
      r10.errors === 0 && r10.alive, r10.errors ? JSON.stringify(r10.kinds) +
      (env.nofile < 2 * 10000 + 100 ? `; the open-files limit ${env.nofile} is below the ~20,050 a proxy needs` : '') : '');
  } else add('10,000 concurrent streams, no error', QUICK ? 'not run (--quick)' : 'not measured', null);
  {
    const tp = et.tls_ponder, tn = et.tls_nginx, t6 = et.tls_ponder_r6;
    const ok = !tp.failed && tp.errors === 0 && !tn.failed;
    add('HTTPS pass-through throughput ≥ 0.8× nginx proxy_pass https://', `${f(tp.rps)} vs ${f(tn.rps)} req/s${ratio(tp.rps, tn.rps)}`,
      ok && tp.rps >= 0.8 * tn.rps, ok ? '' : `errors: ${fmtErr(tp)}`);
    const no = es.tls_nginx.overhead;
    for (const [k, how] of [['tls_ponder', 'HTTP/2 by ALPN'], ['tls_ponder_h1', 'HTTP/1.1, as nginx']]) {
      const so = es[k].overhead, sOk = !es[k].broken;
      add(`HTTPS sequential added latency ≤ 1.5× nginx's (${how})`, `${f(so * 1000)} µs vs nginx ${f(no * 1000)} µs${ratio(so, no)}`,
        sOk && so <= 1.5 * Math.max(no, 0), sOk ? '' : 'ponder had errors');
    }
    const ok6 = ok && !t6.failed && t6.errors === 0;
    add('HTTPS forced rounds 6 CPU per upstream call ≤ 1.2× HTTPS pass-through\'s',
      `${f(t6.cpuPerCallUs, 1)} vs ${f(tp.cpuPerCallUs, 1)} µs${ratio(t6.cpuPerCallUs, tp.cpuPerCallUs)}`,
      ok6 && t6.cpuPerCallUs <= 1.2 * tp.cpuPerCallUs, ok6 ? '' : `errors: ${fmtErr(t6)}`);
  }
  for (const w of Object.values(rapi)) {
    if (!w.chat) continue;
    const c = rapi[w.chat];
    const good = !w.failed && !c?.failed && w.errors === 0 && c.errors === 0;
    add(`Responses CPU per request ≤ 1.2× chat's (rounds ${w.rounds}${w.stream ? ', stream' : ''})`,
      good ? `${f(w.cpuPerReqUs, 1)} vs ${f(c.cpuPerReqUs, 1)} µs${ratio(w.cpuPerReqUs, c.cpuPerReqUs)}` : 'not measured',
      good && w.cpuPerReqUs <= 1.2 * c.cpuPerReqUs, good ? '' : `errors: ${w.failed || fmtErr(w)} / ${c?.failed || fmtErr(c)}`);
  }
  L.push('## Targets', '', '| target | measured | result |', '|---|---|---|');
  for (const t of tg) L.push(`| ${t.name} | ${t.measured} | ${t.pass == null ? 'SKIPPED' : t.pass ? 'PASS' : 'FAIL'}${t.note ? ' — ' + t.note : ''} |`);
  L.push('');
  if (problems.length) L.push('## Problems seen', '', ...problems.map((p) => `- ${p}`), '');
  return { md: L.join('\n'), targets: tg };
}

// ---- chart ------------------------------------------------------------------------------------------
function chart({ seq, tput, strm, mem }, png) {
  const dir = env.tmp;
  const q = (s) => `"${s.replace(/"/g, "'")}"`;
  const v = (x) => (Number.isFinite(x) ? x : 0);
  const write = (name, rows) => fs.writeFileSync(path.join(dir, name), rows.map(([l, x]) => `${q(l)} ${v(x)}`).join('\n') + '\n');
  write('seq.dat', ['ponder', 'nginx', 'portkey'].map((k) => [seq[k].label, Math.max(1, seq[k].overhead * 1000)]));
  write('tput.dat', Object.values(tput).map((w) => [w.label, w.rps]));
  write('strm.dat', Object.values(strm).map((s) => [s.label, s.chunksPerSec]));
  write('mem.dat', [...mem.ponder.map((r) => [`ponder ${r.n}`, r.kibPerStream]), ...mem.portkey.map((r) => [`Portkey ${r.n}`, r.kibPerStream])]);
  const gp = `
set terminal pngcairo size 1400,1000 font "sans,10"
set output ${q(png)}
set multiplot layout 2,2 title "ponder benchmark${QUICK ? ' (quick)' : ''}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid ytics
unset key
set xtics rotate by -30 noenhanced
set yrange [0:*]
set title "(a) sequential overhead vs direct, µs, log scale (lower is better)"
set logscale y
set yrange [1:*]
plot ${q(path.join(dir, 'seq.dat'))} using 2:xtic(1) lc rgb "#4e79a7"
unset logscale y
set yrange [0:*]
set title "(b) throughput, requests/s (higher is better)"
plot ${q(path.join(dir, 'tput.dat'))} using 2:xtic(1) lc rgb "#59a14f"
set title "(c) streaming relay, SSE chunks/s (higher is better)"
plot ${q(path.join(dir, 'strm.dat'))} using 2:xtic(1) lc rgb "#f28e2b"
set title "(d) RSS per in-flight stream, KiB (lower is better)"
plot ${q(path.join(dir, 'mem.dat'))} using 2:xtic(1) lc rgb "#e15759"
unset multiplot
`;
  fs.writeFileSync(path.join(dir, 'chart.gp'), gp);
  try { execFileSync('gnuplot', [path.join(dir, 'chart.gp')], { stdio: ['ignore', 'ignore', 'pipe'] }); return true; }
  catch (e) { log(`gnuplot failed: ${e.stderr?.toString().trim().slice(0, 300)}`); return false; }
}

// ---- main -------------------------------------------------------------------------------------------
async function main() {
  const started = new Date();
  started.load = os.loadavg()[0].toFixed(2);
  log(`mode: ${QUICK ? 'quick' : 'full'}`);
  const probes = {};
  for (const k of ['direct', 'ponder', 'ponder_r1', 'ponder_r6', 'ponder2', 'nginx', 'portkey', 'tls_ponder', 'tls_ponder_h1', 'tls_ponder_r6', 'tls_nginx', 'resp', 'resp_r1']) {
    probes[k] = await probe(T[k]);
    log(`probe ${T[k].label}: status ${probes[k].status}, keep-alive ${probes[k].keepalive}`);
    if (probes[k].keepalive !== 'ok') problems.push(`${T[k].label}: ${probes[k].keepalive}.`);
  }
  log('(a) sequential overhead');
  const seq = await sequential();
  checkAlive('the sequential run');
  log('(b) throughput');
  const tput = await throughput();
  checkAlive('the throughput runs');
  log('(c) streaming relay');
  const strm = await streaming();
  checkAlive('the streaming runs');
  log('(e) HTTPS upstream');
  const tls = await https();
  checkAlive('the HTTPS runs');
  log('(f) Responses against chat completions');
  const rapi = await responsesApi();
  checkAlive('the Responses runs');
  log('(d) memory and concurrency');
  const mem = await memory();
  checkAlive('the memory runs');
  for (const [name, p] of [['ponder', env.ponder1], ['ponder workers 2', env.ponder2], ['ponder (memory run)', env.ponderMem], ['ponder (HTTPS)', env.ponderTls]]) {
    const errs = path.join(env.tmp, { ponder: 'ponder-w1.err', 'ponder workers 2': 'ponder-w2.err', 'ponder (memory run)': 'ponder-mem.err',
      'ponder (HTTPS)': 'ponder-tls.err' }[name]);
    try {
      const lines = fs.readFileSync(errs, 'utf8').split('\n').filter((l) => l && !/listening on/.test(l));
      if (lines.length) problems.push(`${name} logged ${lines.length} line(s) at warn or above, e.g. \`${lines[0].slice(0, 200)}\``);
    } catch {}
  }
  const secs = (Date.now() - started) / 1000;
  const { md, targets } = report({ seq, tput, strm, mem, tls, rapi, probes, started, secs });
  const ts = started.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  fs.mkdirSync(env.results, { recursive: true });
  const out = path.join(env.results, `bench-${ts}.md`);
  fs.writeFileSync(out, md + '\n');
  fs.writeFileSync(path.join(env.results, 'latest.md'), md + '\n');
  const png = path.join(env.results, 'latest.png');
  const charted = chart({ seq, tput, strm, mem }, png);
  process.stdout.write('\n' + md + '\n');
  log(`wrote ${path.relative(process.cwd(), out)}, bench/results/latest.md${charted ? ', bench/results/latest.png' : ''}`);
  const fails = targets.filter((t) => t.pass === false).length;
  log(`targets: ${targets.filter((t) => t.pass).length} pass, ${fails} fail`);
}
main().catch((e) => { log(`fatal: ${e.stack || e}`); process.exit(1); });
