/* The native HTTP/2 client: for http:// upstreams configured with "http2: true", h2c with prior
 * knowledge (the connection preface and SETTINGS go out at once, no Upgrade); for https://
 * origins whose server chose h2 by ALPN (handed over by the HTTP/1.1 client), h2 over TLS
 * (tls.c); through a proxy, inside a CONNECT tunnel. libnghttp2 for the framing, libuv sockets
 * on the worker's loop. Many transfers share one connection as streams,
 * so thousands of concurrent upstream calls need only a few sockets.
 *
 * Shape: a transfer (xfer_t) is bound to one stream of one connection (conn_t) per attempt, or
 * waits in its origin's FIFO queue for a stream slot. A connection takes new streams while it
 * has fewer than the server's SETTINGS_MAX_CONCURRENT_STREAMS and has not seen GOAWAY; an origin
 * opens at most max_host_connections of them. Flow control is manual: bytes are consumed (and
 * WINDOW_UPDATE sent) only once the caller took them, so a paused transfer holds at most one
 * stream window in its held buffer and stalls only its own stream.
 *
 * A transfer cancelled while its stream is open stays allocated, with no callbacks, until
 * nghttp2 closes the stream (after the RST_STREAM it was given) or the connection goes: nghttp2
 * may still read its body or name it in a callback. The transfer's callbacks never run inside
 * pd_h2up_start/pause/cancel, nor inside nghttp2_session_mem_send: what ends there is reported
 * from the transfer's 0 ms timer. */
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/origin.h"
#include "upstream/upstream_int.h"

#define READ_BUF_SIZE (64 * 1024)
#define MAX_HEAD_BYTES (100 * 1024) /* one response header block */
#define IDLE_MAX_MS 60000           /* connections without streams longer than this are closed */
#define SETTINGS_WAIT_MAX_MS                                                                       \
  30000 /* the wait for the server's SETTINGS when connect_timeout_ms is 0 */
#define ERRMSG_SIZE 160
#define STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE we advertise */
#define CONN_WINDOW (1 << 30)      /* so that paused streams do not stall the others */
#define WRITE_CHUNK (256 * 1024)   /* frames gathered into one write at most (about) */
#define PROVISIONAL_STREAMS 100    /* per connection until the server's SETTINGS arrive */
#define MAX_FREE_REFUSALS 4        /* refused streams retried without counting an attempt */
#define MAX_EARLY_REFUSALS 16      /* the same, for streams sent before the server's SETTINGS */
#define LAST_STREAM_ID 0x7fffff00u /* past this a connection takes no new streams */

typedef struct xfer xfer_t;
typedef struct conn conn_t;
typedef struct origin origin_t;

struct pd_h2up {
  uv_loop_t *loop;
  pd_h1up_t *h1;            /* takes the calls to origins whose server chose HTTP/1.1 by ALPN */
  pd_proxy_env_t proxy_env; /* the proxy environment, read once */
  int max_conns;            /* per origin; 0 = no limit */
  int closing;
  int pending_closes;
  void (*on_closed)(void *);
  void *on_closed_ud;
  uv_timer_t close_timer; /* only so that on_closed always runs from the loop */
  nghttp2_session_callbacks *ngcbs;
  nghttp2_option *ngopt;
  origin_t *origins;
  conn_t *conns;            /* every connection not yet freed */
  xfer_t *xfers;            /* every live (not cancelled) transfer */
  char rbuf[READ_BUF_SIZE]; /* shared by all reads: nghttp2 consumes it before on_read returns */
};

/* One http://host:port: its addresses, connections and waiting transfers. */
struct origin {
  pd_h2up_t *b;
  pd_origin_t base;     /* the key, the dialled address, TLS, the proxy */
  int h1;               /* its server chose HTTP/1.1 by ALPN: calls go to the HTTP/1.1 client */
  conn_t *resolve_wait; /* connections waiting for the addresses */
  conn_t *live;         /* connections not closing, newest first */
  int nconns;           /* the length of live */
  uint32_t peer_max;    /* the server's last SETTINGS_MAX_CONCURRENT_STREAMS; 0 = not known */
  int serving, serve_again;
  origin_t *next;
};

enum { C_RESOLVING, C_CONNECTING, C_TUNNEL, C_HANDSHAKE, C_OPEN, C_CLOSING };

struct conn {
  uv_tcp_t *tcp; /* its own allocation: a connection can change hands (pd_h1up_adopt) */
  uv_connect_t connect_req;
  uv_write_t write_req;
  uv_timer_t timer; /* connect deadline until the server's SETTINGS, then idle expiry */
  nghttp2_session *ng;
  pd_tls_t *tls;   /* https://: the connection's TLS state, from the TCP connect on */
  pd_buf_t tunnel; /* through a proxy: its reply to CONNECT, as it arrives */
  origin_t *o;
  int state;
  int addr_idx;
  int connect_err; /* a synchronous connect failure, reported from the timer */
  int ready;       /* the server's SETTINGS arrived */
  int goaway;      /* takes no new streams */
  uint32_t goaway_code;
  int served; /* a stream has ended on it */
  int writing;
  int in_recv, in_send; /* inside nghttp2_session_mem_recv / mem_send */
  int pending;          /* handles still to close */
  long connect_timeout_ms;
  uint64_t connect_start;
  int nstreams;
  xfer_t *streams; /* bound transfers, cancelled ones included until their stream closes */
  pd_buf_t wbuf;   /* frames being written */
  conn_t *lnext;   /* resolve-wait list */
  conn_t *oprev, *onext;
  conn_t *prev, *next;
};

enum { T_NONE, T_DEADLINE, T_RETRY, T_FAIL, T_ENDED };

struct xfer {
  pd_xfer_t base; /* first: the front casts */
  pd_h2up_t *b;
  origin_t *o;
  conn_t *c;        /* while bound to a stream */
  pd_xfer_t *inner; /* handed to the HTTP/1.1 client: this transfer only forwards to it */
  int32_t stream_id;
  xfer_t *sprev, *snext;
  char *method, *path, *authority; /* authority: a configured Host, else NULL */
  char *hdrs;                      /* "name\0value\0" pairs, names lower-case */
  size_t hdrs_len;
  int nhdrs;
  char *body;
  size_t body_len, body_off;
  int send_length;
  long connect_timeout_ms, timeout_ms;
  long stall_ms; /* stall_timeout_ms; 0 = none */
  int retries, attempt, refusals, early_refusals;
  pd_xfer_cbs_t cbs;
  void *ud;
  int in_cb;
  int cancelled;
  int destroyed; /* no callbacks ever again; freed once the timer and stream let go */
  int timer_closed;
  int head_done;
  int got_response; /* a header block of this attempt began */
  int final_head;   /* this attempt's final (non-1xx) head is complete */
  int discard;      /* a retryable status: the stream was reset, retry when it closes */
  int ended;        /* END_STREAM seen */
  int paused;
  int complete_pending; /* the response ended while held data waits for a resume */
  int too_large;
  int on_reused; /* bound to a connection that had served streams already */
  int early;     /* sent before the connection had the server's SETTINGS */
  int stale_retried;
  int reader_abort; /* on_data asked to stop: the caller's decision, not an upstream failure */
  uint32_t end_code;
  size_t head_bytes;
  pd_xhead_t head;
  pd_buf_t held; /* body that arrived while paused; unconsumed while the stream is open */
  uv_timer_t timer;
  int timer_mode;
  int fail_result;
  char fail_msg[ERRMSG_SIZE];
  uint64_t start_ns;
  uint64_t start_ms; /* loop ms: the call began */
  uint64_t deadline; /* loop ms: timeout_ms from start_ms, retries included; 0 = none */
  /* Loop ms the stall clock runs from while on a stream: the stream's last frame received, else
   * the moment it was submitted or the caller resumed it. Only written as frames arrive (no
   * timer call per frame): the T_DEADLINE timer checks it when it fires and re-arms itself. */
  uint64_t rx_ms;
  pd_list_t wlink; /* in its origin's waiter queue */
  xfer_t *prev, *next;
};

