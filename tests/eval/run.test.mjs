// `ponder eval` end to end: the built binary serves a config in-process (--config) or talks to a
// base URL (--url), against the fake upstream's simulated reasoner, whose answer to "What is
// EXPR?" is right only after (operators - 1) forced thinking rounds (tests/fake/upstream.mjs,
// reasoner mode). Every accuracy, interval and p-value asserted here follows from that rule,
// computed independently below.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFake, ponderBin } from '../lib/harness.mjs';
import { reasonerAnswer } from '../fake/upstream.mjs';

let fake;
let dir;

// Items by the rounds they need: 0 (one operator), 1, 2 and 3; and one `messages` item (0).
const ITEMS = [
  { id: 'a0', question: 'What is 2 + 3?', answer: 5 },
  { id: 'b0', question: 'What is 40 - 8?', answer: '32' },
  { id: 'a1', question: 'What is 2 + 3 * 4?', answer: 14 },
  { id: 'b1', question: 'What is 7 * 6 - 5?', answer: 37 },
  { id: 'a2', question: 'What is 10 - 2 * 3 + 1?', answer: 5 },
  { id: 'b2', question: 'What is 3 * 3 * 3 - 20?', answer: 7 },
  { id: 'a3', question: 'What is 1 + 2 + 3 + 4 + 5?', answer: 15 },
  { id: 'b3', question: 'What is 9 * 9 + 1 - 2 * 5?', answer: 72 },
  { id: 'm0', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 6 * 7?' }], answer: 42 },
];
const NEEDS = { a0: 0, b0: 0, a1: 1, b1: 1, a2: 2, b2: 2, a3: 3, b3: 3, m0: 0 };
const ROUNDS = { r0: 0, r1: 1, r2: 2 };

function writeDataset(name, items) {
  const p = join(dir, name);
  writeFileSync(p, items.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('\n') + '\n');
  return p;
}

function writeConfig(name, { retries = 0, variants = null } = {}) {
  const cfg = {
    upstreams: [{ name: 'fake', base_url: `${fake.url}/v1`, retries, timeout_ms: 10000 }],
    log: { level: 'warn', access_log: '-' },
    routes: [
      { name: 'other', match: { path_prefix: '/other' }, forcing: { rounds: 5 } },
      {
        name: 'math',
        model: 'fake-reasoner',
        variants: variants ?? Object.entries(ROUNDS).map(([n, r]) => ({ name: n, forcing: { mode: 'chat', rounds: r } })),
      },
    ],
  };
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(cfg));
  return p;
}

