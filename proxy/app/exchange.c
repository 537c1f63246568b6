/* The exchange: one client request from dispatch to the last byte. It routes the request,
 * runs the forcing engine's chains against the upstream (or passes the request through), and
 * writes the JSON response or the SSE stream with backpressure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"
#include "app/dispatch.h"
#include "core/engine.h"
#include "base/log.h"
#include "core/openai.h"
#include "core/router.h"
#include "core/sse.h"
#include "app/worker.h"
#include "http/res.h"

#define MAX_ERROR_BODY (1024L * 1024)
#define MAX_SSE_EVENT (8L * 1024 * 1024)
#define KEEPALIVE_MS 15000
#define MAX_N 128

typedef enum { EX_PASS = 0, EX_FORCED, EX_MODELS } ex_kind_t;

typedef struct ex ex_t;

typedef struct chain {
  ex_t *ex;
  int index;
  pd_engine_t *eng;
  pd_xfer_t *xfer;
  int status;
  int sse_reply;    /* the current call answers with text/event-stream */
  pd_buf_t body;    /* a whole reply (JSON, or an error body) */
  long reply_bytes; /* of the current call's reply held whole: limits.max_reply_bytes */
  pd_sse_t sse;
  int think_open, think_closed; /* inline display */
  char *retry_after;            /* of an error reply, relayed to the client */
} chain_t;

struct ex {
  pd_worker_t *w;
  pd_req_t *req;
  pd_config_t *cfg;
  const pd_route_t *route;
  const pd_upstream_cfg_t *ucfg;
  const char *variant;
  int rounds;
  ex_kind_t kind;
  json_t *body;
  char *client_model;
  int stream, include_usage;
  char id[48];
  long created;
  chain_t *chains;
  int n, active;
  int started; /* the response head went out */
  int failed, finished, aborted;
  int depth; /* callbacks on the stack: free only when it drops to 0 */
  int pressure;
  int resume_next;    /* the chain on_drain resumes first (round robin) */
  int rounds_in_body; /* "ponder": {"rounds": ...} was sent (names the param of a 400) */
  int effort_in_body; /* "reasoning_effort" was sent (names the param of a 400) */
  pd_buf_t out;       /* SSE events waiting to be written */
  /* Pass-through. */
  pd_xfer_t *pxfer;
  int pstatus;
  int psse;
  int pbuffer;   /* buffering an error (or models) body instead of relaying */
  int pvalidate; /* buffering a chat reply to check it before relaying */
  int premodel;  /* a mapped model: put the client's model name back into the reply */
  int pusage;    /* reading the usage chunk of a relayed chat stream (bytes relayed as they are) */
  pd_sse_t psse_parser;
  pd_buf_t pbody;
  char *pretry_after;
  /* Upstream URLs: the base_url's parts (pointing into cfg) and the pass-through URL. */
  pd_url_base_t base;
  char *url;
  /* Accounting. */
  int upstream_calls;
  int think_calls;
  pd_usage_t usage;
  uv_timer_t keepalive;
  int keepalive_on;
  char rounds_hdr[24];
};

static const pd_req_hooks_t ex_hooks;
static void chain_next(chain_t *ch);
static void ex_fail(ex_t *ex, int status, const char *message, const char *type, const char *code);
static void ex_finish(ex_t *ex);
static void add_usage(ex_t *ex);

/* ---- helpers -------------------------------------------------------------------------------- */

static double now_seconds(uint64_t start_ns) {
  return (double)(uv_hrtime() - start_ns) / 1e9;
}

static void ex_enter(ex_t *ex) {
  ex->depth++;
}

static void on_keepalive_closed(uv_handle_t *h) {
  free(h->data);
}

static void ex_free(ex_t *ex) {
  for (int i = 0; i < ex->n; i++) {
    chain_t *ch = &ex->chains[i];
    if (ch->eng)
      pd_engine_free(ch->eng);
    pd_buf_free(&ch->body);
    pd_sse_free(&ch->sse);
    free(ch->retry_after);
  }
  free(ex->chains);
  json_decref(ex->body);
  free(ex->client_model);
  pd_buf_free(&ex->out);
  pd_buf_free(&ex->pbody);
  pd_sse_free(&ex->psse_parser);
  free(ex->pretry_after);
  free(ex->url);
  if (ex->cfg)
    pd_config_unref(ex->cfg);
  if (ex->keepalive_on)
    uv_close((uv_handle_t *)&ex->keepalive, on_keepalive_closed);
  else
    free(ex);
}

/* Leaves a callback; frees the exchange if it finished meanwhile. Returns 1 when it is gone. */
static int ex_leave(ex_t *ex) {
  if (--ex->depth == 0 && ex->finished) {
    ex_free(ex);
    return 1;
  }
  return ex->finished;
}

/* Ends a live upstream call that ponder abandons before its reply is complete (a reply it
 * refuses, a sibling chain's failure, the client gone), counting it first: a cancelled transfer
 * runs no on_done, where the calls that end by themselves are counted. Its code is "499", as a
 * request whose client went away is counted; its time so far goes into the duration. */
static void cancel_xfer(ex_t *ex, pd_xfer_t **xp) {
  if (!*xp)
    return;
  pd_metrics_upstream(ex->w->metrics, ex->ucfg->name, "499", pd_xfer_elapsed(*xp));
  pd_xfer_cancel(*xp);
  *xp = NULL;
}

static void ex_cancel_all(ex_t *ex) {
  for (int i = 0; i < ex->n; i++)
    cancel_xfer(ex, &ex->chains[i].xfer);
  cancel_xfer(ex, &ex->pxfer);
}

static void flush_out(ex_t *ex) {
  if (ex->out.len == 0 || ex->aborted)
    return;
  if (pd_res_write_buf(ex->req, &ex->out) && !ex->pressure) {
    ex->pressure = 1;
    for (int i = 0; i < ex->n; i++)
      if (ex->chains[i].xfer)
        pd_xfer_pause(ex->chains[i].xfer);
    if (ex->pxfer)
      pd_xfer_pause(ex->pxfer);
  }
}

/* Resumes chain i; reports whether the client's write queue is above its watermark again. */
static int resume_chain(void *ud, int i) {
  ex_t *ex = ud;
  if (ex->chains[i].xfer)
    pd_xfer_resume(ex->chains[i].xfer);
  return ex->pressure || ex->finished;
}

static void on_drain(pd_req_t *req) {
  ex_t *ex = req->data;
  ex_enter(ex);
  ex->pressure = 0;
  /* A resumed transfer may deliver what it holds at once: once one chain's delivery raised
   * pressure again the others stay paused until the next drain, which starts after it. */
  if (ex->n > 0)
    pd_engine_resume_round(ex->n, &ex->resume_next, resume_chain, ex);
  if (ex->pxfer && !ex->finished && !ex->pressure)
    pd_xfer_resume(ex->pxfer);
  ex_leave(ex);
}

static void on_abort(pd_req_t *req) {
  ex_t *ex = req->data;
  ex_enter(ex);
  ex->aborted = 1;
  pd_metrics_client_disconnect(ex->w->metrics);
  ex_cancel_all(ex);
  ex_finish(ex);
  ex_leave(ex);
}

static const pd_req_hooks_t ex_hooks = {on_abort, on_drain};

/* Counts a finished upstream call in the metrics and forgets the transfer (freed by the
 * upstream module right after its on_done). */
