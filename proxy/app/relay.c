/* The pass-through relay: see relay.h. The bytes of a relayed reply go out as they come; a
 * client API's reply is read on the side only where ponder must (its usage, a mapped model's
 * name, the check that it is an OpenAI object), in the OpenAI shape of an API that relays. */
#include "app/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/exchange.h"
#include "http/res.h"
#include "app/upreq.h"
#include "core/openai.h"

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

/* The usage object of a chat reply or stream event passed through (rounds 0), as the one-pass
 * reader found it: counted in ponder_tokens_total and the access log like a forced exchange's.
 * A member that is not an integer counts 0. */
static void take_pass_usage(pd_exchange_t *ex, const pd_openai_msg_t *m) {
  if (!m->has_usage)
    return;
  ex->usage.prompt_tokens = (long)m->prompt_tokens;
  ex->usage.completion_tokens = (long)m->completion_tokens;
  ex->usage.reasoning_tokens = (long)m->reasoning_tokens;
}

/* The same for the text of a usage value pd_openai_check_reply found. */
static void take_usage_text(pd_exchange_t *ex, const char *u, size_t n) {
  pd_openai_msg_t m;
  pd_openai_read_usage(u, n, &m);
  take_pass_usage(ex, &m);
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
  pd_exchange_t *ex = ud;
  pd_openai_msg_t m;
  if (has_usage_object(data, len) && pd_openai_read_reply(data, len, 1, &m))
    take_pass_usage(ex, &m);
  return 0;
}

static void pass_on_head(void *ud, const pd_xfer_head_t *h) {
  pd_exchange_t *ex = ud;
  pd_relay_state_t *ps = &ex->pass;
  pd_reply_head(&ps->reply, h);
  if (ps->plain) { /* held whole: the API writes the client's response from it */
    ps->buffer = 1;
    ps->validate = pd_reply_ok(&ps->reply);
    return;
  }
  /* An API reply relayed without forcing is still checked to be an OpenAI JSON object (the
   * body is small; streams are relayed as they come). */
  ps->validate = ex->variant && !ps->reply.sse && h->status < 300;
  if (ex->kind == PD_EXCHANGE_MODELS || h->status >= 400 || ps->validate) {
    ps->buffer = 1;
    return;
  }
  /* A stream's usage chunk (the client asked for include_usage) is read on the side. */
  ps->usage = ex->variant && ps->reply.sse && ex->resp.include_usage && !ps->remodel &&
              pd_reply_ok(&ps->reply);
  const char *extra[2 * 64 + 12];
  size_t n = 0;
  for (size_t i = 0; i < h->nheaders && i < 64; i++) {
    if (strcmp(h->headers[2 * i], "content-type") == 0)
      continue;
    extra[n++] = h->headers[2 * i];
    extra[n++] = h->headers[2 * i + 1];
  }
  if (ex->variant) /* a client-API request passed through (rounds 0, or not forceable) */
    pd_upreq_ponder_headers(ex, 0, extra, &n);
  extra[n] = NULL;
  ex->started = 1;
  pd_res_start(ex->req, h->status, h->content_type, extra,
               ex->pass.reply.sse ? -1 : h->content_length);
}

/* One event of a relayed stream whose model was mapped: the client's model name goes back, in
 * place of the upstream's, in the bytes pd_openai_check_reply found (an event that is not a JSON
 * object jansson reads goes out as it came). */
static int remodel_event(void *ud, const char *data, size_t len) {
  pd_exchange_t *ex = ud;
  pd_openai_reply_t r;
  int ok = !(len == 6 && memcmp(data, "[DONE]", 6) == 0) && pd_openai_check_reply(data, len, &r);
  if (ok && r.usage)
    take_usage_text(ex, r.usage, r.usage_len);
  pd_buf_appends(&ex->out, "data: ");
  if (!ok || pd_openai_remodel(&ex->out, data, len, &r, ex->client_model) < 0)
    pd_buf_append(&ex->out, data, len);
  pd_buf_appends(&ex->out, "\n\n");
  return 0;
}

