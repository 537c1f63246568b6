/* Unit tests for dispatch.c: the [prefix]/v1 split (exact prefixes only), the order of the
 * answers given at once (404, 401, 400, 405), routing by prefix, model and catch-all, and the
 * joined upstream URL under base URLs with and without port and path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/dispatch.h"

/* ---- a config built by hand (config.c is not needed) ---- */

static pd_upstream_cfg_t ups[3];
static pd_route_t routes[5];
static char *models_m1[] = {"m1"};
static char *keys[] = {"sk-good"};
static pd_config_t open_cfg, keyed_cfg, nocatch_cfg;

static int setup(void **state) {
  (void)state;
  memset(ups, 0, sizeof ups);
  memset(routes, 0, sizeof routes);
  ups[0].name = "plain";
  ups[0].base_url = "http://127.0.0.1";
  ups[1].name = "v1";
  ups[1].base_url = "http://localhost:8080/v1";
  ups[2].name = "deep";
  ups[2].base_url = "https://api.deepseek.com";
  const struct {
    const char *name, *prefix;
    int models;
    size_t up;
  } r[] = {{"math", "/math", 0, 1},
           {"ab", "/a/b", 0, 2},
           {"a", "/a", 0, 0},
           {"bymodel", NULL, 1, 1},
           {"catch", NULL, 0, 0}};
  for (size_t i = 0; i < 5; i++) {
    routes[i].name = (char *)r[i].name;
    routes[i].path_prefix = (char *)r[i].prefix;
    routes[i].has_match = r[i].prefix || r[i].models;
    routes[i].models = r[i].models ? models_m1 : NULL;
    routes[i].nmodels = r[i].models ? 1 : 0;
    routes[i].upstream = r[i].up;
  }
  memset(&open_cfg, 0, sizeof open_cfg);
  open_cfg.upstreams = ups;
  open_cfg.nupstreams = 3;
  open_cfg.routes = routes;
  open_cfg.nroutes = 5;
  keyed_cfg = open_cfg;
  keyed_cfg.auth_keys = keys;
  keyed_cfg.nauth_keys = 1;
  nocatch_cfg = open_cfg;
  nocatch_cfg.nroutes = 4;
  return 0;
}

typedef struct hdrs {
  const char *auth, *ct;
} hdrs_t;

static const char *get_header(void *ud, const char *name) {
  hdrs_t *h = ud;
  if (!strcmp(name, "authorization"))
    return h->auth;
  if (!strcmp(name, "content-type"))
    return h->ct;
  return NULL;
}

/* Decides method + target (path and query) with the given headers and body. */
static pd_dispatch_kind_t decide(const pd_config_t *cfg, const char *method, const char *target,
                                 const char *auth, const char *ct, const char *body,
                                 pd_dispatch_t *d) {
  static hdrs_t h;
  h.auth = auth;
  h.ct = ct;
  const char *q = strchr(target, '?');
  pd_dispatch_req_t in = {method,
                          target,
                          q ? (size_t)(q - target) : strlen(target),
                          q ? q + 1 : "",
                          q ? strlen(q + 1) : 0,
                          get_header,
                          &h,
                          body,
                          body ? strlen(body) : 0};
  return pd_dispatch_decide(cfg, &in, d);
}

static void expect_error(const pd_config_t *cfg, const char *method, const char *target,
                         const char *auth, int status, const char *code) {
  pd_dispatch_t d;
  if (decide(cfg, method, target, auth, NULL, NULL, &d) != PD_DISPATCH_ERROR || d.status != status)
    fail_msg("%s %s: kind %d status %d, want error %d", method, target, d.kind, d.status, status);
  if (code)
    assert_string_equal(d.code, code);
  else
    assert_null(d.code);
  assert_non_null(d.message);
  assert_string_equal(d.type, status >= 500 ? "server_error" : "invalid_request_error");
  pd_dispatch_free(&d);
}

