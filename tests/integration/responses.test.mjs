// Integration tests of POST [prefix]/v1/responses on the wire (SPEC section 10), against the fake
// upstream: for every forcing mode x display x stream, the event order, sequence numbers, no
// [DONE], usage sums, and that the upstream calls are exactly those the same request through
// /v1/chat/completions makes, with the same usage; rounds 0 as one translated call; the 400s;
// a client abort mid-stream; keep-alive comments in hidden mode.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startPonder, startFake, configFor, chat, parseSSE, sleep, chatPolicy, route } from '../lib/harness.mjs';

const MODEL = 'gpt-think';
const INSTR = 'You are terse.';
const Q = 'What is two plus two?';
const MSGS = [{ role: 'system', content: INSTR }, { role: 'user', content: Q }];

const MODES = {
  chat: chatPolicy(2),
  prefill: { mode: 'prefill', rounds: 2, think_budget: 10, answer_budget: 50 },
  completions: { mode: 'completions', rounds: 1, think_budget: 10, answer_budget: 50 },
};
const DISPLAYS = ['field', 'inline', 'hidden'];

/** POST over node:http; resolves on close with {status, headers, raw, complete}. onData(raw, req)
 * sees the body as it grows. */
function post(url, body, { onData } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json' },
    });
    req.on('error', (e) => { if (!req.res) reject(e); });
    req.on('response', (res) => {
      let raw = '';
      let done = false;
      res.setEncoding('utf8');
      res.on('data', (d) => { raw += d; onData?.(raw, req); });
      res.on('error', () => {});
      res.on('aborted', () => {});
      const finish = () => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode, headers: res.headers, raw, complete: res.complete });
      };
      res.on('end', finish);
      res.on('close', finish);
    });
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

/** A Responses event stream: every event an `event:` line naming data.type, sequence numbers
 * 0, 1, 2..., no [DONE]; comment lines (keep-alive) skipped. Returns the data objects. */
function responsesEvents(raw) {
  assert.ok(!raw.includes('[DONE]'), 'no [DONE] in a Responses stream');
  const out = [];
  for (const block of raw.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l && !l.startsWith(':'));
    if (!lines.length) continue;
    assert.equal(lines.length, 2, `one event line and one data line: ${block}`);
    assert.ok(lines[0].startsWith('event: '), block);
    assert.ok(lines[1].startsWith('data: '), block);
    const data = JSON.parse(lines[1].slice(6));
    assert.equal(lines[0].slice(7), data.type);
    assert.equal(data.sequence_number, out.length, 'sequence numbers count from 0');
    out.push(data);
  }
  return out;
}

/** Checks the order of a stream's events (SPEC 10) and returns {text, reasoning, final}. */
function checkStream(events, display) {
  const types = events.map((e) => e.type);
  assert.deepEqual(types.slice(0, 2), ['response.created', 'response.in_progress']);
  assert.equal(events[0].response.status, 'in_progress');
  assert.deepEqual(events[0].response.output, []);
  const last = events.at(-1);
  assert.equal(last.type, 'response.completed');
  assert.equal(types.filter((t) => t === 'response.completed').length, 1);
  let reasoning = '';
  let text = '';
  // Items open and close one at a time, each with its own .added ... .done.
  let open = null;
  for (const e of events.slice(2, -1)) {
    if (e.type === 'response.output_item.added') {
      assert.equal(open, null, 'one item open at a time');
      open = e.item;
    } else if (e.type === 'response.output_item.done') {
      assert.equal(e.item.id, open.id);
      open = null;
    } else {
      assert.ok(open, `${e.type} inside an item`);
      if ('item_id' in e) assert.equal(e.item_id, open.id);
    }
    if (e.type === 'response.reasoning_text.delta') reasoning += e.delta;
    if (e.type === 'response.output_text.delta') text += e.delta;
  }
  assert.equal(open, null, 'every item closed');
  const rItems = last.response.output.filter((o) => o.type === 'reasoning');
  if (display === 'field') {
    assert.equal(rItems.length, 1);
    assert.ok(reasoning.length > 0);
    assert.equal(rItems[0].content[0].text, reasoning);
    assert.ok(types.indexOf('response.reasoning_text.done') < types.indexOf('response.output_text.delta'),
              'thinking before the answer');
  } else {
    assert.equal(rItems.length, 0, `no reasoning item in ${display}`);
    assert.equal(reasoning, '');
  }
  const msg = last.response.output.find((o) => o.type === 'message');
  assert.equal(msg.content[0].text, text, 'the completed response repeats the streamed text');
  const done = events.find((e) => e.type === 'response.output_text.done');
  assert.equal(done.text, text);
  const u = last.response.usage;
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
  return { text, reasoning, final: last.response };
}

