// Client suite, Responses API (SPEC section 10): the real client packages that speak
// /v1/responses, unchanged but for their base URL, through ponder against the fake upstream.
// Run by hand: PONDER_BIN=$PWD/build/ponder node --test tests/clients/responses.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { Agent, Runner, OpenAIProvider } from '@openai/agents';
import { generateText, streamText } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import {
  THOUGHT, ANSWER, forcedScript, chatCalls, assertForcedCalls, usePonder,
} from './common.mjs';

/** Reads a raw Responses event stream: checks `event:` = data.type, sequence numbers 0, 1, 2...
 * and no [DONE]; returns the data objects. */
function readEvents(text) {
  assert.ok(!text.includes('[DONE]'), 'no [DONE] in a Responses stream');
  const out = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l && !l.startsWith(':'));
    if (!lines.length) continue;
    const ev = lines.find((l) => l.startsWith('event: '));
    const data = JSON.parse(lines.find((l) => l.startsWith('data: ')).slice(6));
    assert.equal(ev.slice(7), data.type);
    assert.equal(data.sequence_number, out.length);
    out.push(data);
  }
  return out;
}

describe('Responses clients through ponder', () => {
  const env = usePonder();

  const openai = () => new OpenAI({ baseURL: env.base, apiKey: 'sk-test', maxRetries: 0, timeout: 10000 });

  it('openai responses.create: the forced answer and a reasoning item', async () => {
    forcedScript(env.fake);
    const r = await openai().responses.create({ model: 'think-model', input: 'What is six times seven?' });
    assert.equal(r.object, 'response');
    assert.equal(r.status, 'completed');
    assert.equal(r.model, 'think-model');
    assert.equal(r.output_text, ANSWER);
    assert.equal(r.output[0].type, 'reasoning');
    assert.equal(r.output[0].content[0].text, THOUGHT);
    assert.equal(r.output[1].type, 'message');
    assert.ok(r.usage.output_tokens_details.reasoning_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    assertForcedCalls(env.fake);
  });

  it('openai responses.create stream: every event in order, thinking relayed live', async () => {
    forcedScript(env.fake);
    const stream = await openai().responses.create({ model: 'think-model', input: 'Six times seven?', stream: true });
    const types = [];
    let reasoning = '';
    let text = '';
    let final = null;
    for await (const ev of stream) {
      assert.equal(ev.sequence_number, types.length);
      types.push(ev.type);
      if (ev.type === 'response.reasoning_text.delta') reasoning += ev.delta;
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') final = ev.response;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types[1], 'response.in_progress');
    assert.equal(types.at(-1), 'response.completed');
    assert.equal(reasoning, THOUGHT);
    assert.equal(text, ANSWER);
    assert.equal(final.output.length, 2);
    assert.ok(final.usage.output_tokens > 0);
    assertForcedCalls(env.fake);
  });

  it('responses.stream() helper and the raw wire (event lines, no [DONE])', async () => {
    forcedScript(env.fake);
    const final = await openai().responses.stream({ model: 'think-model', input: 'Six times seven?' })
      .finalResponse();
    assert.equal(final.output_text, ANSWER);
    env.fake.reset();
    forcedScript(env.fake);
    const res = await fetch(`${env.base}/responses`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'think-model', input: 'Six times seven?', stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const evs = readEvents(await res.text());
    assert.equal(evs.at(-1).type, 'response.completed');
  });

  it('function_call, then function_call_output: one unforced call, no thinking sent back', async () => {
    const tools = [{ type: 'function', name: 'get_weather', description: 'Weather of a city',
                     parameters: { type: 'object', properties: { city: { type: 'string' } },
                                   required: ['city'] }, strict: true }];
    env.fake.script(
      { content: THOUGHT },
      { tool_calls: [{ id: 'call_1', type: 'function',
                       function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { content: 'It is sunny in Paris.' },
    );
    const client = openai();
    const input = [{ role: 'user', content: 'Weather in Paris?' }];
    const r1 = await client.responses.create({ model: 'think-model', input, tools });
    const call = r1.output.find((o) => o.type === 'function_call');
    assert.equal(call.name, 'get_weather');
    assert.equal(call.call_id, 'call_1');
    assert.equal(call.arguments, '{"city":"Paris"}');
    assertForcedCalls(env.fake);
    assert.equal(chatCalls(env.fake)[1].body.tools[0].function.name, 'get_weather');
    const r2 = await client.responses.create({
      model: 'think-model', tools,
      input: [...input, ...r1.output, { type: 'function_call_output', call_id: 'call_1', output: 'sunny' }],
    });
    assert.equal(r2.output_text, 'It is sunny in Paris.');
    const calls = chatCalls(env.fake);
    assert.equal(calls.length, 3);
    const msgs = calls[2].body.messages;
    assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'tool']);
    assert.equal(msgs[1].tool_calls[0].id, 'call_1');
    assert.ok(!JSON.stringify(msgs).includes(THOUGHT), 'earlier thinking is not sent upstream');
  });

  it('text.format json_schema (responses.parse with zod)', async () => {
    forcedScript(env.fake, { content: '{"answer":42}' });
    const r = await openai().responses.parse({
      model: 'think-model', input: 'Six times seven?',
      text: { format: zodTextFormat(z.object({ answer: z.number() }), 'result') },
    });
    assert.deepEqual(r.output_parsed, { answer: 42 });
    const answerCall = chatCalls(env.fake)[1].body;
    assert.equal(answerCall.response_format.type, 'json_schema');
    assert.equal(answerCall.response_format.json_schema.name, 'result');
    assert.equal(chatCalls(env.fake)[0].body.response_format, undefined, 'not on the thinking call');
  });

  it('reasoning.summary: the thinking as summary parts, plain and streamed', async () => {
    forcedScript(env.fake);
    const r = await openai().responses.create({ model: 'think-model', input: 'Six times seven?',
                                                reasoning: { summary: 'auto' } });
    assert.equal(r.output[0].summary[0].text, THOUGHT);
    env.fake.reset();
    forcedScript(env.fake);
    let summary = '';
    const s = await openai().responses.create({ model: 'think-model', input: 'Six times seven?',
                                                reasoning: { summary: 'auto' }, stream: true });
    for await (const ev of s) if (ev.type === 'response.reasoning_summary_text.delta') summary += ev.delta;
    assert.equal(summary, THOUGHT);
  });

  it('a stateless 400: previous_response_id', async () => {
    await assert.rejects(
      openai().responses.create({ model: 'think-model', input: 'x', previous_response_id: 'resp_1' }),
      (e) => e.status === 400 && e.param === 'previous_response_id' && /stateless/.test(e.message));
    await assert.rejects(
      openai().responses.create({ model: 'think-model', input: 'x', tools: [{ type: 'web_search' }] }),
      (e) => e.status === 400 && e.param === 'tools');
  });

  it('@openai/agents Runner with OpenAIProvider (Responses, the default)', async () => {
    forcedScript(env.fake);
    const runner = new Runner({
      modelProvider: new OpenAIProvider({ baseURL: env.base, apiKey: 'sk-test' }),
      tracingDisabled: true,
    });
    const agent = new Agent({ name: 'solver', instructions: 'Answer briefly.', model: 'think-model' });
    const result = await runner.run(agent, 'What is six times seven?');
    assert.equal(result.finalOutput, ANSWER);
    assert.ok(JSON.stringify(result.newItems).includes(THOUGHT), 'a reasoning item shows the thinking');
    assertForcedCalls(env.fake);
  });

  it("ai with @ai-sdk/openai's default (Responses) model", async () => {
    const provider = createOpenAI({ baseURL: env.base, apiKey: 'sk-test' });
    const opts = { openai: { forceReasoning: true, reasoningSummary: 'auto' } };
    forcedScript(env.fake);
    const r = await generateText({ model: provider('think-model'), prompt: 'Six times seven?',
                                   providerOptions: opts, maxRetries: 0 });
    assert.equal(r.text, ANSWER);
    assert.equal(r.reasoningText, THOUGHT);
    assertForcedCalls(env.fake);
    env.fake.reset();
    forcedScript(env.fake);
    const s = streamText({ model: provider('think-model'), prompt: 'Six times seven?',
                           providerOptions: opts, maxRetries: 0 });
    let text = '';
    let reasoning = '';
    for await (const part of s.fullStream) {
      if (part.type === 'text-delta') text += part.text;
      if (part.type === 'reasoning-delta') reasoning += part.text;
      if (part.type === 'error') throw part.error;
    }
    assert.equal(text, ANSWER);
    assert.equal(reasoning, THOUGHT);
  });

  it('@langchain/openai ChatOpenAI with useResponsesApi', async () => {
    const llm = new ChatOpenAI({ model: 'think-model', apiKey: 'sk-test', maxRetries: 0,
                                 useResponsesApi: true, reasoning: { summary: 'auto' },
                                 configuration: { baseURL: env.base } });
    forcedScript(env.fake);
    const msg = await llm.invoke('What is six times seven?');
    assert.equal(msg.text, ANSWER);
    assert.ok(JSON.stringify(msg).includes(THOUGHT), 'the reasoning summary is on the message');
    assertForcedCalls(env.fake);
  });
});
