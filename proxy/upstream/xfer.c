/* The transfer base (upstream_int.h): the retry, deadline and message rules every framing uses,
 * and what a transfer of every framing (h1*.c, h2*.c, curl.c) keeps the same way: the caller's
 * callbacks around the re-entrancy guard, the head and held body, the deferred failure, the
 * ending reported once, and the transfer's own timer, whose framing-specific modes go to the
 * framing's const ops table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "upstream/upstream_int.h"

/* ---- retry, deadline and message rules ------------------------------------------------------ */

void pd_xfer_log_retry(const pd_xfer_t *x, int attempt, const char *why, long delay_ms) {
  pd_log_info(x->reqid[0] ? x->reqid : NULL,
              "upstream %s: attempt %d failed (%s), retrying in %ld ms", x->target, attempt + 1,
              why, delay_ms);
}

void pd_xfer_stall_msg(char *buf, size_t n, long stall_ms) {
  snprintf(buf, n, "Operation stalled: no data from the upstream for %ld ms", stall_ms);
}

void pd_xfer_timeout_msg(char *buf, size_t n, uint64_t elapsed_ms, int attempts) {
  if (attempts > 0)
    snprintf(buf, n, "Operation timed out after %lu milliseconds (%d attempts)",
             (unsigned long)elapsed_ms, attempts);
  else
    snprintf(buf, n, "Operation timed out after %lu milliseconds%s", (unsigned long)elapsed_ms,
             attempts == PD_XFER_WAITING ? " waiting for a connection" : "");
}

uint64_t pd_xfer_deadline(uint64_t now, long timeout_ms) {
  return timeout_ms > 0 ? now + (uint64_t)timeout_ms : 0;
}

int pd_xfer_retry_fits(uint64_t deadline, uint64_t now, long delay_ms) {
  return deadline == 0 || now + (uint64_t)(delay_ms > 0 ? delay_ms : 0) < deadline;
}

int pd_xfer_retryable_status(int status) {
  return status == 429 || status >= 500;
}

long pd_xfer_status_delay(const pd_xhead_t *h, int attempt) {
  long backoff = 250L << (attempt < 6 ? attempt : 6);
  long delay = h->retry_after_ms >= 0 ? h->retry_after_ms : backoff;
  return delay > PD_RETRY_AFTER_CAP_MS ? PD_RETRY_AFTER_CAP_MS : delay;
}

long pd_xfer_connect_delay(int attempt) {
  return 50L << (attempt < 6 ? attempt : 6);
}

/* ---- the transfer base: callbacks, retries, the call's clock ----------------------------- */

void pd_xfer_base_head(pd_xfer_base_t *t) {
  if (t->head_done || t->cancelled)
    return;
  t->head_done = 1;
  t->in_cb++;
  pd_xhead_emit(&t->head, t->cbs.on_head, t->ud);
  t->in_cb--;
}

void pd_xfer_base_done(pd_xfer_base_t *t, int result, const char *msg) {
  if (result == PD_XFER_OK)
    pd_xfer_base_head(t);
  if (!t->cancelled && t->cbs.on_done) {
    t->in_cb++;
    t->cbs.on_done(t->ud, result, msg);
    t->in_cb--;
  }
}

int pd_xfer_base_give_held(pd_xfer_base_t *t, size_t *n) {
  char *data = pd_buf_steal(&t->held, n);
  int r = pd_xfer_base_give(t, data, *n);
  free(data);
  return r;
}

int pd_xfer_base_may_retry(const pd_xfer_base_t *t, long delay_ms) {
  return t->attempt < t->retries && pd_xfer_retry_fits(t->deadline, uv_now(t->loop), delay_ms);
}

void pd_xfer_base_fail_later(pd_xfer_base_t *t, int result, const char *msg) {
  t->fail_result = result;
  snprintf(t->fail_msg, sizeof t->fail_msg, "%s", msg);
}

void pd_xfer_base_new_attempt(pd_xfer_base_t *t) {
  t->discard = 0;
  t->complete_pending = 0;
  pd_buf_reset(&t->held);
  pd_xhead_reset(&t->head);
}