const stripHeaders = (calls) => calls.map((c) => ({ path: c.path, body: c.body }));

describe('responses on the wire', () => {
  let fake, p;
  const base = (name) => `${p.url}/${name}/v1`;
  const log = () => fake.log.filter((e) => !e.path.startsWith('/_fake/'));

  before(async () => {
    fake = await startFake({ port: 0 });
    const cfg = configFor(fake);
    cfg.upstreams[0].timeout_ms = 30000; // the keep-alive case holds one call silent for 15 s
    cfg.routes = [route('r0', chatPolicy(0)), route('hold', chatPolicy(1), { reasoning: 'hidden' })];
    for (const [mode, pol] of Object.entries(MODES))
      for (const d of DISPLAYS) cfg.routes.push(route(`${mode}-${d}`, pol, { reasoning: d }));
    cfg.routes.push({ name: 'main', forcing: chatPolicy(1) });
    p = await startPonder({ config: cfg });
  });
  after(async () => {
    const r = p ? await p.stop('SIGTERM') : null;
    await fake?.close();
    if (r) assert.equal(r.code, 0, 'ponder exits 0 after SIGTERM:\n' + p.output());
  });
  beforeEach(() => fake.reset());

  for (const mode of Object.keys(MODES)) {
    for (const display of DISPLAYS) {
      for (const stream of [false, true]) {
        it(`${mode} x ${display} x ${stream ? 'stream' : 'json'}: the same upstream calls and usage as chat`, async () => {
          const name = `${mode}-${display}`;
          // Through chat completions first (include_usage so the stream reports it).
          const chatBody = { model: MODEL, messages: MSGS };
          if (stream) Object.assign(chatBody, { stream: true, stream_options: { include_usage: true } });
          const c = await post(`${base(name)}/chat/completions`, chatBody);
          assert.equal(c.status, 200, c.raw);
          const chatCalls = stripHeaders(log());
          let chatText, chatReasoning = '', chatUsage;
          if (stream) {
            const evs = parseSSE(c.raw);
            assert.equal(evs.at(-1), '[DONE]');
            chatText = evs.filter((e) => e?.choices?.length).map((e) => e.choices[0].delta.content ?? '').join('');
            chatReasoning = evs.filter((e) => e?.choices?.length).map((e) => e.choices[0].delta.reasoning_content ?? '').join('');
            chatUsage = evs.find((e) => e?.usage && e.choices?.length === 0).usage;
          } else {
            const j = JSON.parse(c.raw);
            chatText = j.choices[0].message.content;
            chatReasoning = j.choices[0].message.reasoning_content ?? '';
            chatUsage = j.usage;
          }
          fake.reset();

          const r = await post(`${base(name)}/responses`, { model: MODEL, instructions: INSTR, input: Q, stream });
          assert.equal(r.status, 200, r.raw);
          assert.equal(r.headers['x-ponder-route'], name);
          assert.equal(r.headers['x-ponder-rounds'], c.headers['x-ponder-rounds']);
          assert.equal(r.headers['x-ponder-variant'], c.headers['x-ponder-variant']);
          assert.deepEqual(stripHeaders(log()), chatCalls, 'exactly the upstream calls chat makes');
          assert.ok(chatCalls.length >= 2, 'forced: thinking and answer calls');
          let resp, text, reasoning;
          if (stream) {
            assert.match(r.headers['content-type'], /^text\/event-stream/);
            ({ text, reasoning, final: resp } = checkStream(responsesEvents(r.raw), display));
          } else {
            resp = JSON.parse(r.raw);
            text = resp.output.find((o) => o.type === 'message').content[0].text;
            const ri = resp.output.find((o) => o.type === 'reasoning');
            reasoning = ri ? ri.content[0].text : '';
            if (display !== 'field') assert.equal(ri, undefined);
          }
          assert.match(resp.id, /^resp_/);
          assert.equal(resp.object, 'response');
          assert.equal(resp.status, 'completed');
          assert.equal(resp.model, MODEL);
          assert.equal(resp.store, false);
          assert.equal(text, chatText, 'the same answer text as chat');
          assert.equal(reasoning, chatReasoning, 'the same thinking as chat');
          if (display === 'inline') assert.ok(text.startsWith('<think>\n'));
          if (display === 'hidden' && mode === 'chat') assert.ok(!text.includes('<think>'));
          assert.equal(resp.usage.input_tokens, chatUsage.prompt_tokens);
          assert.equal(resp.usage.output_tokens, chatUsage.completion_tokens);
          assert.equal(resp.usage.total_tokens, chatUsage.total_tokens);
          assert.equal(resp.usage.output_tokens_details.reasoning_tokens,
                       chatUsage.completion_tokens_details.reasoning_tokens);
          assert.ok(resp.usage.output_tokens_details.reasoning_tokens > 0);
        });
      }
    }
  }

  for (const stream of [false, true]) {
    it(`rounds 0 ${stream ? 'stream' : 'json'}: one translated chat call, the one chat relays`, async () => {
      const chatBody = { model: MODEL, messages: MSGS };
      if (stream) Object.assign(chatBody, { stream: true, stream_options: { include_usage: true } });
      const c = await post(`${base('r0')}/chat/completions`, chatBody);
      assert.equal(c.status, 200);
      const chatCalls = stripHeaders(log());
      assert.equal(chatCalls.length, 1);
      fake.reset();
      const r = await post(`${base('r0')}/responses`, { model: MODEL, instructions: INSTR, input: Q, stream });
      assert.equal(r.status, 200, r.raw);
      assert.equal(r.headers['x-ponder-rounds'], '0');
      // A streamed rounds-0 call asks for the usage upstream, as chat with include_usage does.
      assert.deepEqual(stripHeaders(log()), chatCalls);
      const resp = stream ? checkStream(responsesEvents(r.raw), 'hidden').final : JSON.parse(r.raw);
      const chatUsage = stream ? parseSSE(c.raw).find((e) => e?.usage && e.choices?.length === 0).usage
                               : JSON.parse(c.raw).usage;
      assert.equal(resp.usage.input_tokens, chatUsage.prompt_tokens);
      assert.equal(resp.usage.output_tokens, chatUsage.completion_tokens);
      assert.equal(resp.output.filter((o) => o.type === 'reasoning').length, 0);
    });
  }

  it('a last function_call_output: no forcing, one call with the tool result', async () => {
    const r = await post(`${base('chat-field')}/responses`, {
      model: MODEL,
      input: [
        { role: 'user', content: Q },
        { type: 'reasoning', id: 'rs_1', summary: [], content: [{ type: 'reasoning_text', text: 'old thinking' }] },
        { type: 'function_call', call_id: 'call_1', name: 'add', arguments: '{"a":2,"b":2}' },
        { type: 'function_call_output', call_id: 'call_1', output: '4' },
      ],
      tools: [{ type: 'function', name: 'add', parameters: { type: 'object', properties: {} } }],
    });
    assert.equal(r.status, 200, r.raw);
    const calls = log();
    assert.equal(calls.length, 1);
    const m = calls[0].body.messages;
    assert.deepEqual(m.map((x) => x.role), ['user', 'assistant', 'tool']);
    assert.ok(!JSON.stringify(calls[0].body).includes('old thinking'), 'earlier thinking is not sent');
    assert.equal(m[1].tool_calls[0].id, 'call_1');
    assert.equal(m[2].tool_call_id, 'call_1');
    assert.equal(calls[0].body.tools[0].function.name, 'add');
  });

  const bad = [
    ['previous_response_id', { previous_response_id: 'resp_1' }, 'previous_response_id', /stateless/],
    ['conversation', { conversation: 'conv_1' }, 'conversation', /stateless/],
    ['background', { background: true }, 'background', /stateless/],
    ['a built-in tool', { tools: [{ type: 'web_search' }] }, 'tools', /web_search/],
    ['an unknown item type', { input: [{ type: 'computer_call', id: 'x' }] }, null, /computer_call/],
    ['a bad field type', { temperature: 'hot' }, 'temperature', /temperature/],
    ['no model', { model: undefined }, 'model', /model/],
    ['no input', { input: undefined }, 'input', /input/],
  ];
  for (const [what, extra, param, msg] of bad) {
    it(`400 for ${what}, nothing sent upstream`, async () => {
      const body = { model: MODEL, input: Q, ...extra };
      for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
      const r = await post(`${base('chat-field')}/responses`, body);
      assert.equal(r.status, 400, r.raw);
      const e = JSON.parse(r.raw).error;
      assert.equal(e.type, 'invalid_request_error');
      if (param) assert.equal(e.param, param);
      assert.match(e.message, msg);
      assert.equal(log().length, 0);
    });
  }

  it('400 for a body that is not JSON, and 405 for GET', async () => {
    const r = await post(`${base('chat-field')}/responses`, '{nope');
    assert.equal(r.status, 400);
    const g = await fetch(`${base('chat-field')}/responses`);
    assert.equal(g.status, 405);
    assert.equal(log().length, 0);
  });

  it('an upstream error before the stream: its status and body, OpenAI-shaped', async () => {
    fake.script({ status: 429, message: 'slow down' });
    const r = await post(`${base('chat-field')}/responses`, { model: MODEL, input: Q, stream: true });
    assert.equal(r.status, 429);
    assert.equal(JSON.parse(r.raw).error.message, 'slow down');
  });

  it('a failure after the stream started: one response.failed, last', async () => {
    fake.script({ content: 'thinking here' }, { content: 'a b c d e f', cut_after: 3 });
    const r = await post(`${base('chat-field')}/responses`, { model: MODEL, input: Q, stream: true });
    assert.equal(r.status, 200);
    const evs = responsesEvents(r.raw);
    assert.equal(evs.at(-1).type, 'response.failed');
    assert.equal(evs.filter((e) => e.type === 'response.failed').length, 1);
    assert.equal(evs.at(-1).response.status, 'failed');
    assert.equal(typeof evs.at(-1).response.error.message, 'string');
    assert.ok(!evs.some((e) => e.type === 'response.completed'));
  });

  it('the answer call cut by its limit: response.incomplete with max_output_tokens', async () => {
    const r = await post(`${base('chat-field')}/responses`, { model: MODEL, input: Q, max_output_tokens: 2, stream: true });
    const evs = responsesEvents(r.raw);
    assert.equal(evs.at(-1).type, 'response.incomplete');
    assert.equal(evs.at(-1).response.incomplete_details.reason, 'max_output_tokens');
    const calls = log();
    assert.equal(calls.at(-1).body.max_tokens, 2, 'the client limit is the answer call\'s');
  });

  it('a client abort mid-stream cancels the upstream call; no further round', async () => {
    fake.script({ tokens: 400, token_delay_ms: 20 }, { content: 'x' }, { content: 'y' });
    const ev0 = fake.state.events;
    let cut = false;
    await post(`${base('chat-field')}/responses`, { model: MODEL, input: Q, stream: true }, {
      onData: (raw, req) => {
        if (!cut && raw.includes('response.reasoning_text.delta')) { cut = true; req.destroy(); }
      },
    });
    assert.ok(cut, 'got a thinking delta before aborting');
    await sleep(200);
    const e1 = fake.state.events - ev0;
    await sleep(600);
    assert.equal(fake.state.events - ev0, e1, 'the upstream stream stopped');
    assert.ok(e1 < 60, `stopped early (${e1} events)`);
    assert.equal(log().length, 1, 'no further round');
  });

  it('hidden: keep-alive comments while the thinking call is silent', { timeout: 30000 }, async () => {
    fake.script({ content: 'a b c', hang_after: 1 });
    let t0 = Date.now(), seenAt = null;
    const r = await post(`${base('hold')}/responses`, { model: MODEL, input: Q, stream: true }, {
      onData: (raw, req) => {
        if (seenAt == null && raw.includes(': keep-alive')) { seenAt = Date.now() - t0; req.destroy(); }
      },
    });
    assert.ok(seenAt != null, 'a keep-alive comment arrived: ' + r.raw);
    assert.ok(seenAt < 17000, `within the 15 s interval (${seenAt} ms)`);
    const evs = responsesEvents(r.raw);
    assert.deepEqual(evs.map((e) => e.type), ['response.created', 'response.in_progress']);
  });
});

