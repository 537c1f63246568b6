/* The native HTTP/1.1 client for http:// and https:// upstreams: libuv sockets and an llhttp
 * response parser on the worker's loop, a keep-alive pool per origin, no threads and no copies
 * of response bodies. It exists because libcurl's general machinery was over half of ponder's
 * CPU time per proxied request (bench/README.md). Over TLS (tls.c) it offers only HTTP/1.1 by
 * ALPN: https:// calls that may speak h2 go to the HTTP/2 client, which hands over the origins
 * whose server chose HTTP/1.1. Through a proxy (proxy.c) it tunnels https:// with CONNECT and
 * sends plain HTTP in absolute form.
 *
 * Shape: a transfer (xfer_t) waits for, or is bound to, one connection (conn_t) per attempt.
 * A connection outlives its transfers: back in its origin's idle list after a complete,
 * keep-alive response, closed otherwise. The transfer's callbacks never run inside
 * pd_h1up_start/pause/cancel; failures found there are reported from a 0 ms timer. */
#include <llhttp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/origin.h"
#include "upstream/upstream_int.h"

#define READ_BUF_SIZE (64 * 1024)
#define MAX_HEAD_BYTES (100 * 1024) /* response status line + headers */
#define IDLE_MAX_MS 60000           /* idle keep-alive connections older than this are closed */
#define ERRMSG_SIZE 160

typedef struct xfer xfer_t;
typedef struct conn conn_t;
typedef struct origin origin_t;

struct pd_h1up {
  uv_loop_t *loop;
  pd_proxy_env_t proxy_env; /* the proxy environment, read once */
  int max_conns;            /* per origin; 0 = no limit */
  int closing;
  int pending_closes;
  void (*on_closed)(void *);
  void *on_closed_ud;
  uv_timer_t close_timer; /* only so that on_closed always runs from the loop */
  origin_t *origins;
  conn_t *conns;            /* every connection not yet freed */
  xfer_t *xfers;            /* every live transfer */
  char rbuf[READ_BUF_SIZE]; /* shared by all reads: data is parsed before the callback returns */
};

/* One scheme://host:port: its addresses, idle connections and waiting transfers. */
struct origin {
  pd_h1up_t *b;
  pd_origin_t base;     /* the key, the dialled address, TLS, the proxy */
  conn_t *resolve_wait; /* connections waiting for the addresses */
  conn_t *idle;         /* most recently used first */
  int nconns;           /* open or opening, idle included */
  origin_t *next;
};

enum { C_RESOLVING, C_CONNECTING, C_TUNNEL, C_HANDSHAKE, C_OPEN, C_CLOSING };

struct conn {
  uv_tcp_t *tcp; /* its own allocation: a connection can change hands (pd_h1up_adopt) */
  uv_connect_t connect_req;
  uv_write_t write_req;
  uv_timer_t timer; /* connect/stall/total deadline while busy, expiry while idle */
  llhttp_t parser;
  pd_tls_t *tls; /* https://: the connection's TLS state, from the TCP connect on */
  origin_t *o;
  xfer_t *x; /* the transfer being served; NULL when idle */
  int state;
  int addr_idx;
  int connect_err; /* a synchronous connect failure, reported from the timer */
  int idle;
  int reused;    /* it has served a response before */
  int got_bytes; /* any byte of the current response */
  int writing;
  int reading;
  int msg_done;
  int aborted; /* the transfer's on_data asked to abort */
  int too_large;
  size_t head_bytes;
  pd_buf_t hname, hvalue;
  pd_buf_t out; /* the request head being written */
  char *orphan; /* a body left by a transfer cancelled mid-write; freed when the write ends */
  int pending;  /* handles still to close */
  uint64_t connect_start; /* loop ms: the connect timeout runs from here */
  conn_t *lnext;          /* idle list or resolve-wait list */
  conn_t *prev, *next;
};

enum { T_NONE, T_RETRY, T_QUEUE, T_FAIL };

struct xfer {
  pd_xfer_t base; /* first: the front casts */
  pd_h1up_t *b;
  origin_t *o;
  conn_t *c;
  char *method, *path, *hdrs, *body;
  size_t hdrs_len, body_len;
  int send_length;
  int own_host; /* the caller's headers carry Host */
  int is_head;
  long connect_timeout_ms, timeout_ms;
  long stall_ms; /* stall_timeout_ms; 0 = none */
  int retries, attempt;
  pd_xfer_cbs_t cbs;
  void *ud;
  int in_cb;
  int cancelled;
  int head_done;
  int discard; /* a retryable status: swallow this attempt's body */
  int paused;
  int complete_pending; /* the response ended while held data waits for a resume */
  int fresh_only;       /* a reused connection died under this attempt: open a new one */
  int stale_retried;
  int reader_abort; /* on_data asked to stop: the caller's decision, not an upstream failure */
  pd_xhead_t head;
  pd_buf_t held;    /* body that arrived after a pause, delivered on resume */
  uv_timer_t timer; /* retry delay, time waiting for a connection, deferred failure */
  int timer_inited, timer_mode;
  int fail_result;
  char fail_msg[ERRMSG_SIZE];
  uint64_t start_ns;
  uint64_t start_ms; /* loop ms: the call began */
  uint64_t deadline; /* loop ms: timeout_ms from start_ms, retries included; 0 = none */
  /* Loop ms the stall clock runs from: the attempt's last byte received, else the moment it got
   * its connection or the caller resumed it. Only written on reads (no timer call per read):
   * the connection's timer checks it when it fires and re-arms itself. */
  uint64_t rx_ms;
  pd_list_t wlink; /* in its origin's waiter queue */
  xfer_t *prev, *next;
};

static void conn_close(conn_t *c);
static void conn_send(conn_t *c);
static void conn_start_connect(conn_t *c);
static void acquire(xfer_t *x);
static void attempt_failed(xfer_t *x, int result, const char *msg);
static void xfer_destroy(xfer_t *x);
static void serve_waiters(origin_t *o);
static void stop_xfer_timer(xfer_t *x);

/* ---- the backend ----------------------------------------------------------------------------- */

pd_h1up_t *pd_h1up_new(uv_loop_t *loop, int max_host_connections) {
  pd_h1up_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->loop = loop;
  b->max_conns = max_host_connections > 0 ? max_host_connections : 0;
  if (uv_timer_init(loop, &b->close_timer) < 0) {
    free(b);
    return NULL;
  }
  b->close_timer.data = b;
  pd_proxy_env_load(&b->proxy_env);
  return b;
}

static void part_closed(pd_h1up_t *b) {
  if (b->closing && --b->pending_closes == 0 && b->on_closed)
    b->on_closed(b->on_closed_ud);
}

static void on_close_timer_closed(uv_handle_t *h) {
  part_closed(h->data);
}

