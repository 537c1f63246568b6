// SDK suite: drives ponder with the official `openai` npm client (v6) against the fake upstream.
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/sdk/
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, {
  APIError, APIUserAbortError, AuthenticationError, BadRequestError, InternalServerError,
  NotFoundError, RateLimitError,
} from 'openai';
import { startPonder, startFake, configFor, sleep, closedPort } from '../lib/harness.mjs';

const WAIT = 'Wait? Did I make a mistake?';
const ANSWER_PROMPT = 'Now provide the final answer.';

// The SDK's default: requests share pooled keep-alive connections. Used by the keep-alive tests.
const pooledClient = (base, extra = {}) =>
  new OpenAI({ baseURL: base, apiKey: 'sk-test', maxRetries: 0, timeout: 10000, ...extra });
// Feature tests send `connection: close` so each request gets its own connection and a
// keep-alive defect shows up in the keep-alive tests only, not in every later test.
const client = (base, extra = {}) =>
  pooledClient(base, { defaultHeaders: { connection: 'close' }, ...extra });

const userMsg = (content) => [{ role: 'user', content }];

async function stopAll(p, fake) {
  const r = await p.stop();
  await fake.close();
  assert.equal(r.code, 0, 'ponder exits 0 after SIGTERM:\n' + p.output());
}

/** Collects an SDK stream: content, reasoning, finish reasons, usage and chunk arrival times. */
async function collect(stream, onChunk) {
  const out = { content: '', reasoning: '', finish: null, usage: null, chunks: [], ids: new Set(),
                models: new Set(), times: [], choices: {} };
  for await (const c of stream) {
    out.chunks.push(c);
    out.times.push(Date.now());
    out.ids.add(c.id);
    out.models.add(c.model);
    if (c.usage) out.usage = c.usage;
    for (const ch of c.choices) {
      const d = ch.delta || {};
      const slot = (out.choices[ch.index] ??= { content: '', reasoning: '', finish: null });
      if (typeof d.content === 'string') { out.content += d.content; slot.content += d.content; }
      if (typeof d.reasoning_content === 'string') {
        out.reasoning += d.reasoning_content; slot.reasoning += d.reasoning_content;
      }
      if (ch.finish_reason) { out.finish = ch.finish_reason; slot.finish = ch.finish_reason; }
    }
    if (onChunk) onChunk(c, out);
  }
  return out;
}

/** The fake's own usage for a logged request body (re-asked, non-streamed, of a clean fake). */
async function oracleUsage(oracle, body) {
  const b = { ...body, stream: false };
  delete b.stream_options;
  const r = await fetch(`${oracle.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b),
  });
  assert.equal(r.status, 200);
  return (await r.json()).usage;
}

/** Expected ponder usage: sums over every upstream call in `log`; thinking calls (all but the
 * answer calls, recognised by the answer prompt) make up reasoning_tokens. */
async function expectedUsage(oracle, log) {
  const sum = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, reasoning: 0 };
  for (const entry of log) {
    const u = await oracleUsage(oracle, entry.body);
    sum.prompt_tokens += u.prompt_tokens;
    sum.completion_tokens += u.completion_tokens;
    sum.total_tokens += u.total_tokens;
    const msgs = entry.body.messages;
    const last = msgs[msgs.length - 1];
    if (!String(last.content).includes(ANSWER_PROMPT)) sum.reasoning += u.completion_tokens;
  }
  return sum;
}

function assertUsage(usage, exp) {
  assert.equal(usage.prompt_tokens, exp.prompt_tokens, 'prompt_tokens');
  assert.equal(usage.completion_tokens, exp.completion_tokens, 'completion_tokens');
  assert.equal(usage.total_tokens, exp.total_tokens, 'total_tokens');
  assert.equal(usage.completion_tokens_details?.reasoning_tokens, exp.reasoning, 'reasoning_tokens');
}

async function metricValue(p, name) {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)\\s*$`, 'm'));
  return m ? Number(m[1]) : null;
}

