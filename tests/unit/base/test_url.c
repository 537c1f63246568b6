/* Unit tests for url.c: base URL parts, the checks of a client's rest of path and query (one
 * test per refusal class), and the join under base URLs with and without port and path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/url.h"

static pd_url_base_t base_of(const char *url) {
  pd_url_base_t b;
  assert_int_equal(pd_url_parse_base(url, strlen(url), &b), 0);
  return b;
}

static void assert_part(const char *p, size_t n, const char *want) {
  if (!want) {
    assert_null(p);
    return;
  }
  assert_non_null(p);
  assert_int_equal(n, strlen(want));
  assert_memory_equal(p, want, n);
}

/* ---- base URLs ---- */

static void test_base_parts(void **state) {
  (void)state;
  static const struct {
    const char *url, *scheme, *authority, *host, *port, *path, *query;
  } cases[] = {
      {"http://127.0.0.1", "http", "127.0.0.1", "127.0.0.1", NULL, "/", NULL},
      {"https://api.deepseek.com", "https", "api.deepseek.com", "api.deepseek.com", NULL, "/",
       NULL},
      {"http://localhost:8080/v1", "http", "localhost:8080", "localhost", "8080", "/v1", NULL},
      {"HTTPS://H:443/a/b?api-version=1", "HTTPS", "H:443", "H", "443", "/a/b", "api-version=1"},
      {"http://[::1]:99/v1", "http", "[::1]:99", "[::1]", "99", "/v1", NULL},
      {"http://[::1]", "http", "[::1]", "[::1]", NULL, "/", NULL},
      {"http://user:pw@h:1/v1", "http", "user:pw@h:1", "h", "1", "/v1", NULL},
      {"http://h/", "http", "h", "h", NULL, "/", NULL},
      {"http://h?x", "http", "h", "h", NULL, "/", "x"},
      {"http://h:65535", "http", "h:65535", "h", "65535", "/", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    pd_url_base_t b = base_of(cases[i].url);
    assert_part(b.scheme, b.scheme_len, cases[i].scheme);
    assert_part(b.authority, b.authority_len, cases[i].authority);
    assert_part(b.host, b.host_len, cases[i].host);
    assert_part(b.port, b.port_len, cases[i].port);
    assert_part(b.path, b.path_len, cases[i].path);
    assert_part(b.query, b.query_len, cases[i].query);
  }
}

static void test_base_refused(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "ftp://h/v1",
      "http:/h",
      "http://",
      "http:///v1",
      "http://?x",
      "http://h:0",
      "http://h:65536",
      "http://h:",
      "http://h:12a",
      "http://h:123456",
      "http://h/v1#frag",
      "http://h/a b",
      "http://h\\x/v1",
      "http://[::1",
      "http://[]:1",
      "http://h/\x7f",
      "http://u@/v1",
      "http://h:80:80/v1",
      "http://[::1]x/v1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pd_url_base_t b;
    if (pd_url_parse_base(bad[i], strlen(bad[i]), &b) != PD_URL_EBASE)
      fail_msg("base accepted: \"%s\"", bad[i]);
  }
}

/* ---- the client's rest of path ---- */

static void expect_rest(const char *rest, int code) {
  int rc = pd_url_check_rest(rest, strlen(rest));
  if (rc != code)
    fail_msg("rest \"%s\": got %d, want %d", rest, rc, code);
}