static void on_resolved(pd_origin_t *base, int status);

static void cancel_now(xfer_t *x) {
  x->cancelled = 1;
  x->in_cb = 0;
  stop_xfer_timer(x);
  xfer_destroy(x);
}

void pd_h1up_close(pd_h1up_t *b, void (*on_closed)(void *ud), void *ud) {
  b->closing = 1;
  b->on_closed = on_closed;
  b->on_closed_ud = ud;
  b->pending_closes = 1; /* the close timer */
  while (b->xfers)
    cancel_now(b->xfers);
  /* Every connection not yet freed reports once, closing already or not. */
  for (conn_t *c = b->conns; c; c = c->next) {
    b->pending_closes++;
    conn_close(c);
  }
  for (origin_t *o = b->origins; o; o = o->next)
    if (o->base.resolving) {
      b->pending_closes++;
      uv_cancel((uv_req_t *)&o->base.gai);
    }
  uv_close((uv_handle_t *)&b->close_timer, on_close_timer_closed);
}

void pd_h1up_free(pd_h1up_t *b) {
  if (!b)
    return;
  while (b->origins) {
    origin_t *o = b->origins;
    b->origins = o->next;
    pd_origin_free(&o->base);
    free(o);
  }
  pd_proxy_env_free(&b->proxy_env);
  free(b);
}

/* ---- origins and addresses ------------------------------------------------------------------ */

/* tls_key: NULL for http://, else the TLS settings as pd_tls_xfer_key wrote them. */
static origin_t *origin_get(pd_h1up_t *b, const char *auth, size_t alen, const char *tls_key,
                            const pd_xfer_opts_t *op) {
  const char *proxy = pd_origin_proxy_for(&b->proxy_env, op, tls_key != NULL, auth, alen);
  for (origin_t *o = b->origins; o; o = o->next)
    if (pd_origin_is(&o->base, auth, alen, tls_key, proxy))
      return o;
  origin_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  /* Over TLS ALPN offers only HTTP/1.1: calls that may speak h2 start on the HTTP/2 client,
   * which hands an origin whose server chose HTTP/1.1 to this one. */
  if (pd_origin_init(&o->base, auth, alen, tls_key, proxy, op, 0) < 0) {
    free(o);
    return NULL;
  }
  o->b = b;
  o->next = b->origins;
  b->origins = o;
  return o;
}

static int addrs_fresh(origin_t *o) {
  return pd_origin_addr_fresh(o->base.dial, uv_now(o->b->loop));
}

static void do_connect(conn_t *c, int idx);
static void on_conn_timer(uv_timer_t *t);

static void on_resolved(pd_origin_t *base, int status) {
  origin_t *o = (origin_t *)((char *)base - offsetof(origin_t, base));
  pd_h1up_t *b = o->b;
  if (b->closing) {
    part_closed(b);
    return;
  }
  while (o->resolve_wait) {
    conn_t *c = o->resolve_wait;
    o->resolve_wait = c->lnext;
    c->lnext = NULL;
    if (status == 0) {
      do_connect(c, 0);
    } else {
      c->connect_err = status;
      uv_timer_start(&c->timer, on_conn_timer, 0, 0);
    }
  }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_handle_closed(conn_t *c) {
  if (--c->pending > 0)
    return;
  pd_h1up_t *b = c->o->b;
  if (c->prev)
    c->prev->next = c->next;
  else
    b->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  pd_buf_free(&c->hname);
  pd_buf_free(&c->hvalue);
  pd_buf_free(&c->out);
  pd_tls_free(c->tls);
  free(c->orphan);
  free(c);
  part_closed(b);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  conn_handle_closed(h->data);
}

static void on_tcp_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  free(h);
  conn_handle_closed(c);
}

/* Takes c off a list linked through lnext (its origin's idle or resolve-wait list). */
static void lnext_unlink(conn_t **head, conn_t *c) {
  conn_t **pp = head;
  while (*pp && *pp != c)
    pp = &(*pp)->lnext;
  if (*pp)
    *pp = c->lnext;
  c->lnext = NULL;
}

static void idle_unlink(conn_t *c) {
  if (!c->idle)
    return;
  lnext_unlink(&c->o->idle, c);
  c->idle = 0;
}

static void resolve_unlink(conn_t *c) {
  lnext_unlink(&c->o->resolve_wait, c);
}

/* Closes a connection its transfer has already left (c->x == NULL), without giving its slot to
 * a waiting transfer: for a caller that will use the slot itself. */
static void conn_close_keep_slot(conn_t *c) {
  if (c->state == C_CLOSING)
    return;
  origin_t *o = c->o;
  idle_unlink(c);
  if (c->state == C_RESOLVING)
    resolve_unlink(c);
  c->state = C_CLOSING;
  c->x = NULL;
  o->nconns--;
  c->pending = 2;
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  uv_close((uv_handle_t *)c->tcp, on_tcp_closed);
}

/* Closes a connection its transfer has already left, and lets a waiting transfer have its slot. */
static void conn_close(conn_t *c) {
  origin_t *o = c->o;
  int was_open = c->state != C_CLOSING;
  conn_close_keep_slot(c);
  if (was_open && !o->b->closing)
    serve_waiters(o);
}

static const llhttp_settings_t parser_settings;

/* A new connection of o on tcp (a socket already connected, to adopt), or on a new socket
 * when tcp is NULL. */
static conn_t *conn_new_on(origin_t *o, uv_tcp_t *tcp) {
  pd_h1up_t *b = o->b;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->tcp = tcp ? tcp : malloc(sizeof *c->tcp);
  if (!c->tcp || (!tcp && uv_tcp_init(b->loop, c->tcp) < 0)) {
    free(c->tcp);
    free(c);
    return NULL;
  }
  uv_timer_init(b->loop, &c->timer);
  c->tcp->data = c;
  c->connect_req.data = c;
  c->write_req.data = c;
  c->timer.data = c;
  c->o = o;
  llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
  c->parser.data = c;
  pd_buf_init(&c->hname);
  pd_buf_init(&c->hvalue);
  pd_buf_init(&c->out);
  c->next = b->conns;
  if (b->conns)
    b->conns->prev = c;
  b->conns = c;
  o->nconns++;
  c->state = C_RESOLVING;
  c->connect_start = uv_now(b->loop);
  return c;
}

static conn_t *conn_new(origin_t *o) {
  return conn_new_on(o, NULL);
}

static void detach(xfer_t *x) {
  conn_t *c = x->c;
  if (!c)
    return;
  uv_timer_stop(&c->timer);
  c->x = NULL;
  x->c = NULL;
}

/* The caller's pause holds this transfer's input: it is paused and the bytes coming are body it
 * would deliver (its head is delivered). Until then a paused transfer reads on: a head, and a
 * retryable status's body that is discarded (else the retry would wait for the resume). */
