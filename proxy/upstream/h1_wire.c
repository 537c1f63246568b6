/* The native HTTP/1.1 client's bytes on the wire (h1_int.h): the request head and body written
 * on a connection, the llhttp response parser feeding the transfer's head and body callbacks,
 * keep-alive bookkeeping at the end of a response, and the same parser without a network for
 * the fuzz target. The connection owns the parser and header buffers; bodies are not copied
 * unless the transfer is paused (its held buffer). */
#include "upstream/h1_int.h"

/* ---- the request ---------------------------------------------------------------------------- */

/* The request (head and body) is written, or could not be. */
void pd_h1_wire_write_done(conn_t *c, int status) {
  c->writing = 0;
  free(c->orphan);
  c->orphan = NULL;
  if (c->out.cap > 4096)
    pd_buf_free(&c->out);
  if (c->cn.state == PD_CONN_CLOSING)
    return;
  if (status < 0)
    pd_h1_xfer_conn_failed(c, status, "Failed sending the request");
}

static void on_written(uv_write_t *req, int status) {
  pd_h1_wire_write_done(req->data, status);
}

void pd_h1_wire_conn_send(conn_t *c) {
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
    pd_h1up_detach(x);
    pd_h1up_conn_close(c);
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, "out of memory building the upstream request");
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
  if (c->cn.tls)
    /* One TLS record for a small request, not one for the head and one for the body: each
     * record costs its own encryption setup. */
    rc = (n == 1 || pd_buf_append(&c->out, x->body, x->body_len) == 0) &&
                 pd_tls_write(c->cn.tls, pd_buf_data(&c->out), c->out.len) == 0
             ? pd_h1up_tls_flush(c, 1)
             : UV_ENOMEM;
  else
    rc = uv_write(&c->cn.write_req, (uv_stream_t *)c->cn.tcp, bufs, (unsigned)n, on_written);
  if (rc < 0) {
    c->writing = 0;
    int stale = c->reused;
    origin_t *o = c->o;
    pd_h1up_detach(x);
    pd_h1up_conn_close_keep_slot(c);
    if (stale && !x->xb.stale_retried) {
      x->xb.stale_retried = 1;
      x->fresh_only = 1;
      pd_h1_xfer_acquire(x);
      pd_h1_xfer_serve_waiters(o);
      return;
    }
    pd_h1_xfer_serve_waiters(o);
    char msg[ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "Failed sending the request: %s", uv_strerror(rc));
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_ERECV, msg);
    return;
  }
  pd_h1up_start_reading(c);
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
  pd_xhead_reset(&c->x->xb.head);
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
    pd_xhead_add(&c->x->xb.head, pd_buf_data(&c->hname), c->hname.len, v, vlen);
  pd_buf_reset(&c->hname);
  pd_buf_reset(&c->hvalue);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = p->data;
  xfer_t *x = c->x;
  x->xb.head.status = p->status_code;
  if (x->xb.head.status < 200)
    return 0; /* informational: the real head follows */
  if (pd_xfer_retryable_status(x->xb.head.status) &&
      pd_xfer_base_may_retry(&x->xb, pd_xfer_status_delay(&x->xb.head, x->xb.attempt)))
    x->xb.discard = 1;
  else
    pd_xfer_base_head(&x->xb);
  if (x->xb.cancelled)
    return -1;
  return x->is_head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  xfer_t *x = c->x;
  if (x->xb.discard || n == 0)
    return 0;
  if (x->xb.paused || x->xb.held.len > 0)
    return pd_buf_append(&x->xb.held, at, n) < 0 ? -1 : 0;
  int r = pd_xfer_base_give(&x->xb, at, n);
  if (r == PD_GIVE_ABORT)
    c->aborted = 1;
  return r == PD_GIVE_OK ? 0 : -1;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  if (c->x->xb.head.status < 200)
    return 0;
  c->msg_done = 1;
  return HPE_PAUSED; /* finish outside the parser */
}

