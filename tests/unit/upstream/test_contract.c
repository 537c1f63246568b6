/* The upstream client's contract on a live libuv loop, run the same way against every framing:
 * the native HTTP/1.1 client, the native h2c client ("http2: true") and libcurl
 * (PONDER_UPSTREAM_CLIENT=curl, read by pd_upstream_new), each against scripted loopback
 * servers (test_contract_srv.c, in a thread). What every framing owes its caller
 * (proxy/upstream/upstream.h): no callback after pd_xfer_cancel, wherever it is called; a pause
 * holds across a retry; connect, stall and total timeouts end the call as PD_XFER_ETIMEOUT in
 * about their time; a refused h2 stream is tried again, a stream or connection reset after
 * response bytes arrived is not; and the loop closes with nothing left on it (uv_loop_close
 * returns 0) after every test. Also built and run under ASan+UBSan (build-asan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_contract_srv.h"
#include "upstream/upstream.h"

enum { FR_H1, FR_H2C, FR_CURL };
static const char *const FRAMING_NAME[] = {"h1", "h2c", "curl"};

/* One test's loop, upstream client and what the callbacks saw. */
typedef struct rec {
  int heads, datas, dones;
  int status;
  int result;
  char msg[256];
  char body[4096];
  size_t blen;
  int cancelled;       /* pd_xfer_cancel was called: any callback after it is a failure */
  int after_cancel;    /* callbacks that came anyway */
  int cancel_in;       /* 1: cancel in on_head, 2: in the first on_data */
  int pause_in_data;   /* return 1 (pause) from on_data */
  uint64_t started_at; /* loop ms */
  uint64_t done_at;
  pd_xfer_t *x;
} rec_t;

typedef struct env {
  int framing;
  uv_loop_t loop;
  pd_upstream_t *up;
  ts_server_t srv;
  int have_srv;
  rec_t r;
  rec_t r2; /* a second call's, for the tests that run two at once */
} env_t;

static void on_head(void *ud, const pd_xfer_head_t *h) {
  rec_t *r = ud;
  if (r->cancelled) {
    r->after_cancel++;
    return;
  }
  r->heads++;
  r->status = h->status;
  if (r->cancel_in == 1) {
    r->cancelled = 1;
    pd_xfer_cancel(r->x);
  }
}

static int on_data(void *ud, const char *p, size_t n) {
  rec_t *r = ud;
  if (r->cancelled) {
    r->after_cancel++;
    return -1;
  }
  r->datas++;
  size_t k = n < sizeof r->body - 1 - r->blen ? n : sizeof r->body - 1 - r->blen;
  memcpy(r->body + r->blen, p, k);
  r->blen += k;
  r->body[r->blen] = '\0';
  if (r->cancel_in == 2) {
    r->cancelled = 1;
    pd_xfer_cancel(r->x);
    return 0;
  }
  return r->pause_in_data ? 1 : 0;
}

static void on_done(void *ud, int result, const char *msg) {
  rec_t *r = ud;
  if (r->cancelled) {
    r->after_cancel++;
    return;
  }
  r->dones++;
  r->result = result;
  snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
  r->x = NULL;
}

static const pd_xfer_cbs_t CBS = {on_head, on_data, on_done};

/* ---- the loop ------------------------------------------------------------------------------ */

static void on_tick(uv_timer_t *t) {
  (void)t; /* wakes uv_run so run_until re-reads what the server thread counted */
}

static void on_limit(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Runs the loop until pred(e) holds or ms pass; returns whether pred held. */
static int run_until(env_t *e, int (*pred)(env_t *), long ms) {
  uv_timer_t tick, limit;
  int expired = 0;
  uv_timer_init(&e->loop, &tick);
  uv_timer_init(&e->loop, &limit);
  limit.data = &expired;
  uv_timer_start(&tick, on_tick, 5, 5);
  uv_timer_start(&limit, on_limit, (uint64_t)ms, 0);
  int ok;
  while (!(ok = pred ? pred(e) : 0) && !expired)
    uv_run(&e->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&limit, NULL);
  uv_run(&e->loop, UV_RUN_NOWAIT); /* the two close callbacks */
  return ok;
}

static int is_done(env_t *e) {
  return e->r.dones > 0;
}

static void run_for(env_t *e, long ms) {
  run_until(e, NULL, ms);
}

static int setup(void **state) {
  env_t *e = calloc(1, sizeof *e);
  e->framing = *(int *)*state;
  assert_int_equal(uv_loop_init(&e->loop), 0);
  if (e->framing == FR_CURL)
    setenv("PONDER_UPSTREAM_CLIENT", "curl", 1);
  else
    unsetenv("PONDER_UPSTREAM_CLIENT");
  e->up = pd_upstream_new(&e->loop, 8);
  unsetenv("PONDER_UPSTREAM_CLIENT");
  assert_non_null(e->up);
  *state = e;
  return 0;
}

static void on_closed(void *ud) {
  *(int *)ud = 1;
}

static void walk_report(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) {
    fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(uv_handle_get_type(h)));
    ++*(int *)arg;
    uv_close(h, NULL);
  }
}

