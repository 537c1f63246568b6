#include "http/server.h"

#include <ctype.h>
#include <errno.h>
#include <linux/sockios.h>
#include <llhttp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "base/log.h"
#include "core/openai.h"

/* Bytes queued for a client and not yet taken by its socket: above HIGH_WATERMARK a handler's
 * producer pauses (pd_res_write returns 1) and no further pipelined request is read or parsed;
 * below LOW_WATERMARK both resume. */
#define HIGH_WATERMARK (64 * 1024)
#define LOW_WATERMARK (16 * 1024)
#define READ_CHUNK (64 * 1024)
/* Bytes of pipelined requests held while one is in flight before reading stops. */
#define PENDING_MAX (256 * 1024)

enum { CONN_IDLE, CONN_HEAD, CONN_BODY, CONN_INFLIGHT };

struct pd_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  pd_server_opts_t opts;
  pd_dispatch_fn dispatch;
  pd_head_fn check_head; /* NULL: every Expect: 100-continue is answered 100 at once */
  void *ud;
  size_t nconns;
  size_t inflight;
  pd_conn_t *conns; /* doubly linked list of open connections */
  int stopping, listener_closed;
  void (*on_closed)(void *);
  void *on_closed_ud;
  uv_idle_t resume_idle; /* runs deferred parsing of pipelined requests */
  /* One read buffer for every connection of this loop: libuv allocates, reads and calls back
   * one stream at a time, and the bytes are parsed (or copied to `pending`) before the next
   * read. Saves a 64 KiB buffer per idle connection. */
  char rbuf[READ_CHUNK];
  int rbuf_busy;
  pd_conn_t *resume_list;
};

struct pd_conn {
  /* First member: a connection that failed to be accepted is freed through its handle. TCP for
   * accepted connections; a pipe for a connected AF_UNIX socket handed to pd_server_adopt. */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } io;
  uv_timer_t timer;
  pd_server_t *srv;
  pd_conn_t *prev, *next;
  pd_conn_t *resume_next;
  int in_resume_list;
  llhttp_t parser;
  llhttp_settings_t *settings;
  int state;
  int closing;
  int handles_open; /* tcp + timer until both close callbacks ran */
  int handles_closing;
  int close_after; /* close once the write queue is empty */
  int parsing;     /* inside llhttp_execute */
  int reading;     /* uv_read_start active */
  /* The write queue went above HIGH_WATERMARK between requests: neither reading nor parsing
   * goes on until it drains below LOW_WATERMARK (on_write). */
  int write_blocked;
  int err_status;            /* a limit was hit while parsing: 413 / 431 */
  size_t queued;             /* bytes handed to uv_write and not yet written */
  uint64_t out_total;        /* bytes ever handed to the socket (written at once or queued) */
  uint64_t flushed_at_timer; /* flushed() at the last tick; UINT64_MAX: not taken yet */
  size_t head_bytes;
  size_t tail_bytes; /* chunk extensions and trailer fields of the body (read, not kept) */
  pd_buf_t pending;  /* bytes received while a request is in flight */
  /* url and header strings of the current request. It grows (and may move) only while the
   * head is parsed, so only offsets are kept until then; once the head is complete
   * (head_done) it is frozen and r->url / r->headers[] point into it until the request ends. */
  pd_buf_t arena;
  size_t hdr_name_off[PD_MAX_HEADERS], hdr_value_off[PD_MAX_HEADERS];
  int in_value;
  int too_many_headers;
  int head_done;
  pd_req_t req;
};

typedef struct wreq {
  uv_write_t w;
  pd_conn_t *conn;
  char *owned;
  size_t bytes;
  char pre[24], post[8];
} wreq_t;

static llhttp_settings_t settings;
static void conn_close(pd_conn_t *c);
static void arm_timer(pd_conn_t *c, long ms);
static void conn_parse(pd_conn_t *c, const char *data, size_t len);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void schedule_resume(pd_conn_t *c);

const char *pd_http_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

/* ---- timers ---------------------------------------------------------------------------- */

/* Answers 408 on a connection whose request did not arrive in time, then closes it. */
static void timeout_reply(pd_conn_t *c, const char *msg) {
  pd_req_t *r = &c->req;
  if (!r->request_id[0])
    snprintf(r->request_id, sizeof r->request_id, "req_timeout");
  c->state = CONN_INFLIGHT;
  c->srv->inflight++;
  r->keep_alive = 0;
  pd_res_error(r, 408, msg, "invalid_request_error", NULL, "request_timeout");
  pd_req_finish(r);
}

/* Bytes the client's side has taken so far: a count that grows whenever the client reads.
 * Bytes in the kernel's send queue are not counted: a full send buffer drains into the
 * client's receive buffer for a while after the client has stopped reading, and the other way
 * round libuv may hand nothing new to a send buffer of several MB while a slow client reads. */
static uint64_t flushed(pd_conn_t *c) {
  uint64_t out = c->out_total - uv_stream_get_write_queue_size(&c->io.stream);
  uv_os_fd_t fd;
  int unacked = 0;
  if (uv_fileno(&c->io.handle, &fd) == 0 && ioctl(fd, SIOCOUTQ, &unacked) == 0 && unacked > 0 &&
      (uint64_t)unacked <= out)
    out -= (uint64_t)unacked;
  return out;
}

