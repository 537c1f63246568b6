#!/usr/bin/env node
// Fake OpenAI-compatible upstream for ponder's integration tests, SDK tests and benchmarks.
// Node 20 built-ins only. See tests/fake/README.md for the full behaviour and control API.
//
//   node tests/fake/upstream.mjs [--port N] [--host 127.0.0.1] [--fast] [--h2c] [--reasoner]
//   -> prints exactly one line {"port":N} on stdout once listening; exits on SIGTERM/SIGINT.
//
//   import { startFake } from './upstream.mjs';
//   const fake = await startFake({ port: 0, fast: false });  // { port, url, close(), ... }
//   startFake({ h2c: true }) speaks HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
//   startFake({ reasoner: true }) answers chat as a simulated reasoner (see "reasoner mode").

import http from 'node:http';
import http2 from 'node:http2';
import { setTimeout as sleepP, setImmediate as immediateP } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

const FAST_MODEL = 'fake-model';
const MODELS_BODY = JSON.stringify({
  object: 'list',
  data: [{ id: 'fake-model', object: 'model', created: 0, owned_by: 'fake' }],
});

// ---------------------------------------------------------------------------
// small helpers

function words(s) {
  if (typeof s !== 'string' || s.length === 0) return [];
  return s.split(/\s+/).filter(Boolean);
}

function lastWords(s, n) {
  const w = words(s);
  return w.slice(Math.max(0, w.length - n)).join(' ');
}

// "alpha beta" -> ["alpha", " beta"]; trailing whitespace sticks to the last token.
function tokenize(s) {
  if (typeof s !== 'string' || s.length === 0) return [];
  const toks = s.match(/\s*\S+/g) || [];
  const used = toks.reduce((a, t) => a + t.length, 0);
  if (used < s.length) {
    const tail = s.slice(used);
    if (toks.length) toks[toks.length - 1] += tail;
    else toks.push(tail);
  }
  return toks;
}

// text of a message content: string, or the text parts of an array
function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (typeof p === 'string' ? p : p && typeof p.text === 'string' ? p.text : ''))
      .filter((t) => t.length)
      .join(' ');
  }
  return '';
}

function promptText(prompt) {
  if (typeof prompt === 'string') return prompt;
  if (Array.isArray(prompt)) return prompt.filter((p) => typeof p === 'string').join(' ');
  return '';
}

function normStops(stop) {
  if (typeof stop === 'string') return stop.length ? [stop] : [];
  if (Array.isArray(stop)) return stop.filter((s) => typeof s === 'string' && s.length);
  return [];
}

function cutAtStop(text, stops) {
  let cut = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (cut < 0 || i < cut)) cut = i;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}