static int teardown(void **state) {
  env_t *e = *state;
  int closed = 0;
  pd_upstream_close(e->up, on_closed, &closed);
  for (int i = 0; i < 2000 && !closed; i++)
    uv_run(&e->loop, UV_RUN_ONCE);
  assert_true(closed);
  pd_upstream_free(e->up);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  int left = 0;
  uv_walk(&e->loop, walk_report, &left);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  /* MAKE_VALGRIND_HAPPY: nothing the client started outlives its close. */
  assert_int_equal(left, 0);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  if (e->have_srv)
    ts_server_stop(&e->srv);
  free(e);
  return 0;
}

/* Starts the framing's kind of server with the given script. */
static void serve(env_t *e, const ts_step_t *steps, int n) {
  memset(&e->srv, 0, sizeof e->srv);
  e->srv.h2 = e->framing == FR_H2C;
  e->srv.drip_ms = 50;
  memcpy(e->srv.steps, steps, (size_t)n * sizeof *steps);
  e->srv.nsteps = n;
  assert_int_equal(ts_server_start(&e->srv), 0);
  e->have_srv = 1;
}

typedef struct call {
  int port;
  long connect_ms, timeout_ms, stall_ms;
  int retries;
  int max_conns; /* the pool's bounds (0: the client's defaults) */
  long max_reqs, max_age_ms;
} call_t;

static pd_xfer_t *start_on(env_t *e, call_t c, rec_t *r) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/models", c.port ? c.port : e->srv.port);
  static const char *const hdrs[] = {"Accept: application/json", "X-Request-Id: contract", NULL};
  pd_xfer_opts_t o = {.method = "GET",
                      .url = url,
                      .headers = hdrs,
                      .connect_timeout_ms = c.connect_ms ? c.connect_ms : 2000,
                      .timeout_ms = c.timeout_ms ? c.timeout_ms : 10000,
                      .stall_timeout_ms = c.stall_ms,
                      .retries = c.retries,
                      .http2 = e->framing == FR_H2C,
                      .max_connections = c.max_conns,
                      .max_conn_requests = c.max_reqs,
                      .max_conn_age_ms = c.max_age_ms};
  r->started_at = uv_now(&e->loop);
  pd_xfer_t *x = pd_xfer_start(e->up, &o, &CBS, r);
  assert_non_null(x);
  r->x = x;
  /* Callbacks never run inside pd_xfer_start. */
  assert_int_equal(r->heads + r->datas + r->dones, 0);
  return x;
}

static pd_xfer_t *start(env_t *e, call_t c) {
  return start_on(e, c, &e->r);
}

static int wait_done(env_t *e, long ms) {
  int ok = run_until(e, is_done, ms);
  if (ok)
    e->r.done_at = uv_now(&e->loop);
  return ok;
}

static long elapsed(env_t *e) {
  return (long)(e->r.done_at - e->r.started_at);
}

static int srv_requests(env_t *e) {
  return atomic_load(&e->srv.requests);
}

static int requests1_plus(env_t *e) {
  return srv_requests(e) >= 1;
}

#define OK_BODY "{\"object\":\"list\",\"data\":[]}"

/* ---- the cases --------------------------------------------------------------------------- */

static void test_plain_call(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 1);
  start(e, (call_t){0});
  assert_true(wait_done(e, 5000));
  assert_int_equal(e->r.result, PD_XFER_OK);
  assert_int_equal(e->r.heads, 1);
  assert_int_equal(e->r.status, 200);
  assert_string_equal(e->r.body, OK_BODY);
}

/* Cancelled before anything happened: nothing is ever called back. */
static void test_cancel_at_once(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 1);
  pd_xfer_t *x = start(e, (call_t){0});
  e->r.cancelled = 1;
  pd_xfer_cancel(x);
  run_for(e, 300);
  assert_int_equal(e->r.after_cancel, 0);
}