/* Every state has a deadline (SPEC section 4: a connection that has made no progress for
 * idle_timeout_ms is closed, whatever state it is in):
 *   HEAD           the head must be complete within header_timeout_ms (408);
 *   BODY           each read must come within idle_timeout_ms (408);
 *   IDLE, INFLIGHT while bytes are queued, a client that takes none for a whole period
 *                  between two ticks (one to two idle_timeout_ms) is closed, an in-flight
 *                  request aborted;
 *   IDLE           with nothing queued: the keep-alive timeout;
 *   INFLIGHT       with nothing queued, the handler is waiting for its upstream, whose own
 *                  timeouts bound it; conn_write arms the timer again when bytes are queued. */
static void on_timer(uv_timer_t *t) {
  pd_conn_t *c = t->data;
  if (c->closing)
    return;
  if (c->state == CONN_HEAD || (c->state == CONN_IDLE && c->head_bytes > 0)) {
    timeout_reply(c, "The request head did not arrive within header_timeout_ms.");
  } else if (c->state == CONN_BODY) {
    timeout_reply(c, "The request body stalled for longer than idle_timeout_ms.");
  } else if (c->queued > 0) {
    uint64_t now = flushed(c);
    if (now == c->flushed_at_timer) {
      conn_close(c); /* a reader that took nothing for a whole idle_timeout_ms */
      return;
    }
    c->flushed_at_timer = now;
    if (c->srv->opts.idle_timeout_ms > 0) /* 0 after a reload: no deadline */
      uv_timer_start(&c->timer, on_timer, (uint64_t)c->srv->opts.idle_timeout_ms, 0);
  } else if (c->state == CONN_IDLE) {
    conn_close(c);
  }
}