static void count_upstream(ex_t *ex, pd_xfer_t **xp, int result, int status) {
  double secs = *xp ? pd_xfer_elapsed(*xp) : 0.0;
  *xp = NULL;
  char num[24];
  const char *code = num;
  if (result == PD_XFER_ETIMEOUT)
    code = "timeout";
  else if (result != PD_XFER_OK && status == 0)
    code = "error";
  else
    num[pd_buf_fmt_long(num, status)] = '\0';
  pd_metrics_upstream(ex->w->metrics, ex->ucfg->name, code, secs);
}

/* j as compact JSON in a malloc'd, NUL-terminated string (length in *len), or NULL. */
static char *json_text(const json_t *j, size_t *len) {
  pd_buf_t b;
  pd_buf_init(&b);
  if (pd_json_write(&b, j) < 0 || !b.len) {
    pd_buf_free(&b);
    return NULL;
  }
  return pd_buf_steal(&b, len);
}

/* Headers sent upstream: SPEC section 4's list, the auth rule of section 3, the upstream's own.
 * The lines ("Name: value", NULL-terminated array) and their text share one block: `stack`
 * (UP_HDR_STACK bytes, pointer-aligned) when it fits, else one malloc returned in *heap. */
#define UP_HDR_STACK 4096
#define NFWD 5

static const char **upstream_headers(ex_t *ex, int json_body, void *stack, void **heap) {
  static const char *const fwd[NFWD] = {"content-type", "accept", "openai-organization",
                                        "openai-project", "authorization"};
  static const size_t fwd_len[NFWD] = {12, 6, 19, 14, 13};
  pd_req_t *r = ex->req;
  const pd_upstream_cfg_t *u = ex->ucfg;
  /* One pass over the request headers; the first of each name counts (as pd_req_header). */
  const char *val[NFWD] = {NULL, NULL, NULL, NULL, NULL};
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *name = r->headers[i].name;
    for (int k = 0; k < NFWD; k++)
      if (!val[k] && name[0] == fwd[k][0] && strcmp(name, fwd[k]) == 0)
        val[k] = r->headers[i].value;
  }
  if (json_body)
    val[0] = "application/json";
  const char *auth_pre = NULL, *auth = NULL;
  if (u->api_key) {
    auth_pre = "Bearer ";
    auth = u->api_key;
  } else if (val[4]) {
    auth_pre = "";
    auth = val[4];
  }
  /* name, ": ", value, NUL per line. */
  size_t nlines = 0, text = 0;
  size_t vlen[NFWD];
  for (int k = 0; k < 4; k++)
    if (val[k]) {
      vlen[k] = strlen(val[k]);
      text += fwd_len[k] + 2 + vlen[k] + 1;
      nlines++;
    }
  size_t idlen = strlen(r->request_id);
  text += 14 + idlen + 1; /* "x-request-id: " */
  nlines++;
  size_t prelen = 0;
  if (auth) {
    prelen = strlen(auth_pre);
    vlen[4] = strlen(auth);
    text += 15 + prelen + vlen[4] + 1; /* "authorization: " */
    nlines++;
  }
  for (size_t i = 0; i < u->nheaders; i++) {
    text += strlen(u->headers[i].name) + 2 + strlen(u->headers[i].value) + 1;
    nlines++;
  }
  size_t total = (nlines + 1) * sizeof(char *) + text;
  char **h;
  *heap = NULL;
  if (total <= UP_HDR_STACK) {
    h = stack;
  } else {
    h = *heap = malloc(total);
    if (!h)
      return NULL;
  }
  char *t = (char *)(h + nlines + 1);
  size_t n = 0;
#define PUT(p, len)                                                                                \
  do {                                                                                             \
    memcpy(t, p, len);                                                                             \
    t += len;                                                                                      \
  } while (0)
  for (int k = 0; k < 4; k++) {
    if (!val[k])
      continue;
    h[n++] = t;
    PUT(fwd[k], fwd_len[k]);
    PUT(": ", 2);
    PUT(val[k], vlen[k]);
    *t++ = '\0';
  }
  h[n++] = t;
  PUT("x-request-id: ", 14);
  PUT(r->request_id, idlen);
  *t++ = '\0';
  if (auth) {
    h[n++] = t;
    PUT("authorization: ", 15);
    PUT(auth_pre, prelen);
    PUT(auth, vlen[4]);
    *t++ = '\0';
  }
  for (size_t i = 0; i < u->nheaders; i++) {
    size_t nl = strlen(u->headers[i].name), vl = strlen(u->headers[i].value);
    h[n++] = t;
    PUT(u->headers[i].name, nl);
    PUT(": ", 2);
    PUT(u->headers[i].value, vl);
    *t++ = '\0';
  }
#undef PUT
  h[n] = NULL;
  return (const char **)h;
}

static pd_xfer_t *start_xfer(ex_t *ex, const char *method, const char *url, char *body, size_t len,
                             int json_body, const pd_xfer_cbs_t *cbs, void *ud) {
  void *stack[UP_HDR_STACK / sizeof(void *)], *heap;
  const char **hdrs = upstream_headers(ex, json_body, stack, &heap);
  if (!hdrs) {
    free(body);
    return NULL;
  }
  const pd_upstream_cfg_t *u = ex->ucfg;
  pd_xfer_opts_t o = {.method = method,
                      .url = url,
                      .headers = hdrs,
                      .body = body,
                      .body_len = len,
                      .connect_timeout_ms = u->connect_timeout_ms,
                      .timeout_ms = u->timeout_ms,
                      .stall_timeout_ms = u->stall_timeout_ms,
                      .retries = u->retries,
                      .http2 = u->http2,
                      .tls_ca_file = u->tls_ca_file,
                      .tls_cert_file = u->tls_cert_file,
                      .tls_key_file = u->tls_key_file,
                      .tls_insecure = !u->tls_verify};
  pd_xfer_t *x = pd_xfer_start(ex->w->up, &o, cbs, ud);
  free(heap);
  if (x)
    ex->upstream_calls++;
  return x;
}

/* The thinking calls made so far (the most of any chain; a call counts once it was started,
 * failed or not, as the access log counts it). */
static int think_calls_made(const ex_t *ex) {
  int made = 0;
  for (int i = 0; i < ex->n; i++) {
    pd_result_t r;
    if (!ex->chains[i].eng)
      continue;
    pd_engine_result(ex->chains[i].eng, &r);
    if (r.think_calls > made)
      made = r.think_calls;
  }
  return made;
}

/* Response headers ponder adds to chat responses. x-ponder-rounds is the thinking calls made
 * when the head is written; a forced stream's head (`stream_head`) leaves before thinking
 * starts, so it carries the planned rounds. */
static void ponder_headers(ex_t *ex, int stream_head, const char **extra, size_t *n) {
  int rounds = stream_head && ex->kind == EX_FORCED ? ex->rounds : think_calls_made(ex);
  ex->rounds_hdr[pd_buf_fmt_long(ex->rounds_hdr, rounds)] = '\0';
  extra[(*n)++] = "x-ponder-route";
  extra[(*n)++] = ex->route ? ex->route->name : "";
  extra[(*n)++] = "x-ponder-variant";
  extra[(*n)++] = ex->variant ? ex->variant : "";
  extra[(*n)++] = "x-ponder-rounds";
  extra[(*n)++] = ex->rounds_hdr;
}

/* ---- finishing ------------------------------------------------------------------------------ */