// SPEC section 5: earlier thinking is never sent upstream, on both APIs and at every rounds,
// rounds 0 included (there the chat relay's fast path must notice it and rewrite the body).
// Rounds 0, not streamed: the one plain call is read straight into the response object (no
// engine). It must read a reply exactly as the engine reads one: the same text, thinking, tool
// calls, finish reason and usage as the chat reply relayed for the same upstream answer, jansson's
// rules for repeated and escaped keys, and the same 502 for a reply that is not a completion.
describe('responses at rounds 0 (json): the upstream reply read as the engine reads it', () => {
  let fake, p;
  const base = (name) => `${p.url}/${name}/v1`;
  const log = () => fake.log.filter((e) => !e.path.startsWith('/_fake/'));
  const raw = (text) => ({ raw_body: Buffer.from(text).toString('base64') });
  const item = (resp, type) => resp.output.filter((o) => o.type === type);

  before(async () => {
    fake = await startFake({ port: 0 });
    const cfg = configFor(fake);
    cfg.routes = ['field', 'inline', 'hidden'].map((d) => route(`r0-${d}`, chatPolicy(0), { reasoning: d }));
    p = await startPonder({ config: cfg });
  });
  after(async () => {
    const r = p ? await p.stop('SIGTERM') : null;
    await fake?.close();
    if (r) assert.equal(r.code, 0, 'ponder exits 0 after SIGTERM:\n' + p.output());
  });
  beforeEach(() => fake.reset());

  const ANSWER = {
    reasoning_content: 'Two and "two", \u00e9 \u2713 \ud83c\udf89\nmake four.',
    content: 'It is "4"\n\ttab \u00e9 \ud83c\udf89 \\ done',
    tool_calls: [{ id: 'call_a', function: { name: 'add', arguments: '{"a":2,"b":"\u00e9"}' } },
                 { id: 'call_b', function: { name: 'sub', arguments: '{}' } }],
  };

  it('field: thinking, text with escapes and tool calls as the relayed chat reply has them', async () => {
    fake.script(ANSWER);
    const c = await post(`${base('r0-field')}/chat/completions`, { model: MODEL, messages: MSGS });
    assert.equal(c.status, 200, c.raw);
    const chat = JSON.parse(c.raw);
    fake.script(ANSWER);
    const r = await post(`${base('r0-field')}/responses`, { model: MODEL, instructions: INSTR, input: Q });
    assert.equal(r.status, 200, r.raw);
    assert.equal(r.headers['x-ponder-rounds'], '0');
    assert.match(r.headers['content-type'], /^application\/json/);
    const resp = JSON.parse(r.raw);
    const msg = chat.choices[0].message;
    assert.deepEqual(resp.output.map((o) => o.type), ['reasoning', 'message', 'function_call', 'function_call']);
    assert.equal(item(resp, 'reasoning')[0].content[0].text, msg.reasoning_content);
    assert.equal(item(resp, 'message')[0].content[0].text, msg.content);
    assert.deepEqual(item(resp, 'function_call').map((f) => [f.call_id, f.name, f.arguments, f.status]),
                     msg.tool_calls.map((t) => [t.id, t.function.name, t.function.arguments, 'completed']));
    assert.equal(resp.status, 'completed');
    assert.equal(resp.usage.input_tokens, chat.usage.prompt_tokens);
    assert.equal(resp.usage.output_tokens, chat.usage.completion_tokens);
    assert.equal(resp.usage.total_tokens, chat.usage.total_tokens);
    assert.equal(log().length, 2, 'one upstream call each');
    assert.equal(log()[1].path, '/v1/chat/completions');
  });

  it('inline and hidden: the thinking as a <think> block, or not at all', async () => {
    fake.script({ reasoning: 'vLLM names it reasoning', content: 'four' });
    const i = JSON.parse((await post(`${base('r0-inline')}/responses`, { model: MODEL, input: Q })).raw);
    assert.deepEqual(i.output.map((o) => o.type), ['message']);
    assert.equal(i.output[0].content[0].text, '<think>\nvLLM names it reasoning\n</think>\n\nfour');
    fake.script({ reasoning_content: 'secret', content: 'four' });
    const h = JSON.parse((await post(`${base('r0-hidden')}/responses`, { model: MODEL, input: Q })).raw);
    assert.deepEqual(h.output.map((o) => o.type), ['message']);
    assert.equal(h.output[0].content[0].text, 'four');
    assert.ok(!JSON.stringify(h).includes('secret'));
  });

  it('the answer cut by its limit: status incomplete with max_output_tokens', async () => {
    const r = await post(`${base('r0-field')}/responses`, { model: MODEL, input: Q, max_output_tokens: 2 });
    const resp = JSON.parse(r.raw);
    assert.equal(resp.status, 'incomplete');
    assert.deepEqual(resp.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(item(resp, 'message')[0].status, 'incomplete');
    assert.equal(log()[0].body.max_tokens, 2);
  });

  it('repeated keys count by their last value, escaped keys by what they decode to', async () => {
    fake.script(raw('{"choices":[{"message":{"content":"first"}}],"usage":{"prompt_tokens":1},' +
      '"choices":[{"message":{"content":"sec\\u006fnd","c\\u006fntent":"last","tool_calls":[]},' +
      '"finish_reason":"","finish_reason":"length"},{"message":7}],' +
      '"usage":{"prompt_tokens":3,"completion_tokens":4,"completion_tokens_details":{"reasoning_tokens":2}}}'));
    const resp = JSON.parse((await post(`${base('r0-field')}/responses`, { model: MODEL, input: Q })).raw);
    assert.deepEqual(resp.output.map((o) => o.type), ['message']);
    assert.equal(resp.output[0].content[0].text, 'last');
    assert.equal(resp.status, 'incomplete');
    assert.deepEqual([resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.output_tokens_details.reasoning_tokens],
                     [3, 4, 2]);
  });

  it('a reply without usage: output tokens estimated from the text (4 bytes a token)', async () => {
    fake.script(raw('{"choices":[{"message":{"content":"abcdefghi","reasoning_content":"xyz"},"finish_reason":null}]}'));
    const resp = JSON.parse((await post(`${base('r0-field')}/responses`, { model: MODEL, input: Q })).raw);
    assert.equal(resp.status, 'completed');
    assert.equal(item(resp, 'reasoning')[0].content[0].text, 'xyz');
    assert.deepEqual([resp.usage.input_tokens, resp.usage.output_tokens], [0, 3]);
  });

  const unreadable = [
    ['no choices', '{"choices":[]}'],
    ['a choice that is not an object', '{"choices":[1]}'],
    ['an error object under status 200', '{"error":{"message":"nope"}}'],
    ['an array', '[{"choices":[{"message":{"content":"x"}}]}]'],
    ['not JSON', '{"choices":[{"message":{"content":"x"}}]'],
  ];
  for (const [what, body] of unreadable) {
    it(`a 200 reply with ${what}: 502, as the engine refuses it`, async () => {
      fake.script(raw(body));
      const r = await post(`${base('r0-field')}/responses`, { model: MODEL, input: Q });
      assert.equal(r.status, 502, r.raw);
      const e = JSON.parse(r.raw).error;
      assert.equal(e.type, 'upstream_error');
      assert.equal(e.message, 'The upstream reply is not a valid OpenAI chat completion.');
    });
  }

  it('an upstream error status: its status and error body, as chat relays them', async () => {
    fake.script({ status: 429, message: 'slow down', retry_after: 7 });
    const r = await post(`${base('r0-field')}/responses`, { model: MODEL, input: Q });
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '7');
    assert.equal(JSON.parse(r.raw).error.message, 'slow down');
    fake.script({ plain_status_body: 'bad gateway', status: 503 });
    const b = await post(`${base('r0-field')}/responses`, { model: MODEL, input: Q });
    assert.equal(b.status, 502);
    assert.equal(JSON.parse(b.raw).error.type, 'upstream_error');
  });
});