static void conn_fail(conn_t *c, int result, const char *msg);
static void conn_flush(conn_t *c);
static void conn_start_connect(conn_t *c);
static void acquire(xfer_t *x);
static void xfer_destroy(xfer_t *x);
static void serve_waiters(origin_t *o);
static void stream_ended(xfer_t *x, uint32_t code);
static void finish(xfer_t *x, int result, const char *msg);
static int setup_callbacks(pd_h2up_t *b);
static void hand_over(xfer_t *x);

/* ---- the backend ----------------------------------------------------------------------------- */

pd_h2up_t *pd_h2up_new(uv_loop_t *loop, int max_host_connections, pd_h1up_t *h1) {
  pd_h2up_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->loop = loop;
  b->h1 = h1;
  b->max_conns = max_host_connections > 0 ? max_host_connections : 0;
  if (setup_callbacks(b) < 0)
    goto fail;
  if (nghttp2_option_new(&b->ngopt) != 0)
    goto fail;
  nghttp2_option_set_no_auto_window_update(b->ngopt, 1);
  if (uv_timer_init(loop, &b->close_timer) < 0)
    goto fail;
  b->close_timer.data = b;
  pd_proxy_env_load(&b->proxy_env);
  return b;
fail:
  nghttp2_option_del(b->ngopt);
  if (b->ngcbs)
    nghttp2_session_callbacks_del(b->ngcbs);
  free(b);
  return NULL;
}

static void part_closed(pd_h2up_t *b) {
  if (b->closing && --b->pending_closes == 0 && b->on_closed)
    b->on_closed(b->on_closed_ud);
}

static void on_close_timer_closed(uv_handle_t *h) {
  part_closed(h->data);
}

void pd_h2up_close(pd_h2up_t *b, void (*on_closed)(void *ud), void *ud) {
  b->closing = 1;
  b->on_closed = on_closed;
  b->on_closed_ud = ud;
  b->pending_closes = 1; /* the close timer */
  while (b->xfers) {
    xfer_t *x = b->xfers;
    x->in_cb = 0;
    xfer_destroy(x);
  }
  /* Every connection not yet freed reports once, closing already or not. */
  for (conn_t *c = b->conns; c; c = c->next) {
    b->pending_closes++;
    conn_fail(c, PD_XFER_EOTHER, "closing");
  }
  for (origin_t *o = b->origins; o; o = o->next)
    if (o->base.resolving) {
      b->pending_closes++;
      uv_cancel((uv_req_t *)&o->base.gai);
    }
  uv_close((uv_handle_t *)&b->close_timer, on_close_timer_closed);
}

void pd_h2up_free(pd_h2up_t *b) {
  if (!b)
    return;
  while (b->origins) {
    origin_t *o = b->origins;
    b->origins = o->next;
    pd_origin_free(&o->base);
    free(o);
  }
  pd_proxy_env_free(&b->proxy_env);
  nghttp2_option_del(b->ngopt);
  nghttp2_session_callbacks_del(b->ngcbs);
  free(b);
}

/* ---- origins and addresses ------------------------------------------------------------------ */

