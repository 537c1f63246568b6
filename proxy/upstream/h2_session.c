/* The native HTTP/2 client's streams and session (h2_int.h): a transfer submitted as a stream
 * (its header list and body source), the choice of a connection with a free stream slot or a
 * new one, the origin's waiter queue served in order, and the nghttp2 callbacks that feed
 * response headers, data and stream endings to the transfers. nghttp2 owns the session's
 * frames; the transfers own what they were given. */
#include "upstream/h2_int.h"

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

/* A header field as nghttp2 takes it, indexed in the HPACK table (the next call on the
 * connection sends it as one byte). A field whose value is new on every call (x-request-id)
 * or varies (content-length) is sent NO_INDEX instead: indexing it would cost a table insert
 * per call and push out the fields that do repeat (callgrind: 3.8k instructions a call). */
static nghttp2_nv make_nv(const char *name, size_t nlen, const char *value, size_t vlen) {
  nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
  return nv;
}

/* Sends x's request as a new stream of c. */
void pd_h2_session_submit(conn_t *c, xfer_t *x) {
  size_t nnv = 4 + (size_t)x->nhdrs + 1;
  nghttp2_nv stack[32], *nv = stack;
  if (nnv > sizeof stack / sizeof stack[0]) {
    nv = malloc(nnv * sizeof *nv);
    if (!nv) {
      pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, "out of memory building the upstream request");
      return;
    }
  }
  size_t n = 0;
  nv[n++] = make_nv(":method", 7, x->method, strlen(x->method));
  if (c->cn.tls)
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
    if (nl == 12 && memcmp(p, "x-request-id", 12) == 0)
      nv[n - 1].flags = NGHTTP2_NV_FLAG_NO_INDEX; /* new each call: see make_nv */
    p = v + vl + 1;
  }
  char clen[24];
  if (x->send_length) {
    nv[n++] = make_nv("content-length", 14, clen, pd_buf_fmt_long(clen, (long)x->body_len));
    nv[n - 1].flags = NGHTTP2_NV_FLAG_NO_INDEX; /* differs from call to call */
  }
  nghttp2_data_provider prd;
  prd.source.ptr = x;
  prd.read_callback = read_body;
  x->body_off = 0;
  int32_t id = nghttp2_submit_request(c->ng, NULL, nv, n, x->body_len > 0 ? &prd : NULL, x);
  if (nv != stack)
    free(nv);
  if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
    c->goaway = 1; /* out of stream ids: another connection */
    pd_h2_session_acquire(x);
    return;
  }
  if (id < 0) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, "could not start an upstream stream");
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
  pd_origin_conn_take(&c->cn.k);
  if (!pd_origin_conn_usable(&c->o->base, &c->cn.k, c->o->b->loop))
    c->retired = 1;                    /* its last call: it closes when its streams are done */
  x->xb.rx_ms = uv_now(c->o->b->loop); /* the attempt starts: its stall clock with it */
  pd_h2_xfer_arm_deadline(x);
  if (c->ready)
    uv_timer_stop(&c->cn.timer); /* no idle expiry while it has streams */
  pd_h2up_conn_flush(c);
}

void pd_h2_session_retire(conn_t *c) {
  c->retired = 1;
  if (c->cn.state == PD_CONN_OPEN && c->ready && c->nstreams == 0)
    uv_timer_start(&c->cn.timer, pd_h2up_on_conn_timer, 0, 0); /* idle: closes from its timer */
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
  int unready = 0;
  for (conn_t *c = o->live; c; c = c->onext) {
    if (!c->retired && !pd_origin_conn_usable(&o->base, &c->cn.k, x->b->loop))
      pd_h2_session_retire(c); /* too old */
    if (c->goaway || c->retired)
      continue;
    if ((uint32_t)c->nstreams < conn_max_streams(c)) {
      pd_h2_session_submit(c, x);
      return 1;
    }
    if (!c->ready)
      unready = 1;
  }
  if (unready || !pd_origin_has_slot(&o->base))
    return 0;
  conn_t *c = pd_h2up_conn_new(o, x->xb.connect_timeout_ms);
  if (!c) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, "out of memory opening an upstream connection");
    return 1;
  }
  pd_h2up_conn_start_connect(c);
  pd_h2_session_submit(c, x);
  return 1;
}