static void expect_url(const pd_config_t *cfg, const char *method, const char *target,
                       pd_dispatch_kind_t kind, const char *route, const char *url) {
  pd_dispatch_t d;
  if (decide(cfg, method, target, NULL, NULL, NULL, &d) != kind)
    fail_msg("%s %s: kind %d (status %d: %s), want %d", method, target, d.kind, d.status,
             d.message ? d.message : "", kind);
  assert_string_equal(d.route->name, route);
  assert_ptr_equal(d.upstream, &ups[d.route->upstream]);
  assert_string_equal(pd_buf_data(&d.url), url);
  pd_dispatch_free(&d);
}

/* ---- tests ---- */

static void test_ops_endpoints(void **state) {
  (void)state;
  pd_dispatch_t d;
  assert_int_equal(decide(&keyed_cfg, "GET", "/healthz", NULL, NULL, NULL, &d),
                   PD_DISPATCH_HEALTHZ);
  pd_dispatch_free(&d);
  assert_int_equal(decide(&keyed_cfg, "GET", "/metrics", NULL, NULL, NULL, &d),
                   PD_DISPATCH_METRICS);
  pd_dispatch_free(&d);
  expect_error(&keyed_cfg, "POST", "/healthz", NULL, 405, "method_not_allowed");
  decide(&open_cfg, "DELETE", "/metrics", NULL, NULL, NULL, &d);
  assert_string_equal(d.allow, "GET");
  pd_dispatch_free(&d);
  /* Feedback: authorized, POST, only without a prefix. */
  assert_int_equal(decide(&open_cfg, "POST", "/v1/ponder/feedback", NULL, NULL, "{}", &d),
                   PD_DISPATCH_FEEDBACK);
  pd_dispatch_free(&d);
  expect_error(&open_cfg, "GET", "/v1/ponder/feedback", NULL, 405, "method_not_allowed");
  expect_error(&keyed_cfg, "POST", "/v1/ponder/feedback", NULL, 401, "invalid_api_key");
  expect_url(&open_cfg, "POST", "/math/v1/ponder/feedback", PD_DISPATCH_PASS, "math",
             "http://localhost:8080/v1/ponder/feedback");
}

static void test_split_exact_prefix(void **state) {
  (void)state;
  expect_url(&open_cfg, "GET", "/v1/models", PD_DISPATCH_MODELS, "catch",
             "http://127.0.0.1/models");
  expect_url(&open_cfg, "GET", "/v1", PD_DISPATCH_PASS, "catch", "http://127.0.0.1/");
  expect_url(&open_cfg, "GET", "/v1/", PD_DISPATCH_PASS, "catch", "http://127.0.0.1/");
  expect_url(&open_cfg, "POST", "/math/v1/embeddings?x=1", PD_DISPATCH_PASS, "math",
             "http://localhost:8080/v1/embeddings?x=1");
  expect_url(&open_cfg, "GET", "/math/v1", PD_DISPATCH_PASS, "math", "http://localhost:8080/v1");
  expect_url(&open_cfg, "GET", "/math/v1/models", PD_DISPATCH_MODELS, "math",
             "http://localhost:8080/v1/models");
  expect_url(&open_cfg, "POST", "/v1/models", PD_DISPATCH_PASS, "catch", "http://127.0.0.1/models");
  /* The longest prefix followed by /v1 wins. */
  expect_url(&open_cfg, "GET", "/a/b/v1/x", PD_DISPATCH_PASS, "ab", "https://api.deepseek.com/x");
  expect_url(&open_cfg, "GET", "/a/v1/x", PD_DISPATCH_PASS, "a", "http://127.0.0.1/x");
  expect_url(&open_cfg, "GET", "/a/v1/b/v1/x", PD_DISPATCH_PASS, "a", "http://127.0.0.1/b/v1/x");
  /* "/v1" anywhere else is not the split. */
  static const char *const unknown[] = {"/ab:9999/v1/x",
                                        "/x.attacker.example/v1/x",
                                        "/a/c/v1/x",
                                        "/math/x/v1/y",
                                        "/mathv1/x",
                                        "/v1x",
                                        "/v12/x",
                                        "/",
                                        "",
                                        "/math",
                                        "/math/",
                                        "/math/v1x",
                                        "http://evil/v1/x",
                                        "//evil/v1/x",
                                        "/%76%31/x",
                                        "/V1/x",
                                        "*",
                                        "/../v1/x",
                                        "/./v1/x"};
  for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
    expect_error(&open_cfg, "GET", unknown[i], NULL, 404, "unknown_url");
}