// ---------------------------------------------------------------------------------------------
describe('transparency (rounds 0)', () => {
  let fake, p, viaPonder, direct;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          { name: 'plain', forcing: { rounds: 0 } },
          { name: 'think', match: { models: ['ponder-think', 'ponder-deep'] }, forcing: { rounds: 2 } },
        ],
      }),
    });
    viaPonder = client(p.base);
    direct = client(`${fake.url}/v1`);
  });
  after(() => stopAll(p, fake));
  beforeEach(() => fake.reset());

  it('create() returns what the upstream returns', async () => {
    const req = { model: 'fake-model', messages: [{ role: 'system', content: 'Be brief.' },
      ...userMsg('What is the capital of France, in one word please?')], temperature: 0 };
    const a = await direct.chat.completions.create(req);
    const b = await viaPonder.chat.completions.create(req);
    assert.equal(b.object, 'chat.completion');
    assert.equal(b.model, a.model);
    assert.deepEqual(b.choices, a.choices);
    assert.deepEqual(b.usage, a.usage);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(fake.log.length, 2, 'exactly one upstream call through ponder');
    assert.deepEqual(fake.log[1].body.messages, req.messages, 'messages forwarded unchanged');
  });

  it('streaming returns the same content and usage', async () => {
    const req = { model: 'fake-model', messages: userMsg('Stream me a short reply about rivers'),
                  stream: true, stream_options: { include_usage: true } };
    const a = await collect(await direct.chat.completions.create(req));
    const b = await collect(await viaPonder.chat.completions.create(req));
    assert.ok(b.content.length > 0);
    assert.equal(b.content, a.content);
    assert.equal(b.finish, a.finish);
    assert.deepEqual(b.usage, a.usage);
    assert.deepEqual([...b.models], [...a.models]);
    assert.equal(b.ids.size, 1, 'one id on every chunk');
  });

  it('stream chunks arrive while the upstream is still sending', async () => {
    fake.script({ tokens: 12, token_delay_ms: 60 });
    const t0 = Date.now();
    const s = await viaPonder.chat.completions.create({
      model: 'fake-model', messages: userMsg('slow stream'), stream: true,
    });
    const got = await collect(s);
    assert.equal(got.content, Array.from({ length: 12 }, (_, i) => (i ? ' tok' : 'tok') + i).join(''));
    const firstContent = got.times[got.chunks.findIndex((c) => c.choices[0]?.delta?.content)];
    const last = got.times[got.times.length - 1];
    assert.ok(last - firstContent >= 450,
      `first content chunk ${firstContent - t0} ms, last ${last - t0} ms: not incremental`);
  });

  it('models.list() = upstream models + route-declared models', async () => {
    const up = [];
    for await (const m of direct.models.list()) up.push(m);
    const ours = [];
    for await (const m of viaPonder.models.list()) ours.push(m);
    assert.deepEqual(ours.slice(0, up.length), up);
    assert.deepEqual(ours.slice(up.length).map((m) => m.id).sort(), ['ponder-deep', 'ponder-think']);
    for (const m of ours) assert.equal(m.object, 'model');
  });
});