describe('earlier thinking is never sent upstream', () => {
  let fake, p;
  const base = (name) => `${p.url}/${name}/v1`;
  const log = () => fake.log.filter((e) => !e.path.startsWith('/_fake/'));
  const OLD = 'old thinking that cost tokens';
  const history = (asst) => [
    { role: 'user', content: 'First question?' },
    asst,
    { role: 'user', content: 'Second question?' },
  ];
  const ASSISTANTS = {
    reasoning_content: { role: 'assistant', content: 'First answer.', reasoning_content: OLD },
    reasoning: { role: 'assistant', content: 'First answer.', reasoning: OLD },
    inline: { role: 'assistant', content: `<think>\n${OLD}\n</think>\n\nFirst answer.` },
    'inline parts': { role: 'assistant', content: [{ type: 'text', text: `<think>\n${OLD}\n</think>\n\nFirst answer.` }] },
  };

  before(async () => {
    fake = await startFake({ port: 0 });
    const cfg = configFor(fake);
    cfg.routes = [route('r0', chatPolicy(0)), route('r2', chatPolicy(2)),
                  route('m0', chatPolicy(0), { model: 'mapped-model' })];
    p = await startPonder({ config: cfg });
  });
  after(async () => {
    const r = p ? await p.stop('SIGTERM') : null;
    await fake?.close();
    if (r) assert.equal(r.code, 0, p.output());
  });
  beforeEach(() => fake.reset());

  const assertClean = (calls) => {
    assert.ok(calls.length >= 1);
    for (const c of calls) {
      assert.ok(!JSON.stringify(c.body).includes(OLD), `no earlier thinking upstream: ${JSON.stringify(c.body)}`);
      const a = c.body.messages.find((m) => m.role === 'assistant' && JSON.stringify(m.content).includes('First answer.'));
      assert.ok(a, 'the earlier answer itself is kept');
      assert.equal(a.reasoning_content, undefined);
      assert.equal(a.reasoning, undefined);
      const text = typeof a.content === 'string' ? a.content : a.content[0].text;
      assert.equal(text, 'First answer.');
    }
  };

  for (const r of ['r0', 'm0', 'r2']) {
    for (const stream of [false, true]) {
      for (const [what, asst] of Object.entries(ASSISTANTS)) {
        it(`chat completions, ${r}, ${stream ? 'stream' : 'json'}: ${what}`, async () => {
          const res = await post(`${base(r)}/chat/completions`, { model: MODEL, messages: history(asst), stream });
          assert.equal(res.status, 200, res.raw);
          assertClean(log());
          assert.equal(log().length, r === 'r2' ? 3 : 1);
        });
      }
    }
  }

  for (const r of ['r0', 'r2']) {
    it(`responses, ${r}: reasoning items and an inline block of an earlier assistant message`, async () => {
      const res = await post(`${base(r)}/responses`, {
        model: MODEL,
        input: [
          { role: 'user', content: 'First question?' },
          { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: OLD }] },
          { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: `<think>\n${OLD}\n</think>\n\nFirst answer.` }] },
          { role: 'user', content: 'Second question?' },
        ],
      });
      assert.equal(res.status, 200, res.raw);
      assertClean(log());
    });
  }

  it('chat completions, rounds 0: a later assistant text that merely mentions <think> is kept', async () => {
    const asst = { role: 'assistant', content: 'Use a <think> tag like this: <think>x</think>' };
    await post(`${base('r0')}/chat/completions`, { model: MODEL, messages: history(asst) });
    assert.equal(log()[0].body.messages[1].content, asst.content);
  });
});

