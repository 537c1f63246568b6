/* Fuzz target: request bytes through the server's real connection code (proxy/http/: its
 * llhttp settings and callbacks, arena and header table, limits, pipelining, pauses, the
 * write-queue watermark, the Expect: 100-continue check) with no network. Each input is one
 * connection: one end of a socketpair is handed to the server (pd_server_adopt), the input is
 * written into the other end in pieces while the responses are read back, then the client
 * half-closes and the loop runs until the server has closed the connection and every handle.
 *
 * Input layout: byte 0 chooses how requests are answered (see MODE_*), byte 1 the size of
 * the pieces the rest is written in (0: all at once); the rest is what the client sends.
 *
 * Checks: no crash, no leak, no sanitizer report; every dispatched request goes through the
 * dispatch decision with dispatch_check.h's checks, and satisfies check_request (strings
 * NUL-terminated and taken from the input, counts and sizes within the limits); the connection
 * always ends (a connection the server pins aborts the run); every byte the server sends is ASCII
 * (no client byte is echoed raw into a response) and it sends at least one response per dispatched
 * request. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "dispatch_check.h"
#include "http/res.h"
#include "http/server.h"

#define MAX_BODY 4096
#define MAX_HEADER 2048

enum {
  MODE_ASYNC = 1,     /* answer on a later loop iteration, not inside the parser's callback */
  MODE_STREAM = 2,    /* a chunked response in several writes */
  MODE_BIG = 4,       /* answers large enough to cross the write-queue watermark */
  MODE_REFUSE = 8,    /* the head check answers 401 to every Expect: 100-continue */
  MODE_NO_CHECK = 16, /* no head check at all */
};

static uv_loop_t loop;
static pd_server_t *srv;
static uv_idle_t answer_idle;
static pd_req_t *waiting; /* a request answered on the next loop iteration (MODE_ASYNC) */
static int mode;
static const uint8_t *input;
static size_t input_len;
static size_t dispatched;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

/* The input with each obs-fold's CRLF taken out (llhttp hands a folded header value over in
 * pieces without the line break: "a\r\n b" becomes "a b"), and the input in lower case (header
 * names are lower-cased). */
static uint8_t *unfolded, *lowered;
static size_t unfolded_len;

static void prepare(void) {
  free(unfolded);
  free(lowered);
  unfolded = malloc(input_len + 1);
  lowered = malloc(input_len + 1);
  unfolded_len = 0;
  for (size_t i = 0; i < input_len; i++) {
    uint8_t c = input[i];
    lowered[i] = c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
    if (c == '\r' && i + 2 < input_len && input[i + 1] == '\n' &&
        (input[i + 2] == ' ' || input[i + 2] == '\t')) {
      i++;
      lowered[i] = input[i];
      continue;
    }
    unfolded[unfolded_len++] = c;
  }
}

/* Whether s (n bytes) was sent: verbatim, or (a folded value) without the fold's line break;
 * `name`: ASCII case folded. */
static int in_input(const char *s, size_t n, int name) {
  if (n == 0)
    return 1;
  if (name)
    return memmem(lowered, input_len, s, n) != NULL;
  return memmem(input, input_len, s, n) || memmem(unfolded, unfolded_len, s, n);
}

/* The invariants of a request handed to a handler. */
static void check_request(const pd_req_t *r) {
  if (!r->method || strlen(r->method) > 16)
    fail("method");
  if (!r->url)
    fail("url missing");
  size_t ulen = strlen(r->url);
  if (ulen > MAX_HEADER || !in_input(r->url, ulen, 0))
    fail("url not from the input");
  if (r->path_len > ulen || !r->query)
    fail("path/query");
  if (r->path_len < ulen && (r->url[r->path_len] != '?' || r->query != r->url + r->path_len + 1))
    fail("query pointer");
  if (r->nheaders > PD_MAX_HEADERS)
    fail("header count");
  size_t head = ulen;
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *n = r->headers[i].name, *v = r->headers[i].value;
    if (!n || !v)
      fail("header pointer");
    size_t nl = strlen(n), vl = strlen(v);
    for (size_t k = 0; k < nl; k++)
      if (n[k] >= 'A' && n[k] <= 'Z')
        fail("header name not lower-case");
    if (!in_input(n, nl, 1) || !in_input(v, vl, 0))
      fail("header not from the input");
    if (strpbrk(v, "\r\n"))
      fail("a line break in a header value");
    head += nl + vl;
  }
  if (head > MAX_HEADER)
    fail("head over max_header_bytes");
  if (r->body.len > MAX_BODY)
    fail("body over max_body_bytes");
  if (!r->body.base || r->body.base[r->body.off + r->body.len] != '\0')
    fail("body not NUL-terminated");
  size_t idl = strlen(r->request_id);
  if (idl == 0 || idl > 128)
    fail("request id");
}

static void on_abort(pd_req_t *r) {
  if (waiting == r)
    waiting = NULL;
  pd_server_finish(r);
}

static size_t answered; /* requests answered by on_request/answer (not aborted) */

static const pd_req_hooks_t hooks = {on_abort, NULL};