const llhttp_settings_t pd_h1_wire_settings = {
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
  if (x->xb.cancelled) {
    pd_h1_xfer_destroy(x); /* closes c */
    return 0;
  }
  if (c->aborted) {
    pd_h1up_detach(x);
    pd_h1up_conn_close(c);
    x->xb.reader_abort = 1;
    pd_xfer_base_finish(&x->xb, PD_XFER_EOTHER, "the transfer was aborted by its reader");
    return 0;
  }
  if (c->msg_done) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    /* Reused only when the response ended exactly with these bytes and the request is fully
     * written (an upstream may answer early, before reading a large body). */
    int keep = end && pos == end && !c->writing && llhttp_should_keep_alive(&c->parser);
    pd_h1_xfer_attempt_complete(x, keep);
    return 0;
  }
  if (err != HPE_OK) {
    char msg[ERRMSG_SIZE];
    if (c->too_large)
      snprintf(msg, sizeof msg, "the upstream's response head is over %d bytes", MAX_HEAD_BYTES);
    else
      snprintf(msg, sizeof msg, "the upstream sent an invalid HTTP response (%s)",
               llhttp_errno_name(err));
    pd_h1up_detach(x);
    pd_h1up_conn_close(c);
    pd_h1_xfer_attempt_failed(x, PD_XFER_ERECV, msg);
    return 0;
  }
  return 1;
}

/* Response bytes (plaintext) for the parser, or the end of the stream (nread < 0). Returns 1
 * when the connection is still the transfer's and reading may go on. */
int pd_h1_wire_conn_input(conn_t *c, ssize_t nread, const char *data) {
  xfer_t *x = c->x;
  if (!x) { /* idle: the server closed it, or sent bytes nobody asked for */
    pd_h1up_conn_close(c);
    return 0;
  }
  if (nread < 0) {
    if (nread == UV_EOF && c->got_bytes) {
      /* A body delimited by the end of the connection ends here. */
      llhttp_finish(&c->parser);
      if (c->msg_done || x->xb.cancelled || c->aborted) {
        after_parse(c, HPE_OK, NULL);
        return 0;
      }
    }
    pd_h1_xfer_conn_failed(c, (int)nread, "Failure receiving the response");
    return 0;
  }
  c->got_bytes = 1;
  x->xb.rx_ms = uv_now(c->o->b->loop);
  llhttp_errno_t err = llhttp_execute(&c->parser, data, (size_t)nread);
  return after_parse(c, err, data + nread);
}

void pd_h1_wire_read(pd_conn_t *cn, ssize_t nread, const char *data) {
  conn_t *c = (conn_t *)cn;
  if (pd_h1_wire_conn_input(c, nread, data) && pd_h1up_input_held(c->x))
    pd_h1up_stop_reading(c);
}

/* ---- the parser without a network, for the fuzz target ------------------------------------- */

typedef struct fuzz_sink {
  pd_h1_wire_parse_stats_t *st;
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

void pd_h1_wire_parse_bytes(const char *data, size_t len, size_t chunk, int is_head, int retries,
                            pd_h1_wire_parse_stats_t *st) {
  static pd_h1up_t b; /* only the loop is read (uv_now, for the retry decision) */
  memset(st, 0, sizeof *st);
  b.loop = uv_default_loop();
  origin_t o = {.b = &b};
  xfer_t x = {.b = &b, .o = &o, .is_head = is_head, .xb.retries = retries, .xb.loop = b.loop};
  pd_list_init(&x.xb.wlink);
  pd_list_init(&o.base.waiters);
  conn_t c = {.o = &o, .x = &x};
  fuzz_sink_t sink = {.st = st};
  x.xb.cbs.on_head = fuzz_on_head;
  x.xb.cbs.on_data = fuzz_on_data;
  x.xb.ud = &sink;
  x.c = &c;
  pd_xhead_init(&x.xb.head);
  pd_buf_init(&x.xb.held);
  pd_buf_init(&c.hname);
  pd_buf_init(&c.hvalue);
  llhttp_init(&c.parser, HTTP_RESPONSE, &pd_h1_wire_settings);
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
        st->body_bytes += x.xb.held.len;
        pd_buf_reset(&x.xb.held);
        x.xb.head_done = 0;
        x.xb.discard = 0;
        x.xb.paused = 0;
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
  st->body_bytes += x.xb.held.len;
  pd_xhead_free(&x.xb.head);
  pd_buf_free(&x.xb.held);
  pd_buf_free(&c.hname);
  pd_buf_free(&c.hvalue);
}
