/* Routing and A/B assignment (SPEC sections 3 and 7). See router.h.
 *
 * Worked example of the sticky assignment (asserted in tests/unit/core/test_router.c):
 *   route "math", key "user-42", variants control:1, deep:1 (total weight 2)
 *   FNV-1a-64("math" "\0" "user-42")  (12 bytes) = 0xa8f6557c1d2315e3 = 12175012634195858915
 *   bucket = 12175012634195858915 mod 2 = 1  ->  bucket range [1, 2) = "deep"
 *
 * Note: FNV-1a multiplies by an odd prime, so h mod 2^k depends only on the low k bits of each
 * input byte. With a power-of-two total weight the split is still even over varied keys, but
 * weights such as 1:1 assign keys by the parity of their bytes (SPEC fixes the formula so that
 * every replica and restart agrees). */
#include "core/router.h"

#include <stdio.h>
#include <string.h>

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

uint64_t pd_router_hash_update(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= FNV_PRIME;
  }
  return h;
}

uint64_t pd_router_hash(const void *data, size_t len) {
  return pd_router_hash_update(FNV_OFFSET, data, len);
}

static int prefix_matches(const char *prefix, const char *path, size_t path_len, size_t *plen) {
  size_t n = strlen(prefix);
  while (n > 0 && prefix[n - 1] == '/') /* config stores none; be safe with a bare "/" */
    n--;
  if (path_len < n || memcmp(path, prefix, n) != 0)
    return 0;
  if (path_len != n && path[n] != '/')
    return 0;
  *plen = n;
  return 1;
}

const pd_route_t *pd_router_match(const pd_config_t *cfg, const char *path, size_t path_len,
                                  const char *model, size_t *rest_off) {
  const pd_route_t *best = NULL;
  size_t best_len = 0;
  if (rest_off)
    *rest_off = 0;
  if (!cfg)
    return NULL;
  if (path) {
    for (size_t i = 0; i < cfg->nroutes; i++) {
      const pd_route_t *r = &cfg->routes[i];
      size_t n;
      if (r->path_prefix && prefix_matches(r->path_prefix, path, path_len, &n) &&
          (!best || n > best_len)) {
        best = r;
        best_len = n;
      }
    }
  }
  if (best) {
    if (rest_off)
      *rest_off = best_len;
    return best;
  }
  if (model) {
    for (size_t i = 0; i < cfg->nroutes; i++) {
      const pd_route_t *r = &cfg->routes[i];
      if (r->path_prefix)
        continue;
      for (size_t j = 0; j < r->nmodels; j++)
        if (r->models[j] && strcmp(r->models[j], model) == 0)
          return r;
    }
  }
  for (size_t i = 0; i < cfg->nroutes; i++)
    if (!cfg->routes[i].has_match)
      return &cfg->routes[i];
  return NULL;
}

int pd_router_needs_model(const pd_config_t *cfg) {
  if (!cfg)
    return 0;
  for (size_t i = 0; i < cfg->nroutes; i++)
    if (cfg->routes[i].nmodels > 0)
      return 1;
  return 0;
}

static uint64_t route_total_weight(const pd_route_t *r) {
  if (r->total_weight > 0)
    return (uint64_t)r->total_weight;
  uint64_t t = 0;
  for (size_t i = 0; i < r->nvariants; i++)
    if (r->variants[i].weight > 0)
      t += (uint64_t)r->variants[i].weight;
  return t;
}

size_t pd_router_pick(const pd_route_t *r, const char *key, size_t key_len, uint64_t rnd) {
  if (!r || r->nvariants <= 1)
    return 0;
  uint64_t total = route_total_weight(r);
  if (total == 0)
    return 0;
  uint64_t h = rnd;
  if (key && key_len > 0) {
    const char *name = r->name ? r->name : "";
    h = pd_router_hash_update(FNV_OFFSET, name, strlen(name) + 1); /* includes the "\0" separator */
    h = pd_router_hash_update(h, key, key_len);
  }
  uint64_t bucket = h % total, upto = 0;
  for (size_t i = 0; i < r->nvariants; i++) {
    if (r->variants[i].weight <= 0)
      continue;
    upto += (uint64_t)r->variants[i].weight;
    if (bucket < upto)
      return i;
  }
  return r->nvariants - 1; /* unreachable when total_weight is the sum of the weights */
}

