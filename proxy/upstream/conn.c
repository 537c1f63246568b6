/* The connection base both native framings embed (see conn.h): the socket and timer set up
 * and closed, the connect's outcome, the read dispatch, the CONNECT tunnel and the TLS
 * handshake driver. What differs per framing goes through its pd_conn_ops_t. */
#include "upstream/conn.h"

#include <stdio.h>
#include <stdlib.h>

#define ERRMSG_SIZE 160

static void on_connected(uv_connect_t *req, int status);

int pd_conn_init(pd_conn_t *c, const pd_conn_ops_t *ops, pd_origin_t *o, uv_loop_t *loop,
                 uv_tcp_t *tcp, uv_timer_cb on_timer, char *rbuf) {
  c->tcp = tcp ? tcp : malloc(sizeof *c->tcp);
  if (!c->tcp || (!tcp && uv_tcp_init(loop, c->tcp) < 0)) {
    free(c->tcp);
    c->tcp = NULL;
    return -1;
  }
  uv_timer_init(loop, &c->timer);
  c->tcp->data = c;
  c->write_req.data = c;
  c->timer.data = c;
  c->origin = o;
  c->ops = ops;
  c->rbuf = rbuf;
  pd_buf_init(&c->tunnel);
  pd_list_insert_head(&o->own->conns, &c->blink);
  o->nconns++;
  c->state = PD_CONN_DIALING;
  pd_origin_conn_init(&c->k, c->tcp, on_connected, c, &c->timer, on_timer, uv_now(loop));
  return 0;
}

void pd_conn_start_connect(pd_conn_t *c, uv_loop_t *loop) {
  pd_origin_conn_start(c->origin, &c->k, loop, NULL);
}

/* ---- the close ------------------------------------------------------------------------------ */

static void handle_closed(pd_conn_t *c) {
  if (--c->pending > 0)
    return;
  pd_origin_owner_t *own = c->origin->own;
  pd_list_remove(&c->blink);
  c->ops->freed(c);
  pd_buf_free(&c->tunnel);
  pd_tls_free(c->tls);
  free(c);
  pd_origin_owner_part_closed(own);
}

static void on_handle_closed(uv_handle_t *h) {
  handle_closed(h->data);
}

static void on_tcp_closed(uv_handle_t *h) {
  pd_conn_t *c = h->data;
  free(h);
  handle_closed(c);
}

void pd_conn_close_handles(pd_conn_t *c) {
  c->pending = c->tcp ? 2 : 1;
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  if (c->tcp)
    uv_close((uv_handle_t *)c->tcp, on_tcp_closed);
}

/* ---- the connect and reads ------------------------------------------------------------------ */

static void on_connected(uv_connect_t *req, int status) {
  pd_conn_t *c = req->data;
  if (c->state == PD_CONN_CLOSING)
    return;
  if (status < 0) {
    c->ops->connect_failed(c, status);
    return;
  }
  uv_tcp_nodelay(c->tcp, 1);
  uv_tcp_keepalive(c->tcp, 1, 60);
  c->ops->connected(c);
}

int pd_conn_deferred_failure(pd_conn_t *c) {
  if (!c->k.err)
    return 0;
  int err = c->k.err;
  c->k.err = 0;
  c->ops->connect_failed(c, err);
  return 1;
}

void pd_conn_timeout_msg(const pd_conn_t *c, uint64_t now, char *msg, size_t n) {
  snprintf(msg, n, "Connection timed out after %lu milliseconds",
           (unsigned long)(now - c->k.start));
}

void pd_conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  pd_conn_t *c = h->data;
  buf->base = c->rbuf;
  buf->len = PD_CONN_READ_BUF;
}

/* Not inlined: its message buffer would make every read build a stack frame. */
__attribute__((noinline)) static void tunnel_input(pd_conn_t *c, ssize_t nread, const char *data);

void pd_conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pd_conn_t *c = s->data;
  if (nread == 0 || c->state == PD_CONN_CLOSING)
    return;
  if (c->tls)
    c->ops->tls_read(c, nread, buf->base);
  else if (c->state == PD_CONN_TUNNEL)
    tunnel_input(c, nread, buf->base);
  else
    c->ops->read(c, nread, buf->base);
}

void pd_conn_reached(pd_conn_t *c) {
  if (c->origin->tls)
    pd_conn_tls_start(c);
  else
    c->ops->opened(c);
}

/* ---- a CONNECT tunnel through a proxy ------------------------------------------------------- */

static void tunnel_failed(pd_conn_t *c, const char *why) {
  char msg[2 * ERRMSG_SIZE]; /* cut to ERRMSG_SIZE where the transfer keeps it */
  snprintf(msg, sizeof msg, "CONNECT to %s through the proxy %s failed: %s", c->origin->a.authority,
           c->origin->dial->authority, why);
  c->ops->fail(c, PD_XFER_ECONNECT, msg);
}

static void on_tunnel_written(void *arg, int status) {
  pd_conn_t *c = arg;
  if (status < 0 && c->state == PD_CONN_TUNNEL)
    tunnel_failed(c, uv_strerror(status));
}

void pd_conn_tunnel_start(pd_conn_t *c) {
  c->state = PD_CONN_TUNNEL;
  int rc = pd_proxy_send_connect((uv_stream_t *)c->tcp, c->origin->a.authority, c->origin->a.alen,
                                 c->origin->proxy_auth, on_tunnel_written, c);
  if (rc < 0)
    tunnel_failed(c, uv_strerror(rc));
}

static void tunnel_input(pd_conn_t *c, ssize_t nread, const char *data) {
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
    pd_conn_reached(c);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

/* The handshake failed (not retried: a configuration fault, ours or the upstream's), or the TLS
 * stream broke. */
static void tls_failed(pd_conn_t *c, const char *msg) {
  c->ops->fail(c, c->state == PD_CONN_HANDSHAKE ? PD_XFER_EOTHER : PD_XFER_ERECV, msg);
}

void pd_conn_tls_start(pd_conn_t *c) {
  c->state = PD_CONN_HANDSHAKE;
  char msg[ERRMSG_SIZE];
  c->tls = pd_tls_new(c->origin->tls);
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

int pd_conn_tls_input(pd_conn_t *c, ssize_t nread, const char *data) {
  char msg[ERRMSG_SIZE];
  if (nread < 0) {
    if (c->state != PD_CONN_HANDSHAKE) {
      c->ops->read(c, nread, NULL);
      return 0;
    }
    snprintf(msg, sizeof msg, "TLS handshake failed: %s",
             nread == UV_EOF ? "the upstream closed the connection" : uv_strerror((int)nread));
    tls_failed(c, msg);
    return 0;
  }
  if (pd_tls_feed(c->tls, data, (size_t)nread) < 0) {
    tls_failed(c, "out of memory reading TLS records");
    return 0;
  }
  if (c->state != PD_CONN_HANDSHAKE)
    return 1;
  int r = pd_tls_handshake(c->tls, msg, sizeof msg);
  if (r < 0) {
    tls_failed(c, msg);
    return 0;
  }
  pd_tls_send(c->tls, (uv_stream_t *)c->tcp, NULL, NULL);
  return r == 0 ? 0 : c->ops->tls_done(c);
}
