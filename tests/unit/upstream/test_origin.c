/* Unit tests for upstream/origin.c: an origin's address cache (a literal is always fresh, a
 * host name's addresses for PD_ORIGIN_RESOLVE_TTL_MS, a failed lookup keeps them stale) and a
 * connection's lookup and connect on a live loop: the first connection looks the name up, the
 * next one within the TTL reuses the addresses, one after the TTL looks the name up again. */
#include <netdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/origin.h"

/* A real getaddrinfo result (numeric: no lookup), as libuv would hand it over. */
static struct addrinfo *numeric_addrinfo(const char *host) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  assert_int_equal(getaddrinfo(host, "80", &hints, &res), 0);
  return res;
}

static void test_addr_ttl(void **st) {
  (void)st;
  pd_origin_addr_t lit, name;
  assert_int_equal(pd_origin_addr_init(&lit, "127.0.0.1:8080", 14, "80"), 0);
  assert_true(pd_origin_addr_fresh(&lit, 0));
  assert_true(pd_origin_addr_fresh(&lit, 10 * PD_ORIGIN_RESOLVE_TTL_MS)); /* never looked up */

  assert_int_equal(pd_origin_addr_init(&name, "api.example:443", 15, "80"), 0);
  assert_string_equal(name.host, "api.example");
  assert_string_equal(name.port, "443");
  assert_false(pd_origin_addr_fresh(&name, 1000)); /* no addresses yet */
  assert_int_equal(pd_origin_addr_resolved(&name, 0, numeric_addrinfo("127.0.0.1"), 1000), 0);
  assert_int_equal(name.naddrs, 1);
  assert_true(pd_origin_addr_fresh(&name, 1000));
  assert_true(pd_origin_addr_fresh(&name, 1000 + PD_ORIGIN_RESOLVE_TTL_MS - 1));
  assert_false(pd_origin_addr_fresh(&name, 1000 + PD_ORIGIN_RESOLVE_TTL_MS));
  /* A failed lookup after the TTL keeps the old addresses stale: the next call tries again. */
  uint64_t later = 1000 + 2 * PD_ORIGIN_RESOLVE_TTL_MS;
  assert_int_equal(pd_origin_addr_resolved(&name, UV_EAI_AGAIN, NULL, later), UV_EAI_AGAIN);
  assert_false(pd_origin_addr_fresh(&name, later));
  /* The next good lookup starts the TTL from its own time. */
  assert_int_equal(pd_origin_addr_resolved(&name, 0, numeric_addrinfo("::1"), later), 0);
  assert_true(pd_origin_addr_fresh(&name, later + PD_ORIGIN_RESOLVE_TTL_MS - 1));
  pd_origin_addr_free(&lit);
  pd_origin_addr_free(&name);
}

static void test_conn_msg(void **st) {
  (void)st;
  pd_origin_t o;
  pd_xfer_opts_t op;
  memset(&o, 0, sizeof o);
  memset(&op, 0, sizeof op);
  assert_int_equal(pd_origin_init(&o, "up.example:81", 13, NULL, NULL, &op, 0), 0);
  char msg[160];
  pd_origin_conn_msg(&o, 1, UV_EAI_NONAME, msg, sizeof msg);
  assert_non_null(strstr(msg, "Could not resolve host: up.example"));
  pd_origin_conn_msg(&o, 0, UV_ECONNREFUSED, msg, sizeof msg);
  assert_non_null(strstr(msg, "Failed to connect to up.example port 81: "));
  o.a.naddrs = 2;
  assert_true(pd_origin_conn_has_next(&o, 0, 0));
  assert_false(pd_origin_conn_has_next(&o, 0, 1));
  assert_false(pd_origin_conn_has_next(&o, 1, 0)); /* a lookup failure has no next address */
  pd_origin_free(&o);
}

/* ---- a connection's lookup on a live loop ---------------------------------------------- */

typedef struct one {
  uv_tcp_t tcp;
  uv_timer_t timer;
  pd_origin_conn_t k;
  int connects; /* on_connect calls (refused: nothing listens on port 1) */
  int deferred; /* timer reports of a failure kept in k.err */
} one_t;

static int lookups;

static void on_connect(uv_connect_t *req, int status) {
  one_t *c = req->data;
  (void)status;
  c->connects++;
}

static void on_timer(uv_timer_t *t) {
  one_t *c = t->data;
  if (c->k.err)
    c->deferred++;
}

static void on_resolved(pd_origin_t *o, int status) {
  lookups++;
  pd_origin_conn_resolved(o, status);
}

static void one_start(one_t *c, pd_origin_t *o, uv_loop_t *loop) {
  memset(c, 0, sizeof *c);
  assert_int_equal(uv_tcp_init(loop, &c->tcp), 0);
  assert_int_equal(uv_timer_init(loop, &c->timer), 0);
  c->timer.data = c;
  pd_origin_conn_init(&c->k, &c->tcp, on_connect, c, &c->timer, on_timer, uv_now(loop));
  pd_origin_conn_start(o, &c->k, loop, on_resolved);
}

static void one_close(one_t *c) {
  uv_close((uv_handle_t *)&c->tcp, NULL);
  uv_close((uv_handle_t *)&c->timer, NULL);
}

static void test_conn_reresolves_after_ttl(void **st) {
  (void)st;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pd_origin_t o;
  pd_xfer_opts_t op;
  memset(&o, 0, sizeof o);
  memset(&op, 0, sizeof op);
  assert_int_equal(pd_origin_init(&o, "localhost:1", 11, NULL, NULL, &op, 0), 0);
  lookups = 0;

  one_t a, b, c;
  one_start(&a, &o, &loop); /* no addresses: looks localhost up */
  assert_true(a.k.resolving);
  assert_true(o.resolving);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(lookups, 1);
  assert_int_equal(a.connects + a.deferred, 1);
  assert_false(pd_list_linked(&a.k.rlink));

  one_start(&b, &o, &loop); /* within the TTL: the cached addresses, no lookup */
  assert_false(b.k.resolving);
  assert_false(o.resolving);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(lookups, 1);
  assert_int_equal(b.connects + b.deferred, 1);

  o.dial->resolved_at = uv_now(&loop) - PD_ORIGIN_RESOLVE_TTL_MS; /* the TTL is over */
  one_start(&c, &o, &loop);
  assert_true(c.k.resolving);
  assert_true(o.resolving);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(lookups, 2);
  assert_int_equal(c.connects + c.deferred, 1);

  one_close(&a);
  one_close(&b);
  one_close(&c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  pd_origin_free(&o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_addr_ttl),
      cmocka_unit_test(test_conn_msg),
      cmocka_unit_test(test_conn_reresolves_after_ttl),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