static void arm_timer(pd_conn_t *c, long ms) {
  if (c->closing)
    return;
  if (ms <= 0) {
    uv_timer_stop(&c->timer);
    return;
  }
  /* The first tick only takes the count (no system call here, on every request's path): a
   * client is closed once a whole period between two ticks passed without it taking a byte,
   * after between one and two idle_timeout_ms of silence. */
  c->flushed_at_timer = UINT64_MAX;
  uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- writing --------------------------------------------------------------------------- */

static void maybe_finish_close(pd_conn_t *c) {
  if (c->close_after && c->queued == 0 && c->state != CONN_INFLIGHT)
    conn_close(c);
}

static void on_write(uv_write_t *w, int status) {
  wreq_t *wr = (wreq_t *)w;
  pd_conn_t *c = wr->conn;
  c->queued -= wr->bytes;
  free(wr->owned);
  free(wr);
  if (status < 0) {
    /* The peer is gone: abort what is in flight and close (reading may be stopped, so the
     * read side might never report it). */
    conn_close(c);
    return;
  }
  if (c->closing)
    return;
  pd_req_t *r = &c->req;
  if (r->pressure && c->queued <= LOW_WATERMARK && c->state == CONN_INFLIGHT) {
    r->pressure = 0;
    if (r->hooks && r->hooks->on_drain)
      r->hooks->on_drain(r);
  }
  if (c->write_blocked && c->queued <= LOW_WATERMARK) {
    c->write_blocked = 0;
    if (!c->close_after)
      schedule_resume(c); /* parse what was held, then read again */
  }
  maybe_finish_close(c);
}

/* Queues pre + data + post. Takes ownership of `owned` (which holds data) when non-NULL. */
static int conn_write(pd_conn_t *c, const char *pre, size_t prelen, const char *data, size_t len,
                      char *owned, const char *post, size_t postlen) {
  if (c->closing) {
    free(owned);
    return 0;
  }
  uv_buf_t bufs[3];
  int n = 0;
  if (prelen)
    bufs[n++] = uv_buf_init((char *)pre, (unsigned)prelen);
  if (len)
    bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
  if (postlen)
    bufs[n++] = uv_buf_init((char *)post, (unsigned)postlen);
  size_t total = prelen + len + postlen;
  if (total == 0) {
    free(owned);
    return 0;
  }
  c->out_total += total;
  /* Try the fast path first: most responses fit the socket buffer and need no allocation. */
  size_t done = 0;
  if (c->queued == 0) {
    int w = uv_try_write(&c->io.stream, bufs, (unsigned)n);
    if (w > 0)
      done = (size_t)w;
  }
  if (done == total) {
    free(owned);
    return 0;
  }
  /* Queue what is left. A streamed body part the caller handed over (owned) is written in
   * place with its small chunk framing copied beside it; anything else is copied once. */
  wreq_t *wr = calloc(1, sizeof *wr);
  if (!wr) {
    free(owned);
    return -1;
  }
  wr->conn = c;
  uv_buf_t rest[3];
  int m = 0;
  const char *parts[3] = {pre, data, post};
  size_t lens[3] = {prelen, len, postlen};
  if (owned && prelen <= sizeof wr->pre && postlen <= sizeof wr->post) {
    if (prelen)
      memcpy(wr->pre, pre, prelen);
    if (postlen)
      memcpy(wr->post, post, postlen);
    parts[0] = wr->pre;
    parts[2] = wr->post;
    size_t skip = done;
    for (int i = 0; i < 3; i++) {
      if (!lens[i])
        continue;
      if (skip >= lens[i]) {
        skip -= lens[i];
        continue;
      }
      rest[m++] = uv_buf_init((char *)parts[i] + skip, (unsigned)(lens[i] - skip));
      skip = 0;
    }
  } else {
    char *all = malloc(total - done);
    if (!all) {
      free(owned);
      free(wr);
      return -1;
    }
    size_t skip = done, w = 0;
    for (int i = 0; i < 3; i++) {
      if (skip >= lens[i]) {
        skip -= lens[i];
        continue;
      }
      memcpy(all + w, parts[i] + skip, lens[i] - skip);
      w += lens[i] - skip;
      skip = 0;
    }
    free(owned);
    owned = all;
    rest[m++] = uv_buf_init(all, (unsigned)w);
  }
  wr->owned = owned;
  wr->bytes = total - done;
  if (uv_write(&wr->w, &c->io.stream, rest, (unsigned)m, on_write) < 0) {
    free(wr->owned);
    free(wr);
    return -1;
  }
  int was_empty = c->queued == 0;
  c->queued += wr->bytes;
  /* A request in flight runs no timer while its handler waits for the upstream: from the
   * first byte the client has not taken, it must take some within idle_timeout_ms. */
  if (was_empty && c->state == CONN_INFLIGHT)
    arm_timer(c, c->srv->opts.idle_timeout_ms);
  return 0;
}

/* Responses that never carry a body (RFC 9110): HEAD, 1xx, 204, 304. */
static int bodiless(const pd_req_t *r, int status) {
  return r->is_head || status < 200 || status == 204 || status == 304;
}

/* A response head is written into a caller's buffer; what does not fit is counted, so the
 * caller can retry with a buffer of the right size (heads rarely exceed the stack buffer). */
typedef struct head_w {
  char *buf;
  size_t cap, len;
} head_w_t;

static void hw_put(head_w_t *w, const char *s, size_t n) {
  if (w->len + n <= w->cap)
    memcpy(w->buf + w->len, s, n);
  w->len += n;
}

#define HW_LIT(w, lit) hw_put(w, lit, sizeof lit - 1)

static void hw_str(head_w_t *w, const char *s) {
  if (!s)
    s = "(null)"; /* what printf's %s wrote */
  hw_put(w, s, strlen(s));
}

static void hw_long(head_w_t *w, long v) {
  char tmp[24];
  hw_put(w, tmp, pd_buf_fmt_long(tmp, v));
}

static void build_head(head_w_t *h, const pd_req_t *r, int status, const char *content_type,
                       const char *const *extra, long content_length) {
  HW_LIT(h, "HTTP/1.1 ");
  hw_long(h, status);
  HW_LIT(h, " ");
  hw_str(h, pd_http_reason(status));
  HW_LIT(h, "\r\n");
  if (content_type) {
    HW_LIT(h, "content-type: ");
    hw_str(h, content_type);
    HW_LIT(h, "\r\n");
  }
  if (content_length >= 0 && status != 204 && status >= 200 && status != 304) {
    HW_LIT(h, "content-length: ");
    hw_long(h, content_length);
    HW_LIT(h, "\r\n");
  } else if (r->res_chunked) {
    HW_LIT(h, "transfer-encoding: chunked\r\n");
  }
  HW_LIT(h, "x-request-id: ");
  hw_str(h, r->request_id);
  HW_LIT(h, "\r\n");
  for (const char *const *e = extra; e && e[0]; e += 2) {
    hw_str(h, e[0]);
    HW_LIT(h, ": ");
    hw_str(h, e[1]);
    HW_LIT(h, "\r\n");
  }
  if (!r->keep_alive)
    HW_LIT(h, "connection: close\r\n");
  HW_LIT(h, "\r\n");
}

#define HEAD_STACK 2048

/* Builds the head in stack (HEAD_STACK bytes) or, when larger, in a malloc'd buffer returned in
 * *heap (NULL on allocation failure: the head is then empty). Returns the head. */
static const char *make_head(char *stack, char **heap, size_t *len, const pd_req_t *r, int status,
                             const char *content_type, const char *const *extra,
                             long content_length) {
  head_w_t w = {stack, HEAD_STACK, 0};
  *heap = NULL;
  build_head(&w, r, status, content_type, extra, content_length);
  if (w.len <= HEAD_STACK) {
    *len = w.len;
    return stack;
  }
  size_t need = w.len;
  *heap = malloc(need);
  *len = 0;
  if (!*heap)
    return stack;
  w = (head_w_t){*heap, need, 0};
  build_head(&w, r, status, content_type, extra, content_length);
  *len = w.len;
  return *heap;
}

void pd_res_start(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                  long content_length) {
  pd_conn_t *c = r->conn;
  if (r->res_started)
    return;
  r->res_started = 1;
  r->status = status;
  if (c->srv->stopping)
    r->keep_alive = 0;
  r->res_bodiless = bodiless(r, status);
  if (content_length < 0 && !r->res_bodiless) {
    if (r->http_minor >= 1)
      r->res_chunked = 1;
    else
      r->keep_alive = 0; /* HTTP/1.0: the body ends when the connection closes */
  }
  char stack[HEAD_STACK], *heap;
  size_t len;
  const char *h = make_head(stack, &heap, &len, r, status, content_type, extra, content_length);
  /* conn_write copies what the socket does not take at once; a heap head is handed over. */
  conn_write(c, NULL, 0, h, len, heap, NULL, 0);
}

/* Queues one piece of the body, in chunked framing when the response is chunked. Takes
 * `owned` (which holds p) when non-NULL; otherwise p is copied only if the socket is full. */
static int write_body(pd_req_t *r, const char *p, size_t len, char *owned) {
  pd_conn_t *c = r->conn;
  if (r->res_chunked) {
    static const char hex[] = "0123456789abcdef";
    char pre[24], tmp[20];
    size_t n = 0, pl = 0;
    size_t v = len;
    do {
      tmp[n++] = hex[v & 15];
      v >>= 4;
    } while (v);
    while (n)
      pre[pl++] = tmp[--n];
    pre[pl++] = '\r';
    pre[pl++] = '\n';
    conn_write(c, pre, pl, p, len, owned, "\r\n", 2);
  } else {
    conn_write(c, NULL, 0, p, len, owned, NULL, 0);
  }
  if (c->queued > HIGH_WATERMARK)
    r->pressure = 1;
  return r->pressure;
}

int pd_res_write_buf(pd_req_t *r, pd_buf_t *b) {
  if (!r->res_started || r->res_ended || b->len == 0 || r->res_bodiless) {
    pd_buf_reset(b);
    return r->pressure;
  }
  size_t len;
  char *p = pd_buf_steal(b, &len);
  return write_body(r, p, len, p);
}

int pd_res_write(pd_req_t *r, const char *data, size_t len) {
  if (!r->res_started || r->res_ended || len == 0 || r->res_bodiless)
    return r->pressure;
  return write_body(r, data, len, NULL);
}

void pd_res_end(pd_req_t *r, int close_after) {
  pd_conn_t *c = r->conn;
  if (r->res_ended)
    return;
  r->res_ended = 1;
  if (close_after || !r->keep_alive) {
    r->keep_alive = 0;
    c->close_after = 1;
  }
  if (r->res_started && r->res_chunked && !close_after)
    conn_write(c, NULL, 0, "0\r\n\r\n", 5, NULL, NULL, 0);
}

void pd_res_send(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                 const char *body, size_t len) {
  pd_conn_t *c = r->conn;
  if (r->res_started)
    return;
  r->res_started = 1;
  r->status = status;
  if (c->srv->stopping)
    r->keep_alive = 0;
  char stack[HEAD_STACK], *heap;
  size_t hlen;
  const char *h = make_head(stack, &heap, &hlen, r, status, content_type, extra, (long)len);
  if (bodiless(r, status))
    len = 0;
  /* One write for head and body; the body is copied only if the socket is full. */
  conn_write(c, h, hlen, body, len, NULL, NULL, 0);
  free(heap);
  pd_res_end(r, 0);
}

void pd_res_error(pd_req_t *r, int status, const char *message, const char *type, const char *param,
                  const char *code) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, message, type, param, code);
  pd_res_send(r, status, "application/json", NULL, pd_buf_data(&b), b.len);
  pd_buf_free(&b);
}

