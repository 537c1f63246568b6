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
 * from the transfer's 0 ms timer.
 *
 * This file owns the backend, its origins and connections (connect, TLS, the CONNECT tunnel,
 * reads and writes) and the public side; a transfer's endings, retries and hand-over are
 * h2_xfer.c's, streams and the nghttp2 callbacks h2_session.c's (h2_int.h between them). */
#include "upstream/h2_int.h"

static void conn_fail(conn_t *c, int result, const char *msg);
static const pd_conn_ops_t CONN_OPS;

/* ---- the backend ----------------------------------------------------------------------------- */

pd_h2up_t *pd_h2up_new(uv_loop_t *loop, int max_host_connections, pd_h1up_t *h1) {
  pd_h2up_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->loop = loop;
  b->h1 = h1;
  if (pd_h2_session_setup_callbacks(b) < 0)
    goto fail;
  if (nghttp2_option_new(&b->ngopt) != 0)
    goto fail;
  nghttp2_option_set_no_auto_window_update(b->ngopt, 1);
  if (pd_origin_owner_init(&b->own, loop, max_host_connections) < 0)
    goto fail;
  return b;
fail:
  nghttp2_option_del(b->ngopt);
  if (b->ngcbs)
    nghttp2_session_callbacks_del(b->ngcbs);
  free(b);
  return NULL;
}

void pd_h2up_close(pd_h2up_t *b, void (*on_closed)(void *ud), void *ud) {
  pd_origin_owner_close(&b->own, on_closed, ud);
  pd_list_t *xl;
  while ((xl = pd_list_first(&b->own.xfers))) {
    xfer_t *x = pd_list_entry(xl, xfer_t, xb.blink);
    x->xb.in_cb = 0;
    pd_h2_xfer_destroy(x);
  }
  /* Every connection not yet freed reports once, closing already or not. */
  pd_list_t *l, *t;
  pd_list_each(l, t, &b->own.conns) {
    conn_t *c = pd_list_entry(l, conn_t, cn.blink);
    b->own.pending_closes++;
    conn_fail(c, PD_XFER_EOTHER, "closing");
  }
  pd_origin_owner_close_rest(&b->own);
}

void pd_h2up_free(pd_h2up_t *b) {
  if (!b)
    return;
  pd_origin_owner_free(&b->own, offsetof(origin_t, base));
  nghttp2_option_del(b->ngopt);
  nghttp2_session_callbacks_del(b->ngcbs);
  free(b);
}

/* ---- origins and addresses ------------------------------------------------------------------ */

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_freed(pd_conn_t *cn) {
  pd_buf_free(&((conn_t *)cn)->wbuf);
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
  o->base.nconns--;
}

/* Takes c's streams off it one at a time: the next transfer still wanted (released from its
 * stream), or NULL once none is left; cancelled ones are freed on the way. */
static xfer_t *take_stream(conn_t *c) {
  while (c->streams) {
    xfer_t *x = c->streams;
    pd_h2_xfer_stream_release(x);
    if (!x->destroyed)
      return x;
    pd_h2_xfer_maybe_free(x);
  }
  return NULL;
}

/* Closes the connection. Its streams' transfers are retried or fail (from their timers). */
static void conn_fail(conn_t *c, int result, const char *msg) {
  if (c->cn.state == PD_CONN_CLOSING)
    return;
  origin_t *o = c->o;
  pd_origin_conn_leave(&c->cn.k);
  c->cn.state = PD_CONN_CLOSING;
  live_unlink(c);
  for (xfer_t *x; (x = take_stream(c));)
    pd_h2_xfer_conn_lost(x, result, msg);
  nghttp2_session_del(c->ng);
  c->ng = NULL;
  pd_conn_close_handles(&c->cn); /* no tcp: the HTTP/1.1 client adopted it */
  pd_h2_session_serve_waiters(o);
}

