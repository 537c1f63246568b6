// Shared by the client suites (chat.test.mjs, responses.test.mjs): one ponder in front of the
// fake upstream with three routes (`field` display by default, `inline` for the model
// inline-model, `field` named `reasoning` (reasoning_field) for reasoning-model), all forcing one
// thinking call; scripted replies; and the check of the exact
// upstream calls of one forced exchange.
import { before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { setTracingDisabled } from '@openai/agents';
import { startPonder, startFake, configFor } from '../lib/harness.mjs';

// No trace export from the Agents SDK: nothing may leave loopback.
setTracingDisabled(true);

export const THOUGHT = 'Let me think this through carefully.';
export const ANSWER = 'The answer is forty-two.';
export const THINK_PROMPT = 'Think for up to'; // the default think prompt
export const ANSWER_PROMPT = 'Now provide the final answer.'; // the default answer prompt
export const INLINE = `<think>\n${THOUGHT}\n</think>\n\n${ANSWER}`;

/** Scripts the thinking reply, then the answer reply. */
export const forcedScript = (fake, answer = { content: ANSWER }) =>
  fake.script({ content: THOUGHT }, answer);

export const chatCalls = (fake) => fake.log.filter((e) => e.path.endsWith('/chat/completions'));

/** The exact upstream calls of one forced exchange, all in chat completions: a thinking call
 * with the think prompt on the last user message and no tools, then the answer call with the
 * answer prompt. */
export function assertForcedCalls(fake, from = 0) {
  assert.equal(fake.log.filter((e) => e.path.endsWith('/responses')).length, 0,
               'the upstream is spoken to in chat completions');
  const calls = chatCalls(fake).slice(from, from + 2);
  assert.equal(calls.length, 2, 'one thinking call and one answer call');
  const lastText = (c) => JSON.stringify(c.body.messages.at(-1).content);
  assert.ok(lastText(calls[0]).includes(THINK_PROMPT), 'thinking call carries the think prompt');
  assert.ok(lastText(calls[1]).includes(ANSWER_PROMPT), 'answer call carries the answer prompt');
  assert.equal(calls[0].body.tools, undefined, 'no tools on the thinking call');
}

/** Registers the suite's hooks; the returned object's fake and base are set once before ran. */
export function usePonder() {
  const env = { fake: null, p: null, base: null };
  before(async () => {
    env.fake = await startFake();
    env.p = await startPonder({
      config: configFor(env.fake, {
        routes: [
          { name: 'inline', match: { models: ['inline-model'] }, reasoning: 'inline', forcing: { rounds: 1 } },
          { name: 'rfield', match: { models: ['reasoning-model'] }, reasoning: 'field', reasoning_field: 'reasoning', forcing: { rounds: 1 } },
          { name: 'rboth', match: { models: ['both-model'] }, reasoning_field: 'both', forcing: { rounds: 1 } },
          { name: 'field', reasoning: 'field', forcing: { rounds: 1 } },
        ],
      }),
    });
    env.base = env.p.base;
  });
  after(async () => {
    const r = await env.p.stop();
    await env.fake.close();
    assert.equal(r.code, 0, env.p.output());
  });
  beforeEach(() => env.fake.reset());
  return env;
}