function runEval(args, { env = {} } = {}) {
  return new Promise((resolve) => {
    const childEnv = { ...process.env, ...env };
    delete childEnv.OPENAI_API_KEY;
    const proc = spawn(ponderBin, ['eval', ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => proc.kill('SIGKILL'), 60000);
    proc.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const readSamples = (out) => readFileSync(join(out, 'samples.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const readSummary = (out) => JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));

// Independent statistics: Wilson's interval, McNemar's exact two-sided p-value.
function wilson(k, n, z = 1.959963984540054) {
  const p = k / n;
  const d = 1 + (z * z) / n;
  const c = (p + (z * z) / (2 * n)) / d;
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [Math.max(0, c - h), Math.min(1, c + h)];
}
function mcnemar(b, c) {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  let tail = 0;
  let binom = 1; // C(n, 0)
  for (let i = 0; i <= k; i++) {
    if (i > 0) binom = (binom * (n - i + 1)) / i;
    tail += binom / 2 ** n;
  }
  return Math.min(1, 2 * tail);
}

before(async () => {
  fake = await startFake({ reasoner: true });
  dir = mkdtempSync(join(tmpdir(), 'ponder-eval-test-'));
});
after(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

test('--config: every variant served in-process; samples and summary follow the reasoner rule', async () => {
  fake.reset();
  const ds = writeDataset('items.jsonl', ITEMS);
  const cfg = writeConfig('math.json');
  const out = join(dir, 'out-config');
  const r = await runEval(['--dataset', ds, '--config', cfg, '--out', out, '--concurrency', '4', '--seed', '7']);
  assert.equal(r.code, 0, r.stderr);
  const samples = readSamples(out);
  assert.equal(samples.length, ITEMS.length * 3);
  for (const s of samples) {
    const item = ITEMS.find((x) => x.id === s.item_id);
    assert.ok(item, s.item_id);
    const rounds = ROUNDS[s.variant];
    assert.equal(s.sample, 0);
    assert.equal(s.rounds, rounds, `${s.item_id} ${s.variant}`);
    assert.equal(s.upstream_calls, rounds + 1);
    assert.equal(s.reference, String(item.answer));
    if (item.messages) assert.deepEqual(s.input, item.messages);
    else assert.equal(s.input, item.question);
    const q = item.question ?? item.messages[1].content;
    const want = reasonerAnswer(q, rounds);
    assert.equal(s.final_answer, want, `${s.item_id} ${s.variant}: ${s.output_text}`);
    assert.match(s.output_text, new RegExp(`after ${rounds} thinking round`));
    assert.equal(s.score, rounds >= NEEDS[s.item_id] ? 1 : 0, `${s.item_id} ${s.variant}`);
    assert.equal(s.error, null);
    assert.ok(s.scores && typeof s.scores === 'object');
    assert.ok(s.latency_ms > 0);
    assert.ok(s.usage.prompt_tokens > 0 && s.usage.completion_tokens > 0);
    if (rounds === 0) {
      assert.equal(s.reasoning, '');
      assert.equal(s.usage.reasoning_tokens, 0);
    } else {
      assert.equal(s.reasoning.split('[simulated thinking').length - 1, rounds);
      assert.ok(s.usage.reasoning_tokens > 0);
    }
  }
  // Each sample went to its own variant: the upstream saw (rounds + 1) calls per sample.
  const calls = fake.log.filter((e) => e.path.endsWith('/chat/completions')).length;
  assert.equal(calls, ITEMS.length * (1 + 2 + 3));

  const sum = readSummary(out);
  assert.equal(sum.items, ITEMS.length);
  assert.equal(sum.seed, 7);
  assert.deepEqual(sum.variants.map((v) => v.name), ['r0', 'r1', 'r2']);
  const right = { r0: 3, r1: 5, r2: 7 };
  const n = ITEMS.length;
  for (const v of sum.variants) {
    assert.equal(v.accuracy, right[v.name] / n, v.name);
    const [lo, hi] = wilson(right[v.name], n);
    assert.ok(Math.abs(v.ci95[0] - lo) < 1e-6 && Math.abs(v.ci95[1] - hi) < 1e-6, `${v.name} ci95 ${v.ci95} vs ${lo},${hi}`);
    assert.equal(v.errors, 0);
    assert.equal(v.upstream_calls, ROUNDS[v.name] + 1);
  }
  assert.equal(sum.variants[0].diff, null);
  // r1 vs r0: the two rounds-1 items turn right, none turns wrong; r2 vs r0: four.
  assert.equal(sum.variants[1].diff.vs, 'r0');
  assert.ok(Math.abs(sum.variants[1].diff.mean - 2 / n) < 1e-12);
  assert.ok(Math.abs(sum.variants[1].diff.p_value - mcnemar(2, 0)) < 1e-9);
  assert.ok(Math.abs(sum.variants[2].diff.mean - 4 / n) < 1e-12);
  assert.ok(Math.abs(sum.variants[2].diff.p_value - mcnemar(4, 0)) < 1e-9);

  // summary.md is printed and written; the report exists.
  const md = readFileSync(join(out, 'summary.md'), 'utf8');
  assert.ok(r.stdout.includes(md.trim()), 'summary.md printed on stdout');
  for (const name of ['r0', 'r1', 'r2']) assert.ok(md.includes(name));
  assert.ok(existsSync(join(out, 'report.html')));
  // The in-process server's access log is off: stderr holds the progress, not request lines.
  assert.doesNotMatch(r.stderr, /"path":/);
  assert.match(r.stderr, /27\/27 samples/);
});

test('--variants picks and orders a subset; --samples K runs each item K times', async () => {
  fake.reset();
  const ds = writeDataset('items.jsonl', ITEMS);
  const cfg = writeConfig('math.json');
  const out = join(dir, 'out-samples');
  const r = await runEval(['--dataset', ds, '--config', cfg, '--out', out, '--variants', 'r2,r0', '--samples', '3']);
  assert.equal(r.code, 0, r.stderr);
  const samples = readSamples(out);
  assert.equal(samples.length, ITEMS.length * 2 * 3);
  for (const id of Object.keys(NEEDS)) {
    for (const v of ['r0', 'r2']) {
      const mine = samples.filter((s) => s.item_id === id && s.variant === v);
      assert.deepEqual(mine.map((s) => s.sample).sort(), [0, 1, 2]);
    }
  }
  const sum = readSummary(out);
  assert.deepEqual(sum.variants.map((v) => v.name), ['r2', 'r0']);
  assert.equal(sum.samples, 3); // per item and variant
  assert.equal(sum.variants[0].accuracy, 7 / ITEMS.length);
  assert.equal(sum.variants[1].accuracy, 3 / ITEMS.length);
  assert.equal(sum.variants[1].diff.vs, 'r2');
  assert.ok(Math.abs(sum.variants[1].diff.mean + 4 / ITEMS.length) < 1e-12);
});

test('--limit runs the first N items only', async () => {
  fake.reset();
  const ds = writeDataset('items.jsonl', ITEMS);
  const cfg = writeConfig('math.json');
  const out = join(dir, 'out-limit');
  const r = await runEval(['--dataset', ds, '--config', cfg, '--out', out, '--limit', '3', '--variants', 'r1']);
  assert.equal(r.code, 0, r.stderr);
  const samples = readSamples(out);
  assert.deepEqual(samples.map((s) => s.item_id), ['a0', 'b0', 'a1']);
  assert.equal(readSummary(out).items, 3);
  assert.equal(readSummary(out).variants[0].accuracy, 1);
});

test('--url: one variant named after the host, no forcing from a raw upstream', async () => {
  fake.reset();
  const ds = writeDataset('items.jsonl', ITEMS);
  const out = join(dir, 'out-url');
  const r = await runEval(['--dataset', ds, '--url', `${fake.url}/v1`, '--out', out, '--model', 'm-x']);
  assert.equal(r.code, 0, r.stderr);
  const samples = readSamples(out);
  assert.equal(samples.length, ITEMS.length);
  for (const s of samples) {
    assert.equal(s.variant, '127.0.0.1');
    assert.equal(s.rounds, 0);
    assert.equal(s.upstream_calls, 1);
    assert.equal(s.score, NEEDS[s.item_id] === 0 ? 1 : 0);
  }
  const sent = fake.log.filter((e) => e.path === '/v1/chat/completions');
  assert.equal(sent.length, ITEMS.length);
  for (const e of sent) {
    assert.equal(e.body.model, 'm-x');
    assert.equal(e.headers['x-ponder-variant'], undefined);
  }
  const sum = readSummary(out);
  assert.deepEqual(sum.variants.map((v) => v.name), ['127.0.0.1']);
  assert.equal(sum.variants[0].accuracy, 3 / ITEMS.length);
});

test('a bad dataset line is FILE:LINE: message, and nothing is sent', async () => {
  fake.reset();
  const ds = writeDataset('bad.jsonl', [ITEMS[0], ITEMS[1], '{"question": "What is 1 + 1?", ', ITEMS[2]]);
  const out = join(dir, 'out-bad');
  const r = await runEval(['--dataset', ds, '--config', writeConfig('math.json'), '--out', out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^${ds.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: invalid JSON`, 'm'));
  assert.equal(fake.log.length, 0);
  assert.equal(existsSync(out), false);
  const dup = writeDataset('dup.jsonl', [ITEMS[0], ITEMS[0]]);
  const r2 = await runEval(['--dataset', dup, '--url', `${fake.url}/v1`, '--out', out]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /dup\.jsonl:2: duplicate id 'a0' \(first on line 1\)/);
  assert.equal(fake.log.length, 0);
});

test('a request that fails past the retries is an error sample with score 0, counted', async () => {
  fake.reset();
  const ds = writeDataset('items.jsonl', ITEMS.slice(0, 3));
  const cfg = writeConfig('retry.json', { retries: 1 });
  const out = join(dir, 'out-errors');
  // The in-process ponder retries per the upstream's `retries` and eval adds none: one attempt
  // and its retry fail, so the first sample is an error (2 calls, not 4). The second succeeds at
  // once; the third's failure is absorbed by ponder's retry.
  fake.script(...Array(2).fill({ status: 500 }), {}, { status: 500 });
  const r = await runEval(['--dataset', ds, '--config', cfg, '--out', out, '--variants', 'r0', '--concurrency', '1']);
  assert.equal(r.code, 0, r.stderr);
  const samples = readSamples(out);
  assert.equal(samples.length, 3);
  assert.equal(samples[0].score, 0);
  assert.match(samples[0].error, /HTTP 500/);
  assert.equal(samples[1].error, null);
  assert.equal(samples[1].score, 1);
  assert.equal(samples[2].error, null);
  assert.equal(fake.log.filter((e) => e.path.endsWith('/chat/completions')).length, 5);
  const sum = readSummary(out);
  assert.equal(sum.variants[0].errors, 1);
  assert.match(r.stderr, /1 error/);
});

test('--grader judge: judges go through the route with forcing off', async () => {
  fake.reset();
  const ds = writeDataset('items.jsonl', ITEMS.slice(0, 4));
  const out = join(dir, 'out-judge');
  const r = await runEval(['--dataset', ds, '--config', writeConfig('math.json'), '--out', out, '--variants', 'r1', '--grader', 'judge']);
  assert.equal(r.code, 0, r.stderr);
  const samples = readSamples(out);
  for (const s of samples) assert.equal(s.score, NEEDS[s.item_id] <= 1 ? 1 : 0, JSON.stringify(s));
  const judged = fake.log.filter((e) => JSON.stringify(e.body).includes("Model's Answer:"));
  assert.equal(judged.length, 4);
  for (const e of judged) {
    assert.equal(e.body.messages.filter((m) => m.role === 'assistant').length, 0, 'no forcing on a judge call');
    assert.equal(e.body.model, 'fake-reasoner'); // the route maps the model
  }
});

test('usage errors exit 2 with a message', async () => {
  const ds = writeDataset('items.jsonl', ITEMS);
  const cases = [
    [[], /--dataset FILE.jsonl is required/],
    [['--dataset', ds], /exactly one of --config FILE and --url BASE_URL/],
    [['--dataset', ds, '--url', 'ftp://x'], /--url must be/],
    [['--dataset', ds, '--url', `${fake.url}/v1`, '--samples', '0'], /--samples must be/],
    [['--dataset', ds, '--url', `${fake.url}/v1`, '--concurrency', 'x'], /--concurrency must be/],
    [['--dataset', ds, '--url', `${fake.url}/v1`, '--price', '1'], /--price must be IN,OUT/],
    [['--dataset', ds, '--url', `${fake.url}/v1`, '--seed', '18446744073709551615'], /--seed must be an integer from 0 to 9223372036854775807/],
    [['--dataset', ds, '--config', writeConfig('math.json'), '--variants', 'r9'], /route 'math' has no variant 'r9'/],
    [['--dataset', ds, '--config', writeConfig('math.json'), '--route', 'nope'], /no route 'nope'/],
    [['--dataset', ds, '--url', `${fake.url}/v1`, '--bogus'], /unknown or incomplete option '--bogus'/],
  ];
  for (const [args, re] of cases) {
    const r = await runEval(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const h = await runEval(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /usage: ponder eval/);
});