conn_t *pd_h2up_conn_new(origin_t *o, long connect_timeout_ms) {
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
      pd_conn_init(&c->cn, &CONN_OPS, &o->base, b->loop, NULL, pd_h2up_on_conn_timer, b->rbuf) <
          0) {
    nghttp2_session_del(c->ng);
    free(c);
    return NULL;
  }
  c->o = o;
  pd_buf_init(&c->wbuf);
  c->onext = o->live;
  if (o->live)
    o->live->oprev = c;
  o->live = c;
  /* Without a connect timeout the wait for the server's SETTINGS is still bounded: a server
   * that accepts and never speaks HTTP/2 must not hold a connection slot for good. */
  c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : SETTINGS_WAIT_MAX_MS;
  uv_timer_start(&c->cn.timer, pd_h2up_on_conn_timer, (uint64_t)c->connect_timeout_ms, 0);
  return c;
}

void pd_h2up_conn_start_connect(conn_t *c) {
  pd_conn_start_connect(&c->cn, c->o->b->loop);
}

static void connect_failed(pd_conn_t *cn, int status) {
  conn_t *c = (conn_t *)cn;
  origin_t *o = c->o;
  int idx = c->cn.k.idx;
  int resolving = c->cn.k.resolving;
  if (pd_origin_conn_has_next(&o->base, resolving, idx) && c->streams) {
    /* The next address, on a new connection (a new session) taking over the streams. */
    conn_t *c2 = pd_h2up_conn_new(o, c->connect_timeout_ms);
    if (c2) {
      c2->cn.k.start = c->cn.k.start;
      for (xfer_t *x; (x = take_stream(c));) {
        x->body_off = 0;
        pd_h2_session_submit(c2, x);
      }
      pd_origin_conn_to(&o->base, &c2->cn.k, idx + 1);
    }
  }
  char msg[ERRMSG_SIZE];
  pd_origin_conn_msg(&o->base, resolving, status, msg, sizeof msg);
  conn_fail(c, PD_XFER_ECONNECT, msg);
}

void pd_h2up_on_conn_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->cn.state == PD_CONN_CLOSING)
    return;
  if (pd_conn_deferred_failure(&c->cn))
    return;
  if (!c->ready) {
    char msg[ERRMSG_SIZE];
    pd_conn_timeout_msg(&c->cn, uv_now(c->o->b->loop), msg, sizeof msg);
    conn_fail(c, PD_XFER_ETIMEOUT, msg);
    return;
  }
  if (c->nstreams == 0) /* idle too long */
    conn_fail(c, PD_XFER_ERECV, "idle");
}

/* A CONNECT tunnel through a proxy for h2c too: HTTP/2 frames cannot be proxied as requests. */
static void on_connected(pd_conn_t *cn) {
  conn_t *c = (conn_t *)cn;
  c->cn.state = c->o->base.dial != &c->o->base.a ? PD_CONN_TUNNEL
                : c->o->base.tls                 ? PD_CONN_HANDSHAKE
                                                 : PD_CONN_OPEN;
  if (uv_read_start((uv_stream_t *)c->cn.tcp, pd_conn_on_alloc, pd_conn_on_read) < 0) {
    conn_fail(c, PD_XFER_ECONNECT, "could not read from the upstream connection");
    return;
  }
  if (c->cn.state == PD_CONN_TUNNEL)
    pd_conn_tunnel_start(cn);
  else
    pd_conn_reached(cn);
}

/* The TCP connection reaches the origin in plaintext: HTTP/2 right away. */
static void conn_opened(pd_conn_t *cn) {
  cn->state = PD_CONN_OPEN;
  pd_h2up_conn_flush((conn_t *)cn);
}

static void on_conn_fail(pd_conn_t *cn, int result, const char *msg) {
  conn_fail((conn_t *)cn, result, msg);
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
  if (c->cn.state == PD_CONN_CLOSING)
    return;
  if (status < 0) {
    char msg[ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "Failed sending to the upstream: %s", uv_strerror(status));
    conn_fail(c, PD_XFER_ERECV, msg);
    return;
  }
  pd_h2up_conn_flush(c);
  pd_h2_session_serve_waiters(c->o);
}