/* Cancelled while the server holds the request unanswered. */
static void test_cancel_while_waiting(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_SILENT, 0, NULL, -1, 0}};
  serve(e, s, 1);
  pd_xfer_t *x = start(e, (call_t){0});
  assert_true(run_until(e, requests1_plus, 3000));
  e->r.cancelled = 1;
  pd_xfer_cancel(x);
  run_for(e, 300);
  assert_int_equal(e->r.after_cancel, 0);
}

/* Cancelled while its connect hangs: nothing is called back, also not the connect timeout. */
static void test_cancel_while_connecting(void **state) {
  env_t *e = *state;
  ts_blackhole_t b;
  assert_int_equal(ts_blackhole_start(&b), 0);
  pd_xfer_t *x = start(e, (call_t){.port = b.port, .connect_ms = 300});
  run_for(e, 100);
  e->r.cancelled = 1;
  pd_xfer_cancel(x);
  run_for(e, 500);
  ts_blackhole_stop(&b);
  assert_int_equal(e->r.after_cancel, 0);
}

/* Cancelled inside on_head: no on_data, no on_done. */
static void test_cancel_in_head(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 1);
  e->r.cancel_in = 1;
  start(e, (call_t){0});
  run_for(e, 600);
  assert_int_equal(e->r.heads, 1);
  assert_int_equal(e->r.datas, 0);
  assert_int_equal(e->r.dones, 0);
  assert_int_equal(e->r.after_cancel, 0);
}

/* Cancelled inside the first on_data while the body keeps coming. */
static void test_cancel_in_data(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_DRIP, 0, NULL, -1, 0}};
  serve(e, s, 1);
  e->r.cancel_in = 2;
  start(e, (call_t){0});
  run_for(e, 600);
  assert_int_equal(e->r.heads, 1);
  assert_int_equal(e->r.datas, 1);
  assert_int_equal(e->r.dones, 0);
  assert_int_equal(e->r.after_cancel, 0);
}

/* Cancelled during the backoff before a retry: no callback, and no second attempt. */
static void test_cancel_in_backoff(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 503, "{}", 400, 0}, {TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 2);
  pd_xfer_t *x = start(e, (call_t){.retries = 2});
  assert_true(run_until(e, requests1_plus, 3000));
  run_for(e, 100); /* the 503 is read and the retry planned, 400 ms out */
  e->r.cancelled = 1;
  pd_xfer_cancel(x);
  run_for(e, 700);
  assert_int_equal(e->r.after_cancel, 0);
  assert_int_equal(srv_requests(e), 1);
}

/* Cancelled while paused with body held: nothing of it is delivered afterwards. */
static void test_cancel_while_paused(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_DRIP, 0, NULL, -1, 0}};
  serve(e, s, 1);
  e->r.pause_in_data = 1;
  pd_xfer_t *x = start(e, (call_t){.stall_ms = 200});
  run_for(e, 500); /* paused after the first byte; more arrives and is held */
  assert_int_equal(e->r.datas, 1);
  assert_int_equal(e->r.dones, 0); /* paused time is no stall */
  e->r.cancelled = 1;
  pd_xfer_cancel(x);
  run_for(e, 300);
  assert_int_equal(e->r.after_cancel, 0);
}

static int requests2(env_t *e) {
  return srv_requests(e) >= 2;
}

/* Paused before the first attempt answered 503: the retry's 200 is held until the resume,
 * then delivered whole; the 503 is never seen. split_ms: the 503's body comes that long after
 * its head (a paused transfer must still read a body it discards, or the retry never starts). */
