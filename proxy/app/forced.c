/* The forced exchange: its chains, their upstream calls and the client's response. See
 * forced.h. What the client sees is written only through ex->api's writers. */
#include "app/forced.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/exchange.h"
#include "http/res.h"
#include "app/upreq.h"
#include "core/openai.h"

#define KEEPALIVE_MS 15000
#define MAX_N 128

static void chain_next(pd_chain_t *ch);

static void keepalive_tick(uv_timer_t *t) {
  pd_exchange_t *ex = t->data;
  if (ex->finished || !ex->started || ex->pressure)
    return;
  pd_exchange_enter(ex);
  pd_buf_appends(&ex->out, ": keep-alive\n\n");
  pd_exchange_flush(ex);
  pd_exchange_leave(ex);
}

/* A writer of the API refused: what it holds for the response would pass max_reply_bytes, or
 * memory ran out. Returns 1 when the exchange failed. */
static int writer_failed(pd_exchange_t *ex, int rc) {
  if (rc >= 0)
    return 0;
  if (rc == PD_API_ETOOLARGE) {
    char msg[200];
    snprintf(msg, sizeof msg, "The response exceeds limits.max_reply_bytes (%ld bytes).",
             ex->cfg->limits.max_reply_bytes);
    pd_exchange_fail(ex, 502, msg, "upstream_error", "upstream_error");
  } else {
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
  }
  return 1;
}

static void start_stream(pd_exchange_t *ex) {
  if (ex->started)
    return;
  ex->started = 1;
  const char *extra[12];
  size_t n = 0;
  pd_upreq_ponder_headers(ex, 1, extra, &n);
  extra[n++] = "cache-control";
  extra[n++] = "no-cache";
  extra[n] = NULL;
  pd_res_start(ex->req, 200, "text/event-stream", extra, -1);
  writer_failed(ex, ex->api->stream_start(&ex->out, &ex->resp));
  if (ex->route->reasoning == PD_REASONING_HIDDEN) {
    uv_timer_init(&ex->w->loop, &ex->keepalive);
    ex->keepalive.data = ex;
    ex->keepalive_on = 1;
    uv_timer_start(&ex->keepalive, keepalive_tick, KEEPALIVE_MS, KEEPALIVE_MS);
  }
}

/* The engine's outputs, written as the API's stream events in the route's display. */
static void on_emit(void *ud, const pd_out_t *o) {
  pd_chain_t *ch = ud;
  pd_exchange_t *ex = ch->ex;
  if (!ex->stream || ex->failed)
    return;
  start_stream(ex);
  if (o->len == 0 && (o->kind == PD_OUT_THINK || o->kind == PD_OUT_CONTENT))
    return;
  writer_failed(ex, ex->api->delta(&ex->out, &ex->resp, &ch->choice, o));
}

static void complete(pd_exchange_t *ex) {
  pd_exchange_sum_usage(ex);
  if (ex->stream) {
    start_stream(ex);
    if (ex->failed || writer_failed(ex, ex->api->stream_end(&ex->out, &ex->resp, &ex->usage)))
      return;
    pd_exchange_flush(ex);
    ex->req->status = 200;
    pd_res_end(ex->req, 0);
  } else {
    pd_result_t *res = calloc((size_t)ex->n, sizeof *res);
    pd_buf_t b;
    pd_buf_init(&b);
    int rc = -1;
    if (res) {
      for (int i = 0; i < ex->n; i++)
        pd_engine_result(ex->chains[i].eng, &res[i]);
      rc = ex->api->final(&b, &ex->resp, res, (size_t)ex->n);
    }
    free(res);
    if (writer_failed(ex, rc)) {
      pd_buf_free(&b);
      return;
    }
    const char *extra[PD_UPREQ_PONDER_NHEADERS + 1];
    size_t n = 0;
    pd_upreq_ponder_headers(ex, 0, extra, &n);
    extra[n] = NULL;
    pd_res_send(ex->req, 200, "application/json", extra, pd_buf_data(&b), b.len);
    pd_buf_free(&b);
  }
  pd_exchange_finish(ex);
}

/* A feeder of the engine refused a reply: too much thinking, a stream that broke off, or a
 * reply it cannot read. */
static void fail_engine(pd_chain_t *ch, int rc, const char *unreadable) {
  pd_exchange_t *ex = ch->ex;
  if (ex->finished)
    return;
  if (rc == PD_ENGINE_EINCOMPLETE) {
    pd_reply_fail_bad(ex, ch->reply.status, "stream ended before finish_reason or [DONE]",
                      "The upstream stream ended before it was complete.");
  } else if (rc == PD_ENGINE_ETOOLARGE) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "The upstream's thinking for this request exceeds limits.max_reply_bytes (%ld bytes).",
             ex->cfg->limits.max_reply_bytes);
    pd_reply_fail_bad(ex, ch->reply.status, "thinking over limits.max_reply_bytes", msg);
  } else {
    pd_reply_fail_bad(ex, ch->reply.status, "reply not readable", unreadable);
  }
}