static void ex_finish(ex_t *ex) {
  if (ex->finished)
    return;
  ex->finished = 1;
  pd_req_t *r = ex->req;
  pd_worker_t *w = ex->w;
  if (ex->keepalive_on)
    uv_timer_stop(&ex->keepalive);
  if (ex->chains)
    add_usage(ex); /* also for failed or aborted chains: what was spent is reported */
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
  ex_cancel_all(ex);
  r->data = NULL;
  r->hooks = NULL;
  pd_server_finish(r);
  ex->req = NULL;
}

/* Ends the request with an error: an HTTP error before the response started, one SSE error
 * event (no [DONE]) after. */
static void ex_fail_body(ex_t *ex, int status, const char *body, size_t len,
                         const char *retry_after, const char *message, const char *type,
                         const char *code) {
  if (ex->failed || ex->finished)
    return;
  ex->failed = 1;
  ex_cancel_all(ex);
  pd_req_t *r = ex->req;
  if (!ex->aborted) {
    if (!ex->started) {
      const char *extra[12];
      size_t n = 0;
      if (ex->variant)
        ponder_headers(ex, 0, extra, &n);
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
      pd_buf_t b;
      pd_buf_init(&b);
      if (body && len) {
        /* Relay the upstream's own error object as the event. */
        pd_buf_appends(&b, "data: ");
        json_t *j = json_loadb(body, len, 0, NULL);
        char *compact = j ? json_dumps(j, JSON_COMPACT) : NULL;
        pd_buf_appends(&b, compact ? compact : "{}");
        free(compact);
        json_decref(j);
        pd_buf_appends(&b, "\n\n");
      } else {
        pd_openai_chunk_error(&b, message, type, code);
      }
      pd_buf_append(&ex->out, pd_buf_data(&b), b.len);
      pd_buf_free(&b);
      flush_out(ex);
      /* The body is left unterminated and the connection closes: clients and intermediaries
       * see a truncated response, not a complete one. */
      pd_res_end(r, 1);
      r->status = status;
    }
  }
  ex_finish(ex);
}

static void ex_fail(ex_t *ex, int status, const char *message, const char *type, const char *code) {
  ex_fail_body(ex, status, NULL, 0, NULL, message, type, code);
}

/* Logs a failed upstream call (warn): request id, route, upstream, status and cause. Never the
 * URL, headers or bodies (they may carry keys or the client's content). */
static void log_upstream_failure(ex_t *ex, int status, const char *cause) {
  pd_log_warn(ex->req ? ex->req->request_id : NULL,
              "upstream call failed: route=%s upstream=%s status=%d cause=%s",
              ex->route ? ex->route->name : "-", ex->ucfg ? ex->ucfg->name : "-", status,
              cause ? cause : "-");
}

static const char *xfer_cause(int result) {
  switch (result) {
  case PD_XFER_ECONNECT:
    return "connect";
  case PD_XFER_ETIMEOUT:
    return "timeout";
  case PD_XFER_ERECV:
    return "broken";
  default:
    return "error";
  }
}

/* An upstream reply ponder refuses (too large, not OpenAI JSON): logged, then a 502. */
static void fail_bad_reply(ex_t *ex, int status, const char *cause, const char *message) {
  log_upstream_failure(ex, status, cause);
  ex_fail(ex, 502, message, "upstream_error", "upstream_error");
}

/* An upstream call that failed: map transport errors and error statuses to SPEC's errors (and
 * log it). */
static void fail_from_upstream(ex_t *ex, int result, const char *errmsg, int status, pd_buf_t *body,
                               const char *retry_after) {
  char msg[512];
  if (result != PD_XFER_OK) {
    char cause[320];
    snprintf(cause, sizeof cause, "%s (%.300s)", xfer_cause(result), errmsg ? errmsg : "");
    log_upstream_failure(ex, status, cause);
  }
  if (result == PD_XFER_ETIMEOUT) {
    snprintf(msg, sizeof msg, "The upstream '%s' timed out: %s", ex->ucfg->name, errmsg);
    ex_fail(ex, 504, msg, "upstream_error", "upstream_timeout");
    return;
  }
  if (result != PD_XFER_OK) {
    snprintf(msg, sizeof msg, "The upstream '%s' could not be reached or broke off: %s",
             ex->ucfg->name, errmsg);
    ex_fail(ex, 502, msg, "upstream_error", "upstream_error");
    return;
  }
  json_t *j = body && body->len ? json_loadb(pd_buf_data(body), body->len, 0, NULL) : NULL;
  int shaped = j && pd_openai_is_error(j);
  if (shaped) {
    /* The error's type and code (short, the provider's own), not its message. */
    const json_t *err = json_object_get(j, "error");
    char cause[200];
    snprintf(cause, sizeof cause, "error status (type=%.60s code=%.60s)",
             json_is_string(json_object_get(err, "type"))
                 ? json_string_value(json_object_get(err, "type"))
                 : "-",
             json_is_string(json_object_get(err, "code"))
                 ? json_string_value(json_object_get(err, "code"))
                 : "-");
    log_upstream_failure(ex, status, cause);
  } else {
    log_upstream_failure(ex, status, "error status without an OpenAI error body");
  }
  json_decref(j);
  if (shaped) {
    ex_fail_body(ex, status, pd_buf_data(body), body->len, retry_after, NULL, NULL, NULL);
    return;
  }
  snprintf(msg, sizeof msg, "The upstream '%s' answered with status %d and no OpenAI error.",
           ex->ucfg->name, status);
  ex_fail(ex, 502, msg, "upstream_error", "upstream_error");
}

/* ---- forced chains -------------------------------------------------------------------------- */

static void keepalive_tick(uv_timer_t *t) {
  ex_t *ex = t->data;
  if (ex->finished || !ex->started || ex->pressure)
    return;
  pd_buf_appends(&ex->out, ": keep-alive\n\n");
  flush_out(ex);
}

static void start_stream(ex_t *ex) {
  if (ex->started)
    return;
  ex->started = 1;
  const char *extra[12];
  size_t n = 0;
  ponder_headers(ex, 1, extra, &n);
  extra[n++] = "cache-control";
  extra[n++] = "no-cache";
  extra[n] = NULL;
  pd_res_start(ex->req, 200, "text/event-stream", extra, -1);
  pd_chunk_ctx_t c = {ex->id, ex->created, ex->client_model};
  for (int i = 0; i < ex->n; i++)
    pd_openai_chunk_text(&ex->out, &c, i, "role", "", 0);
  if (ex->route->reasoning == PD_REASONING_HIDDEN) {
    uv_timer_init(&ex->w->loop, &ex->keepalive);
    ex->keepalive.data = ex;
    ex->keepalive_on = 1;
    uv_timer_start(&ex->keepalive, keepalive_tick, KEEPALIVE_MS, KEEPALIVE_MS);
  }
}

static void close_think(chain_t *ch, const pd_chunk_ctx_t *c) {
  if (ch->think_open && !ch->think_closed) {
    ch->think_closed = 1;
    pd_openai_chunk_text(&ch->ex->out, c, ch->index, "content", "\n</think>\n\n", 11);
  }
}