/* ---- request lifecycle ----------------------------------------------------------------- */

static void req_reset(pd_conn_t *c) {
  pd_req_t *r = &c->req;
  pd_buf_reset(&c->arena);
  if (r->body.cap > READ_CHUNK)
    pd_buf_free(&r->body);
  else
    pd_buf_reset(&r->body);
  /* Everything but the header table (read only below nheaders) and the body buffer. */
  r->method = NULL;
  r->url = NULL;
  r->path_len = 0;
  r->query = NULL;
  r->nheaders = 0;
  r->request_id[0] = '\0';
  memset(&r->http_minor, 0, sizeof *r - offsetof(pd_req_t, http_minor));
  r->conn = c;
  c->head_bytes = 0;
  c->tail_bytes = 0;
  c->hdr_name_off[0] = (size_t)-1;
  c->in_value = 0;
  c->too_many_headers = 0;
  c->head_done = 0;
  c->err_status = 0;
}

static void stop_reading(pd_conn_t *c) {
  if (c->reading) {
    uv_read_stop(&c->io.stream);
    c->reading = 0;
  }
}

/* Between two requests: when the client is not taking its responses, neither read its next
 * requests nor parse those already read (each may be answered at once and queue more), until
 * on_write sees the queue below LOW_WATERMARK. Returns 1 when blocked. */
static int write_block(pd_conn_t *c) {
  if (c->queued <= HIGH_WATERMARK)
    return 0;
  c->write_blocked = 1;
  stop_reading(c);
  return 1;
}

void pd_req_finish(pd_req_t *r) {
  pd_conn_t *c = r->conn;
  pd_server_t *s = c->srv;
  if (c->state != CONN_INFLIGHT)
    return;
  if (!r->res_ended) {
    /* The handler gave up without a complete response: the connection cannot be reused. */
    r->keep_alive = 0;
    c->close_after = 1;
  }
  int keep = r->keep_alive && !c->close_after && !s->stopping;
  s->inflight--;
  c->state = CONN_IDLE;
  req_reset(c);
  if (c->closing) {
    conn_close(c); /* the close was waiting for the handler */
    return;
  }
  /* From here the connection is idle, flushing, or both: the idle timer covers each case. A
   * timer already running for bytes queued in flight keeps its period and its count. */
  if (c->queued == 0 || !uv_is_active((uv_handle_t *)&c->timer))
    arm_timer(c, s->opts.idle_timeout_ms);
  if (!keep) {
    c->close_after = 1;
    stop_reading(c);
    maybe_finish_close(c);
    return;
  }
  if (c->parsing)
    return; /* the parse loop goes on with the next pipelined request (on_message_complete) */
  /* The parser paused after the finished message: let it take the next one, unless the client
   * is not reading what it was sent (on_write resumes then). */
  llhttp_resume(&c->parser);
  if (write_block(c))
    return;
  if (c->pending.len > 0 || !c->reading)
    schedule_resume(c);
}