function tokenLimit(body) {
  const v = body.max_completion_tokens ?? body.max_tokens;
  return typeof v === 'number' && v >= 0 ? Math.floor(v) : Infinity;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function waitDrain(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function sleep(ms, signal) {
  if (!(ms > 0)) return true;
  try {
    await sleepP(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

// Breaks the reply off: over HTTP/1.1 the connection is destroyed; over h2c only this stream
// is reset (RST_STREAM INTERNAL_ERROR), the way an HTTP/2 server fails one call, unless
// `connection` asks for the whole connection (every stream on it) to go.
function kill(res, connection = false) {
  if (res.stream && connection) {
    res.stream.session?.destroy();
  } else if (res.stream) {
    if (!res.stream.destroyed) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  } else {
    res.socket?.destroy();
  }
}

// Writes buf in drip_bytes pieces, drip_ms apart (a slow upstream); false once the reply closed.
async function drip(res, buf, spec, signal, isClosed) {
  const step = Math.max(1, Math.floor(spec.drip_bytes ?? 8));
  for (let i = 0; i < buf.length; i += step) {
    if (i > 0 && (!(await sleep(spec.drip_ms, signal)) || isClosed())) return false;
    if (isClosed()) return false;
    const ok = res.write(buf.subarray(i, i + step));
    if (!ok) await waitDrain(res);
  }
  return !isClosed();
}

function sendJson(res, status, obj, extraHeaders) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...(extraHeaders || {}),
  });
  res.end(body);
}

function errorBody(status, spec = {}) {
  let type = 'invalid_request_error';
  let code = 'invalid_request_error';
  if (status === 429) {
    type = 'rate_limit_error';
    code = 'rate_limit_exceeded';
  } else if (status >= 500) {
    type = 'server_error';
    code = 'server_error';
  }
  return {
    error: {
      message: spec.message ?? `Fake upstream error ${status}`,
      type: spec.type ?? type,
      param: null,
      code: spec.code ?? code,
    },
  };
}

function sseHeaders(extra) {
  return {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    ...(extra || {}),
  };
}

// A streaming writer: one res.write per SSE event, yields between events so each one is its own
// TCP write, honours backpressure ('drain'), token_delay_ms, cut_after, cut_mid_event, drip_ms
// and hang_after.
function makeStreamer(res, spec, st, signal) {
  const s = { sent: 0, stopped: false };
  let closed = false;
  res.on('close', () => {
    closed = true;
  });
  s.event = async (payload) => {
    if (closed || s.stopped) return false;
    if (spec.cut_after != null && s.sent >= spec.cut_after) {
      s.stopped = true;
      if (spec.cut_clean) res.end();
      else kill(res);
      return false;
    }
    if (spec.cut_mid_event != null && s.sent >= spec.cut_mid_event) {
      // Part of this event's bytes (never all, never none), then the reply breaks off.
      s.stopped = true;
      const buf = Buffer.from(payload);
      const part = Math.max(1, Math.min(buf.length - 1, Math.floor(buf.length / 2)));
      st.partial++;
      if (spec.cut_clean) res.end(buf.subarray(0, part));
      else {
        res.write(buf.subarray(0, part));
        setTimeout(() => kill(res), 20);
      }
      return false;
    }
    if (spec.hang_after != null && s.sent >= spec.hang_after) {
      s.stopped = true; // keep the socket open, send nothing more
      s.hung = true;
      return false;
    }
    if (s.sent > 0 && spec.token_delay_ms > 0) {
      if (!(await sleep(spec.token_delay_ms, signal)) || closed) return false;
    }
    if (spec.bad_event != null && s.sent === spec.bad_event && !s.badSent) {
      s.badSent = true; // one event whose data is not JSON, in place, then the stream goes on
      res.write('data: {not json\n\n');
    }
    if (spec.drip_ms > 0) {
      if (!(await drip(res, Buffer.from(payload), spec, signal, () => closed))) return false;
      s.sent++;
      st.events++;
      return !closed;
    }
    const ok = res.write(payload);
    s.sent++;
    st.events++;
    if (!ok) await waitDrain(res);
    else await immediateP();
    return !closed;
  };
  s.end = () => {
    if (!closed && !s.stopped) res.end(); // stopped = cut (destroyed) or hang_after (left open)
  };
  return s;
}

// ---------------------------------------------------------------------------
// reply construction

// A token source: { count, at(i) }.
function arraySource(toks) {
  return { count: toks.length, at: (i) => toks[i] };
}
function materialize(src) {
  let out = '';
  for (let i = 0; i < src.count; i++) out += src.at(i);
  return out;
}
function generatedSource(n) {
  return { count: n, at: (i) => (i === 0 ? 'tok0' : ' tok' + i) };
}

function splitPieces(s, size) {
  const out = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

// Builds the (possibly truncated) reply shared by JSON and SSE answers.
function buildReply(body, spec, defaultText) {
  const stops = normStops(body.stop);
  const limit = tokenLimit(body);

  let reasoningField = null;
  let reasoningText = null;
  if (typeof spec.reasoning_content === 'string') {
    reasoningField = 'reasoning_content';
    reasoningText = spec.reasoning_content;
  } else if (typeof spec.reasoning === 'string') {
    reasoningField = 'reasoning';
    reasoningText = spec.reasoning;
  }

  const toolCalls = Array.isArray(spec.tool_calls)
    ? spec.tool_calls.map((tc, i) => ({
        id: tc.id ?? `call_fake_${i}`,
        type: tc.type ?? 'function',
        function: {
          name: tc.function?.name ?? 'fn',
          arguments:
            typeof tc.function?.arguments === 'string'
              ? tc.function.arguments
              : JSON.stringify(tc.function?.arguments ?? {}),
        },
      }))
    : null;

  let contentSrc;
  let contentIsNull = false;
  const contentGiven = typeof spec.content === 'string' || typeof spec.text === 'string';
  if (contentGiven) {
    contentSrc = arraySource(tokenize(spec.content ?? spec.text));
  } else if (typeof spec.tokens === 'number') {
    contentSrc = generatedSource(Math.max(0, Math.floor(spec.tokens)));
  } else if (toolCalls) {
    contentSrc = arraySource([]);
    contentIsNull = true;
  } else {
    contentSrc = arraySource(tokenize(defaultText));
  }

  let truncated = false;
  let stopped = false;
  if (stops.length && contentSrc.count) {
    const r = cutAtStop(materialize(contentSrc), stops);
    if (r.stopped) {
      stopped = true;
      contentSrc = arraySource(tokenize(r.text));
    }
  }

  let reasoningToks = reasoningText != null ? tokenize(reasoningText) : [];
  let budget = limit;
  if (reasoningToks.length > budget) {
    reasoningToks = reasoningToks.slice(0, budget);
    truncated = true;
  }
  budget -= reasoningToks.length;
  if (contentSrc.count > budget) {
    const src = contentSrc;
    contentSrc = { count: budget, at: src.at };
    truncated = true;
  }

  const finish =
    spec.finish_reason ?? (truncated ? 'length' : stopped ? 'stop' : toolCalls ? 'tool_calls' : 'stop');

  const toolPieces = toolCalls ? toolCalls.map((tc) => splitPieces(tc.function.arguments, 8)) : [];
  const toolTokens = toolPieces.reduce((a, p) => a + p.length, 0);

  return {
    reasoningField,
    reasoningToks,
    hasReasoning: reasoningField != null,
    contentSrc,
    contentIsNull,
    toolCalls,
    toolPieces,
    finish,
    completionTokens: reasoningToks.length + contentSrc.count + toolTokens,
  };
}

function makeUsage(promptTokens, reply, n, spec) {
  const completion = reply.completionTokens * n;
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    total_tokens: promptTokens + completion,
  };
  if (reply.hasReasoning) {
    usage.completion_tokens_details = { reasoning_tokens: reply.reasoningToks.length * n };
  }
  if (spec.usage && typeof spec.usage === 'object') Object.assign(usage, spec.usage);
  return usage;
}

// ---------------------------------------------------------------------------
// reasoner mode (`ponder eval` demos and tests): a deterministic simulation of a model whose
// answers get better with more forced thinking turns. Not a model: every reply says so.
//
// The question's first arithmetic expression (integers with + - *, usual precedence) has the
// right answer R. It needs N = (operators - 1) thinking rounds (at least 0): a reply after k
// thinking rounds answers R when k >= N, else R + (N - k). A call is a thinking call when,
// with no simulated thinking turn in the request yet, the text after the last "\n\n" of the
// last user message mentions "think" (ponder's chat-mode think prompt), or, after k >= 1
// turns, when the last user message does not mention "answer" (the continue prompt). Thinking
// turns are counted by the assistant messages that start with REASONER_MARK. A judge request
// (its last message holds "Model's Answer:" and "Correct Answer:") is answered
// {"label": "correct" | "incorrect"} by comparing the two lines.

const REASONER_MARK = '[simulated thinking';

export function reasonerExpr(text) {
  const m = /\d+(?:\s*[-+*]\s*\d+)+/.exec(text || '');
  if (!m) return null;
  const toks = m[0].match(/\d+|[-+*]/g);
  // * first, then + and - left to right, in BigInt so any length is exact.
  const terms = [BigInt(toks[0])];
  const ops = [];
  for (let i = 1; i < toks.length; i += 2) {
    const op = toks[i], v = BigInt(toks[i + 1]);
    if (op === '*') terms[terms.length - 1] *= v;
    else {
      ops.push(op);
      terms.push(v);
    }
  }
  let value = terms[0];
  for (let i = 0; i < ops.length; i++) value = ops[i] === '+' ? value + terms[i + 1] : value - terms[i + 1];
  const operators = (toks.length - 1) / 2;
  return { expr: m[0], value, needs: Math.max(0, operators - 1) };
}

// The answer after k thinking rounds, as text.
export function reasonerAnswer(text, k) {
  const e = reasonerExpr(text);
  if (!e) return null;
  return String(k >= e.needs ? e.value : e.value + BigInt(e.needs - k));
}

function reasonerReply(body) {
  const msgs = body.messages;
  const last = msgs[msgs.length - 1];
  const lastText = textOf(last?.content);
  const ma = /Model's Answer:\s*(.*)/.exec(lastText);
  const ca = /Correct Answer:\s*(.*)/.exec(lastText);
  if (ma && ca) {
    const label = ma[1].trim() !== '' && ma[1].trim() === ca[1].trim() ? 'correct' : 'incorrect';
    return body.response_format ? JSON.stringify({ label }) : `The answer is ${label}.`;
  }
  const firstUser = msgs.find((m) => m && m.role === 'user');
  const qText = textOf(firstUser?.content);
  const cut = qText.lastIndexOf('\n\n');
  const question = cut >= 0 ? qText.slice(0, cut) : qText;
  const k = msgs.filter((m) => m && m.role === 'assistant' && textOf(m.content).startsWith(REASONER_MARK)).length;
  let thinking;
  if (last?.role !== 'user') thinking = false;
  else if (k === 0) {
    const c = lastText.lastIndexOf('\n\n');
    thinking = c >= 0 && /think/i.test(lastText.slice(c + 2));
  } else thinking = !/answer/i.test(lastText);
  const e = reasonerExpr(question);
  if (!e) {
    return thinking
      ? `${REASONER_MARK} ${k + 1}] (a simulation, not a model) I find no arithmetic to work on.`
      : '(simulated answer, not a model) I cannot answer this.';
  }
  const now = reasonerAnswer(question, k + (thinking ? 1 : 0));
  if (thinking) {
    return `${REASONER_MARK} ${k + 1}] (a simulation, not a model) Working through ${e.expr} again, ` +
      `I now get ${now}.`;
  }
  return `(simulated answer after ${k} thinking round${k === 1 ? '' : 's'}, not a model) ` +
    `The answer is \\boxed{${now}}.`;
}

// ---------------------------------------------------------------------------
// endpoint handlers (normal mode)

async function answerChat(req, res, body, spec, st, signal) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return sendJson(res, 400, errorBody(400, { message: 'Invalid JSON body' }));
  }
  if (!Array.isArray(body.messages)) {
    return sendJson(res, 400, errorBody(400, { message: "'messages' is a required property" }));
  }
  const model = typeof body.model === 'string' ? body.model : FAST_MODEL;
  const n = Number.isInteger(body.n) && body.n > 1 ? body.n : 1;
  const last = body.messages[body.messages.length - 1];
  const defaultText = st.reasoner ? reasonerReply(body) : 'Answer to: ' + lastWords(textOf(last?.content), 8);
  const reply = buildReply(body, spec, defaultText);
  const promptTokens = body.messages.reduce((a, m) => a + words(textOf(m?.content)).length, 0);
  const usage = makeUsage(promptTokens, reply, n, spec);
  const id = `chatcmpl-fake-${++st.seq}`;
  const created = Math.floor(Date.now() / 1000);
  const extra = spec.headers;

  const stream = body.stream === true && !spec.json_for_stream;
  if (!stream) {
    const message = { role: 'assistant', content: reply.contentIsNull ? null : materialize(reply.contentSrc) };
    if (reply.hasReasoning) message[reply.reasoningField] = reply.reasoningToks.join('');
    if (reply.toolCalls) message.tool_calls = reply.toolCalls;
    const choices = [];
    for (let i = 0; i < n; i++) {
      choices.push({ index: i, message, finish_reason: reply.finish, logprobs: null });
    }
    const obj = { id, object: 'chat.completion', created, model, choices, usage };
    return sendCut(res, 200, JSON.stringify(obj), spec, extra, signal);
  }

  const includeUsage = body.stream_options?.include_usage === true;
  const chunk = (i, delta, finish = null) => {
    const c = {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: i, delta, logprobs: null, finish_reason: finish }],
    };
    if (includeUsage) c.usage = null;
    return 'data: ' + JSON.stringify(c) + '\n\n';
  };

  res.writeHead(200, sseHeaders(extra));
  res.flushHeaders();
  const s = makeStreamer(res, spec, st, signal);
  const run = async () => {
    for (let i = 0; i < n; i++) if (!(await s.event(chunk(i, { role: 'assistant', content: '' })))) return;
    for (const t of reply.reasoningToks) {
      for (let i = 0; i < n; i++) if (!(await s.event(chunk(i, { [reply.reasoningField]: t })))) return;
    }
    const src = reply.contentSrc;
    for (let k = 0; k < src.count; k++) {
      const t = src.at(k);
      for (let i = 0; i < n; i++) if (!(await s.event(chunk(i, { content: t })))) return;
    }
    if (reply.toolCalls) {
      for (let ti = 0; ti < reply.toolCalls.length; ti++) {
        const tc = reply.toolCalls[ti];
        const head = { index: ti, id: tc.id, type: tc.type, function: { name: tc.function.name, arguments: '' } };
        for (let i = 0; i < n; i++) if (!(await s.event(chunk(i, { tool_calls: [head] })))) return;
        for (const p of reply.toolPieces[ti]) {
          const d = { tool_calls: [{ index: ti, function: { arguments: p } }] };
          for (let i = 0; i < n; i++) if (!(await s.event(chunk(i, d)))) return;
        }
      }
    }
    for (let i = 0; i < n; i++) if (!(await s.event(chunk(i, {}, reply.finish)))) return;
    if (includeUsage) {
      const u = { id, object: 'chat.completion.chunk', created, model, choices: [], usage };
      if (!(await s.event('data: ' + JSON.stringify(u) + '\n\n'))) return;
    }
    if (!(await s.event('data: [DONE]\n\n'))) return;
  };
  await run();
  s.end();
}

