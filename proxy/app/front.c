/* The front of the exchange: the server's request handler and head check. It takes the
 * dispatch decision (dispatch.c), answers the ops endpoints (healthz, metrics, feedback) and
 * the errors given at once itself, and hands every other request to an exchange: a client
 * API's request (resolved on its route, then forced, relayed, or relayed on the fast path), the
 * model list, or a plain pass-through. Owns nothing past the call: the exchange owns itself. */
#include "app/front.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/dispatch.h"
#include "app/exchange.h"
#include "http/res.h"
#include "app/forced.h"
#include "app/relay.h"
#include "core/openai.h"
#include "obs/feedback_token.h"

static double now_seconds(uint64_t start_ns) {
  return (double)(uv_hrtime() - start_ns) / 1e9;
}

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

/* The route and variant named by a token, in the current config; NULL when it has no such
 * route (*variant NULL too) or no such variant of it. */
static const pd_route_t *find_target(const pd_config_t *cfg, const pd_feedback_claim_t *c,
                                     const pd_variant_t **variant) {
  *variant = NULL;
  for (size_t i = 0; i < cfg->nroutes; i++) {
    const pd_route_t *rt = &cfg->routes[i];
    if (strcmp(rt->name, c->route) != 0)
      continue;
    for (size_t k = 0; k < rt->nvariants; k++)
      if (strcmp(rt->variants[k].name, c->variant) == 0)
        *variant = &rt->variants[k];
    return rt;
  }
  return NULL;
}

/* A feedback token's route and variant, checked under the current config (its secret, its
 * max age, its routes). Returns 0 with the names in route and variant (the config's own
 * strings), or -1 having answered the 403, 404 or 500. */
static int credit_token(pd_worker_t *w, pd_req_t *r, const pd_feedback_body_t *b,
                        pd_feedback_claim_t *c, const char **route, const char **variant) {
  const pd_config_t *cfg = w->cfg;
  int rc = pd_feedback_token_verify(cfg->feedback.secret, b->token, b->token_len,
                                    (int64_t)time(NULL), cfg->feedback.max_age_s, c);
  if (rc == PD_FEEDBACK_TOKEN_EEXPIRED) {
    error_now(w, r, 403, "The feedback token has expired (it is older than feedback.max_age_s).",
              "invalid_request_error", "token", "feedback_token_expired");
    return -1;
  }
  if (rc == PD_FEEDBACK_TOKEN_EFUTURE) {
    error_now(w, r, 403, "The feedback token's issue time is in the future.",
              "invalid_request_error", "token", "invalid_feedback_token");
    return -1;
  }
  if (rc == PD_FEEDBACK_TOKEN_EKEY) {
    error_now(w, r, 500, "No key to check feedback tokens with.", "server_error", NULL,
              "internal_error");
    return -1;
  }
  if (rc < 0) {
    error_now(w, r, 403,
              "The feedback token is not valid: forged, altered or truncated, or issued under "
              "another feedback.secret.",
              "invalid_request_error", "token", "invalid_feedback_token");
    return -1;
  }
  const pd_variant_t *v;
  const pd_route_t *rt = find_target(cfg, c, &v);
  if (!rt || !v) {
    error_now(w, r, 404,
              !rt ? "The feedback token's route is no longer configured."
                  : "The feedback token's variant is no longer configured on its route.",
              "invalid_request_error", "token", !rt ? "route_not_found" : "variant_not_found");
    return -1;
  }
  *route = rt->name;
  *variant = v->name;
  return 0;
}

/* POST /v1/ponder/feedback (SPEC section 7): a score for the route and variant that served a
 * request, named by its feedback token (any replica with the same secret) or by its request id
 * (this process's memory of its last requests). */
