// Integration tests: streamed budget-forced exchanges (SPEC section 5, "Streaming") and faults
// after the stream started, against the fake upstream.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { startPonder, startFake, configFor, chat, parseSSE, sleep, chatPolicy, route } from '../lib/harness.mjs';

const MODEL = 'gpt-think';
const M = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'What is 2+2?' },
];

/** A streamed chat request over node:http. onEvent(event, msSinceStart, req) sees each SSE event
 * as it arrives. Resolves on close with {status, headers, raw, events, complete}. */
function sse(url, body, { headers = {}, onEvent } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const t0 = Date.now();
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', ...headers },
    });
    req.on('error', (e) => { if (!req.destroyed || !req.res) reject(e); });
    req.on('response', (res) => {
      let raw = '';
      let pending = '';
      let done = false;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        raw += d;
        pending += d;
        let i;
        while ((i = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, i + 2);
          pending = pending.slice(i + 2);
          for (const ev of parseSSE(block)) onEvent?.(ev, Date.now() - t0, req);
        }
      });
      res.on('error', () => {});
      res.on('aborted', () => {});
      const finish = () => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode, headers: res.headers, raw, events: parseSSE(raw), complete: res.complete });
      };
      res.on('end', finish);
      res.on('close', finish);
    });
    req.end(JSON.stringify(body));
  });
}

const chunks = (events) => events.filter((e) => e !== '[DONE]');
const choiceChunks = (events) => chunks(events).filter((e) => Array.isArray(e.choices) && e.choices.length);
function collect(events, index = 0) {
  let reasoning = '';
  let content = '';
  const reasoningDeltas = [];
  let finish = null;
  const toolCalls = [];
  for (const e of choiceChunks(events)) {
    for (const c of e.choices) {
      if (c.index !== index) continue;
      const d = c.delta || {};
      if (typeof d.reasoning_content === 'string') { reasoning += d.reasoning_content; reasoningDeltas.push(d.reasoning_content); }
      if (typeof d.content === 'string') content += d.content;
      for (const tc of d.tool_calls || []) {
        const t = (toolCalls[tc.index] ??= { id: undefined, type: undefined, function: { name: '', arguments: '' } });
        if (tc.id) t.id = tc.id;
        if (tc.type) t.type = tc.type;
        if (tc.function?.name) t.function.name += tc.function.name;
        if (tc.function?.arguments) t.function.arguments += tc.function.arguments;
      }
      if (c.finish_reason != null) finish = c.finish_reason;
    }
  }
  return { reasoning, content, reasoningDeltas, finish, toolCalls };
}
function errorEvents(events) {
  return chunks(events).filter((e) => e && typeof e === 'object' && 'error' in e);
}
function assertStreamFailed(r) {
  assert.equal(r.status, 200);
  const errs = errorEvents(r.events);
  assert.equal(errs.length, 1, 'exactly one error event:\n' + r.raw);
  assert.equal(typeof errs[0].error.message, 'string');
  assert.ok('type' in errs[0].error && 'code' in errs[0].error);
  assert.equal(r.events.at(-1), errs[0], 'the error event is the last one');
  assert.ok(!r.events.includes('[DONE]'), 'no [DONE] after a failure');
  assert.equal(r.complete, false, 'the connection is closed without ending the body');
  return errs[0].error;
}
const rssKB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