async function answerCompletions(req, res, body, spec, st, signal) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return sendJson(res, 400, errorBody(400, { message: 'Invalid JSON body' }));
  }
  const model = typeof body.model === 'string' ? body.model : FAST_MODEL;
  const ptext = promptText(body.prompt);
  const defaultText = 'Completion of: ' + lastWords(ptext, 8);
  // completions have no reasoning field
  const cspec = { ...spec, reasoning_content: undefined, reasoning: undefined };
  const reply = buildReply(body, cspec, defaultText);
  const usage = makeUsage(words(ptext).length, reply, 1, spec);
  const id = `cmpl-fake-${++st.seq}`;
  const created = Math.floor(Date.now() / 1000);
  const extra = spec.headers;

  const stream = body.stream === true && !spec.json_for_stream;
  if (!stream) {
    const obj = {
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ text: materialize(reply.contentSrc), index: 0, logprobs: null, finish_reason: reply.finish }],
      usage,
    };
    return sendCut(res, 200, JSON.stringify(obj), spec, extra, signal);
  }
  const includeUsage = body.stream_options?.include_usage === true;
  const chunk = (text, finish = null) => {
    const c = {
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    };
    if (includeUsage) c.usage = null;
    return 'data: ' + JSON.stringify(c) + '\n\n';
  };
  res.writeHead(200, sseHeaders(extra));
  res.flushHeaders();
  const s = makeStreamer(res, spec, st, signal);
  const run = async () => {
    const src = reply.contentSrc;
    for (let k = 0; k < src.count; k++) if (!(await s.event(chunk(src.at(k))))) return;
    if (!(await s.event(chunk('', reply.finish)))) return;
    if (includeUsage) {
      const u = { id, object: 'text_completion', created, model, choices: [], usage };
      if (!(await s.event('data: ' + JSON.stringify(u) + '\n\n'))) return;
    }
    if (!(await s.event('data: [DONE]\n\n'))) return;
  };
  await run();
  s.end();
}

