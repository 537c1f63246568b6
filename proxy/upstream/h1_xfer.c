/* The native HTTP/1.1 client's transfers (h1_int.h): one attempt at a time on a connection of
 * its origin, a retry after a retryable status, a refused or dropped connection, the wait for a
 * free connection, the total, stall and connect deadlines, and the ending reported once. The
 * transfer owns its timer and held body; its connection is the pool's (h1.c). */
#include "upstream/h1_int.h"

/* ---- transfers: attempts, completion, failure ------------------------------------------------ */

/* An attempt failed before a complete response: retry a failed connect while retries remain,
 * else report. The connection is already detached. */
void pd_h1_xfer_attempt_failed(xfer_t *x, int result, const char *msg) {
  long delay = pd_xfer_connect_delay(x->xb.attempt);
  if (result == PD_XFER_ECONNECT && !x->xb.head_done && pd_xfer_base_may_retry(&x->xb, delay)) {
    pd_xfer_log_retry(&x->base, x->xb.attempt, msg, delay);
    x->xb.attempt++;
    pd_xfer_base_arm(&x->xb, PD_XT_RETRY, (uint64_t)delay);
    return;
  }
  x->xb.discard = 0;
  pd_xfer_base_finish(&x->xb, result, msg);
}

/* The response ended; the connection goes back to the pool when it can be reused. */
void pd_h1_xfer_attempt_complete(xfer_t *x, int keep) {
  conn_t *c = x->c;
  pd_h1up_detach(x);
  if (keep)
    pd_h1up_conn_release(c);
  else
    pd_h1up_conn_close(c);
  if (x->xb.discard) {
    long delay = pd_xfer_status_delay(&x->xb.head, x->xb.attempt);
    if (!pd_xfer_retry_fits(x->xb.deadline, uv_now(x->b->loop), delay)) {
      /* its body is gone: the retry was planned when the head came */
      pd_xfer_base_time_out(&x->xb, x->xb.attempt + 1, 0);
      return;
    }
    char why[32];
    snprintf(why, sizeof why, "status %d", x->xb.head.status);
    pd_xfer_log_retry(&x->base, x->xb.attempt, why, delay);
    x->xb.attempt++;
    pd_xfer_base_arm(&x->xb, PD_XT_RETRY, (uint64_t)delay);
    return;
  }
  if (x->xb.paused && x->xb.held.len > 0) {
    x->xb.complete_pending = 1;
    return;
  }
  pd_xfer_base_finish(&x->xb, PD_XFER_OK, "");
}

/* Gets the transfer a connection: an idle one, a new one, or a place in the queue. */
void pd_h1_xfer_acquire(xfer_t *x) {
  origin_t *o = x->o;
  pd_h1up_t *b = x->b;
  if (o->base.bad[0]) {
    pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, o->base.bad);
    return;
  }
  while (o->idle && !x->fresh_only) {
    conn_t *c = o->idle;
    o->idle = c->lnext;
    c->lnext = NULL;
    c->idle = 0;
    if (!pd_origin_conn_usable(&o->base, &c->cn.k, b->loop)) {
      pd_h1up_conn_close_keep_slot(c); /* too old: its slot is this call's */
      continue;
    }
    pd_h1up_bind_conn(c, x);
    pd_h1_wire_conn_send(c);
    return;
  }
  if (!pd_origin_has_slot(&o->base) && o->idle)
    pd_h1up_conn_close(o->idle); /* a fresh connection is needed: make room */
  if (pd_origin_has_slot(&o->base)) {
    conn_t *c = pd_h1up_conn_new(o);
    if (!c) {
      pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER,
                             "out of memory opening an upstream connection");
      return;
    }
    x->fresh_only = 0;
    pd_h1up_bind_conn(c, x);
    pd_h1up_conn_start_connect(c);
    return;
  }
  pd_origin_wait(&o->base, &x->xb.wlink, 0);
  if (x->xb.deadline)
    pd_xfer_base_arm_deadline(&x->xb, T_QUEUE);
}

static void queue_unlink(xfer_t *x) {
  pd_list_remove(&x->xb.wlink);
}

void pd_h1_xfer_serve_waiters(origin_t *o) {
  pd_h1up_t *b = o->b;
  pd_list_t *l;
  while ((l = pd_origin_next_waiter(&o->base)) && !b->own.closing &&
         (o->idle || pd_origin_has_slot(&o->base))) {
    xfer_t *x = pd_list_entry(l, xfer_t, xb.wlink);
    queue_unlink(x);
    pd_xfer_base_stop(&x->xb);
    pd_h1_xfer_acquire(x);
  }
}