/* Runs the pipelined bytes held while a request was in flight. Deferred to the loop so a
 * handler that finishes inside an upstream callback never re-enters the parser. */
static void on_resume_idle(uv_idle_t *h) {
  pd_server_t *s = h->data;
  while (s->resume_list) {
    pd_conn_t *c = s->resume_list;
    s->resume_list = c->resume_next;
    c->in_resume_list = 0;
    if (c->closing || c->state == CONN_INFLIGHT || c->write_blocked || c->close_after)
      continue;
    if (c->pending.len > 0) {
      pd_buf_t p = c->pending;
      pd_buf_init(&c->pending);
      llhttp_resume(&c->parser);
      conn_parse(c, pd_buf_data(&p), p.len);
      pd_buf_free(&p);
    } else {
      llhttp_resume(&c->parser);
    }
    if (!c->closing && c->state != CONN_INFLIGHT && !c->reading && !c->close_after &&
        !c->write_blocked) {
      if (uv_read_start(&c->io.stream, on_alloc, on_read) == 0)
        c->reading = 1;
      else
        conn_close(c);
    }
  }
  uv_idle_stop(h);
}

static void schedule_resume(pd_conn_t *c) {
  if (c->in_resume_list)
    return;
  c->in_resume_list = 1;
  c->resume_next = c->srv->resume_list;
  c->srv->resume_list = c;
  uv_idle_start(&c->srv->resume_idle, on_resume_idle);
}

/* ---- llhttp callbacks -------------------------------------------------------------------- */

static pd_conn_t *conn_of(llhttp_t *p) {
  return (pd_conn_t *)p->data;
}