/* The engine's outputs, written as stream chunks in the route's reasoning display. */
static void on_emit(void *ud, const pd_out_t *o) {
  chain_t *ch = ud;
  ex_t *ex = ch->ex;
  if (!ex->stream || ex->failed)
    return;
  start_stream(ex);
  pd_chunk_ctx_t c = {ex->id, ex->created, ex->client_model};
  pd_reasoning_t mode = ex->route->reasoning;
  switch (o->kind) {
  case PD_OUT_THINK:
    if (o->len == 0 || mode == PD_REASONING_HIDDEN)
      break;
    if (mode == PD_REASONING_FIELD) {
      pd_openai_chunk_text(&ex->out, &c, ch->index, "reasoning_content", o->text, o->len);
    } else {
      if (!ch->think_open) {
        ch->think_open = 1;
        pd_openai_chunk_text(&ex->out, &c, ch->index, "content", "<think>\n", 8);
      }
      pd_openai_chunk_text(&ex->out, &c, ch->index, "content", o->text, o->len);
    }
    break;
  case PD_OUT_CONTENT:
    if (o->len == 0)
      break;
    close_think(ch, &c);
    pd_openai_chunk_text(&ex->out, &c, ch->index, "content", o->text, o->len);
    break;
  case PD_OUT_TOOL_CALLS:
    close_think(ch, &c);
    pd_openai_chunk_tool_calls(&ex->out, &c, ch->index, o->json);
    break;
  case PD_OUT_FINISH:
    /* The finish chunk itself is written when the chain is done (chain_next). */
    close_think(ch, &c);
    break;
  }
}

static void add_usage(ex_t *ex) {
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

static void ex_complete(ex_t *ex) {
  add_usage(ex);
  if (ex->stream) {
    start_stream(ex);
    pd_chunk_ctx_t c = {ex->id, ex->created, ex->client_model};
    if (ex->include_usage)
      pd_openai_chunk_usage(&ex->out, &c, &ex->usage);
    pd_buf_appends(&ex->out, "data: [DONE]\n\n");
    flush_out(ex);
    ex->req->status = 200;
    pd_res_end(ex->req, 0);
  } else {
    pd_result_t *res = calloc((size_t)ex->n, sizeof *res);
    pd_buf_t b;
    pd_buf_init(&b);
    if (res) {
      for (int i = 0; i < ex->n; i++)
        pd_engine_result(ex->chains[i].eng, &res[i]);
      pd_openai_completion(&b, ex->id, ex->created, ex->client_model, ex->route->reasoning, res,
                           (size_t)ex->n);
    }
    free(res);
    const char *extra[8];
    size_t n = 0;
    ponder_headers(ex, 0, extra, &n);
    extra[n] = NULL;
    pd_res_send(ex->req, 200, "application/json", extra, pd_buf_data(&b), b.len);
    pd_buf_free(&b);
  }
  ex_finish(ex);
}

/* A feeder of the engine refused a reply: too much thinking, a stream that broke off, or a
 * reply it cannot read. */
static void fail_engine(chain_t *ch, int rc, const char *unreadable) {
  ex_t *ex = ch->ex;
  if (ex->finished)
    return;
  if (rc == PD_ENGINE_EINCOMPLETE) {
    fail_bad_reply(ex, ch->status, "stream ended before finish_reason or [DONE]",
                   "The upstream stream ended before it was complete.");
  } else if (rc == PD_ENGINE_ETOOLARGE) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "The upstream's thinking for this request exceeds limits.max_reply_bytes (%ld bytes).",
             ex->cfg->limits.max_reply_bytes);
    fail_bad_reply(ex, ch->status, "thinking over limits.max_reply_bytes", msg);
  } else {
    fail_bad_reply(ex, ch->status, "reply not readable", unreadable);
  }
}

/* The 502 for one upstream reply over limits.max_reply_bytes. */
static void fail_too_large(ex_t *ex, int status) {
  char msg[200];
  snprintf(msg, sizeof msg, "The upstream reply exceeds limits.max_reply_bytes (%ld bytes).",
           ex->cfg->limits.max_reply_bytes);
  fail_bad_reply(ex, status, "reply over limits.max_reply_bytes", msg);
}

static int on_sse_event(void *ud, const char *data, size_t len) {
  chain_t *ch = ud;
  ex_t *ex = ch->ex;
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    /* The end of the call's stream: without it, and without a finish_reason, a stream that
     * stops is a cut one (pd_engine_on_call_end). */
    pd_engine_on_done_marker(ch->eng);
    return 0;
  }
  json_t *j = pd_json_load_reply(data, len);
  if (!j) {
    fail_bad_reply(ex, ch->status, "stream event not valid JSON",
                   "The upstream sent a stream event that is not valid JSON.");
    return 1;
  }
  if (pd_openai_is_error(j)) {
    /* The error goes to the client whole, not as the engine's cut-down tree. */
    log_upstream_failure(ex, ch->status, "error event in the stream");
    json_decref(j);
    j = json_loadb(data, len, 0, NULL);
    char *s = json_dumps(j, JSON_COMPACT);
    ex_fail_body(ex, 502, s, s ? strlen(s) : 0, NULL, "The upstream reported an error.",
                 "upstream_error", "upstream_error");
    free(s);
    json_decref(j);
    return 1;
  }
  int rc = pd_engine_on_chunk(ch->eng, j, on_emit, ch);
  json_decref(j);
  if (rc < 0) {
    fail_engine(ch, rc, "The upstream sent a stream chunk ponder cannot read.");
    return 1;
  }
  return 0;
}

static void chain_on_head(void *ud, const pd_xfer_head_t *h) {
  chain_t *ch = ud;
  ch->status = h->status;
  ch->sse_reply = h->content_type && strncasecmp(h->content_type, "text/event-stream", 17) == 0;
  pd_buf_reset(&ch->body);
  ch->reply_bytes = 0;
  free(ch->retry_after);
  ch->retry_after = NULL;
  for (size_t i = 0; i < h->nheaders && h->status >= 400; i++)
    if (strcmp(h->headers[2 * i], "retry-after") == 0)
      ch->retry_after = strdup(h->headers[2 * i + 1]);
  if (h->status >= 200 && h->status < 300 && ch->ex->stream && ch->sse_reply) {
    ex_enter(ch->ex);
    start_stream(ch->ex);
    flush_out(ch->ex);
    ex_leave(ch->ex);
  }
}

static int chain_on_data(void *ud, const char *p, size_t n) {
  chain_t *ch = ud;
  ex_t *ex = ch->ex;
  if (ex->finished)
    return -1;
  int ok = ch->status >= 200 && ch->status < 300;
  if (!ok || !ch->sse_reply) {
    /* A reply held whole is bounded; a streamed one is relayed as it comes (its thinking is
     * bounded by the engine, the answer is not kept). */
    long limit = ok ? ex->cfg->limits.max_reply_bytes : MAX_ERROR_BODY;
    if (ch->reply_bytes + (long)n > limit) {
      ex_enter(ex);
      fail_too_large(ex, ch->status);
      ex_leave(ex);
      return -1;
    }
    ch->reply_bytes += (long)n;
    pd_buf_append(&ch->body, p, n);
    return 0;
  }
  ex_enter(ex);
  int rc = pd_sse_feed(&ch->sse, p, n, on_sse_event, ch);
  if (rc < 0 && !ex->finished)
    fail_bad_reply(ex, ch->status, "stream event too large",
                   "The upstream stream event is too large.");
  if (!ex->finished)
    flush_out(ex);
  int pause = ex->pressure;
  if (ex_leave(ex))
    return -1;
  return pause ? 1 : 0;
}