static void serve_feedback(pd_worker_t *w, pd_req_t *r) {
  pd_feedback_body_t b;
  if (pd_feedback_token_body_read(pd_buf_data(&r->body), r->body.len, &b) < 0) {
    error_now(w, r, 400,
              "Feedback needs a JSON object with a string 'token' (or 'request_id') and a finite "
              "number 'score'.",
              "invalid_request_error", b.bad, NULL);
    pd_feedback_token_body_free(&b);
    return;
  }
  char rbuf[256], vbuf[256];
  const char *route = rbuf, *variant = vbuf, *id = b.request_id;
  pd_feedback_claim_t claim;
  if (b.token) {
    if (credit_token(w, r, &b, &claim, &route, &variant) < 0) {
      pd_feedback_token_body_free(&b);
      return;
    }
    id = claim.request_id;
  } else if (pd_feedback_lookup(w->app->feedback, w->app->nworkers, id, rbuf, sizeof rbuf, vbuf,
                                sizeof vbuf) < 0) {
    pd_feedback_token_body_free(&b);
    error_now(w, r, 404, "No recent request has this request_id.", "invalid_request_error",
              "request_id", "request_not_found");
    return;
  }
  pd_metrics_feedback(w->metrics, route, variant, b.score);
  json_t *out = json_pack("{s:s,s:s,s:s,s:s}", "status", "ok", "request_id", id, "route", route,
                          "variant", variant);
  char *s = json_dumps(out, JSON_COMPACT);
  json_decref(out);
  pd_feedback_token_body_free(&b);
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
int pd_front_check_head(void *ud, pd_req_t *r) {
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

/* The route's variant and rounds for the request (SPEC section 7), read from body (the
 * engine's request, or a stand-in on the fast path; may be NULL). Returns 0, or -1 having
 * answered the 400. */
static int resolve(pd_exchange_t *ex, json_t *body, pd_resolved_t *res) {
  char errmsg[256], errparam[64];
  if (pd_router_resolve(ex->route, body, get_header_cb, ex->req, pd_worker_rand(ex->w), res, errmsg,
                        sizeof errmsg, errparam, sizeof errparam) < 0) {
    pd_exchange_fail_400(ex, errmsg, errparam[0] ? errparam : NULL);
    return -1;
  }
  ex->variant = res->variant->name;
  ex->rounds = res->rounds;
  return 0;
}

/* A client API's request once read and resolved: forced, or relayed. */
static void start_resolved(pd_exchange_t *ex, const pd_api_req_t *q, const pd_resolved_t *res) {
  const pd_api_t *api = ex->api;
  ex->stream = q->stream;
  ex->resp.include_usage = q->include_usage;
  /* Unforced: relayed, or for an API that translates, one plain call without the engine. */
  if (!pd_engine_should_force(ex->body, ex->rounds) &&
      (api->relay || (api->plain_final && !ex->stream))) {
    pd_relay_unforced(ex, api->relay && q->verbatim && !ex->route->model);
    return;
  }
  pd_forced_start(ex, &res->variant->forcing);
}

/* A client API's request on the tree path: the API reads it into the engine's request, the
 * route resolves its variant and rounds, then it is forced or relayed. */
static void start_api(pd_exchange_t *ex) {
  const pd_api_t *api = ex->api;
  pd_api_req_t q;
  if (api->request(&ex->body, &q, &ex->resp) < 0) {
    pd_exchange_fail_400(ex, q.msg, q.param);
    return;
  }
  /* Named before the router removes them, for the 400 of too many upstream calls. */
  ex->rounds_param = q.rounds_param;
  ex->effort_param = ex->route->neffort > 0 ? q.effort_param : NULL;
  pd_resolved_t res;
  if (resolve(ex, ex->body, &res) < 0)
    return;
  start_resolved(ex, &q, &res);
}

/* resolve() for a body read by a scan: the router reads the body only for a sticky "user"
 * (the scan saw no override or effort), so a one-key object stands in for it. Returns 0, or -1
 * having answered (a 400, or a 500 when out of memory). */
static int resolve_scanned(pd_exchange_t *ex, const pd_chat_scan_t *cr, pd_resolved_t *res) {
  json_t *mini = NULL;
  if (ex->route->sticky == PD_STICKY_BODY_USER && cr->user) {
    mini = json_object();
    json_t *u = json_stringn(cr->user, cr->user_len);
    if (!mini || !u || json_object_set_new(mini, "user", u) < 0) {
      json_decref(mini);
      pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return -1;
    }
  }
  int rc = resolve(ex, mini, res);
  json_decref(mini);
  return rc;
}

/* The translated fast path: an API that does not relay but writes its plain call's body from
 * the client's bytes (plain_body), a body its scan read completely (valid, translated without
 * a 400, the router reads only "user"), not streamed. The route resolves on a stand-in; at
 * rounds 0 the body is written in one pass and sent as start_api would send it, otherwise the
 * tree path goes on with this resolution (a second random pick would bias the variants).
 * Returns 0, having changed nothing, when the request needs the whole tree path. */
static int start_fast_plain(pd_exchange_t *ex, const pd_chat_scan_t *cr) {
  const pd_api_t *api = ex->api;
  pd_req_t *r = ex->req;
  if (!api->plain_body || !api->plain_final || cr->stream)
    return 0;
  pd_resolved_t res;
  if (resolve_scanned(ex, cr, &res) < 0)
    return 1;
  if (ex->rounds == 0) {
    const char *model = ex->route->model ? ex->route->model : ex->client_model;
    pd_buf_t b;
    pd_buf_init(&b);
    int rc = api->plain_body(pd_buf_data(&r->body), r->body.len, model ? model : "", &b, &ex->resp);
    if (rc == 0) {
      ex->stream = 0;
      size_t len = 0;
      char *s = pd_buf_steal(&b, &len);
      pd_relay_translated(ex, s, len);
      return 1;
    }
    pd_buf_free(&b);
    if (rc < 0) {
      pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      return 1;
    }
  }
  json_error_t jerr;
  ex->body = pd_json_load(pd_buf_data(&r->body), r->body.len, &jerr);
  pd_api_req_t q;
  if (!json_is_object(ex->body))
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
  else if (api->request(&ex->body, &q, &ex->resp) < 0)
    pd_exchange_fail_400(ex, q.msg, q.param);
  else {
    ex->rounds_param = q.rounds_param;
    ex->effort_param = ex->route->neffort > 0 ? q.effort_param : NULL;
    start_resolved(ex, &q, &res);
  }
  return 1;
}

/* The relay fast path for a request certain to be passed through unchanged: an API that relays,
 * every variant of its route with rounds 0, no rounds override, no model mapping, and a body
 * the API's scan read completely (cr: valid, nothing to rewrite). It behaves exactly as
 * start_api would on the parsed body, without building the tree. Returns 0, having changed
 * nothing, when the request needs the tree path. */
static int start_fast(pd_exchange_t *ex, const pd_chat_scan_t *cr) {
  pd_req_t *r = ex->req;
  const pd_route_t *route = ex->route;
  if (!ex->api->relay)
    return start_fast_plain(ex, cr);
  int fast = ex->api->relay && !route->model && !pd_req_header(r, "x-ponder-rounds");
  for (size_t i = 0; fast && i < route->nvariants; i++)
    fast = route->variants[i].forcing.rounds == 0;
  if (!fast)
    return 0;
  pd_resolved_t res;
  if (resolve_scanned(ex, cr, &res) < 0)
    return 1;
  ex->stream = cr->stream;
  ex->resp.include_usage = cr->include_usage;
  size_t len = r->body.len;
  char *body = malloc(len + 1);
  if (!body) {
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
    return 1;
  }
  memcpy(body, pd_buf_data(&r->body), len);
  ex->kind = PD_EXCHANGE_PASS;
  pd_relay_start(ex, body, len, 1);
  return 1;
}

void pd_front_dispatch(void *ud, pd_req_t *r) {
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
  pd_exchange_t *ex = pd_exchange_new(w, r, cfg);
  if (!ex) {
    pd_dispatch_free(&d);
    return error_now(w, r, 500, "Out of memory.", "server_error", NULL, "internal_error");
  }
  ex->route = d.route;
  ex->ucfg = d.upstream;
  ex->base = d.base;
  ex->url = pd_buf_steal(&d.url, NULL);
  ex->client_model = d.model;
  d.model = NULL;
  ex->body = d.body;
  d.body = NULL;
  ex->resp.model = ex->client_model;
  ex->resp.reasoning = d.route ? d.route->reasoning : PD_REASONING_FIELD;
  ex->resp.reasoning_field = d.route ? d.route->reasoning_field : PD_RFIELD_REASONING_CONTENT;
  ex->resp.limit_param = d.upstream ? d.upstream->token_limit_param : NULL;
  ex->resp.max_held = cfg->limits.max_reply_bytes;
  pd_dispatch_kind_t kind = d.kind;
  int scanned = d.scanned;
  pd_chat_scan_t scan = d.scan;
  const pd_api_t *api = d.api;
  pd_dispatch_free(&d);
  if (!ex->url) {
    pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
  } else if (kind == PD_DISPATCH_API) {
    ex->api = api;
    if (!(scanned && start_fast(ex, &scan))) {
      json_error_t jerr;
      if (!ex->body) /* the scan read it, but the route forces or rewrites it */
        ex->body = pd_json_load(pd_buf_data(&r->body), r->body.len, &jerr);
      if (!json_is_object(ex->body))
        pd_exchange_fail(ex, 500, "Out of memory.", "server_error", "internal_error");
      else
        start_api(ex);
    }
  } else if (kind == PD_DISPATCH_MODELS) {
    ex->kind = PD_EXCHANGE_MODELS;
    json_decref(ex->body);
    ex->body = NULL;
    pd_relay_start(ex, NULL, 0, 0);
  } else {
    ex->kind = PD_EXCHANGE_PASS;
    char *copy = NULL;
    size_t len = r->body.len;
    if (len) {
      copy = malloc(len);
      if (copy)
        memcpy(copy, pd_buf_data(&r->body), len);
    }
    json_decref(ex->body); /* only client-API responses carry ponder's headers */
    ex->body = NULL;
    pd_relay_start(ex, copy, len, 0);
  }
  pd_exchange_leave(ex);
}
