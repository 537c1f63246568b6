/* The native HTTP/2 client's transfers (h2_int.h): the transfer's timer (deadlines, retry
 * delay, deferred failure and ending), a stream's ending turned into a retry or the reported
 * result, a lost connection, the caller's request headers, and the hand-over of a call to the
 * HTTP/1.1 client when the server chose HTTP/1.1 by ALPN. The transfer owns its timer, head and
 * held body; the stream and connection are the session's (h2_session.c, h2.c). */
#include "upstream/h2_int.h"

/* ---- transfers: timers and endings ---------------------------------------------------------- */

/* The stall clock runs: on a stream, a stall bound set, and the caller has not paused the
 * transfer (time ponder itself holds the response is not the upstream's silence). */
static int stall_armed(const xfer_t *x) {
  return x->c && x->xb.stall_ms > 0 && !x->xb.paused;
}

/* Arms T_DEADLINE for the nearer of the call's deadline and the stall bound, unless the timer
 * is busy with something else (a retry, an ending, a failure to report). */
void pd_h2_xfer_arm_deadline(xfer_t *x) {
  if (x->xb.timer_mode != PD_XT_NONE && x->xb.timer_mode != T_DEADLINE)
    return;
  uint64_t due = x->xb.deadline;
  if (stall_armed(x)) {
    uint64_t sdue = x->xb.rx_ms + (uint64_t)x->xb.stall_ms;
    if (!due || sdue < due)
      due = sdue;
  }
  if (due) {
    uint64_t now = uv_now(x->b->loop);
    pd_xfer_base_arm(&x->xb, T_DEADLINE, due > now ? due - now : 0);
  } else {
    pd_xfer_base_stop(&x->xb);
  }
}

void pd_h2_xfer_new_attempt(xfer_t *x) {
  x->got_response = 0;
  x->final_head = 0;
  x->ended = 0;
  x->too_large = 0;
  x->on_reused = 0;
  x->head_bytes = 0;
  x->body_off = 0;
  pd_xfer_base_new_attempt(&x->xb); /* paused stays: it is the caller's */
  pd_xfer_base_arm_deadline(&x->xb, T_DEADLINE);
}

void pd_h2_xfer_maybe_free(xfer_t *x) {
  if (x->destroyed && x->timer_closed && !x->c) {
    free(x->body);
    free(x);
  }
}

static void timer_closed(pd_xfer_base_t *t) {
  xfer_t *x = pd_list_entry(t, xfer_t, xb);
  x->timer_closed = 1;
  pd_h2_xfer_maybe_free(x);
}

void pd_h2_xfer_queue_unlink(xfer_t *x) {
  pd_list_remove(&x->xb.wlink);
}

/* Takes a transfer off its stream (which is closed, never sent, or going with its connection).
 * Bytes it holds are released at the connection level: no more can come for the stream. */
void pd_h2_xfer_stream_release(xfer_t *x) {
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
  if (c->cn.state != PD_CONN_CLOSING && c->ng && !x->destroyed && x->xb.held.len > 0)
    nghttp2_session_consume_connection(c->ng, x->xb.held.len);
  x->c = NULL;
  x->stream_id = 0;
  /* Idle: closed after IDLE_MAX_MS, or at once (from the timer: this may run inside nghttp2)
   * when it takes no new streams. */
  if (c->cn.state == PD_CONN_OPEN && c->ready && c->nstreams == 0)
    uv_timer_start(&c->cn.timer, pd_h2up_on_conn_timer, c->goaway || c->retired ? 0 : IDLE_MAX_MS,
                   0);
}

/* Cancels for good: no callback runs after this. The memory goes once the timer has closed and
 * nghttp2 has let go of the stream. */
void pd_h2_xfer_destroy(xfer_t *x) {
  if (x->destroyed)
    return;
  x->destroyed = 1;
  x->xb.cancelled = 1;
  if (x->inner) { /* no callback after this: the HTTP/1.1 client promises the same */
    x->inner->ops->cancel(x->inner);
    x->inner = NULL;
  }
  pd_h2_xfer_queue_unlink(x);
  pd_list_remove(&x->xb.blink);
  pd_xfer_base_stop(&x->xb);
  conn_t *c = x->c;
  if (c && c->ng) {
    if (x->xb.held.len > 0)
      nghttp2_session_consume(c->ng, x->stream_id, x->xb.held.len);
    nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, x->stream_id, NGHTTP2_CANCEL);
  }
  free(x->method);
  free(x->path);
  free(x->authority);
  free(x->hdrs);
  x->method = x->path = x->authority = x->hdrs = NULL;
  if (c)
    pd_h2up_conn_flush(c); /* the RST_STREAM */
  /* Last: with no timer ever opened, timer_closed runs now and may free x. Until then
   * timer_closed is 0, so nothing the flush does frees it. */
  pd_xfer_base_release(&x->xb);
}

