// `ponder export` (SPEC section 11) on hand-written samples.jsonl (tests/eval/data): every
// format field by field, rejection sampling (--min-score, --best-per-item), --variant,
// --with-metadata, --out, and bad input reported as FILE:LINE.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ponderBin, repoRoot } from '../lib/harness.mjs';

const DATA = join(repoRoot, 'tests', 'eval', 'data');
const SAMPLES = join(DATA, 'samples.jsonl');
const CONFIG = join(DATA, 'config.yaml');
const fixture = readFileSync(SAMPLES, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

function exportRun(args, { input } = {}) {
  const r = spawnSync(ponderBin, ['export', ...args], { encoding: 'utf8', input, timeout: 20000 });
  const lines = r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
  return { status: r.status, stderr: r.stderr, stdout: r.stdout, lines };
}

// The prompts of the fixture's config (tests/eval/data/config.yaml) and SPEC's defaults,
// expanded by hand.
const POLICY = {
  control: {
    think: 'Think for up to 8192 tokens.',
    answer: 'Now provide the final answer. Respond in under 2048 tokens!!!',
    wait: 'Wait? Did I make a mistake?',
  },
  deep: {
    think: 'Think for up to 512 tokens, step by step.',
    answer: 'Give the final answer in under 128 tokens (you thought for 512).',
    wait: /\nWait, let me check \(\d+ tokens left\)\.\n/,
  },
};

// The samples a format keeps with --min-score 1: correct and not failed, in file order.
const correct = fixture.filter((s) => s.score >= 1 && s.error === null);

function conversation(s) {
  return typeof s.input === 'string' ? [{ role: 'user', content: s.input }] : s.input;
}
function questionOf(s) {
  return typeof s.input === 'string' ? s.input : s.input.filter((m) => m.role === 'user').at(-1).content;
}
const reasoningOf = (s) => s.reasoning ?? '';

function expected(format, s) {
  const p = POLICY[s.variant];
  switch (format) {
    case 'openai-think': {
      const msgs = conversation(s).map((m) => ({ ...m }));
      if (msgs[0].role !== 'system') msgs.unshift({ role: 'system', content: 'You are a helpful AI assistant.' });
      const last = msgs.findLastIndex((m) => m.role === 'user');
      msgs[last].content += '\n\n' + p.think;
      return {
        messages: [
          ...msgs,
          { role: 'assistant', content: '<imstart>think\n' + reasoningOf(s) + '\n<imend>' },
          { role: 'user', content: p.answer },
          { role: 'assistant', content: '<imstart>answer\n' + s.output_text + '\n<imend>' },
        ],
      };
    }
    case 'reasoning-field':
      return {
        messages: [...conversation(s),
          { role: 'assistant', content: s.output_text, reasoning: reasoningOf(s) }],
      };
    case 'inline-think':
      return {
        messages: [...conversation(s),
          { role: 'assistant', content: '<think>\n' + reasoningOf(s) + '\n</think>\n\n' + s.output_text }],
      };
    case 's1k':
      return {
        question: questionOf(s),
        thinking_trajectories: reasoningOf(s) === '' ? [] : reasoningOf(s).split(p.wait),
        attempt: s.output_text,
        reference: s.reference === null ? null : String(s.reference),
      };
  }
  throw new Error(format);
}

const metadataOf = (s) => ({
  item_id: s.item_id, variant: s.variant, sample: s.sample, score: s.score, rounds: s.rounds,
  reasoning_tokens: s.usage?.reasoning_tokens ?? s.usage?.completion_tokens_details?.reasoning_tokens ?? 0,
});

describe('ponder export formats', () => {
  for (const format of ['openai-think', 'reasoning-field', 'inline-think', 's1k']) {
    test(`${format}: one line per correct sample, field by field`, () => {
      const r = exportRun(['--samples', SAMPLES, '--config', CONFIG, '--format', format, '--min-score', '1']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.lines.length, correct.length);
      assert.equal(correct.length, 5);
      r.lines.forEach((line, i) => {
        assert.deepEqual(line, expected(format, correct[i]), `line ${i + 1}`);
        assert.equal('metadata' in line, false);
      });
      assert.match(r.stderr, /5 lines written/);
    });
  }

  test('s1k splits the thinking at the wait text, whatever limit it carries', () => {
    const r = exportRun(['--samples', SAMPLES, '--config', CONFIG, '--format', 's1k', '--variant', 'deep',
      '--min-score', '1']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.lines.map((l) => l.thinking_trajectories), [
      ['2+3: count up from 2 three times: 3, 4, 5.', 'Yes: 2+3 = 5.'],
      ['2+3 = 5.', 'Still 5.'],
      ['7*6: 7*5 = 35, plus 7 is 42.', '6*7 = 42 too.'], // "(300 tokens left)": a later round's limit
      ['Primes above 10: 11 is the first. </script><img src=x onerror=alert(1)>',
        '11 has no divisor but 1 and 11.'],
    ]);
  });

  test('without --config the built-in policy gives the prompts and the wait text', () => {
    const r = exportRun(['--samples', SAMPLES, '--format', 'openai-think', '--variant', 'deep', '--min-score', '1']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.lines.length, 4);
    assert.equal(r.lines[0].messages[1].content, 'What is 2+3?\n\nThink for up to 8192 tokens.');
    assert.equal(r.lines[0].messages[3].content, POLICY.control.answer);
    const s = exportRun(['--samples', SAMPLES, '--format', 's1k', '--variant', 'deep', '--min-score', '1']);
    // The default wait ("Wait? Did I make a mistake?") is not in these texts: one segment each.
    assert.deepEqual(s.lines.map((l) => l.thinking_trajectories.length), [1, 1, 1, 1]);
  });

  test('a messages item keeps its conversation (and its own system message)', () => {
    const r = exportRun(['--samples', SAMPLES, '--config', CONFIG, '--format', 'openai-think', '--variant', 'deep']);
    const three = r.lines.at(-1).messages;
    assert.equal(three.length, 5);
    assert.deepEqual(three[0], { role: 'system', content: 'Be brief.' });
    assert.equal(three[1].content, 'Name a prime above 10.\n\nThink for up to 512 tokens, step by step.');
  });
});

describe('ponder export selection', () => {
  test('without --min-score every sample that did not fail is kept', () => {
    const r = exportRun(['--samples', SAMPLES, '--format', 'reasoning-field', '--with-metadata']);
    assert.equal(r.status, 0, r.stderr);
    const kept = fixture.filter((s) => s.error === null);
    assert.equal(r.lines.length, kept.length);
    assert.deepEqual(r.lines.map((l) => l.metadata), kept.map(metadataOf));
  });

  test('--min-score keeps samples scoring at least S', () => {
    const r = exportRun(['--samples', SAMPLES, '--format', 's1k', '--min-score', '0.5', '--with-metadata']);
    assert.deepEqual(r.lines.map((l) => l.metadata.score), [1, 1, 1, 1, 1]);
    const none = exportRun(['--samples', SAMPLES, '--format', 's1k', '--min-score', '1.5']);
    assert.equal(none.status, 0);
    assert.equal(none.lines.length, 0);
  });

  test('--with-metadata carries item_id, variant, sample, score, rounds, reasoning_tokens', () => {
    const r = exportRun(['--samples', SAMPLES, '--config', CONFIG, '--format', 'openai-think', '--min-score', '1',
      '--with-metadata']);
    assert.deepEqual(r.lines.map((l) => l.metadata), correct.map(metadataOf));
    assert.deepEqual(r.lines[1].metadata,
      { item_id: 1, variant: 'deep', sample: 0, score: 1, rounds: 2, reasoning_tokens: 52 });
    assert.deepEqual(Object.keys(r.lines[0]), ['messages', 'metadata']);
  });

  test('--variant keeps one variant', () => {
    const r = exportRun(['--samples', SAMPLES, '--format', 'inline-think', '--variant', 'control', '--with-metadata']);
    assert.deepEqual(r.lines.map((l) => [l.metadata.item_id, l.metadata.variant]), [[1, 'control'], [2, 'control']]);
    const none = exportRun(['--samples', SAMPLES, '--format', 'inline-think', '--variant', 'nope']);
    assert.equal(none.status, 0);
    assert.equal(none.lines.length, 0);
  });

  test('--best-per-item: the highest score, then the fewest reasoning tokens, one per item', () => {
    const all = exportRun(['--samples', SAMPLES, '--format', 's1k', '--best-per-item', '--with-metadata']);
    assert.equal(all.status, 0, all.stderr);
    // item 1: control scores 1 with 0 reasoning tokens; item 2: deep (1 beats 0); item three:
    // control failed, so deep.
    assert.deepEqual(all.lines.map((l) => [l.metadata.item_id, l.metadata.variant, l.metadata.sample]),
      [[1, 'control', 0], [2, 'deep', 0], ['three', 'deep', 0]]);
    const deep = exportRun(['--samples', SAMPLES, '--config', CONFIG, '--format', 'openai-think', '--variant', 'deep',
      '--best-per-item', '--min-score', '1', '--with-metadata']);
    // item 1's two deep samples both score 1: sample 1 thought less (21 tokens against 52).
    assert.deepEqual(deep.lines.map((l) => [l.metadata.item_id, l.metadata.sample, l.metadata.reasoning_tokens]),
      [[1, 1, 21], [2, 0, 55], ['three', 0, 40]]);
  });

  test('--out writes the file; stdout stays empty', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ponder-export-'));
    try {
      const out = join(dir, 'train.jsonl');
      const r = exportRun(['--samples', SAMPLES, '--format', 'reasoning-field', '--min-score', '1', '--out', out]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '');
      const lines = readFileSync(out, 'utf8').split('\n');
      assert.equal(lines.pop(), '');
      assert.equal(lines.length, 5);
      lines.forEach((l) => JSON.parse(l));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--samples - reads standard input', () => {
    const r = exportRun(['--samples', '-', '--format', 's1k', '--min-score', '1'], { input: readFileSync(SAMPLES) });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.lines.length, 5);
    const bad = exportRun(['--samples', '-', '--format', 's1k'], { input: 'oops\n' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^ponder export: stdin:1: not valid JSON/);
  });
});

describe('ponder export errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ponder-export-bad-'));
  const write = (name, text) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const good = readFileSync(SAMPLES, 'utf8').split('\n')[0];
  const quote = (t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const bad = (name, line, why) => test(`a bad line (${name}) is FILE:LINE: message, nothing written`, () => {
    const p = write(`${name}.jsonl`, `${good}\n\n${line}\n${good}\n`);
    const r = exportRun(['--samples', p, '--format', 'reasoning-field', '--best-per-item']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^ponder export: ${quote(p)}:3: ${why}`));
    // Streamed to --out: the file is not left behind half written.
    const out = join(dir, `${name}.out.jsonl`);
    const o = exportRun(['--samples', p, '--format', 'reasoning-field', '--out', out]);
    assert.equal(o.status, 1);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith(`${name}.out`)), []);
  });
  bad('not json', '{"item_id": 1, "variant": ', 'not valid JSON: .* \\(column \\d+\\)');
  bad('not an object', '[1, 2]', 'a sample must be a JSON object');
  bad('no variant', '{"item_id": 1, "sample": 0, "score": 1}', '"variant" must be a non-empty string');
  bad('id', '{"item_id": {"a": 1}, "variant": "x", "score": 1}', '"item_id" must be a string or an integer');
  bad('score', '{"item_id": 1, "variant": "x", "score": "1"}', '"score" must be a number');
  bad('no score', '{"item_id": 1, "variant": "x", "error": null}', '"score" must be a number');
  bad('usage', '{"item_id": 1, "variant": "x", "score": 1, "usage": {"prompt_tokens": -3}}', '"usage" must be');
  bad('input', '{"item_id": 1, "variant": "x", "score": 1, "input": [{"content": "hi"}]}', '"input" must be');
  bad('duplicate key', '{"item_id": 1, "item_id": 2, "variant": "x", "score": 1}', 'not valid JSON: duplicate object key');

  test('a variant the config does not have is an error naming the line', () => {
    const p = write('other.jsonl', `${good}\n${good.replace('"control"', '"elsewhere"')}\n`);
    const r = exportRun(['--samples', p, '--config', CONFIG, '--format', 'openai-think']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /other\.jsonl:2: variant "elsewhere" is not in .*config\.yaml/);
  });

  test('usage errors exit 2', () => {
    for (const args of [[], ['--samples', SAMPLES], ['--samples', SAMPLES, '--format', 'alpaca'],
      ['--samples', SAMPLES, '--format', 's1k', '--min-score', 'high'], ['--samples', SAMPLES, '--format', 's1k', '--bogus']]) {
      const r = exportRun(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /ponder export: /);
    }
    const missing = exportRun(['--samples', join(dir, 'missing.jsonl'), '--format', 's1k']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /missing\.jsonl: No such file/);
  });

  test('cleanup', () => rmSync(dir, { recursive: true, force: true }));
});