static void pause_survives_retry(env_t *e, int split_ms) {
  ts_step_t s[] = {{TS_RESP, 503, "{\"error\":1}", 20, split_ms}, {TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 2);
  pd_xfer_t *x = start(e, (call_t){.retries = 2});
  pd_xfer_pause(x);
  assert_true(run_until(e, requests2, 5000));
  run_for(e, 300);
  assert_int_equal(e->r.datas, 0);
  assert_int_equal(e->r.dones, 0);
  assert_true(e->r.heads == 0 || e->r.status == 200);
  pd_xfer_resume(x);
  assert_true(wait_done(e, 3000));
  assert_int_equal(e->r.result, PD_XFER_OK);
  assert_int_equal(e->r.heads, 1);
  assert_int_equal(e->r.status, 200);
  assert_string_equal(e->r.body, OK_BODY);
  assert_int_equal(srv_requests(e), 2);
}

static void test_pause_survives_retry(void **state) {
  pause_survives_retry(*state, 0);
}

/* A paused transfer still reads the body of a retryable status it discards. */
static void test_pause_survives_retry_late_body(void **state) {
  pause_survives_retry(*state, 150);
}

/* A listener that never completes the handshake: ETIMEOUT at connect_timeout_ms. */
static void test_connect_timeout(void **state) {
  env_t *e = *state;
  ts_blackhole_t b;
  assert_int_equal(ts_blackhole_start(&b), 0);
  start(e, (call_t){.port = b.port, .connect_ms = 300, .timeout_ms = 10000});
  int ok = wait_done(e, 5000);
  ts_blackhole_stop(&b);
  assert_true(ok);
  assert_int_equal(e->r.result, PD_XFER_ETIMEOUT);
  assert_int_equal(e->r.heads, 0);
  assert_in_range(elapsed(e), 250, 2500);
}

/* The request went out and nothing came back: ETIMEOUT at stall_timeout_ms, not retried. */
static void test_stall_timeout_before_head(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_SILENT, 0, NULL, -1, 0}};
  serve(e, s, 1);
  start(e, (call_t){.stall_ms = 300, .timeout_ms = 20000, .retries = 2});
  assert_true(wait_done(e, 5000));
  assert_int_equal(e->r.result, PD_XFER_ETIMEOUT);
  assert_int_equal(e->r.heads, 0);
  assert_in_range(elapsed(e), 250, 2500);
  run_for(e, 200);
  assert_int_equal(srv_requests(e), 1);
}

/* The head and some body came, then nothing: ETIMEOUT after the bytes that did come. */
static void test_stall_timeout_mid_body(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_HEAD_SILENT, 0, NULL, -1, 0}};
  serve(e, s, 1);
  start(e, (call_t){.stall_ms = 300, .timeout_ms = 20000, .retries = 2});
  assert_true(wait_done(e, 5000));
  assert_int_equal(e->r.result, PD_XFER_ETIMEOUT);
  assert_int_equal(e->r.heads, 1);
  assert_in_range(elapsed(e), 250, 2500);
  assert_int_equal(srv_requests(e), 1);
}

/* A byte every 50 ms never stalls, but the call ends at timeout_ms. */
static void test_total_timeout(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_DRIP, 0, NULL, -1, 0}};
  serve(e, s, 1);
  start(e, (call_t){.stall_ms = 300, .timeout_ms = 700});
  assert_true(wait_done(e, 5000));
  assert_int_equal(e->r.result, PD_XFER_ETIMEOUT);
  assert_int_equal(e->r.heads, 1);
  assert_true(e->r.datas >= 3);
  assert_in_range(elapsed(e), 650, 3000);
}

/* h2: a stream refused unprocessed (REFUSED_STREAM) is sent again. */
static void test_refused_stream_retried(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_REFUSE, 0, NULL, -1, 0}, {TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 2);
  start(e, (call_t){.retries = 1});
  assert_true(wait_done(e, 5000));
  assert_int_equal(e->r.result, PD_XFER_OK);
  assert_int_equal(e->r.status, 200);
  assert_string_equal(e->r.body, OK_BODY);
  assert_int_equal(srv_requests(e), 2);
}

/* Reset after response bytes arrived: the call fails, and is not sent again. */
static void reset_not_retried(env_t *e, int act) {
  ts_step_t s[] = {{act, 0, NULL, -1, 0}, {TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 2);
  start(e, (call_t){.retries = 2});
  assert_true(wait_done(e, 5000));
  assert_int_not_equal(e->r.result, PD_XFER_OK);
  assert_int_equal(e->r.heads, 1);
  assert_int_equal(e->r.status, 200);
  run_for(e, 300);
  assert_int_equal(srv_requests(e), 1);
}

static void test_reset_stream_not_retried(void **state) {
  reset_not_retried(*state, TS_RESET_STREAM);
}

static void test_reset_conn_not_retried(void **state) {
  reset_not_retried(*state, TS_RESET_CONN);
}

/* ---- the pool's bounds (native framings: libcurl's pool is the multi handle's) -----------------
 */

static int srv_conns(env_t *e) {
  return atomic_load(&e->srv.conns);
}

/* Runs n calls one after the other, each from a fresh record; returns the server's connections. */
static int calls_in_turn(env_t *e, call_t c, int n, long pause_ms) {
  for (int i = 0; i < n; i++) {
    memset(&e->r, 0, sizeof e->r);
    start(e, c);
    assert_true(wait_done(e, 5000));
    assert_int_equal(e->r.result, PD_XFER_OK);
    assert_string_equal(e->r.body, OK_BODY);
    if (pause_ms)
      run_for(e, pause_ms);
  }
  return srv_conns(e);
}

static int both_done(env_t *e) {
  return e->r.dones > 0 && e->r2.dones > 0;
}

/* max_connections 1: a second call waits for the first one's connection (h1) or shares it as
 * a stream (h2); either way one connection. With the default slots h1 opens two. */
static void test_pool_one_slot(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 200, OK_BODY, -1, 150}};
  serve(e, s, 1);
  start(e, (call_t){.max_conns = 1});
  start_on(e, (call_t){.max_conns = 1}, &e->r2);
  assert_true(run_until(e, both_done, 5000));
  assert_int_equal(e->r.result, PD_XFER_OK);
  assert_int_equal(e->r2.result, PD_XFER_OK);
  assert_string_equal(e->r2.body, OK_BODY);
  assert_int_equal(srv_conns(e), 1);
}