/* After the engine took a stream chunk (rc its verdict): 1 to stop reading the stream. */
static int chunk_taken(pd_chain_t *ch, int rc) {
  if (ch->ex->finished) /* a writer refused what the chunk emitted */
    return 1;
  if (rc < 0) {
    fail_engine(ch, rc, "The upstream sent a stream chunk ponder cannot read.");
    return 1;
  }
  return 0;
}

static int on_sse_event(void *ud, const char *data, size_t len) {
  pd_chain_t *ch = ud;
  pd_exchange_t *ex = ch->ex;
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    /* The end of the call's stream: without it, and without a finish_reason, a stream that
     * stops is a cut one (pd_engine_on_call_end). */
    pd_engine_on_done_marker(ch->eng);
    return 0;
  }
  /* The chunk read in one pass, without a tree; an error event, a chunk that is not one JSON
   * object, and the completions dialect's chunks take the tree path below. */
  pd_openai_msg_t m;
  if (pd_engine_reads_one_pass(ch->eng) && pd_openai_read_reply(data, len, 1, &m) && !m.error) {
    int rc = pd_engine_on_chunk_read(ch->eng, &m, on_emit, ch);
    return chunk_taken(ch, rc);
  }
  json_t *j = pd_openai_load_reply(data, len);
  if (!j) {
    pd_reply_fail_bad(ex, ch->reply.status, "stream event not valid JSON",
                      "The upstream sent a stream event that is not valid JSON.");
    return 1;
  }
  if (pd_openai_is_error(j)) {
    /* The error goes to the client whole, not as the engine's cut-down tree. */
    pd_reply_log_failure(ex, ch->reply.status, "error event in the stream");
    json_decref(j);
    j = json_loadb(data, len, 0, NULL);
    char *s = json_dumps(j, JSON_COMPACT);
    pd_exchange_fail_body(ex, 502, s, s ? strlen(s) : 0, NULL, "The upstream reported an error.",
                          "upstream_error", "upstream_error");
    free(s);
    json_decref(j);
    return 1;
  }
  int rc = pd_engine_on_chunk(ch->eng, j, on_emit, ch);
  json_decref(j);
  return chunk_taken(ch, rc);
}

static void chain_on_head(void *ud, const pd_xfer_head_t *h) {
  pd_chain_t *ch = ud;
  pd_exchange_t *ex = ch->ex;
  pd_reply_head(&ch->reply, h);
  if (pd_reply_ok(&ch->reply) && ex->stream && ch->reply.sse) {
    pd_exchange_enter(ex);
    start_stream(ex);
    pd_exchange_flush(ex);
    pd_exchange_leave(ex);
  }
}

static int chain_on_data(void *ud, const char *p, size_t n) {
  pd_chain_t *ch = ud;
  pd_exchange_t *ex = ch->ex;
  if (ex->finished)
    return -1;
  int ok = pd_reply_ok(&ch->reply);
  if (!ok || !ch->reply.sse) {
    /* A reply held whole is bounded; a streamed one is relayed as it comes (its thinking is
     * bounded by the engine, the answer is not kept). */
    long limit = ok ? ex->cfg->limits.max_reply_bytes : PD_REPLY_MAX_ERROR_BODY;
    if (pd_reply_hold(&ch->reply, p, n, limit) < 0) {
      pd_exchange_enter(ex);
      pd_reply_fail_too_large(ex, ch->reply.status);
      pd_exchange_leave(ex);
      return -1;
    }
    return 0;
  }
  pd_exchange_enter(ex);
  int rc = pd_sse_feed(&ch->reply.parser, p, n, on_sse_event, ch);
  if (rc < 0 && !ex->finished)
    pd_reply_fail_bad(ex, ch->reply.status, "stream event too large",
                      "The upstream stream event is too large.");
  if (!ex->finished)
    pd_exchange_flush(ex);
  int pause = ex->pressure;
  if (pd_exchange_leave(ex))
    return -1;
  return pause ? 1 : 0;
}

static void chain_on_done(void *ud, int result, const char *errmsg) {
  pd_chain_t *ch = ud;
  pd_exchange_t *ex = ch->ex;
  pd_reply_count(ex, &ch->reply, result);
  pd_exchange_enter(ex);
  if (ex->finished)
    goto out;
  if (result != PD_XFER_OK || !pd_reply_ok(&ch->reply)) {
    pd_reply_fail(ex, &ch->reply, result, errmsg);
    goto out;
  }
  if (ch->reply.sse) {
    /* A stream that ended without its last blank line still delivers the last event. */
    pd_sse_feed(&ch->reply.parser, "\n\n", 2, on_sse_event, ch);
    if (ex->finished)
      goto out;
    int rc = pd_engine_on_call_end(ch->eng, on_emit, ch);
    if (ex->finished)
      goto out;
    if (rc < 0) {
      fail_engine(ch, rc, "The upstream stream could not be read.");
      goto out;
    }
  } else {
    /* Read in one pass like a stream chunk (on_sse_event); the tree only where it must. */
    const char *body = pd_buf_data(&ch->reply.body);
    size_t blen = ch->reply.body.len;
    pd_openai_msg_t m;
    int rc;
    if (pd_engine_reads_one_pass(ch->eng) && pd_openai_read_reply(body, blen, 0, &m)) {
      rc = pd_engine_on_response_read(ch->eng, &m, on_emit, ch);
    } else {
      json_t *j = pd_openai_load_reply(body, blen);
      rc = j ? pd_engine_on_response(ch->eng, j, on_emit, ch) : -1;
      json_decref(j);
    }
    if (rc < 0) {
      fail_engine(ch, rc, "The upstream reply is not a valid OpenAI chat completion.");
      goto out;
    }
  }
  pd_buf_reset(&ch->reply.body);
  pd_exchange_flush(ex);
  chain_next(ch);
out:
  pd_exchange_leave(ex);
}

