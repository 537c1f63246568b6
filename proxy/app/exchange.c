/* The exchange object's lifecycle: creation, the re-entrancy guard, backpressure between the
 * client's write queue and the upstream calls (drain, abort), and the two ways a request ends:
 * finished (metrics, access log, feedback memory) or failed (an error response, or an error
 * event once the stream started). Owns the exchange and everything it holds: the chains, the
 * relay's reply, the output buffer, the keep-alive timer. See exchange.h for the modules that
 * drive it. */
#include "app/exchange.h"
#include "http/res.h"

#include <stdlib.h>
#include <string.h>

#include "app/upreq.h"
#include "core/openai.h"

static double now_seconds(uint64_t start_ns) {
  return (double)(uv_hrtime() - start_ns) / 1e9;
}

static void on_keepalive_closed(uv_handle_t *h) {
  free(h->data);
}

static void ex_free(pd_exchange_t *ex) {
  for (int i = 0; i < ex->n; i++) {
    pd_chain_t *ch = &ex->chains[i];
    if (ch->eng)
      pd_engine_free(ch->eng);
    pd_reply_free(&ch->reply);
  }
  free(ex->chains);
  if (ex->api && ex->api->release)
    ex->api->release(&ex->resp);
  json_decref(ex->body);
  free(ex->client_model);
  pd_buf_free(&ex->out);
  pd_reply_free(&ex->pass.reply);
  free(ex->url);
  if (ex->cfg)
    pd_config_unref(ex->cfg);
  if (ex->keepalive_on)
    uv_close((uv_handle_t *)&ex->keepalive, on_keepalive_closed);
  else
    free(ex);
}

int pd_exchange_leave(pd_exchange_t *ex) {
  if (pd_guard_leave(&ex->guard)) {
    ex_free(ex);
    return 1;
  }
  return ex->finished;
}

static void cancel_all(pd_exchange_t *ex) {
  for (int i = 0; i < ex->n; i++)
    pd_reply_cancel(ex, &ex->chains[i].reply);
  pd_reply_cancel(ex, &ex->pass.reply);
}

void pd_exchange_flush(pd_exchange_t *ex) {
  if (ex->out.len == 0 || ex->aborted)
    return;
  if (pd_res_write_buf(ex->req, &ex->out) && !ex->pressure) {
    ex->pressure = 1;
    for (int i = 0; i < ex->n; i++)
      if (ex->chains[i].reply.xfer)
        pd_xfer_pause(ex->chains[i].reply.xfer);
    if (ex->pass.reply.xfer)
      pd_xfer_pause(ex->pass.reply.xfer);
  }
}

/* Resumes chain i; reports whether the client's write queue is above its watermark again. */
static int resume_chain(void *ud, int i) {
  pd_exchange_t *ex = ud;
  if (ex->chains[i].reply.xfer)
    pd_xfer_resume(ex->chains[i].reply.xfer);
  return ex->pressure || ex->finished;
}

static void on_drain(pd_req_t *req) {
  pd_exchange_t *ex = req->data;
  pd_exchange_enter(ex);
  ex->pressure = 0;
  /* A resumed transfer may deliver what it holds at once: once one chain's delivery raised
   * pressure again the others stay paused until the next drain, which starts after it. */
  if (ex->n > 0)
    pd_engine_resume_round(ex->n, &ex->resume_next, resume_chain, ex);
  if (ex->pass.reply.xfer && !ex->finished && !ex->pressure)
    pd_xfer_resume(ex->pass.reply.xfer);
  pd_exchange_leave(ex);
}

static void on_abort(pd_req_t *req) {
  pd_exchange_t *ex = req->data;
  pd_exchange_enter(ex);
  ex->aborted = 1;
  pd_metrics_client_disconnect(ex->w->metrics);
  cancel_all(ex);
  pd_exchange_finish(ex);
  pd_exchange_leave(ex);
}

static const pd_req_hooks_t ex_hooks = {on_abort, on_drain};

pd_exchange_t *pd_exchange_new(pd_worker_t *w, pd_req_t *r, pd_config_t *cfg) {
  pd_exchange_t *ex = calloc(1, sizeof *ex);
  if (!ex)
    return NULL;
  ex->w = w;
  ex->req = r;
  ex->cfg = pd_config_ref(cfg);
  pd_buf_init(&ex->out);
  pd_reply_init(&ex->pass.reply, PD_EXCHANGE_MAX_SSE_EVENT);
  r->data = ex;
  r->hooks = &ex_hooks;
  pd_metrics_inflight(w->metrics, 1);
  pd_exchange_enter(ex);
  return ex;
}