static void test_path_refusals(void **state) {
  (void)state;
  static const char *const bad[] = {"/v1/../../x",   "/v1/%2e%2e/x",  "/v1/a%2fb", "/v1/a\\b",
                                    "/v1/@x",        "/v1/./x",       "/v1//x",    "/v1/%5c",
                                    "/math/v1/../x", "/a/b/v1/%2E/x", "/v1/a b",   "/v1/%c0%ae"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    expect_error(&open_cfg, "GET", bad[i], NULL, 400, "invalid_path");
  expect_error(&open_cfg, "GET", "/v1/x?a b", NULL, 400, "invalid_query");
  expect_error(&open_cfg, "POST", "/v1/chat/completions?a\\b", NULL, 400, "invalid_query");
}

static void test_order_of_answers(void **state) {
  (void)state;
  /* 404 before 401 (an unknown path says nothing about keys), 401 before 400 and 405. */
  expect_error(&keyed_cfg, "GET", "/ab:1/v1/x", NULL, 404, "unknown_url");
  expect_error(&keyed_cfg, "GET", "/v1/../x", NULL, 401, "invalid_api_key");
  expect_error(&keyed_cfg, "GET", "/v1/chat/completions", "Bearer sk-goo", 401, "invalid_api_key");
  expect_error(&keyed_cfg, "GET", "/v1/chat/completions", "Bearer sk-goodd", 401,
               "invalid_api_key");
  expect_error(&keyed_cfg, "GET", "/v1/chat/completions", "sk-good", 401, "invalid_api_key");
  expect_error(&keyed_cfg, "GET", "/v1/../x", "Bearer sk-good", 400, "invalid_path");
  expect_error(&keyed_cfg, "GET", "/v1/chat/completions", "Bearer sk-good", 405,
               "method_not_allowed");
  expect_error(&keyed_cfg, "GET", "/v1/chat/completions?%zz", "Bearer sk-good", 400,
               "invalid_query");
  pd_dispatch_t d;
  assert_int_equal(decide(&keyed_cfg, "GET", "/v1/x", "bearer sk-good", NULL, NULL, &d),
                   PD_DISPATCH_PASS);
  pd_dispatch_free(&d);
}

/* The client API comes from api/api.c's registry by the path after [prefix]/v1: the table of
 * the API serving it on an API request, none on any other path. */
static void test_api_table(void **state) {
  (void)state;
  pd_dispatch_t d;
  const char *body = "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  assert_int_equal(decide(&open_cfg, "POST", "/a/v1/chat/completions", NULL, NULL, body, &d),
                   PD_DISPATCH_API);
  assert_ptr_equal(d.api, &pd_chat_api);
  pd_dispatch_free(&d);
  assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions/x", NULL, NULL, body, &d),
                   PD_DISPATCH_PASS);
  assert_null(d.api);
  pd_dispatch_free(&d);
  assert_int_equal(decide(&open_cfg, "GET", "/v1/models", NULL, NULL, NULL, &d),
                   PD_DISPATCH_MODELS);
  assert_null(d.api);
  pd_dispatch_free(&d);
}