/* tls_key: NULL for http://, else the TLS settings as pd_tls_xfer_key wrote them. */
static origin_t *origin_get(pd_h2up_t *b, const char *auth, size_t alen, const char *tls_key,
                            const pd_xfer_opts_t *op) {
  const char *proxy = pd_origin_proxy_for(&b->proxy_env, op, tls_key != NULL, auth, alen);
  for (origin_t *o = b->origins; o; o = o->next)
    if (pd_origin_is(&o->base, auth, alen, tls_key, proxy))
      return o;
  origin_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  /* Over TLS ALPN offers h2 and HTTP/1.1: a server that chooses HTTP/1.1 has its origin's
   * calls handed to the HTTP/1.1 client. */
  if (pd_origin_init(&o->base, auth, alen, tls_key, proxy, op, 1) < 0) {
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
  pd_h2up_t *b = o->b;
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

static void resolve_unlink(conn_t *c) {
  conn_t **pp = &c->o->resolve_wait;
  while (*pp && *pp != c)
    pp = &(*pp)->lnext;
  if (*pp)
    *pp = c->lnext;
  c->lnext = NULL;
}

/* ---- transfers: timers and endings ---------------------------------------------------------- */

static void xfer_on_timer(uv_timer_t *t);

static void arm_xfer_timer(xfer_t *x, int mode, uint64_t ms) {
  x->timer_mode = mode;
  uv_timer_start(&x->timer, xfer_on_timer, ms, 0);
}

static void stop_xfer_timer(xfer_t *x) {
  if (x->timer_mode != T_NONE)
    uv_timer_stop(&x->timer);
  x->timer_mode = T_NONE;
}

/* The stall clock runs: on a stream, a stall bound set, and the caller has not paused the
 * transfer (time ponder itself holds the response is not the upstream's silence). */
static int stall_armed(const xfer_t *x) {
  return x->c && x->stall_ms > 0 && !x->paused;
}

/* Arms T_DEADLINE for the nearer of the call's deadline and the stall bound, unless the timer
 * is busy with something else (a retry, an ending, a failure to report). */
static void arm_deadline(xfer_t *x) {
  if (x->timer_mode != T_NONE && x->timer_mode != T_DEADLINE)
    return;
  uint64_t due = x->deadline;
  if (stall_armed(x)) {
    uint64_t sdue = x->rx_ms + (uint64_t)x->stall_ms;
    if (!due || sdue < due)
      due = sdue;
  }
  if (due) {
    uint64_t now = uv_now(x->b->loop);
    arm_xfer_timer(x, T_DEADLINE, due > now ? due - now : 0);
  } else {
    stop_xfer_timer(x);
  }
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

static void new_attempt(xfer_t *x) {
  x->got_response = 0;
  x->final_head = 0;
  x->discard = 0;
  x->ended = 0;
  x->complete_pending = 0; /* paused stays: it is the caller's */
  x->too_large = 0;
  x->on_reused = 0;
  x->head_bytes = 0;
  x->body_off = 0;
  pd_buf_reset(&x->held);
  pd_xhead_reset(&x->head);
  if (x->deadline) {
    uint64_t now = uv_now(x->b->loop);
    arm_xfer_timer(x, T_DEADLINE, x->deadline > now ? x->deadline - now : 0);
  } else {
    stop_xfer_timer(x);
  }
}

/* Whether a retry after delay_ms is allowed: retries remain and it starts before the deadline. */
static int may_retry(const xfer_t *x, long delay_ms) {
  return x->attempt < x->retries && pd_xfer_retry_fits(x->deadline, uv_now(x->b->loop), delay_ms);
}

/* The call's deadline passed, or comes before the next attempt could start. */
static void fail_timed_out(xfer_t *x) {
  char msg[ERRMSG_SIZE];
  snprintf(msg, sizeof msg, "Operation timed out after %lu milliseconds (%d attempts)",
           (unsigned long)(uv_now(x->b->loop) - x->start_ms), x->attempt + 1);
  fail_soon(x, PD_XFER_ETIMEOUT, msg);
}

static void maybe_free(xfer_t *x) {
  if (x->destroyed && x->timer_closed && !x->c) {
    free(x->body);
    free(x);
  }
}

static void on_xfer_timer_closed(uv_handle_t *h) {
  xfer_t *x = h->data;
  x->timer_closed = 1;
  maybe_free(x);
}

static void queue_unlink(xfer_t *x) {
  pd_list_remove(&x->wlink);
}

/* Takes a transfer off its stream (which is closed, never sent, or going with its connection).
 * Bytes it holds are released at the connection level: no more can come for the stream. */
static void stream_release(xfer_t *x) {
  conn_t *c = x->c;
  if (!c)
    return;
  if (x->sprev)
    x->sprev->snext = x->snext;
  else
    c->streams = x->snext;
  if (x->snext)
    x->snext->sprev = x->sprev;
  x->sprev = x->snext = NULL;
  c->nstreams--;
  if (c->state != C_CLOSING && c->ng && !x->destroyed && x->held.len > 0)
    nghttp2_session_consume_connection(c->ng, x->held.len);
  x->c = NULL;
  x->stream_id = 0;
  /* Idle: closed after IDLE_MAX_MS, or at once (from the timer: this may run inside nghttp2)
   * when it takes no new streams. */
  if (c->state == C_OPEN && c->ready && c->nstreams == 0)
    uv_timer_start(&c->timer, on_conn_timer, c->goaway ? 0 : IDLE_MAX_MS, 0);
}

/* Cancels for good: no callback runs after this. The memory goes once the timer has closed and
 * nghttp2 has let go of the stream. */
static void xfer_destroy(xfer_t *x) {
  if (x->destroyed)
    return;
  pd_h2up_t *b = x->b;
  x->destroyed = 1;
  x->cancelled = 1;
  if (x->inner) { /* no callback after this: the HTTP/1.1 client promises the same */
    x->inner->ops->cancel(x->inner);
    x->inner = NULL;
  }
  queue_unlink(x);
  if (x->prev)
    x->prev->next = x->next;
  else if (b->xfers == x)
    b->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  x->prev = x->next = NULL;
  stop_xfer_timer(x);
  uv_close((uv_handle_t *)&x->timer, on_xfer_timer_closed);
  conn_t *c = x->c;
  if (c && c->ng) {
    if (x->held.len > 0)
      nghttp2_session_consume(c->ng, x->stream_id, x->held.len);
    nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, x->stream_id, NGHTTP2_CANCEL);
  }
  pd_xhead_free(&x->head);
  pd_buf_free(&x->held);
  free(x->method);
  free(x->path);
  free(x->authority);
  free(x->hdrs);
  x->method = x->path = x->authority = x->hdrs = NULL;
  if (c)
    conn_flush(c); /* the RST_STREAM */
}

/* Schedules the next attempt: immediately (free), or after a delay counting an attempt; when
 * the call's deadline comes first, the call times out instead. */
static void retry(xfer_t *x, int counted, long delay) {
  if (!pd_xfer_retry_fits(x->deadline, uv_now(x->b->loop), delay)) {
    fail_timed_out(x);
    return;
  }
  if (counted)
    x->attempt++;
  arm_xfer_timer(x, T_RETRY, (uint64_t)(delay > 0 ? delay : 0));
}

/* The stream was refused unprocessed (RST_STREAM REFUSED_STREAM, above a GOAWAY's last stream,
 * or never sent): try again on another or a new connection. */
static void refused(xfer_t *x) {
  if (x->early && x->early_refusals < MAX_EARLY_REFUSALS) {
    /* Sent optimistically before the server's limit was known: no fault of the server's. */
    x->early_refusals++;
    retry(x, 0, 0);
  } else if (x->refusals < MAX_FREE_REFUSALS) {
    x->refusals++;
    retry(x, 0, 0);
  } else if (may_retry(x, pd_xfer_connect_delay(x->attempt))) {
    pd_xfer_log_retry(&x->base, x->attempt, "stream refused", pd_xfer_connect_delay(x->attempt));
    retry(x, 1, pd_xfer_connect_delay(x->attempt));
  } else {
    finish(x, PD_XFER_ERECV, "the upstream refused the stream");
  }
}

/* The transfer's stream closed (x is released from it). */
static void stream_ended(xfer_t *x, uint32_t code) {
  if (x->discard) {
    long delay = pd_xfer_status_delay(&x->head, x->attempt);
    char why[32];
    snprintf(why, sizeof why, "status %d", x->head.status);
    pd_xfer_log_retry(&x->base, x->attempt, why, delay);
    retry(x, 1, delay);
    return;
  }
  /* RST_STREAM NO_ERROR after the final head is the server's "stop sending the request" (RFC
   * 9113 section 8.1, a server that answered before reading the whole request): the response
   * stands, even when it came before the END_STREAM that should have ended it (node's). */
  if (x->ended || (code == NGHTTP2_NO_ERROR && x->final_head)) {
    stop_xfer_timer(x); /* complete: no deadline while held data waits */
    if (x->paused && x->held.len > 0) {
      x->complete_pending = 1;
      return;
    }
    finish(x, PD_XFER_OK, "");
    return;
  }
  /* Only a refused stream is known not to have been processed: any other reset may come after
   * the server did the work, so the call is not sent again (as over HTTP/1.1). */
  if (code == NGHTTP2_REFUSED_STREAM && !x->got_response) {
    refused(x);
    return;
  }
  char msg[ERRMSG_SIZE];
  if (x->too_large)
    snprintf(msg, sizeof msg, "the upstream's response head is over %d bytes", MAX_HEAD_BYTES);
  else if (code == NGHTTP2_PROTOCOL_ERROR)
    snprintf(msg, sizeof msg, "the upstream sent an invalid HTTP/2 response");
  else
    snprintf(msg, sizeof msg, "the upstream reset the stream (%s)", nghttp2_http2_strerror(code));
  finish(x, PD_XFER_ERECV, msg);
}

/* The connection x was on failed or ended (x is released from it already). Nothing calls back
 * from here: the outcome comes from x's timer. */
static void conn_lost(xfer_t *x, int result, const char *msg) {
  if (x->discard) { /* a retryable status was being discarded: retry as planned */
    retry(x, 1, pd_xfer_status_delay(&x->head, x->attempt));
    return;
  }
  if (x->head_done) {
    fail_soon(x, PD_XFER_ERECV, msg);
    return;
  }
  if (result == PD_XFER_ECONNECT) {
    long delay = pd_xfer_connect_delay(x->attempt);
    if (may_retry(x, delay)) {
      pd_xfer_log_retry(&x->base, x->attempt, msg, delay);
      retry(x, 1, delay);
    } else
      fail_soon(x, PD_XFER_ECONNECT, msg);
    return;
  }
  if (result == PD_XFER_ETIMEOUT || result == PD_XFER_EOTHER) {
    fail_soon(x, result, msg);
    return;
  }
  if (!x->got_response && x->on_reused && !x->stale_retried) {
    /* The server dropped a connection it had served on as this stream went out: once more on a
     * new connection, as the HTTP/1.1 client does for a dropped keep-alive connection. */
    x->stale_retried = 1;
    retry(x, 0, 0);
  } else {
    /* The server may have processed the request: not sent again (as over HTTP/1.1). */
    fail_soon(x, PD_XFER_ERECV, msg);
  }
}

static void xfer_on_timer(uv_timer_t *t) {
  xfer_t *x = t->data;
  int mode = x->timer_mode;
  x->timer_mode = T_NONE;
  if (x->cancelled)
    return;
  char msg[ERRMSG_SIZE];
  switch (mode) {
  case T_RETRY:
    new_attempt(x);
    acquire(x);
    break;
  case T_DEADLINE:
    if (!x->deadline || uv_now(x->b->loop) < x->deadline) {
      if (!stall_armed(x) || uv_now(x->b->loop) < x->rx_ms + (uint64_t)x->stall_ms) {
        arm_deadline(x); /* frames came since it was armed, or the caller paused: not yet */
        break;
      }
      /* Same outcome as a timeout: not retried (the upstream may be working on the request). */
      pd_xfer_stall_msg(msg, sizeof msg, x->stall_ms);
      finish(x, PD_XFER_ETIMEOUT, msg);
      break;
    }
    if (pd_list_linked(&x->wlink)) {
      queue_unlink(x);
      snprintf(msg, sizeof msg,
               "Operation timed out after %lu milliseconds waiting for a connection",
               (unsigned long)(uv_now(x->b->loop) - x->start_ms));
    } else {
      snprintf(msg, sizeof msg, "Operation timed out after %lu milliseconds",
               (unsigned long)(uv_now(x->b->loop) - x->start_ms));
    }
    finish(x, PD_XFER_ETIMEOUT, msg);
    break;
  case T_FAIL:
    finish(x, x->fail_result, x->fail_msg);
    break;
  case T_ENDED:
    stream_ended(x, x->end_code);
    break;
  default:
    break;
  }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_handle_closed(conn_t *c) {
  if (--c->pending > 0)
    return;
  pd_h2up_t *b = c->o->b;
  if (c->prev)
    c->prev->next = c->next;
  else
    b->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  pd_buf_free(&c->wbuf);
  pd_buf_free(&c->tunnel);
  pd_tls_free(c->tls);
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

static void live_unlink(conn_t *c) {
  origin_t *o = c->o;
  if (c->oprev)
    c->oprev->onext = c->onext;
  else
    o->live = c->onext;
  if (c->onext)
    c->onext->oprev = c->oprev;
  c->oprev = c->onext = NULL;
  o->nconns--;
}

/* Closes the connection. Its streams' transfers are retried or fail (from their timers). */
static void conn_fail(conn_t *c, int result, const char *msg) {
  if (c->state == C_CLOSING)
    return;
  origin_t *o = c->o;
  if (c->state == C_RESOLVING)
    resolve_unlink(c);
  c->state = C_CLOSING;
  live_unlink(c);
  while (c->streams) {
    xfer_t *x = c->streams;
    stream_release(x);
    if (x->destroyed)
      maybe_free(x);
    else
      conn_lost(x, result, msg);
  }
  nghttp2_session_del(c->ng);
  c->ng = NULL;
  c->pending = c->tcp ? 2 : 1; /* no tcp: the HTTP/1.1 client adopted it */
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  if (c->tcp)
    uv_close((uv_handle_t *)c->tcp, on_tcp_closed);
  serve_waiters(o);
}

static conn_t *conn_new(origin_t *o, long connect_timeout_ms) {
  pd_h2up_t *b = o->b;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  if (nghttp2_session_client_new2(&c->ng, b->ngcbs, c, b->ngopt) != 0) {
    free(c);
    return NULL;
  }
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW}};
  if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
      nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0 ||
      !(c->tcp = malloc(sizeof *c->tcp)) || uv_tcp_init(b->loop, c->tcp) < 0) {
    free(c->tcp);
    nghttp2_session_del(c->ng);
    free(c);
    return NULL;
  }
  uv_timer_init(b->loop, &c->timer);
  c->tcp->data = c;
  c->connect_req.data = c;
  c->write_req.data = c;
  c->timer.data = c;
  c->o = o;
  pd_buf_init(&c->wbuf);
  pd_buf_init(&c->tunnel);
  c->next = b->conns;
  if (b->conns)
    b->conns->prev = c;
  b->conns = c;
  c->onext = o->live;
  if (o->live)
    o->live->oprev = c;
  o->live = c;
  o->nconns++;
  c->state = C_RESOLVING;
  c->connect_start = uv_now(b->loop);
  /* Without a connect timeout the wait for the server's SETTINGS is still bounded: a server
   * that accepts and never speaks HTTP/2 must not hold a connection slot for good. */
  c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : SETTINGS_WAIT_MAX_MS;
  uv_timer_start(&c->timer, on_conn_timer, (uint64_t)c->connect_timeout_ms, 0);
  return c;
}

static void on_connected(uv_connect_t *req, int status);

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

static void stream_submit(conn_t *c, xfer_t *x);

static void connect_failed(conn_t *c, int status) {
  origin_t *o = c->o;
  int idx = c->addr_idx;
  int resolving = c->state == C_RESOLVING;
  if (!resolving && idx + 1 < o->base.dial->naddrs && c->streams) {
    /* The next address, on a new connection (a new session) taking over the streams. */
    conn_t *c2 = conn_new(o, c->connect_timeout_ms);
    if (c2) {
      c2->connect_start = c->connect_start;
      while (c->streams) {
        xfer_t *x = c->streams;
        stream_release(x);
        if (x->destroyed) {
          maybe_free(x);
          continue;
        }
        x->body_off = 0;
        stream_submit(c2, x);
      }
      do_connect(c2, idx + 1);
    }
  }
  char msg[ERRMSG_SIZE];
  if (resolving)
    snprintf(msg, sizeof msg, "Could not resolve %s: %s (%s)", o->base.proxy ? "proxy" : "host",
             o->base.dial->host, uv_strerror(status));
  else
    snprintf(msg, sizeof msg, "Failed to connect to %s%s port %s: %s",
             o->base.proxy ? "proxy " : "", o->base.dial->host, o->base.dial->port,
             uv_strerror(status));
  conn_fail(c, PD_XFER_ECONNECT, msg);
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
  if (!c->ready) {
    char msg[ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "Connection timed out after %lu milliseconds",
             (unsigned long)(uv_now(c->o->b->loop) - c->connect_start));
    conn_fail(c, PD_XFER_ETIMEOUT, msg);
    return;
  }
  if (c->nstreams == 0) /* idle too long */
    conn_fail(c, PD_XFER_ERECV, "idle");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn_t *c = h->data;
  buf->base = c->o->b->rbuf;
  buf->len = READ_BUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_start(conn_t *c);
static void tls_on_read(conn_t *c, ssize_t nread, const char *data);
static void tunnel_start(conn_t *c);
static void tunnel_open(conn_t *c);
static void tunnel_on_read(conn_t *c, ssize_t nread, const char *data);

static void on_connected(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (c->state == C_CLOSING)
    return;
  if (status < 0) {
    connect_failed(c, status);
    return;
  }
  c->state = c->o->base.dial != &c->o->base.a ? C_TUNNEL : c->o->base.tls ? C_HANDSHAKE : C_OPEN;
  uv_tcp_nodelay(c->tcp, 1);
  uv_tcp_keepalive(c->tcp, 1, 60);
  if (uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read) < 0) {
    conn_fail(c, PD_XFER_ECONNECT, "could not read from the upstream connection");
    return;
  }
  if (c->state == C_TUNNEL)
    tunnel_start(c);
  else
    tunnel_open(c);
}

/* ---- a CONNECT tunnel through a proxy (for h2c too: HTTP/2 frames cannot be proxied as
 * requests) ---------------------------------------------------------------------------------- */

/* The TCP connection reaches the origin now: TLS, else HTTP/2 right away. */
static void tunnel_open(conn_t *c) {
  if (c->o->base.tls) {
    c->state = C_HANDSHAKE;
    tls_start(c);
  } else {
    c->state = C_OPEN;
    conn_flush(c);
  }
}

static void tunnel_failed(conn_t *c, const char *why) {
  char msg[2 * ERRMSG_SIZE]; /* cut to ERRMSG_SIZE where the transfer keeps it */
  snprintf(msg, sizeof msg, "CONNECT to %s through the proxy %s failed: %s", c->o->base.a.authority,
           c->o->base.dial->authority, why);
  conn_fail(c, PD_XFER_ECONNECT, msg);
}

static void on_tunnel_written(void *arg, int status) {
  conn_t *c = arg;
  if (status < 0 && c->state == C_TUNNEL)
    tunnel_failed(c, uv_strerror(status));
}

/* Only the CONNECT line and Host go to the proxy: the streams' headers travel in the tunnel. */
static void tunnel_start(conn_t *c) {
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
  int r = pd_proxy_reply(&c->tunnel, data, (size_t)nread, msg, sizeof msg);
  if (r == 0)
    return;
  pd_buf_free(&c->tunnel);
  if (r < 0)
    tunnel_failed(c, msg);
  else
    tunnel_open(c);
}

/* Why a connection nghttp2 is done with ended. */
static void session_end_msg(conn_t *c, char *msg, size_t n) {
  if (c->goaway && c->goaway_code != NGHTTP2_NO_ERROR)
    snprintf(msg, n, "the upstream ended the HTTP/2 session (%s)",
             nghttp2_http2_strerror(c->goaway_code));
  else if (c->goaway)
    snprintf(msg, n, "the upstream ended the HTTP/2 session");
  else
    snprintf(msg, n, "the HTTP/2 session with the upstream failed");
}

static void on_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  c->writing = 0;
  pd_buf_reset(&c->wbuf);
  if (c->wbuf.cap > 4 * WRITE_CHUNK)
    pd_buf_free(&c->wbuf);
  if (c->state == C_CLOSING)
    return;
  if (status < 0) {
    char msg[ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "Failed sending to the upstream: %s", uv_strerror(status));
    conn_fail(c, PD_XFER_ERECV, msg);
    return;
  }
  conn_flush(c);
  serve_waiters(c->o);
}