static int input_held(const xfer_t *x) {
  return x->paused && x->head_done && !x->discard;
}

/* The stall clock runs: a stall bound is set and the caller's pause does not hold the input
 * (time ponder itself holds the response is not the upstream's silence). */
static int stall_armed(const xfer_t *x) {
  return x->stall_ms > 0 && !input_held(x);
}

/* Arms the connection's timer for the transfer's next deadline: connect, stall or total. */
static void arm_deadline(conn_t *c) {
  xfer_t *x = c->x;
  uint64_t now = uv_now(c->o->b->loop);
  uint64_t due = x->deadline;
  if (c->state != C_OPEN && x->connect_timeout_ms > 0) {
    uint64_t cdue = c->connect_start + (uint64_t)x->connect_timeout_ms;
    if (!due || cdue < due)
      due = cdue;
  }
  if (stall_armed(x)) {
    uint64_t sdue = x->rx_ms + (uint64_t)x->stall_ms;
    if (!due || sdue < due)
      due = sdue;
  }
  if (due)
    uv_timer_start(&c->timer, on_conn_timer, due > now ? due - now : 0, 0);
  else
    uv_timer_stop(&c->timer);
}

static void bind_conn(conn_t *c, xfer_t *x) {
  c->x = x;
  x->c = c;
  c->msg_done = 0;
  c->got_bytes = 0;
  c->aborted = 0;
  c->too_large = 0;
  x->rx_ms = uv_now(c->o->b->loop); /* the attempt starts: its stall clock with it */
  arm_deadline(c);
}

static void on_connected(uv_connect_t *req, int status);
static void conn_opened(conn_t *c);
static void tls_start(conn_t *c);
static void tls_on_read(conn_t *c, ssize_t nread, const char *data);
static void tunnel_start(conn_t *c);
static void tunnel_on_read(conn_t *c, ssize_t nread, const char *data);
static int tls_flush(conn_t *c, int request);

static void do_connect(conn_t *c, int idx) {
  c->addr_idx = idx;
  c->state = C_CONNECTING;
  int rc = uv_tcp_connect(&c->connect_req, c->tcp,
                          (const struct sockaddr *)&c->o->base.dial->addrs[idx], on_connected);
  if (rc < 0) {
    c->connect_err = rc;
    uv_timer_start(&c->timer, on_conn_timer, 0, 0);
  }
}

static void conn_start_connect(conn_t *c) {
  origin_t *o = c->o;
  if (addrs_fresh(o)) {
    do_connect(c, 0);
    return;
  }
  c->state = C_RESOLVING;
  c->lnext = o->resolve_wait;
  o->resolve_wait = c;
  int rc = pd_origin_resolve(&o->base, o->b->loop, on_resolved);
  if (rc < 0) {
    resolve_unlink(c);
    c->connect_err = rc;
    uv_timer_start(&c->timer, on_conn_timer, 0, 0);
  }
}

/* Puts a connection whose response ended cleanly back in its origin's idle list. */
static void conn_release(conn_t *c) {
  origin_t *o = c->o;
  c->x = NULL;
  c->reused = 1;
  c->idle = 1;
  c->lnext = o->idle;
  o->idle = c;
  uv_timer_start(&c->timer, on_conn_timer, IDLE_MAX_MS, 0);
  serve_waiters(o);
}

static void connect_failed(conn_t *c, int status) {
  xfer_t *x = c->x;
  origin_t *o = c->o;
  int idx = c->addr_idx;
  int resolving = c->state == C_RESOLVING;
  uint64_t started = c->connect_start;
  if (!x) {
    conn_close(c);
    return;
  }
  detach(x);
  conn_close_keep_slot(c);
  if (!resolving && idx + 1 < o->base.dial->naddrs) {
    conn_t *c2 = conn_new(o); /* takes the slot c had */
    if (c2) {
      c2->connect_start = started;
      bind_conn(c2, x);
      do_connect(c2, idx + 1);
      return;
    }
  }
  serve_waiters(o);
  char msg[ERRMSG_SIZE];
  if (resolving)
    snprintf(msg, sizeof msg, "Could not resolve %s: %s (%s)", o->base.proxy ? "proxy" : "host",
             o->base.dial->host, uv_strerror(status));
  else
    snprintf(msg, sizeof msg, "Failed to connect to %s%s port %s: %s",
             o->base.proxy ? "proxy " : "", o->base.dial->host, o->base.dial->port,
             uv_strerror(status));
  attempt_failed(x, PD_XFER_ECONNECT, msg);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn_t *c = h->data;
  buf->base = c->o->b->rbuf;
  buf->len = READ_BUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(conn_t *c) {
  if (c->reading)
    return;
  if (uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read) == 0)
    c->reading = 1;
}

static void stop_reading(conn_t *c) {
  if (!c->reading)
    return;
  uv_read_stop((uv_stream_t *)c->tcp);
  c->reading = 0;
}

static void on_connected(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (c->state == C_CLOSING)
    return;
  if (status < 0) {
    connect_failed(c, status);
    return;
  }
  uv_tcp_nodelay(c->tcp, 1);
  uv_tcp_keepalive(c->tcp, 1, 60);
  if (c->o->base.dial != &c->o->base.a && c->o->base.tls)
    tunnel_start(c);
  else if (c->o->base.tls)
    tls_start(c);
  else
    conn_opened(c);
}

/* The connection is ready for requests (connected, and its TLS handshake done). */
static void conn_opened(conn_t *c) {
  c->state = C_OPEN;
  start_reading(c);
  if (!c->x) { /* its transfer went away while connecting: keep the connection */
    conn_release(c);
    return;
  }
  arm_deadline(c);
  conn_send(c);
}

/* ---- transfers: attempts, completion, failure ------------------------------------------------ */

static void xfer_on_timer(uv_timer_t *t);

static void arm_xfer_timer(xfer_t *x, int mode, uint64_t ms) {
  if (!x->timer_inited) {
    uv_timer_init(x->b->loop, &x->timer);
    x->timer.data = x;
    x->timer_inited = 1;
  }
  x->timer_mode = mode;
  uv_timer_start(&x->timer, xfer_on_timer, ms, 0);
}

static void stop_xfer_timer(xfer_t *x) {
  if (x->timer_inited && x->timer_mode != T_NONE)
    uv_timer_stop(&x->timer);
  x->timer_mode = T_NONE;
}

/* Reports a failure from the loop, never inside the caller's frame. */
static void fail_soon(xfer_t *x, int result, const char *msg) {
  x->fail_result = result;
  snprintf(x->fail_msg, sizeof x->fail_msg, "%s", msg);
  arm_xfer_timer(x, T_FAIL, 0);
}