static void chain_on_done(void *ud, int result, const char *errmsg) {
  chain_t *ch = ud;
  ex_t *ex = ch->ex;
  count_upstream(ex, &ch->xfer, result, ch->status);
  ex_enter(ex);
  if (ex->finished)
    goto out;
  if (result != PD_XFER_OK || ch->status < 200 || ch->status >= 300) {
    fail_from_upstream(ex, result, errmsg, ch->status, &ch->body, ch->retry_after);
    goto out;
  }
  if (ch->sse_reply) {
    /* A stream that ended without its last blank line still delivers the last event. */
    pd_sse_feed(&ch->sse, "\n\n", 2, on_sse_event, ch);
    if (ex->finished)
      goto out;
    int rc = pd_engine_on_call_end(ch->eng, on_emit, ch);
    if (rc < 0) {
      fail_engine(ch, rc, "The upstream stream could not be read.");
      goto out;
    }
  } else {
    json_t *j = pd_json_load_reply(pd_buf_data(&ch->body), ch->body.len);
    int rc = j ? pd_engine_on_response(ch->eng, j, on_emit, ch) : -1;
    json_decref(j);
    if (rc < 0) {
      fail_engine(ch, rc, "The upstream reply is not a valid OpenAI chat completion.");
      goto out;
    }
  }
  pd_buf_reset(&ch->body);
  flush_out(ex);
  chain_next(ch);
out:
  ex_leave(ex);
}

static void chain_next(chain_t *ch) {
  ex_t *ex = ch->ex;
  if (ex->finished)
    return;
  pd_call_t call;
  int more = pd_engine_next(ch->eng, &call);
  if (more < 0) {
    ex_fail(ex, 500, "Could not build the upstream request.", "server_error", "internal_error");
    return;
  }
  if (more == 0) {
    if (ex->stream) {
      start_stream(ex);
      pd_chunk_ctx_t c = {ex->id, ex->created, ex->client_model};
      close_think(ch, &c);
      /* The answer call's own reason: a chain is done only after a complete answer call. */
      pd_result_t res;
      pd_engine_result(ch->eng, &res);
      pd_openai_chunk_finish(&ex->out, &c, ch->index, res.finish_reason);
      flush_out(ex);
    }
    if (--ex->active == 0)
      ex_complete(ex);
    return;
  }
  size_t body_len = call.body_len;
  char *body = call.body;
  /* The engine's path ("/chat/completions", "/completions") under the base path; the client's
   * query is not sent with forced calls. */
  pd_buf_t url;
  pd_buf_init(&url);
  if (pd_url_join(&ex->base, call.path, strlen(call.path), NULL, 0, &url) < 0) {
    free(body);
    pd_buf_free(&url);
    ex_fail(ex, 500, "Could not build the upstream URL.", "server_error", "internal_error");
    return;
  }
  static const pd_xfer_cbs_t cbs = {chain_on_head, chain_on_data, chain_on_done};
  ch->status = 0;
  pd_sse_free(&ch->sse);
  pd_sse_init(&ch->sse, MAX_SSE_EVENT);
  ch->xfer = start_xfer(ex, "POST", pd_buf_data(&url), body, body_len, 1, &cbs, ch);
  pd_buf_free(&url);
  if (!ch->xfer)
    ex_fail(ex, 502, "Could not start the upstream request.", "upstream_error", "upstream_error");
  else if (ex->pressure)
    pd_xfer_pause(ch->xfer);
}

/* A 400 invalid_request_error naming param (may be NULL). */
static void ex_fail_400(ex_t *ex, const char *message, const char *param) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, message, "invalid_request_error", param, NULL);
  ex_fail_body(ex, 400, pd_buf_data(&b), b.len, NULL, NULL, NULL, NULL);
  pd_buf_free(&b);
}

static uint64_t rnd_cb(void *ud) {
  return pd_worker_rand(ud);
}

static void start_forced(ex_t *ex, const pd_policy_t *pol) {
  json_t *nj = json_object_get(ex->body, "n");
  if (nj && !json_is_null(nj) &&
      (!json_is_integer(nj) || json_integer_value(nj) < 1 || json_integer_value(nj) > MAX_N)) {
    ex_fail_400(ex, "Invalid value for 'n': expected an integer between 1 and 128.", "n");
    return;
  }
  int n = json_is_integer(nj) ? (int)json_integer_value(nj) : 1;
  /* Every call is counted before the first is made: n chains of rounds thinking calls and an
   * answer each (with min_think_tokens, rounds is the cap). */
  long calls = pd_engine_max_calls(n, ex->rounds, 1), limit = ex->cfg->limits.max_upstream_calls;
  if (calls > limit) {
    const char *param = n > 1                                       ? "n"
                        : pd_req_header(ex->req, "x-ponder-rounds") ? "x-ponder-rounds"
                        : ex->rounds_in_body                        ? "ponder.rounds"
                        : ex->effort_in_body                        ? "reasoning_effort"
                                                                    : NULL;
    char msg[300];
    snprintf(msg, sizeof msg,
             "This request would make %ld upstream calls (n=%d x (%d rounds + 1)), more than "
             "limits.max_upstream_calls (%ld): lower 'n' or the rounds.",
             calls, n, ex->rounds, limit);
    ex_fail_400(ex, msg, param);
    return;
  }
  ex->kind = EX_FORCED;
  ex->chains = calloc((size_t)n, sizeof *ex->chains);
  if (!ex->chains) {
    ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return;
  }
  ex->n = n;
  pd_openai_new_id(ex->id, "chatcmpl-", rnd_cb, ex->w);
  ex->created = (long)time(NULL);
  const char *model = ex->route->model ? ex->route->model : ex->client_model;
  pd_engine_opts_t o = {pol,        ex->rounds,
                        model,      ex->ucfg->token_limit_param,
                        ex->stream, ex->cfg->limits.max_reply_bytes,
                        ex->stream};
  for (int i = 0; i < n; i++) {
    chain_t *ch = &ex->chains[i];
    ch->ex = ex;
    ch->index = i;
    pd_buf_init(&ch->body);
    pd_sse_init(&ch->sse, MAX_SSE_EVENT);
    ch->eng = pd_engine_new(&o, ex->body);
    if (!ch->eng) {
      ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return;
    }
  }
  ex->active = n;
  for (int i = 0; i < n && !ex->finished; i++)
    chain_next(&ex->chains[i]);
}

/* ---- pass-through ----------------------------------------------------------------------- */

/* The usage object of a chat reply passed through (rounds 0): counted in ponder_tokens_total
 * and the access log like a forced exchange's. */