// ---------------------------------------------------------------------------------------------
describe('forced (rounds 2, reasoning field)', () => {
  let fake, oracle, p, c;
  const req = { model: 'fake-model', messages: userMsg('How many primes are there below twenty?') };
  before(async () => {
    fake = await startFake();
    oracle = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [{ name: 'forced', reasoning: 'field', forcing: { rounds: 2 } }],
      }),
    });
    c = client(p.base);
  });
  after(async () => { await oracle.close(); await stopAll(p, fake); });
  beforeEach(() => fake.reset());

  it('create(): content, reasoning_content and exact usage sums (scripted usage)', async () => {
    fake.script(
      { content: 'two three five seven', usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 } },
      { content: 'eleven thirteen seventeen nineteen', usage: { prompt_tokens: 23, completion_tokens: 7, total_tokens: 30 } },
      { content: 'There are 8.', usage: { prompt_tokens: 40, completion_tokens: 3, total_tokens: 43 } },
    );
    const r = await c.chat.completions.create(req);
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.model, 'fake-model');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, 'There are 8.');
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].message.reasoning_content,
      'two three five seven\n' + WAIT + '\neleven thirteen seventeen nineteen');
    assert.equal(fake.log.length, 3);
    assert.equal(r.usage.prompt_tokens, 74);
    assert.equal(r.usage.completion_tokens, 15);
    assert.equal(r.usage.total_tokens, 89);
    assert.equal(r.usage.completion_tokens_details?.reasoning_tokens, 12);
  });

  it('create(): usage = sum of the fake\'s deterministic per-call usage', async () => {
    const r = await c.chat.completions.create(req);
    assert.equal(fake.log.length, 3);
    assert.ok(r.choices[0].message.reasoning_content.length > 0);
    assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
    assertUsage(r.usage, await expectedUsage(oracle, fake.log));
  });

  it('SDK stream iterator: deltas and usage equal the non-stream response', async () => {
    const plain = await c.chat.completions.create(req);
    fake.reset();
    const s = await c.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    const got = await collect(s);
    assert.equal(got.reasoning, plain.choices[0].message.reasoning_content);
    assert.equal(got.content, plain.choices[0].message.content);
    assert.equal(got.finish, plain.choices[0].finish_reason);
    assert.deepEqual(got.usage, plain.usage);
    assert.equal(got.ids.size, 1, 'one id on every chunk');
    assert.deepEqual([...got.models], ['fake-model']);
    assert.equal(got.chunks[0].choices[0]?.delta?.role, 'assistant', 'first chunk carries the role');
    const last = got.chunks[got.chunks.length - 1];
    assert.deepEqual(last.choices, [], 'final usage chunk has no choices');
    assert.equal(fake.log.length, 3);
    for (const e of fake.log) assert.equal(e.body.stream, true, 'every upstream call streamed');
  });

  it('first reasoning delta arrives while the first thinking call is still streaming', async () => {
    fake.script({ content: 'alpha beta gamma delta epsilon zeta eta theta', token_delay_ms: 80 });
    const s = await c.chat.completions.create({ ...req, stream: true });
    let tFirst = null;
    let callsAtFirst = null;
    const got = await collect(s, (ch) => {
      if (tFirst === null && ch.choices[0]?.delta?.reasoning_content) {
        tFirst = Date.now();
        callsAtFirst = fake.log.length;
      }
    });
    assert.ok(got.reasoning.startsWith('alpha beta gamma delta epsilon zeta eta theta\n' + WAIT + '\n'));
    assert.equal(fake.log.length, 3);
    assert.equal(callsAtFirst, 1);
    assert.ok(tFirst < fake.log[1].ts - 400,
      `first reasoning delta ${fake.log[1].ts - tFirst} ms before the second call: not relayed live`);
  });

  it('headers via withResponse()', async () => {
    const { data, response } = await c.chat.completions.create(req).withResponse();
    assert.ok(data.choices[0].message.content);
    assert.equal(response.headers.get('x-ponder-route'), 'forced');
    assert.equal(response.headers.get('x-ponder-variant'), 'default');
    assert.equal(response.headers.get('x-ponder-rounds'), '2');
    const rid = response.headers.get('x-request-id');
    assert.ok(rid && /^[\x21-\x7e]{1,128}$/.test(rid), `x-request-id ${rid}`);
    assert.equal(data._request_id, rid);
  });

  it('a client-sent x-request-id is echoed (and forwarded upstream)', async () => {
    const { response } = await c.chat.completions
      .create(req, { headers: { 'x-request-id': 'sdk-test-req-42' } }).withResponse();
    assert.equal(response.headers.get('x-request-id'), 'sdk-test-req-42');
    assert.equal(fake.log.length, 3);
    for (const e of fake.log) assert.equal(e.headers['x-request-id'], 'sdk-test-req-42');
  });

  it('n=2: two choices, each a full chain', async () => {
    const r = await c.chat.completions.create({ ...req, n: 2 });
    assert.equal(r.choices.length, 2);
    assert.deepEqual(r.choices.map((ch) => ch.index).sort(), [0, 1]);
    for (const ch of r.choices) {
      assert.ok(ch.message.content.length > 0);
      assert.ok(ch.message.reasoning_content.includes(WAIT), 'two thinking rounds per choice');
      assert.equal(ch.finish_reason, 'stop');
    }
    assert.equal(fake.log.length, 6, '2 chains x 3 calls');
    for (const e of fake.log) {
      const last = e.body.messages[e.body.messages.length - 1].content;
      if (!last.includes(ANSWER_PROMPT)) assert.ok(!('n' in e.body), 'thinking calls never carry n');
    }
    assertUsage(r.usage, await expectedUsage(oracle, fake.log));
  });
});