static void test_chat(void **state) {
  (void)state;
  pd_dispatch_t d;
  const char *body = "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions", NULL, NULL, body, &d),
                   PD_DISPATCH_CHAT);
  assert_string_equal(d.route->name, "bymodel");
  assert_true(d.scanned);
  assert_null(d.body);
  assert_string_equal(d.model, "m1");
  assert_string_equal(pd_buf_data(&d.url), "http://localhost:8080/v1/chat/completions");
  pd_dispatch_free(&d);
  /* A body the scan leaves to jansson (an escape in the model) is parsed here. */
  body = "{\"model\":\"m\\u0031\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions", NULL, NULL, body, &d),
                   PD_DISPATCH_CHAT);
  assert_false(d.scanned);
  assert_non_null(d.body);
  assert_string_equal(d.model, "m1");
  assert_string_equal(d.route->name, "bymodel");
  pd_dispatch_free(&d);
  /* A prefix route keeps its route whatever the model. */
  assert_int_equal(decide(&open_cfg, "POST", "/a/v1/chat/completions?x=1", NULL, NULL,
                          "{\"model\":\"m1\",\"messages\":[]}", &d),
                   PD_DISPATCH_CHAT);
  assert_string_equal(d.route->name, "a");
  assert_string_equal(pd_buf_data(&d.url), "http://127.0.0.1/chat/completions?x=1");
  pd_dispatch_free(&d);
  /* Unknown model: the catch-all; without one, 404. */
  assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions", NULL, NULL,
                          "{\"model\":\"other\",\"messages\":[]}", &d),
                   PD_DISPATCH_CHAT);
  assert_string_equal(d.route->name, "catch");
  pd_dispatch_free(&d);
  assert_int_equal(decide(&nocatch_cfg, "POST", "/v1/chat/completions", NULL, NULL,
                          "{\"model\":\"other\",\"messages\":[]}", &d),
                   PD_DISPATCH_ERROR);
  assert_int_equal(d.status, 404);
  assert_string_equal(d.code, "model_not_found");
  assert_non_null(strstr(d.message, "'other'"));
  pd_dispatch_free(&d);
  /* Not a JSON object: 400. */
  assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions", NULL, NULL, "[1]", &d),
                   PD_DISPATCH_ERROR);
  assert_int_equal(d.status, 400);
  assert_non_null(strstr(d.message, "expected a JSON object"));
  pd_dispatch_free(&d);
  assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions", NULL, NULL, "{not", &d),
                   PD_DISPATCH_ERROR);
  assert_int_equal(d.status, 400);
  pd_dispatch_free(&d);
}

/* Found by fuzz_dispatch: jansson's error text quotes the body's bytes, and an invalid UTF-8
 * byte there made the 400 body invalid JSON. Messages keep the client's bytes; the error body
 * written from them (pd_openai_error) is always valid UTF-8 JSON. */
static json_t *error_body(const pd_dispatch_t *d) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, d->message, d->type, d->param, d->code);
  json_t *j = json_loadb(pd_buf_data(&b), b.len, 0, NULL); /* jansson refuses invalid UTF-8 */
  pd_buf_free(&b);
  return j;
}

static void test_messages_are_valid_text(void **state) {
  (void)state;
  static const char *const bodies[] = {"{\t\t\t\" \\\xcf\xa0Sl\xca\t", "{\"\xff\":1}", "\xc3",
                                       "{\"a\":\"\xed\xa0\x80\"}"};
  for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
    pd_dispatch_t d;
    assert_int_equal(decide(&open_cfg, "POST", "/v1/chat/completions", NULL, NULL, bodies[i], &d),
                     PD_DISPATCH_ERROR);
    assert_int_equal(d.status, 400);
    json_t *j = error_body(&d);
    if (!j)
      fail_msg("body %zu: the error body is not valid JSON (\"%s\")", i, d.message);
    json_decref(j);
    pd_dispatch_free(&d);
  }
  pd_dispatch_t d;
  decide(&open_cfg, "GET", "/caf\xc3\xa9/\xff/v1/x", NULL, NULL, NULL, &d);
  assert_int_equal(d.status, 404);
  json_t *j = error_body(&d);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                      "Unknown path: /caf\xc3\xa9/\xef\xbf\xbd/v1/x");
  json_decref(j);
  pd_dispatch_free(&d);
}