static void deliver_head(xfer_t *x) {
  if (x->head_done || x->cancelled)
    return;
  x->head_done = 1;
  x->in_cb++;
  pd_xhead_emit(&x->head, x->cbs.on_head, x->ud);
  x->in_cb--;
}

/* The transfer's end: on_done, then free. */
static void finish(xfer_t *x, int result, const char *msg) {
  stop_xfer_timer(x);
  if (result == PD_XFER_OK)
    deliver_head(x);
  if (!x->cancelled && x->cbs.on_done) {
    x->in_cb++;
    x->cbs.on_done(x->ud, result, msg);
    x->in_cb--;
  }
  xfer_destroy(x);
}

/* The call's deadline passed between attempts (`made` of them). */
static void finish_timed_out(xfer_t *x, int made) {
  char msg[ERRMSG_SIZE];
  snprintf(msg, sizeof msg, "Operation timed out after %lu milliseconds (%d attempts)",
           (unsigned long)(uv_now(x->b->loop) - x->start_ms), made);
  finish(x, PD_XFER_ETIMEOUT, msg);
}

/* Whether a retry after delay_ms is allowed: retries remain and it starts before the deadline. */
static int may_retry(const xfer_t *x, long delay_ms) {
  return x->attempt < x->retries && pd_xfer_retry_fits(x->deadline, uv_now(x->b->loop), delay_ms);
}

static void new_attempt(xfer_t *x) {
  x->discard = 0;
  /* x->paused stays: a caller that paused expects no data until it resumes, retry or not. */
  x->complete_pending = 0;
  pd_buf_reset(&x->held);
  pd_xhead_reset(&x->head);
}

/* An attempt failed before a complete response: retry a failed connect while retries remain,
 * else report. The connection is already detached. */
static void attempt_failed(xfer_t *x, int result, const char *msg) {
  long delay = pd_xfer_connect_delay(x->attempt);
  if (result == PD_XFER_ECONNECT && !x->head_done && may_retry(x, delay)) {
    pd_xfer_log_retry(&x->base, x->attempt, msg, delay);
    x->attempt++;
    arm_xfer_timer(x, T_RETRY, (uint64_t)delay);
    return;
  }
  x->discard = 0;
  finish(x, result, msg);
}

/* The response ended; the connection goes back to the pool when it can be reused. */
static void attempt_complete(xfer_t *x, int keep) {
  conn_t *c = x->c;
  detach(x);
  if (keep)
    conn_release(c);
  else
    conn_close(c);
  if (x->discard) {
    long delay = pd_xfer_status_delay(&x->head, x->attempt);
    if (!pd_xfer_retry_fits(x->deadline, uv_now(x->b->loop), delay)) {
      finish_timed_out(x, x->attempt +
                              1); /* its body is gone: the retry was planned when the head came */
      return;
    }
    char why[32];
    snprintf(why, sizeof why, "status %d", x->head.status);
    pd_xfer_log_retry(&x->base, x->attempt, why, delay);
    x->attempt++;
    arm_xfer_timer(x, T_RETRY, (uint64_t)delay);
    return;
  }
  if (x->paused && x->held.len > 0) {
    x->complete_pending = 1;
    return;
  }
  finish(x, PD_XFER_OK, "");
}

/* Gets the transfer a connection: an idle one, a new one, or a place in the queue. */
static void acquire(xfer_t *x) {
  origin_t *o = x->o;
  pd_h1up_t *b = x->b;
  if (o->base.bad[0]) {
    fail_soon(x, PD_XFER_EOTHER, o->base.bad);
    return;
  }
  if (o->idle && !x->fresh_only) {
    conn_t *c = o->idle;
    o->idle = c->lnext;
    c->lnext = NULL;
    c->idle = 0;
    bind_conn(c, x);
    conn_send(c);
    return;
  }
  if (b->max_conns && o->nconns >= b->max_conns && o->idle)
    conn_close(o->idle); /* a fresh connection is needed: make room */
  if (!b->max_conns || o->nconns < b->max_conns) {
    conn_t *c = conn_new(o);
    if (!c) {
      fail_soon(x, PD_XFER_EOTHER, "out of memory opening an upstream connection");
      return;
    }
    x->fresh_only = 0;
    bind_conn(c, x);
    conn_start_connect(c);
    return;
  }
  pd_origin_wait(&o->base, &x->wlink, 0);
  if (x->deadline) {
    uint64_t now = uv_now(b->loop);
    arm_xfer_timer(x, T_QUEUE, x->deadline > now ? x->deadline - now : 0);
  }
}

static void queue_unlink(xfer_t *x) {
  pd_list_remove(&x->wlink);
}

static void serve_waiters(origin_t *o) {
  pd_h1up_t *b = o->b;
  pd_list_t *l;
  while ((l = pd_origin_next_waiter(&o->base)) && !b->closing &&
         (o->idle || !b->max_conns || o->nconns < b->max_conns)) {
    xfer_t *x = pd_list_entry(l, xfer_t, wlink);
    queue_unlink(x);
    stop_xfer_timer(x);
    acquire(x);
  }
}

static void xfer_on_timer(uv_timer_t *t) {
  xfer_t *x = t->data;
  int mode = x->timer_mode;
  x->timer_mode = T_NONE;
  if (x->cancelled)
    return;
  switch (mode) {
  case T_RETRY:
    if (x->deadline && uv_now(x->b->loop) >= x->deadline) {
      finish_timed_out(x, x->attempt);
      break;
    }
    new_attempt(x);
    acquire(x);
    break;
  case T_QUEUE: {
    queue_unlink(x);
    char msg[ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "Operation timed out after %lu milliseconds waiting for a connection",
             (unsigned long)(uv_now(x->b->loop) - x->start_ms));
    finish(x, PD_XFER_ETIMEOUT, msg);
    break;
  }
  case T_FAIL:
    finish(x, x->fail_result, x->fail_msg);
    break;
  default:
    break;
  }
}

static void on_timer_closed_free(uv_handle_t *h) {
  free(h->data);
}

static void xfer_destroy(xfer_t *x) {
  pd_h1up_t *b = x->b;
  queue_unlink(x);
  if (x->c) {
    conn_t *c = x->c;
    detach(x);
    if (c->writing && !c->orphan) {
      c->orphan = x->body; /* the kernel may still be reading it */
      x->body = NULL;
    }
    conn_close(c);
  }
  if (x->prev)
    x->prev->next = x->next;
  else if (b->xfers == x)
    b->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  x->prev = x->next = NULL;
  pd_xhead_free(&x->head);
  pd_buf_free(&x->held);
  free(x->method);
  free(x->path);
  free(x->hdrs);
  free(x->body);
  if (x->timer_inited) {
    uv_timer_stop(&x->timer);
    uv_close((uv_handle_t *)&x->timer, on_timer_closed_free);
  } else {
    free(x);
  }
}