static void chain_next(pd_chain_t *ch) {
  pd_exchange_t *ex = ch->ex;
  if (ex->finished)
    return;
  pd_call_t call;
  int more = pd_engine_next(ch->eng, &call);
  if (more < 0) {
    pd_exchange_fail(ex, 500, "Could not build the upstream request.", "server_error",
                     "internal_error");
    return;
  }
  if (more == 0) {
    if (ex->stream) {
      start_stream(ex);
      /* The answer call's own reason: a chain is done only after a complete answer call. */
      pd_result_t res;
      pd_engine_result(ch->eng, &res);
      if (writer_failed(ex, ex->api->finish(&ex->out, &ex->resp, &ch->choice, res.finish_reason)))
        return;
      pd_exchange_flush(ex);
    }
    if (--ex->active == 0)
      complete(ex);
    return;
  }
  static const pd_xfer_cbs_t cbs = {chain_on_head, chain_on_data, chain_on_done};
  pd_reply_restart(&ch->reply);
  int rc = pd_upreq_start_call(ex, call.path, call.body, call.body_len, &cbs, ch, &ch->reply.xfer);
  if (rc == PD_UPREQ_EURL)
    pd_exchange_fail(ex, 500, "Could not build the upstream URL.", "server_error",
                     "internal_error");
  else if (rc < 0)
    pd_exchange_fail(ex, 502, "Could not start the upstream request.", "upstream_error",
                     "upstream_error");
  else if (ex->pressure)
    pd_xfer_pause(ch->reply.xfer);
}

static uint64_t rnd_cb(void *ud) {
  return pd_worker_rand(ud);
}

void pd_forced_start(pd_exchange_t *ex, const pd_policy_t *pol) {
  json_t *nj = json_object_get(ex->body, "n");
  if (nj && !json_is_null(nj) &&
      (!json_is_integer(nj) || json_integer_value(nj) < 1 || json_integer_value(nj) > MAX_N)) {
    pd_exchange_fail_400(ex, "Invalid value for 'n': expected an integer between 1 and 128.", "n");
    return;
  }
  int n = json_is_integer(nj) ? (int)json_integer_value(nj) : 1;
  /* Every call is counted before the first is made: n chains of rounds thinking calls and an
   * answer each (with min_think_tokens, rounds is the cap). */
  long calls = pd_engine_max_calls(n, ex->rounds, pd_engine_should_force(ex->body, ex->rounds)),
       limit = ex->cfg->limits.max_upstream_calls;
  if (calls > limit) {
    const char *param = n > 1                                       ? "n"
                        : pd_req_header(ex->req, "x-ponder-rounds") ? "x-ponder-rounds"
                        : ex->rounds_param                          ? ex->rounds_param
                                                                    : ex->effort_param;
    char msg[300];
    snprintf(msg, sizeof msg,
             "This request would make %ld upstream calls (n=%d x (%d rounds + 1)), more than "
             "limits.max_upstream_calls (%ld): lower 'n' or the rounds.",
             calls, n, ex->rounds, limit);
    pd_exchange_fail_400(ex, msg, param);
    return;
  }
  ex->kind = PD_EXCHANGE_FORCED;
  ex->chains = calloc((size_t)n, sizeof *ex->chains);
  if (!ex->chains) {
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return;
  }
  ex->n = n;
  pd_openai_new_id(ex->resp.id, ex->api->id_prefix, rnd_cb, ex->w);
  ex->resp.created = (long)time(NULL);
  ex->resp.n = n;
  const char *model = ex->route->model ? ex->route->model : ex->client_model;
  pd_engine_opts_t o = {pol,        ex->rounds,
                        model,      ex->ucfg->token_limit_param,
                        ex->stream, ex->cfg->limits.max_reply_bytes,
                        ex->stream};
  for (int i = 0; i < n; i++) {
    pd_chain_t *ch = &ex->chains[i];
    ch->ex = ex;
    ch->choice.index = i;
    pd_reply_init(&ch->reply, PD_EXCHANGE_MAX_SSE_EVENT);
    ch->eng = pd_engine_new(&o, ex->body);
    if (!ch->eng) {
      pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return;
    }
  }
  ex->active = n;
  for (int i = 0; i < n && !ex->finished; i++)
    chain_next(&ex->chains[i]);
}
