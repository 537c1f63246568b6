/* The dispatch decision (SPEC sections 3 "Route matching" and 4): from a request's method,
 * path, query, the headers it needs and its body, what ponder does with it: an ops endpoint,
 * an error answered at once (400, 401, 404, 405), or a client API (api/api.h), models or
 * pass-through exchange on a route, with the upstream URL already joined (url.h) and checked.
 *
 * Pure: no I/O, no libuv or libcurl; safe on any worker thread over an immutable config.
 * The front (front.c) acts on the decision; the fuzz target checks it on any bytes. */
#ifndef PD_DISPATCH_H
#define PD_DISPATCH_H

#include <jansson.h>
#include <stddef.h>

#include "api/api.h"
#include "base/buf.h"
#include "config/config.h"
#include "api/chat_scan.h"
#include "core/openai.h"
#include "core/router.h"
#include "base/url.h"

typedef enum pd_dispatch_kind {
  PD_DISPATCH_ERROR = 0, /* answer status with the OpenAI error in the decision */
  PD_DISPATCH_HEALTHZ,   /* GET /healthz */
  PD_DISPATCH_METRICS,   /* GET /metrics */
  PD_DISPATCH_FEEDBACK,  /* POST /v1/ponder/feedback (authorized) */
  PD_DISPATCH_API,       /* POST [prefix]/v1 + a client API's path (d->api says which) */
  PD_DISPATCH_CHAT = PD_DISPATCH_API, /* the name from before there was more than one API */
  PD_DISPATCH_MODELS,                 /* GET [prefix]/v1/models */
  PD_DISPATCH_PASS,                   /* any other [prefix]/v1[/...]: passed through */
} pd_dispatch_kind_t;

/* What the decision reads of a request. Everything is borrowed for the call. */
typedef struct pd_dispatch_req {
  const char *method; /* "GET", "POST", ... */
  const char *path;   /* the request target before '?' (not NUL-terminated) */
  size_t path_len;
  const char *query; /* after '?' ("" or NULL for none) */
  size_t query_len;
  pd_header_fn get_header; /* "authorization" and "content-type" are asked */
  void *ud;
  const char *body;
  size_t body_len;
} pd_dispatch_req_t;

typedef struct pd_dispatch {
  pd_dispatch_kind_t kind;
  /* PD_DISPATCH_ERROR: the status and the error object's fields (static strings, or msg). */
  int status;
  const char *message, *type, *param, *code;
  const char *allow; /* 405: the Allow header's value */
  char msg[320];
  /* API, MODELS, PASS. */
  const pd_route_t *route; /* borrowed from the config */
  const pd_upstream_cfg_t *upstream;
  pd_url_base_t base; /* the upstream's base_url, parsed (points into the config) */
  const char *rest;   /* the path after [prefix]/v1 ("" or "/..."), into req->path */
  size_t rest_len;
  pd_buf_t url;        /* base joined with rest and the query (NUL-terminated) */
  char *model;         /* the body's "model" when it was read (malloc'd), else NULL */
  json_t *body;        /* the body's tree when it was parsed for routing (owned), else NULL */
  const pd_api_t *api; /* API: the client API serving the path (static) */
  int scanned;         /* API: the API's scan read the whole body into scan */
  pd_chat_scan_t scan; /* pointers into req->body */
} pd_dispatch_t;

/* Decides what to do with req under cfg (SPEC section 4, in this order): /healthz and
 * /metrics (405 for other methods); the [prefix]/v1 split, where prefix is the longest
 * path_prefix of a route that the path starts with followed by "/v1" and then '/' or its end,
 * or empty when the path itself starts so (else 404 unknown_url); auth (401); the feedback
 * endpoint; the rest and the query checked (400, pd_url_check_*); a client API's method
 * (405); a client API's body that is not a JSON object (400); the route (by prefix, else by the
 * body's model, else the catch-all: else 404 model_not_found); the upstream URL joined. Always
 * fills *d (pd_dispatch_free releases it) and returns d->kind. */
pd_dispatch_kind_t pd_dispatch_decide(const pd_config_t *cfg, const pd_dispatch_req_t *req,
                                      pd_dispatch_t *d);

/* Frees what the decision still owns (url, model, body); fields taken by the caller must be
 * reset to NULL (or the buffer re-initialised) first. */
void pd_dispatch_free(pd_dispatch_t *d);

/* Whether the Authorization header value h carries one of cfg's auth.keys ("Bearer KEY",
 * compared in constant time per key); 1 when cfg has no keys. */
int pd_dispatch_authorized(const pd_config_t *cfg, const char *h);

#endif