static void enqueue(xfer_t *x, int front) {
  pd_origin_wait(&x->o->base, &x->xb.wlink, front);
}

/* Gets the transfer a stream, or a place in the queue (first come, first served). */
void pd_h2_session_acquire(xfer_t *x) {
  if (x->b->own.closing) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, "the upstream client is closing");
    return;
  }
  if (x->o->base.bad[0]) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, x->o->base.bad);
    return;
  }
  if (x->o->h1) {
    pd_h2_xfer_hand_over(x);
    return;
  }
  if (!pd_origin_next_waiter(&x->o->base) && place(x))
    return;
  enqueue(x, 0);
}

void pd_h2_session_serve_waiters(origin_t *o) {
  if (o->b->own.closing)
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
      xfer_t *x = pd_list_entry(l, xfer_t, xb.wlink);
      pd_h2_xfer_queue_unlink(x);
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
  x->xb.rx_ms = uv_now(x->b->loop); /* a frame of this stream: the upstream is not silent */
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
    pd_xhead_reset(&x->xb.head);
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
    x->xb.head.status = st;
  } else if (nlen > 0 && name[0] != ':') {
    pd_xhead_add(&x->xb.head, (const char *)name, nlen, (const char *)value, vlen);
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
        uv_timer_start(&c->cn.timer, pd_h2up_on_conn_timer, c->retired ? 0 : IDLE_MAX_MS, 0);
      else
        uv_timer_stop(&c->cn.timer); /* connected: the connect timeout is over */
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
      if (x->xb.head.status < 200)
        break; /* informational: the real head follows */
      x->final_head = 1;
      if (pd_xfer_retryable_status(x->xb.head.status) &&
          pd_xfer_base_may_retry(&x->xb, pd_xfer_status_delay(&x->xb.head, x->xb.attempt))) {
        x->xb.discard = 1;
        if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
          nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
      } else {
        pd_xfer_base_head(&x->xb);
        if (x->xb.cancelled) {
          pd_h2_xfer_destroy(x);
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
  if (!x || x->xb.discard || !x->final_head) {
    nghttp2_session_consume(ng, id, len);
    return 0;
  }
  if (len == 0)
    return 0;
  if (x->xb.paused || x->xb.held.len > 0) {
    /* Not consumed: the stream's window bounds what can pile up here. */
    if (pd_buf_append(&x->xb.held, data, len) < 0) {
      nghttp2_session_consume(ng, id, len);
      pd_xfer_base_finish(&x->xb, PD_XFER_EOTHER, "out of memory holding the upstream response");
    }
    return 0;
  }
  int r = pd_xfer_base_give(&x->xb, (const char *)data, len);
  nghttp2_session_consume(ng, id, len);
  if (r == PD_GIVE_CANCELLED) {
    pd_h2_xfer_destroy(x);
  } else if (r == PD_GIVE_ABORT) {
    x->xb.reader_abort = 1;
    pd_xfer_base_finish(&x->xb, PD_XFER_EOTHER, PD_XFER_READER_ABORT);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud) {
  conn_t *c = ud;
  xfer_t *x = nghttp2_session_get_stream_user_data(ng, id);
  if (!x || x->c != c || x->stream_id != id)
    return 0;
  pd_h2_xfer_stream_release(x);
  if (x->ended && !x->xb.discard)
    c->served = 1;
  if (x->destroyed) {
    pd_h2_xfer_maybe_free(x);
    return 0;
  }
  if (c->in_send) {
    /* Inside mem_send, perhaps inside one of the caller's own calls: report from the loop. */
    x->end_code = code;
    pd_xfer_base_arm(&x->xb, T_ENDED, 0);
    return 0;
  }
  pd_h2_xfer_ended(x, code);
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
  pd_h2_xfer_stream_release(x);
  if (x->destroyed) {
    pd_h2_xfer_maybe_free(x);
    return 0;
  }
  x->end_code = NGHTTP2_REFUSED_STREAM;
  pd_xfer_base_arm(&x->xb, T_ENDED, 0);
  return 0;
}

int pd_h2_session_setup_callbacks(pd_h2up_t *b) {
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