void pd_xfer_base_init(pd_xfer_base_t *t, const pd_xfer_base_ops_t *ops, uv_loop_t *loop,
                       const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs, void *ud) {
  uint64_t now = uv_now(loop);
  t->ops = ops;
  t->loop = loop;
  t->connect_timeout_ms = o->connect_timeout_ms;
  t->timeout_ms = o->timeout_ms;
  t->stall_ms = o->stall_timeout_ms;
  t->retries = o->retries;
  t->cbs = *cbs;
  t->ud = ud;
  t->start_ns = uv_hrtime();
  t->start_ms = now;
  t->deadline = pd_xfer_deadline(now, o->timeout_ms);
  pd_list_init(&t->wlink);
  pd_list_init(&t->blink);
  pd_xhead_init(&t->head);
  pd_buf_init(&t->held);
}

int pd_xfer_base_cancel(pd_xfer_base_t *t) {
  if (t->cancelled)
    return 0;
  t->cancelled = 1;
  return !t->in_cb;
}

double pd_xfer_base_elapsed(const pd_xfer_base_t *t) {
  return (double)(uv_hrtime() - t->start_ns) / 1e9;
}

int pd_xfer_sends_length(const pd_xfer_opts_t *o) {
  return o->body || strcmp(o->method, "POST") == 0 || strcmp(o->method, "PUT") == 0 ||
         strcmp(o->method, "PATCH") == 0;
}

/* ---- the transfer's timer and its ending -------------------------------------------------- */

static void on_timer(uv_timer_t *h) {
  pd_xfer_base_t *t = h->data;
  int mode = t->timer_mode;
  t->timer_mode = PD_XT_NONE;
  if (t->cancelled || mode == PD_XT_NONE)
    return;
  if (mode == PD_XT_FAIL)
    pd_xfer_base_finish(t, t->fail_result, t->fail_msg);
  else
    t->ops->fire(t, mode);
}

void pd_xfer_base_arm(pd_xfer_base_t *t, int mode, uint64_t ms) {
  if (!t->timer_open) {
    uv_timer_init(t->loop, &t->timer);
    t->timer.data = t;
    t->timer_open = 1;
  }
  t->timer_mode = mode;
  uv_timer_start(&t->timer, on_timer, ms, 0);
}

void pd_xfer_base_arm_deadline(pd_xfer_base_t *t, int mode) {
  if (!t->deadline) {
    pd_xfer_base_stop(t);
    return;
  }
  uint64_t now = uv_now(t->loop);
  pd_xfer_base_arm(t, mode, t->deadline > now ? t->deadline - now : 0);
}

void pd_xfer_base_stop(pd_xfer_base_t *t) {
  if (t->timer_mode != PD_XT_NONE)
    uv_timer_stop(&t->timer);
  t->timer_mode = PD_XT_NONE;
}

void pd_xfer_base_fail_soon(pd_xfer_base_t *t, int result, const char *msg) {
  pd_xfer_base_fail_later(t, result, msg);
  pd_xfer_base_arm(t, PD_XT_FAIL, 0);
}

void pd_xfer_base_finish(pd_xfer_base_t *t, int result, const char *msg) {
  pd_xfer_base_stop(t);
  pd_xfer_base_done(t, result, msg);
  t->ops->destroy(t);
}

void pd_xfer_base_time_out(pd_xfer_base_t *t, int attempts, int soon) {
  char msg[sizeof t->fail_msg];
  pd_xfer_timeout_msg(msg, sizeof msg, uv_now(t->loop) - t->start_ms, attempts);
  if (soon)
    pd_xfer_base_fail_soon(t, PD_XFER_ETIMEOUT, msg);
  else
    pd_xfer_base_finish(t, PD_XFER_ETIMEOUT, msg);
}

static void on_timer_closed(uv_handle_t *h) {
  pd_xfer_base_t *t = h->data;
  t->ops->timer_closed(t);
}

void pd_xfer_base_release(pd_xfer_base_t *t) {
  pd_xhead_free(&t->head);
  pd_buf_free(&t->held);
  t->timer_mode = PD_XT_NONE;
  if (t->timer_open) {
    t->timer_open = 0;
    uv_close((uv_handle_t *)&t->timer, on_timer_closed); /* stops it */
  } else {
    t->ops->timer_closed(t);
  }
}
