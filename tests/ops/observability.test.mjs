// The observability kit (config/observability/) against a real Prometheus: Debian's prometheus
// server scrapes a ponder serving an A/B route and a plain route through the fake upstream
// (with feedback and upstream errors), loads the recording and alert rules, and answers every
// expression of the Grafana dashboard (template variables substituted). A syntax error, a
// rule that fails to evaluate, or an expression that returns no series with a number fails.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startFake, startPonder, configFor, chat, closedPort, sleep, repoRoot,
} from '../lib/harness.mjs';

const obsDir = join(repoRoot, 'config', 'observability');
const RULE_FILES = ['ponder-recording.rules.yml', 'ponder-alerts.rules.yml'].map((f) => join(obsDir, f));
const dashboard = JSON.parse(readFileSync(join(obsDir, 'grafana-dashboard.json'), 'utf8'));

function have(cmd) {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; }
}
const missing = ['prometheus', 'promtool'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (Debian packages prometheus)` : false;

// What Grafana would send with these selections: a multi-value variable becomes a regex
// alternation, $__rate_interval and $__range durations.
const VARS = {
  job: 'ponder', route: '(ab|plain)', variant: '(control|deep|default)', upstream: 'fake',
  __rate_interval: '1m', __interval: '15s', __range: '5m',
};
function substitute(expr) {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (m, a, b) => {
    const name = a || b;
    if (!(name in VARS)) throw new Error(`unknown template variable ${m} in ${expr}`);
    return VARS[name];
  });
}

function panelsOf(d) {
  const out = [];
  for (const p of d.panels || []) {
    out.push(p);
    if (p.panels) out.push(...p.panels);
  }
  return out;
}

// Resolves once the process's output matches `re`.
function waitOutput(proc, re, what, timeoutMs = 60000) {
  let out = '';
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`${what} did not start:\n${out}`)), timeoutMs);
    const on = (d) => { out += d; if (re.test(out)) { clearTimeout(t); res(); } };
    proc.stdout.on('data', on);
    proc.stderr.on('data', on);
    proc.on('exit', (code) => { clearTimeout(t); rej(new Error(`${what} exited (${code}):\n${out}`)); });
  });
}

describe('observability kit against Prometheus', { skip }, () => {
  let fake, p, prom, promUrl, dir, promLog = '';
  const feedbackSent = { ab: 0 };

  async function query(expr) {
    const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return r.json();
  }
  async function scalar(expr) {
    const j = await query(expr);
    return j.status === 'success' && j.data.result.length ? Number(j.data.result[0].value[1]) : NaN;
  }
  // Waits until Prometheus has scraped a value of `expr` of at least `want`.
  async function scraped(expr, want) {
    const end = Date.now() + 30000;
    for (;;) {
      const v = await scalar(expr);
      if (v >= want) return;
      if (Date.now() > end) assert.fail(`Prometheus never saw ${expr} >= ${want} (last: ${v})\n${promLog}`);
      await sleep(200);
    }
  }

  // One round of traffic: both variants of the A/B route, the plain route, upstream errors,
  // feedback for the successful A/B requests.
  async function traffic(round) {
    const ids = [];
    for (let i = 0; i < 6; i++) {
      for (const variant of ['control', 'deep']) {
        const r = await chat(p.base, { model: 'ab-model', messages: [{ role: 'user', content: `q ${round} ${i}` }] },
          { 'x-ponder-variant': variant, 'x-user-id': `user-${i}` });
        assert.equal(r.status, 200, r.text);
        ids.push({ id: r.headers.get('x-request-id'), variant });
      }
    }
    for (let i = 0; i < 3; i++) {
      const r = await chat(`${p.url}/plain/v1`, { model: 'm', messages: [{ role: 'user', content: 'plain' }] });
      assert.equal(r.status, 200, r.text);
    }
    // Upstream failures, on both variants and the plain route: the provider's 500 and 429.
    for (const [variant, status] of [['control', 500], ['deep', 500], ['deep', 429]]) {
      fake.script({ status });
      const r = await chat(p.base, { model: 'ab-model', messages: [{ role: 'user', content: 'fail' }] },
        { 'x-ponder-variant': variant });
      assert.equal(r.status, status, r.text);
    }
    fake.script({ status: 503 });
    assert.equal((await chat(`${p.url}/plain/v1`, { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 503);
    for (const { id, variant } of ids) {
      const r = await fetch(`${p.url}/v1/ponder/feedback`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ request_id: id, score: variant === 'deep' ? 1 : 0.5 }),
      });
      assert.equal(r.status, 200, await r.text());
      feedbackSent.ab++;
    }
  }

  before(async () => {
    fake = await startFake();
    p = await startPonder({
      args: ['--workers', '2'],
      config: configFor(fake, {
        routes: [
          { name: 'ab', match: { models: ['ab-model'] }, sticky: 'header:x-user-id', allow_overrides: true,
            variants: [
              { name: 'control', weight: 1, forcing: { rounds: 0 } },
              { name: 'deep', weight: 1, forcing: { mode: 'chat', rounds: 2, think_budget: 20, answer_budget: 20 } },
            ] },
          { name: 'plain', match: { path_prefix: '/plain' }, forcing: { rounds: 1, think_budget: 20 } },
        ],
      }),
    });
    dir = mkdtempSync(join(tmpdir(), 'ponder-prom-'));
    const port = await closedPort();
    promUrl = `http://127.0.0.1:${port}`;
    const cfg = [
      'global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}',
      `rule_files: [${RULE_FILES.map((f) => JSON.stringify(f)).join(', ')}]`,
      'scrape_configs:',
      '  - job_name: ponder',
      `    static_configs: [{targets: ["127.0.0.1:${p.port}"]}]`,
      '',
    ].join('\n');
    writeFileSync(join(dir, 'prometheus.yml'), cfg);
    prom = spawn('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=info',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prom.stdout.on('data', (d) => { promLog += d; });
    prom.stderr.on('data', (d) => { promLog += d; });
    await waitOutput(prom, /Server is ready to receive web requests/, 'prometheus');
    await scraped('up{job="ponder"}', 1);

    // Two rounds of traffic, each seen by a scrape, so that rates and increases have data.
    await traffic(1);
    await scraped('sum(ponder_feedback_total)', feedbackSent.ab);
    await traffic(2);
    await scraped('sum(ponder_feedback_total)', feedbackSent.ab);
    await sleep(1500); // one more scrape and rule evaluation on top
  });

  after(async () => {
    if (prom && prom.exitCode === null) {
      const gone = new Promise((r) => prom.on('exit', r));
      prom.kill('SIGTERM');
      await gone;
    }
    if (p) assert.equal((await p.stop()).code, 0);
    if (fake) await fake.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('promtool check rules accepts the recording and alert rules', () => {
    const out = execFileSync('promtool', ['check', 'rules', ...RULE_FILES], { encoding: 'utf8' });
    assert.match(out, /SUCCESS: \d+ rules found[\s\S]*SUCCESS: \d+ rules found/);
  });

  test('promtool test rules: the alerts fire when they should and only then', () => {
    execFileSync('promtool', ['test', 'rules', join(repoRoot, 'tests', 'ops', 'alerts.test.yml')],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  });

  test('every rule evaluates without error and every recorded series has data', async () => {
    const r = await (await fetch(`${promUrl}/api/v1/rules`)).json();
    assert.equal(r.status, 'success');
    const rules = r.data.groups.flatMap((g) => g.rules);
    const names = rules.map((x) => x.name || x.record);
    assert.ok(rules.length >= 15, `rules loaded: ${names.join(', ')}`);
    const bad = [];
    const end = Date.now() + 10000;
    for (const rule of rules) {
      for (;;) {
        const ok = rule.health === 'ok' &&
          (rule.type !== 'recording' || (await scalar(`count(${rule.name})`)) > 0);
        if (ok) break;
        if (Date.now() > end) { bad.push(`${rule.name}: health ${rule.health} ${rule.lastError || ''}`); break; }
        await sleep(500);
        const again = await (await fetch(`${promUrl}/api/v1/rules`)).json();
        Object.assign(rule, again.data.groups.flatMap((g) => g.rules).find((x) => x.name === rule.name));
      }
    }
    assert.deepEqual(bad, []);
  });

  test('the dashboard has the panels the A/B experiment is read by', () => {
    const text = JSON.stringify(dashboard);
    for (const metric of ['ponder_requests_total', 'ponder_request_duration_seconds_bucket',
      'ponder_think_rounds_total', 'ponder_tokens_total', 'ponder_feedback_score_sum',
      'ponder_feedback_score_count', 'ponder_upstream_requests_total', 'ponder_inflight_requests']) {
      assert.ok(text.includes(metric), `the dashboard uses ${metric}`);
    }
    const titles = panelsOf(dashboard).map((x) => x.title.toLowerCase()).join('\n');
    for (const want of ['requests', 'errors', 'p50', 'p95', 'rounds', 'tokens per request', 'feedback score',
      'feedback count', 'upstream error', 'in-flight']) {
      assert.ok(titles.includes(want), `a panel for ${want}`);
    }
  });

  test('every template variable query finds label values', async () => {
    const vars = dashboard.templating.list.filter((v) => v.type === 'query');
    assert.ok(vars.length >= 4);
    for (const v of vars) {
      const q = typeof v.query === 'string' ? v.query : v.query.query;
      const m = q.match(/^label_values\((.+),\s*(\w+)\)$/);
      assert.ok(m, `variable ${v.name}: label_values(SELECTOR, LABEL), not ${q}`);
      const sel = substitute(m[1]);
      const r = await (await fetch(`${promUrl}/api/v1/label/${m[2]}/values?match[]=${encodeURIComponent(sel)}`)).json();
      assert.equal(r.status, 'success', `${v.name}: ${JSON.stringify(r)}`);
      assert.ok(r.data.length > 0, `variable ${v.name} (${sel}) has no values`);
    }
  });

  test('every dashboard expression parses and returns series with numbers', async () => {
    const exprs = [];
    for (const panel of panelsOf(dashboard)) {
      for (const t of panel.targets || []) exprs.push({ panel: panel.title, ref: t.refId, expr: substitute(t.expr) });
    }
    assert.ok(exprs.length >= 20, `${exprs.length} expressions`);
    const pending = new Map(exprs.map((e) => [`${e.panel} ${e.ref}`, e]));
    const why = new Map();
    const end = Date.now() + 15000;
    while (pending.size) {
      for (const [key, e] of pending) {
        const j = await query(e.expr);
        assert.equal(j.status, 'success', `${key}: ${e.expr}\n${j.errorType}: ${j.error}`);
        const finite = j.data.result.filter((s) => Number.isFinite(Number(s.value[1])));
        if (finite.length) pending.delete(key);
        else why.set(key, `${j.data.result.length} series, none with a number: ${e.expr}`);
      }
      if (!pending.size || Date.now() > end) break;
      await sleep(1000);
    }
    assert.deepEqual([...pending.keys()].map((k) => `${k}: ${why.get(k)}`), []);
  });

  test('the per-variant figures say what the traffic was', async () => {
    const sel = '{job="ponder", route="ab"}';
    // deep forces 2 rounds, control none; deep scored 1, control 0.5.
    const rounds = await query(`route_variant:ponder_think_rounds_per_request:ratio_rate5m${sel}`);
    const byVariant = Object.fromEntries(rounds.data.result.map((s) => [s.metric.variant, Number(s.value[1])]));
    assert.equal(byVariant.control, 0);
    assert.ok(byVariant.deep > 1 && byVariant.deep <= 2, `deep rounds per request ${byVariant.deep}`);
    const score = await query(`route_variant:ponder_feedback_score:mean_rate1h${sel}`);
    const s = Object.fromEntries(score.data.result.map((x) => [x.metric.variant, Number(x.value[1])]));
    assert.ok(Math.abs(s.deep - 1) < 1e-9 && Math.abs(s.control - 0.5) < 1e-9, JSON.stringify(s));
    const errs = await scalar('sum(upstream:ponder_upstream_errors:ratio_rate5m{upstream="fake"})');
    assert.ok(errs > 0 && errs < 1, `upstream error ratio ${errs}`);
  });
});