// JSON answer; with cut_after the reply breaks off after cut_after bytes of the body; with
// drip_ms the body trickles out in drip_bytes pieces.
async function sendCut(res, status, body, spec, extra, signal) {
  if (spec.cut_after == null && !(spec.drip_ms > 0)) return sendJson(res, status, body, extra);
  const buf = Buffer.from(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': buf.length, ...(extra || {}) });
  if (spec.cut_after == null) {
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    if (await drip(res, buf, spec, signal, () => closed)) res.end();
    return;
  }
  res.write(buf.subarray(0, Math.min(buf.length - 1, Math.max(0, spec.cut_after))));
  setTimeout(() => kill(res), 20);
}

// ---------------------------------------------------------------------------
// control endpoints

function control(req, res, path, raw, st) {
  const parse = () => {
    if (!raw.length) return null;
    return JSON.parse(raw.toString('utf8'));
  };
  try {
    if (path === '/_fake/log' && req.method === 'GET') return sendJson(res, 200, st.log);
    if (path === '/_fake/reset' && req.method === 'POST') {
      st.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (path === '/_fake/script' && req.method === 'POST') {
      const v = parse();
      const items = Array.isArray(v) ? v : v && typeof v === 'object' ? [v] : null;
      if (!items) return sendJson(res, 400, errorBody(400, { message: 'script must be a JSON array of specs' }));
      st.queue.push(...items.map((x) => (x && typeof x === 'object' ? x : {})));
      return sendJson(res, 200, { ok: true, queued: st.queue.length });
    }
    if (path === '/_fake/script' && req.method === 'GET') return sendJson(res, 200, st.queue);
    if (path === '/_fake/fault' && req.method === 'POST') {
      const v = parse();
      st.fault = v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length ? v : null;
      return sendJson(res, 200, { ok: true, fault: st.fault });
    }
    if (path === '/_fake/fault' && req.method === 'DELETE') {
      st.fault = null;
      return sendJson(res, 200, { ok: true, fault: null });
    }
    if (path === '/_fake/state' && req.method === 'GET') {
      return sendJson(res, 200, {
        queue: st.queue.length,
        fault: st.fault,
        log: st.log.length,
        events: st.events,
        partial: st.partial,
        fast: st.fast,
        h2c: st.h2c,
        reasoner: st.reasoner,
      });
    }
    return sendJson(res, 404, errorBody(404, { message: `unknown control endpoint ${req.method} ${path}` }));
  } catch (e) {
    return sendJson(res, 400, errorBody(400, { message: 'bad control request: ' + e.message }));
  }
}

// ---------------------------------------------------------------------------
// normal-mode request handler

function routeOf(method, path) {
  const vi = path.indexOf('/v1/');
  if (vi < 0) return null;
  const rest = path.slice(vi + 3);
  if (method === 'POST' && rest === '/chat/completions') return 'chat';
  if (method === 'POST' && rest === '/completions') return 'completions';
  if (method === 'GET' && rest === '/models') return 'models';
  return 'echo';
}

async function handle(req, res, st) {
  const url = req.url || '/';
  const qi = url.indexOf('?');
  const path = qi < 0 ? url : url.slice(0, qi);
  const query = qi < 0 ? '' : url.slice(qi + 1);
  const raw = await readBody(req);

  if (path.startsWith('/_fake/')) return control(req, res, path, raw, st);

  const rawStr = raw.toString('utf8');
  let body = rawStr;
  if (rawStr.length) {
    try {
      body = JSON.parse(rawStr);
    } catch {
      body = rawStr;
    }
  }
  st.log.push({ method: req.method, path, query, headers: req.headers, body, ts: Date.now(), http: req.httpVersion });

  const route = routeOf(req.method, path);
  let spec = {};
  if ((route === 'chat' || route === 'completions') && st.queue.length) spec = st.queue.shift() || {};
  if (st.fault) spec = { ...spec, ...st.fault };
  const signal = st.ac.signal;

  if (spec.delay_ms > 0 && !(await sleep(spec.delay_ms, signal))) return;
  if (spec.reset) {
    kill(res, spec.reset === 'connection');
    return;
  }
  if (spec.hang) return; // never answer; the socket stays open until the client or close() ends it

  const extra = { ...(spec.headers || {}) };
  if (spec.retry_after != null) extra['retry-after'] = String(spec.retry_after);

  if (spec.plain_status_body) {
    const status = typeof spec.status === 'number' ? spec.status : 502;
    const text = typeof spec.plain_status_body === 'string' ? spec.plain_status_body : `${status} upstream failure`;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text), ...extra });
    return res.end(text);
  }
  if (typeof spec.status === 'number' && spec.status !== 200) {
    return sendJson(res, spec.status, errorBody(spec.status, spec), extra);
  }
  if (spec.invalid_json) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 9, ...extra });
    return res.end('{not json');
  }
  if (typeof spec.raw_body === 'string') {
    // Exactly these bytes (base64 in the spec, so any byte can be sent), whatever was asked.
    const raw = Buffer.from(spec.raw_body, 'base64');
    res.writeHead(200, { 'content-type': spec.raw_content_type || 'application/json',
      'content-length': raw.length, ...extra });
    return res.end(raw);
  }
  const sp = { ...spec, headers: extra };

  switch (route) {
    case 'chat':
      return answerChat(req, res, body, sp, st, signal);
    case 'completions':
      return answerCompletions(req, res, body, sp, st, signal);
    case 'models':
      return sendJson(res, 200, MODELS_BODY, extra);
    case 'echo':
      return sendJson(res, 200, { method: req.method, path, query, headers: req.headers, body: rawStr }, extra);
    default:
      return sendJson(res, 404, errorBody(404, { message: `no route for ${req.method} ${path}` }), extra);
  }
}