// ---------------------------------------------------------------------------------------------
describe('errors as SDK error classes', () => {
  let fake, p, c;
  const msgs = userMsg('hello there');
  before(async () => {
    fake = await startFake();
    const cfg = configFor(fake);
    const dead = await closedPort();
    cfg.upstreams.push(
      { ...cfg.upstreams[0], name: 'slow', timeout_ms: 300 },
      { name: 'dead', base_url: `http://127.0.0.1:${dead}/v1`, retries: 0, timeout_ms: 2000,
        connect_timeout_ms: 1000 },
    );
    cfg.routes = [
      { name: 'plain', match: { models: ['fake-model'] }, forcing: { rounds: 0 } },
      { name: 'forced', match: { models: ['forced-model'] }, reasoning: 'field', forcing: { rounds: 2 } },
      { name: 'slow', match: { models: ['slow-model'] }, upstream: 'slow', forcing: { rounds: 0 } },
      { name: 'dead', match: { models: ['dead-model'] }, upstream: 'dead', forcing: { rounds: 0 } },
    ];
    p = await startPonder({ config: cfg });
    c = client(p.base);
  });
  after(() => stopAll(p, fake));
  beforeEach(() => fake.reset());

  it('400 BadRequestError for empty messages', async () => {
    await assert.rejects(c.chat.completions.create({ model: 'fake-model', messages: [] }), (e) => {
      assert.ok(e instanceof BadRequestError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
    assert.equal(fake.log.length, 0);
  });

  it('400 for malformed JSON (fetch)', async () => {
    const r = await fetch(`${p.base}/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test' },
      body: '{"model": "fake-model", "messages": [',
    });
    assert.equal(r.status, 400);
    const j = await r.json();
    assert.equal(j.error.type, 'invalid_request_error');
    assert.equal(typeof j.error.message, 'string');
    assert.equal(fake.log.length, 0);
  });

  it('404 NotFoundError for an unknown model (no catch-all route)', async () => {
    await assert.rejects(c.chat.completions.create({ model: 'no-such-model', messages: msgs }), (e) => {
      assert.ok(e instanceof NotFoundError, String(e));
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
    assert.equal(fake.log.length, 0);
  });

  for (const [label, model] of [['plain', 'fake-model'], ['forced', 'forced-model']]) {
    it(`429 RateLimitError relayed from the upstream (${label} route)`, async () => {
      const message = 'Rate limit reached for fake-model: slow down (from the fake).';
      fake.script({ status: 429, message, retry_after: 7 });
      await assert.rejects(c.chat.completions.create({ model, messages: msgs }), (e) => {
        assert.ok(e instanceof RateLimitError, String(e));
        assert.equal(e.status, 429);
        assert.equal(e.error?.message, message);
        assert.equal(e.message, `429 ${message}`);
        assert.equal(e.code, 'rate_limit_exceeded');
        assert.equal(e.headers.get('retry-after'), '7');
        return true;
      });
      assert.equal(fake.log.length, 1, 'retries 0: one upstream call');
    });
  }

  it('500 InternalServerError relayed from the upstream', async () => {
    const message = 'The fake server had an error while processing your request.';
    fake.script({ status: 500, message });
    await assert.rejects(c.chat.completions.create({ model: 'forced-model', messages: msgs }), (e) => {
      assert.ok(e instanceof InternalServerError, String(e));
      assert.equal(e.status, 500);
      assert.equal(e.error?.message, message);
      assert.equal(e.type, 'server_error');
      return true;
    });
  });

  it('502 APIError for a dead upstream', async () => {
    await assert.rejects(c.chat.completions.create({ model: 'dead-model', messages: msgs }), (e) => {
      assert.ok(e instanceof APIError, String(e));
      assert.equal(e.status, 502);
      assert.ok(e.code === 'upstream_error' || e.type === 'upstream_error', `code ${e.code} type ${e.type}`);
      return true;
    });
  });

  it('504 APIError for a hanging upstream', async () => {
    fake.script({ hang: true });
    const t0 = Date.now();
    await assert.rejects(c.chat.completions.create({ model: 'slow-model', messages: msgs }), (e) => {
      assert.ok(e instanceof APIError, String(e));
      assert.equal(e.status, 504);
      assert.ok(e.code === 'upstream_timeout' || e.type === 'upstream_timeout', `code ${e.code} type ${e.type}`);
      return true;
    });
    assert.ok(Date.now() - t0 < 3000, 'timed out near timeout_ms');
  });

  it('a mid-stream failure (round 2 cut) makes the SDK stream iterator throw', async () => {
    fake.script(
      { content: 'first thought here' },
      { content: 'second thought runs on and on and on', cut_after: 3 },
    );
    const s = await c.chat.completions.create({ model: 'forced-model', messages: msgs, stream: true });
    let reasoning = '';
    await assert.rejects((async () => {
      for await (const ch of s) reasoning += ch.choices[0]?.delta?.reasoning_content ?? '';
    })(), (e) => {
      assert.ok(e instanceof APIError && !(e instanceof APIUserAbortError), String(e));
      return true;
    });
    assert.ok(reasoning.startsWith('first thought here'), `reasoning before failure: ${reasoning}`);
    assert.equal(fake.log.length, 2, 'no answer call after the failure');
  });
});

// ---------------------------------------------------------------------------------------------
describe('auth', () => {
  let fake, p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, { auth: { keys: ['sk-good'] },
                                                     routes: [{ name: 'r', forcing: { rounds: 0 } }] }) });
  });
  after(() => stopAll(p, fake));

  it('401 AuthenticationError for a wrong key; the right key works', async () => {
    await assert.rejects(
      client(p.base, { apiKey: 'sk-wrong' }).chat.completions.create({ model: 'fake-model', messages: userMsg('hi') }),
      (e) => {
        assert.ok(e instanceof AuthenticationError, String(e));
        assert.equal(e.status, 401);
        assert.equal(e.code, 'invalid_api_key');
        return true;
      });
    assert.equal(fake.log.length, 0);
    const r = await client(p.base, { apiKey: 'sk-good' }).chat.completions
      .create({ model: 'fake-model', messages: userMsg('hi') });
    assert.equal(r.choices[0].message.content, 'Answer to: hi');
  });
});

// ---------------------------------------------------------------------------------------------
describe('abort', () => {
  let fake, p, c;
  const req = { model: 'fake-model', messages: userMsg('think slowly'), stream: true };
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, {
      routes: [{ name: 'forced', reasoning: 'field', forcing: { rounds: 2 } }] }) });
    c = client(p.base);
  });
  after(() => stopAll(p, fake));
  beforeEach(() => fake.reset());

  it('abort before the stream starts: APIUserAbortError; upstream call aborted', async () => {
    fake.script({ tokens: 4, delay_ms: 1200 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await assert.rejects((async () => {
      const s = await c.chat.completions.create(req, { signal: ac.signal });
      for await (const _ of s) { /* drain */ }
    })(), (e) => {
      assert.ok(e instanceof APIUserAbortError, String(e));
      return true;
    });
    await sleep(1500); // past the fake's delay: a live chain would have made call 2 by now
    assert.equal(fake.log.length, 1, 'no further upstream calls for the aborted request');
    assert.ok((await metricValue(p, 'ponder_client_disconnects_total')) >= 1);
  });

  it('abort mid-stream: iteration stops, the upstream stream stops, no more calls', async () => {
    const before = (await metricValue(p, 'ponder_client_disconnects_total')) ?? 0;
    fake.script({ tokens: 10, token_delay_ms: 100 });
    const ac = new AbortController();
    const s = await c.chat.completions.create(req, { signal: ac.signal });
    let after = 0;
    let aborted = false;
    let thrown = null;
    try {
      for await (const ch of s) {
        if (aborted) after++;
        if (!aborted && ch.choices[0]?.delta?.reasoning_content) { aborted = true; ac.abort(); }
      }
    } catch (e) { thrown = e; }
    // openai v6 ends iteration silently on a user abort; anything else must be the abort error
    if (thrown) assert.ok(thrown instanceof APIUserAbortError, String(thrown));
    assert.ok(aborted);
    assert.equal(after, 0, 'no chunks after abort');
    await sleep(300);
    const ev1 = fake.state.events;
    await sleep(700);
    assert.equal(fake.state.events, ev1, 'the fake stopped sending');
    await sleep(500); // the first call would have finished by now if it had not been aborted
    assert.equal(fake.log.length, 1, 'no further upstream calls for the aborted request');
    assert.ok((await metricValue(p, 'ponder_client_disconnects_total')) >= before + 1);
  });
});

// ---------------------------------------------------------------------------------------------
describe('keep-alive (the SDK\'s pooled connections)', () => {
  let fake, p, c;
  const req = { model: 'fake-model', messages: userMsg('keep the connection alive') };
  before(async () => {
    fake = await startFake();
    p = await startPonder({ config: configFor(fake, {
      routes: [{ name: 'forced', reasoning: 'field', forcing: { rounds: 2 } }] }) });
  });
  after(() => stopAll(p, fake));
  beforeEach(() => { fake.reset(); c = pooledClient(p.base, { timeout: 3000 }); });

  it('four sequential create() calls on one client', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await c.chat.completions.create(req);
      assert.ok(r.choices[0].message.content, `request ${i + 1}`);
    }
  });

  it('four sequential streams on one client', async () => {
    for (let i = 0; i < 4; i++) {
      const got = await collect(await c.chat.completions.create({ ...req, stream: true }));
      assert.ok(got.content && got.reasoning, `stream ${i + 1}`);
    }
  });

  it('error replies then a success on one client', async () => {
    for (let i = 0; i < 2; i++) {
      fake.script({ status: 429 });
      await assert.rejects(c.chat.completions.create(req), RateLimitError);
    }
    const r = await c.chat.completions.create(req);
    assert.ok(r.choices[0].message.content);
  });
});