/* A connection error or end of stream while serving x (status < 0). */
static void conn_failed(conn_t *c, int status, const char *what) {
  xfer_t *x = c->x;
  int stale = c->reused && !c->got_bytes;
  if (!x) {
    conn_close(c);
    return;
  }
  detach(x);
  if (stale && !x->stale_retried) {
    /* The server closed a keep-alive connection as the request went out: nothing of the
     * response was seen, so send it again on a new connection, in this one's slot. */
    origin_t *o = c->o;
    conn_close_keep_slot(c);
    x->stale_retried = 1;
    x->fresh_only = 1;
    new_attempt(x);
    acquire(x);
    serve_waiters(o);
    return;
  }
  conn_close(c);
  char msg[ERRMSG_SIZE];
  if (status == UV_EOF)
    snprintf(msg, sizeof msg, "%s",
             c->got_bytes ? "the upstream closed the connection mid-response"
                          : "Empty reply from server");
  else
    snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(status));
  attempt_failed(x, PD_XFER_ERECV, msg);
}

static void on_conn_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->state == C_CLOSING)
    return;
  if (c->connect_err) {
    int err = c->connect_err;
    c->connect_err = 0;
    connect_failed(c, err);
    return;
  }
  xfer_t *x = c->x;
  if (!x) { /* idle too long */
    conn_close(c);
    return;
  }
  char msg[ERRMSG_SIZE];
  uint64_t now = uv_now(c->o->b->loop);
  int connect_due = c->state != C_OPEN && x->connect_timeout_ms > 0 &&
                    now >= c->connect_start + (uint64_t)x->connect_timeout_ms;
  if (!connect_due && !(x->deadline && now >= x->deadline)) {
    if (!stall_armed(x) || now < x->rx_ms + (uint64_t)x->stall_ms) {
      arm_deadline(c); /* bytes came since it was armed, or the caller paused: not yet */
      return;
    }
    /* Same outcome as a timeout: not retried (the upstream may be working on the request). */
    pd_xfer_stall_msg(msg, sizeof msg, x->stall_ms);
  } else if (c->state != C_OPEN)
    snprintf(msg, sizeof msg, "Connection timed out after %lu milliseconds",
             (unsigned long)(uv_now(c->o->b->loop) - c->connect_start));
  else
    snprintf(msg, sizeof msg, "Operation timed out after %lu milliseconds",
             (unsigned long)(uv_now(c->o->b->loop) - x->start_ms));
  detach(x);
  conn_close(c);
  attempt_failed(x, PD_XFER_ETIMEOUT, msg);
}

/* ---- the request ---------------------------------------------------------------------------- */

/* The request (head and body) is written, or could not be. */
static void write_done(conn_t *c, int status) {
  c->writing = 0;
  free(c->orphan);
  c->orphan = NULL;
  if (c->out.cap > 4096)
    pd_buf_free(&c->out);
  if (c->state == C_CLOSING)
    return;
  if (status < 0)
    conn_failed(c, status, "Failed sending the request");
}

static void on_written(uv_write_t *req, int status) {
  write_done(req->data, status);
}

static void conn_send(conn_t *c) {
  xfer_t *x = c->x;
  origin_t *o = c->o;
  pd_buf_reset(&c->out);
  size_t mlen = strlen(x->method), plen = strlen(x->path);
  /* Plain HTTP through a proxy: the absolute form, so the proxy knows where it goes. */
  int absolute = o->base.dial != &o->base.a && !o->base.tls;
  const char *pauth = absolute ? o->base.proxy_auth : NULL; /* the proxy's own credentials */
  size_t palen = pauth ? strlen(pauth) : 0;
  size_t need = mlen + plen + 2 * o->base.a.alen + x->hdrs_len + palen + 72;
  char *w = pd_buf_reserve(&c->out, need);
  if (!w) {
    detach(x);
    conn_close(c);
    fail_soon(x, PD_XFER_EOTHER, "out of memory building the upstream request");
    return;
  }
  char *p = w;
  memcpy(p, x->method, mlen);
  p += mlen;
  *p++ = ' ';
  if (absolute) {
    memcpy(p, "http://", 7);
    p += 7;
    memcpy(p, o->base.a.authority, o->base.a.alen);
    p += o->base.a.alen;
  }
  memcpy(p, x->path, plen);
  p += plen;
  memcpy(p, " HTTP/1.1\r\n", 11);
  p += 11;
  if (!x->own_host) {
    memcpy(p, "Host: ", 6);
    p += 6;
    memcpy(p, o->base.a.authority, o->base.a.alen);
    p += o->base.a.alen;
    *p++ = '\r';
    *p++ = '\n';
  }
  if (palen) {
    memcpy(p, pauth, palen);
    p += palen;
  }
  if (x->hdrs_len) {
    memcpy(p, x->hdrs, x->hdrs_len);
    p += x->hdrs_len;
  }
  if (x->send_length) {
    memcpy(p, "Content-Length: ", 16);
    p += 16;
    p += pd_buf_fmt_long(p, (long)x->body_len);
    *p++ = '\r';
    *p++ = '\n';
  }
  *p++ = '\r';
  *p++ = '\n';
  pd_buf_commit(&c->out, (size_t)(p - w));
  llhttp_reset(&c->parser);
  uv_buf_t bufs[2] = {uv_buf_init(pd_buf_data(&c->out), (unsigned)c->out.len),
                      uv_buf_init(x->body, (unsigned)x->body_len)};
  int n = x->body_len > 0 ? 2 : 1;
  c->writing = 1;
  int rc;
  if (c->tls)
    /* One TLS record for a small request, not one for the head and one for the body: each
     * record costs its own encryption setup. */
    rc = (n == 1 || pd_buf_append(&c->out, x->body, x->body_len) == 0) &&
                 pd_tls_write(c->tls, pd_buf_data(&c->out), c->out.len) == 0
             ? tls_flush(c, 1)
             : UV_ENOMEM;
  else
    rc = uv_write(&c->write_req, (uv_stream_t *)c->tcp, bufs, (unsigned)n, on_written);
  if (rc < 0) {
    c->writing = 0;
    int stale = c->reused;
    origin_t *o = c->o;
    detach(x);
    conn_close_keep_slot(c);
    if (stale && !x->stale_retried) {
      x->stale_retried = 1;
      x->fresh_only = 1;
      acquire(x);
      serve_waiters(o);
      return;
    }
    serve_waiters(o);
    char msg[ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "Failed sending the request: %s", uv_strerror(rc));
    fail_soon(x, PD_XFER_ERECV, msg);
    return;
  }
  start_reading(c);
}

/* ---- the response --------------------------------------------------------------------------- */