static void on_tls_written(void *arg, int status) {
  on_written(&((conn_t *)arg)->write_req, status);
}

/* Writes what nghttp2 has to send: one write at a time, up to about WRITE_CHUNK; the rest
 * waits in nghttp2 until that write is done. Closes the connection once nghttp2 wants
 * neither to read nor to write. Does nothing inside nghttp2's own calls. */
static void conn_flush(conn_t *c) {
  if (c->state != C_OPEN || c->in_recv || c->in_send || c->writing)
    return;
  int err = 0;
  c->in_send++;
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->ng, &data);
    if (n < 0) {
      err = (int)n;
      break;
    }
    if (n == 0)
      break;
    if (pd_buf_append(&c->wbuf, data, (size_t)n) < 0) {
      err = NGHTTP2_ERR_NOMEM;
      break;
    }
    if (c->wbuf.len >= WRITE_CHUNK)
      break;
  }
  c->in_send--;
  char msg[ERRMSG_SIZE];
  if (err) {
    snprintf(msg, sizeof msg, "HTTP/2 session failure: %s", nghttp2_strerror(err));
    conn_fail(c, PD_XFER_ERECV, msg);
    return;
  }
  if (c->wbuf.len > 0) {
    uv_buf_t ub = uv_buf_init(pd_buf_data(&c->wbuf), (unsigned)c->wbuf.len);
    c->writing = 1;
    int rc;
    if (c->tls) {
      /* The frames are copied into libssl's records: wbuf is free again right away. */
      rc = pd_tls_write(c->tls, ub.base, ub.len) < 0
               ? UV_ENOMEM
               : pd_tls_send(c->tls, (uv_stream_t *)c->tcp, on_tls_written, c);
    } else {
      rc = uv_write(&c->write_req, (uv_stream_t *)c->tcp, &ub, 1, on_written);
    }
    if (rc < 0) {
      c->writing = 0;
      snprintf(msg, sizeof msg, "Failed sending to the upstream: %s", uv_strerror(rc));
      conn_fail(c, PD_XFER_ERECV, msg);
    }
    return;
  }
  if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
    session_end_msg(c, msg, sizeof msg);
    conn_fail(c, PD_XFER_ERECV, msg);
  }
}

