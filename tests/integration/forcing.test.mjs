// Integration tests: non-streamed budget-forced exchanges (SPEC section 5) against the fake
// upstream. The fake's log is used to assert the exact upstream calls.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startPonder, startFake, configFor, chat, sleep, chatPolicy, prefillPolicy, route } from '../lib/harness.mjs';

const MODEL = 'gpt-think';

const THINK_ONLY_DROPPED = ['tools', 'tool_choice', 'parallel_tool_calls', 'response_format', 'stop',
  'logprobs', 'top_logprobs', 'n'];

const M = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'What is 2+2?' },
];

// The chat-mode message sequence of SPEC section 5 for the replies `segs` (prompts substituted).
function mPrime(msgs, think) {
  const m = structuredClone(msgs);
  for (let i = m.length - 1; i >= 0; i--) {
    if (m[i].role === 'user') { m[i].content += '\n\n' + think; break; }
  }
  return m;
}
function chatCalls(msgs, segs, pr) {
  const base = mPrime(msgs, pr.think);
  const calls = [];
  const pairs = [];
  for (const s of segs) {
    calls.push([...base, ...pairs]);
    pairs.push({ role: 'assistant', content: s + '\n' + pr.wait }, { role: 'user', content: pr.cont });
  }
  calls.push([...base, ...pairs.slice(0, -2), { role: 'assistant', content: segs.at(-1) },
    { role: 'user', content: pr.answer }]);
  return calls;
}
const CUSTOM = { think: 'THINK 100/50.', wait: 'WAIT?', cont: 'CONTINUE 100.', answer: 'ANSWER 50!' };
const toks = (from, n) => Array.from({ length: n }, (_, i) => `tok${from + i}`).join(' ');

