/* The dispatch decision. See dispatch.h. Owns nothing past the decision it fills; the client
 * APIs it recognises are api/api.c's registry.
 *
 * The [prefix]/v1 split is exact on purpose: the prefix is one of the configured path_prefix
 * values (or nothing) and "/v1" follows it at once. Finding "/v1/" anywhere in the path would
 * let the bytes before it (an authority, a host name, dot segments) end up in the upstream URL
 * or pick a route the client was not meant to reach by that path. */
#include "app/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static pd_dispatch_kind_t set_error(pd_dispatch_t *d, int status, const char *message,
                                    const char *type, const char *code) {
  d->kind = PD_DISPATCH_ERROR;
  d->status = status;
  d->message = message;
  d->type = type;
  d->code = code;
  return PD_DISPATCH_ERROR;
}

static int is(const char *p, size_t n, const char *s) {
  size_t k = strlen(s);
  return n == k && memcmp(p, s, k) == 0;
}

/* p starts with "/v1" followed by '/' or its end. */
static int v1_at(const char *p, size_t n) {
  return n >= 3 && memcmp(p, "/v1", 3) == 0 && (n == 3 || p[3] == '/');
}

/* The route whose path_prefix + "/v1" starts the path (the longest such prefix), or NULL.
 * *rest_off is set past the "/v1" when either that or an empty prefix fits; *found says
 * whether one did. */
static const pd_route_t *split(const pd_config_t *cfg, const char *path, size_t len,
                               size_t *rest_off, int *found) {
  const pd_route_t *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < cfg->nroutes; i++) {
    const char *pp = cfg->routes[i].path_prefix;
    if (!pp)
      continue;
    size_t n = strlen(pp);
    while (n > 0 && pp[n - 1] == '/') /* config stores none; a bare "/" is the empty prefix */
      n--;
    if (n == 0 || len < n || memcmp(path, pp, n) != 0 || !v1_at(path + n, len - n))
      continue;
    if (!best || n > best_len) {
      best = &cfg->routes[i];
      best_len = n;
    }
  }
  *found = best != NULL || v1_at(path, len);
  *rest_off = (best ? best_len : 0) + 3;
  return best;
}

int pd_dispatch_authorized(const pd_config_t *cfg, const char *h) {
  if (cfg->nauth_keys == 0)
    return 1;
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return 0;
  const char *k = h + 7;
  size_t klen = strlen(k);
  int ok = 0;
  for (size_t i = 0; i < cfg->nauth_keys; i++) {
    /* Constant time in the compared bytes: no early exit on the first difference. */
    const char *b = cfg->auth_keys[i];
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(klen != blen);
    for (size_t j = 0; j < klen; j++)
      diff |= (unsigned char)(k[j] ^ b[j < blen ? j : 0]);
    ok |= diff == 0 && blen > 0;
  }
  return ok;
}

static const char *header(const pd_dispatch_req_t *req, const char *name) {
  return req->get_header ? req->get_header(req->ud, name) : NULL;
}