/* max_conn_requests 2: the third call opens a second connection. */
static void test_pool_max_requests(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 1);
  assert_int_equal(calls_in_turn(e, (call_t){.max_reqs = 2}, 3, 0), 2);
}

/* max_conn_age_ms: a connection older than that takes no new call; a younger one does. */
static void test_pool_max_age(void **state) {
  env_t *e = *state;
  ts_step_t s[] = {{TS_RESP, 200, OK_BODY, -1, 0}};
  serve(e, s, 1);
  assert_int_equal(calls_in_turn(e, (call_t){.max_age_ms = 2000}, 2, 0), 1);
  assert_int_equal(calls_in_turn(e, (call_t){.max_age_ms = 100}, 2, 150), 3);
}

/* ---- every case on every framing ------------------------------------------------------------ */

static int FR[] = {FR_H1, FR_H2C, FR_CURL};

typedef struct named {
  const char *name;
  CMUnitTestFunction fn;
  int h2_only; /* 2: the native framings only */
} named_t;

static const named_t CASES[] = {
    {"plain call", test_plain_call, 0},
    {"no callback: cancel at once", test_cancel_at_once, 0},
    {"no callback: cancel while connecting", test_cancel_while_connecting, 0},
    {"no callback: cancel while waiting", test_cancel_while_waiting, 0},
    {"no callback: cancel in on_head", test_cancel_in_head, 0},
    {"no callback: cancel in on_data", test_cancel_in_data, 0},
    {"no callback: cancel in retry backoff", test_cancel_in_backoff, 0},
    {"no callback: cancel while paused", test_cancel_while_paused, 0},
    {"pause survives a retry", test_pause_survives_retry, 0},
    {"pause survives a retry, the 503 body late", test_pause_survives_retry_late_body, 0},
    {"connect timeout", test_connect_timeout, 0},
    {"stall timeout before the head", test_stall_timeout_before_head, 0},
    {"stall timeout mid-body", test_stall_timeout_mid_body, 0},
    {"total timeout", test_total_timeout, 0},
    {"refused stream is retried", test_refused_stream_retried, 1},
    {"reset stream after bytes: not retried", test_reset_stream_not_retried, 0},
    {"reset connection after bytes: not retried", test_reset_conn_not_retried, 0},
    {"pool: one slot, one connection", test_pool_one_slot, 2},
    {"pool: a connection retires after max_conn_requests", test_pool_max_requests, 2},
    {"pool: a connection retires past max_conn_age_ms", test_pool_max_age, 2},
};

int main(void) {
  enum { NCASES = sizeof CASES / sizeof CASES[0] };
  static struct CMUnitTest tests[3 * NCASES];
  static char names[3 * NCASES][96];
  size_t n = 0;
  for (int fr = 0; fr < 3; fr++)
    for (size_t i = 0; i < NCASES; i++) {
      if ((CASES[i].h2_only == 1 && fr != FR_H2C) || (CASES[i].h2_only == 2 && fr == FR_CURL))
        continue;
      snprintf(names[n], sizeof names[n], "%s: %s", FRAMING_NAME[fr], CASES[i].name);
      tests[n] = (struct CMUnitTest){.name = names[n],
                                     .test_func = CASES[i].fn,
                                     .setup_func = setup,
                                     .teardown_func = teardown,
                                     .initial_state = &FR[fr]};
      n++;
    }
  /* CONTRACT_FILTER="h2c: *" runs some of them (a cmocka glob on the names). */
  if (getenv("CONTRACT_FILTER"))
    cmocka_set_test_filter(getenv("CONTRACT_FILTER"));
  return _cmocka_run_group_tests("upstream contract", tests, n, NULL, NULL);
}