static void test_pass_routed_by_model(void **state) {
  (void)state;
  pd_dispatch_t d;
  assert_int_equal(decide(&open_cfg, "POST", "/v1/embeddings", NULL, "application/json",
                          "{\"model\":\"m1\"}", &d),
                   PD_DISPATCH_PASS);
  assert_string_equal(d.route->name, "bymodel");
  assert_string_equal(pd_buf_data(&d.url), "http://localhost:8080/v1/embeddings");
  pd_dispatch_free(&d);
  /* Only a JSON body is read for its model. */
  assert_int_equal(
      decide(&open_cfg, "POST", "/v1/embeddings", NULL, "text/plain", "{\"model\":\"m1\"}", &d),
      PD_DISPATCH_PASS);
  assert_string_equal(d.route->name, "catch");
  pd_dispatch_free(&d);
  expect_error(&nocatch_cfg, "GET", "/v1/files", NULL, 404, "model_not_found");
}

static void test_bad_base_url(void **state) {
  (void)state;
  pd_upstream_cfg_t u = ups[0];
  u.base_url = "http://h/v1#x";
  pd_route_t r = routes[4];
  r.upstream = 0;
  pd_config_t c = open_cfg;
  c.upstreams = &u;
  c.nupstreams = 1;
  c.routes = &r;
  c.nroutes = 1;
  expect_error(&c, "GET", "/v1/models", NULL, 500, "internal_error");
}

/* A base_url the joiner cannot use is refused when the config loads, not at each request. */
static int load_with_base(const char *base) {
  char path[] = "/tmp/ponder-test-dispatch-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fprintf(f, "{\"upstreams\": [{\"name\": \"u\", \"base_url\": \"%s\"}]}\n", base);
  fclose(f);
  pd_config_t *cfg = NULL;
  char *errors = NULL;
  static const pd_cli_overrides_t ov = {NULL, NULL, -1, -1, -1};
  int rc = pd_config_load(path, &ov, &cfg, &errors);
  unlink(path);
  if (cfg)
    pd_config_unref(cfg);
  free(errors);
  return rc;
}

static void test_config_refuses_unusable_base(void **state) {
  (void)state;
  assert_int_equal(load_with_base("http://127.0.0.1"), 0);
  assert_int_equal(load_with_base("https://api.deepseek.com"), 0);
  assert_int_equal(load_with_base("http://localhost:8080/v1/"), 0);
  assert_int_equal(load_with_base("http://h/d?api-version=1"), 0);
  static const char *const bad[] = {"http://h/v1#x",       "http://h:0/v1",    "http://h:65536/v1",
                                    "http://h:/v1",        "http://h\\\\x/v1", "http://[::1/v1",
                                    "http://h/caf\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (load_with_base(bad[i]) == 0)
      fail_msg("config accepted base_url %s", bad[i]);
}

/* Long paths and queries are joined whole (no fixed-size buffer cuts them). */
static void test_long_url(void **state) {
  (void)state;
  char target[13000], want[13100];
  strcpy(target, "/v1/");
  for (int i = 0; i < 2000; i++)
    strcat(target, "abcde");
  strcat(target, "?q=");
  for (int i = 0; i < 1000; i++)
    strcat(target, "xy");
  snprintf(want, sizeof want, "http://127.0.0.1%s", target + 3);
  expect_url(&open_cfg, "GET", target, PD_DISPATCH_PASS, "catch", want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops_endpoints),
      cmocka_unit_test(test_split_exact_prefix),
      cmocka_unit_test(test_path_refusals),
      cmocka_unit_test(test_order_of_answers),
      cmocka_unit_test(test_chat),
      cmocka_unit_test(test_messages_are_valid_text),
      cmocka_unit_test(test_pass_routed_by_model),
      cmocka_unit_test(test_bad_base_url),
      cmocka_unit_test(test_config_refuses_unusable_base),
      cmocka_unit_test(test_long_url),
      cmocka_unit_test(test_api_table),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