static void take_pass_usage(ex_t *ex, const json_t *usage) {
  if (!json_is_object(usage))
    return;
  const json_t *rt =
      json_object_get(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens");
  ex->usage.prompt_tokens = (long)json_integer_value(json_object_get(usage, "prompt_tokens"));
  ex->usage.completion_tokens =
      (long)json_integer_value(json_object_get(usage, "completion_tokens"));
  ex->usage.reasoning_tokens = json_is_integer(rt) ? (long)json_integer_value(rt) : 0;
}

/* Whether an event's text has a "usage" member whose value is an object (not the null every
 * other chunk of an include_usage stream carries): only that event is parsed. */
static int has_usage_object(const char *d, size_t n) {
  const char *end = d + n, *p = d;
  while ((p = memmem(p, (size_t)(end - p), "\"usage\"", 7)) != NULL) {
    p += 7;
    const char *q = p;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
      q++;
    if (q < end && *q == ':') {
      q++;
      while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
      if (q < end && *q == '{')
        return 1;
    }
  }
  return 0;
}

/* One event of a relayed chat stream, read for its usage only (the bytes went out as they
 * came). */
static int usage_event(void *ud, const char *data, size_t len) {
  ex_t *ex = ud;
  if (!has_usage_object(data, len))
    return 0;
  json_t *j = pd_json_load_reply(data, len);
  take_pass_usage(ex, json_object_get(j, "usage"));
  json_decref(j);
  return 0;
}

static void pass_on_head(void *ud, const pd_xfer_head_t *h) {
  ex_t *ex = ud;
  ex->pstatus = h->status;
  ex->psse = h->content_type && strncasecmp(h->content_type, "text/event-stream", 17) == 0;
  /* A chat reply relayed without forcing is still checked to be an OpenAI JSON object (the
   * body is small; streams are relayed as they come). */
  ex->pvalidate = ex->variant && !ex->psse && h->status < 300;
  if (ex->kind == EX_MODELS || h->status >= 400 || ex->pvalidate) {
    ex->pbuffer = 1;
    /* A known length is allocated at once rather than grown by doubling. */
    if (h->content_length > 0 && h->content_length <= MAX_ERROR_BODY)
      pd_buf_reserve(&ex->pbody, (size_t)h->content_length);
    for (size_t i = 0; i < h->nheaders; i++)
      if (strcmp(h->headers[2 * i], "retry-after") == 0) {
        free(ex->pretry_after);
        ex->pretry_after = strdup(h->headers[2 * i + 1]);
      }
    return;
  }
  /* A chat stream's usage chunk (the client asked for include_usage) is read on the side. */
  ex->pusage = ex->variant && ex->psse && ex->include_usage && !ex->premodel && h->status >= 200 &&
               h->status < 300;
  if (ex->pusage)
    pd_sse_init(&ex->psse_parser, MAX_SSE_EVENT);
  const char *extra[2 * 64 + 12];
  size_t n = 0;
  for (size_t i = 0; i < h->nheaders && i < 64; i++) {
    if (strcmp(h->headers[2 * i], "content-type") == 0)
      continue;
    extra[n++] = h->headers[2 * i];
    extra[n++] = h->headers[2 * i + 1];
  }
  if (ex->variant) /* a chat request passed through (rounds 0, or not forceable) */
    ponder_headers(ex, 0, extra, &n);
  extra[n] = NULL;
  ex->started = 1;
  pd_res_start(ex->req, h->status, h->content_type, extra, ex->psse ? -1 : h->content_length);
}

/* One event of a relayed stream whose model was mapped: the client's model name goes back. */
static int remodel_event(void *ud, const char *data, size_t len) {
  ex_t *ex = ud;
  json_t *j = len == 6 && memcmp(data, "[DONE]", 6) == 0 ? NULL : json_loadb(data, len, 0, NULL);
  take_pass_usage(ex, json_object_get(j, "usage"));
  char *s = NULL;
  size_t slen = 0;
  if (j && json_object_get(j, "model")) {
    json_object_set_new(j, "model", json_string(ex->client_model));
    s = json_text(j, &slen);
  }
  json_decref(j);
  pd_buf_appends(&ex->out, "data: ");
  if (s)
    pd_buf_append(&ex->out, s, slen);
  else
    pd_buf_append(&ex->out, data, len);
  pd_buf_appends(&ex->out, "\n\n");
  free(s);
  return 0;
}

static int pass_on_data(void *ud, const char *p, size_t n) {
  ex_t *ex = ud;
  if (ex->finished)
    return -1;
  if (ex->pbuffer) {
    long limit =
        ex->kind == EX_MODELS || ex->pvalidate ? ex->cfg->limits.max_reply_bytes : MAX_ERROR_BODY;
    if ((long)(ex->pbody.len + n) > limit) {
      ex_enter(ex);
      fail_too_large(ex, ex->pstatus);
      ex_leave(ex);
      return -1;
    }
    pd_buf_append(&ex->pbody, p, n);
    return 0;
  }
  ex_enter(ex);
  if (ex->premodel && ex->psse) {
    pd_sse_feed(&ex->psse_parser, p, n, remodel_event, ex);
    if (!ex->finished)
      flush_out(ex);
  } else {
    /* An event too large for the side reader only ends the reading, never the relay. */
    if (ex->pusage && pd_sse_feed(&ex->psse_parser, p, n, usage_event, ex) < 0)
      ex->pusage = 0;
    if (!ex->aborted && pd_res_write(ex->req, p, n))
      ex->pressure = 1;
  }
  int pause = ex->pressure;
  if (ex_leave(ex))
    return -1;
  return pause;
}

static void models_reply(ex_t *ex) {
  json_t *j = json_loadb(pd_buf_data(&ex->pbody), ex->pbody.len, 0, NULL);
  json_t *data = json_object_get(j, "data");
  if (!json_is_array(data)) {
    json_decref(j);
    fail_bad_reply(ex, ex->pstatus, "model list not valid",
                   "The upstream's model list is not valid OpenAI JSON.");
    return;
  }
  const pd_config_t *cfg = ex->cfg;
  for (size_t r = 0; r < cfg->nroutes; r++) {
    for (size_t m = 0; m < cfg->routes[r].nmodels; m++) {
      const char *name = cfg->routes[r].models[m];
      int seen = 0;
      size_t i;
      json_t *v;
      json_array_foreach(data, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        if (id && strcmp(id, name) == 0)
          seen = 1;
      }
      if (!seen)
        json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id", name, "object", "model",
                                              "created", 0, "owned_by", "ponder"));
    }
  }
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  pd_res_send(ex->req, 200, "application/json", NULL, s ? s : "", s ? strlen(s) : 0);
  free(s);
  ex_finish(ex);
}

/* Relays a buffered chat reply after checking it is a JSON object. */
static void relay_checked(ex_t *ex) {
  const char *usage = NULL;
  size_t usage_len = 0;
  int ok = pd_json_check_reply(pd_buf_data(&ex->pbody), ex->pbody.len, &usage, &usage_len) == 1;
  if (ok && !ex->premodel && usage) {
    /* The reply's usage, found by the same pass that checked it: only that member is parsed (the
     * bytes are relayed as they are). */
    json_t *u = pd_json_load(usage, usage_len, NULL);
    take_pass_usage(ex, u);
    json_decref(u);
  }
  if (ok && ex->premodel) {
    /* Only a mapped model needs the tree: the client's model name goes back in. */
    json_t *j = json_loadb(pd_buf_data(&ex->pbody), ex->pbody.len, 0, NULL);
    take_pass_usage(ex, json_object_get(j, "usage"));
    if (j && json_object_get(j, "model")) {
      json_object_set_new(j, "model", json_string(ex->client_model));
      size_t slen = 0;
      char *s = json_text(j, &slen);
      if (s) {
        pd_buf_reset(&ex->pbody);
        pd_buf_append(&ex->pbody, s, slen);
      }
      free(s);
    }
    json_decref(j);
  }
  if (!ok) {
    fail_bad_reply(ex, ex->pstatus, "reply not a JSON object",
                   "The upstream reply is not a valid OpenAI chat completion.");
    return;
  }
  const char *extra[8];
  size_t n = 0;
  ponder_headers(ex, 0, extra, &n);
  extra[n] = NULL;
  pd_res_send(ex->req, ex->pstatus, "application/json", extra, pd_buf_data(&ex->pbody),
              ex->pbody.len);
  ex_finish(ex);
}