static void test_rest_accepted(void **state) {
  (void)state;
  static const char *const ok[] = {
      "",
      "/",
      "/models",
      "/files/",
      "/files/file-abc/content",
      "/models/ft:gpt-3.5-turbo:org:id",
      "/a.b/...",
      "/.well-known",
      "/..x/x..",
      "/a%20b",
      "/caf%C3%A9",
      "/%F0%9F%98%80",
      "/a%3Fb%23c%40d",
      "/a~b_c-d!$&'()*+,;=:",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    expect_rest(ok[i], 0);
}

static void test_rest_not_a_path(void **state) {
  (void)state;
  expect_rest("x", PD_URL_EPATH);
  expect_rest("//", PD_URL_EPATH);
  expect_rest("//x", PD_URL_EPATH);
  expect_rest("/a//b", PD_URL_EPATH);
  expect_rest("/a//", PD_URL_EPATH);
}

static void test_rest_dot_segments(void **state) {
  (void)state;
  expect_rest("/.", PD_URL_EDOT);
  expect_rest("/..", PD_URL_EDOT);
  expect_rest("/../x", PD_URL_EDOT);
  expect_rest("/../../tenant-b/x", PD_URL_EDOT);
  expect_rest("/a/./b", PD_URL_EDOT);
  expect_rest("/a/..", PD_URL_EDOT);
  expect_rest("/a/../", PD_URL_EDOT);
}

static void test_rest_encoded(void **state) {
  (void)state;
  static const char *const bad[] = {
      "/%2e%2e/x",  "/%2E%2E/x",     "/.%2e/x", "/%2e./x",    "/%2e", "/a%2eb", "/a%2fb",  "/a%2Fb",
      "/a%5cb",     "/a%5Cb",        "/%25",    "/%252e",     "/%00", "/%0a",   "/%0D%0A", "/%7f",
      "/%1f",       "/%c0%ae",       "/%C0%AE", "/%e0%80%ae", "/%ff", "/%c3",   "/%c3x",   "/%80",
      "/%ed%a0%80", "/%f4%90%80%80", "/%",      "/%2",        "/%g0", "/%0g",   "/a%",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    expect_rest(bad[i], PD_URL_EENCODED);
}

static void test_rest_chars(void **state) {
  (void)state;
  static const char *const bad[] = {
      "/@x",  "/a@b",  "/a\\b", "/\\",   "/a b",  "/a\"b",        "/a<b", "/a>b",
      "/a{b", "/a}b",  "/a|b",  "/a^b",  "/a`b",  "/a[b",         "/a]b", "/a#b",
      "/a?b", "/\x01", "/\t",   "/\x7f", "/\x80", "/caf\xc3\xa9",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    expect_rest(bad[i], PD_URL_ECHAR);
  /* A NUL inside the given length is a byte like any other. */
  assert_int_equal(pd_url_check_rest("/a\0b", 4), PD_URL_ECHAR);
}

/* ---- the client's query ---- */

static void test_query(void **state) {
  (void)state;
  static const char *const ok[] = {
      "",        "a=1",      "foo=bar&x=%20y", "a=@:/?", "limit=20&after=f.1",
      "p=a%2Fb", "x=%2e%2e", "e=a@b.c"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    if (pd_url_check_query(ok[i], strlen(ok[i])) != 0)
      fail_msg("query refused: \"%s\"", ok[i]);
  static const char *const bad[] = {"a b",  "a\\b", "a#b",  "%zz",  "%2", "a%",
                                    "\x80", "a\"b", "a\rb", "a\nb", "{}", "a|b"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (pd_url_check_query(bad[i], strlen(bad[i])) != PD_URL_EQUERY)
      fail_msg("query accepted: \"%s\"", bad[i]);
}

/* ---- joining ---- */

static void expect_join(const char *base, const char *rest, const char *query, const char *want) {
  pd_url_base_t b = base_of(base);
  pd_buf_t out;
  pd_buf_init(&out);
  int rc = pd_url_join(&b, rest, strlen(rest), query, query ? strlen(query) : 0, &out);
  if (rc != 0)
    fail_msg("join %s + %s: %d", base, rest, rc);
  if (out.len != strlen(want) || memcmp(pd_buf_data(&out), want, out.len) != 0)
    fail_msg("join %s + %s: got \"%s\", want \"%s\"", base, rest, pd_buf_data(&out), want);
  assert_int_equal(pd_buf_data(&out)[out.len], '\0');
  pd_buf_free(&out);
}

static void test_join(void **state) {
  (void)state;
  /* No port, no path: the client's path starts at "/", on the same host. */
  expect_join("http://127.0.0.1", "/x", NULL, "http://127.0.0.1/x");
  expect_join("http://127.0.0.1", "", NULL, "http://127.0.0.1/");
  expect_join("https://api.deepseek.com", "/chat/completions", NULL,
              "https://api.deepseek.com/chat/completions");
  expect_join("http://h/", "/x", NULL, "http://h/x");
  /* With port and path. */
  expect_join("http://localhost:8080/v1", "/models", NULL, "http://localhost:8080/v1/models");
  expect_join("http://localhost:8080/v1", "", NULL, "http://localhost:8080/v1");
  expect_join("http://localhost:8080/v1", "/", NULL, "http://localhost:8080/v1/");
  expect_join("http://h:1/a/b/v1", "/files/", NULL, "http://h:1/a/b/v1/files/");
  /* Trailing slashes of the base path: one '/' at the join. */
  expect_join("http://h/v1/", "/models", NULL, "http://h/v1/models");
  expect_join("http://h/v1//", "/models", NULL, "http://h/v1/models");
  expect_join("http://h/v1/", "", NULL, "http://h/v1/");
  /* Queries: the client's, the base's, both. */
  expect_join("http://h/v1", "/embeddings", "foo=bar&x=%20y",
              "http://h/v1/embeddings?foo=bar&x=%20y");
  expect_join("http://h/v1", "/embeddings", "", "http://h/v1/embeddings");
  expect_join("http://h/d?api-version=1", "/chat/completions", NULL,
              "http://h/d/chat/completions?api-version=1");
  expect_join("http://h/d?api-version=1", "/x", "a=2", "http://h/d/x?api-version=1&a=2");
  expect_join("http://h/d?", "/x", "a=2", "http://h/d/x?a=2");
  /* Legit escapes and dots inside a segment are kept byte for byte. */
  expect_join("http://h/v1", "/a%20b/caf%C3%A9", NULL, "http://h/v1/a%20b/caf%C3%A9");
  expect_join("http://h/v1", "/models/gpt-3.5-turbo", NULL, "http://h/v1/models/gpt-3.5-turbo");
  /* The authority is copied as written (IPv6, userinfo). */
  expect_join("http://[::1]:9/v1", "/x", NULL, "http://[::1]:9/v1/x");
  expect_join("http://u:p@h/v1", "/x", NULL, "http://u:p@h/v1/x");
  /* What used to be concatenated into another port or host is now just a path segment. */
  expect_join("http://127.0.0.1", "/ab:9999/x", NULL, "http://127.0.0.1/ab:9999/x");
}

static void test_join_refusals_leave_out_unchanged(void **state) {
  (void)state;
  pd_url_base_t b = base_of("http://127.0.0.1");
  pd_buf_t out;
  pd_buf_init(&out);
  pd_buf_appends(&out, "keep");
  static const char *const bad[] = {"/../x", "/%2e%2e/x", "/a%2fb", "/a\\b", "/@x", "x", "//x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_true(pd_url_join(&b, bad[i], strlen(bad[i]), NULL, 0, &out) < 0);
    assert_int_equal(out.len, 4);
  }
  assert_int_equal(pd_url_join(&b, "/x", 2, "a b", 3, &out), PD_URL_EQUERY);
  assert_int_equal(out.len, 4);
  pd_buf_free(&out);
}

static void test_strerror(void **state) {
  (void)state;
  for (int c = PD_URL_ENOMEM; c <= PD_URL_EBASE; c++) {
    const char *m = pd_url_strerror(c);
    assert_non_null(m);
    assert_true(strlen(m) > 10);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_base_parts),
      cmocka_unit_test(test_base_refused),
      cmocka_unit_test(test_rest_accepted),
      cmocka_unit_test(test_rest_not_a_path),
      cmocka_unit_test(test_rest_dot_segments),
      cmocka_unit_test(test_rest_encoded),
      cmocka_unit_test(test_rest_chars),
      cmocka_unit_test(test_query),
      cmocka_unit_test(test_join),
      cmocka_unit_test(test_join_refusals_leave_out_unchanged),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