void pd_exchange_sum_usage(pd_exchange_t *ex) {
  memset(&ex->usage, 0, sizeof ex->usage);
  ex->think_calls = 0;
  for (int i = 0; i < ex->n; i++) {
    pd_result_t r;
    if (!ex->chains[i].eng)
      continue;
    pd_engine_result(ex->chains[i].eng, &r);
    ex->usage.prompt_tokens += r.usage.prompt_tokens;
    ex->usage.completion_tokens += r.usage.completion_tokens;
    ex->usage.reasoning_tokens += r.usage.reasoning_tokens;
    if (r.think_calls > ex->think_calls)
      ex->think_calls = r.think_calls;
  }
}

void pd_exchange_finish(pd_exchange_t *ex) {
  if (ex->finished)
    return;
  ex->finished = 1;
  pd_guard_close(&ex->guard); /* always inside an entered frame: the outermost leave frees */
  pd_req_t *r = ex->req;
  pd_worker_t *w = ex->w;
  if (ex->keepalive_on)
    uv_timer_stop(&ex->keepalive);
  if (ex->chains)
    pd_exchange_sum_usage(ex); /* also for failed or aborted chains: what was spent is reported */
  int status = ex->aborted ? 499 : r->status;
  double secs = now_seconds(r->start_ns);
  const char *route = ex->route ? ex->route->name : NULL;
  pd_metrics_request(w->metrics, route, ex->variant, status, secs, &ex->usage, ex->think_calls);
  pd_metrics_inflight(w->metrics, -1);
  if (ex->route && ex->variant)
    pd_feedback_remember(w->feedback, r->request_id, route, ex->variant);
  pd_access_entry_t e = {r->request_id,
                         r->method,
                         r->url,
                         route,
                         ex->variant,
                         ex->think_calls,
                         ex->upstream_calls,
                         status,
                         ex->stream,
                         secs * 1000.0,
                         ex->usage.prompt_tokens,
                         ex->usage.completion_tokens,
                         ex->usage.reasoning_tokens};
  /* The path without the query, cut at 511 bytes. url is NUL-terminated right after the path
   * unless a query follows: only then (or for a long path) is it copied. */
  char path[512];
  if (r->url[r->path_len] == '\0' && r->path_len < sizeof path) {
    e.path = r->url;
  } else {
    size_t n = r->path_len < sizeof path - 1 ? r->path_len : sizeof path - 1;
    memcpy(path, r->url, n);
    path[n] = '\0';
    e.path = path;
  }
  pd_access_log_write(w->app->access_log, &e);
  cancel_all(ex);
  r->data = NULL;
  r->hooks = NULL;
  pd_server_finish(r);
  ex->req = NULL;
}

void pd_exchange_fail_body(pd_exchange_t *ex, int status, const char *body, size_t len,
                           const char *retry_after, const char *message, const char *type,
                           const char *code) {
  if (ex->failed || ex->finished)
    return;
  ex->failed = 1;
  cancel_all(ex);
  pd_req_t *r = ex->req;
  if (!ex->aborted) {
    if (!ex->started) {
      const char *extra[12];
      size_t n = 0;
      if (ex->variant)
        pd_upreq_ponder_headers(ex, 0, extra, &n);
      if (retry_after) {
        extra[n++] = "retry-after";
        extra[n++] = retry_after;
      }
      extra[n] = NULL;
      if (body) {
        pd_res_send(r, status, "application/json", extra, body, len);
      } else {
        pd_buf_t b;
        pd_buf_init(&b);
        pd_openai_error(&b, message, type, NULL, code);
        pd_res_send(r, status, "application/json", extra, pd_buf_data(&b), b.len);
        pd_buf_free(&b);
      }
    } else {
      const char *up = body && len ? body : NULL;
      if (ex->api)
        ex->api->error_event(&ex->out, &ex->resp, up, len, message, type, code);
      else /* a stream relayed without a client API: OpenAI's error event */
        pd_api_sse_error(&ex->out, up, len, message, type, code);
      pd_exchange_flush(ex);
      /* The body is left unterminated and the connection closes: clients and intermediaries
       * see a truncated response, not a complete one. */
      pd_res_end(r, 1);
      r->status = status;
    }
  }
  pd_exchange_finish(ex);
}

void pd_exchange_fail(pd_exchange_t *ex, int status, const char *message, const char *type,
                      const char *code) {
  pd_exchange_fail_body(ex, status, NULL, 0, NULL, message, type, code);
}

void pd_exchange_fail_400(pd_exchange_t *ex, const char *message, const char *param) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, message, "invalid_request_error", param, NULL);
  pd_exchange_fail_body(ex, 400, pd_buf_data(&b), b.len, NULL, NULL, NULL, NULL);
  pd_buf_free(&b);
}