static int count_head(conn_t *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes > MAX_HEAD_BYTES) {
    c->too_large = 1;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn_t *c = p->data;
  pd_xhead_reset(&c->x->head);
  pd_buf_reset(&c->hname);
  pd_buf_reset(&c->hvalue);
  c->head_bytes = 0;
  return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return count_head(p->data, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (count_head(c, n) < 0)
    return -1;
  return pd_buf_append(&c->hname, at, n) < 0 ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (count_head(c, n) < 0)
    return -1;
  return pd_buf_append(&c->hvalue, at, n) < 0 ? -1 : 0;
}

/* One header is complete (its value may be empty): record it. */
static int on_header_value_complete(llhttp_t *p) {
  conn_t *c = p->data;
  const char *v = c->hvalue.len ? pd_buf_data(&c->hvalue) : "";
  size_t vlen = c->hvalue.len;
  while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
    vlen--;
  while (vlen > 0 && (*v == ' ' || *v == '\t')) {
    v++;
    vlen--;
  }
  if (c->hname.len)
    pd_xhead_add(&c->x->head, pd_buf_data(&c->hname), c->hname.len, v, vlen);
  pd_buf_reset(&c->hname);
  pd_buf_reset(&c->hvalue);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = p->data;
  xfer_t *x = c->x;
  x->head.status = p->status_code;
  if (x->head.status < 200)
    return 0; /* informational: the real head follows */
  if (pd_xfer_retryable_status(x->head.status) &&
      may_retry(x, pd_xfer_status_delay(&x->head, x->attempt)))
    x->discard = 1;
  else
    deliver_head(x);
  if (x->cancelled)
    return -1;
  return x->is_head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  xfer_t *x = c->x;
  if (x->discard || n == 0)
    return 0;
  if (x->paused || x->held.len > 0)
    return pd_buf_append(&x->held, at, n) < 0 ? -1 : 0;
  x->in_cb++;
  int rc = x->cbs.on_data ? x->cbs.on_data(x->ud, at, n) : 0;
  x->in_cb--;
  if (x->cancelled)
    return -1;
  if (rc < 0) {
    c->aborted = 1;
    return -1;
  }
  if (rc > 0)
    x->paused = 1;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  if (c->x->head.status < 200)
    return 0;
  c->msg_done = 1;
  return HPE_PAUSED; /* finish outside the parser */
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* After the parser stopped: the transfer was cancelled or aborted, the response ended, or the
 * bytes were bad. Returns 1 when the connection is still the transfer's and reading may go on. */
static int after_parse(conn_t *c, llhttp_errno_t err, const char *end) {
  xfer_t *x = c->x;
  if (x->cancelled) {
    xfer_destroy(x); /* closes c */
    return 0;
  }
  if (c->aborted) {
    detach(x);
    conn_close(c);
    x->reader_abort = 1;
    finish(x, PD_XFER_EOTHER, "the transfer was aborted by its reader");
    return 0;
  }
  if (c->msg_done) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    /* Reused only when the response ended exactly with these bytes and the request is fully
     * written (an upstream may answer early, before reading a large body). */
    int keep = end && pos == end && !c->writing && llhttp_should_keep_alive(&c->parser);
    attempt_complete(x, keep);
    return 0;
  }
  if (err != HPE_OK) {
    char msg[ERRMSG_SIZE];
    if (c->too_large)
      snprintf(msg, sizeof msg, "the upstream's response head is over %d bytes", MAX_HEAD_BYTES);
    else
      snprintf(msg, sizeof msg, "the upstream sent an invalid HTTP response (%s)",
               llhttp_errno_name(err));
    detach(x);
    conn_close(c);
    attempt_failed(x, PD_XFER_ERECV, msg);
    return 0;
  }
  return 1;
}

/* Response bytes (plaintext) for the parser, or the end of the stream (nread < 0). Returns 1
 * when the connection is still the transfer's and reading may go on. */
static int conn_input(conn_t *c, ssize_t nread, const char *data) {
  xfer_t *x = c->x;
  if (!x) { /* idle: the server closed it, or sent bytes nobody asked for */
    conn_close(c);
    return 0;
  }
  if (nread < 0) {
    if (nread == UV_EOF && c->got_bytes) {
      /* A body delimited by the end of the connection ends here. */
      llhttp_finish(&c->parser);
      if (c->msg_done || x->cancelled || c->aborted) {
        after_parse(c, HPE_OK, NULL);
        return 0;
      }
    }
    conn_failed(c, (int)nread, "Failure receiving the response");
    return 0;
  }
  c->got_bytes = 1;
  x->rx_ms = uv_now(c->o->b->loop);
  llhttp_errno_t err = llhttp_execute(&c->parser, data, (size_t)nread);
  return after_parse(c, err, data + nread);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (nread == 0 || c->state == C_CLOSING)
    return;
  if (c->tls) {
    tls_on_read(c, nread, buf->base);
    return;
  }
  if (c->state == C_TUNNEL) {
    tunnel_on_read(c, nread, buf->base);
    return;
  }
  if (conn_input(c, nread, buf->base) && input_held(c->x))
    stop_reading(c);
}

/* ---- TLS on a connection ----------------------------------------------------------------- */

static void on_request_written(void *arg, int status) {
  write_done(arg, status);
}

/* Writes what libssl has for the network (request: the write ends the request's). A failed
 * handshake write shows as a failed read, or as the connect timeout. Returns 0 or a libuv
 * error. */
static int tls_flush(conn_t *c, int request) {
  return pd_tls_send(c->tls, (uv_stream_t *)c->tcp, request ? on_request_written : NULL, c);
}

/* The handshake failed, or the TLS stream broke: the cause is in msg. A handshake failure is
 * the upstream's configuration or ours, not a passing fault: it is not retried. */
static void tls_failed(conn_t *c, const char *msg) {
  xfer_t *x = c->x;
  int handshake = c->state == C_HANDSHAKE;
  if (!x) {
    conn_close(c);
    return;
  }
  detach(x);
  conn_close(c);
  attempt_failed(x, handshake ? PD_XFER_EOTHER : PD_XFER_ERECV, msg);
}

static void tls_start(conn_t *c) {
  c->state = C_HANDSHAKE;
  char msg[ERRMSG_SIZE];
  c->tls = pd_tls_new(c->o->base.tls);
  if (!c->tls) {
    tls_failed(c, "out of memory starting TLS");
    return;
  }
  start_reading(c);
  if (pd_tls_handshake(c->tls, msg, sizeof msg) < 0) {
    tls_failed(c, msg);
    return;
  }
  int rc = tls_flush(c, 0);
  if (rc < 0) {
    snprintf(msg, sizeof msg, "TLS handshake failed: %s", uv_strerror(rc));
    tls_failed(c, msg);
  }
}

static void tls_on_read(conn_t *c, ssize_t nread, const char *data) {
  char msg[ERRMSG_SIZE];
  if (nread < 0) {
    if (c->state != C_HANDSHAKE) {
      conn_input(c, nread, NULL);
      return;
    }
    snprintf(msg, sizeof msg, "TLS handshake failed: %s",
             nread == UV_EOF ? "the upstream closed the connection" : uv_strerror((int)nread));
    tls_failed(c, msg);
    return;
  }
  if (c->x)
    c->x->rx_ms = uv_now(c->o->b->loop);
  if (pd_tls_feed(c->tls, data, (size_t)nread) < 0) {
    tls_failed(c, "out of memory reading TLS records");
    return;
  }
  if (c->state == C_HANDSHAKE) {
    int r = pd_tls_handshake(c->tls, msg, sizeof msg);
    if (r < 0) {
      tls_failed(c, msg);
      return;
    }
    tls_flush(c, 0);
    if (r == 0)
      return;
    conn_opened(c);
    if (c->state != C_OPEN)
      return;
  }
  /* The ciphertext is in libssl's buffer now: the shared read buffer takes the plaintext. */
  char *buf = c->o->b->rbuf;
  for (;;) {
    ssize_t k = pd_tls_read(c->tls, buf, READ_BUF_SIZE, msg, sizeof msg);
    if (pd_tls_pending(c->tls))
      tls_flush(c, 0); /* a key update's answer */
    if (k == PD_TLS_AGAIN)
      break;
    if (k == PD_TLS_ERR) {
      tls_failed(c, msg);
      return;
    }
    if (!conn_input(c, k == PD_TLS_EOF ? UV_EOF : k, buf))
      return;
  }
  if (c->x && input_held(c->x))
    stop_reading(c);
}

/* ---- a CONNECT tunnel through a proxy ---------------------------------------------------- */

static void tunnel_failed(conn_t *c, const char *why) {
  char msg[2 * ERRMSG_SIZE]; /* cut to ERRMSG_SIZE where the transfer keeps it */
  snprintf(msg, sizeof msg, "CONNECT to %s through the proxy %s failed: %s", c->o->base.a.authority,
           c->o->base.dial->authority, why);
  xfer_t *x = c->x;
  if (!x) {
    conn_close(c);
    return;
  }
  detach(x);
  conn_close(c);
  attempt_failed(x, PD_XFER_ECONNECT, msg);
}

static void on_tunnel_written(void *arg, int status) {
  conn_t *c = arg;
  if (status < 0 && c->state == C_TUNNEL)
    tunnel_failed(c, uv_strerror(status));
}

/* Asks the proxy for a tunnel to the origin; TLS starts once it is open. Only the CONNECT line
 * and Host go to the proxy: the request's own headers (its api_key) only ever travel inside
 * the tunnel. */
static void tunnel_start(conn_t *c) {
  c->state = C_TUNNEL;
  start_reading(c);
  int rc = pd_proxy_send_connect((uv_stream_t *)c->tcp, c->o->base.a.authority, c->o->base.a.alen,
                                 c->o->base.proxy_auth, on_tunnel_written, c);
  if (rc < 0)
    tunnel_failed(c, uv_strerror(rc));
}

static void tunnel_on_read(conn_t *c, ssize_t nread, const char *data) {
  char msg[ERRMSG_SIZE];
  if (nread < 0) {
    tunnel_failed(c, nread == UV_EOF ? "the proxy closed the connection before answering"
                                     : uv_strerror((int)nread));
    return;
  }
  int r = pd_proxy_reply(&c->hname, data, (size_t)nread, msg, sizeof msg);
  if (r == 0)
    return;
  pd_buf_reset(&c->hname);
  if (r < 0) {
    tunnel_failed(c, msg);
    return;
  }
  if (c->o->base.tls)
    tls_start(c);
  else
    conn_opened(c);
}

/* ---- the public side ------------------------------------------------------------------------ */

int pd_h1up_adopt(pd_h1up_t *b, const pd_xfer_opts_t *op, uv_tcp_t *tcp, pd_tls_t *tls) {
  const char *auth, *path;
  int is_tls;
  long alen = pd_url_split(op->url, &auth, &path, &is_tls);
  if (b->closing || alen < 0 || !is_tls)
    return -1;
  char *tls_key = pd_tls_xfer_key(op);
  origin_t *o = tls_key ? origin_get(b, auth, (size_t)alen, tls_key, op) : NULL;
  free(tls_key);
  if (!o || o->base.bad[0] || (b->max_conns && o->nconns >= b->max_conns))
    return -1;
  conn_t *c = conn_new_on(o, tcp);
  if (!c)
    return -1;
  c->tls = tls;
  c->state = C_OPEN;
  start_reading(c);
  c->idle = 1;
  c->lnext = o->idle;
  o->idle = c;
  uv_timer_start(&c->timer, on_conn_timer, IDLE_MAX_MS, 0);
  return 0;
}

static const pd_xfer_ops_t H1_OPS = {pd_h1up_pause, pd_h1up_resume, pd_h1up_cancel,
                                     pd_h1up_elapsed};

pd_xfer_t *pd_h1up_start(pd_h1up_t *b, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                         void *ud) {
  const char *auth, *path;
  int tls;
  long alen = pd_url_split(o->url, &auth, &path, &tls);
  xfer_t *x = NULL;
  if (b->closing || alen < 0)
    goto fail;
  x = calloc(1, sizeof *x);
  if (!x)
    goto fail;
  pd_list_init(&x->wlink);
  x->base.ops = &H1_OPS;
  x->b = b;
  char *tls_key = tls ? pd_tls_xfer_key(o) : NULL;
  if (tls && !tls_key)
    goto fail;
  x->o = origin_get(b, auth, (size_t)alen, tls_key, o);
  free(tls_key);
  if (!x->o)
    goto fail;
  size_t plen = strcspn(path, "#");
  if (plen == 0 || path[0] == '?') {
    x->path = malloc(plen + 2);
    if (x->path) {
      x->path[0] = '/';
      memcpy(x->path + 1, path, plen);
      x->path[plen + 1] = '\0';
    }
  } else {
    x->path = strndup(path, plen);
  }
  x->method = strdup(o->method);
  if (!x->path || !x->method)
    goto fail;
  pd_buf_t h;
  pd_buf_init(&h);
  for (const char *const *line = o->headers; line && *line; line++) {
    /* Framing is this client's to write; a configured Host replaces the URL's. */
    size_t nlen = strcspn(*line, ":");
    if ((nlen == 14 && strncasecmp(*line, "content-length", 14) == 0) ||
        (nlen == 17 && strncasecmp(*line, "transfer-encoding", 17) == 0))
      continue;
    if (nlen == 4 && strncasecmp(*line, "host", 4) == 0)
      x->own_host = 1;
    if (pd_buf_appends(&h, *line) < 0 || pd_buf_append(&h, "\r\n", 2) < 0) {
      pd_buf_free(&h);
      goto fail;
    }
  }
  x->hdrs = h.len ? pd_buf_steal(&h, &x->hdrs_len) : NULL;
  pd_buf_free(&h);
  x->body = o->body;
  x->body_len = o->body_len;
  x->is_head = strcmp(o->method, "HEAD") == 0;
  x->send_length = o->body || strcmp(o->method, "POST") == 0 || strcmp(o->method, "PUT") == 0 ||
                   strcmp(o->method, "PATCH") == 0;
  x->connect_timeout_ms = o->connect_timeout_ms;
  x->timeout_ms = o->timeout_ms;
  x->stall_ms = o->stall_timeout_ms;
  x->retries = o->retries;
  x->cbs = *cbs;
  x->ud = ud;
  x->start_ns = uv_hrtime();
  x->start_ms = uv_now(b->loop);
  x->deadline = pd_xfer_deadline(x->start_ms, o->timeout_ms);
  pd_xhead_init(&x->head);
  pd_buf_init(&x->held);
  x->next = b->xfers;
  if (b->xfers)
    b->xfers->prev = x;
  b->xfers = x;
  new_attempt(x);
  acquire(x);
  return &x->base;
fail:
  if (x) {
    free(x->path);
    free(x->method);
    free(x->hdrs);
    free(x);
  }
  free(o->body);
  return NULL;
}

/* Delivers what was held during a pause, then finishes or reads on. */
static void pump(xfer_t *x) {
  while (!x->paused && x->held.len > 0) {
    size_t n;
    char *data = pd_buf_steal(&x->held, &n);
    x->in_cb++;
    int rc = x->cbs.on_data ? x->cbs.on_data(x->ud, data, n) : 0;
    x->in_cb--;
    free(data);
    if (x->cancelled) {
      xfer_destroy(x);
      return;
    }
    if (rc < 0) {
      x->reader_abort = 1;
      finish(x, PD_XFER_EOTHER, "the transfer was aborted by its reader");
      return;
    }
    if (rc > 0)
      x->paused = 1;
  }
  if (x->paused)
    return;
  if (x->complete_pending) {
    finish(x, PD_XFER_OK, "");
    return;
  }
  if (x->c && x->c->state == C_OPEN)
    start_reading(x->c);
}

void pd_h1up_pause(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->paused || x->cancelled)
    return;
  x->paused = 1;
  if (x->c && x->c->state == C_OPEN && x->in_cb == 0 && input_held(x))
    stop_reading(x->c);
}