/* Bytes from the upstream (plaintext), or the end of the stream (nread < 0), for nghttp2.
 * Returns 0 when the connection is closing now. */
static int conn_input(conn_t *c, ssize_t nread, const char *data) {
  char msg[ERRMSG_SIZE];
  if (nread < 0) {
    if (nread == UV_EOF && c->goaway)
      session_end_msg(c, msg, sizeof msg);
    else if (nread == UV_EOF)
      snprintf(msg, sizeof msg, "the upstream closed the connection");
    else
      snprintf(msg, sizeof msg, "Failure receiving from the upstream: %s", uv_strerror((int)nread));
    conn_fail(c, PD_XFER_ERECV, msg);
    return 0;
  }
  c->in_recv++;
  ssize_t rv = nghttp2_session_mem_recv(c->ng, (const uint8_t *)data, (size_t)nread);
  c->in_recv--;
  if (c->state == C_CLOSING)
    return 0;
  if (rv < 0) {
    snprintf(msg, sizeof msg, "the upstream broke the HTTP/2 protocol (%s)",
             nghttp2_strerror((int)rv));
    conn_fail(c, PD_XFER_ERECV, msg);
    return 0;
  }
  return 1;
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
  if (!conn_input(c, nread, buf->base))
    return;
  conn_flush(c);
  serve_waiters(c->o);
}

/* ---- TLS on a connection ----------------------------------------------------------------- */

/* The server chose HTTP/1.1 by ALPN: the HTTP/1.1 client adopts the connection (its TLS session
 * as it is), and this connection's calls and every later one to the origin go there. */
static void to_h1(conn_t *c) {
  origin_t *o = c->o;
  o->h1 = 1;
  char *url = malloc(o->base.a.alen + 10);
  if (url) {
    sprintf(url, "https://%.*s/", (int)o->base.a.alen, o->base.a.authority);
    pd_xfer_opts_t op = o->base.tls_opts;
    op.url = url;
    op.http2 = 0;
    op.proxy = o->base.proxy;
    uv_read_stop((uv_stream_t *)c->tcp);
    if (pd_h1up_adopt(o->b->h1, &op, c->tcp, c->tls) == 0)
      c->tcp = NULL, c->tls = NULL;
    free(url);
  }
  while (c->streams) {
    xfer_t *x = c->streams;
    stream_release(x);
    if (x->destroyed)
      maybe_free(x);
    else
      hand_over(x);
  }
  conn_fail(c, PD_XFER_EOTHER, "the upstream chose HTTP/1.1"); /* its waiters are handed over */
}

/* The handshake failed (not retried: a configuration fault, ours or the upstream's), or the TLS
 * stream broke. */
static void tls_failed(conn_t *c, const char *msg) {
  conn_fail(c, c->state == C_HANDSHAKE ? PD_XFER_EOTHER : PD_XFER_ERECV, msg);
}