static int count_head(pd_conn_t *c, size_t n) {
  c->head_bytes += n;
  if ((long)c->head_bytes > c->srv->opts.max_header_bytes) {
    c->err_status = 431;
    return HPE_USER;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  c->state = CONN_HEAD;
  c->req.start_ns = uv_hrtime();
  if (c->head_bytes == 0)
    arm_timer(c, c->srv->opts.header_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  if (count_head(c, n))
    return HPE_USER;
  return pd_buf_append(&c->arena, at, n) < 0 ? HPE_USER : 0;
}

static int on_url_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  /* The url ends with a NUL; header strings follow it in the arena. */
  return pd_buf_append(&c->arena, "", 1) < 0 ? HPE_USER : 0;
}

/* Chunk extensions and trailer fields (llhttp reports trailers through the header callbacks,
 * after on_headers_complete): read and ignored (SPEC section 4), never stored, so the frozen
 * arena and header table stay as they are; bounded like a head. */
static int count_tail(pd_conn_t *c, size_t n) {
  c->tail_bytes += n;
  if (c->tail_bytes > (size_t)c->srv->opts.max_header_bytes) {
    c->err_status = 431;
    return HPE_USER;
  }
  return 0;
}

static int on_tail_data(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return count_tail(conn_of(p), n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  if (c->head_done)
    return count_tail(c, n);
  if (count_head(c, n))
    return HPE_USER;
  pd_req_t *r = &c->req;
  if (r->nheaders >= PD_MAX_HEADERS) {
    c->too_many_headers = 1;
    return 0;
  }
  if (!c->in_value && c->hdr_name_off[r->nheaders] == (size_t)-1)
    c->hdr_name_off[r->nheaders] = c->arena.len;
  char *w = pd_buf_reserve(&c->arena, n);
  if (!w)
    return HPE_USER;
  for (size_t i = 0; i < n; i++)
    w[i] = (char)tolower((unsigned char)at[i]);
  pd_buf_commit(&c->arena, n);
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  if (c->head_done || c->req.nheaders >= PD_MAX_HEADERS)
    return 0;
  c->in_value = 1;
  c->hdr_value_off[c->req.nheaders] = (size_t)-1;
  return pd_buf_append(&c->arena, "", 1) < 0 ? HPE_USER : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  if (c->head_done)
    return count_tail(c, n);
  if (count_head(c, n))
    return HPE_USER;
  if (c->req.nheaders >= PD_MAX_HEADERS)
    return 0;
  if (c->hdr_value_off[c->req.nheaders] == (size_t)-1)
    c->hdr_value_off[c->req.nheaders] = c->arena.len;
  return pd_buf_append(&c->arena, at, n) < 0 ? HPE_USER : 0;
}

static int on_header_value_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  pd_req_t *r = &c->req;
  if (c->head_done || r->nheaders >= PD_MAX_HEADERS)
    return 0;
  if (c->hdr_value_off[r->nheaders] == (size_t)-1)
    c->hdr_value_off[r->nheaders] = c->arena.len; /* empty value */
  if (pd_buf_append(&c->arena, "", 1) < 0)
    return HPE_USER;
  r->nheaders++;
  c->in_value = 0;
  if (r->nheaders < PD_MAX_HEADERS)
    c->hdr_name_off[r->nheaders] = (size_t)-1;
  return 0;
}

/* The length of a usable client request id (1 to 128 visible ASCII bytes), or 0. */
static size_t valid_request_id(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
      return 0;
  return n <= 128 ? n : 0;
}

static void new_request_id(char *out) {
  static const char hex[] = "0123456789abcdef";
  /* Kernel randomness fetched 256 bytes (16 ids) at a time: one getrandom call per 16
   * requests instead of one per request. Per thread, so no locking. */
  static _Thread_local unsigned char pool[256];
  static _Thread_local size_t pool_pos = sizeof pool;
  unsigned char rnd[16];
  if (pool_pos + sizeof rnd > sizeof pool &&
      getrandom(pool, sizeof pool, GRND_NONBLOCK) == (ssize_t)sizeof pool)
    pool_pos = 0;
  if (pool_pos + sizeof rnd <= sizeof pool) {
    memcpy(rnd, pool + pool_pos, sizeof rnd);
    memset(pool + pool_pos, 0, sizeof rnd);
    pool_pos += sizeof rnd;
  } else {
    uint64_t t = uv_hrtime();
    for (int i = 0; i < 16; i++)
      rnd[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 37);
  }
  memcpy(out, "req_", 4);
  for (int i = 0; i < 16; i++) {
    out[4 + 2 * i] = hex[rnd[i] >> 4];
    out[5 + 2 * i] = hex[rnd[i] & 15];
  }
  out[36] = '\0';
}

/* Offers a head that expects 100-continue to the server's head check. Returns 1 when the
 * check answered it: the body is then never read and the connection is not reused (the client
 * may send the body anyway, or not). */
static int answer_before_body(pd_conn_t *c) {
  pd_server_t *s = c->srv;
  pd_req_t *r = &c->req;
  if (!s->check_head)
    return 0;
  pd_buf_append(&r->body, "", 0); /* handlers may rely on a NUL-terminated body */
  int keep_alive = r->keep_alive;
  r->keep_alive = 0; /* an answer says "connection: close" */
  c->state = CONN_INFLIGHT;
  s->inflight++;
  uv_timer_stop(&c->timer);
  if (s->check_head(s->ud, r))
    return 1;
  s->inflight--;
  c->state = CONN_HEAD;
  r->keep_alive = keep_alive;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  pd_req_t *r = &c->req;
  /* The arena is complete: from here on it is frozen (head_done), and only now are pointers
   * into it handed out. */
  if (!c->arena.base && pd_buf_append(&c->arena, "", 1) < 0)
    return HPE_USER;
  c->head_done = 1;
  char *a = c->arena.base + c->arena.off;
  r->url = a;
  char *q = strchr(a, '?');
  r->path_len = q ? (size_t)(q - a) : strlen(a);
  r->query = q ? q + 1 : "";
  for (size_t i = 0; i < r->nheaders; i++) {
    r->headers[i].name = a + c->hdr_name_off[i];
    r->headers[i].value = a + c->hdr_value_off[i];
  }
  /* ponder speaks HTTP/1.1 only: an Upgrade (h2c, websocket) request is answered as a plain
   * request, and the connection stays HTTP/1.1. */
  p->upgrade = 0;
  r->method = llhttp_method_name((llhttp_method_t)p->method);
  r->is_head = p->method == HTTP_HEAD;
  r->http_minor = p->http_minor;
  r->keep_alive = llhttp_should_keep_alive(p);
  const char *rid = pd_req_header(r, "x-request-id");
  size_t rid_len = rid ? valid_request_id(rid) : 0;
  if (rid_len) {
    memcpy(r->request_id, rid, rid_len);
    r->request_id[rid_len] = '\0';
  } else {
    new_request_id(r->request_id);
  }
  if (c->too_many_headers) {
    c->err_status = 431;
    return HPE_USER;
  }
  /* Unsigned: llhttp takes lengths up to 2^64 - 1, which a signed compare would see as
   * negative. max_body_bytes is at least 1 (config). */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    return HPE_USER;
  }
  /* An HTTP/1.0 client cannot take an interim response: its expectation is ignored (RFC 9110
   * section 10.1.1). */
  const char *expect = pd_req_header(r, "expect");
  if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
      p->http_minor >= 1) {
    /* The client waits for a go-ahead before it sends the body: the handler decides first
     * (auth), so a request it refuses never gets a 100 Continue. */
    if (answer_before_body(c))
      return HPE_PAUSED; /* answered; the connection closes once the answer is written */
    conn_write(c, NULL, 0, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, NULL, 0);
  }
  c->state = CONN_BODY;
  arm_timer(c, c->srv->opts.idle_timeout_ms);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  pd_req_t *r = &c->req;
  if (r->body.len + n > (size_t)c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    return HPE_USER;
  }
  return pd_buf_append(&r->body, at, n) < 0 ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  pd_server_t *s = c->srv;
  pd_req_t *r = &c->req;
  uv_timer_stop(&c->timer);
  if (!r->body.base)
    pd_buf_append(&r->body, "", 0); /* handlers may rely on a NUL-terminated body */
  c->state = CONN_INFLIGHT;
  s->inflight++;
  s->dispatch(s->ud, r);
  if (c->state == CONN_INFLIGHT || c->closing || c->close_after)
    return HPE_PAUSED; /* hold the rest until the response is done */
  if (write_block(c))
    return HPE_PAUSED; /* answered at once, but the client is not reading: hold the rest */
  return 0;
}

