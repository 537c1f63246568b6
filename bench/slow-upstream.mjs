// A minimal OpenAI-style upstream for the memory run of ponder's benchmark: every streamed chat
// completion sends a role chunk at once, then `tokens` content chunks `delay_ms` apart, a final
// chunk and [DONE]. Non-streamed requests get one small chat.completion at once.
//
//   node bench/slow-upstream.mjs [--port N]     prints {"port":N,"h2_port":M} once listening
//   (the same server twice: HTTP/1.1 on N, and HTTP/2 without TLS (h2c, prior knowledge) on M,
//   at most 1,000 concurrent streams per connection)
//   POST /_slow/config {"delay_ms":1000,"tokens":20}   changes the stream shape
//
// Why not tests/fake/upstream.mjs with {"token_delay_ms":1000}: its delays all register on one
// server-wide AbortSignal, so each delay costs O(streams in flight) and at ~7,000 concurrent
// streams it is CPU-bound and its listen queue overflows. One interval timer per stream here.
import http from 'node:http';
import http2 from 'node:http2';

let port = 0;
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--port') port = Number(process.argv[++i]);
  else if (process.argv[i].startsWith('--port=')) port = Number(process.argv[i].slice(7));
}
const cfg = { delay_ms: 1000, tokens: 20 };
const created = Math.floor(Date.now() / 1000);
let seq = 0;

const chunk = (id, model, delta, finish) => `data: ${JSON.stringify({
  id, object: 'chat.completion.chunk', created, model,
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
})}\n\n`;

function chat(res, raw) {
  let model = 'fake-model';
  try { model = JSON.parse(raw).model || model; } catch {}
  const id = `chatcmpl-slow-${++seq}`;
  if (!/"stream"\s*:\s*true/.test(raw)) {
    const body = JSON.stringify({ id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello.' }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  const { delay_ms: delay, tokens } = cfg;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(chunk(id, model, { role: 'assistant', content: '' }, null));
  let i = 0;
  const timer = setInterval(() => {
    if (res.destroyed || res.writableEnded || res.stream?.destroyed) { clearInterval(timer); return; }
    if (i < tokens) {
      res.write(chunk(id, model, { content: i ? ` tok${i}` : 'tok0' }, null));
      i++;
      return;
    }
    clearInterval(timer);
    res.write(chunk(id, model, {}, 'stop'));
    res.end('data: [DONE]\n\n');
  }, delay);
  res.on('close', () => clearInterval(timer));
  res.on('error', () => clearInterval(timer));
}

function handle(req, res) {
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    const raw = Buffer.concat(parts).toString();
    const url = req.url.split('?')[0];
    if (req.method === 'POST' && url === '/_slow/config') {
      try { Object.assign(cfg, JSON.parse(raw || '{}')); } catch {}
      const body = JSON.stringify(cfg);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    } else if (req.method === 'POST' && url.endsWith('/v1/chat/completions')) {
      chat(res, raw);
    } else {
      const body = JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error', param: null, code: null } });
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }
  });
}
const server = http.createServer(handle);
// accept errors (EMFILE...) are reported, not fatal
server.on('error', (e) => process.stderr.write(`slow-upstream: server error: ${e.code || e.message}\n`));
server.on('clientError', (e, socket) => socket.destroy());
server.keepAliveTimeout = 120_000;
server.headersTimeout = 3_600_000;
server.requestTimeout = 0;
server.timeout = 0;
const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 }, maxSessionMemory: 1000 }, handle);
h2.on('error', (e) => process.stderr.write(`slow-upstream: h2 server error: ${e.code || e.message}\n`));
h2.on('sessionError', () => {});
h2.timeout = 0;
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
  h2.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
    process.stdout.write(JSON.stringify({ port: server.address().port, h2_port: h2.address().port }) + '\n');
  });
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { server.close(); server.closeAllConnections(); h2.close(); process.exit(0); });
}
