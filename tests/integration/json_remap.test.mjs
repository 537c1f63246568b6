// The model remap of a relayed reply (a route that maps the model, forcing off): whatever JSON
// the upstream sends, the client gets its own model name back, or a 502. A reply that the
// relay's check passed but jansson refused used to go out with the upstream's model name; a
// reply jansson reads but the check refused (nested deeper than 64) got a 502. The check and the
// remap now share one tokenizer with jansson's verdict.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startPonder, configFor, chat, parseSSE } from '../lib/harness.mjs';

const reply = (extra, { model = '"model":"up",' } = {}) =>
  Buffer.from(
    `{"id":"chatcmpl-r","object":"chat.completion","created":1,${model}` +
      '"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],' +
      `"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}${extra}}`,
    'latin1');

// Replies jansson refuses (each of these passed the old check).
const REFUSED = {
  'invalid UTF-8': reply(',"x":"a\xffb"'),
  'overlong UTF-8': reply(',"x":"\xc0\xaf"'),
  'UTF-8 surrogate': reply(',"x":"\xed\xa0\x80"'),
  'lone high surrogate escape': reply(',"x":"\\ud800"'),
  'lone low surrogate escape': reply(',"x":"\\udc00"'),
  'escaped NUL': reply(',"x":"\\u0000"'),
  'real overflow': reply(',"x":1e400'),
  'integer overflow': reply(',"x":99999999999999999999'),
  'negative integer overflow': reply(',"x":-9223372036854775809'),
};

// Replies jansson reads: the client's model name must come back, with a 200.
const ACCEPTED = {
  'plain': reply(''),
  'nested 100 deep (refused by the old check)': reply(`,"x":${'['.repeat(100)}${']'.repeat(100)}`),
  'duplicate model keys': reply('', { model: '"model":"up","model":"up2",' }),
  'escaped model key': reply('', { model: '"mod\\u0065l":"up",' }),
  'model not a string': reply('', { model: '"model":{"name":"up"},' }),
  'blanks everywhere': Buffer.from(' { "model" : "up" , "choices" : [ ] } \n'),
};

describe('model remap of relayed replies', () => {
  let fake, p;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [{ name: 'm', match: { path_prefix: '/m' }, model: 'mapped-model', forcing: { rounds: 0 } }],
      }),
    });
  });
  after(async () => {
    const r = await p.stop();
    assert.equal(r.code, 0);
    await fake.close();
  });

  const ask = async (raw, extra = {}) => {
    fake.reset();
    fake.script({ raw_body: raw.toString('base64'), ...extra });
    return chat(`${p.url}/m/v1`, { model: 'asked', messages: [{ role: 'user', content: 'hi' }],
      ...(extra.raw_content_type ? { stream: true } : {}) });
  };

  for (const [name, raw] of Object.entries(REFUSED)) {
    test(`refused by jansson: ${name} -> 502, or the client's model`, async () => {
      const r = await ask(raw);
      assert.equal(fake.log.length, 1);
      assert.equal(fake.log[0].body.model, 'mapped-model');
      if (r.status === 502) {
        assert.equal(r.json.error.type, 'upstream_error');
      } else {
        assert.equal(r.status, 200);
        assert.equal(r.json?.model, 'asked', `the upstream's model name went out: ${r.text}`);
      }
      assert.ok(!r.text.includes('"up"'), `the upstream's model name went out: ${r.text}`);
    });
  }

  for (const [name, raw] of Object.entries(ACCEPTED)) {
    test(`read by jansson: ${name} -> 200 with the client's model`, async () => {
      const r = await ask(raw);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.model, 'asked');
      assert.ok(!r.text.includes('"up"'), `the upstream's model name went out: ${r.text}`);
      // The rest of the reply is the upstream's.
      const want = JSON.parse(raw.toString('latin1'));
      delete want.model;
      delete r.json.model;
      assert.deepEqual(r.json, want);
    });
  }

  test('a relayed stream gets the client\'s model name on every chunk', async () => {
    const ev = (o) => `data: ${JSON.stringify(o)}\n\n`;
    const chunk = (delta, extra = {}) => ({ id: 'c', object: 'chat.completion.chunk', created: 1,
      model: 'up', choices: [{ index: 0, delta, finish_reason: null }], ...extra });
    const raw = Buffer.from(ev(chunk({ role: 'assistant', content: '' })) + ev(chunk({ content: 'hi' })) +
      `data: {"id":"c","mod\\u0065l":"up","choices":[],"x":${'['.repeat(80)}${']'.repeat(80)}}\n\n` +
      'data: [DONE]\n\n');
    const r = await ask(raw, { raw_content_type: 'text/event-stream' });
    assert.equal(r.status, 200);
    const events = parseSSE(r.text);
    assert.equal(events.length, 4);
    for (const e of events.slice(0, 3)) assert.equal(e.model, 'asked');
    assert.equal(events[3], '[DONE]');
    assert.ok(!r.text.includes('"up"'), r.text);
  });
});