// ---------------------------------------------------------------------------
// fast mode (benchmarks): precomputed bytes, no logging, no scripts, no JSON.parse.

function buildFast() {
  const created = Math.floor(Date.now() / 1000);
  const jsonContent = 'Hello from the fake upstream.';
  const streamContent =
    'Hello from the fake upstream. This stream is a precomputed sequence of chunks for benchmarking the proxy.';
  const jsonUsage = { prompt_tokens: 10, completion_tokens: tokenize(jsonContent).length, total_tokens: 0 };
  jsonUsage.total_tokens = jsonUsage.prompt_tokens + jsonUsage.completion_tokens;
  const streamToks = tokenize(streamContent);
  const streamUsage = { prompt_tokens: 10, completion_tokens: streamToks.length, total_tokens: 10 + streamToks.length };

  const chatJson = Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-fake',
      object: 'chat.completion',
      created,
      model: FAST_MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: jsonContent }, finish_reason: 'stop', logprobs: null }],
      usage: jsonUsage,
    }),
  );
  const cmplJson = Buffer.from(
    JSON.stringify({
      id: 'cmpl-fake',
      object: 'text_completion',
      created,
      model: FAST_MODEL,
      choices: [{ text: jsonContent, index: 0, logprobs: null, finish_reason: 'stop' }],
      usage: jsonUsage,
    }),
  );
  const ev = (o) => Buffer.from('data: ' + JSON.stringify(o) + '\n\n');
  const chatStream = (withUsage) => {
    const c = (delta, finish = null) => {
      const o = {
        id: 'chatcmpl-fake',
        object: 'chat.completion.chunk',
        created,
        model: FAST_MODEL,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      };
      if (withUsage) o.usage = null;
      return ev(o);
    };
    const out = [c({ role: 'assistant', content: '' })];
    for (const t of streamToks) out.push(c({ content: t }));
    out.push(c({}, 'stop'));
    if (withUsage) {
      out.push(ev({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created, model: FAST_MODEL, choices: [], usage: streamUsage }));
    }
    out.push(Buffer.from('data: [DONE]\n\n'));
    return out;
  };
  const cmplStream = (withUsage) => {
    const c = (text, finish = null) => {
      const o = {
        id: 'cmpl-fake',
        object: 'text_completion',
        created,
        model: FAST_MODEL,
        choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
      };
      if (withUsage) o.usage = null;
      return ev(o);
    };
    const out = streamToks.map((t) => c(t));
    out.push(c('', 'stop'));
    if (withUsage) {
      out.push(ev({ id: 'cmpl-fake', object: 'text_completion', created, model: FAST_MODEL, choices: [], usage: streamUsage }));
    }
    out.push(Buffer.from('data: [DONE]\n\n'));
    return out;
  };
  return {
    chatJson,
    cmplJson,
    chatStream: chatStream(false),
    chatStreamUsage: chatStream(true),
    cmplStream: cmplStream(false),
    cmplStreamUsage: cmplStream(true),
    models: Buffer.from(MODELS_BODY),
  };
}