static void on_tls_written(void *arg, int status) {
  on_written(&((conn_t *)arg)->cn.write_req, status);
}

/* Writes what nghttp2 has to send: one write at a time, up to about WRITE_CHUNK; the rest
 * waits in nghttp2 until that write is done. Closes the connection once nghttp2 wants
 * neither to read nor to write. Does nothing inside nghttp2's own calls. */
void pd_h2up_conn_flush(conn_t *c) {
  if (c->cn.state != PD_CONN_OPEN || c->in_recv || c->in_send || c->writing)
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
    if (c->cn.tls) {
      /* The frames are copied into libssl's records: wbuf is free again right away. */
      rc = pd_tls_write(c->cn.tls, ub.base, ub.len) < 0
               ? UV_ENOMEM
               : pd_tls_send(c->cn.tls, (uv_stream_t *)c->cn.tcp, on_tls_written, c);
    } else {
      rc = uv_write(&c->cn.write_req, (uv_stream_t *)c->cn.tcp, &ub, 1, on_written);
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
  if (c->cn.state == PD_CONN_CLOSING)
    return 0;
  if (rv < 0) {
    snprintf(msg, sizeof msg, "the upstream broke the HTTP/2 protocol (%s)",
             nghttp2_strerror((int)rv));
    conn_fail(c, PD_XFER_ERECV, msg);
    return 0;
  }
  return 1;
}

static void plain_read(pd_conn_t *cn, ssize_t nread, const char *data) {
  conn_t *c = (conn_t *)cn;
  if (!conn_input(c, nread, data))
    return;
  pd_h2up_conn_flush(c);
  pd_h2_session_serve_waiters(c->o);
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
    uv_read_stop((uv_stream_t *)c->cn.tcp);
    if (pd_h1up_adopt(o->b->h1, &op, c->cn.tcp, c->cn.tls) == 0)
      c->cn.tcp = NULL, c->cn.tls = NULL;
    free(url);
  }
  for (xfer_t *x; (x = take_stream(c));)
    pd_h2_xfer_hand_over(x);
  conn_fail(c, PD_XFER_EOTHER, "the upstream chose HTTP/1.1"); /* its waiters are handed over */
}

/* The handshake is done: HTTP/2, else the HTTP/1.1 client takes the connection. */
static int tls_done(pd_conn_t *cn) {
  conn_t *c = (conn_t *)cn;
  if (pd_tls_alpn_h2(c->cn.tls) != 2) {
    to_h1(c);
    return 0;
  }
  c->cn.state = PD_CONN_OPEN;
  return 1;
}

static void tls_read(pd_conn_t *cn, ssize_t nread, const char *data) {
  conn_t *c = (conn_t *)cn;
  if (!pd_conn_tls_input(cn, nread, data))
    return;
  /* The ciphertext is in libssl's buffer now: the shared read buffer takes the plaintext, every
   * record of it before nghttp2 sees the bytes (a server that puts HEADERS and DATA in records of
   * their own costs one nghttp2_session_mem_recv, not two). */
  char msg[ERRMSG_SIZE];
  char *buf = c->o->b->rbuf;
  for (;;) {
    size_t have = 0;
    ssize_t k;
    while ((k = pd_tls_read(c->cn.tls, buf + have, READ_BUF_SIZE - have, msg, sizeof msg)) > 0)
      if ((have += (size_t)k) == READ_BUF_SIZE)
        break;
    if (have > 0 && !conn_input(c, (ssize_t)have, buf))
      return;
    if (k == PD_TLS_ERR) {
      conn_fail(c, PD_XFER_ERECV, msg);
      return;
    }
    if (k == PD_TLS_EOF) {
      conn_input(c, UV_EOF, buf);
      return;
    }
    if (k == PD_TLS_AGAIN)
      break;
  }
  if (pd_tls_pending(c->cn.tls))
    pd_tls_send(c->cn.tls, (uv_stream_t *)c->cn.tcp, NULL, NULL); /* a key update's answer */
  pd_h2up_conn_flush(c);
  pd_h2_session_serve_waiters(c->o);
}

