// The whole evaluation pipeline on one run: `ponder eval --config` against the fake upstream's
// simulated reasoner (right only after enough forced rounds), with K = 2 samples per item so
// every interval is the seeded bootstrap; the summary is compared with the independent Python
// reference (tests/unit/eval/stats_ref.py), then `ponder export` turns the samples into each
// training format, one line per correct sample.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFake, ponderBin, repoRoot } from '../lib/harness.mjs';

let fake;
let dir;

// What each item needs: the reasoner's rule is (operators - 1) rounds.
const ITEMS = [
  { id: 'p1', question: 'What is 4 + 5?', answer: 9 },
  { id: 'p2', question: 'What is 2 * 8 + 1?', answer: 17 },
  { id: 'p3', question: 'What is 6 + 6 - 2?', answer: 10 },
  { id: 'p4', question: 'What is 3 * 3 + 3 - 1?', answer: 11 },
  { id: 'p5', question: 'What is 1 + 1 + 1 + 1 + 1?', answer: 5 },
  { id: 'p6', question: 'What is 12 - 4?', answer: 8 },
];
const VARIANTS = [['base', 0], ['two', 2], ['four', 4]];

function run(args) {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.OPENAI_API_KEY;
    const proc = spawn(ponderBin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => proc.kill('SIGKILL'), 60000);
    proc.on('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}
const lines = (text) => text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));

let out;
let dataset;
let config;
let samples;

before(async () => {
  fake = await startFake({ reasoner: true });
  dir = mkdtempSync(join(tmpdir(), 'ponder-eval-pipeline-'));
  dataset = join(dir, 'items.jsonl');
  writeFileSync(dataset, ITEMS.map((x) => JSON.stringify(x)).join('\n') + '\n');
  config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    upstreams: [{ name: 'fake', base_url: `${fake.url}/v1`, retries: 0, timeout_ms: 10000 }],
    log: { level: 'warn' },
    routes: [{
      name: 'math',
      model: 'fake-reasoner',
      variants: VARIANTS.map(([name, rounds]) => ({ name, forcing: { mode: 'chat', rounds } })),
    }],
  }));
  out = join(dir, 'run');
  const r = await run(['eval', '--dataset', dataset, '--config', config, '--out', out,
    '--samples', '2', '--seed', '11', '--concurrency', '6']);
  assert.equal(r.code, 0, r.stderr);
  samples = lines(readFileSync(join(out, 'samples.jsonl'), 'utf8'));
});
after(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

test('with K = 2 the summary is exactly the independent reference (bootstrap intervals, paired differences)', () => {
  assert.equal(samples.length, ITEMS.length * VARIANTS.length * 2);
  const sum = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.equal(sum.samples, 2);
  assert.equal(sum.seed, 11);
  const ref = JSON.parse(execFileSync('python3', [join(repoRoot, 'tests/unit/eval/stats_ref.py'), 'summary',
    dataset, join(out, 'samples.jsonl'), '--seed', '11'], { encoding: 'utf8' }));
  const close = (a, b, what) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);
  assert.deepEqual(sum.variants.map((v) => v.name), VARIANTS.map(([n]) => n));
  for (const v of sum.variants) {
    const r = ref.find((x) => x.name === v.name);
    assert.ok(r, v.name);
    close(v.accuracy, r.accuracy, `${v.name} accuracy`);
    close(v.ci95[0], r.ci95[0], `${v.name} ci95 lo`);
    close(v.ci95[1], r.ci95[1], `${v.name} ci95 hi`);
    if (r.diff === null) {
      assert.equal(v.diff, null);
      continue;
    }
    assert.equal(v.diff.vs, 'base');
    close(v.diff.mean, r.diff.mean, `${v.name} diff`);
    close(v.diff.ci95[0], r.diff.ci95[0], `${v.name} diff lo`);
    close(v.diff.ci95[1], r.diff.ci95[1], `${v.name} diff hi`);
    assert.equal(v.diff.p_value, null, 'McNemar does not apply with two samples per item');
  }
  // The reasoner's rule: base gets the two one-operator items, two rounds five (p5 needs three), four rounds all.
  assert.deepEqual(sum.variants.map((v) => Math.round(v.accuracy * ITEMS.length * 1e9) / 1e9), [2, 5, 6]);
});

test('export writes one training line per correct sample in each format', async () => {
  const correct = samples.filter((s) => s.score === 1 && !s.error);
  assert.equal(correct.length, 2 * (2 + 5 + 6));
  for (const format of ['openai-think', 'reasoning-field', 'inline-think', 's1k']) {
    const r = await run(['export', '--samples', join(out, 'samples.jsonl'), '--format', format,
      '--config', config, '--min-score', '1', '--with-metadata']);
    assert.equal(r.code, 0, `${format}: ${r.stderr}`);
    const got = lines(r.stdout);
    assert.equal(got.length, correct.length, format);
    const key = (m) => `${m.item_id}/${m.variant}/${m.sample}`;
    assert.deepEqual(got.map((l) => key(l.metadata)).sort(), correct.map((s) => key(s)).sort(), format);
    for (const l of got) {
      const s = correct.find((x) => key(x) === key(l.metadata));
      if (format === 'openai-think') {
        assert.equal(l.messages.length, 5);
        assert.ok(l.messages[2].content.startsWith('<imstart>think\n'));
        assert.ok(l.messages[4].content.includes(s.output_text));
      } else if (format === 'reasoning-field') {
        assert.equal(l.messages.at(-1).content, s.output_text);
        assert.equal(l.messages.at(-1).reasoning, s.reasoning);
      } else if (format === 'inline-think') {
        assert.equal(l.messages.at(-1).content, `<think>\n${s.reasoning}\n</think>\n\n${s.output_text}`);
      } else {
        assert.equal(l.attempt, s.output_text);
        assert.equal(l.reference, s.reference);
        assert.equal(l.thinking_trajectories.length, s.rounds, `${key(s)}: one segment per round`);
      }
    }
  }
  // --best-per-item: one line per item that any variant got right.
  const r = await run(['export', '--samples', join(out, 'samples.jsonl'), '--format', 'reasoning-field',
    '--min-score', '1', '--best-per-item']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(lines(r.stdout).length, ITEMS.length);
});