// The writer holds the streamed answer for its .done events and the completed response: bounded
// by limits.max_reply_bytes like everything else ponder holds for a request.
describe('responses: what the stream writer holds is bounded', () => {
  let fake, p;
  before(async () => {
    fake = await startFake({ port: 0 });
    const cfg = configFor(fake);
    cfg.limits = { max_reply_bytes: 4096 };
    cfg.routes = [route('r1', chatPolicy(1))];
    p = await startPonder({ config: cfg });
  });
  after(async () => {
    const r = p ? await p.stop('SIGTERM') : null;
    await fake?.close();
    if (r) assert.equal(r.code, 0, p.output());
  });

  it('an answer over limits.max_reply_bytes: response.failed, the upstream call cancelled', async () => {
    fake.script({ content: 'short thought' }, { tokens: 3000 });
    const r = await post(`${p.url}/r1/v1/responses`, { model: MODEL, input: Q, stream: true, max_output_tokens: 5000 });
    assert.equal(r.status, 200);
    const evs = responsesEvents(r.raw);
    const last = evs.at(-1);
    assert.equal(last.type, 'response.failed');
    assert.match(last.response.error.message, /max_reply_bytes/);
    assert.ok(evs.some((e) => e.type === 'response.output_text.delta'), 'the answer was streamed until then');
    assert.equal(r.complete, false);
  });

  it('the same answer through chat completions streams whole (chat holds no answer)', async () => {
    fake.script({ content: 'short thought' }, { tokens: 3000 });
    const r = await post(`${p.url}/r1/v1/chat/completions`, { model: MODEL, messages: MSGS, stream: true, max_tokens: 5000 });
    assert.equal(r.status, 200);
    assert.equal(parseSSE(r.raw).at(-1), '[DONE]');
  });
});