static void tls_start(conn_t *c) {
  char msg[ERRMSG_SIZE];
  c->tls = pd_tls_new(c->o->base.tls);
  if (!c->tls) {
    tls_failed(c, "out of memory starting TLS");
    return;
  }
  int rc = pd_tls_handshake(c->tls, msg, sizeof msg);
  if (rc < 0) {
    tls_failed(c, msg);
    return;
  }
  rc = pd_tls_send(c->tls, (uv_stream_t *)c->tcp, NULL, NULL);
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
    pd_tls_send(c->tls, (uv_stream_t *)c->tcp, NULL, NULL);
    if (r == 0)
      return;
    if (pd_tls_alpn_h2(c->tls) != 2) {
      to_h1(c);
      return;
    }
    c->state = C_OPEN;
  }
  /* The ciphertext is in libssl's buffer now: the shared read buffer takes the plaintext. */
  char *buf = c->o->b->rbuf;
  for (;;) {
    ssize_t k = pd_tls_read(c->tls, buf, READ_BUF_SIZE, msg, sizeof msg);
    if (k == PD_TLS_AGAIN)
      break;
    if (k == PD_TLS_ERR) {
      tls_failed(c, msg);
      return;
    }
    if (!conn_input(c, k == PD_TLS_EOF ? UV_EOF : k, buf))
      return;
  }
  if (pd_tls_pending(c->tls))
    pd_tls_send(c->tls, (uv_stream_t *)c->tcp, NULL, NULL); /* a key update's answer */
  conn_flush(c);
  serve_waiters(c->o);
}

/* ---- streams -------------------------------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud) {
  (void)s;
  (void)id;
  (void)ud;
  xfer_t *x = src->ptr;
  size_t n = x->body_len - x->body_off;
  if (n > length)
    n = length;
  if (n)
    memcpy(buf, x->body + x->body_off, n);
  x->body_off += n;
  if (x->body_off >= x->body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static nghttp2_nv make_nv(const char *name, size_t nlen, const char *value, size_t vlen) {
  nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
  return nv;
}

/* Sends x's request as a new stream of c. */
static void stream_submit(conn_t *c, xfer_t *x) {
  size_t nnv = 4 + (size_t)x->nhdrs + 1;
  nghttp2_nv stack[32], *nv = stack;
  if (nnv > sizeof stack / sizeof stack[0]) {
    nv = malloc(nnv * sizeof *nv);
    if (!nv) {
      fail_soon(x, PD_XFER_EOTHER, "out of memory building the upstream request");
      return;
    }
  }
  size_t n = 0;
  nv[n++] = make_nv(":method", 7, x->method, strlen(x->method));
  if (c->tls)
    nv[n++] = make_nv(":scheme", 7, "https", 5);
  else
    nv[n++] = make_nv(":scheme", 7, "http", 4);
  if (x->authority)
    nv[n++] = make_nv(":authority", 10, x->authority, strlen(x->authority));
  else
    nv[n++] = make_nv(":authority", 10, c->o->base.a.authority, c->o->base.a.alen);
  nv[n++] = make_nv(":path", 5, x->path, strlen(x->path));
  const char *p = x->hdrs;
  for (int i = 0; i < x->nhdrs; i++) {
    size_t nl = strlen(p);
    const char *v = p + nl + 1;
    size_t vl = strlen(v);
    nv[n++] = make_nv(p, nl, v, vl);
    p = v + vl + 1;
  }
  char clen[24];
  if (x->send_length)
    nv[n++] = make_nv("content-length", 14, clen, pd_buf_fmt_long(clen, (long)x->body_len));
  nghttp2_data_provider prd;
  prd.source.ptr = x;
  prd.read_callback = read_body;
  x->body_off = 0;
  int32_t id = nghttp2_submit_request(c->ng, NULL, nv, n, x->body_len > 0 ? &prd : NULL, x);
  if (nv != stack)
    free(nv);
  if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
    c->goaway = 1; /* out of stream ids: another connection */
    acquire(x);
    return;
  }
  if (id < 0) {
    fail_soon(x, PD_XFER_EOTHER, "could not start an upstream stream");
    return;
  }
  if ((uint32_t)id >= LAST_STREAM_ID)
    c->goaway = 1;
  x->c = c;
  x->stream_id = id;
  x->on_reused = c->served;
  x->early = !c->ready;
  x->sprev = NULL;
  x->snext = c->streams;
  if (c->streams)
    c->streams->sprev = x;
  c->streams = x;
  c->nstreams++;
  x->rx_ms = uv_now(c->o->b->loop); /* the attempt starts: its stall clock with it */
  arm_deadline(x);
  if (c->ready)
    uv_timer_stop(&c->timer); /* no idle expiry while it has streams */
  conn_flush(c);
}

static uint32_t conn_max_streams(conn_t *c) {
  uint32_t m = nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  if (!c->ready) {
    /* nghttp2 assumes 100 until the SETTINGS come; what the origin said last is a better
     * guess (a server allowing fewer refuses the rest). */
    m = c->o->peer_max && c->o->peer_max < PROVISIONAL_STREAMS ? c->o->peer_max
                                                               : PROVISIONAL_STREAMS;
  }
  return m;
}

/* Puts x on a stream: a connection with room, or a new one. Returns 0 when x must wait: every
 * connection is full and either one has yet to learn the server's limit or the origin has no
 * connection to spare. */
static int place(xfer_t *x) {
  origin_t *o = x->o;
  pd_h2up_t *b = x->b;
  int unready = 0;
  for (conn_t *c = o->live; c; c = c->onext) {
    if (c->goaway)
      continue;
    if ((uint32_t)c->nstreams < conn_max_streams(c)) {
      stream_submit(c, x);
      return 1;
    }
    if (!c->ready)
      unready = 1;
  }
  if (unready || (b->max_conns && o->nconns >= b->max_conns))
    return 0;
  conn_t *c = conn_new(o, x->connect_timeout_ms);
  if (!c) {
    fail_soon(x, PD_XFER_EOTHER, "out of memory opening an upstream connection");
    return 1;
  }
  conn_start_connect(c);
  stream_submit(c, x);
  return 1;
}

static void enqueue(xfer_t *x, int front) {
  pd_origin_wait(&x->o->base, &x->wlink, front);
}

/* Gets the transfer a stream, or a place in the queue (first come, first served). */
static void acquire(xfer_t *x) {
  if (x->b->closing) {
    fail_soon(x, PD_XFER_EOTHER, "the upstream client is closing");
    return;
  }
  if (x->o->base.bad[0]) {
    fail_soon(x, PD_XFER_EOTHER, x->o->base.bad);
    return;
  }
  if (x->o->h1) {
    hand_over(x);
    return;
  }
  if (!pd_origin_next_waiter(&x->o->base) && place(x))
    return;
  enqueue(x, 0);
}

