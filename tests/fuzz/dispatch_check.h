/* Shared by the fuzz targets that reach the dispatch decision (fuzz_dispatch: the decision on
 * its own; fuzz_http: every request the real server parses): a fixed set of configs with prefix
 * routes (nested ones too), a models route, a catch-all, auth keys or none, and upstreams with
 * and without port and path, and check_decision, which takes the decision and aborts on any
 * property it breaks (see check_decision). Static functions: include it from one target file. */
#ifndef PD_FUZZ_DISPATCH_CHECK_H
#define PD_FUZZ_DISPATCH_CHECK_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/dispatch.h"

static pd_upstream_cfg_t ups[4] = {
    {.name = "noport", .base_url = "http://127.0.0.1"},
    {.name = "v1", .base_url = "http://localhost:8080/v1"},
    {.name = "deep", .base_url = "https://api.deepseek.com"},
    {.name = "q", .base_url = "http://[::1]:9/a/b?api-version=1"},
};
static char *models[] = {"m1", "gpt-4o-think"};
static char *keys[] = {"sk-good", "sk-other"};
static pd_route_t routes[6];
static pd_config_t cfgs[3];

static void init_once(void) {
  static int done;
  if (done)
    return;
  done = 1;
  const struct {
    const char *name, *prefix;
    int models;
    size_t up;
  } r[] = {{"math", "/math", 0, 1}, {"ab", "/a/b", 0, 2},    {"a", "/a", 0, 0},
           {"v1", "/v1", 0, 3},     {"bymodel", NULL, 1, 1}, {"catch", NULL, 0, 0}};
  for (size_t i = 0; i < 6; i++) {
    routes[i].name = (char *)r[i].name;
    routes[i].path_prefix = (char *)r[i].prefix;
    routes[i].has_match = r[i].prefix || r[i].models;
    routes[i].models = r[i].models ? models : NULL;
    routes[i].nmodels = r[i].models ? 2 : 0;
    routes[i].upstream = r[i].up;
  }
  for (int i = 0; i < 3; i++) {
    cfgs[i].upstreams = ups;
    cfgs[i].nupstreams = 4;
    cfgs[i].routes = routes;
    cfgs[i].nroutes = i == 2 ? 5 : 6; /* the third has no catch-all */
  }
  cfgs[1].auth_keys = keys;
  cfgs[1].nauth_keys = 2;
}

/* The error body written from a decision's message (as the exchange writes it) is valid UTF-8
 * JSON, whatever client bytes the message quotes. */
static void check_error_body(const pd_dispatch_t *d) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, d->message, d->type, d->param, d->code);
  json_t *j = json_loadb(pd_buf_data(&b), b.len, 0, NULL); /* jansson refuses invalid UTF-8 */
  if (!j)
    abort();
  json_decref(j);
  pd_buf_free(&b);
}

static int authorized(const pd_config_t *c, const char *auth) {
  if (!c->nauth_keys)
    return 1;
  if (!auth || strncasecmp(auth, "Bearer ", 7))
    return 0;
  for (size_t i = 0; i < c->nauth_keys; i++)
    if (!strcmp(auth + 7, c->auth_keys[i]))
      return 1;
  return 0;
}

static void check_exchange(const pd_config_t *c, const pd_dispatch_t *d, const char *path,
                           size_t plen) {
  if (!d->route || d->upstream != &c->upstreams[d->route->upstream])
    abort();
  /* The route's prefix and "/v1" start the path, and rest is what follows. */
  size_t pre = d->route->path_prefix ? strlen(d->route->path_prefix) : 0;
  if (d->rest != path + pre + 3 || d->rest_len != plen - pre - 3 ||
      memcmp(path, d->route->path_prefix ? d->route->path_prefix : "", pre) ||
      memcmp(path + pre, "/v1", 3) || (d->rest_len && d->rest[0] != '/'))
    abort();
  /* The URL parses back to the upstream's scheme and authority, under its path. */
  const char *u = pd_buf_data(&d->url);
  pd_url_base_t j;
  if (pd_url_parse_base(u, d->url.len, &j) != 0)
    abort();
  const pd_url_base_t *b = &d->base;
  if (j.scheme_len != b->scheme_len || memcmp(j.scheme, b->scheme, b->scheme_len) ||
      j.authority_len != b->authority_len || memcmp(j.authority, b->authority, j.authority_len))
    abort();
  size_t bl = b->path_len;
  while (bl > 0 && b->path[bl - 1] == '/')
    bl--;
  if (j.path_len < bl || memcmp(j.path, b->path, bl) || (j.path_len > bl && j.path[bl] != '/'))
    abort();
  for (size_t i = 0; i < j.path_len; i++) {
    const char *s = j.path + i;
    size_t left = j.path_len - i;
    if (*s == '\\' || *s == '@' ||
        (*s == '%' && left >= 3 &&
         (!strncasecmp(s, "%2e", 3) || !strncasecmp(s, "%2f", 3) || !strncasecmp(s, "%5c", 3))))
      abort();
    if (*s == '/' && ((left >= 2 && s[1] == '.' && (left == 2 || s[2] == '/')) ||
                      (left >= 3 && s[1] == '.' && s[2] == '.' && (left == 3 || s[3] == '/'))))
      abort();
  }
}

/* Decides in under c and checks the decision: every error is one SPEC names (400, 401, 404,
 * 405) with an OpenAI error type and a body that is valid UTF-8 JSON; an exchange has its
 * route's upstream and a URL with that upstream's scheme and authority and a path under its base
 * path, without dot segments or escaped separators; the route's prefix + "/v1" starts the path;
 * with auth keys, nothing but /healthz, /metrics and unknown paths passes without the key (auth
 * is the Authorization value in->get_header returns). */
static void check_decision(const pd_config_t *c, const pd_dispatch_req_t *in, const char *auth) {
  pd_dispatch_t d;
  pd_dispatch_kind_t k = pd_dispatch_decide(c, in, &d);
  if (k != d.kind)
    abort();
  switch (k) {
  case PD_DISPATCH_ERROR:
    if (d.status != 400 && d.status != 401 && d.status != 404 && d.status != 405)
      abort();
    if (!d.message || !d.type || strcmp(d.type, "invalid_request_error"))
      abort();
    check_error_body(&d);
    if (d.status == 405 && !d.allow)
      abort();
    break;
  case PD_DISPATCH_HEALTHZ:
  case PD_DISPATCH_METRICS:
    if (strcmp(in->method, "GET"))
      abort();
    break;
  case PD_DISPATCH_FEEDBACK:
    if (!authorized(c, auth) || strcmp(in->method, "POST") || in->path_len != 19 ||
        memcmp(in->path, "/v1/ponder/feedback", 19))
      abort();
    break;
  default:
    if (!authorized(c, auth))
      abort();
    check_exchange(c, &d, in->path, in->path_len);
    if (k == PD_DISPATCH_CHAT && (strcmp(in->method, "POST") || !d.scanned == !d.body))
      abort();
    break;
  }
  pd_dispatch_free(&d);
}

#endif