static void answer(pd_req_t *r) {
  static char big[96 * 1024];
  answered++;
  if (!big[0])
    memset(big, 'x', sizeof big);
  /* Two big answers are enough to cross the watermark; more would only slow the run down. */
  size_t len = mode & MODE_BIG && answered <= 2 ? sizeof big : 16;
  if (mode & MODE_STREAM) {
    pd_res_start(r, 200, "text/plain", NULL, -1);
    for (size_t off = 0; off < len; off += len / 4 + 1)
      pd_res_write(r, big, len / 4 + 1 < len - off ? len / 4 + 1 : len - off);
    pd_res_end(r, 0);
  } else {
    const char *const extra[] = {"x-fuzz", "1", NULL};
    pd_res_send(r, 200, "text/plain", extra, big, len);
  }
  pd_server_finish(r);
}

static void on_answer_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  pd_req_t *r = waiting;
  waiting = NULL;
  if (r)
    answer(r);
}

static const char *req_header(void *ud, const char *name) {
  return pd_req_header(ud, name);
}

/* The dispatch callback: checks the parsed request, runs it through the real dispatch decision
 * (under one of dispatch_check.h's configs, chosen by the mode byte) with its checks, then
 * answers it. */
static void on_request(void *ud, pd_req_t *r) {
  (void)ud;
  dispatched++;
  check_request(r);
  pd_dispatch_req_t in = {r->method,  r->url, r->path_len,           r->query,   strlen(r->query),
                          req_header, r,      pd_buf_data(&r->body), r->body.len};
  check_decision(&cfgs[(unsigned)mode % 3], &in, pd_req_header(r, "authorization"));
  if (mode & MODE_ASYNC) {
    r->hooks = &hooks;
    waiting = r;
    uv_idle_start(&answer_idle, on_answer_idle);
    return;
  }
  answer(r);
}

static int on_head(void *ud, pd_req_t *r) {
  (void)ud;
  check_request(r);
  if (!(mode & MODE_REFUSE))
    return 0;
  pd_res_error(r, 401, "Incorrect API key provided.", "invalid_request_error", NULL,
               "invalid_api_key");
  pd_server_finish(r);
  return 1;
}

static void setup(void) {
  init_once();
  uv_loop_init(&loop);
  uv_idle_init(&loop, &answer_idle);
  pd_server_opts_t o = {.max_body_bytes = MAX_BODY,
                        .max_header_bytes = MAX_HEADER,
                        .header_timeout_ms = 60000,
                        .idle_timeout_ms = 60000,
                        .max_connections = 4};
  srv = pd_server_start(&loop, -1, &o, on_request, NULL);
  if (!srv)
    fail("server start");
}

/* What the server sent back. */
typedef struct {
  size_t len, responses;
  int eof;
  size_t match; /* bytes of "HTTP/1.1" matched at the end of what was read */
} sink_t;

/* Reads what the server sent. Not instrumented: its per-byte compares are the harness's, and
 * would only slow the run and blur the coverage signal. */
__attribute__((no_sanitize("coverage"), noinline)) static void drain(int fd, sink_t *s) {
  static const char pat[] = "HTTP/1.1";
  char buf[65536];
  while (fd >= 0) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      s->eof = 1;
      return;
    }
    if (n < 0)
      return;
    for (ssize_t i = 0; i < n; i++) {
      if ((unsigned char)buf[i] >= 0x80)
        fail("a non-ASCII byte in the server's output");
      s->match = buf[i] == pat[s->match] ? s->match + 1 : buf[i] == 'H';
      if (s->match == sizeof pat - 1) {
        s->responses++;
        s->match = 0;
      }
    }
    s->len += (size_t)n;
  }
}

/* One loop iteration that never blocks, plus what the client reads. Returns whether anything
 * arrived. Aborts when the connection does not settle in a bounded time (it would be pinned). */
static int step(int fd, sink_t *s, uint64_t deadline) {
  size_t before = s->len;
  uv_run(&loop, UV_RUN_NOWAIT);
  drain(fd, s);
  if (uv_hrtime() > deadline)
    fail("the connection did not settle: pinned");
  return s->len != before || s->eof;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!srv)
    setup();
  if (size < 2)
    return 0;
  mode = data[0];
  size_t piece = data[1] ? (size_t)data[1] * 3 : size;
  input = data + 2;
  input_len = size - 2;
  prepare();
  dispatched = answered = 0;
  pd_server_set_head_check(srv, mode & MODE_NO_CHECK ? NULL : on_head);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
    fail("socketpair");
  if (pd_server_adopt(srv, sv[0]) < 0)
    fail("adopt");
  sink_t s = {0};
  uint64_t deadline = uv_hrtime() + 5000000000ULL;
  size_t off = 0;
  while (off < input_len && !s.eof) {
    size_t n = input_len - off < piece ? input_len - off : piece;
    ssize_t w = send(sv[1], input + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0)
      off += (size_t)w;
    else if (w < 0 && errno != EAGAIN)
      break; /* the server closed its end */
    step(sv[1], &s, deadline);
  }
  /* Let the server settle: everything it answered must reach a client that reads. */
  for (int quiet = 0; quiet < 4 && !s.eof;)
    quiet = step(sv[1], &s, deadline) || waiting ? 0 : quiet + 1;
  if (s.responses < answered)
    fail("an answered request's response never arrived");
  close(sv[1]);
  while (uv_loop_alive(&loop))
    step(-1, &s, deadline);
  return 0;
}