static const pd_conn_ops_t CONN_OPS = {on_connected, connect_failed, conn_opened, tls_done,
                                       on_conn_fail, tls_read,       plain_read,  conn_freed};

/* ---- the public side ------------------------------------------------------------------------ */

static const pd_xfer_ops_t H2_OPS = {pd_h2up_pause, pd_h2up_resume, pd_h2up_cancel,
                                     pd_h2up_elapsed};

pd_xfer_t *pd_h2up_start(pd_h2up_t *b, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                         void *ud) {
  /* Over TLS ALPN offers h2 and HTTP/1.1: a server that chooses HTTP/1.1 has its origin's
   * calls handed to the HTTP/1.1 client. */
  const char *path;
  pd_origin_t *ob =
      pd_origin_of_call(&b->own, sizeof(origin_t), offsetof(origin_t, base), o, 1, 0, &path);
  origin_t *og = ob ? pd_h2_origin_of(ob) : NULL;
  if (og && og->h1) { /* its server speaks HTTP/1.1: the call is the HTTP/1.1 client's */
    pd_xfer_opts_t op = *o;
    op.http2 = 0;
    return pd_h1up_start(b->h1, &op, cbs, ud);
  }
  xfer_t *x = og ? calloc(1, sizeof *x) : NULL;
  if (og)
    og->b = b;
  if (!x)
    goto fail;
  x->base.ops = &H2_OPS;
  x->b = b;
  x->o = og;
  x->path = pd_url_target(path);
  x->method = strdup(o->method);
  if (!x->path || !x->method || pd_h2_xfer_parse_headers(x, o->headers) < 0)
    goto fail;
  x->body = o->body;
  x->body_len = o->body ? o->body_len : 0;
  x->send_length = pd_xfer_sends_length(o);
  pd_xfer_base_init(&x->xb, &pd_h2_xfer_base_ops, b->loop, o, cbs, ud);
  pd_list_insert_head(&b->own.xfers, &x->xb.blink);
  pd_h2_xfer_new_attempt(x);
  pd_h2_session_acquire(x);
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
  while (!x->xb.paused && x->xb.held.len > 0) {
    size_t n;
    int r = pd_xfer_base_give_held(&x->xb, &n);
    if (x->c && x->c->ng)
      nghttp2_session_consume(x->c->ng, x->stream_id, n);
    if (r == PD_GIVE_CANCELLED) {
      pd_h2_xfer_destroy(x);
      goto out;
    }
    if (r == PD_GIVE_ABORT) {
      x->xb.reader_abort = 1;
      pd_xfer_base_finish(&x->xb, PD_XFER_EOTHER, PD_XFER_READER_ABORT);
      goto out;
    }
  }
  if (!x->xb.paused && x->xb.complete_pending)
    pd_xfer_base_finish(&x->xb, PD_XFER_OK, "");
out:
  if (c)
    pd_h2up_conn_flush(c); /* the WINDOW_UPDATE */
}

void pd_h2up_pause(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->inner) {
    x->inner->ops->pause(x->inner);
    return;
  }
  if (x->xb.cancelled)
    return;
  x->xb.paused = 1;
}

void pd_h2up_resume(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (x->inner) {
    x->inner->ops->resume(x->inner);
    return;
  }
  if (!x->xb.paused || x->xb.cancelled)
    return;
  x->xb.paused = 0;
  if (x->c) { /* the stall clock starts again from now */
    x->xb.rx_ms = uv_now(x->b->loop);
    pd_h2_xfer_arm_deadline(x);
  }
  if (x->xb.in_cb)
    return; /* whoever is calling back goes on delivering */
  pump(x);
}

void pd_h2up_cancel(pd_xfer_t *bx) {
  xfer_t *x = (xfer_t *)bx;
  if (pd_xfer_base_cancel(&x->xb))
    pd_h2_xfer_destroy(x);
}

double pd_h2up_elapsed(const pd_xfer_t *bx) {
  return pd_xfer_base_elapsed(&((const xfer_t *)bx)->xb);
}