static void destroy(pd_xfer_base_t *t) {
  pd_h2_xfer_destroy(pd_list_entry(t, xfer_t, xb));
}

/* Schedules the next attempt: immediately (free), or after a delay counting an attempt; when
 * the call's deadline comes first, the call times out instead. */
static void retry(xfer_t *x, int counted, long delay) {
  if (!pd_xfer_retry_fits(x->xb.deadline, uv_now(x->b->loop), delay)) {
    pd_xfer_base_time_out(&x->xb, x->xb.attempt + 1, 1); /* it comes first */
    return;
  }
  if (counted)
    x->xb.attempt++;
  pd_xfer_base_arm(&x->xb, PD_XT_RETRY, (uint64_t)(delay > 0 ? delay : 0));
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
  } else if (pd_xfer_base_may_retry(&x->xb, pd_xfer_connect_delay(x->xb.attempt))) {
    pd_xfer_log_retry(&x->base, x->xb.attempt, "stream refused",
                      pd_xfer_connect_delay(x->xb.attempt));
    retry(x, 1, pd_xfer_connect_delay(x->xb.attempt));
  } else {
    pd_xfer_base_finish(&x->xb, PD_XFER_ERECV, "the upstream refused the stream");
  }
}

/* The transfer's stream closed (x is released from it). */
void pd_h2_xfer_ended(xfer_t *x, uint32_t code) {
  if (x->xb.discard) {
    long delay = pd_xfer_status_delay(&x->xb.head, x->xb.attempt);
    char why[32];
    snprintf(why, sizeof why, "status %d", x->xb.head.status);
    pd_xfer_log_retry(&x->base, x->xb.attempt, why, delay);
    retry(x, 1, delay);
    return;
  }
  /* RST_STREAM NO_ERROR after the final head is the server's "stop sending the request" (RFC
   * 9113 section 8.1, a server that answered before reading the whole request): the response
   * stands, even when it came before the END_STREAM that should have ended it (node's). */
  if (x->ended || (code == NGHTTP2_NO_ERROR && x->final_head)) {
    pd_xfer_base_stop(&x->xb); /* complete: no deadline while held data waits */
    if (x->xb.paused && x->xb.held.len > 0) {
      x->xb.complete_pending = 1;
      return;
    }
    pd_xfer_base_finish(&x->xb, PD_XFER_OK, "");
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
  pd_xfer_base_finish(&x->xb, PD_XFER_ERECV, msg);
}

/* The connection x was on failed or ended (x is released from it already). Nothing calls back
 * from here: the outcome comes from x's timer. */
void pd_h2_xfer_conn_lost(xfer_t *x, int result, const char *msg) {
  if (x->xb.discard) { /* a retryable status was being discarded: retry as planned */
    retry(x, 1, pd_xfer_status_delay(&x->xb.head, x->xb.attempt));
    return;
  }
  if (x->xb.head_done) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_ERECV, msg);
    return;
  }
  if (result == PD_XFER_ECONNECT) {
    long delay = pd_xfer_connect_delay(x->xb.attempt);
    if (pd_xfer_base_may_retry(&x->xb, delay)) {
      pd_xfer_log_retry(&x->base, x->xb.attempt, msg, delay);
      retry(x, 1, delay);
    } else
      pd_xfer_base_fail_soon(&x->xb, PD_XFER_ECONNECT, msg);
    return;
  }
  if (result == PD_XFER_ETIMEOUT || result == PD_XFER_EOTHER) {
    pd_xfer_base_fail_soon(&x->xb, result, msg);
    return;
  }
  if (!x->got_response && x->on_reused && !x->xb.stale_retried) {
    /* The server dropped a connection it had served on as this stream went out: once more on a
     * new connection, as the HTTP/1.1 client does for a dropped keep-alive connection. */
    x->xb.stale_retried = 1;
    retry(x, 0, 0);
  } else {
    /* The server may have processed the request: not sent again (as over HTTP/1.1). */
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_ERECV, msg);
  }
}

/* The transfer timer's retry, deadline or stall bound, and stream ending (the base reports a
 * deferred failure itself). */