describe('forcing (non-streamed)', () => {
  let fake, p;
  const base = (name) => (name ? `${p.url}/${name}/v1` : p.base);
  const log = () => fake.log.filter((e) => !e.path.startsWith('/_fake/'));

  // Replays the logged upstream requests against the fake (same scripted specs, no streaming) and
  // returns the fake's own usage of each call.
  async function fakeUsages(entries, specs = []) {
    fake.reset();
    const out = [];
    for (let i = 0; i < entries.length; i++) {
      fake.script(specs[i] ?? {});
      const body = { ...entries[i].body };
      delete body.stream;
      delete body.stream_options;
      const r = await fetch(fake.url + entries[i].path, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      });
      out.push((await r.json()).usage);
    }
    fake.reset();
    return out;
  }
  function expectedUsage(usages, thinkingCalls) {
    const sum = (k, arr = usages) => arr.reduce((a, u) => a + u[k], 0);
    return {
      prompt_tokens: sum('prompt_tokens'),
      completion_tokens: sum('completion_tokens'),
      total_tokens: sum('total_tokens'),
      completion_tokens_details: {
        reasoning_tokens: sum('completion_tokens', usages.slice(0, thinkingCalls)),
      },
    };
  }
  function assertHeaders(r, routeName, rounds) {
    assert.equal(r.headers.get('x-ponder-route'), routeName);
    assert.equal(r.headers.get('x-ponder-variant'), 'default');
    assert.equal(r.headers.get('x-ponder-rounds'), String(rounds));
  }

  before(async () => {
    fake = await startFake({ port: 0 });
    const cfg = configFor(fake);
    cfg.upstreams.push({ name: 'fake-mct', base_url: `${fake.url}/v1`, retries: 0, timeout_ms: 5000,
      connect_timeout_ms: 2000, token_limit_param: 'max_completion_tokens' });
    cfg.upstreams.push({ name: 'slow', base_url: `${fake.url}/v1`, retries: 0, timeout_ms: 500,
      connect_timeout_ms: 2000 });
    cfg.routes = [
      route('r1', chatPolicy(1)),
      route('r2', chatPolicy(2)),
      route('r6', chatPolicy(6)),
      route('def', { rounds: 2 }),
      route('inline', chatPolicy(2), { reasoning: 'inline' }),
      route('hidden', chatPolicy(2), { reasoning: 'hidden' }),
      route('mapped', chatPolicy(1), { model: 'upstream-model' }),
      route('minthink', chatPolicy(4, { min_think_tokens: 10 })),
      route('maxthink', chatPolicy(4, { think_budget: 8, max_think_tokens: 12 })),
      route('pvllm', prefillPolicy('vllm')),
      route('pdeepseek', prefillPolicy('deepseek')),
      route('pmistral', prefillPolicy('mistral')),
      route('pllamacpp', prefillPolicy('llamacpp')),
      route('cml', { mode: 'completions', rounds: 1, think_budget: 10, answer_budget: 50 }),
      route('ctpl', {
        mode: 'completions', rounds: 2, think_budget: 10, answer_budget: 50,
        prefill: { wait: ' Hmm' },
        template: { system: 'S: {content}\n', user: 'U: {content}\n', assistant: 'A: {content}\n',
          assistant_start: 'A: ' },
      }),
      route('pmin', { mode: 'prefill', rounds: 3, think_budget: 10, answer_budget: 50, min_think_tokens: 5 }),
      route('pmax', { mode: 'prefill', rounds: 3, think_budget: 10, answer_budget: 50, max_think_tokens: 15 }),
      route('mct', chatPolicy(1), { upstream: 'fake-mct' }),
      route('slow', chatPolicy(2), { upstream: 'slow' }),
      route('ovr', chatPolicy(2), { allow_overrides: true }),
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

  for (const R of [1, 2, 6]) {
    it(`chat mode R=${R}: exact upstream calls, merged completion, summed usage, headers`, async () => {
      const segs = Array.from({ length: R }, (_, i) => `thought number ${i + 1}`);
      const specs = [...segs.map((s) => ({ content: s })), { content: 'The answer is 4.' }];
      fake.script(...specs);
      const r = await chat(base(`r${R}`), { model: MODEL, messages: M });
      assert.equal(r.status, 200, r.text);
      const calls = log();
      assert.equal(calls.length, R + 1);
      const want = chatCalls(M, segs, CUSTOM);
      calls.forEach((c, i) => {
        const answer = i === R;
        assert.equal(c.method, 'POST');
        assert.equal(c.path, '/v1/chat/completions');
        assert.equal(c.body.model, MODEL);
        assert.deepEqual(c.body.messages, want[i], `messages of call ${i + 1}`);
        assert.equal(c.body.max_tokens, answer ? 50 : 100, `max_tokens of call ${i + 1}`);
        assert.ok(!('max_completion_tokens' in c.body));
        assert.ok(!('stream' in c.body) || c.body.stream === false, 'non-streamed calls');
        for (const k of THINK_ONLY_DROPPED) assert.ok(!(k in c.body), `${k} absent in call ${i + 1}`);
      });
      const j = r.json;
      assert.equal(j.object, 'chat.completion');
      assert.match(j.id, /^chatcmpl-/);
      assert.equal(j.model, MODEL);
      assert.equal(j.choices.length, 1);
      assert.equal(j.choices[0].index, 0);
      assert.equal(j.choices[0].message.role, 'assistant');
      assert.equal(j.choices[0].message.content, 'The answer is 4.');
      assert.equal(j.choices[0].message.reasoning_content, segs.join('\nWAIT?\n'));
      assert.equal(j.choices[0].finish_reason, 'stop');
      assertHeaders(r, `r${R}`, R);
      const usages = await fakeUsages(calls, specs);
      assert.deepEqual(j.usage, expectedUsage(usages, R));
    });
  }

  it('default prompts are substituted with the default budgets', async () => {
    fake.script({ content: 'alpha' }, { content: 'beta' }, { content: 'done' });
    const r = await chat(base('def'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3);
    const cont = 'Continue your thinking where you left off, correcting any mistakes if there is any. ' +
      'Think for up to 8192 tokens.';
    const want = chatCalls(M, ['alpha', 'beta'], {
      think: 'Think for up to 8192 tokens.', wait: 'Wait? Did I make a mistake?', cont,
      answer: 'Now provide the final answer. Respond in under 2048 tokens!!!',
    });
    calls.forEach((c, i) => assert.deepEqual(c.body.messages, want[i]));
    assert.deepEqual(calls.map((c) => c.body.max_tokens), [8192, 8192, 2048]);
    assert.equal(r.json.choices[0].message.reasoning_content, 'alpha\nWait? Did I make a mistake?\nbeta');
  });

  it('array content of the last user message gets a text part appended', async () => {
    const msgs = [{ role: 'user', content: [{ type: 'text', text: 'Look at this.' }] }];
    fake.script({ content: 'seen' }, { content: 'ok' });
    const r = await chat(base('r1'), { model: MODEL, messages: msgs });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[0].body.messages, [{ role: 'user', content: [
      { type: 'text', text: 'Look at this.' }, { type: 'text', text: '\n\nTHINK 100/50.' }] }]);
  });

  it('reasoning inline: <think> block before the content', async () => {
    fake.script({ content: 'one' }, { content: 'two' }, { content: 'Four.' });
    const r = await chat(base('inline'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const msg = r.json.choices[0].message;
    assert.equal(msg.content, '<think>\none\nWAIT?\ntwo\n</think>\n\nFour.');
    assert.ok(!('reasoning_content' in msg));
    assertHeaders(r, 'inline', 2);
  });

  it('reasoning hidden: no thinking in the response, usage still counts it', async () => {
    const specs = [{ content: 'one' }, { content: 'two' }, { content: 'Four.' }];
    fake.script(...specs);
    const r = await chat(base('hidden'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const msg = r.json.choices[0].message;
    assert.equal(msg.content, 'Four.');
    assert.ok(!('reasoning_content' in msg));
    assert.ok(!('reasoning' in msg));
    const calls = log();
    assert.equal(calls.length, 3);
    assertHeaders(r, 'hidden', 2);
    assert.deepEqual(r.json.usage, expectedUsage(await fakeUsages(calls, specs), 2));
  });

  it('route.model: the upstream sees the mapped model, the client the requested one', async () => {
    fake.script({ content: 'hmm' }, { content: 'yes' });
    const r = await chat(base('mapped'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 2);
    for (const c of calls) assert.equal(c.body.model, 'upstream-model');
    assert.equal(r.json.model, MODEL);
  });

  it('min_think_tokens: short replies force more rounds until the minimum is reached', async () => {
    const specs = [{ content: 'a b c' }, { content: 'd e f' }, { content: 'g h i j k' }, { content: 'ANS' }];
    fake.script(...specs);
    const r = await chat(base('minthink'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 4, '3 thinking calls (3+3+5 >= 10) + answer');
    assert.deepEqual(calls.map((c) => c.body.messages), chatCalls(M, ['a b c', 'd e f', 'g h i j k'], CUSTOM));
    assert.equal(r.json.choices[0].message.content, 'ANS');
    assertHeaders(r, 'minthink', 3);
    assert.deepEqual(r.json.usage, expectedUsage(await fakeUsages(calls, specs), 3));
  });

  it('min_think_tokens: capped at rounds', async () => {
    const specs = [{ content: 'a' }, { content: 'b' }, { content: 'c' }, { content: 'd' }, { content: 'ANS' }];
    fake.script(...specs);
    const r = await chat(base('minthink'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 5, '4 thinking calls (the cap) + answer');
    assert.equal(calls[4].body.messages.at(-1).content, 'ANSWER 50!');
    assertHeaders(r, 'minthink', 4);
    assert.equal(r.json.choices[0].message.reasoning_content, 'a\nWAIT?\nb\nWAIT?\nc\nWAIT?\nd');
  });

  it('min_think_tokens: one long reply is enough', async () => {
    fake.script({ content: toks(0, 12) }, { content: 'ANS' });
    const r = await chat(base('minthink'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    assert.equal(log().length, 2);
    assertHeaders(r, 'minthink', 1);
  });

  it('max_think_tokens: limits shrink to what is left and thinking stops once spent', async () => {
    const specs = [{ tokens: 20 }, { tokens: 20 }, { content: 'ANS' }];
    fake.script(...specs);
    const r = await chat(base('maxthink'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3, '8 + 4 = 12 thinking tokens, then the answer');
    assert.deepEqual(calls.map((c) => c.body.max_tokens), [8, 4, 50]);
    const s1 = toks(0, 8);
    const s2 = toks(0, 4);
    const mp = mPrime(M, 'THINK 8/50.');
    assert.deepEqual(calls[0].body.messages, mp);
    assert.deepEqual(calls[1].body.messages, [...mp, { role: 'assistant', content: s1 + '\nWAIT?' },
      { role: 'user', content: 'CONTINUE 4.' }]);
    assert.deepEqual(calls[2].body.messages, [...mp, { role: 'assistant', content: s1 + '\nWAIT?' },
      { role: 'user', content: 'CONTINUE 4.' }, { role: 'assistant', content: s2 },
      { role: 'user', content: 'ANSWER 50!' }]);
    assertHeaders(r, 'maxthink', 2);
    assert.equal(r.json.choices[0].message.reasoning_content, s1 + '\nWAIT?\n' + s2);
    assert.equal(r.json.usage.completion_tokens_details.reasoning_tokens, 12);
  });

  // ---- prefill mode ----

  const DIALECT_FLAGS = {
    vllm: { body: { continue_final_message: true, add_generation_prompt: false }, msg: {} },
    deepseek: { body: {}, msg: { prefix: true } },
    mistral: { body: {}, msg: { prefix: true } },
    llamacpp: { body: {}, msg: {} },
  };
  const PREFILL_ROUTE = { vllm: 'pvllm', deepseek: 'pdeepseek', mistral: 'pmistral', llamacpp: 'pllamacpp' };

  for (const dialect of Object.keys(DIALECT_FLAGS)) {
    it(`prefill ${dialect}: ignore end-of-thinking, length cut, answer prefix`, async () => {
      const flags = DIALECT_FLAGS[dialect];
      const specs = [{ content: 'Let me see.', finish_reason: 'stop' }, { tokens: 30 }, { content: 'It is 4.' }];
      fake.script(...specs);
      const msgs = [{ role: 'user', content: 'What is 2+2?' }];
      const r = await chat(base(PREFILL_ROUTE[dialect]), { model: MODEL, messages: msgs });
      assert.equal(r.status, 200, r.text);
      const calls = log();
      assert.equal(calls.length, 3);
      const s2 = toks(0, 10);
      const prefixes = [
        '<think>\n',
        '<think>\nLet me see.Wait', // stopped by itself: "Wait" appended
        '<think>\nLet me see.Wait' + s2 + '\n</think>\nFinal Answer:\n\n', // cut by the limit
      ];
      calls.forEach((c, i) => {
        const answer = i === 2;
        assert.equal(c.path, '/v1/chat/completions');
        assert.equal(c.body.model, MODEL);
        assert.deepEqual(c.body.messages, [...msgs, { role: 'assistant', content: prefixes[i], ...flags.msg }],
          `messages of call ${i + 1}`);
        for (const k of ['continue_final_message', 'add_generation_prompt']) {
          assert.equal(c.body[k], flags.body[k], `${k} of call ${i + 1}`);
        }
        if (answer) assert.ok(!('stop' in c.body), 'no stop of ponder on the answer call');
        else assert.deepEqual(c.body.stop, ['</think>']);
        assert.equal(c.body.max_tokens, answer ? 50 : 10);
      });
      const j = r.json;
      assert.equal(j.choices[0].message.content, 'It is 4.');
      assert.equal(j.choices[0].message.reasoning_content, 'Let me see.\nWait\n' + s2);
      assert.equal(j.model, MODEL);
      assertHeaders(r, PREFILL_ROUTE[dialect], 2);
      assert.deepEqual(j.usage, expectedUsage(await fakeUsages(calls, specs), 2));
    });
  }

  it('prefill: a length cut continues without wait; no extra "\\n" when the text ends in one', async () => {
    fake.script({ content: 'a b c\n', finish_reason: 'length' }, { content: 'd e\n', finish_reason: 'length' },
      { content: 'X' });
    const msgs = [{ role: 'user', content: 'Q?' }];
    const r = await chat(base('pvllm'), { model: MODEL, messages: msgs });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3);
    assert.deepEqual(calls.map((c) => c.body.messages.at(-1).content), [
      '<think>\n', '<think>\na b c\n', '<think>\na b c\nd e\n</think>\nFinal Answer:\n\n']);
    assert.equal(r.json.choices[0].message.reasoning_content, 'a b c\nd e\n');
  });

  it('prefill: natural stops close thinking without length_cut; the think_close stop is honoured', async () => {
    fake.script({ content: 'A.' }, { content: 'B.</think>leaked answer' }, { content: 'X' });
    const msgs = [{ role: 'user', content: 'Q?' }];
    const r = await chat(base('pvllm'), { model: MODEL, messages: msgs });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.deepEqual(calls.map((c) => c.body.messages.at(-1).content), [
      '<think>\n', '<think>\nA.Wait', '<think>\nA.WaitB.</think>\n\n']);
    assert.equal(r.json.choices[0].message.reasoning_content, 'A.\nWait\nB.');
    assert.equal(r.json.choices[0].message.content, 'X');
  });

  it('prefill + min_think_tokens: a short natural stop gets "Wait", enough thinking ends it', async () => {
    fake.script({ content: 'a b' }, { content: ' c d e f' }, { content: 'X' });
    const r = await chat(base('pmin'), { model: MODEL, messages: [{ role: 'user', content: 'Q?' }] });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.deepEqual(calls.map((c) => c.body.messages.at(-1).content), [
      '<think>\n', '<think>\na bWait', '<think>\na bWait c d e f</think>\n\n']);
    assertHeaders(r, 'pmin', 2);
  });

  it('prefill + max_think_tokens: limits shrink, the budget cut closes with length_cut', async () => {
    fake.script({ tokens: 30 }, { tokens: 30 }, { content: 'X' });
    const r = await chat(base('pmax'), { model: MODEL, messages: [{ role: 'user', content: 'Q?' }] });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3);
    assert.deepEqual(calls.map((c) => c.body.max_tokens), [10, 5, 50]);
    assert.deepEqual(calls.map((c) => c.body.messages.at(-1).content), [
      '<think>\n', '<think>\n' + toks(0, 10),
      '<think>\n' + toks(0, 10) + toks(0, 5) + '\n</think>\nFinal Answer:\n\n']);
    assertHeaders(r, 'pmax', 2);
    assert.equal(r.json.usage.completion_tokens_details.reasoning_tokens, 15);
  });

  // ---- completions mode ----

  it('completions mode, chatml: rendered prompt to /v1/completions', async () => {
    const msgs = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Q one?' },
      { role: 'assistant', content: 'A one.' },
      { role: 'user', content: 'Q two?' },
    ];
    const specs = [{ text: 'hmm ok' }, { text: 'Two.' }];
    fake.script(...specs);
    const r = await chat(base('cml'), { model: MODEL, messages: msgs, temperature: 0.5 });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 2);
    const rendered = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ one?<|im_end|>\n' +
      '<|im_start|>assistant\nA one.<|im_end|>\n<|im_start|>user\nQ two?<|im_end|>\n<|im_start|>assistant\n';
    for (const c of calls) {
      assert.equal(c.path, '/v1/completions');
      assert.ok(!('messages' in c.body));
    }
    assert.deepEqual(calls[0].body, { model: MODEL, prompt: rendered + '<think>\n', max_tokens: 10,
      temperature: 0.5, stop: ['</think>'] });
    assert.deepEqual(calls[1].body, { model: MODEL, prompt: rendered + '<think>\nhmm ok</think>\n\n',
      max_tokens: 50, temperature: 0.5 });
    const j = r.json;
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, MODEL);
    assert.equal(j.choices[0].message.content, 'Two.');
    assert.equal(j.choices[0].message.reasoning_content, 'hmm ok');
    assertHeaders(r, 'cml', 1);
    assert.deepEqual(j.usage, expectedUsage(await fakeUsages(calls, specs), 1));
  });

  it('completions mode, custom template and wait; the client stop only on the answer call', async () => {
    fake.script({ text: 'x y' }, { text: 'z' }, { text: 'ANS' });
    const r = await chat(base('ctpl'), { model: MODEL, messages: [{ role: 'user', content: 'Q?' }], stop: ['END'] });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3);
    assert.deepEqual(calls.map((c) => c.body.prompt), [
      'U: Q?\nA: <think>\n', 'U: Q?\nA: <think>\nx y Hmm', 'U: Q?\nA: <think>\nx y Hmmz</think>\n\n']);
    assert.deepEqual(calls.map((c) => c.body.stop), [['</think>'], ['</think>'], ['END']]);
    assert.equal(r.json.choices[0].message.reasoning_content, 'x y\n Hmm\nz');
    assert.equal(r.json.choices[0].message.content, 'ANS');
  });

  // ---- field rules ----

  const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];

  it('client fields: answer-shaping ones only on the answer call, sampling ones on every call', async () => {
    const sampling = { temperature: 0.3, top_p: 0.9, seed: 7, user: 'u-1', frequency_penalty: 0.1,
      presence_penalty: 0.2, logit_bias: { 50256: -100 } };
    const shaping = { tools: TOOLS, tool_choice: 'auto', parallel_tool_calls: false,
      response_format: { type: 'json_object' }, stop: ['END'], logprobs: true, top_logprobs: 2 };
    fake.script({ content: 't1' }, { content: 't2' }, { content: '{"a":1}' });
    const r = await chat(p.base, { model: MODEL, messages: M, ...sampling, ...shaping, max_tokens: 20 });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3);
    for (const [i, c] of calls.entries()) {
      for (const [k, v] of Object.entries(sampling)) assert.deepEqual(c.body[k], v, `${k} on call ${i + 1}`);
    }
    for (const c of calls.slice(0, 2)) {
      for (const k of THINK_ONLY_DROPPED) assert.ok(!(k in c.body), `${k} absent on a thinking call`);
      assert.equal(c.body.max_tokens, 100, 'thinking calls use think_budget, not the client limit');
    }
    const a = calls[2].body;
    for (const [k, v] of Object.entries(shaping)) assert.deepEqual(a[k], v, `${k} on the answer call`);
    assert.equal(a.max_tokens, 20, "the client's max_tokens limits the answer call");
    assertHeaders(r, 'main', 2);
  });

  it("client max_completion_tokens limits only the answer call", async () => {
    fake.script({ content: 't1' }, { content: 't2' }, { content: 'ok' });
    const r = await chat(p.base, { model: MODEL, messages: M, max_completion_tokens: 30 });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 3);
    for (const c of calls.slice(0, 2)) {
      assert.equal(c.body.max_tokens, 100);
      assert.ok(!('max_completion_tokens' in c.body));
    }
    assert.equal(calls[2].body.max_completion_tokens, 30);
  });

  it('token_limit_param max_completion_tokens: ponder sets that parameter', async () => {
    fake.script({ content: 't1' }, { content: 'ok' });
    const r = await chat(base('mct'), { model: MODEL, messages: M });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((c) => [c.body.max_completion_tokens, 'max_tokens' in c.body]), [[100, false], [50, false]]);
  });

  it('n=2: two chains (2R+2 calls), two choices', async () => {
    const r = await chat(base('r1'), { model: MODEL, messages: M, n: 2 });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 4);
    for (const c of calls) assert.ok(!('n' in c.body), 'n is never sent upstream');
    const thinking = calls.filter((c) => c.body.max_tokens === 100);
    assert.equal(thinking.length, 2);
    assert.deepEqual(thinking[0].body, thinking[1].body);
    const j = r.json;
    assert.equal(j.choices.length, 2);
    assert.deepEqual(j.choices.map((c) => c.index), [0, 1]);
    const seg = 'Answer to: ' + 'What is 2+2?\n\nTHINK 100/50.'.split(/\s+/).slice(-8).join(' ');
    for (const c of j.choices) {
      assert.equal(c.message.reasoning_content, seg);
      assert.equal(c.message.content, 'Answer to: ANSWER 50!');
      assert.equal(c.finish_reason, 'stop');
    }
    const usages = await fakeUsages(calls);
    const sum = (k) => usages.reduce((a, u) => a + u[k], 0);
    assert.equal(j.usage.prompt_tokens, sum('prompt_tokens'));
    assert.equal(j.usage.completion_tokens, sum('completion_tokens'));
    assert.equal(j.usage.total_tokens, sum('total_tokens'));
    assert.equal(j.usage.completion_tokens_details.reasoning_tokens,
      calls.reduce((a, c, i) => a + (c.body.max_tokens === 100 ? usages[i].completion_tokens : 0), 0));
  });

  it('an answer with tool calls: message.tool_calls and finish_reason tool_calls', async () => {
    const tc = [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }];
    fake.script({ content: 'need weather' }, { tool_calls: tc });
    const r = await chat(base('r1'), { model: MODEL, messages: M, tools: TOOLS });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 2);
    assert.ok(!('tools' in calls[0].body));
    assert.deepEqual(calls[1].body.tools, TOOLS);
    const c = r.json.choices[0];
    assert.deepEqual(c.message.tool_calls, tc);
    assert.equal(c.message.content, null);
    assert.equal(c.message.reasoning_content, 'need weather');
    assert.equal(c.finish_reason, 'tool_calls');
  });

  it('last message not from the user: one pass-through call (model mapped, ponder removed)', async () => {
    const msgs = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'Sunny, 21C' },
    ];
    const req = { model: MODEL, messages: msgs, tools: TOOLS, temperature: 0.2, ponder: {} };
    fake.script({ content: 'It is sunny.' });
    const r = await chat(base('mapped'), req);
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 1);
    const want = { ...req, model: 'upstream-model' };
    delete want.ponder;
    assert.deepEqual(calls[0].body, want);
    assert.equal(r.json.choices[0].message.content, 'It is sunny.');
    assertHeaders(r, 'mapped', 0);
  });

  it('the ponder field is never forwarded', async () => {
    fake.script({ content: 't' }, { content: 'a' });
    const r = await chat(base('ovr'), { model: MODEL, messages: M, ponder: { rounds: 1 } });
    assert.equal(r.status, 200, r.text);
    const calls = log();
    assert.equal(calls.length, 2);
    for (const c of calls) assert.ok(!('ponder' in c.body));
    assertHeaders(r, 'ovr', 1);
  });

  for (const field of ['reasoning_content', 'reasoning']) {
    it(`upstream ${field} in a thinking reply counts as thinking`, async () => {
      const specs = [{ [field]: 'deep thought here', content: '' }, { content: 'ANS' }];
      fake.script(...specs);
      const r = await chat(base('r1'), { model: MODEL, messages: M });
      assert.equal(r.status, 200, r.text);
      const calls = log();
      assert.equal(calls.length, 2);
      assert.deepEqual(calls[1].body.messages.slice(-2), [
        { role: 'assistant', content: 'deep thought here' }, { role: 'user', content: 'ANSWER 50!' }]);
      assert.equal(r.json.choices[0].message.reasoning_content, 'deep thought here');
      assert.equal(r.json.choices[0].message.content, 'ANS');
      assert.deepEqual(r.json.usage, expectedUsage(await fakeUsages(calls, specs), 1));
      assert.equal(r.json.usage.completion_tokens_details.reasoning_tokens, 3);
    });
  }

  // ---- failures ----

  it('an OpenAI-shaped 500 in round 2: that status and body, no further calls', async () => {
    fake.script({ content: 't1' }, { status: 500, message: 'boom in round 2' });
    const r = await chat(base('r2'), { model: MODEL, messages: M });
    assert.equal(r.status, 500);
    assert.deepEqual(r.json, { error: { message: 'boom in round 2', type: 'server_error', param: null,
      code: 'server_error' } });
    await sleep(300);
    assert.equal(log().length, 2);
  });

  it('a 429 in round 1 is returned with its body and retry-after', async () => {
    fake.script({ status: 429, retry_after: 7 });
    const r = await chat(base('r2'), { model: MODEL, messages: M });
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, 'rate_limit_exceeded');
    assert.equal(r.headers.get('retry-after'), '7');
    await sleep(200);
    assert.equal(log().length, 1);
  });

  it('an upstream timeout in round 2: 504 upstream_timeout, no further calls', async () => {
    fake.script({ content: 't1' }, { hang: true });
    const t0 = Date.now();
    const r = await chat(base('slow'), { model: MODEL, messages: M });
    assert.equal(r.status, 504);
    assert.equal(r.json.error.code, 'upstream_timeout');
    assert.ok(Date.now() - t0 < 3000);
    await sleep(200);
    assert.equal(log().length, 2);
  });

  it('a reply cut mid-body in round 2: 502 upstream_error, no further calls', async () => {
    fake.script({ content: 't1' }, { content: 'some longer thinking text', cut_after: 40 });
    const r = await chat(base('r2'), { model: MODEL, messages: M });
    assert.equal(r.status, 502);
    assert.equal(r.json.error.type, 'upstream_error');
    await sleep(200);
    assert.equal(log().length, 2);
  });

  it('a non-OpenAI error or invalid JSON in a round: 502 upstream_error', async () => {
    fake.script({ content: 't1' }, { plain_status_body: 'bad gateway', status: 503 });
    let r = await chat(base('r2'), { model: MODEL, messages: M });
    assert.equal(r.status, 502);
    assert.equal(r.json.error.type, 'upstream_error');
    assert.equal(log().length, 2);
    fake.reset();
    fake.script({ invalid_json: true });
    r = await chat(base('r2'), { model: MODEL, messages: M });
    assert.equal(r.status, 502);
    assert.equal(r.json.error.type, 'upstream_error');
    await sleep(200);
    assert.equal(log().length, 1);
  });
});