int pd_router_find_variant(const pd_route_t *r, const char *name, size_t name_len) {
  if (!r || !name)
    return -1;
  for (size_t i = 0; i < r->nvariants; i++) {
    const char *v = r->variants[i].name;
    if (v && strlen(v) == name_len && memcmp(v, name, name_len) == 0)
      return (int)i;
  }
  return -1;
}

/* ---- pd_router_resolve ---- */

typedef struct err_ctx {
  char *msg;
  size_t msglen;
  char *param;
  size_t paramlen;
} err_ctx_t;

static int fail(err_ctx_t *e, const char *param, const char *fmt, const char *a, const char *b) {
  if (e->msg && e->msglen)
    snprintf(e->msg, e->msglen, fmt, a ? a : "", b ? b : "");
  if (e->param && e->paramlen)
    snprintf(e->param, e->paramlen, "%s", param ? param : "");
  return -1;
}

/* Parses a header's rounds: optional blanks, decimal digits, optional blanks; 0..32. */
static int parse_rounds_header(const char *s, int *out) {
  while (*s == ' ' || *s == '\t')
    s++;
  int v = 0, digits = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (++digits > 3)
      return -1;
    v = v * 10 + (*s - '0');
  }
  while (*s == ' ' || *s == '\t')
    s++;
  if (!digits || *s || v > PD_ROUTER_MAX_ROUNDS)
    return -1;
  *out = v;
  return 0;
}

static int parse_rounds_json(const json_t *j, int *out) {
  if (!json_is_integer(j))
    return -1;
  json_int_t v = json_integer_value(j);
  if (v < 0 || v > PD_ROUTER_MAX_ROUNDS)
    return -1;
  *out = (int)v;
  return 0;
}

