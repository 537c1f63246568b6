/* The HTTP server's connections (see http/server.h): the listener and adopted sockets, one
 * pd_conn_t per connection with its read side (one shared read buffer per loop), write queue
 * and watermarks, the deadline of every state, the handover between pipelined requests, and
 * closing. Parsing is http/parser.c, the response writer http/res.c. */
#include "http/server.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "base/log.h"
#include "http/res.h"
#include "http/server_int.h"

typedef struct wreq {
  uv_write_t w;
  pd_conn_t *conn;
  char *owned;
  size_t bytes;
  char pre[24], post[8];
} wreq_t;

static void conn_close(pd_conn_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

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
  pd_server_finish(r);
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
 *                  timeouts bound it; pd_server_write arms the timer again when bytes are queued.
 */
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

void pd_server_arm_timer(pd_conn_t *c, long ms) {
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
      pd_server_resume(c); /* parse what was held, then read again */
  }
  maybe_finish_close(c);
}

/* Queues pre + data + post. Takes ownership of `owned` (which holds data) when non-NULL. */
int pd_server_write(pd_conn_t *c, const char *pre, size_t prelen, const char *data, size_t len,
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
    pd_server_arm_timer(c, c->srv->opts.idle_timeout_ms);
  return 0;
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

void pd_server_stop_reading(pd_conn_t *c) {
  if (c->reading) {
    uv_read_stop(&c->io.stream);
    c->reading = 0;
  }
}

/* Between two requests: when the client is not taking its responses, neither read its next
 * requests nor parse those already read (each may be answered at once and queue more), until
 * on_write sees the queue below LOW_WATERMARK. Returns 1 when blocked. */
int pd_server_write_block(pd_conn_t *c) {
  if (c->queued <= HIGH_WATERMARK)
    return 0;
  c->write_blocked = 1;
  pd_server_stop_reading(c);
  return 1;
}

void pd_server_finish(pd_req_t *r) {
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
    pd_server_arm_timer(c, s->opts.idle_timeout_ms);
  if (!keep) {
    c->close_after = 1;
    pd_server_stop_reading(c);
    maybe_finish_close(c);
    return;
  }
  if (c->parsing)
    return; /* the parse loop goes on with the next pipelined request (on_message_complete) */
  /* The parser paused after the finished message: let it take the next one, unless the client
   * is not reading what it was sent (on_write resumes then). */
  llhttp_resume(&c->parser);
  if (pd_server_write_block(c))
    return;
  if (c->pending.len > 0 || !c->reading)
    pd_server_resume(c);
}

/* Runs the pipelined bytes held while a request was in flight. Deferred to the loop so a
 * handler that finishes inside an upstream callback never re-enters the parser. */
static void on_resume_idle(uv_idle_t *h) {
  pd_server_t *s = h->data;
  pd_list_t *l;
  while ((l = pd_list_first(&s->resume))) {
    pd_conn_t *c = pd_list_entry(l, pd_conn_t, resume_link);
    pd_list_remove(l);
    if (c->closing || c->state == CONN_INFLIGHT || c->write_blocked || c->close_after)
      continue;
    if (c->pending.len > 0) {
      pd_buf_t p = c->pending;
      pd_buf_init(&c->pending);
      llhttp_resume(&c->parser);
      pd_parser_feed(c, pd_buf_data(&p), p.len);
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

void pd_server_resume(pd_conn_t *c) {
  if (pd_list_linked(&c->resume_link))
    return;
  pd_list_insert_head(&c->srv->resume, &c->resume_link);
  uv_idle_start(&c->srv->resume_idle, on_resume_idle);
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
    pd_server_arm_timer(c, c->srv->opts.idle_timeout_ms);
  if (c->state == CONN_INFLIGHT || pd_list_linked(&c->resume_link) || c->write_blocked) {
    pd_buf_append(&c->pending, buf->base, (size_t)nread);
    if (c->pending.len > PENDING_MAX) {
      uv_read_stop(st);
      c->reading = 0;
    }
    return;
  }
  pd_parser_feed(c, buf->base, (size_t)nread);
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
    /* The handler still owns the request: abort it; the close completes in pd_server_finish. */
    abort_inflight(c);
    if (c->handles_closing)
      return; /* the handler finished at once and the close already ran */
    if (c->state == CONN_INFLIGHT) {
      pd_server_stop_reading(c);
      return;
    }
  }
  c->handles_closing = 1;
  pd_list_remove(&c->resume_link);
  pd_list_remove(&c->link);
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
  pd_parser_init(c);
  pd_list_init(&c->resume_link);
  pd_list_insert_head(&s->conns, &c->link);
  s->nconns++;
  if (c->io.handle.type == UV_TCP)
    uv_tcp_nodelay(&c->io.tcp, 1);
  if ((long)s->nconns > s->opts.max_connections) {
    /* Over the limit: say so, then close. */
    c->state = CONN_INFLIGHT;
    s->inflight++;
    pd_req_id_new(c->req.request_id);
    c->req.keep_alive = 0;
    c->req.http_minor = 1;
    pd_res_error(&c->req, 503, "Too many connections: the limit is max_connections.",
                 "server_error", NULL, "too_many_connections");
    pd_server_finish(&c->req);
    return;
  }
  if (uv_read_start(&c->io.stream, on_alloc, on_read) == 0)
    c->reading = 1;
  pd_server_arm_timer(c, s->opts.header_timeout_ms);
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
  pd_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->opts = *opts;
  s->dispatch = dispatch;
  s->ud = ud;
  pd_list_init(&s->conns);
  pd_list_init(&s->resume);
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
  pd_list_t *l, *next;
  pd_list_each(l, next, &s->conns) {
    pd_conn_t *c = pd_list_entry(l, pd_conn_t, link);
    if (force || (c->state != CONN_INFLIGHT && c->queued == 0)) {
      conn_close(c);
    } else if (c->state != CONN_INFLIGHT) {
      /* A response still being written: close once it is out (or at the grace deadline). */
      c->close_after = 1;
      pd_server_stop_reading(c);
    }
  }
}

void pd_server_free(pd_server_t *s) {
  free(s);
}
