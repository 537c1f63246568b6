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
 * pd_h1up_start/pause/cancel; failures found there are reported from a 0 ms timer.
 *
 * This file owns the backend, its origins and connections (connect, TLS, the CONNECT tunnel) and
 * the public side; a transfer's attempts and endings are h1_xfer.c's, the request and response
 * bytes h1_wire.c's (h1_int.h between them). */
#include "upstream/h1_int.h"

static const pd_conn_ops_t CONN_OPS;

/* ---- the backend ----------------------------------------------------------------------------- */

pd_h1up_t *pd_h1up_new(uv_loop_t *loop, int max_host_connections) {
  pd_h1up_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->loop = loop;
  if (pd_origin_owner_init(&b->own, loop, max_host_connections) < 0) {
    free(b);
    return NULL;
  }
  return b;
}

static void cancel_now(xfer_t *x) {
  x->xb.cancelled = 1;
  x->xb.in_cb = 0;
  pd_xfer_base_stop(&x->xb);
  pd_h1_xfer_destroy(x);
}

void pd_h1up_close(pd_h1up_t *b, void (*on_closed)(void *ud), void *ud) {
  pd_origin_owner_close(&b->own, on_closed, ud);
  pd_list_t *xl;
  while ((xl = pd_list_first(&b->own.xfers)))
    cancel_now(pd_list_entry(xl, xfer_t, xb.blink));
  /* Every connection not yet freed reports once, closing already or not. */
  pd_list_t *l, *t;
  pd_list_each(l, t, &b->own.conns) {
    conn_t *c = pd_list_entry(l, conn_t, cn.blink);
    b->own.pending_closes++;
    pd_h1up_conn_close(c);
  }
  pd_origin_owner_close_rest(&b->own);
}

void pd_h1up_free(pd_h1up_t *b) {
  if (!b)
    return;
  pd_origin_owner_free(&b->own, offsetof(origin_t, base));
  free(b);
}

/* ---- origins and addresses ------------------------------------------------------------------ */

/* The origin of a call to op->url (https:// only when tls_only), NULL when there is none (see
 * pd_origin_of_call). Over TLS ALPN offers only HTTP/1.1: calls that may speak h2 start on the
 * HTTP/2 client, which hands an origin whose server chose HTTP/1.1 to this one. */