static void fire(pd_xfer_base_t *t, int mode) {
  xfer_t *x = pd_list_entry(t, xfer_t, xb);
  char msg[ERRMSG_SIZE];
  switch (mode) {
  case PD_XT_RETRY:
    pd_h2_xfer_new_attempt(x);
    pd_h2_session_acquire(x);
    break;
  case T_DEADLINE:
    if (!x->xb.deadline || uv_now(x->b->loop) < x->xb.deadline) {
      if (!stall_armed(x) || uv_now(x->b->loop) < x->xb.rx_ms + (uint64_t)x->xb.stall_ms) {
        pd_h2_xfer_arm_deadline(x); /* frames came since it was armed, or the caller paused */
        break;
      }
      /* Same outcome as a timeout: not retried (the upstream may be working on the request). */
      pd_xfer_stall_msg(msg, sizeof msg, x->xb.stall_ms);
      pd_xfer_base_finish(t, PD_XFER_ETIMEOUT, msg);
      break;
    }
    int waiting = pd_list_linked(&x->xb.wlink);
    if (waiting)
      pd_h2_xfer_queue_unlink(x);
    pd_xfer_base_time_out(t, waiting ? PD_XFER_WAITING : 0, 0);
    break;
  case T_ENDED:
    pd_h2_xfer_ended(x, x->end_code);
    break;
  default:
    break;
  }
}

const pd_xfer_base_ops_t pd_h2_xfer_base_ops = {fire, destroy, timer_closed};

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
int pd_h2_xfer_parse_headers(xfer_t *x, const char *const *lines) {
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
  if (!x->xb.cbs.on_head)
    return;
  x->xb.in_cb++;
  x->xb.cbs.on_head(x->xb.ud, h);
  x->xb.in_cb--;
  if (x->xb.cancelled)
    pd_h2_xfer_destroy(x);
}

static int fwd_data(void *ud, const char *p, size_t n) {
  xfer_t *x = ud;
  if (!x->xb.cbs.on_data)
    return 0;
  x->xb.in_cb++;
  int rc = x->xb.cbs.on_data(x->xb.ud, p, n);
  x->xb.in_cb--;
  if (x->xb.cancelled) {
    pd_h2_xfer_destroy(x);
    return -1;
  }
  return rc;
}

static void fwd_done(void *ud, int result, const char *msg) {
  xfer_t *x = ud;
  x->inner = NULL; /* the HTTP/1.1 client frees it after this returns */
  x->xb.in_cb++;
  if (x->xb.cbs.on_done)
    x->xb.cbs.on_done(x->xb.ud, result, msg);
  x->xb.in_cb--;
  pd_h2_xfer_destroy(x);
}

void pd_h2_xfer_hand_over(xfer_t *x) {
  pd_xfer_base_stop(&x->xb);
  origin_t *o = x->o;
  /* The request again as the HTTP/1.1 client takes it: a URL and "name: value" lines. */
  size_t n = (size_t)x->nhdrs + (x->authority != NULL), len = x->hdrs_len + 3 * n + 8;
  len += o->base.a.alen + strlen(x->path) + (x->authority ? strlen(x->authority) + 6 : 0);
  char **lines = calloc(n + 1, sizeof *lines), *text = malloc(len), *w = text;
  if (!lines || !text) {
    free(lines);
    free(text);
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER,
                           "out of memory handing the call to the HTTP/1.1 client");
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
  op.connect_timeout_ms = x->xb.connect_timeout_ms;
  uint64_t spent = uv_now(x->b->loop) - x->xb.start_ms;
  op.timeout_ms = !x->xb.timeout_ms                    ? 0
                  : (uint64_t)x->xb.timeout_ms > spent ? x->xb.timeout_ms - (long)spent
                                                       : 1;
  op.stall_timeout_ms = x->xb.stall_ms;
  op.retries = x->xb.retries > x->xb.attempt ? x->xb.retries - x->xb.attempt : 0;
  op.http2 = 0;
  op.proxy = o->base.proxy;
  x->body = NULL; /* the HTTP/1.1 client's now, freed even when its start fails */
  pd_xfer_cbs_t cbs = {fwd_head, fwd_data, fwd_done};
  x->inner = pd_h1up_start(x->b->h1, &op, &cbs, x);
  free(lines);
  free(text);
  if (!x->inner) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER,
                           "could not hand the call to the HTTP/1.1 client");
    return;
  }
  memcpy(x->inner->reqid, x->base.reqid, sizeof x->base.reqid);
  memcpy(x->inner->target, x->base.target, sizeof x->base.target);
}