describe('streaming', () => {
  let fake, p;
  const base = (name) => (name ? `${p.url}/${name}/v1` : p.base);
  const url = (name) => `${base(name)}/chat/completions`;
  const log = () => fake.log.filter((e) => !e.path.startsWith('/_fake/'));

  before(async () => {
    fake = await startFake({ port: 0 });
    const cfg = configFor(fake);
    cfg.upstreams[0].timeout_ms = 60000; // the slow-reader tests keep one call paused for seconds
    cfg.upstreams.push({ name: 'slow', base_url: `${fake.url}/v1`, retries: 0, timeout_ms: 500,
      connect_timeout_ms: 2000 });
    cfg.routes = [
      route('r0', chatPolicy(0)),
      route('r1', chatPolicy(1)),
      route('r2', chatPolicy(2)),
      route('inline', chatPolicy(2), { reasoning: 'inline' }),
      route('hidden', chatPolicy(2), { reasoning: 'hidden' }),
      route('pvllm', { mode: 'prefill', rounds: 2, think_budget: 10, answer_budget: 50 }),
      route('cml', { mode: 'completions', rounds: 1, think_budget: 10, answer_budget: 50 }),
      route('slow', chatPolicy(2), { upstream: 'slow' }),
      { name: 'main', forcing: chatPolicy(2) },
    ];
    p = await startPonder({ config: cfg });
  });
  after(async () => {
    const r = p ? await p.stop('SIGTERM') : null;
    await fake?.close();
    if (r) assert.equal(r.code, 0, 'ponder exits 0 after SIGTERM:\n' + p.output());
  });
  beforeEach(() => fake.reset());

  it('R=2 with include_usage: same text and usage as the non-streamed response, well-formed chunks', async () => {
    const specs = [{ content: 'first thought here' }, { content: 'second thought' }, { content: 'The answer is 4.' }];
    fake.script(...specs);
    const plain = await chat(base('r2'), { model: MODEL, messages: M });
    assert.equal(plain.status, 200, plain.text);
    fake.reset();
    fake.script(...specs);
    const r = await sse(url('r2'), { model: MODEL, messages: M, stream: true, stream_options: { include_usage: true } });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    assert.equal(r.headers['x-ponder-route'], 'r2');
    assert.equal(r.headers['x-ponder-variant'], 'default');
    assert.equal(r.headers['x-ponder-rounds'], '2');
    assert.ok(r.complete, 'the body ends properly');

    const calls = log();
    assert.equal(calls.length, 3);
    for (const c of calls) {
      assert.equal(c.body.stream, true, 'every upstream call is streamed');
      assert.deepEqual(c.body.stream_options, { include_usage: true });
    }

    const ev = r.events;
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(ev.filter((e) => e === '[DONE]').length, 1);
    const cs = chunks(ev);
    const first = cs[0];
    assert.match(first.id, /^chatcmpl-/);
    for (const c of cs) {
      assert.equal(c.id, first.id);
      assert.equal(c.created, first.created);
      assert.equal(c.model, MODEL);
      assert.equal(c.object, 'chat.completion.chunk');
    }
    assert.equal(first.choices[0].delta.role, 'assistant');
    const got = collect(ev);
    const msg = plain.json.choices[0].message;
    assert.equal(got.reasoning, msg.reasoning_content);
    assert.equal(got.content, msg.content);
    assert.equal(got.reasoning, 'first thought here\nWAIT?\nsecond thought');
    assert.ok(got.reasoningDeltas.includes('\nWAIT?\n'), 'the wait separator is its own delta');
    const cc = choiceChunks(ev);
    const finishers = cc.filter((c) => c.choices[0].finish_reason != null);
    assert.equal(finishers.length, 1);
    assert.equal(finishers[0], cc.at(-1), 'finish_reason on the last choice chunk');
    assert.equal(finishers[0].choices[0].finish_reason, 'stop');
    const usageChunks = cs.filter((c) => Array.isArray(c.choices) && c.choices.length === 0);
    assert.equal(usageChunks.length, 1);
    assert.equal(cs.indexOf(usageChunks[0]), cs.length - 1, 'usage chunk comes last, before [DONE]');
    assert.deepEqual(usageChunks[0].usage, plain.json.usage);
  });

  it('without include_usage there is no usage chunk', async () => {
    fake.script({ content: 't' }, { content: 'a' });
    const r = await sse(url('r1'), { model: MODEL, messages: M, stream: true });
    assert.equal(r.events.at(-1), '[DONE]');
    assert.ok(chunks(r.events).every((c) => c.choices.length > 0));
    assert.equal(collect(r.events).content, 'a');
  });

  it('the first reasoning delta arrives while the first thinking call is still streaming', async () => {
    fake.script({ tokens: 20, token_delay_ms: 50 }, { content: 'done' });
    let firstReasoning = null;
    let callsAtFirst = null;
    let firstContent = null;
    const r = await sse(url('r1'), { model: MODEL, messages: M, stream: true }, {
      onEvent: (e, t) => {
        const d = e?.choices?.[0]?.delta;
        if (d?.reasoning_content && firstReasoning == null) { firstReasoning = t; callsAtFirst = log().length; }
        if (d?.content && firstContent == null) firstContent = t;
      },
    });
    assert.equal(r.events.at(-1), '[DONE]');
    assert.ok(firstReasoning != null && firstContent != null);
    assert.equal(callsAtFirst, 1, 'the answer call has not started yet');
    // The thinking call takes >= 22 * 50 ms; its first token must not wait for its end.
    assert.ok(firstReasoning < 600, `first reasoning delta after ${firstReasoning} ms`);
    assert.ok(firstContent - firstReasoning > 600, `reasoning relayed early (${firstReasoning} vs ${firstContent} ms)`);
    const got = collect(r.events);
    assert.ok(got.reasoningDeltas.length >= 20, 'relayed token by token');
    assert.equal(got.reasoning, Array.from({ length: 20 }, (_, i) => `tok${i}`).join(' '));
  });

  it('inline: <think> ... </think> inside delta.content, matching the non-streamed content', async () => {
    const specs = [{ content: 'one' }, { content: 'two' }, { content: 'Four.' }];
    fake.script(...specs);
    const plain = await chat(base('inline'), { model: MODEL, messages: M });
    fake.reset();
    fake.script(...specs);
    const r = await sse(url('inline'), { model: MODEL, messages: M, stream: true });
    assert.equal(r.events.at(-1), '[DONE]');
    const got = collect(r.events);
    assert.equal(got.reasoning, '');
    assert.equal(got.content, '<think>\none\nWAIT?\ntwo\n</think>\n\nFour.');
    assert.equal(got.content, plain.json.choices[0].message.content);
    const contents = choiceChunks(r.events).map((c) => c.choices[0].delta.content).filter((s) => s);
    assert.equal(contents[0], '<think>\n');
  });

  it('hidden: no reasoning deltas, only the answer', async () => {
    fake.script({ content: 'one' }, { content: 'two' }, { content: 'Four.' });
    const r = await sse(url('hidden'), { model: MODEL, messages: M, stream: true });
    assert.equal(r.events.at(-1), '[DONE]');
    const got = collect(r.events);
    assert.equal(got.reasoning, '');
    assert.equal(got.content, 'Four.');
    assert.ok(!r.raw.includes('reasoning'));
    assert.equal(log().length, 3);
  });

  it('n=2 streamed: two chains with their own choice index', async () => {
    const plain = await chat(base('r1'), { model: MODEL, messages: M, n: 2 });
    assert.equal(plain.status, 200, plain.text);
    fake.reset();
    const r = await sse(url('r1'), { model: MODEL, messages: M, n: 2, stream: true,
      stream_options: { include_usage: true } });
    assert.equal(r.events.at(-1), '[DONE]');
    const calls = log();
    assert.equal(calls.length, 4);
    for (const c of calls) assert.ok(!('n' in c.body));
    const cc = choiceChunks(r.events);
    assert.deepEqual([...new Set(cc.map((c) => c.choices[0].index))].sort(), [0, 1]);
    for (const i of [0, 1]) {
      assert.ok(cc.some((c) => c.choices[0].index === i && c.choices[0].delta.role === 'assistant'), `role for ${i}`);
      const got = collect(r.events, i);
      assert.equal(got.reasoning, 'Answer to: What is 2+2? THINK 100/50.');
      assert.equal(got.content, 'Answer to: ANSWER 50!');
      assert.equal(got.finish, 'stop');
      assert.equal(cc.filter((c) => c.choices[0].index === i && c.choices[0].finish_reason != null).length, 1);
    }
    const usage = chunks(r.events).filter((c) => c.choices.length === 0);
    assert.equal(usage.length, 1);
    assert.deepEqual(usage[0].usage, plain.json.usage);
  });

  it('prefill mode streamed', async () => {
    fake.script({ content: 'a b', finish_reason: 'stop' }, { content: ' c d' }, { content: 'ans' });
    const msgs = [{ role: 'user', content: 'Q?' }];
    const r = await sse(url('pvllm'), { model: MODEL, messages: msgs, stream: true });
    assert.equal(r.events.at(-1), '[DONE]');
    const calls = log();
    assert.equal(calls.length, 3);
    assert.deepEqual(calls.map((c) => c.body.messages.at(-1).content),
      ['<think>\n', '<think>\na bWait', '<think>\na bWait c d</think>\n\n']);
    for (const c of calls) assert.equal(c.body.stream, true);
    const got = collect(r.events);
    assert.equal(got.reasoning, 'a b\nWait\n c d');
    assert.equal(got.content, 'ans');
    assert.equal(got.finish, 'stop');
  });

  it('completions mode streamed', async () => {
    fake.script({ text: 'hmm ok' }, { text: 'Two.' });
    const r = await sse(url('cml'), { model: MODEL, messages: [{ role: 'user', content: 'Q?' }], stream: true,
      stream_options: { include_usage: true } });
    assert.equal(r.events.at(-1), '[DONE]');
    const calls = log();
    assert.equal(calls.length, 2);
    for (const c of calls) {
      assert.equal(c.path, '/v1/completions');
      assert.equal(c.body.stream, true);
    }
    assert.equal(calls[1].body.prompt, '<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<think>\nhmm ok</think>\n\n');
    const got = collect(r.events);
    assert.equal(got.reasoning, 'hmm ok');
    assert.equal(got.content, 'Two.');
    const usage = chunks(r.events).filter((c) => c.choices.length === 0);
    assert.equal(usage.length, 1);
    assert.equal(usage[0].usage.completion_tokens, 3);
    assert.equal(usage[0].usage.completion_tokens_details.reasoning_tokens, 2);
  });

  it('an upstream answering a streamed call with plain JSON is handled', async () => {
    fake.script({ content: 't1 t2', json_for_stream: true }, { content: 'the answer', json_for_stream: true });
    const r = await sse(url('r1'), { model: MODEL, messages: M, stream: true, stream_options: { include_usage: true } });
    assert.equal(r.status, 200);
    assert.equal(r.events.at(-1), '[DONE]');
    const got = collect(r.events);
    assert.equal(got.reasoning, 't1 t2');
    assert.equal(got.content, 'the answer');
    assert.equal(got.finish, 'stop');
    assert.equal(chunks(r.events)[0].choices[0].delta.role, 'assistant');
    const usage = chunks(r.events).filter((c) => c.choices.length === 0);
    assert.equal(usage.length, 1);
    assert.equal(usage[0].usage.completion_tokens, 4);
  });

  for (const field of ['reasoning_content', 'reasoning']) {
    it(`upstream ${field} deltas are relayed as delta.reasoning_content`, async () => {
      fake.script({ [field]: 'r1 r2 r3', content: '' }, { content: 'ans' });
      const r = await sse(url('r1'), { model: MODEL, messages: M, stream: true });
      assert.equal(r.events.at(-1), '[DONE]');
      const got = collect(r.events);
      assert.equal(got.reasoning, 'r1 r2 r3');
      assert.ok(got.reasoningDeltas.length >= 3);
      assert.equal(got.content, 'ans');
      assert.equal(log()[1].body.messages.at(-2).content, 'r1 r2 r3');
    });
  }

  it('answer tool calls stream as delta.tool_calls with finish_reason tool_calls', async () => {
    const tc = [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"C"}' } }];
    fake.script({ content: 'need weather' }, { tool_calls: tc });
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const r = await sse(url('r1'), { model: MODEL, messages: M, tools, stream: true });
    assert.equal(r.events.at(-1), '[DONE]');
    const got = collect(r.events);
    assert.deepEqual(got.toolCalls, tc);
    assert.equal(got.finish, 'tool_calls');
    assert.equal(got.reasoning, 'need weather');
    assert.ok(!('tools' in log()[0].body));
    assert.deepEqual(log()[1].body.tools, tools);
  });

  // ---- faults after the stream started ----

  it('upstream cut mid-stream in round 2: one error event, no [DONE], connection closed', async () => {
    fake.script({ content: 't1' }, { tokens: 10, cut_after: 4 });
    const r = await sse(url('r2'), { model: MODEL, messages: M, stream: true });
    assertStreamFailed(r);
    assert.ok(collect(r.events).reasoning.startsWith('t1\nWAIT?\ntok0'), 'round 2 had started streaming');
    await sleep(200);
    assert.equal(log().length, 2, 'no answer call');
  });

  it('an error status on call 2: one error event, no [DONE]', async () => {
    fake.script({ content: 't1' }, { status: 500, message: 'round two failed' });
    const r = await sse(url('r2'), { model: MODEL, messages: M, stream: true });
    assertStreamFailed(r);
    await sleep(200);
    assert.equal(log().length, 2);
  });

  it('an upstream timeout after the stream started: one upstream_timeout error event', async () => {
    fake.script({ content: 't1' }, { hang: true });
    const t0 = Date.now();
    const r = await sse(url('slow'), { model: MODEL, messages: M, stream: true });
    const err = assertStreamFailed(r);
    assert.equal(err.code, 'upstream_timeout');
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(log().length, 2);
  });

  it('an upstream that stalls mid-stream times out the same way', async () => {
    fake.script({ content: 't1' }, { tokens: 10, hang_after: 3 });
    const r = await sse(url('slow'), { model: MODEL, messages: M, stream: true });
    const err = assertStreamFailed(r);
    assert.equal(err.code, 'upstream_timeout');
    assert.equal(log().length, 2);
  });

  it('a client disconnect aborts the upstream call at once; no further round starts', async () => {
    fake.script({ tokens: 400, token_delay_ms: 20 }, { content: 'x' }, { content: 'y' });
    let cutAt = null;
    const ev0 = fake.state.events;
    const r = await sse(url('r2'), { model: MODEL, messages: M, stream: true }, {
      onEvent: (e, t, req) => {
        if (cutAt == null && e?.choices?.[0]?.delta?.reasoning_content) { cutAt = Date.now(); req.destroy(); }
      },
    });
    assert.ok(cutAt != null, 'got a reasoning delta before disconnecting');
    assert.ok(!r.events.includes('[DONE]'));
    await sleep(200);
    const e1 = fake.state.events - ev0;
    await sleep(600);
    const e2 = fake.state.events - ev0;
    assert.equal(e2, e1, 'the upstream stream stopped (at 20 ms a token it would have sent ~30 more)');
    assert.ok(e1 < 50, `the upstream stopped early (${e1} events)`);
    assert.equal(log().length, 1, 'no further round');
  });

  it('a client disconnect with n=2 aborts both chains', async () => {
    fake.script({ tokens: 400, token_delay_ms: 20 }, { tokens: 400, token_delay_ms: 20 }, { content: 'x' }, { content: 'y' });
    const ev0 = fake.state.events;
    let seen = 0;
    await sse(url('r2'), { model: MODEL, messages: M, n: 2, stream: true }, {
      onEvent: (e, t, req) => {
        if (e?.choices?.[0]?.delta?.reasoning_content && ++seen === 4) req.destroy();
      },
    });
    await sleep(200);
    const e1 = fake.state.events - ev0;
    await sleep(600);
    assert.equal(fake.state.events - ev0, e1, 'both upstream streams stopped');
    assert.equal(log().length, 2, 'no further round');
  });

  // ---- backpressure ----
  // The stream must be far larger than what the loopback sockets can hold (the kernel here lets a
  // receive buffer grow to 32 MB): N tokens of ~4 KB each, ~64 MB in all.
  const N = 16000;
  const BIG = Array.from({ length: N }, (_, i) => (i ? ' ' : '') + 'x'.repeat(4000) + i).join('');

  /** Starts a streamed request, stops reading after the first bytes, checks that the upstream
   * stalls and ponder's RSS stays flat, then reads the rest. Returns {count, content bytes,
   * last content delta, last event}. */
  async function slowReader(routeName, specs, total, extra = {}) {
    fake.script(...specs);
    const pid = p.proc.pid;
    const rss0 = rssKB(pid);
    const ev0 = fake.state.events;
    const out = { events: 0, contentBytes: 0, lastContent: null, last: null, reasoning: '', status: 0 };
    let res = null;
    let pending = '';
    const started = new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p.port, path: `/${routeName}/v1/chat/completions`,
        method: 'POST', agent: false, headers: { 'content-type': 'application/json' } });
      req.on('error', reject);
      req.on('response', (r) => {
        res = r;
        out.status = r.statusCode;
        r.setEncoding('utf8');
        r.on('error', () => {});
        r.on('data', (d) => {
          pending += d;
          let i;
          while ((i = pending.indexOf('\n\n')) >= 0) {
            const block = pending.slice(0, i + 2);
            pending = pending.slice(i + 2);
            for (const ev of parseSSE(block)) {
              out.events++;
              out.last = ev;
              const delta = ev?.choices?.[0]?.delta;
              if (typeof delta?.content === 'string' && delta.content) {
                out.contentBytes += delta.content.length;
                out.lastContent = delta.content;
              }
              if (typeof delta?.reasoning_content === 'string') out.reasoning += delta.reasoning_content;
            }
          }
        });
        r.pause(); // read nothing more for now
        resolve();
      });
      req.end(JSON.stringify({ model: MODEL, messages: M, stream: true, ...extra }));
    });
    await started;
    try {
      // Let the pipeline fill up while nothing is read.
      let prev = -1;
      for (let i = 0; i < 40; i++) {
        await sleep(250);
        const e = fake.state.events;
        if (e === prev && e > ev0) break;
        prev = e;
      }
      const stalledA = fake.state.events - ev0;
      const rssA = rssKB(pid);
      await sleep(1000);
      const stalledB = fake.state.events - ev0;
      const rssB = rssKB(pid);
      const info = `(${stalledB} of ${total} events, ponder RSS +${rssB - rss0} kB)`;
      // Under AddressSanitizer freed memory sits in ASan's quarantine instead of being reused,
      // so RSS grows with allocation churn alone; the bound there only catches runaway growth.
      // The normal build is held to the tight bound.
      const limitKb = (process.env.ASAN_OPTIONS ? 160 : 20) * 1024;
      assert.ok(rssB - rss0 < limitKb, `ponder RSS grew by ${(rssB - rss0) / 1024} MB ${info}`);
      assert.ok(rssB - rssA < 2 * 1024, `RSS flat while paused ${info}`);
      assert.equal(stalledB, stalledA, `the upstream is paused while the client does not read ${info}`);
      assert.ok(stalledB < total, `the upstream did not run to its end ${info}`);
    } catch (e) {
      res.destroy();
      throw e;
    }
    // Reading again resumes the upstream and the stream completes.
    const ended = new Promise((resolve) => { res.on('end', resolve); res.on('close', resolve); });
    res.resume();
    await ended;
    assert.equal(out.status, 200);
    assert.equal(res.complete, true);
    assert.equal(out.last, '[DONE]');
    return out;
  }

  it('backpressure (R=0 pass-through): a slow reader pauses the upstream, RSS stays flat', async () => {
    const out = await slowReader('r0', [{ content: BIG }], N + 4);
    assert.equal(out.contentBytes, BIG.length);
    assert.equal(out.lastContent, ' ' + 'x'.repeat(4000) + (N - 1));
  });

  it('backpressure (answer call of R=1): a slow reader pauses the upstream, RSS stays flat', async () => {
    const out = await slowReader('r1', [{ content: 'short thought' }, { content: BIG }], N + 10,
      { max_tokens: N + 10 });
    assert.equal(out.reasoning, 'short thought');
    assert.equal(out.contentBytes, BIG.length);
    assert.equal(out.lastContent, ' ' + 'x'.repeat(4000) + (N - 1));
  });
});