/* The transfer timer's retry and queue wait (the base reports a deferred failure itself). */
static void fire(pd_xfer_base_t *t, int mode) {
  xfer_t *x = pd_list_entry(t, xfer_t, xb);
  if (mode == PD_XT_RETRY) {
    if (x->xb.deadline && uv_now(x->b->loop) >= x->xb.deadline) {
      pd_xfer_base_time_out(t, x->xb.attempt, 0);
      return;
    }
    pd_xfer_base_new_attempt(t);
    pd_h1_xfer_acquire(x);
  } else if (mode == T_QUEUE) {
    queue_unlink(x);
    pd_xfer_base_time_out(t, PD_XFER_WAITING, 0);
  }
}

void pd_h1_xfer_destroy(xfer_t *x) {
  queue_unlink(x);
  if (x->c) {
    conn_t *c = x->c;
    pd_h1up_detach(x);
    if (c->writing && !c->orphan) {
      c->orphan = x->body; /* the kernel may still be reading it */
      x->body = NULL;
    }
    pd_h1up_conn_close(c);
  }
  pd_list_remove(&x->xb.blink);
  free(x->method);
  free(x->path);
  free(x->hdrs);
  free(x->body);
  pd_xfer_base_release(&x->xb);
}

static void destroy(pd_xfer_base_t *t) {
  pd_h1_xfer_destroy(pd_list_entry(t, xfer_t, xb));
}

static void timer_closed(pd_xfer_base_t *t) {
  free(pd_list_entry(t, xfer_t, xb));
}

const pd_xfer_base_ops_t pd_h1_xfer_base_ops = {fire, destroy, timer_closed};

/* A connection error or end of stream while serving x (status < 0). */
void pd_h1_xfer_conn_failed(conn_t *c, int status, const char *what) {
  xfer_t *x = c->x;
  int stale = c->reused && !c->got_bytes;
  if (!x) {
    pd_h1up_conn_close(c);
    return;
  }
  pd_h1up_detach(x);
  if (stale && !x->xb.stale_retried) {
    /* The server closed a keep-alive connection as the request went out: nothing of the
     * response was seen, so send it again on a new connection, in this one's slot. */
    origin_t *o = c->o;
    pd_h1up_conn_close_keep_slot(c);
    x->xb.stale_retried = 1;
    x->fresh_only = 1;
    pd_xfer_base_new_attempt(&x->xb);
    pd_h1_xfer_acquire(x);
    pd_h1_xfer_serve_waiters(o);
    return;
  }
  pd_h1up_conn_close(c);
  char msg[ERRMSG_SIZE];
  if (status == UV_EOF)
    snprintf(msg, sizeof msg, "%s",
             c->got_bytes ? "the upstream closed the connection mid-response"
                          : "Empty reply from server");
  else
    snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(status));
  pd_h1_xfer_attempt_failed(x, PD_XFER_ERECV, msg);
}

void pd_h1_xfer_on_conn_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->cn.state == PD_CONN_CLOSING)
    return;
  if (c->cn.k.err) {
    int err = c->cn.k.err;
    c->cn.k.err = 0;
    pd_h1up_connect_failed(c, err);
    return;
  }
  xfer_t *x = c->x;
  if (!x) { /* idle too long */
    pd_h1up_conn_close(c);
    return;
  }
  char msg[ERRMSG_SIZE];
  uint64_t now = uv_now(c->o->b->loop);
  int connect_due = c->cn.state != PD_CONN_OPEN && x->xb.connect_timeout_ms > 0 &&
                    now >= c->cn.k.start + (uint64_t)x->xb.connect_timeout_ms;
  if (!connect_due && !(x->xb.deadline && now >= x->xb.deadline)) {
    if (!pd_h1up_stall_armed(x) || now < x->xb.rx_ms + (uint64_t)x->xb.stall_ms) {
      pd_h1up_arm_deadline(c); /* bytes came since it was armed, or the caller paused: not yet */
      return;
    }
    /* Same outcome as a timeout: not retried (the upstream may be working on the request). */
    pd_xfer_stall_msg(msg, sizeof msg, x->xb.stall_ms);
  } else if (c->cn.state != PD_CONN_OPEN)
    pd_conn_timeout_msg(&c->cn, now, msg, sizeof msg);
  else
    pd_xfer_timeout_msg(msg, sizeof msg, now - x->xb.start_ms, 0);
  pd_h1up_detach(x);
  pd_h1up_conn_close(c);
  pd_h1_xfer_attempt_failed(x, PD_XFER_ETIMEOUT, msg);
}