pd_dispatch_kind_t pd_dispatch_decide(const pd_config_t *cfg, const pd_dispatch_req_t *req,
                                      pd_dispatch_t *d) {
  memset(d, 0, sizeof *d);
  pd_buf_init(&d->url);
  const char *path = req->path, *method = req->method;
  size_t plen = req->path_len;
  int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
  if (is(path, plen, "/healthz") || is(path, plen, "/metrics")) {
    if (!get) {
      d->allow = "GET";
      snprintf(d->msg, sizeof d->msg, "Method %.32s is not allowed here; use GET.", method);
      return set_error(d, 405, d->msg, "invalid_request_error", "method_not_allowed");
    }
    d->kind = path[1] == 'h' ? PD_DISPATCH_HEALTHZ : PD_DISPATCH_METRICS;
    return d->kind;
  }
  size_t rest_off;
  int found;
  const pd_route_t *route = split(cfg, path, plen, &rest_off, &found);
  if (!found) {
    /* Client bytes go into the message as they are: pd_openai_error, which writes every error
     * body, turns what is not well-formed UTF-8 into U+FFFD. */
    snprintf(d->msg, sizeof d->msg, "Unknown path: %.*s", (int)(plen > 200 ? 200 : plen), path);
    return set_error(d, 404, d->msg, "invalid_request_error", "unknown_url");
  }
  if (!pd_dispatch_authorized(cfg, header(req, "authorization")))
    return set_error(d, 401, "Incorrect API key provided.", "invalid_request_error",
                     "invalid_api_key");
  if (is(path, plen, "/v1/ponder/feedback")) {
    if (!post) {
      d->allow = "POST";
      snprintf(d->msg, sizeof d->msg, "Method %.32s is not allowed here; use POST.", method);
      return set_error(d, 405, d->msg, "invalid_request_error", "method_not_allowed");
    }
    d->kind = PD_DISPATCH_FEEDBACK;
    return d->kind;
  }
  d->rest = path + rest_off;
  d->rest_len = plen - rest_off;
  const char *query = req->query ? req->query : "";
  size_t qlen = req->query ? req->query_len : 0;
  int rc = pd_url_check_rest(d->rest, d->rest_len);
  if (rc < 0)
    return set_error(d, 400, pd_url_strerror(rc), "invalid_request_error", "invalid_path");
  rc = pd_url_check_query(query, qlen);
  if (rc < 0)
    return set_error(d, 400, pd_url_strerror(rc), "invalid_request_error", "invalid_query");
  const pd_api_t *api = pd_api_find(d->rest, d->rest_len);
  if (api && !post) {
    d->allow = "POST";
    snprintf(d->msg, sizeof d->msg, "Method %.32s is not allowed here; use POST.", method);
    return set_error(d, 405, d->msg, "invalid_request_error", "method_not_allowed");
  }
  /* The body is read for a client API (always) and for routing by the requested model. */
  const char *model = NULL;
  size_t model_len = 0;
  if (api) {
    d->api = api;
    d->scanned = api->scan && api->scan(req->body, req->body_len, &d->scan) == 1;
    if (d->scanned) {
      model = d->scan.model;
      model_len = d->scan.model_len;
    } else {
      json_error_t jerr;
      memset(&jerr, 0, sizeof jerr);
      d->body = pd_json_load(req->body, req->body_len, &jerr);
      if (!json_is_object(d->body)) {
        snprintf(d->msg, sizeof d->msg,
                 "We could not parse the JSON body of your request: %s (line %d, column %d).",
                 d->body ? "expected a JSON object" : jerr.text, jerr.line, jerr.column);
        json_decref(d->body);
        d->body = NULL;
        return set_error(d, 400, d->msg, "invalid_request_error", NULL);
      }
    }
  } else if (!route && req->body_len > 0 &&
             (pd_router_needs_model(cfg) || !pd_router_match(cfg, NULL, 0, NULL, NULL))) {
    const char *ct = header(req, "content-type");
    if (!ct || strncasecmp(ct, "application/json", 16) == 0)
      d->body = json_loadb(req->body, req->body_len, 0, NULL);
  }
  if (d->body) {
    model = json_string_value(json_object_get(d->body, "model"));
    model_len = model ? json_string_length(json_object_get(d->body, "model")) : 0;
  }
  if (model) {
    d->model = malloc(model_len + 1);
    if (!d->model)
      return set_error(d, 500, "Out of memory.", "server_error", "internal_error");
    memcpy(d->model, model, model_len);
    d->model[model_len] = '\0';
  }
  if (!route)
    route = pd_router_match(cfg, NULL, 0, d->model, NULL);
  if (!route) {
    snprintf(d->msg, sizeof d->msg,
             "The model '%.200s' does not exist or you do not have access to it.",
             d->model ? d->model : "");
    return set_error(d, 404, d->msg, "invalid_request_error", "model_not_found");
  }
  d->route = route;
  d->upstream = &cfg->upstreams[route->upstream];
  /* The loader parsed base_url once; a config built by hand (tests) is parsed here. */
  const char *bu = d->upstream->base_url ? d->upstream->base_url : "";
  if (d->upstream->base.scheme)
    d->base = d->upstream->base;
  else if (pd_url_parse_base(bu, strlen(bu), &d->base) < 0) {
    snprintf(d->msg, sizeof d->msg, "The base_url of upstream '%.100s' cannot be used.",
             d->upstream->name ? d->upstream->name : "");
    return set_error(d, 500, d->msg, "server_error", "internal_error");
  }
  rc = pd_url_join(&d->base, d->rest, d->rest_len, query, qlen, &d->url);
  if (rc < 0)
    return set_error(d, 500, "Out of memory.", "server_error", "internal_error");
  d->kind = api                                          ? PD_DISPATCH_API
            : get && is(d->rest, d->rest_len, "/models") ? PD_DISPATCH_MODELS
                                                         : PD_DISPATCH_PASS;
  return d->kind;
}

void pd_dispatch_free(pd_dispatch_t *d) {
  pd_buf_free(&d->url);
  free(d->model);
  d->model = NULL;
  json_decref(d->body);
  d->body = NULL;
}