static void init_settings(void) {
  static int done;
  if (done)
    return;
  done = 1;
  llhttp_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_url;
  settings.on_url_complete = on_url_complete;
  settings.on_header_field = on_header_field;
  settings.on_header_field_complete = on_header_field_complete;
  settings.on_header_value = on_header_value;
  settings.on_header_value_complete = on_header_value_complete;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_chunk_extension_name = on_tail_data;
  settings.on_chunk_extension_value = on_tail_data;
  settings.on_message_complete = on_message_complete;
}

/* Answers a request that failed to parse, then closes. */
static void fail_parse(pd_conn_t *c, int status, const char *msg, const char *code) {
  pd_server_t *s = c->srv;
  pd_req_t *r = &c->req;
  if (!r->request_id[0])
    new_request_id(r->request_id);
  if (c->state != CONN_INFLIGHT) {
    c->state = CONN_INFLIGHT;
    s->inflight++;
  }
  r->keep_alive = 0;
  r->http_minor = 1;
  stop_reading(c);
  pd_res_error(r, status, msg, "invalid_request_error", NULL, code);
  pd_req_finish(r);
}

static void conn_parse(pd_conn_t *c, const char *data, size_t len) {
  if (len == 0)
    return;
  c->parsing = 1;
  llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
  c->parsing = 0;
  if (c->closing)
    return;
  if (err == HPE_OK)
    return;
  if (err == HPE_PAUSED) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : 0;
    /* Bytes after a request that closes the connection are never parsed: drop them. */
    if (used < len && !c->close_after)
      pd_buf_append(&c->pending, data + used, len - used);
    if (c->state != CONN_INFLIGHT && !c->closing && !c->close_after && !c->write_blocked)
      schedule_resume(c); /* finished synchronously while paused */
    return;
  }
  if (c->state == CONN_INFLIGHT)
    return;
  if (c->err_status == 413)
    fail_parse(c, 413, "Request body too large: the limit is max_body_bytes.", "request_too_large");
  else if (c->err_status == 431)
    fail_parse(c, 431, "Request header fields too large: the limit is max_header_bytes.",
               "request_header_fields_too_large");
  else {
    char msg[200];
    snprintf(msg, sizeof msg, "Malformed HTTP request: %s.", llhttp_get_error_reason(&c->parser));
    fail_parse(c, 400, msg, "bad_request");
  }
}

/* ---- connection I/O ---------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  pd_server_t *s = ((pd_conn_t *)h->data)->srv;
  if (s->rbuf_busy) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  s->rbuf_busy = 1;
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void abort_inflight(pd_conn_t *c) {
  pd_req_t *r = &c->req;
  if (c->state == CONN_INFLIGHT && r->hooks && r->hooks->on_abort) {
    const pd_req_hooks_t *h = r->hooks;
    r->hooks = NULL;
    r->res_ended = 1;
    h->on_abort(r);
  }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  pd_conn_t *c = st->data;
  if (buf->base == c->srv->rbuf)
    c->srv->rbuf_busy = 0;
  if (nread == 0)
    return;
  if (nread < 0) {
    /* EOF or error. A client that half-closes after its request is treated as gone: the
     * usual HTTP clients never do, and an abandoned forced request wastes upstream tokens. */
    conn_close(c);
    return;
  }
  if (c->state == CONN_BODY)
    arm_timer(c, c->srv->opts.idle_timeout_ms);
  if (c->state == CONN_INFLIGHT || c->in_resume_list || c->write_blocked) {
    pd_buf_append(&c->pending, buf->base, (size_t)nread);
    if (c->pending.len > PENDING_MAX) {
      uv_read_stop(st);
      c->reading = 0;
    }
    return;
  }
  conn_parse(c, buf->base, (size_t)nread);
}

static void on_handle_closed(uv_handle_t *h) {
  pd_conn_t *c = h->data;
  if (--c->handles_open > 0)
    return;
  pd_server_t *s = c->srv;
  pd_buf_free(&c->pending);
  pd_buf_free(&c->arena);
  pd_buf_free(&c->req.body);
  free(c);
  if (s->stopping && s->nconns == 0 && s->listener_closed && s->on_closed) {
    void (*cb)(void *) = s->on_closed;
    s->on_closed = NULL;
    uv_close((uv_handle_t *)&s->resume_idle, NULL);
    cb(s->on_closed_ud);
  }
}