static void serve_waiters(origin_t *o) {
  if (o->b->closing)
    return;
  if (o->serving) {
    o->serve_again = 1;
    return;
  }
  o->serving = 1;
  do {
    o->serve_again = 0;
    pd_list_t *l;
    while ((l = pd_origin_next_waiter(&o->base))) {
      xfer_t *x = pd_list_entry(l, xfer_t, wlink);
      queue_unlink(x);
      if (!place(x)) {
        enqueue(x, 1);
        break;
      }
    }
  } while (o->serve_again);
  o->serving = 0;
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------------- */

/* The live transfer of a stream, or NULL (cancelled, or not ours any more). */
static xfer_t *stream_xfer(nghttp2_session *ng, conn_t *c, int32_t id) {
  xfer_t *x = nghttp2_session_get_stream_user_data(ng, id);
  if (!x || x->c != c || x->stream_id != id || x->destroyed)
    return NULL;
  x->rx_ms = uv_now(x->b->loop); /* a frame of this stream: the upstream is not silent */
  return x;
}

static int is_head_block(const nghttp2_frame *f, const xfer_t *x) {
  return f->hd.type == NGHTTP2_HEADERS &&
         (f->headers.cat == NGHTTP2_HCAT_RESPONSE ||
          (f->headers.cat == NGHTTP2_HCAT_HEADERS && !x->final_head));
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
  xfer_t *x = stream_xfer(ng, ud, f->hd.stream_id);
  if (x && is_head_block(f, x)) {
    pd_xhead_reset(&x->head);
    x->head_bytes = 0;
    x->got_response = 1;
  }
  return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
  (void)flags;
  xfer_t *x = stream_xfer(ng, ud, f->hd.stream_id);
  if (!x || !is_head_block(f, x))
    return 0; /* trailers, or nobody's */
  x->head_bytes += nlen + vlen + 32;
  if (x->head_bytes > MAX_HEAD_BYTES) {
    x->too_large = 1;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
  }
  if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
    int st = 0;
    for (size_t i = 0; i < vlen && i < 3; i++)
      st = st * 10 + (value[i] - '0');
    x->head.status = st;
  } else if (nlen > 0 && name[0] != ':') {
    pd_xhead_add(&x->head, (const char *)name, nlen, (const char *)value, vlen);
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
  conn_t *c = ud;
  switch (f->hd.type) {
  case NGHTTP2_SETTINGS:
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
      c->o->peer_max =
          nghttp2_session_get_remote_settings(ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !c->ready) {
      c->ready = 1;
      if (c->nstreams == 0)
        uv_timer_start(&c->timer, on_conn_timer, IDLE_MAX_MS, 0);
      else
        uv_timer_stop(&c->timer); /* connected: the connect timeout is over */
    }
    break;
  case NGHTTP2_GOAWAY:
    c->goaway = 1;
    c->goaway_code = f->goaway.error_code;
    break;
  case NGHTTP2_HEADERS: {
    xfer_t *x = stream_xfer(ng, c, f->hd.stream_id);
    if (!x)
      break;
    if (is_head_block(f, x)) {
      if (x->head.status < 200)
        break; /* informational: the real head follows */
      x->final_head = 1;
      if (pd_xfer_retryable_status(x->head.status) &&
          may_retry(x, pd_xfer_status_delay(&x->head, x->attempt))) {
        x->discard = 1;
        if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
          nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
      } else {
        deliver_head(x);
        if (x->cancelled) {
          xfer_destroy(x);
          break;
        }
      }
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
      x->ended = 1;
    break;
  }
  case NGHTTP2_DATA: {
    xfer_t *x = stream_xfer(ng, c, f->hd.stream_id);
    if (x && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
      x->ended = 1;
    break;
  }
  default:
    break;
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud) {
  (void)flags;
  xfer_t *x = stream_xfer(ng, ud, id);
  if (!x || x->discard || !x->final_head) {
    nghttp2_session_consume(ng, id, len);
    return 0;
  }
  if (len == 0)
    return 0;
  if (x->paused || x->held.len > 0) {
    /* Not consumed: the stream's window bounds what can pile up here. */
    if (pd_buf_append(&x->held, data, len) < 0) {
      nghttp2_session_consume(ng, id, len);
      finish(x, PD_XFER_EOTHER, "out of memory holding the upstream response");
    }
    return 0;
  }
  x->in_cb++;
  int rc = x->cbs.on_data ? x->cbs.on_data(x->ud, (const char *)data, len) : 0;
  x->in_cb--;
  nghttp2_session_consume(ng, id, len);
  if (x->cancelled) {
    xfer_destroy(x);
    return 0;
  }
  if (rc < 0) {
    x->reader_abort = 1;
    finish(x, PD_XFER_EOTHER, "the transfer was aborted by its reader");
    return 0;
  }
  if (rc > 0)
    x->paused = 1;
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud) {
  conn_t *c = ud;
  xfer_t *x = nghttp2_session_get_stream_user_data(ng, id);
  if (!x || x->c != c || x->stream_id != id)
    return 0;
  stream_release(x);
  if (x->ended && !x->discard)
    c->served = 1;
  if (x->destroyed) {
    maybe_free(x);
    return 0;
  }
  if (c->in_send) {
    /* Inside mem_send, perhaps inside one of the caller's own calls: report from the loop. */
    x->end_code = code;
    arm_xfer_timer(x, T_ENDED, 0);
    return 0;
  }
  stream_ended(x, code);
  return 0;
}

/* A request that never went out (GOAWAY came first, or it was cancelled while queued in
 * nghttp2): its stream may never open, so no stream-close callback is certain to follow. */
static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud) {
  (void)err;
  conn_t *c = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  xfer_t *x = c->streams;
  while (x && x->stream_id != f->hd.stream_id)
    x = x->snext;
  if (!x)
    return 0;
  nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, NULL);
  stream_release(x);
  if (x->destroyed) {
    maybe_free(x);
    return 0;
  }
  x->end_code = NGHTTP2_REFUSED_STREAM;
  arm_xfer_timer(x, T_ENDED, 0);
  return 0;
}

static int setup_callbacks(pd_h2up_t *b) {
  if (nghttp2_session_callbacks_new(&b->ngcbs) != 0)
    return -1;
  nghttp2_session_callbacks *cb = b->ngcbs;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
  return 0;
}

/* ---- the public side ------------------------------------------------------------------------ */

/* Hop-by-hop and framing headers HTTP/2 forbids or this client writes itself. */
static int dropped_header(const char *name, size_t n) {
  static const char *const drop[] = {"connection",
                                     "keep-alive",
                                     "proxy-connection",
                                     "transfer-encoding",
                                     "upgrade",
                                     "host",
                                     "te",
                                     "content-length",
                                     NULL};
  for (int i = 0; drop[i]; i++)
    if (strlen(drop[i]) == n && strncasecmp(drop[i], name, n) == 0)
      return 1;
  return 0;
}

/* "Name: value" lines to lower-case "name\0value\0" pairs; a Host line becomes :authority. */
static int parse_headers(xfer_t *x, const char *const *lines) {
  pd_buf_t h;
  pd_buf_init(&h);
  for (const char *const *line = lines; line && *line; line++) {
    const char *l = *line;
    size_t nlen = strcspn(l, ":");
    if (nlen == 0 || l[nlen] != ':')
      continue;
    const char *v = l + nlen + 1;
    while (*v == ' ' || *v == '\t')
      v++;
    size_t vlen = strlen(v);
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t' || v[vlen - 1] == '\r' ||
                        v[vlen - 1] == '\n'))
      vlen--;
    if (nlen == 4 && strncasecmp(l, "host", 4) == 0) {
      free(x->authority);
      x->authority = strndup(v, vlen);
      if (!x->authority)
        goto fail;
      continue;
    }
    if (dropped_header(l, nlen))
      continue;
    char *w = pd_buf_reserve(&h, nlen + vlen + 2);
    if (!w)
      goto fail;
    for (size_t i = 0; i < nlen; i++)
      w[i] = (char)((l[i] >= 'A' && l[i] <= 'Z') ? l[i] + 32 : l[i]);
    w[nlen] = '\0';
    memcpy(w + nlen + 1, v, vlen);
    w[nlen + 1 + vlen] = '\0';
    pd_buf_commit(&h, nlen + vlen + 2);
    x->nhdrs++;
  }
  x->hdrs = h.len ? pd_buf_steal(&h, &x->hdrs_len) : NULL;
  pd_buf_free(&h);
  return 0;
fail:
  pd_buf_free(&h);
  return -1;
}