static void pass_on_done(void *ud, int result, const char *errmsg) {
  ex_t *ex = ud;
  count_upstream(ex, &ex->pxfer, result, ex->pstatus);
  ex_enter(ex);
  if (ex->finished)
    goto out;
  if (!ex->started) {
    if (result == PD_XFER_OK && ex->pstatus >= 200 && ex->pstatus < 400 && ex->kind == EX_MODELS)
      models_reply(ex);
    else if (result == PD_XFER_OK && ex->pvalidate)
      relay_checked(ex);
    else if (result != PD_XFER_OK || ex->pstatus >= 400)
      fail_from_upstream(ex, result, errmsg, ex->pstatus, &ex->pbody, ex->pretry_after);
    else
      fail_bad_reply(ex, ex->pstatus, "reply ended unexpectedly",
                     "The upstream reply ended unexpectedly.");
    goto out;
  }
  if (ex->premodel && ex->psse && result == PD_XFER_OK) {
    pd_sse_feed(&ex->psse_parser, "\n\n", 2, remodel_event, ex);
    flush_out(ex);
  }
  if (ex->pusage && result == PD_XFER_OK)
    pd_sse_feed(&ex->psse_parser, "\n\n", 2, usage_event, ex);
  if (result != PD_XFER_OK) {
    char cause[320];
    snprintf(cause, sizeof cause, "%s mid-body (%.300s)", xfer_cause(result), errmsg ? errmsg : "");
    log_upstream_failure(ex, ex->pstatus, cause);
    if (ex->psse) {
      /* Already streaming: one error event, no [DONE]. */
      ex_fail(ex, result == PD_XFER_ETIMEOUT ? 504 : 502,
              "The upstream stream broke off before it was complete.", "upstream_error",
              result == PD_XFER_ETIMEOUT ? "upstream_timeout" : "upstream_error");
    } else {
      pd_res_end(ex->req, 1);
      ex_finish(ex);
    }
    goto out;
  }
  pd_res_end(ex->req, 0);
  ex_finish(ex);
out:
  ex_leave(ex);
}

/* Sends the request to ex->url (joined and checked by the dispatch decision). */
static void start_pass(ex_t *ex, char *body, size_t len, int json_body) {
  static const pd_xfer_cbs_t cbs = {pass_on_head, pass_on_data, pass_on_done};
  pd_req_t *r = ex->req;
  ex->pxfer = start_xfer(ex, r->method, ex->url, body, len, json_body, &cbs, ex);
  if (!ex->pxfer)
    ex_fail(ex, 502, "Could not start the upstream request.", "upstream_error", "upstream_error");
}

/* ---- dispatch ------------------------------------------------------------------------------- */

/* Requests answered right away are logged and counted like the others. */
static void finish_simple(pd_worker_t *w, pd_req_t *r) {
  double secs = now_seconds(r->start_ns);
  pd_metrics_request(w->metrics, NULL, NULL, r->status, secs, NULL, 0);
  char path[512];
  snprintf(path, sizeof path, "%.*s", (int)(r->path_len > 500 ? 500 : r->path_len), r->url);
  pd_access_entry_t e = {r->request_id, r->method, path,          NULL, NULL, 0, 0,
                         r->status,     0,         secs * 1000.0, 0,    0,    0};
  pd_access_log_write(w->app->access_log, &e);
  pd_server_finish(r);
}

static void simple_json(pd_worker_t *w, pd_req_t *r, int status, const char *json) {
  pd_res_send(r, status, "application/json", NULL, json, strlen(json));
  finish_simple(w, r);
}

static void error_now(pd_worker_t *w, pd_req_t *r, int status, const char *msg, const char *type,
                      const char *param, const char *code) {
  pd_res_error(r, status, msg, type, param, code);
  finish_simple(w, r);
}

static void method_not_allowed(pd_worker_t *w, pd_req_t *r, const char *allow) {
  char msg[160];
  snprintf(msg, sizeof msg, "Method %s is not allowed here; use %s.", r->method, allow);
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, msg, "invalid_request_error", NULL, "method_not_allowed");
  const char *extra[] = {"allow", allow, NULL};
  pd_res_send(r, 405, "application/json", extra, pd_buf_data(&b), b.len);
  pd_buf_free(&b);
  finish_simple(w, r);
}

static void serve_metrics(pd_worker_t *w, pd_req_t *r) {
  size_t len = 0;
  char *s = pd_metrics_render(w->app->metrics, w->app->nworkers, &len);
  pd_res_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, s ? s : "", len);
  free(s);
  finish_simple(w, r);
}

static void serve_feedback(pd_worker_t *w, pd_req_t *r) {
  json_error_t jerr;
  json_t *j = json_loadb(pd_buf_data(&r->body), r->body.len, 0, &jerr);
  const char *id = json_string_value(json_object_get(j, "request_id"));
  json_t *score = json_object_get(j, "score");
  if (!json_is_object(j) || !id || !json_is_number(score)) {
    json_decref(j);
    error_now(w, r, 400,
              "Feedback needs a JSON object with a string 'request_id' and a number 'score'.",
              "invalid_request_error",
              !json_is_object(j) ? NULL
              : !id              ? "request_id"
                                 : "score",
              NULL);
    return;
  }
  char route[256], variant[256];
  if (pd_feedback_lookup(w->app->feedback, w->app->nworkers, id, route, sizeof route, variant,
                         sizeof variant) < 0) {
    json_decref(j);
    error_now(w, r, 404, "No recent request has this request_id.", "invalid_request_error",
              "request_id", "request_not_found");
    return;
  }
  pd_metrics_feedback(w->metrics, route, variant, json_number_value(score));
  json_t *out = json_pack("{s:s,s:s,s:s,s:s}", "status", "ok", "request_id", id, "route", route,
                          "variant", variant);
  char *s = json_dumps(out, JSON_COMPACT);
  json_decref(out);
  json_decref(j);
  simple_json(w, r, 200, s ? s : "{}");
  free(s);
}

static const char *get_header_cb(void *ud, const char *name) {
  return pd_req_header(ud, name);
}

/* The server's head check (pd_head_fn) for a request that expects 100-continue: the dispatch
 * decision taken on the head alone; an answer that does not depend on the body (an unknown path,
 * a missing or wrong key) is given before the body is sent, anything else waits for the body and
 * the usual dispatch. */
int pd_exchange_check_head(void *ud, pd_req_t *r) {
  pd_worker_t *w = ud;
  pd_dispatch_req_t in = {r->method,     r->url, r->path_len, r->query, strlen(r->query),
                          get_header_cb, r,      "",          0};
  pd_dispatch_t d;
  int refuse = pd_dispatch_decide(w->cfg, &in, &d) == PD_DISPATCH_ERROR &&
               (d.status == 401 || (d.status == 404 && d.code && !strcmp(d.code, "unknown_url")));
  if (refuse)
    error_now(w, r, d.status, d.message, d.type, d.param, d.code);
  pd_dispatch_free(&d);
  return refuse;
}

