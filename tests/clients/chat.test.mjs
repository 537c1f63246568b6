// Client suite, Chat Completions: the real client packages, unchanged but for their base URL,
// through ponder against the fake upstream. Each gets the forced answer (one thinking call, then
// the answer call) and can show the reasoning: as reasoning_content (the `field` display) where
// the client reads it, else as the <think> block of the `inline` display.
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/clients/chat.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Agent, Runner, OpenAIProvider } from '@openai/agents';
import { generateText, streamText } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import {
  THOUGHT, ANSWER, INLINE, forcedScript, chatCalls, assertForcedCalls, usePonder,
} from './common.mjs';

describe('Chat Completions clients through ponder', () => {
  const env = usePonder();

  const openai = () => new OpenAI({ baseURL: env.base, apiKey: 'sk-test', maxRetries: 0, timeout: 10000 });

  it('openai chat.completions.create', async () => {
    forcedScript(env.fake);
    const c = await openai().chat.completions.create({
      model: 'think-model', messages: [{ role: 'user', content: 'What is six times seven?' }],
    });
    assert.equal(c.choices[0].message.content, ANSWER);
    assert.equal(c.choices[0].message.reasoning_content, THOUGHT);
    assert.ok(c.usage.completion_tokens_details.reasoning_tokens > 0);
    assertForcedCalls(env.fake);
  });

  it('openai chat.completions.stream() helper', async () => {
    forcedScript(env.fake);
    let reasoning = '';
    const stream = openai().chat.completions.stream({
      model: 'think-model', messages: [{ role: 'user', content: 'What is six times seven?' }],
    });
    stream.on('chunk', (chunk) => {
      const d = chunk.choices[0]?.delta;
      if (typeof d?.reasoning_content === 'string') reasoning += d.reasoning_content;
    });
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0].message.content, ANSWER);
    assert.equal(reasoning, THOUGHT);
    assertForcedCalls(env.fake);
  });

  it('openai runTools loop: forced tool call, then the tool result answered in one call', async () => {
    env.fake.script(
      { content: THOUGHT },
      { tool_calls: [{ id: 'call_1', type: 'function',
                       function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { content: 'It is sunny in Paris.' },
    );
    const seen = [];
    const reasonings = [];
    const runner = openai().chat.completions.runTools({
      model: 'think-model',
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools: [{
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          parse: JSON.parse,
          function: (args) => { seen.push(args.city); return 'sunny'; },
        },
      }],
    });
    runner.on('chatCompletion', (c) => reasonings.push(c.choices[0].message.reasoning_content));
    assert.equal(await runner.finalContent(), 'It is sunny in Paris.');
    assert.deepEqual(seen, ['Paris']);
    assert.equal(reasonings[0], THOUGHT, 'the forced turn shows its reasoning');
    assertForcedCalls(env.fake);
    const calls = chatCalls(env.fake);
    assert.equal(calls.length, 3, 'the tool-result turn is one unforced call');
    const last = calls[2].body.messages.at(-1);
    assert.equal(last.role, 'tool');
    assert.equal(last.tool_call_id, 'call_1');
  });

  it('@openai/agents Runner with a chat-completions model (useResponses: false)', async () => {
    forcedScript(env.fake);
    const runner = new Runner({
      modelProvider: new OpenAIProvider({ baseURL: env.base, apiKey: 'sk-test', useResponses: false }),
      tracingDisabled: true,
    });
    const agent = new Agent({ name: 'solver', instructions: 'Answer briefly.', model: 'inline-model' });
    const result = await runner.run(agent, 'What is six times seven?');
    assert.equal(result.finalOutput, INLINE);
    assertForcedCalls(env.fake);
    assert.equal(chatCalls(env.fake)[0].body.messages[0].role, 'system');
  });

  it('@openai/agents chat-completions model shows the thinking of reasoning_field: reasoning', async () => {
    const runner = new Runner({
      modelProvider: new OpenAIProvider({ baseURL: env.base, apiKey: 'sk-test', useResponses: false }),
      tracingDisabled: true,
    });
    const agent = new Agent({ name: 'solver', instructions: 'Answer briefly.', model: 'reasoning-model' });
    for (const stream of [false, true]) {
      env.fake.reset();
      forcedScript(env.fake);
      const result = await runner.run(agent, 'What is six times seven?', { stream });
      if (stream) await result.completed;
      assert.equal(result.finalOutput, ANSWER);
      const item = result.newItems.find((i) => i.type === 'reasoning_item');
      assert.ok(item, `a reasoning item (stream ${stream})`);
      assert.equal(item.rawItem.rawContent[0].text, THOUGHT);
      assertForcedCalls(env.fake);
    }
  });

  it('reasoning_field: reasoning names the field in messages and deltas (openai SDK)', async () => {
    forcedScript(env.fake);
    const c = await openai().chat.completions.create({ model: 'reasoning-model', messages: [{ role: 'user', content: 'Six times seven?' }] });
    assert.equal(c.choices[0].message.reasoning, THOUGHT);
    assert.equal(c.choices[0].message.reasoning_content, undefined);
    forcedScript(env.fake);
    const s = await openai().chat.completions.create({ model: 'reasoning-model', messages: [{ role: 'user', content: 'Six times seven?' }], stream: true });
    let reasoning = '';
    for await (const ch of s) {
      const d = ch.choices[0]?.delta;
      assert.equal(d?.reasoning_content, undefined);
      if (typeof d?.reasoning === 'string') reasoning += d.reasoning;
    }
    assert.equal(reasoning, THOUGHT);
  });

  it('reasoning_field: both writes the two names with the same text, in one delta', async () => {
    forcedScript(env.fake);
    const c = await openai().chat.completions.create({ model: 'both-model', messages: [{ role: 'user', content: 'Six times seven?' }] });
    assert.equal(c.choices[0].message.reasoning, THOUGHT);
    assert.equal(c.choices[0].message.reasoning_content, THOUGHT);
    forcedScript(env.fake);
    const s = await openai().chat.completions.create({ model: 'both-model', messages: [{ role: 'user', content: 'Six times seven?' }], stream: true });
    let a = '', b = '';
    for await (const ch of s) {
      const d = ch.choices[0]?.delta ?? {};
      assert.equal(d.reasoning, d.reasoning_content, 'both fields in the same chunk');
      a += d.reasoning ?? '';
      b += d.reasoning_content ?? '';
    }
    assert.equal(a, THOUGHT);
    assert.equal(b, THOUGHT);
  });

  it('ai with @ai-sdk/openai-compatible: answer and reasoning text, plain and streamed', async () => {
    const provider = createOpenAICompatible({ name: 'ponder', baseURL: env.base, apiKey: 'sk-test' });
    forcedScript(env.fake);
    const r = await generateText({ model: provider('think-model'), prompt: 'What is six times seven?',
                                   maxRetries: 0 });
    assert.equal(r.text, ANSWER);
    assert.equal(r.reasoningText, THOUGHT);
    assertForcedCalls(env.fake);

    env.fake.reset();
    forcedScript(env.fake);
    const s = streamText({ model: provider('think-model'), prompt: 'What is six times seven?',
                           maxRetries: 0 });
    let reasoning = '';
    let text = '';
    for await (const part of s.fullStream) {
      if (part.type === 'reasoning-delta') reasoning += part.text;
      if (part.type === 'text-delta') text += part.text;
      if (part.type === 'error') throw part.error;
    }
    assert.equal(text, ANSWER);
    assert.equal(reasoning, THOUGHT);
    assertForcedCalls(env.fake);
  });

  it("ai with @ai-sdk/openai's .chat() model", async () => {
    const openaiProvider = createOpenAI({ baseURL: env.base, apiKey: 'sk-test' });
    forcedScript(env.fake);
    const r = await generateText({ model: openaiProvider.chat('inline-model'),
                                   prompt: 'What is six times seven?', maxRetries: 0 });
    assert.equal(r.text, INLINE);
    assertForcedCalls(env.fake);
  });

  it('@langchain/openai ChatOpenAI (chat completions), invoke and stream', async () => {
    const llm = new ChatOpenAI({ model: 'think-model', apiKey: 'sk-test', maxRetries: 0,
                                 configuration: { baseURL: env.base } });
    forcedScript(env.fake);
    const msg = await llm.invoke('What is six times seven?');
    assert.equal(msg.content, ANSWER);
    assert.equal(msg.additional_kwargs.reasoning_content, THOUGHT);
    assertForcedCalls(env.fake);

    env.fake.reset();
    forcedScript(env.fake);
    let text = '';
    let reasoning = '';
    for await (const chunk of await llm.stream('What is six times seven?')) {
      if (typeof chunk.content === 'string') text += chunk.content;
      if (typeof chunk.additional_kwargs?.reasoning_content === 'string') {
        reasoning += chunk.additional_kwargs.reasoning_content;
      }
    }
    assert.equal(text, ANSWER);
    assert.equal(reasoning, THOUGHT);
    assertForcedCalls(env.fake);
  });
});