static int pass_on_data(void *ud, const char *p, size_t n) {
  pd_exchange_t *ex = ud;
  if (ex->finished)
    return -1;
  if (ex->pass.buffer) {
    long limit = ex->kind == PD_EXCHANGE_MODELS || ex->pass.validate
                     ? ex->cfg->limits.max_reply_bytes
                     : PD_REPLY_MAX_ERROR_BODY;
    if (pd_reply_hold(&ex->pass.reply, p, n, limit) < 0) {
      pd_exchange_enter(ex);
      pd_reply_fail_too_large(ex, ex->pass.reply.status);
      pd_exchange_leave(ex);
      return -1;
    }
    return 0;
  }
  pd_exchange_enter(ex);
  if (ex->pass.remodel && ex->pass.reply.sse) {
    pd_sse_feed(&ex->pass.reply.parser, p, n, remodel_event, ex);
    if (!ex->finished)
      pd_exchange_flush(ex);
  } else {
    /* An event too large for the side reader only ends the reading, never the relay. */
    if (ex->pass.usage && pd_sse_feed(&ex->pass.reply.parser, p, n, usage_event, ex) < 0)
      ex->pass.usage = 0;
    if (!ex->aborted && pd_res_write(ex->req, p, n))
      ex->pressure = 1;
  }
  int pause = ex->pressure;
  if (pd_exchange_leave(ex))
    return -1;
  return pause;
}