function hasFlag(buf, key) {
  return buf.includes(`"${key}":true`) || buf.includes(`"${key}": true`);
}

async function fastStream(res, chunks, st) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let closed = false;
  res.on('close', () => {
    closed = true;
  });
  for (const c of chunks) {
    if (closed) return;
    const ok = res.write(c);
    st.events++;
    if (!ok) await waitDrain(res);
    else await immediateP();
  }
  if (!closed) res.end();
}

function fastHandler(pre, st) {
  const jsonHeaders = (buf) => ({ 'content-type': 'application/json', 'content-length': buf.length });
  const chatJsonHeaders = jsonHeaders(pre.chatJson);
  const cmplJsonHeaders = jsonHeaders(pre.cmplJson);
  const modelsHeaders = jsonHeaders(pre.models);
  return (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      const url = req.url || '/';
      const qi = url.indexOf('?');
      const path = qi < 0 ? url : url.slice(0, qi);
      if (req.method === 'POST' && path.endsWith('/v1/chat/completions')) {
        if (hasFlag(raw, 'stream')) {
          fastStream(res, hasFlag(raw, 'include_usage') ? pre.chatStreamUsage : pre.chatStream, st);
          return;
        }
        res.writeHead(200, chatJsonHeaders);
        res.end(pre.chatJson);
        return;
      }
      if (req.method === 'POST' && path.endsWith('/v1/completions')) {
        if (hasFlag(raw, 'stream')) {
          fastStream(res, hasFlag(raw, 'include_usage') ? pre.cmplStreamUsage : pre.cmplStream, st);
          return;
        }
        res.writeHead(200, cmplJsonHeaders);
        res.end(pre.cmplJson);
        return;
      }
      if (req.method === 'GET' && path.endsWith('/v1/models')) {
        res.writeHead(200, modelsHeaders);
        res.end(pre.models);
        return;
      }
      if (path.startsWith('/_fake/')) return control(req, res, path, raw, st);
      if (path.includes('/v1/')) {
        const query = qi < 0 ? '' : url.slice(qi + 1);
        return sendJson(res, 200, { method: req.method, path, query, headers: req.headers, body: raw.toString('utf8') });
      }
      sendJson(res, 404, errorBody(404, { message: `no route for ${req.method} ${path}` }));
    });
  };
}

