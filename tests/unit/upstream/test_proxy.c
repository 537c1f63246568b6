/* Unit tests for upstream/proxy.c: which proxy a call takes (the `proxy` key, the environment
 * as curl reads it, no_proxy names, suffixes and "*"), the proxy URL's authority, and the
 * reader of a proxy's reply to CONNECT (open, refused, not HTTP, bytes after it, too large). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/proxy.h"

static const char *pick(const pd_proxy_env_t *e, const char *cfg, int tls, const char *auth) {
  return pd_proxy_pick(e, cfg, tls, auth, strlen(auth));
}

static void test_env_as_curl_reads_it(void **st) {
  (void)st;
  setenv("https_proxy", "", 1);
  setenv("HTTPS_PROXY", "http://big:1", 1);
  setenv("http_proxy", "http://small:2", 1);
  setenv("HTTP_PROXY", "http://ignored:3", 1);
  unsetenv("all_proxy");
  unsetenv("ALL_PROXY");
  unsetenv("no_proxy");
  setenv("NO_PROXY", "internal.example, .corp,10.0.0.1", 1);
  pd_proxy_env_t e;
  pd_proxy_env_load(&e);
  assert_string_equal(pick(&e, NULL, 1, "api.openai.com"), "http://big:1");
  assert_string_equal(pick(&e, NULL, 0, "api.openai.com:80"), "http://small:2");
  assert_string_equal(pick(&e, "http://cfg:9", 1, "x"), "http://cfg:9");
  /* no_proxy: the name itself, names under it, a leading dot, an address, case aside. */
  assert_null(pick(&e, NULL, 1, "internal.example"));
  assert_null(pick(&e, NULL, 1, "a.Internal.Example:443"));
  assert_non_null(pick(&e, NULL, 1, "notinternal.example"));
  assert_null(pick(&e, NULL, 1, "corp"));
  assert_null(pick(&e, NULL, 1, "vllm.corp:8443"));
  assert_null(pick(&e, NULL, 0, "10.0.0.1:8000"));
  assert_non_null(pick(&e, NULL, 0, "10.0.0.11:8000"));
  assert_null(pick(&e, "http://cfg:9", 1, "x.corp")); /* applies to the key too, as in curl */
  pd_proxy_env_free(&e);
  setenv("no_proxy", "*", 1);
  unsetenv("HTTPS_PROXY");
  setenv("ALL_PROXY", "http://all:4", 1);
  pd_proxy_env_load(&e);
  assert_null(pick(&e, NULL, 1, "anything"));
  pd_proxy_env_free(&e);
  unsetenv("no_proxy");
  unsetenv("NO_PROXY");
  pd_proxy_env_load(&e);
  assert_string_equal(pick(&e, NULL, 1, "[::1]:443"), "http://all:4");
  pd_proxy_env_free(&e);
}

static void test_authority(void **st) {
  (void)st;
  char a[64];
  assert_int_equal(pd_proxy_authority("http://p:3128/", a, sizeof a), 6);
  assert_string_equal(a, "p:3128");
  assert_true(pd_proxy_authority("p", a, sizeof a) > 0);
  assert_string_equal(a, "p:1080");
  assert_true(pd_proxy_authority("HTTP://[::1]", a, sizeof a) > 0);
  assert_string_equal(a, "[::1]:1080");
  assert_true(pd_proxy_authority("http://[::1]:8", a, sizeof a) > 0);
  assert_string_equal(a, "[::1]:8");
  assert_int_equal(pd_proxy_authority("https://p:1", a, sizeof a), -1);
  assert_int_equal(pd_proxy_authority("socks5://p:1", a, sizeof a), -1);
  assert_int_equal(pd_proxy_authority("http://u:pw@p:1", a, sizeof a), 3);
  assert_string_equal(a, "p:1");
  assert_int_equal(pd_proxy_authority("http://u@x:p%40w@p/", a, sizeof a), 6);
  assert_string_equal(a, "p:1080");
  assert_int_equal(pd_proxy_authority("http://", a, sizeof a), -1);
}

/* Credentials in a proxy URL: Basic from the percent-decoded user and password, as curl does. */
static void test_auth_line(void **st) {
  (void)st;
  assert_null(pd_proxy_auth_line("http://p:1"));
  assert_null(pd_proxy_auth_line("p:1/a@b"));
  char *l = pd_proxy_auth_line("http://u1:pw1@127.0.0.1:3128");
  assert_string_equal(l, "Proxy-Authorization: Basic dTE6cHcx\r\n"); /* u1:pw1 */
  free(l);
  l = pd_proxy_auth_line("http://us%65r:p%40ss%3a@p:1/");
  assert_string_equal(l, "Proxy-Authorization: Basic dXNlcjpwQHNzOg==\r\n"); /* user:p@ss: */
  free(l);
  l = pd_proxy_auth_line("http://alone@p");
  assert_string_equal(l, "Proxy-Authorization: Basic YWxvbmU6\r\n"); /* alone: */
  free(l);
}

static int reply(const char *s, size_t chunk, char *err, size_t n) {
  pd_buf_t acc;
  pd_buf_init(&acc);
  int r = 0;
  for (size_t off = 0, len = strlen(s); off < len && r == 0; off += chunk)
    r = pd_proxy_reply(&acc, s + off, len - off < chunk ? len - off : chunk, err, n);
  pd_buf_free(&acc);
  return r;
}

static void test_reply(void **st) {
  (void)st;
  char err[160];
  for (size_t chunk = 1; chunk < 40; chunk += 7) {
    assert_int_equal(reply("HTTP/1.1 200 Connection established\r\n\r\n", chunk, err, sizeof err),
                     1);
    assert_int_equal(reply("HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\n", chunk, err, sizeof err), 1);
  }
  assert_int_equal(reply("HTTP/1.1 200 OK\r\n", 5, err, sizeof err), 0);
  assert_int_equal(reply("HTTP/1.1 403 Forbidden\r\n\r\n", 3, err, sizeof err), -1);
  assert_string_equal(err, "the proxy refused the tunnel: 403 Forbidden");
  assert_int_equal(reply("HTTP/1.1 407\r\n\r\n", 100, err, sizeof err), -1);
  assert_string_equal(err, "the proxy refused the tunnel: 407");
  assert_int_equal(reply("HTTP/1.1 502 Bad\x01\x7f Gateway\r\n\r\n", 100, err, sizeof err), -1);
  assert_string_equal(err, "the proxy refused the tunnel: 502 Bad Gateway");
  assert_int_equal(reply("SSH-2.0-x\r\n\r\n", 100, err, sizeof err), -1);
  assert_int_equal(reply("HTTP/1.1 2000 OK\r\n\r\n", 100, err, sizeof err), -1);
  assert_int_equal(reply("HTTP/1.1 200 OK\r\n\r\nextra", 100, err, sizeof err), -1);
  char big[9000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
  assert_int_equal(reply(big, 1000, err, sizeof err), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_env_as_curl_reads_it),
      cmocka_unit_test(test_authority),
      cmocka_unit_test(test_auth_line),
      cmocka_unit_test(test_reply),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
