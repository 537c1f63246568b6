// Client suite, Chat Completions: the real client packages, unchanged but for their base URL,
// through ponder against the fake upstream. Each gets the forced answer (one thinking call, then
// the answer call) and can show the reasoning: as reasoning_content (the `field` display) where
// the client reads it, else as the <think> block of the `inline` display.
// Run: PONDER_BIN=$PWD/build/ponder node --test tests/clients/chat.test.mjs
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Agent, Runner, OpenAIProvider, setTracingDisabled } from '@openai/agents';
import { generateText, streamText } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import { startPonder, startFake, configFor } from '../lib/harness.mjs';

// No trace export: nothing may leave loopback.
setTracingDisabled(true);

const THOUGHT = 'Let me think this through carefully.';
const ANSWER = 'The answer is forty-two.';
const THINK_PROMPT = 'Think for up to';
const ANSWER_PROMPT = 'Now provide the final answer.';

/** Thinking reply, then the answer reply. */
const forcedScript = (fake, answer = { content: ANSWER }) => fake.script({ content: THOUGHT }, answer);

const chatCalls = (fake) => fake.log.filter((e) => e.path.endsWith('/chat/completions'));

/** The exact upstream calls of one forced exchange: a thinking call with the think prompt on the
 * last user message, then the answer call with the answer prompt. */
function assertForcedCalls(fake, from = 0) {
  const calls = chatCalls(fake).slice(from, from + 2);
  assert.equal(calls.length, 2, 'one thinking call and one answer call');
  const lastText = (c) => {
    const m = c.body.messages[c.body.messages.length - 1];
    return typeof m.content === 'string' ? m.content : JSON.stringify(m.content);
  };
  assert.ok(lastText(calls[0]).includes(THINK_PROMPT), 'thinking call carries the think prompt');
  assert.ok(lastText(calls[1]).includes(ANSWER_PROMPT), 'answer call carries the answer prompt');
  assert.equal(calls[0].body.tools, undefined, 'no tools on the thinking call');
}

describe('Chat Completions clients through ponder', () => {
  let fake, p, base;
  before(async () => {
    fake = await startFake();
    p = await startPonder({
      config: configFor(fake, {
        routes: [
          { name: 'inline', match: { models: ['inline-model'] }, reasoning: 'inline', forcing: { rounds: 1 } },
          { name: 'field', reasoning: 'field', forcing: { rounds: 1 } },
        ],
      }),
    });
    base = p.base;
  });
  after(async () => {
    const r = await p.stop();
    await fake.close();
    assert.equal(r.code, 0, p.output());
  });
  beforeEach(() => fake.reset());

  const openai = () => new OpenAI({ baseURL: base, apiKey: 'sk-test', maxRetries: 0, timeout: 10000 });

  it('openai chat.completions.create', async () => {
    forcedScript(fake);
    const c = await openai().chat.completions.create({
      model: 'think-model', messages: [{ role: 'user', content: 'What is six times seven?' }],
    });
    assert.equal(c.choices[0].message.content, ANSWER);
    assert.equal(c.choices[0].message.reasoning_content, THOUGHT);
    assert.ok(c.usage.completion_tokens_details.reasoning_tokens > 0);
    assertForcedCalls(fake);
  });

  it('openai chat.completions.stream() helper', async () => {
    forcedScript(fake);
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
    assertForcedCalls(fake);
  });

  it('openai runTools loop: forced tool call, then the tool result answered in one call', async () => {
    fake.script(
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
    assertForcedCalls(fake);
    const calls = chatCalls(fake);
    assert.equal(calls.length, 3, 'the tool-result turn is one unforced call');
    const last = calls[2].body.messages.at(-1);
    assert.equal(last.role, 'tool');
    assert.equal(last.tool_call_id, 'call_1');
  });

  it('@openai/agents Runner with a chat-completions model (useResponses: false)', async () => {
    forcedScript(fake);
    const runner = new Runner({
      modelProvider: new OpenAIProvider({ baseURL: base, apiKey: 'sk-test', useResponses: false }),
      tracingDisabled: true,
    });
    const agent = new Agent({ name: 'solver', instructions: 'Answer briefly.', model: 'inline-model' });
    const result = await runner.run(agent, 'What is six times seven?');
    assert.equal(result.finalOutput, `<think>\n${THOUGHT}\n</think>\n\n${ANSWER}`);
    assertForcedCalls(fake);
    assert.equal(chatCalls(fake)[0].body.messages[0].role, 'system');
  });

  it('ai with @ai-sdk/openai-compatible: answer and reasoning text, plain and streamed', async () => {
    const provider = createOpenAICompatible({ name: 'ponder', baseURL: base, apiKey: 'sk-test' });
    forcedScript(fake);
    const r = await generateText({ model: provider('think-model'), prompt: 'What is six times seven?',
                                   maxRetries: 0 });
    assert.equal(r.text, ANSWER);
    assert.equal(r.reasoningText, THOUGHT);
    assertForcedCalls(fake);

    fake.reset();
    forcedScript(fake);
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
    assertForcedCalls(fake);
  });

  it("ai with @ai-sdk/openai's .chat() model", async () => {
    const openaiProvider = createOpenAI({ baseURL: base, apiKey: 'sk-test' });
    forcedScript(fake);
    const r = await generateText({ model: openaiProvider.chat('inline-model'),
                                   prompt: 'What is six times seven?', maxRetries: 0 });
    assert.equal(r.text, `<think>\n${THOUGHT}\n</think>\n\n${ANSWER}`);
    assertForcedCalls(fake);
  });

  it('@langchain/openai ChatOpenAI (chat completions), invoke and stream', async () => {
    const llm = new ChatOpenAI({ model: 'think-model', apiKey: 'sk-test', maxRetries: 0,
                                 configuration: { baseURL: base } });
    forcedScript(fake);
    const msg = await llm.invoke('What is six times seven?');
    assert.equal(msg.content, ANSWER);
    assert.equal(msg.additional_kwargs.reasoning_content, THOUGHT);
    assertForcedCalls(fake);

    fake.reset();
    forcedScript(fake);
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
    assertForcedCalls(fake);
  });
});