// ---------------------------------------------------------------------------
// server

export async function startFake({ port = 0, host = '127.0.0.1', fast = false, h2c = false, reasoner = false } = {}) {
  const st = {
    fast: !!fast,
    reasoner: !!reasoner && !fast,
    h2c: !!h2c,
    partial: 0, // events cut in the middle by cut_mid_event
    log: [],
    queue: [],
    fault: null,
    seq: 0,
    events: 0, // SSE events written since start (for backpressure tests)
    ac: new AbortController(),
    reset() {
      this.log = [];
      this.queue = [];
      this.fault = null;
    },
  };
  let handler;
  if (fast) {
    handler = fastHandler(buildFast(), st);
  } else {
    handler = (req, res) => {
      handle(req, res, st).catch((e) => {
        if (!res.headersSent) {
          try {
            sendJson(res, 500, errorBody(500, { message: 'fake upstream crashed: ' + e.message }));
          } catch {
            kill(res);
          }
        } else kill(res);
      });
    };
  }

  const sockets = new Set();
  const sessions = new Set();
  let server;
  if (h2c) {
    // Prior knowledge, no upgrade: what ponder's native h2c client speaks. The compat API hands
    // the same (req, res) pairs to the handlers; control requests go over h2c too.
    server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, handler);
    server.on('session', (sess) => {
      sessions.add(sess);
      sess.on('close', () => sessions.delete(sess));
      sess.on('error', () => {});
    });
    server.on('stream', (stream) => stream.on('error', () => {}));
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
  } else {
    server = http.createServer(
      {
        keepAliveTimeout: 120_000,
        headersTimeout: 3_600_000,
        requestTimeout: 0,
        noDelay: true,
      },
      handler,
    );
    server.keepAliveTimeout = 120_000;
    server.headersTimeout = 3_600_000;
    server.requestTimeout = 0;
    server.timeout = 0;

    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    server.on('clientError', (err, socket) => {
      if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  let closing = null;

  return {
    port: actualPort,
    host,
    h2c: !!h2c,
    reasoner: st.reasoner,
    url: `http://${host}:${actualPort}`,
    server,
    state: st,
    get log() {
      return st.log;
    },
    script(...specs) {
      st.queue.push(...specs.flat());
    },
    fault(spec) {
      st.fault = spec && Object.keys(spec).length ? spec : null;
    },
    reset() {
      st.reset();
    },
    close() {
      if (closing) return closing;
      closing = new Promise((resolve) => {
        st.ac.abort();
        server.close(() => resolve());
        server.closeAllConnections?.();
        for (const sess of sessions) sess.destroy();
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------
// CLI

function parseArgs(argv) {
  const o = { port: 0, host: '127.0.0.1', fast: false, h2c: false, reasoner: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [k, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const val = () => (inline !== undefined ? inline : argv[++i]);
    if (k === '--port') o.port = Number(val()) || 0;
    else if (k === '--host') o.host = val();
    else if (k === '--fast') o.fast = true;
    else if (k === '--h2c') o.h2c = true;
    else if (k === '--reasoner') o.reasoner = true;
    else if (k === '--help' || k === '-h') {
      process.stderr.write('usage: node tests/fake/upstream.mjs [--port N] [--host 127.0.0.1] [--fast] [--h2c] [--reasoner]\n');
      process.exit(0);
    } else {
      process.stderr.write(`upstream.mjs: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return o;
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const opts = parseArgs(process.argv.slice(2));
  let fake = null;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 2000).unref();
    if (fake) fake.close().then(() => process.exit(0));
    else process.exit(0);
  };
  // handlers first, so a signal sent right after the port line is seen is handled
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  startFake(opts).then(
    (f) => {
      fake = f;
      if (stopping) return void f.close().then(() => process.exit(0));
      process.stdout.write(JSON.stringify({ port: f.port }) + '\n');
    },
    (err) => {
      process.stderr.write(`upstream.mjs: ${err.message}\n`);
      process.exit(1);
    },
  );
}