/* A chat completion: validate, resolve the variant and rounds, then force or pass through. */
static void start_chat(ex_t *ex) {
  pd_req_t *r = ex->req;
  json_t *body = ex->body;
  const char *msg = NULL, *param = NULL;
  if (pd_engine_validate(body, &msg, &param) < 0 ||
      (!json_is_string(json_object_get(body, "model")) &&
       (msg = "You must provide a model parameter.", param = "model"))) {
    pd_buf_t b;
    pd_buf_init(&b);
    pd_openai_error(&b, msg, "invalid_request_error", param, NULL);
    ex_fail_body(ex, 400, pd_buf_data(&b), b.len, NULL, NULL, NULL, NULL);
    pd_buf_free(&b);
    return;
  }
  /* Whether the body goes upstream unchanged when it is not forced (the fast path relays the
   * client's bytes instead of re-serialising them). */
  int pristine = !ex->route->model && !json_object_get(body, "ponder") &&
                 !json_object_get(body, "reasoning_effort");
  ex->rounds_in_body = json_object_get(json_object_get(body, "ponder"), "rounds") != NULL;
  ex->effort_in_body = ex->route->neffort > 0 && json_object_get(body, "reasoning_effort");
  char errmsg[256], errparam[64];
  pd_resolved_t res;
  if (pd_router_resolve(ex->route, body, get_header_cb, r, pd_worker_rand(ex->w), &res, errmsg,
                        sizeof errmsg, errparam, sizeof errparam) < 0) {
    pd_buf_t b;
    pd_buf_init(&b);
    pd_openai_error(&b, errmsg, "invalid_request_error", errparam[0] ? errparam : NULL, NULL);
    ex_fail_body(ex, 400, pd_buf_data(&b), b.len, NULL, NULL, NULL, NULL);
    pd_buf_free(&b);
    return;
  }
  ex->variant = res.variant->name;
  ex->rounds = res.rounds;
  json_t *st = json_object_get(body, "stream");
  ex->stream = json_is_true(st);
  ex->include_usage =
      json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
  if (!pd_engine_should_force(body, ex->rounds)) {
    if (ex->route->model) {
      json_object_set_new(body, "model", json_string(ex->route->model));
      ex->premodel = ex->client_model && strcmp(ex->client_model, ex->route->model) != 0;
      pd_sse_init(&ex->psse_parser, MAX_SSE_EVENT);
    }
    size_t len = r->body.len;
    char *s = pristine ? malloc(len + 1) : json_text(body, &len);
    if (!s) {
      ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return;
    }
    if (pristine)
      memcpy(s, pd_buf_data(&r->body), len);
    ex->kind = EX_PASS;
    start_pass(ex, s, len, 1);
    return;
  }
  start_forced(ex, &res.variant->forcing);
}

/* The relay fast path for a chat completion that is certain to be passed through unchanged:
 * every variant of its route has rounds 0, no rounds override, no model mapping, and a body
 * that pd_chat_req_scan read completely (cr: valid, passing validation, nothing to rewrite).
 * It behaves exactly as start_chat would on the parsed body, without building the tree.
 * Returns 0, having changed nothing, when the request needs the general path. */
static int chat_fast(ex_t *ex, const pd_chat_req_t *cr) {
  pd_req_t *r = ex->req;
  const pd_route_t *route = ex->route;
  int fast = !route->model && !pd_req_header(r, "x-ponder-rounds");
  for (size_t i = 0; fast && i < route->nvariants; i++)
    fast = route->variants[i].forcing.rounds == 0;
  if (!fast)
    return 0;
  /* The router reads the body only for a sticky "user" ("ponder" and "reasoning_effort" are
   * absent): a one-key object stands in for it. */
  json_t *mini = NULL;
  if (route->sticky == PD_STICKY_BODY_USER && cr->user) {
    mini = json_object();
    json_t *u = json_stringn(cr->user, cr->user_len);
    if (!mini || !u || json_object_set_new(mini, "user", u) < 0) {
      json_decref(mini);
      ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return 1;
    }
  }
  char errmsg[256], errparam[64];
  pd_resolved_t res;
  int rc = pd_router_resolve(route, mini, get_header_cb, r, pd_worker_rand(ex->w), &res, errmsg,
                             sizeof errmsg, errparam, sizeof errparam);
  json_decref(mini);
  if (rc < 0) {
    pd_buf_t b;
    pd_buf_init(&b);
    pd_openai_error(&b, errmsg, "invalid_request_error", errparam[0] ? errparam : NULL, NULL);
    ex_fail_body(ex, 400, pd_buf_data(&b), b.len, NULL, NULL, NULL, NULL);
    pd_buf_free(&b);
    return 1;
  }
  ex->variant = res.variant->name;
  ex->rounds = res.rounds;
  ex->stream = cr->stream;
  ex->include_usage = cr->include_usage;
  size_t len = r->body.len;
  char *body = malloc(len + 1);
  if (!body) {
    ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return 1;
  }
  memcpy(body, pd_buf_data(&r->body), len);
  ex->kind = EX_PASS;
  start_pass(ex, body, len, 1);
  return 1;
}

void pd_exchange_dispatch(void *ud, pd_req_t *r) {
  pd_worker_t *w = ud;
  pd_config_t *cfg = w->cfg;
  /* Route, path split and join, auth and the body's model: one pure decision (dispatch.c). */
  pd_dispatch_req_t in = {r->method,        r->url,        r->path_len, r->query,
                          strlen(r->query), get_header_cb, r,           pd_buf_data(&r->body),
                          r->body.len};
  pd_dispatch_t d;
  switch (pd_dispatch_decide(cfg, &in, &d)) {
  case PD_DISPATCH_HEALTHZ:
    pd_dispatch_free(&d);
    return simple_json(w, r, 200, "{\"status\":\"ok\"}");
  case PD_DISPATCH_METRICS:
    pd_dispatch_free(&d);
    return serve_metrics(w, r);
  case PD_DISPATCH_FEEDBACK:
    pd_dispatch_free(&d);
    return serve_feedback(w, r);
  case PD_DISPATCH_ERROR:
    if (d.status == 405)
      method_not_allowed(w, r, d.allow);
    else
      error_now(w, r, d.status, d.message, d.type, d.param, d.code);
    pd_dispatch_free(&d);
    return;
  default:
    break;
  }
  ex_t *ex = calloc(1, sizeof *ex);
  if (!ex) {
    pd_dispatch_free(&d);
    return error_now(w, r, 500, "Out of memory.", "server_error", NULL, "internal_error");
  }
  ex->w = w;
  ex->req = r;
  ex->cfg = pd_config_ref(cfg);
  pd_buf_init(&ex->out);
  pd_buf_init(&ex->pbody);
  r->data = ex;
  r->hooks = &ex_hooks;
  pd_metrics_inflight(w->metrics, 1);
  ex->depth = 1;
  ex->route = d.route;
  ex->ucfg = d.upstream;
  ex->base = d.base;
  ex->url = pd_buf_steal(&d.url, NULL);
  ex->client_model = d.model;
  d.model = NULL;
  ex->body = d.body;
  d.body = NULL;
  pd_dispatch_kind_t kind = d.kind;
  int scanned = d.scanned;
  pd_chat_req_t scan = d.scan;
  pd_dispatch_free(&d);
  if (!ex->url) {
    ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
  } else if (kind == PD_DISPATCH_CHAT) {
    if (!(scanned && chat_fast(ex, &scan))) {
      json_error_t jerr;
      if (!ex->body) /* the scan read it, but the route forces or rewrites it */
        ex->body = pd_json_load(pd_buf_data(&r->body), r->body.len, &jerr);
      if (!json_is_object(ex->body))
        ex_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      else
        start_chat(ex);
    }
  } else if (kind == PD_DISPATCH_MODELS) {
    ex->kind = EX_MODELS;
    json_decref(ex->body);
    ex->body = NULL;
    start_pass(ex, NULL, 0, 0);
  } else {
    ex->kind = EX_PASS;
    char *copy = NULL;
    size_t len = r->body.len;
    if (len) {
      copy = malloc(len);
      if (copy)
        memcpy(copy, pd_buf_data(&r->body), len);
    }
    json_decref(ex->body); /* only chat responses carry ponder's headers */
    ex->body = NULL;
    start_pass(ex, copy, len, 0);
  }
  ex_leave(ex);
}
