/* Routing and A/B assignment (SPEC sections 3 "Route matching" and 7).
 *
 * Pure functions over an immutable pd_config_t: no I/O, no global state, safe on any worker
 * thread. Randomness is passed in by the caller (rnd) so that every decision is testable. */
#ifndef PD_ROUTER_H
#define PD_ROUTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define PD_ROUTER_MAX_ROUNDS 32

/* FNV-1a 64-bit of data (offset basis 14695981039346656037, prime 1099511628211). */
uint64_t pd_router_hash(const void *data, size_t len);

/* Continues an FNV-1a 64-bit hash h over more bytes (h = 14695981039346656037 to start). */
uint64_t pd_router_hash_update(uint64_t h, const void *data, size_t len);

/* Route for a request: path (without the query) and the requested model (may be NULL).
 * The longest matching path_prefix wins (a prefix matches when the path starts with it followed
 * by '/' or the end); else the first route without a path_prefix whose models list contains
 * model; else the first route with has_match == 0 (the catch-all); else NULL (the caller answers
 * 404 model_not_found). Routes with a path_prefix match only by prefix. *rest_off (may be NULL)
 * is set to the length of the matched prefix (0 otherwise), so path + *rest_off is "/v1/...".
 * The returned route is borrowed from cfg. */
const pd_route_t *pd_router_match(const pd_config_t *cfg, const char *path, size_t path_len,
                                  const char *model, size_t *rest_off);

/* Whether any route has a models list, i.e. whether routing may need the body's "model". */
int pd_router_needs_model(const pd_config_t *cfg);

/* Index of the variant for a sticky key (key == NULL or key_len == 0: random, from rnd).
 * bucket = FNV-1a-64(route name + "\0" + key) mod total weight (or rnd mod total weight);
 * variants own consecutive bucket ranges in config order. */
size_t pd_router_pick(const pd_route_t *r, const char *key, size_t key_len, uint64_t rnd);

/* Index of the variant called name on route r, or -1. */
int pd_router_find_variant(const pd_route_t *r, const char *name, size_t name_len);

/* Returns a request header's value by lower-case name, or NULL when absent. */
typedef const char *(*pd_header_fn)(void *ud, const char *lower_name);

typedef struct pd_resolved {
  const pd_variant_t *variant; /* borrowed from the route */
  int rounds;                  /* effective thinking rounds */
  int overridden;              /* 1 when a per-request rounds or variant override applied */
} pd_resolved_t;

/* Applies SPEC section 7 to a parsed chat request body (modified in place): sticky key, variant
 * pick, reasoning_effort through the route's effort map (a known value sets the rounds and is
 * removed from the body; an unknown one, or any value on a route without a map, is forwarded),
 * and the per-request overrides (headers x-ponder-rounds / x-ponder-variant, body "ponder":
 * {"rounds": N, "variant": NAME}; a header wins over the body field). Precedence: a variant
 * override replaces the sticky pick; rounds = the variant's forcing.rounds, replaced by the
 * effort, replaced by a rounds override. The "ponder" field is always removed from the body.
 * get_header may be NULL (no headers). Returns 0 and fills *out, or -1 with a 400
 * invalid_request_error message in errmsg and its param in errparam ("" for none). */
int pd_router_resolve(const pd_route_t *r, json_t *body, pd_header_fn get_header, void *ud,
                      uint64_t rnd, pd_resolved_t *out, char *errmsg, size_t errlen, char *errparam,
                      size_t paramlen);

#endif