static int resolve(const pd_route_t *r, json_t *body, json_t *ponder, pd_header_fn get_header,
                   void *ud, uint64_t rnd, pd_resolved_t *out, err_ctx_t *e) {
  static const char not_allowed[] = "Per-request overrides are not allowed on route '%s'%s";
  static const char bad_rounds[] = "Invalid value for '%s': rounds must be an integer from 0 to "
                                   "32%s";
  static const char bad_variant[] = "Unknown variant '%s' for route '%s'";
  const char *rname = r->name ? r->name : "";
  const char *h_rounds = get_header ? get_header(ud, "x-ponder-rounds") : NULL;
  const char *h_variant = get_header ? get_header(ud, "x-ponder-variant") : NULL;
  json_t *b_rounds = NULL, *b_variant = NULL;

  if (ponder && !json_is_null(ponder) && !json_is_object(ponder))
    return fail(e, "ponder", "Invalid type for 'ponder': expected an object%s%s", "", "");
  if (json_is_object(ponder)) {
    b_rounds = json_object_get(ponder, "rounds");
    b_variant = json_object_get(ponder, "variant");
    if (json_is_null(b_rounds))
      b_rounds = NULL;
    if (json_is_null(b_variant))
      b_variant = NULL;
  }
  if (!r->allow_overrides) {
    if (h_rounds)
      return fail(e, "x-ponder-rounds", not_allowed, rname, "");
    if (h_variant)
      return fail(e, "x-ponder-variant", not_allowed, rname, "");
    if (json_is_object(ponder) && json_object_size(ponder) > 0)
      return fail(e, "ponder", not_allowed, rname, "");
  }
  if (json_is_object(ponder)) {
    const char *k;
    json_t *v;
    json_object_foreach(ponder, k, v) {
      if (strcmp(k, "rounds") != 0 && strcmp(k, "variant") != 0) {
        char param[96];
        snprintf(param, sizeof param, "ponder.%s", k);
        return fail(e, param, "Unrecognized field 'ponder.%s'; expected 'rounds' or 'variant'%s", k,
                    "");
      }
    }
  }

  /* Overrides: both sources are validated; the header wins over the body field. */
  int rounds_ov = -1, rv;
  if (b_rounds) {
    if (parse_rounds_json(b_rounds, &rv) < 0)
      return fail(e, "ponder.rounds", bad_rounds, "ponder.rounds", "");
    rounds_ov = rv;
  }
  if (h_rounds) {
    if (parse_rounds_header(h_rounds, &rv) < 0)
      return fail(e, "x-ponder-rounds", bad_rounds, "x-ponder-rounds", "");
    rounds_ov = rv;
  }
  int variant_ov = -1;
  if (b_variant) {
    if (!json_is_string(b_variant))
      return fail(e, "ponder.variant", "Invalid type for 'ponder.variant': expected a string%s%s",
                  "", "");
    variant_ov =
        pd_router_find_variant(r, json_string_value(b_variant), json_string_length(b_variant));
    if (variant_ov < 0)
      return fail(e, "ponder.variant", bad_variant, json_string_value(b_variant), rname);
  }
  if (h_variant) {
    variant_ov = pd_router_find_variant(r, h_variant, strlen(h_variant));
    if (variant_ov < 0)
      return fail(e, "x-ponder-variant", bad_variant, h_variant, rname);
  }

  /* Sticky key and variant. */
  size_t vi;
  if (variant_ov >= 0) {
    vi = (size_t)variant_ov;
  } else {
    const char *key = NULL;
    size_t key_len = 0;
    if (r->sticky == PD_STICKY_HEADER && get_header && r->sticky_header) {
      key = get_header(ud, r->sticky_header);
      key_len = key ? strlen(key) : 0;
    } else if (r->sticky == PD_STICKY_BODY_USER) {
      json_t *u = json_is_object(body) ? json_object_get(body, "user") : NULL;
      if (json_is_string(u)) {
        key = json_string_value(u);
        key_len = json_string_length(u);
      }
    }
    vi = pd_router_pick(r, key, key_len, rnd);
  }
  const pd_variant_t *var = &r->variants[vi];
  int rounds = var->forcing.rounds;

  /* reasoning_effort through the effort map. */
  if (r->neffort > 0 && json_is_object(body)) {
    json_t *eff = json_object_get(body, "reasoning_effort");
    if (json_is_string(eff)) {
      for (size_t i = 0; i < r->neffort; i++) {
        if (r->effort[i].name && strcmp(r->effort[i].name, json_string_value(eff)) == 0) {
          rounds = r->effort[i].rounds;
          json_object_del(body, "reasoning_effort");
          break;
        }
      }
    }
  }
  if (rounds_ov >= 0)
    rounds = rounds_ov;

  out->variant = var;
  out->rounds = rounds;
  out->overridden = rounds_ov >= 0 || variant_ov >= 0;
  return 0;
}

int pd_router_resolve(const pd_route_t *r, json_t *body, pd_header_fn get_header, void *ud,
                      uint64_t rnd, pd_resolved_t *out, char *errmsg, size_t errlen, char *errparam,
                      size_t paramlen) {
  err_ctx_t e = {errmsg, errlen, errparam, paramlen};
  if (errmsg && errlen)
    errmsg[0] = '\0';
  if (errparam && paramlen)
    errparam[0] = '\0';
  if (!r || !out || r->nvariants == 0)
    return fail(&e, "", "No variant available%s%s", "", "");

  /* Detach "ponder" first so that it is never forwarded, whatever the outcome. */
  json_t *ponder = NULL;
  if (json_is_object(body)) {
    ponder = json_object_get(body, "ponder");
    if (ponder) {
      json_incref(ponder);
      json_object_del(body, "ponder");
    }
  }
  int rc = resolve(r, body, ponder, get_header, ud, rnd, out, &e);
  json_decref(ponder);
  return rc;
}