static origin_t *origin_for(pd_h1up_t *b, const pd_xfer_opts_t *op, int tls_only,
                            const char **path) {
  pd_origin_t *base =
      pd_origin_of_call(&b->own, sizeof(origin_t), offsetof(origin_t, base), op, 0, tls_only, path);
  origin_t *o = base ? pd_h1_origin_of(base) : NULL;
  if (o)
    o->b = b;
  return o;
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_freed(pd_conn_t *cn) {
  conn_t *c = (conn_t *)cn;
  pd_buf_free(&c->hname);
  pd_buf_free(&c->hvalue);
  pd_buf_free(&c->out);
  free(c->orphan);
}

/* Takes c off a list linked through lnext (its origin's idle list). */
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

/* Closes a connection its transfer has already left (c->x == NULL), without giving its slot to
 * a waiting transfer: for a caller that will use the slot itself. */
void pd_h1up_conn_close_keep_slot(conn_t *c) {
  if (c->cn.state == PD_CONN_CLOSING)
    return;
  origin_t *o = c->o;
  idle_unlink(c);
  pd_origin_conn_leave(&c->cn.k);
  c->cn.state = PD_CONN_CLOSING;
  c->x = NULL;
  o->base.nconns--;
  pd_conn_close_handles(&c->cn);
}

/* Closes a connection its transfer has already left, and lets a waiting transfer have its slot. */
void pd_h1up_conn_close(conn_t *c) {
  origin_t *o = c->o;
  int was_open = c->cn.state != PD_CONN_CLOSING;
  pd_h1up_conn_close_keep_slot(c);
  if (was_open && !o->b->own.closing)
    pd_h1_xfer_serve_waiters(o);
}

/* A new connection of o on tcp (a socket already connected, to adopt), or on a new socket
 * when tcp is NULL. */
static conn_t *conn_new_on(origin_t *o, uv_tcp_t *tcp) {
  pd_h1up_t *b = o->b;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  if (pd_conn_init(&c->cn, &CONN_OPS, &o->base, b->loop, tcp, pd_h1_xfer_on_conn_timer, b->rbuf) <
      0) {
    free(c);
    return NULL;
  }
  c->o = o;
  llhttp_init(&c->parser, HTTP_RESPONSE, &pd_h1_wire_settings);
  c->parser.data = c;
  pd_buf_init(&c->hname);
  pd_buf_init(&c->hvalue);
  pd_buf_init(&c->out);
  return c;
}

conn_t *pd_h1up_conn_new(origin_t *o) {
  return conn_new_on(o, NULL);
}

void pd_h1up_detach(xfer_t *x) {
  conn_t *c = x->c;
  if (!c)
    return;
  uv_timer_stop(&c->cn.timer);
  c->x = NULL;
  x->c = NULL;
}

/* The caller's pause holds this transfer's input: it is paused and the bytes coming are body it
 * would deliver (its head is delivered). Until then a paused transfer reads on: a head, and a
 * retryable status's body that is discarded (else the retry would wait for the resume). */
int pd_h1up_input_held(const xfer_t *x) {
  return x->xb.paused && x->xb.head_done && !x->xb.discard;
}

/* The stall clock runs: a stall bound is set and the caller's pause does not hold the input
 * (time ponder itself holds the response is not the upstream's silence). */
int pd_h1up_stall_armed(const xfer_t *x) {
  return x->xb.stall_ms > 0 && !pd_h1up_input_held(x);
}

/* Arms the connection's timer for the transfer's next deadline: connect, stall or total. */
void pd_h1up_arm_deadline(conn_t *c) {
  xfer_t *x = c->x;
  uint64_t now = uv_now(c->o->b->loop);
  uint64_t due = x->xb.deadline;
  if (c->cn.state != PD_CONN_OPEN && x->xb.connect_timeout_ms > 0) {
    uint64_t cdue = c->cn.k.start + (uint64_t)x->xb.connect_timeout_ms;
    if (!due || cdue < due)
      due = cdue;
  }
  if (pd_h1up_stall_armed(x)) {
    uint64_t sdue = x->xb.rx_ms + (uint64_t)x->xb.stall_ms;
    if (!due || sdue < due)
      due = sdue;
  }
  if (due)
    uv_timer_start(&c->cn.timer, pd_h1_xfer_on_conn_timer, due > now ? due - now : 0, 0);
  else
    uv_timer_stop(&c->cn.timer);
}

void pd_h1up_bind_conn(conn_t *c, xfer_t *x) {
  c->x = x;
  x->c = c;
  pd_origin_conn_take(&c->cn.k);
  c->msg_done = 0;
  c->got_bytes = 0;
  c->aborted = 0;
  c->too_large = 0;
  x->xb.rx_ms = uv_now(c->o->b->loop); /* the attempt starts: its stall clock with it */
  pd_h1up_arm_deadline(c);
}

void pd_h1up_conn_start_connect(conn_t *c) {
  pd_conn_start_connect(&c->cn, c->o->b->loop);
}

/* Puts a connection whose response ended cleanly back in its origin's idle list, or closes it
 * when it may take no further call (max_requests, max_age_ms). */
void pd_h1up_conn_release(conn_t *c) {
  origin_t *o = c->o;
  c->x = NULL;
  if (!pd_origin_conn_usable(&o->base, &c->cn.k, o->b->loop)) {
    pd_h1up_conn_close(c);
    return;
  }
  c->reused = 1;
  c->idle = 1;
  c->lnext = o->idle;
  o->idle = c;
  uv_timer_start(&c->cn.timer, pd_h1_xfer_on_conn_timer, IDLE_MAX_MS, 0);
  pd_h1_xfer_serve_waiters(o);
}

void pd_h1up_connect_failed(conn_t *c, int status) {
  xfer_t *x = c->x;
  origin_t *o = c->o;
  int idx = c->cn.k.idx;
  int resolving = c->cn.k.resolving;
  uint64_t started = c->cn.k.start;
  if (!x) {
    pd_h1up_conn_close(c);
    return;
  }
  pd_h1up_detach(x);
  pd_h1up_conn_close_keep_slot(c);
  if (pd_origin_conn_has_next(&o->base, resolving, idx)) {
    conn_t *c2 = pd_h1up_conn_new(o); /* takes the slot c had */
    if (c2) {
      c2->cn.k.start = started;
      pd_h1up_bind_conn(c2, x);
      pd_origin_conn_to(&o->base, &c2->cn.k, idx + 1);
      return;
    }
  }
  pd_h1_xfer_serve_waiters(o);
  char msg[ERRMSG_SIZE];
  pd_origin_conn_msg(&o->base, resolving, status, msg, sizeof msg);
  pd_h1_xfer_attempt_failed(x, PD_XFER_ECONNECT, msg);
}

void pd_h1up_start_reading(conn_t *c) {
  if (c->reading)
    return;
  if (uv_read_start((uv_stream_t *)c->cn.tcp, pd_conn_on_alloc, pd_conn_on_read) == 0)
    c->reading = 1;
}

void pd_h1up_stop_reading(conn_t *c) {
  if (!c->reading)
    return;
  uv_read_stop((uv_stream_t *)c->cn.tcp);
  c->reading = 0;
}

static void on_connect_failed(pd_conn_t *cn, int status) {
  pd_h1up_connect_failed((conn_t *)cn, status);
}

/* The connection is ready for requests (connected, and its TLS handshake done). */
static void conn_opened(pd_conn_t *cn) {
  conn_t *c = (conn_t *)cn;
  c->cn.state = PD_CONN_OPEN;
  pd_h1up_start_reading(c);
  if (!c->x) { /* its transfer went away while connecting: keep the connection */
    pd_h1up_conn_release(c);
    return;
  }
  pd_h1up_arm_deadline(c);
  pd_h1_wire_conn_send(c);
}

/* Plain HTTP goes to a proxy as requests in absolute form: only https:// tunnels. */
static void on_connected(pd_conn_t *cn) {
  pd_h1up_start_reading((conn_t *)cn);
  if (cn->origin->dial != &cn->origin->a && cn->origin->tls)
    pd_conn_tunnel_start(cn);
  else
    pd_conn_reached(cn);
}

/* The tunnel or TLS failed: a handshake failure is the upstream's configuration or ours, not a
 * passing fault (result says so: it is not retried). */
static void conn_fail(pd_conn_t *cn, int result, const char *msg) {
  conn_t *c = (conn_t *)cn;
  xfer_t *x = c->x;
  if (!x) {
    pd_h1up_conn_close(c);
    return;
  }
  pd_h1up_detach(x);
  pd_h1up_conn_close(c);
  pd_h1_xfer_attempt_failed(x, result, msg);
}

static int tls_done(pd_conn_t *cn) {
  conn_opened(cn);
  return cn->state == PD_CONN_OPEN;
}

/* ---- TLS on a connection ----------------------------------------------------------------- */

static void on_request_written(void *arg, int status) {
  pd_h1_wire_write_done(arg, status);
}

/* Writes what libssl has for the network (request: the write ends the request's). A failed
 * handshake write shows as a failed read, or as the connect timeout. Returns 0 or a libuv
 * error. */
int pd_h1up_tls_flush(conn_t *c, int request) {
  return pd_tls_send(c->cn.tls, (uv_stream_t *)c->cn.tcp, request ? on_request_written : NULL, c);
}

/* Bytes read on a TLS connection: the handshake, then decrypted response bytes to the parser,
 * one record at a time. */
static void tls_read(pd_conn_t *cn, ssize_t nread, const char *data) {
  conn_t *c = (conn_t *)cn;
  if (nread >= 0 && c->x)
    c->x->xb.rx_ms = uv_now(c->o->b->loop);
  if (!pd_conn_tls_input(cn, nread, data))
    return;
  /* The ciphertext is in libssl's buffer now: the shared read buffer takes the plaintext. */
  char msg[ERRMSG_SIZE];
  char *buf = c->o->b->rbuf;
  for (;;) {
    ssize_t k = pd_tls_read(c->cn.tls, buf, READ_BUF_SIZE, msg, sizeof msg);
    if (pd_tls_pending(c->cn.tls))
      pd_h1up_tls_flush(c, 0); /* a key update's answer */
    if (k == PD_TLS_AGAIN)
      break;
    if (k == PD_TLS_ERR) {
      conn_fail(cn, PD_XFER_ERECV, msg);
      return;
    }
    if (!pd_h1_wire_conn_input(c, k == PD_TLS_EOF ? UV_EOF : k, buf))
      return;
  }
  if (c->x && pd_h1up_input_held(c->x))
    pd_h1up_stop_reading(c);
}

static const pd_conn_ops_t CONN_OPS = {on_connected,    on_connect_failed, conn_opened,
                                       tls_done,        conn_fail,         tls_read,
                                       pd_h1_wire_read, conn_freed};

/* ---- the public side ------------------------------------------------------------------------ */

int pd_h1up_adopt(pd_h1up_t *b, const pd_xfer_opts_t *op, uv_tcp_t *tcp, pd_tls_t *tls) {
  const char *path;
  origin_t *o = origin_for(b, op, 1, &path);
  if (!o || o->base.bad[0] || !pd_origin_has_slot(&o->base))
    return -1;
  conn_t *c = conn_new_on(o, tcp);
  if (!c)
    return -1;
  c->cn.tls = tls;
  c->cn.state = PD_CONN_OPEN;
  pd_h1up_start_reading(c);
  c->idle = 1;
  c->lnext = o->idle;
  o->idle = c;
  uv_timer_start(&c->cn.timer, pd_h1_xfer_on_conn_timer, IDLE_MAX_MS, 0);
  return 0;
}

static const pd_xfer_ops_t H1_OPS = {pd_h1up_pause, pd_h1up_resume, pd_h1up_cancel,
                                     pd_h1up_elapsed};

pd_xfer_t *pd_h1up_start(pd_h1up_t *b, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                         void *ud) {
  const char *path;
  origin_t *og = origin_for(b, o, 0, &path);
  xfer_t *x = og ? calloc(1, sizeof *x) : NULL;
  if (!x)
    goto fail;
  x->base.ops = &H1_OPS;
  x->b = b;
  x->o = og;
  x->path = pd_url_target(path);
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
  x->send_length = pd_xfer_sends_length(o);
  pd_xfer_base_init(&x->xb, &pd_h1_xfer_base_ops, b->loop, o, cbs, ud);
  pd_list_insert_head(&b->own.xfers, &x->xb.blink);
  pd_xfer_base_new_attempt(&x->xb);
  pd_h1_xfer_acquire(x);
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
  while (!x->xb.paused && x->xb.held.len > 0) {
    size_t n;
    int r = pd_xfer_base_give_held(&x->xb, &n);
    if (r == PD_GIVE_CANCELLED) {
      pd_h1_xfer_destroy(x);
      return;
    }
    if (r == PD_GIVE_ABORT) {
      x->xb.reader_abort = 1;
      pd_xfer_base_finish(&x->xb, PD_XFER_EOTHER, PD_XFER_READER_ABORT);
      return;
    }
  }
  if (x->xb.paused)
    return;
  if (x->xb.complete_pending) {
    pd_xfer_base_finish(&x->xb, PD_XFER_OK, "");
    return;
  }
  if (x->c && x->c->cn.state == PD_CONN_OPEN)
    pd_h1up_start_reading(x->c);
}

void pd_h1up_pause(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->xb.paused || x->xb.cancelled)
    return;
  x->xb.paused = 1;
  if (x->c && x->c->cn.state == PD_CONN_OPEN && x->xb.in_cb == 0 && pd_h1up_input_held(x))
    pd_h1up_stop_reading(x->c);
}

void pd_h1up_resume(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (!x->xb.paused || x->xb.cancelled)
    return;
  x->xb.paused = 0;
  if (x->c) { /* the stall clock starts again from now */
    x->xb.rx_ms = uv_now(x->b->loop);
    pd_h1up_arm_deadline(x->c);
  }
  if (x->xb.in_cb)
    return; /* the parser loop that called back goes on delivering */
  pump(x);
}

void pd_h1up_cancel(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (!pd_xfer_base_cancel(&x->xb))
    return;
  pd_xfer_base_stop(&x->xb);
  pd_h1_xfer_destroy(x);
}

double pd_h1up_elapsed(const pd_xfer_t *bx) {
  return pd_xfer_base_elapsed(&((const xfer_t *)bx)->xb);
}