static void models_reply(pd_exchange_t *ex) {
  json_t *j = json_loadb(pd_buf_data(&ex->pass.reply.body), ex->pass.reply.body.len, 0, NULL);
  json_t *data = json_object_get(j, "data");
  if (!json_is_array(data)) {
    json_decref(j);
    pd_reply_fail_bad(ex, ex->pass.reply.status, "model list not valid",
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
  pd_exchange_finish(ex);
}

/* The reply to a translated call (pd_relay_unforced) replaced by the API's response made from
 * it. Returns 0, or -1 having failed the exchange. */
static int plain_reply(pd_exchange_t *ex) {
  pd_buf_t *body = &ex->pass.reply.body, b;
  pd_buf_init(&b);
  int rc = ex->api->plain_final(&b, &ex->resp, pd_buf_data(body), body->len, &ex->usage);
  if (rc < 0) {
    pd_buf_free(&b);
    if (rc == PD_API_EUNREADABLE)
      pd_reply_fail_bad(ex, ex->pass.reply.status, "reply not readable",
                        "The upstream reply is not a valid OpenAI chat completion.");
    else
      pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return -1;
  }
  pd_buf_free(body);
  *body = b;
  return 0;
}

/* Relays a buffered chat reply after checking it is a JSON object json_loadb reads (one pass of
 * the one tokenizer, which also finds "usage" and "model"); a translated call's reply goes out
 * as the API's response instead. */
static void relay_checked(pd_exchange_t *ex) {
  pd_openai_reply_t r;
  memset(&r, 0, sizeof r);
  if (ex->pass.plain && plain_reply(ex) < 0)
    return;
  int ok = ex->pass.plain || pd_openai_check_reply(pd_buf_data(&ex->pass.reply.body),
                                                   ex->pass.reply.body.len, &r) == 1;
  if (ok && r.usage) /* found by the same pass that checked the reply: only it is read */
    take_usage_text(ex, r.usage, r.usage_len);
  if (ok && ex->pass.remodel && r.model) {
    /* A mapped model: the client's model name goes back in place of the upstream's, in the
     * bytes the check found; the rest is relayed as it came. */
    pd_buf_t b;
    pd_buf_init(&b);
    if (pd_openai_remodel(&b, pd_buf_data(&ex->pass.reply.body), ex->pass.reply.body.len, &r,
                          ex->client_model) < 0) {
      pd_buf_free(&b);
      pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return;
    }
    pd_buf_free(&ex->pass.reply.body);
    ex->pass.reply.body = b;
  }
  if (!ok) {
    pd_reply_fail_bad(ex, ex->pass.reply.status, "reply not a JSON object",
                      "The upstream reply is not a valid OpenAI chat completion.");
    return;
  }
  const char *extra[PD_UPREQ_PONDER_NHEADERS + 1];
  size_t n = 0;
  pd_upreq_ponder_headers(ex, 0, extra, &n);
  extra[n] = NULL;
  pd_res_send(ex->req, ex->pass.plain ? 200 : ex->pass.reply.status, "application/json", extra,
              pd_buf_data(&ex->pass.reply.body), ex->pass.reply.body.len);
  pd_exchange_finish(ex);
}

static void pass_on_done(void *ud, int result, const char *errmsg) {
  pd_exchange_t *ex = ud;
  pd_reply_count(ex, &ex->pass.reply, result);
  pd_exchange_enter(ex);
  if (ex->finished)
    goto out;
  if (!ex->started) {
    if (result == PD_XFER_OK && ex->pass.reply.status >= 200 && ex->pass.reply.status < 400 &&
        ex->kind == PD_EXCHANGE_MODELS)
      models_reply(ex);
    else if (result == PD_XFER_OK && ex->pass.validate)
      relay_checked(ex);
    else if (result != PD_XFER_OK || ex->pass.reply.status >= 400 || ex->pass.plain)
      pd_reply_fail(ex, &ex->pass.reply, result, errmsg);
    else
      pd_reply_fail_bad(ex, ex->pass.reply.status, "reply ended unexpectedly",
                        "The upstream reply ended unexpectedly.");
    goto out;
  }
  if (ex->pass.remodel && ex->pass.reply.sse && result == PD_XFER_OK) {
    pd_sse_feed(&ex->pass.reply.parser, "\n\n", 2, remodel_event, ex);
    pd_exchange_flush(ex);
  }
  if (ex->pass.usage && result == PD_XFER_OK)
    pd_sse_feed(&ex->pass.reply.parser, "\n\n", 2, usage_event, ex);
  if (result != PD_XFER_OK) {
    char cause[320];
    snprintf(cause, sizeof cause, "%s mid-body (%.300s)", pd_reply_cause(result),
             errmsg ? errmsg : "");
    pd_reply_log_failure(ex, ex->pass.reply.status, cause);
    if (ex->pass.reply.sse) {
      /* Already streaming: one error event, no [DONE]. */
      pd_exchange_fail(ex, result == PD_XFER_ETIMEOUT ? 504 : 502,
                       "The upstream stream broke off before it was complete.", "upstream_error",
                       result == PD_XFER_ETIMEOUT ? "upstream_timeout" : "upstream_error");
    } else {
      pd_res_end(ex->req, 1);
      pd_exchange_finish(ex);
    }
    goto out;
  }
  pd_res_end(ex->req, 0);
  pd_exchange_finish(ex);
out:
  pd_exchange_leave(ex);
}

void pd_relay_start(pd_exchange_t *ex, char *body, size_t len, int json_body) {
  static const pd_xfer_cbs_t cbs = {pass_on_head, pass_on_data, pass_on_done};
  pd_req_t *r = ex->req;
  ex->pass.reply.xfer = pd_upreq_start(ex, r->method, ex->url, body, len, json_body, &cbs, ex);
  if (!ex->pass.reply.xfer)
    pd_exchange_fail(ex, 502, "Could not start the upstream request.", "upstream_error",
                     "upstream_error");
}

static uint64_t rnd_cb(void *ud) {
  return pd_worker_rand(ud);
}

/* An API that does not relay: its request (the engine's, translated) goes upstream as the
 * engine's plain call sends it (core/modes.c pd_mode_plain_body: the route's model, no n,
 * ponder or stream settings) to the chat completions path; the reply comes back through the
 * API's plain_final. */
static void start_translated(pd_exchange_t *ex) {
  json_t *body = ex->body;
  const char *model = ex->route->model ? ex->route->model : ex->client_model;
  json_object_del(body, "n");
  json_object_del(body, "ponder");
  json_object_del(body, "stream");
  json_object_del(body, "stream_options");
  size_t len = 0;
  char *s = NULL;
  /* The model is set only when it changes (usually the client's own is there already). */
  const char *now = json_string_value(json_object_get(body, "model"));
  int same = now && !strcmp(now, model ? model : "");
  if (same || json_object_set_new(body, "model", json_string(model ? model : "")) == 0)
    s = json_text(body, &len);
  pd_relay_translated(ex, s, len);
}

void pd_relay_translated(pd_exchange_t *ex, char *s, size_t len) {
  pd_buf_t url;
  pd_buf_init(&url);
  char *u = NULL;
  if (s && pd_url_join(&ex->base, "/chat/completions", 17, NULL, 0, &url) == 0)
    u = pd_buf_steal(&url, NULL);
  pd_buf_free(&url);
  if (!u) {
    free(s);
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return;
  }
  free(ex->url);
  ex->url = u;
  pd_openai_new_id(ex->resp.id, ex->api->id_prefix, rnd_cb, ex->w);
  ex->resp.created = (long)time(NULL);
  ex->resp.n = 1;
  ex->pass.plain = 1;
  ex->kind = PD_EXCHANGE_PASS;
  pd_relay_start(ex, s, len, 1);
}

void pd_relay_unforced(pd_exchange_t *ex, int verbatim) {
  pd_req_t *r = ex->req;
  json_t *body = ex->body;
  if (!ex->api->relay) {
    start_translated(ex);
    return;
  }
  if (ex->route->model) {
    json_object_set_new(body, "model", json_string(ex->route->model));
    ex->pass.remodel = ex->client_model && strcmp(ex->client_model, ex->route->model) != 0;
  }
  /* The client's bytes go upstream as they are when nothing in them changed (no re-serialising
   * on the common path). */
  size_t len = r->body.len;
  char *s = verbatim ? malloc(len + 1) : json_text(body, &len);
  if (!s) {
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return;
  }
  if (verbatim)
    memcpy(s, pd_buf_data(&r->body), len);
  ex->kind = PD_EXCHANGE_PASS;
  pd_relay_start(ex, s, len, 1);
}
