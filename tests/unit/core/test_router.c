/* Unit tests for router.c: FNV-1a, route matching, variant assignment, SPEC 7 rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/router.h"

/* ---- fixtures built by hand (config.c is not needed) ---- */

static pd_variant_t mkvar(const char *name, int weight, int rounds) {
  pd_variant_t v;
  memset(&v, 0, sizeof v);
  v.name = (char *)name;
  v.weight = weight;
  v.forcing.rounds = rounds;
  return v;
}

static pd_route_t mkroute(const char *name, pd_variant_t *vars, size_t n) {
  pd_route_t r;
  memset(&r, 0, sizeof r);
  r.name = (char *)name;
  r.variants = vars;
  r.nvariants = n;
  for (size_t i = 0; i < n; i++)
    r.total_weight += vars[i].weight;
  return r;
}

typedef struct hdrs {
  const char *names[4];
  const char *values[4];
} hdrs_t;

static const char *get_header(void *ud, const char *lower_name) {
  hdrs_t *h = ud;
  for (int i = 0; i < 4 && h->names[i]; i++)
    if (strcmp(h->names[i], lower_name) == 0)
      return h->values[i];
  return NULL;
}

/* ---- FNV ---- */

static void test_fnv_vectors(void **state) {
  (void)state;
  assert_true(pd_router_hash("", 0) == 0xcbf29ce484222325ULL);
  assert_true(pd_router_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
  assert_true(pd_router_hash("foobar", 6) == 0x85944171f73967e8ULL);
  uint64_t h = pd_router_hash_update(0xcbf29ce484222325ULL, "foo", 3);
  assert_true(pd_router_hash_update(h, "bar", 3) == 0x85944171f73967e8ULL);
}

/* The README's worked example (also in router.c's header comment). */
static void test_worked_example(void **state) {
  (void)state;
  pd_variant_t v[] = {mkvar("control", 1, 0), mkvar("deep", 1, 6)};
  pd_route_t r = mkroute("math", v, 2);
  uint64_t h = pd_router_hash("math\0user-42", 12);
  assert_true(h == 0xa8f6557c1d2315e3ULL);
  assert_true(h == 12175012634195858915ULL);
  assert_int_equal(h % 2, 1);
  assert_int_equal(pd_router_pick(&r, "user-42", 7, 0), 1);
}

/* Hand computation with unequal weights: buckets [0,2) -> a, [2,3) -> b, [3,6) -> c. */
static void test_pick_hand_computed(void **state) {
  (void)state;
  pd_variant_t v[] = {mkvar("a", 2, 0), mkvar("b", 1, 1), mkvar("c", 3, 2)};
  pd_route_t r = mkroute("rt", v, 3);
  char key[32];
  for (int i = 0; i < 200; i++) {
    int n = snprintf(key, sizeof key, "k%d", i);
    char buf[64];
    memcpy(buf, "rt", 3); /* "rt\0" */
    memcpy(buf + 3, key, (size_t)n);
    uint64_t bucket = pd_router_hash(buf, 3 + (size_t)n) % 6;
    size_t want = bucket < 2 ? 0 : bucket < 3 ? 1 : 2;
    assert_int_equal(pd_router_pick(&r, key, (size_t)n, 12345), want);
  }
}

static void check_split(int w0, int w1) {
  pd_variant_t v[] = {mkvar("x", w0, 0), mkvar("y", w1, 0)};
  pd_route_t r = mkroute("exp", v, 2);
  int count[2] = {0, 0};
  char key[32];
  for (int i = 0; i < 10000; i++) {
    int n = snprintf(key, sizeof key, "user-%d", i);
    count[pd_router_pick(&r, key, (size_t)n, 0)]++;
  }
  double want = (double)w0 / (w0 + w1);
  double got = count[0] / 10000.0;
  assert_true(got > want - 0.02 && got < want + 0.02);
  /* Also for keys of another shape (e-mail-like, hex ids). */
  count[0] = count[1] = 0;
  for (int i = 0; i < 10000; i++) {
    int n = snprintf(key, sizeof key, "%08x@example.com", (unsigned)(i * 2654435761u));
    count[pd_router_pick(&r, key, (size_t)n, 0)]++;
  }
  got = count[0] / 10000.0;
  assert_true(got > want - 0.02 && got < want + 0.02);
}

static void test_split_1_1(void **state) {
  (void)state;
  check_split(1, 1);
}

static void test_split_1_3(void **state) {
  (void)state;
  check_split(1, 3);
}

static void test_split_2_3(void **state) {
  (void)state;
  check_split(2, 3);
}

static void test_sticky_same_key(void **state) {
  (void)state;
  pd_variant_t v[] = {mkvar("a", 1, 0), mkvar("b", 1, 0), mkvar("c", 1, 0)};
  pd_route_t r = mkroute("r", v, 3);
  char key[32];
  for (int i = 0; i < 100; i++) {
    int n = snprintf(key, sizeof key, "u%d", i);
    size_t first = pd_router_pick(&r, key, (size_t)n, 0);
    for (uint64_t rnd = 1; rnd < 10; rnd++)
      assert_int_equal(pd_router_pick(&r, key, (size_t)n, rnd), first);
  }
}

static void test_random_uses_rnd(void **state) {
  (void)state;
  pd_variant_t v[] = {mkvar("a", 1, 0), mkvar("b", 3, 0)};
  pd_route_t r = mkroute("r", v, 2);
  assert_int_equal(pd_router_pick(&r, NULL, 0, 0), 0);
  assert_int_equal(pd_router_pick(&r, NULL, 0, 1), 1);
  assert_int_equal(pd_router_pick(&r, NULL, 0, 2), 1);
  assert_int_equal(pd_router_pick(&r, NULL, 0, 3), 1);
  assert_int_equal(pd_router_pick(&r, NULL, 0, 4), 0);
  assert_int_equal(pd_router_pick(&r, "", 0, 5), 1); /* empty key = no key */
  /* One variant: always 0. */
  pd_route_t one = mkroute("r", v, 1);
  assert_int_equal(pd_router_pick(&one, NULL, 0, 7), 0);
  assert_int_equal(pd_router_find_variant(&r, "b", 1), 1);
  assert_int_equal(pd_router_find_variant(&r, "bb", 2), -1);
}

/* ---- resolve ---- */

typedef struct rfix {
  pd_variant_t v[2];
  pd_effort_t eff[2];
  pd_route_t r;
} rfix_t;

static void setup_route(rfix_t *f, int allow, pd_sticky_t sticky) {
  f->v[0] = mkvar("control", 1, 0);
  f->v[1] = mkvar("deep", 1, 6);
  f->r = mkroute("math", f->v, 2);
  f->r.allow_overrides = allow;
  f->r.sticky = sticky;
  f->r.sticky_header = "x-user-id";
  f->eff[0].name = "low";
  f->eff[0].rounds = 1;
  f->eff[1].name = "high";
  f->eff[1].rounds = 9;
  f->r.effort = f->eff;
  f->r.neffort = 2;
}

static int run(const pd_route_t *r, json_t *body, hdrs_t *h, uint64_t rnd, pd_resolved_t *out,
               char *msg, char *param) {
  return pd_router_resolve(r, body, get_header, h, rnd, out, msg, 256, param, 64);
}

static void test_resolve_sticky(void **state) {
  (void)state;
  rfix_t f;
  setup_route(&f, 0, PD_STICKY_HEADER);
  char msg[256], param[64];
  pd_resolved_t out;
  hdrs_t h = {{"x-user-id"}, {"user-42"}};
  json_t *body = json_pack("{s:s}", "model", "m");
  /* user-42 -> deep (worked example), whatever rnd is. */
  for (uint64_t rnd = 0; rnd < 4; rnd++) {
    assert_int_equal(run(&f.r, body, &h, rnd, &out, msg, param), 0);
    assert_string_equal(out.variant->name, "deep");
    assert_int_equal(out.rounds, 6);
    assert_int_equal(out.overridden, 0);
  }
  /* No header / empty header: random bucket from rnd. */
  hdrs_t none = {{NULL}, {NULL}};
  assert_int_equal(run(&f.r, body, &none, 0, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  assert_int_equal(run(&f.r, body, &none, 1, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "deep");
  hdrs_t empty = {{"x-user-id"}, {""}};
  assert_int_equal(run(&f.r, body, &empty, 2, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  /* get_header == NULL. */
  assert_int_equal(pd_router_resolve(&f.r, body, NULL, NULL, 3, &out, msg, 256, param, 64), 0);
  assert_string_equal(out.variant->name, "deep");
  json_decref(body);

  /* body:user */
  setup_route(&f, 0, PD_STICKY_BODY_USER);
  body = json_pack("{s:s}", "user", "user-42");
  for (uint64_t rnd = 0; rnd < 4; rnd++) {
    assert_int_equal(run(&f.r, body, &none, rnd, &out, msg, param), 0);
    assert_string_equal(out.variant->name, "deep");
  }
  assert_string_equal(json_string_value(json_object_get(body, "user")), "user-42");
  json_decref(body);
  body = json_pack("{s:i}", "user", 42); /* not a string: no key */
  assert_int_equal(run(&f.r, body, &none, 0, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  json_decref(body);

  /* random: the header is ignored. */
  setup_route(&f, 0, PD_STICKY_RANDOM);
  body = json_object();
  assert_int_equal(run(&f.r, body, &h, 0, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  json_decref(body);
}

static void test_resolve_effort(void **state) {
  (void)state;
  rfix_t f;
  setup_route(&f, 0, PD_STICKY_RANDOM);
  char msg[256], param[64];
  pd_resolved_t out;
  hdrs_t none = {{NULL}, {NULL}};
  /* Known value: sets rounds, removed from the body. */
  json_t *body = json_pack("{s:s}", "reasoning_effort", "high");
  assert_int_equal(run(&f.r, body, &none, 0, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  assert_int_equal(out.rounds, 9);
  assert_int_equal(out.overridden, 0);
  assert_null(json_object_get(body, "reasoning_effort"));
  json_decref(body);
  /* Unknown value: forwarded, rounds untouched. */
  body = json_pack("{s:s}", "reasoning_effort", "medium");
  assert_int_equal(run(&f.r, body, &none, 1, &out, msg, param), 0);
  assert_int_equal(out.rounds, 6);
  assert_string_equal(json_string_value(json_object_get(body, "reasoning_effort")), "medium");
  json_decref(body);
  /* No effort map: forwarded. */
  f.r.neffort = 0;
  body = json_pack("{s:s}", "reasoning_effort", "low");
  assert_int_equal(run(&f.r, body, &none, 1, &out, msg, param), 0);
  assert_int_equal(out.rounds, 6);
  assert_non_null(json_object_get(body, "reasoning_effort"));
  json_decref(body);
}

static void test_resolve_overrides(void **state) {
  (void)state;
  rfix_t f;
  setup_route(&f, 1, PD_STICKY_HEADER);
  char msg[256], param[64];
  pd_resolved_t out;
  hdrs_t none = {{NULL}, {NULL}};

  /* Body rounds beats the effort; ponder removed. */
  json_t *body = json_pack("{s:s,s:{s:i}}", "reasoning_effort", "low", "ponder", "rounds", 3);
  assert_int_equal(run(&f.r, body, &none, 1, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "deep");
  assert_int_equal(out.rounds, 3);
  assert_int_equal(out.overridden, 1);
  assert_null(json_object_get(body, "ponder"));
  assert_null(json_object_get(body, "reasoning_effort"));
  json_decref(body);

  /* Body variant replaces the sticky pick; rounds come from that variant. */
  hdrs_t sticky = {{"x-user-id"}, {"user-42"}}; /* -> deep */
  body = json_pack("{s:{s:s}}", "ponder", "variant", "control");
  assert_int_equal(run(&f.r, body, &sticky, 1, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  assert_int_equal(out.rounds, 0);
  assert_int_equal(out.overridden, 1);
  json_decref(body);

  /* Variant + effort: the effort replaces the variant's rounds. */
  body = json_pack("{s:s,s:{s:s}}", "reasoning_effort", "low", "ponder", "variant", "deep");
  assert_int_equal(run(&f.r, body, &none, 0, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "deep");
  assert_int_equal(out.rounds, 1);
  json_decref(body);

  /* Headers, and headers win over the body. */
  hdrs_t h = {{"x-ponder-rounds", "x-ponder-variant"}, {"32", "control"}};
  body = json_pack("{s:{s:i,s:s}}", "ponder", "rounds", 5, "variant", "deep");
  assert_int_equal(run(&f.r, body, &h, 1, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "control");
  assert_int_equal(out.rounds, 32);
  assert_int_equal(out.overridden, 1);
  json_decref(body);
  hdrs_t h0 = {{"x-ponder-rounds"}, {" 0 "}};
  body = json_object();
  assert_int_equal(run(&f.r, body, &h0, 1, &out, msg, param), 0);
  assert_string_equal(out.variant->name, "deep");
  assert_int_equal(out.rounds, 0);
  json_decref(body);

  /* Empty or null ponder fields are no override. */
  body = json_pack("{s:{s:n}}", "ponder", "rounds");
  assert_int_equal(run(&f.r, body, &none, 1, &out, msg, param), 0);
  assert_int_equal(out.rounds, 6);
  assert_int_equal(out.overridden, 0);
  json_decref(body);
}

static void expect_400(const pd_route_t *r, json_t *body, hdrs_t *h, const char *want_msg,
                       const char *want_param) {
  char msg[256], param[64];
  pd_resolved_t out;
  assert_int_equal(run(r, body, h, 0, &out, msg, param), -1);
  if (!strstr(msg, want_msg))
    fail_msg("message '%s' lacks '%s'", msg, want_msg);
  assert_string_equal(param, want_param);
  assert_null(json_object_get(body, "ponder"));
  json_decref(body);
}

static void test_resolve_errors(void **state) {
  (void)state;
  rfix_t f;
  setup_route(&f, 0, PD_STICKY_RANDOM);
  hdrs_t none = {{NULL}, {NULL}};
  const char *na = "Per-request overrides are not allowed on route 'math'";

  /* Overrides without allow_overrides. */
  expect_400(&f.r, json_pack("{s:{s:i}}", "ponder", "rounds", 2), &none, na, "ponder");
  expect_400(&f.r, json_pack("{s:{s:s}}", "ponder", "variant", "deep"), &none, na, "ponder");
  hdrs_t hr = {{"x-ponder-rounds"}, {"2"}};
  expect_400(&f.r, json_object(), &hr, na, "x-ponder-rounds");
  hdrs_t hv = {{"x-ponder-variant"}, {"deep"}};
  expect_400(&f.r, json_object(), &hv, na, "x-ponder-variant");
  /* ... but an empty ponder object is fine, and removed. */
  {
    char msg[256], param[64];
    pd_resolved_t out;
    json_t *body = json_pack("{s:{}}", "ponder");
    assert_int_equal(run(&f.r, body, &none, 0, &out, msg, param), 0);
    assert_null(json_object_get(body, "ponder"));
    json_decref(body);
  }

  /* Type of ponder (checked whether or not overrides are allowed). */
  expect_400(&f.r, json_pack("{s:i}", "ponder", 3), &none, "Invalid type for 'ponder'", "ponder");
  f.r.allow_overrides = 1;
  expect_400(&f.r, json_pack("{s:[]}", "ponder"), &none, "Invalid type for 'ponder'", "ponder");
  expect_400(&f.r, json_pack("{s:s}", "ponder", "x"), &none, "Invalid type for 'ponder'", "ponder");

  /* Rounds range and type. */
  const char *br = "rounds must be an integer from 0 to 32";
  expect_400(&f.r, json_pack("{s:{s:i}}", "ponder", "rounds", 33), &none, br, "ponder.rounds");
  expect_400(&f.r, json_pack("{s:{s:i}}", "ponder", "rounds", -1), &none, br, "ponder.rounds");
  expect_400(&f.r, json_pack("{s:{s:f}}", "ponder", "rounds", 2.5), &none, br, "ponder.rounds");
  expect_400(&f.r, json_pack("{s:{s:s}}", "ponder", "rounds", "2"), &none, br, "ponder.rounds");
  const char *bad_hdr[] = {"33", "-1", "abc", "", "2x", "1000", "1.0"};
  for (size_t i = 0; i < sizeof bad_hdr / sizeof *bad_hdr; i++) {
    hdrs_t h = {{"x-ponder-rounds"}, {bad_hdr[i]}};
    expect_400(&f.r, json_object(), &h, br, "x-ponder-rounds");
  }

  /* Variant must exist on the route. */
  expect_400(&f.r, json_pack("{s:{s:s}}", "ponder", "variant", "nope"), &none,
             "Unknown variant 'nope' for route 'math'", "ponder.variant");
  expect_400(&f.r, json_pack("{s:{s:i}}", "ponder", "variant", 1), &none,
             "Invalid type for 'ponder.variant'", "ponder.variant");
  hdrs_t hbad = {{"x-ponder-variant"}, {"Deep"}};
  expect_400(&f.r, json_object(), &hbad, "Unknown variant 'Deep' for route 'math'",
             "x-ponder-variant");

  /* Unknown key in ponder. */
  expect_400(&f.r, json_pack("{s:{s:i}}", "ponder", "rouns", 2), &none,
             "Unrecognized field 'ponder.rouns'", "ponder.rouns");
}

/* ---- matching ---- */

static void test_match(void **state) {
  (void)state;
  pd_variant_t v[] = {mkvar("default", 1, 2)};
  pd_route_t routes[5];
  routes[0] = mkroute("models", v, 1);
  routes[0].has_match = 1;
  char *m0[] = {"gpt-4o-think", "o-mini"};
  routes[0].models = m0;
  routes[0].nmodels = 2;
  routes[1] = mkroute("math", v, 1);
  routes[1].has_match = 1;
  routes[1].path_prefix = "/math";
  char *m1[] = {"math-model"};
  routes[1].models = m1;
  routes[1].nmodels = 1;
  routes[2] = mkroute("math-deep", v, 1);
  routes[2].has_match = 1;
  routes[2].path_prefix = "/math/deep";
  routes[3] = mkroute("catch", v, 1);
  routes[4] = mkroute("catch2", v, 1);
  pd_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.routes = routes;
  cfg.nroutes = 5;

  size_t off = 99;
  const char *p = "/math/v1/chat/completions";
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), NULL, &off), &routes[1]);
  assert_int_equal(off, 5);
  assert_string_equal(p + off, "/v1/chat/completions");
  p = "/math/deep/v1/chat/completions"; /* longest prefix wins */
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), "gpt-4o-think", &off), &routes[2]);
  assert_int_equal(off, 10);
  p = "/math";
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), NULL, &off), &routes[1]);
  assert_int_equal(off, 5);
  /* Prefix boundary: "/mathx" is not under "/math". */
  p = "/mathx/v1/chat/completions";
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), NULL, &off), &routes[3]);
  assert_int_equal(off, 0);
  /* path_len is honoured (no NUL needed). */
  assert_ptr_equal(pd_router_match(&cfg, "/math/deeper", 10, NULL, &off), &routes[2]);
  /* By model. */
  p = "/v1/chat/completions";
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), "o-mini", &off), &routes[0]);
  assert_int_equal(off, 0);
  /* A route with a path_prefix matches only by prefix, not by its models. */
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), "math-model", &off), &routes[3]);
  /* Unknown model / no model: the first catch-all. */
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), "other", &off), &routes[3]);
  assert_ptr_equal(pd_router_match(&cfg, p, strlen(p), NULL, NULL), &routes[3]);
  assert_int_equal(pd_router_needs_model(&cfg), 1);

  /* Without a catch-all: NULL (404 model_not_found). */
  cfg.nroutes = 3;
  off = 7;
  assert_null(pd_router_match(&cfg, p, strlen(p), "other", &off));
  assert_int_equal(off, 0);
  assert_null(pd_router_match(&cfg, p, strlen(p), NULL, &off));

  /* No models anywhere. */
  cfg.routes = &routes[2];
  cfg.nroutes = 3;
  assert_int_equal(pd_router_needs_model(&cfg), 0);
  assert_null(pd_router_match(NULL, p, strlen(p), NULL, &off));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fnv_vectors),
      cmocka_unit_test(test_worked_example),
      cmocka_unit_test(test_pick_hand_computed),
      cmocka_unit_test(test_split_1_1),
      cmocka_unit_test(test_split_1_3),
      cmocka_unit_test(test_split_2_3),
      cmocka_unit_test(test_sticky_same_key),
      cmocka_unit_test(test_random_uses_rnd),
      cmocka_unit_test(test_resolve_sticky),
      cmocka_unit_test(test_resolve_effort),
      cmocka_unit_test(test_resolve_overrides),
      cmocka_unit_test(test_resolve_errors),
      cmocka_unit_test(test_match),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