static void conn_close(pd_conn_t *c) {
  pd_server_t *s = c->srv;
  if (c->handles_closing)
    return;
  c->closing = 1;
  if (c->state == CONN_INFLIGHT) {
    /* The handler still owns the request: abort it; the close completes in pd_req_finish. */
    abort_inflight(c);
    if (c->handles_closing)
      return; /* the handler finished at once and the close already ran */
    if (c->state == CONN_INFLIGHT) {
      stop_reading(c);
      return;
    }
  }
  c->handles_closing = 1;
  if (c->in_resume_list) {
    pd_conn_t **pp = &s->resume_list;
    while (*pp && *pp != c)
      pp = &(*pp)->resume_next;
    if (*pp)
      *pp = c->resume_next;
    c->in_resume_list = 0;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  c->handles_open = 2;
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close(&c->io.handle, on_handle_closed);
}

/* Serves a connection whose stream handle (c->io) is open: the one path for accepted and
 * adopted sockets. */
static void conn_start(pd_server_t *s, pd_conn_t *c) {
  c->io.handle.data = c;
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  c->srv = s;
  c->handles_open = 0;
  pd_buf_init(&c->pending);
  pd_buf_init(&c->arena);
  pd_buf_init(&c->req.body);
  c->req.conn = c;
  c->hdr_name_off[0] = (size_t)-1;
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (c->io.handle.type == UV_TCP)
    uv_tcp_nodelay(&c->io.tcp, 1);
  if ((long)s->nconns > s->opts.max_connections) {
    /* Over the limit: say so, then close. */
    c->state = CONN_INFLIGHT;
    s->inflight++;
    new_request_id(c->req.request_id);
    c->req.keep_alive = 0;
    c->req.http_minor = 1;
    pd_res_error(&c->req, 503, "Too many connections: the limit is max_connections.",
                 "server_error", NULL, "too_many_connections");
    pd_req_finish(&c->req);
    return;
  }
  if (uv_read_start(&c->io.stream, on_alloc, on_read) == 0)
    c->reading = 1;
  arm_timer(c, s->opts.header_timeout_ms);
  c->head_bytes = 1; /* the header timer runs from accept, before the first byte */
}

static void on_connection(uv_stream_t *ls, int status) {
  pd_server_t *s = ls->data;
  if (status < 0 || s->stopping)
    return;
  pd_conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  uv_tcp_init(s->loop, &c->io.tcp);
  if (uv_accept(ls, &c->io.stream) < 0) {
    uv_close(&c->io.handle, (uv_close_cb)free);
    return;
  }
  conn_start(s, c);
}

int pd_server_adopt(pd_server_t *s, int fd) {
  if (s->stopping)
    return UV_ECANCELED;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
    return UV_EINVAL;
  pd_conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return UV_ENOMEM;
  int rc;
  if (ss.ss_family == AF_UNIX) {
    if ((rc = uv_pipe_init(s->loop, &c->io.pipe, 0)) < 0)
      goto fail_init;
    rc = uv_pipe_open(&c->io.pipe, fd);
  } else {
    if ((rc = uv_tcp_init(s->loop, &c->io.tcp)) < 0)
      goto fail_init;
    rc = uv_tcp_open(&c->io.tcp, fd);
  }
  if (rc < 0) {
    uv_close(&c->io.handle, (uv_close_cb)free);
    return rc;
  }
  conn_start(s, c);
  return 0;
fail_init:
  free(c);
  return rc;
}

pd_server_t *pd_server_start(uv_loop_t *loop, int fd, const pd_server_opts_t *opts,
                             pd_dispatch_fn dispatch, void *ud) {
  init_settings();
  pd_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->opts = *opts;
  s->dispatch = dispatch;
  s->ud = ud;
  /* Without a listening socket the listener handle is only initialised (and closed by
   * pd_server_stop): connections come through pd_server_adopt. */
  if (uv_tcp_init(loop, &s->listener) < 0)
    goto fail_init;
  s->listener.data = s;
  if (fd >= 0 && uv_tcp_open(&s->listener, fd) < 0)
    goto fail_open;
  if (fd >= 0 && uv_listen((uv_stream_t *)&s->listener, 4096, on_connection) < 0)
    goto fail_open;
  uv_idle_init(loop, &s->resume_idle);
  s->resume_idle.data = s;
  return s;
fail_open:
  uv_close((uv_handle_t *)&s->listener, NULL);
  return NULL; /* s is freed by the caller's loop teardown: the handle still points at it */
fail_init:
  free(s);
  return NULL;
}

void pd_server_set_head_check(pd_server_t *s, pd_head_fn check) {
  s->check_head = check;
}

void pd_server_set_opts(pd_server_t *s, const pd_server_opts_t *opts) {
  s->opts = *opts;
}

size_t pd_server_inflight(const pd_server_t *s) {
  return s->inflight;
}

static void on_listener_closed(uv_handle_t *h) {
  pd_server_t *s = h->data;
  s->listener_closed = 1;
  if (s->nconns == 0 && s->on_closed) {
    void (*cb)(void *) = s->on_closed;
    s->on_closed = NULL;
    uv_close((uv_handle_t *)&s->resume_idle, NULL);
    cb(s->on_closed_ud);
  }
}

void pd_server_stop(pd_server_t *s, int force, void (*on_closed)(void *ud), void *ud) {
  if (!s->stopping) {
    s->stopping = 1;
    s->on_closed = on_closed;
    s->on_closed_ud = ud;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  }
  for (pd_conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (force || (c->state != CONN_INFLIGHT && c->queued == 0)) {
      conn_close(c);
    } else if (c->state != CONN_INFLIGHT) {
      /* A response still being written: close once it is out (or at the grace deadline). */
      c->close_after = 1;
      stop_reading(c);
    }
  }
}

void pd_server_free(pd_server_t *s) {
  free(s);
}

const char *pd_req_header(const pd_req_t *r, const char *name) {
  char c0 = name[0];
  for (size_t i = 0; i < r->nheaders; i++)
    if (r->headers[i].name[0] == c0 && strcmp(r->headers[i].name, name) == 0)
      return r->headers[i].value;
  return NULL;
}