void pd_h1up_resume(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (!x->paused || x->cancelled)
    return;
  x->paused = 0;
  if (x->c) { /* the stall clock starts again from now */
    x->rx_ms = uv_now(x->b->loop);
    arm_deadline(x->c);
  }
  if (x->in_cb)
    return; /* the parser loop that called back goes on delivering */
  pump(x);
}

void pd_h1up_cancel(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->cancelled)
    return;
  x->cancelled = 1;
  if (x->in_cb)
    return; /* whoever is calling back tears it down when the callback returns */
  stop_xfer_timer(x);
  xfer_destroy(x);
}

double pd_h1up_elapsed(const pd_xfer_t *bx) {
  const xfer_t *x = (const xfer_t *)bx;
  return (double)(uv_hrtime() - x->start_ns) / 1e9;
}

/* ---- the parser without a network, for the fuzz target ------------------------------------- */

typedef struct fuzz_sink {
  pd_h1up_parse_stats_t *st;
  unsigned calls;
} fuzz_sink_t;

static void fuzz_on_head(void *ud, const pd_xfer_head_t *h) {
  fuzz_sink_t *k = ud;
  (void)h;
  k->st->heads++;
}

static int fuzz_on_data(void *ud, const char *p, size_t n) {
  fuzz_sink_t *k = ud;
  (void)p;
  k->st->body_bytes += n;
  return (++k->calls % 3) == 0; /* pause now and then: later bytes are held */
}