/* ---- calls handed over to the HTTP/1.1 client ----------------------------------------------- */

/* The server of an https:// origin chose HTTP/1.1 by ALPN while calls waited for it: each runs
 * on the HTTP/1.1 client now, this transfer staying the caller's handle and forwarding; it goes
 * after the inner call's on_done. The callbacks are counted (in_cb) so that a cancel inside them
 * is safe. Later calls to the origin go to the HTTP/1.1 client from pd_h2up_start. */
static void fwd_head(void *ud, const pd_xfer_head_t *h) {
  xfer_t *x = ud;
  if (!x->cbs.on_head)
    return;
  x->in_cb++;
  x->cbs.on_head(x->ud, h);
  x->in_cb--;
  if (x->cancelled)
    xfer_destroy(x);
}

static int fwd_data(void *ud, const char *p, size_t n) {
  xfer_t *x = ud;
  if (!x->cbs.on_data)
    return 0;
  x->in_cb++;
  int rc = x->cbs.on_data(x->ud, p, n);
  x->in_cb--;
  if (x->cancelled) {
    xfer_destroy(x);
    return -1;
  }
  return rc;
}

static void fwd_done(void *ud, int result, const char *msg) {
  xfer_t *x = ud;
  x->inner = NULL; /* the HTTP/1.1 client frees it after this returns */
  x->in_cb++;
  if (x->cbs.on_done)
    x->cbs.on_done(x->ud, result, msg);
  x->in_cb--;
  xfer_destroy(x);
}

static void hand_over(xfer_t *x) {
  stop_xfer_timer(x);
  origin_t *o = x->o;
  /* The request again as the HTTP/1.1 client takes it: a URL and "name: value" lines. */
  size_t n = (size_t)x->nhdrs + (x->authority != NULL), len = x->hdrs_len + 3 * n + 8;
  len += o->base.a.alen + strlen(x->path) + (x->authority ? strlen(x->authority) + 6 : 0);
  char **lines = calloc(n + 1, sizeof *lines), *text = malloc(len), *w = text;
  if (!lines || !text) {
    free(lines);
    free(text);
    fail_soon(x, PD_XFER_EOTHER, "out of memory handing the call to the HTTP/1.1 client");
    return;
  }
  char *url = w;
  w += sprintf(w, "https://%.*s%s", (int)o->base.a.alen, o->base.a.authority, x->path) + 1;
  size_t k = 0;
  if (x->authority) {
    lines[k++] = w;
    w += sprintf(w, "host: %s", x->authority) + 1;
  }
  const char *p = x->hdrs;
  for (int i = 0; i < x->nhdrs; i++) {
    const char *v = p + strlen(p) + 1;
    lines[k++] = w;
    w += sprintf(w, "%s: %s", p, v) + 1;
    p = v + strlen(v) + 1;
  }
  pd_xfer_opts_t op = o->base.tls_opts;
  op.method = x->method;
  op.url = url;
  op.headers = (const char *const *)lines;
  op.body = x->body;
  op.body_len = x->body_len;
  op.connect_timeout_ms = x->connect_timeout_ms;
  uint64_t spent = uv_now(x->b->loop) - x->start_ms;
  op.timeout_ms = !x->timeout_ms                    ? 0
                  : (uint64_t)x->timeout_ms > spent ? x->timeout_ms - (long)spent
                                                    : 1;
  op.stall_timeout_ms = x->stall_ms;
  op.retries = x->retries > x->attempt ? x->retries - x->attempt : 0;
  op.http2 = 0;
  op.proxy = o->base.proxy;
  x->body = NULL; /* the HTTP/1.1 client's now, freed even when its start fails */
  pd_xfer_cbs_t cbs = {fwd_head, fwd_data, fwd_done};
  x->inner = pd_h1up_start(x->b->h1, &op, &cbs, x);
  free(lines);
  free(text);
  if (!x->inner) {
    fail_soon(x, PD_XFER_EOTHER, "could not hand the call to the HTTP/1.1 client");
    return;
  }
  memcpy(x->inner->reqid, x->base.reqid, sizeof x->base.reqid);
  memcpy(x->inner->target, x->base.target, sizeof x->base.target);
}

/* ---- the public side ------------------------------------------------------------------------ */

static const pd_xfer_ops_t H2_OPS = {pd_h2up_pause, pd_h2up_resume, pd_h2up_cancel,
                                     pd_h2up_elapsed};

pd_xfer_t *pd_h2up_start(pd_h2up_t *b, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
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
  x->base.ops = &H2_OPS;
  x->b = b;
  char *tls_key = tls ? pd_tls_xfer_key(o) : NULL;
  if (tls && !tls_key)
    goto fail;
  x->o = origin_get(b, auth, (size_t)alen, tls_key, o);
  free(tls_key);
  if (!x->o)
    goto fail;
  if (x->o->h1) { /* its server speaks HTTP/1.1: the call is the HTTP/1.1 client's */
    free(x);
    pd_xfer_opts_t op = *o;
    op.http2 = 0;
    return pd_h1up_start(b->h1, &op, cbs, ud);
  }
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
  if (!x->path || !x->method || parse_headers(x, o->headers) < 0)
    goto fail;
  x->body = o->body;
  x->body_len = o->body ? o->body_len : 0;
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
  uv_timer_init(b->loop, &x->timer);
  x->timer.data = x;
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
    free(x->authority);
    free(x->hdrs);
    free(x);
  }
  free(o->body);
  return NULL;
}

/* Delivers what was held during a pause (consuming it, so the server may send more), then
 * finishes if the response had ended meanwhile. */
static void pump(xfer_t *x) {
  conn_t *c = x->c;
  while (!x->paused && x->held.len > 0) {
    size_t n;
    char *data = pd_buf_steal(&x->held, &n);
    x->in_cb++;
    int rc = x->cbs.on_data ? x->cbs.on_data(x->ud, data, n) : 0;
    x->in_cb--;
    free(data);
    if (x->c && x->c->ng)
      nghttp2_session_consume(x->c->ng, x->stream_id, n);
    if (x->cancelled) {
      xfer_destroy(x);
      goto out;
    }
    if (rc < 0) {
      x->reader_abort = 1;
      finish(x, PD_XFER_EOTHER, "the transfer was aborted by its reader");
      goto out;
    }
    if (rc > 0)
      x->paused = 1;
  }
  if (!x->paused && x->complete_pending)
    finish(x, PD_XFER_OK, "");
out:
  if (c)
    conn_flush(c); /* the WINDOW_UPDATE */
}

void pd_h2up_pause(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->inner) {
    x->inner->ops->pause(x->inner);
    return;
  }
  if (x->cancelled)
    return;
  x->paused = 1;
}

void pd_h2up_resume(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->inner) {
    x->inner->ops->resume(x->inner);
    return;
  }
  if (!x->paused || x->cancelled)
    return;
  x->paused = 0;
  if (x->c) { /* the stall clock starts again from now */
    x->rx_ms = uv_now(x->b->loop);
    arm_deadline(x);
  }
  if (x->in_cb)
    return; /* whoever is calling back goes on delivering */
  pump(x);
}

void pd_h2up_cancel(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->cancelled)
    return;
  x->cancelled = 1;
  if (x->in_cb)
    return; /* whoever is calling back tears it down when the callback returns */
  xfer_destroy(x);
}

double pd_h2up_elapsed(const pd_xfer_t *bx) {
  const xfer_t *x = (const xfer_t *)bx;
  return (double)(uv_hrtime() - x->start_ns) / 1e9;
}
