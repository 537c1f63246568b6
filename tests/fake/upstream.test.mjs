// Self-test for the fake upstream: node --test tests/fake/
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFake } from './upstream.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let fake;
let base;
before(async () => {
  fake = await startFake({ port: 0 });
  base = fake.url;
});
after(() => fake.close());
beforeEach(async () => {
  await post('/_fake/reset', {});
});

async function post(path, body, b = base) {
  return fetch(b + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
async function chat(body, path = '/v1/chat/completions', b = base) {
  return post(path, { model: 'm1', messages: [{ role: 'user', content: 'hello there world' }], ...body }, b);
}
async function sse(res) {
  const text = await res.text();
  const events = text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
  assert.equal(events.at(-1), '[DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(e));
}

test('models', async () => {
  const r = await fetch(base + '/v1/models');
  assert.deepEqual(await r.json(), {
    object: 'list',
    data: [{ id: 'fake-model', object: 'model', created: 0, owned_by: 'fake' }],
  });
});

test('chat JSON default reply, usage, prefix path', async () => {
  const r = await chat({ messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten' }] }, '/math/v1/chat/completions');
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(j.object, 'chat.completion');
  assert.equal(j.model, 'm1');
  assert.equal(j.choices[0].message.role, 'assistant');
  assert.equal(j.choices[0].message.content, 'Answer to: three four five six seven eight nine ten');
  assert.equal(j.choices[0].finish_reason, 'stop');
  assert.equal(j.choices[0].logprobs, null);
  assert.deepEqual(j.usage, { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 });
});

test('chat SSE, chunks and include_usage', async () => {
  let ev = await sse(await chat({ stream: true }));
  assert.deepEqual(ev[0].choices[0].delta, { role: 'assistant', content: '' });
  assert.deepEqual(ev.slice(1, -1).map((e) => e.choices[0].delta.content), ['Answer', ' to:', ' hello', ' there', ' world']);
  assert.deepEqual(ev.at(-1).choices[0].delta, {});
  assert.equal(ev.at(-1).choices[0].finish_reason, 'stop');
  assert.ok(ev.every((e) => e.object === 'chat.completion.chunk' && e.model === 'm1' && e.id === ev[0].id));

  ev = await sse(await chat({ stream: true, stream_options: { include_usage: true } }));
  assert.deepEqual(ev.at(-1).choices, []);
  assert.deepEqual(ev.at(-1).usage, { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
  assert.equal(ev.at(-2).choices[0].finish_reason, 'stop');
});

test('max_tokens truncation and stop', async () => {
  let j = await (await chat({ max_tokens: 2 })).json();
  assert.equal(j.choices[0].message.content, 'Answer to:');
  assert.equal(j.choices[0].finish_reason, 'length');
  assert.equal(j.usage.completion_tokens, 2);
  j = await (await chat({ max_completion_tokens: 3, stream: true })).text();
  assert.match(j, /"finish_reason":"length"/);

  j = await (await chat({ stop: ['there', 'zzz'] })).json();
  assert.equal(j.choices[0].message.content, 'Answer to: hello ');
  assert.equal(j.choices[0].finish_reason, 'stop');
});

test('completions JSON and SSE', async () => {
  const j = await (await post('/v1/completions', { model: 'c1', prompt: 'say a b c' })).json();
  assert.equal(j.object, 'text_completion');
  assert.equal(j.choices[0].text, 'Completion of: say a b c');
  assert.deepEqual(j.usage, { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 });
  const ev = await sse(await post('/v1/completions', { model: 'c1', prompt: 'x', stream: true, stop: ' x' }));
  assert.equal(ev.map((e) => e.choices[0].text).join(''), 'Completion of:');
  assert.equal(ev.at(-1).choices[0].finish_reason, 'stop');
});

test('script queue: reasoning, tool calls, then default; log', async () => {
  const tc = [{ id: 'call_1', type: 'function', function: { name: 'get', arguments: '{"city":"Paris, France"}' } }];
  await post('/_fake/script', [
    { content: 'final', reasoning_content: 'think hard' },
    { tool_calls: tc },
    { content: 'r', reasoning: 'hmm' },
  ]);
  let j = await (await chat({})).json();
  assert.equal(j.choices[0].message.content, 'final');
  assert.equal(j.choices[0].message.reasoning_content, 'think hard');
  assert.equal(j.usage.completion_tokens, 3);

  const ev = await sse(await chat({ stream: true }));
  const calls = ev.flatMap((e) => e.choices[0]?.delta.tool_calls ?? []);
  assert.equal(calls[0].id, 'call_1');
  assert.equal(calls.map((c) => c.function.arguments).join(''), tc[0].function.arguments);
  assert.equal(ev.at(-1).choices[0].finish_reason, 'tool_calls');

  const ev2 = await sse(await chat({ stream: true }));
  assert.equal(ev2[1].choices[0].delta.reasoning, 'hmm');
  j = await (await chat({})).json();
  assert.match(j.choices[0].message.content, /^Answer to:/);

  const log = await (await fetch(base + '/_fake/log')).json();
  assert.equal(log.length, 4);
  assert.equal(log[0].method, 'POST');
  assert.equal(log[0].path, '/v1/chat/completions');
  assert.equal(log[0].body.model, 'm1');
  assert.equal(typeof log[0].ts, 'number');
});

test('echo pass-through', async () => {
  const r = await fetch(base + '/x/v1/embeddings?a=1&b=2', { method: 'POST', body: 'raw body', headers: { 'x-k': 'v' } });
  const j = await r.json();
  assert.equal(j.method, 'POST');
  assert.equal(j.path, '/x/v1/embeddings');
  assert.equal(j.query, 'a=1&b=2');
  assert.equal(j.headers['x-k'], 'v');
  assert.equal(j.body, 'raw body');
  const log = await (await fetch(base + '/_fake/log')).json();
  assert.equal(log[0].body, 'raw body');
});

test('status faults: scripted 429, sticky 503, reset', async () => {
  await post('/_fake/script', [{ status: 429, retry_after: 2 }, { status: 502, plain_status_body: 'bad gw' }, { invalid_json: true }]);
  let r = await chat({});
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '2');
  assert.deepEqual((await r.json()).error, {
    message: 'Fake upstream error 429',
    type: 'rate_limit_error',
    param: null,
    code: 'rate_limit_exceeded',
  });
  r = await chat({});
  assert.equal(r.status, 502);
  assert.equal(await r.text(), 'bad gw');
  r = await chat({});
  assert.equal(await r.text(), '{not json');

  await post('/_fake/fault', { status: 503 });
  for (const p of ['/v1/chat/completions', '/v1/models']) {
    r = await fetch(base + p, { method: p.endsWith('models') ? 'GET' : 'POST', body: p.endsWith('models') ? undefined : '{}' });
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error.type, 'server_error');
  }
  await post('/_fake/script', [{ content: 'x' }]);
  await post('/_fake/reset', {});
  const st = await (await fetch(base + '/_fake/state')).json();
  assert.deepEqual([st.queue, st.fault, st.log], [0, null, 0]);
  assert.equal((await chat({})).status, 200);
});

test('reset / cut_after / hang break the connection', async () => {
  await post('/_fake/script', [{ reset: true }, { cut_after: 2 }]);
  await assert.rejects(chat({}));
  await assert.rejects(async () => (await chat({ stream: true })).text());
  await post('/_fake/script', [{ hang: true }]);
  const signal = AbortSignal.timeout(150);
  await assert.rejects(fetch(base + '/v1/chat/completions', { method: 'POST', body: '{"messages":[]}', signal }), {
    name: 'TimeoutError',
  });
});

test('streaming respects backpressure', async () => {
  await post('/_fake/script', [{ tokens: 1_000_000 }]);
  const sock = net.connect(fake.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.pause();
  const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] });
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  const events = async () => (await (await fetch(base + '/_fake/state')).json()).events;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // wait until the kernel socket buffers are full and generation stalls (bounded)
  let a = -1;
  let b = await events();
  for (let i = 0; i < 40 && a !== b; i++) {
    await sleep(100);
    [a, b] = [b, await events()];
  }
  await sleep(200);
  assert.equal(await events(), b, 'generation must stall while the client does not read');
  assert.ok(b < 1_000_000);
  sock.destroy();
});

test('fast mode and CLI', async () => {
  const f = await startFake({ port: 0, fast: true });
  try {
    const j = await (await chat({}, undefined, f.url)).json();
    assert.equal(j.choices[0].message.content, 'Hello from the fake upstream.');
    const ev = await sse(await post('/v1/chat/completions', '{"stream": true, "stream_options":{"include_usage":true}}', f.url));
    assert.ok(ev.length >= 18);
    assert.deepEqual(ev.at(-1).choices, []);
  } finally {
    await f.close();
  }
  const child = spawn(process.execPath, [fileURLToPath(new URL('./upstream.mjs', import.meta.url)), '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d))));
  const { port } = JSON.parse(line);
  assert.equal((await fetch(`http://127.0.0.1:${port}/v1/models`)).status, 200);
  const code = await new Promise((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  assert.equal(code, 0);
});

// ---- faults added for the fault matrix (tests/integration/faults.test.mjs) ----------------------

/** node:http request that records every body piece and how the body ended. */
function pieces(port, body, path = '/v1/chat/completions') {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify({ model: 'm1', messages: [{ role: 'user', content: 'hello there world' }], ...body });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      const got = [];
      let done = false;
      const end = (how) => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode, headers: res.headers, pieces: got, text: got.map((g) => g.d).join(''), how });
      };
      res.setEncoding('utf8');
      res.on('data', (d) => got.push({ d, t: Date.now() }));
      res.on('end', () => end('end'));
      res.on('aborted', () => end('aborted'));
      res.on('error', () => end('aborted'));
      res.on('close', () => end(res.complete ? 'end' : 'aborted'));
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('cut_mid_event: whole events, then part of the next one, then the connection breaks', async () => {
  fake.script({ content: 'a b c d', cut_mid_event: 2 });
  const r = await pieces(fake.port, { stream: true });
  assert.equal(r.status, 200);
  assert.equal(r.how, 'aborted');
  const blocks = r.text.split('\n\n');
  const tail = blocks.pop();
  assert.equal(blocks.length, 2, 'the role chunk and one token arrive whole');
  assert.deepEqual(JSON.parse(blocks[1].slice(6)).choices[0].delta, { content: 'a' });
  assert.ok(tail.startsWith('data: {') && tail.length > 6, `part of the third event: ${tail}`);
  assert.throws(() => JSON.parse(tail.slice(6)), 'the cut event is not whole JSON');
  const st = await (await fetch(base + '/_fake/state')).json();
  assert.equal(st.partial, 1);
});

test('cut_clean: the stream ends properly where cut_after / cut_mid_event cut it', async () => {
  fake.script({ content: 'a b c d', cut_after: 2, cut_clean: true }, { content: 'a b c d', cut_mid_event: 2, cut_clean: true });
  let r = await pieces(fake.port, { stream: true });
  assert.equal(r.how, 'end');
  let blocks = r.text.split('\n\n');
  assert.equal(blocks.pop(), '', 'ends between events');
  assert.equal(blocks.length, 2, 'no finish_reason, no [DONE]');
  r = await pieces(fake.port, { stream: true });
  assert.equal(r.how, 'end');
  blocks = r.text.split('\n\n');
  const tail = blocks.pop();
  assert.equal(blocks.length, 2);
  assert.ok(tail.startsWith('data: {') && tail.length > 6, `ends in the middle of an event: ${tail}`);
});

test('bad_event: an event whose data is not JSON, in place, then the stream goes on', async () => {
  fake.script({ content: 'a b', bad_event: 1 });
  const r = await pieces(fake.port, { stream: true });
  assert.equal(r.how, 'end');
  const blocks = r.text.split('\n\n').filter(Boolean);
  assert.equal(blocks[1], 'data: {not json');
  assert.deepEqual(JSON.parse(blocks[2].slice(6)).choices[0].delta, { content: 'a' });
  assert.equal(blocks.at(-1), 'data: [DONE]');
});

test('drip_ms / drip_bytes: the body trickles out, the same bytes as without', async () => {
  const plain = await (await chat({})).text();
  fake.script({ drip_ms: 15, drip_bytes: 40 });
  const t0 = Date.now();
  const r = await pieces(fake.port, {});
  assert.equal(r.how, 'end');
  const a = JSON.parse(plain);
  const b = JSON.parse(r.text);
  assert.deepEqual({ ...b, id: a.id, created: a.created }, a);
  const n = Math.ceil(Buffer.byteLength(r.text) / 40);
  assert.ok(r.pieces.length >= 3, `several pieces: ${r.pieces.length}`);
  assert.ok(Date.now() - t0 >= (n - 1) * 15 - 20, 'drip_ms between pieces');

  fake.script({ content: 'x y', drip_ms: 5, drip_bytes: 32 });
  const s = await pieces(fake.port, { stream: true });
  assert.equal(s.how, 'end');
  assert.ok(s.pieces.length > 10, 'each event dripped in 32-byte pieces');
  assert.equal(s.text.split('\n\n').filter(Boolean).at(-1), 'data: [DONE]');
});

test('log entries record the HTTP version', async () => {
  await chat({});
  assert.equal(fake.log[0].http, '1.1');
});

/** An h2c request: status, headers, body text, and how the stream ended (rstCode). */
function h2req(session, { method = 'POST', path = '/v1/chat/completions', body } = {}) {
  return new Promise((resolve) => {
    const headers = { ':method': method, ':path': path };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const st = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let resHeaders = {};
    let text = '';
    st.setEncoding('utf8');
    st.on('response', (h) => { status = h[':status']; resHeaders = h; });
    st.on('data', (d) => { text += d; });
    st.on('error', () => {});
    st.on('close', () => resolve({ status, headers: resHeaders, text, rstCode: st.rstCode }));
    if (body !== undefined) st.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

test('h2c: prior-knowledge HTTP/2 with the same replies, scripts, faults and control API', async () => {
  const f = await startFake({ h2c: true });
  const session = http2.connect(f.url);
  session.on('error', () => {});
  const msg = { model: 'm1', messages: [{ role: 'user', content: 'hello there world' }] };
  try {
    assert.equal(f.h2c, true);
    let r = await h2req(session, { body: msg });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.text).choices[0].message.content, 'Answer to: hello there world');
    assert.equal(f.log[0].http, '2.0');

    // control endpoints over h2c, and the in-process script queue
    r = await h2req(session, { path: '/_fake/script', body: [{ content: 'scripted' }] });
    assert.deepEqual(JSON.parse(r.text), { ok: true, queued: 1 });
    f.script({ status: 429, retry_after: 2 });
    r = await h2req(session, { body: msg });
    assert.equal(JSON.parse(r.text).choices[0].message.content, 'scripted');
    r = await h2req(session, { body: msg });
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '2');
    r = await h2req(session, { body: { ...msg, stream: true } });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    assert.ok(r.text.endsWith('data: [DONE]\n\n'));
    r = await h2req(session, { method: 'GET', path: '/_fake/state' });
    assert.equal(JSON.parse(r.text).h2c, true);

    // reset and cuts reset the stream (RST_STREAM INTERNAL_ERROR); the session lives on
    f.script({ reset: true }, { content: 'a b c', cut_mid_event: 2 }, { cut_after: 30 }, { invalid_json: true });
    r = await h2req(session, { body: msg });
    assert.equal(r.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
    assert.equal(r.status, 0, 'no response head before the reset');
    r = await h2req(session, { body: { ...msg, stream: true } });
    assert.equal(r.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
    const tail = r.text.split('\n\n').pop();
    assert.ok(tail.startsWith('data: {') && tail.length > 6, `part of an event before the reset: ${tail}`);
    r = await h2req(session, { body: msg });
    assert.equal(r.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
    assert.equal(r.text.length, 30, 'cut_after bytes of the JSON body, then the reset');
    r = await h2req(session, { body: msg });
    assert.equal(r.text, '{not json');
    assert.equal(session.destroyed, false, 'stream faults leave the connection up');

    // reset: 'connection' takes the whole connection down
    f.script({ reset: 'connection' });
    r = await h2req(session, { body: msg });
    assert.equal(r.status, 0);
    await new Promise((res) => (session.closed || session.destroyed ? res() : session.once('close', res)));

    // hang: no answer; close() ends the hanging session too
    const s2 = http2.connect(f.url);
    s2.on('error', () => {});
    f.script({ hang: true });
    const hung = h2req(s2, { body: msg });
    await sleep(100);
    assert.equal(f.log.at(-1).http, '2.0');
    await f.close();
    const h = await hung;
    assert.equal(h.status, 0);
  } finally {
    session.destroy();
    await f.close();
  }
});

test('h2c CLI: --h2c', async () => {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./upstream.mjs', import.meta.url)), '--port', '0', '--h2c'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d))));
  const { port } = JSON.parse(line);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  const r = await h2req(session, { method: 'GET', path: '/v1/models' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.text).data[0].id, 'fake-model');
  session.destroy();
  const code = await new Promise((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  assert.equal(code, 0);
});

test('reasoner mode: right only after (operators - 1) thinking rounds; judges; says it is a simulation', async () => {
  const f = await startFake({ reasoner: true });
  try {
    const ask = async (messages, extra = {}) => {
      const r = await post('/v1/chat/completions', { model: 'm', messages, ...extra }, f.url);
      assert.equal(r.status, 200);
      return (await r.json()).choices[0].message.content;
    };
    const q = 'What is 10 - 2 * 3 + 1?'; // 3 operators: right (5) after 2 rounds
    // No forcing: a direct answer, off by the 2 rounds it lacks.
    assert.match(await ask([{ role: 'user', content: q }]), /after 0 thinking rounds, not a model\) The answer is \\boxed\{7\}\./);
    // ponder's chat-mode protocol: think, (wait + continue), answer.
    const m1 = [{ role: 'user', content: q + '\n\nThink for up to 100 tokens.' }];
    const t1 = await ask(m1);
    assert.ok(t1.startsWith('[simulated thinking 1] (a simulation, not a model)'), t1);
    const m2 = [...m1, { role: 'assistant', content: t1 + '\nWait?' }, { role: 'user', content: 'Continue your thinking.' }];
    const t2 = await ask(m2);
    assert.match(t2, /^\[simulated thinking 2\].* I now get 5\.$/);
    const a1 = await ask([...m1, { role: 'assistant', content: t1 }, { role: 'user', content: 'Now provide the final answer.' }]);
    assert.match(a1, /after 1 thinking round, not a model\) The answer is \\boxed\{6\}/);
    const a2 = await ask([...m2, { role: 'assistant', content: t2 }, { role: 'user', content: 'Now provide the final answer.' }]);
    assert.match(a2, /after 2 thinking rounds.*\\boxed\{5\}/);
    // A judge call: JSON with a response_format, else text.
    const judge = [{ role: 'user', content: "Model's Answer: 5\nCorrect Answer: 5\nYour task: ..." }];
    assert.deepEqual(JSON.parse(await ask(judge, { response_format: { type: 'json_schema' } })), { label: 'correct' });
    assert.match(await ask([{ role: 'user', content: "Model's Answer: 6\nCorrect Answer: 5" }]), /incorrect/);
    assert.match(await ask([{ role: 'user', content: 'Hello there' }]), /cannot answer/);
    // Scripts and faults still apply.
    f.fault({ status: 503 });
    const r = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: q }] }, f.url);
    assert.equal(r.status, 503);
  } finally {
    await f.close();
  }
});