void pd_h1up_parse_bytes(const char *data, size_t len, size_t chunk, int is_head, int retries,
                         pd_h1up_parse_stats_t *st) {
  static pd_h1up_t b; /* only its loop is read (uv_now, for the retry decision) */
  memset(st, 0, sizeof *st);
  b.loop = uv_default_loop();
  origin_t o = {.b = &b};
  xfer_t x = {.b = &b, .o = &o, .is_head = is_head, .retries = retries};
  pd_list_init(&x.wlink);
  pd_list_init(&o.base.waiters);
  conn_t c = {.o = &o, .x = &x};
  fuzz_sink_t sink = {.st = st};
  x.cbs.on_head = fuzz_on_head;
  x.cbs.on_data = fuzz_on_data;
  x.ud = &sink;
  x.c = &c;
  pd_xhead_init(&x.head);
  pd_buf_init(&x.held);
  pd_buf_init(&c.hname);
  pd_buf_init(&c.hvalue);
  llhttp_init(&c.parser, HTTP_RESPONSE, &parser_settings);
  c.parser.data = &c;
  if (chunk == 0)
    chunk = 1;
  size_t off = 0;
  int dead = 0;
  while (off < len && !dead) {
    size_t n = len - off < chunk ? len - off : chunk;
    const char *p = data + off, *end = data + off + n;
    while (p < end && !dead) {
      llhttp_errno_t err = llhttp_execute(&c.parser, p, (size_t)(end - p));
      if (c.head_bytes > st->max_head)
        st->max_head = c.head_bytes;
      if (c.msg_done) {
        /* As attempt_complete and conn_send would: the response is over, and on a kept-alive
         * connection the next bytes answer the next request. */
        const char *pos = llhttp_get_error_pos(&c.parser);
        st->responses++;
        st->body_bytes += x.held.len;
        pd_buf_reset(&x.held);
        x.head_done = 0;
        x.discard = 0;
        x.paused = 0;
        c.msg_done = 0;
        if (!llhttp_should_keep_alive(&c.parser) || !pos || pos < p || pos > end) {
          dead = 1;
          break;
        }
        llhttp_reset(&c.parser);
        p = pos;
        continue;
      }
      if (err != HPE_OK) {
        st->error = 1;
        dead = 1;
      }
      break;
    }
    off += n;
  }
  if (!dead && len > 0) {
    llhttp_finish(&c.parser); /* the connection ends: a close-delimited body ends here */
    if (c.msg_done)
      st->responses++;
  }
  st->body_bytes += x.held.len;
  pd_xhead_free(&x.head);
  pd_buf_free(&x.held);
  pd_buf_free(&c.hname);
  pd_buf_free(&c.hvalue);
}
