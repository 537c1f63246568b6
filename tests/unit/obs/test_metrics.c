/* Unit tests for obs/metrics.c (stores, rendering) and obs/access_log.c; the feedback store
 * is test_feedback.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "obs/access_log.h"
#include "base/log.h"
#include "obs/metrics.h"

/* ---- helpers ---- */

static void assert_contains(const char *hay, const char *needle) {
  if (!hay)
    fail_msg("no text (looking for %s)", needle);
  else if (!strstr(hay, needle))
    fail_msg("missing line:\n%s\n--- in ---\n%s", needle, hay);
}

static int have_promtool(void) {
  return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* Writes text to a temp file and runs `promtool check metrics` on it (skipped without promtool). */
static void promtool_check(const char *text, size_t len) {
  if (!have_promtool()) {
    fprintf(stderr, "promtool not on PATH: skipping the promtool check\n");
    return;
  }
  char path[] = "/tmp/ponder-metrics-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
  int rc = system(cmd);
  unlink(path);
  assert_int_equal(rc, 0);
}

static char *render(pd_metrics_t *const *stores, size_t n, size_t *len) {
  char *s = pd_metrics_render(stores, n, len);
  assert_non_null(s);
  assert_int_equal(strlen(s), *len);
  return s;
}

/* ---- metrics ---- */

static const char *const families[] = {
    "ponder_requests_total counter",
    "ponder_request_duration_seconds histogram",
    "ponder_upstream_requests_total counter",
    "ponder_upstream_duration_seconds histogram",
    "ponder_tokens_total counter",
    "ponder_think_rounds_total counter",
    "ponder_feedback_total counter",
    "ponder_feedback_score summary",
    "ponder_inflight_requests gauge",
    "ponder_client_disconnects_total counter",
};

static void test_render_empty(void **state) {
  (void)state;
  pd_metrics_t *m = pd_metrics_new();
  assert_non_null(m);
  size_t len;
  char *s = render(&m, 1, &len);
  for (size_t i = 0; i < sizeof families / sizeof *families; i++) {
    char line[128], name[64];
    snprintf(line, sizeof line, "# TYPE %s\n", families[i]);
    assert_contains(s, line);
    sscanf(families[i], "%63s", name);
    snprintf(line, sizeof line, "# HELP %s ", name);
    assert_contains(s, line);
  }
  assert_contains(s, "\nponder_inflight_requests 0\n");
  assert_contains(s, "\nponder_client_disconnects_total 0\n");
  promtool_check(s, len);
  free(s);
  /* No stores at all renders the same skeleton. */
  s = render(NULL, 0, &len);
  assert_contains(s, "\nponder_inflight_requests 0\n");
  free(s);
  pd_metrics_free(m);
}

static void populate(pd_metrics_t *a, pd_metrics_t *b) {
  pd_usage_t u1 = {100, 50, 30}, u2 = {10, 5, 0};
  pd_metrics_request(a, "math", "deep", 200, 0.3, &u1, 6);
  pd_metrics_request(b, "math", "deep", 200, 700, &u2, 2);
  pd_metrics_request(b, "math", "deep", 502, 1.0, NULL, 1);
  pd_metrics_request(a, "math", "control", 200, 0.1, &u2, 0);
  pd_metrics_request(a, "a\"b\\c\nd", "default", 400, 0.01, NULL, 0);
  pd_metrics_upstream(a, "openai", "200", 0.004);
  pd_metrics_upstream(b, "openai", "200", 2.0);
  pd_metrics_upstream(b, "openai", "timeout", 600.5);
  pd_metrics_upstream(a, "vllm", "error", 0.02);
  pd_metrics_inflight(a, 3);
  pd_metrics_inflight(b, 1);
  pd_metrics_inflight(a, -1);
  pd_metrics_client_disconnect(b);
  pd_metrics_client_disconnect(b);
  pd_metrics_feedback(a, "math", "deep", 1.0);
  pd_metrics_feedback(b, "math", "deep", 0.25);
  pd_metrics_feedback(b, "gone", "old", -2);
  pd_metrics_feedback(b, "math", "deep", NAN); /* NaN is ignored */
}

static void test_render_populated(void **state) {
  (void)state;
  pd_metrics_t *st[3] = {pd_metrics_new(), pd_metrics_new(), pd_metrics_new()};
  populate(st[0], st[1]);
  size_t len;
  char *s = render(st, 3, &len);
  const char *want[] = {
      "ponder_requests_total{route=\"math\",variant=\"deep\",code=\"200\"} 2\n",
      "ponder_requests_total{route=\"math\",variant=\"deep\",code=\"502\"} 1\n",
      "ponder_requests_total{route=\"math\",variant=\"control\",code=\"200\"} 1\n",
      "ponder_requests_total{route=\"a\\\"b\\\\c\\nd\",variant=\"default\",code=\"400\"} 1\n",
      /* 0.3, 700 and 1.0: cumulative buckets */
      "ponder_request_duration_seconds_bucket{route=\"math\",variant=\"deep\",le=\"0.25\"} 0\n",
      "ponder_request_duration_seconds_bucket{route=\"math\",variant=\"deep\",le=\"0.5\"} 1\n",
      "ponder_request_duration_seconds_bucket{route=\"math\",variant=\"deep\",le=\"1\"} 2\n",
      "ponder_request_duration_seconds_bucket{route=\"math\",variant=\"deep\",le=\"600\"} 2\n",
      "ponder_request_duration_seconds_bucket{route=\"math\",variant=\"deep\",le=\"+Inf\"} 3\n",
      "ponder_request_duration_seconds_sum{route=\"math\",variant=\"deep\"} 701.3\n",
      "ponder_request_duration_seconds_count{route=\"math\",variant=\"deep\"} 3\n",
      /* a value equal to a bound falls in that bucket (le = less or equal) */
      "ponder_request_duration_seconds_bucket{route=\"math\",variant=\"control\",le=\"0.1\"} 1\n",
      "ponder_tokens_total{route=\"math\",variant=\"deep\",type=\"prompt\"} 110\n",
      "ponder_tokens_total{route=\"math\",variant=\"deep\",type=\"completion\"} 55\n",
      "ponder_tokens_total{route=\"math\",variant=\"deep\",type=\"reasoning\"} 30\n",
      "ponder_tokens_total{route=\"math\",variant=\"control\",type=\"reasoning\"} 0\n",
      "ponder_think_rounds_total{route=\"math\",variant=\"deep\"} 9\n",
      "ponder_think_rounds_total{route=\"math\",variant=\"control\"} 0\n",
      "ponder_feedback_total{route=\"math\",variant=\"deep\"} 2\n",
      "ponder_feedback_score_sum{route=\"math\",variant=\"deep\"} 1.25\n",
      "ponder_feedback_score_count{route=\"math\",variant=\"deep\"} 2\n",
      "ponder_feedback_total{route=\"gone\",variant=\"old\"} 1\n",
      "ponder_feedback_score_sum{route=\"gone\",variant=\"old\"} -2\n",
      "ponder_upstream_requests_total{upstream=\"openai\",code=\"200\"} 2\n",
      "ponder_upstream_requests_total{upstream=\"openai\",code=\"timeout\"} 1\n",
      "ponder_upstream_requests_total{upstream=\"vllm\",code=\"error\"} 1\n",
      "ponder_upstream_duration_seconds_bucket{upstream=\"openai\",le=\"0.005\"} 1\n",
      "ponder_upstream_duration_seconds_bucket{upstream=\"openai\",le=\"2.5\"} 2\n",
      "ponder_upstream_duration_seconds_bucket{upstream=\"openai\",le=\"600\"} 2\n",
      "ponder_upstream_duration_seconds_bucket{upstream=\"openai\",le=\"+Inf\"} 3\n",
      "ponder_upstream_duration_seconds_count{upstream=\"vllm\"} 1\n",
      "\nponder_inflight_requests 3\n",
      "\nponder_client_disconnects_total 2\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    assert_contains(s, want[i]);
  /* Feedback-only series have no request histogram; 200 sorts before 502. */
  assert_null(strstr(s, "ponder_request_duration_seconds_count{route=\"gone\""));
  assert_true(strstr(s, "code=\"200\"} 2") < strstr(s, "code=\"502\"} 1"));
  /* Every family's samples follow its own TYPE line (grouped). */
  assert_true(strstr(s, "# TYPE ponder_tokens_total") < strstr(s, "ponder_tokens_total{"));
  assert_true(strstr(s, "ponder_tokens_total{") < strstr(s, "# TYPE ponder_think_rounds_total"));
  promtool_check(s, len);

  /* Rendering does not change the stores: a second render is identical. */
  size_t len2;
  char *s2 = render(st, 3, &len2);
  assert_string_equal(s, s2);
  free(s2);
  free(s);
  for (int i = 0; i < 3; i++)
    pd_metrics_free(st[i]);
  pd_metrics_free(NULL);
  pd_metrics_request(NULL, "r", "v", 200, 1, NULL, 0); /* NULL store: no-op */
}

/* Many label sets (the table grows) and NULL labels. */
static void test_many_series(void **state) {
  (void)state;
  pd_metrics_t *m = pd_metrics_new();
  char route[32];
  for (int rep = 0; rep < 3; rep++) {
    for (int i = 0; i < 500; i++) {
      snprintf(route, sizeof route, "r%d", i);
      pd_metrics_request(m, route, "v", 200, 1, NULL, 1);
    }
  }
  pd_metrics_request(m, NULL, NULL, 404, 0.001, NULL, 0);
  size_t len;
  char *s = render(&m, 1, &len);
  assert_contains(s, "ponder_requests_total{route=\"r0\",variant=\"v\",code=\"200\"} 3\n");
  assert_contains(s, "ponder_requests_total{route=\"r499\",variant=\"v\",code=\"200\"} 3\n");
  assert_contains(s, "ponder_think_rounds_total{route=\"r250\",variant=\"v\"} 3\n");
  assert_contains(s, "ponder_requests_total{route=\"\",variant=\"\",code=\"404\"} 1\n");
  promtool_check(s, len);
  free(s);
  pd_metrics_free(m);
}

typedef struct writer_arg {
  pd_metrics_t *m;
  int n;
} writer_arg_t;

static void *writer(void *p) {
  writer_arg_t *a = p;
  pd_usage_t u = {1, 2, 3};
  for (int i = 0; i < a->n; i++) {
    pd_metrics_inflight(a->m, 1);
    pd_metrics_request(a->m, "r", i % 2 ? "a" : "b", 200, 0.5, &u, 1);
    pd_metrics_upstream(a->m, "up", "200", 0.5);
    pd_metrics_inflight(a->m, -1);
  }
  return NULL;
}

/* Workers write their own stores while another thread renders all of them. */
static void test_concurrent(void **state) {
  (void)state;
  enum { NW = 4, N = 20000 };
  pd_metrics_t *st[NW];
  pthread_t th[NW];
  writer_arg_t args[NW];
  for (int i = 0; i < NW; i++) {
    st[i] = pd_metrics_new();
    args[i] = (writer_arg_t){st[i], N};
    assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
  }
  for (int i = 0; i < 20; i++) {
    size_t len;
    free(render(st, NW, &len));
  }
  for (int i = 0; i < NW; i++)
    pthread_join(th[i], NULL);
  size_t len;
  char *s = render(st, NW, &len);
  assert_contains(s, "ponder_requests_total{route=\"r\",variant=\"a\",code=\"200\"} 40000\n");
  assert_contains(s, "ponder_tokens_total{route=\"r\",variant=\"b\",type=\"reasoning\"} 120000\n");
  assert_contains(s, "ponder_upstream_requests_total{upstream=\"up\",code=\"200\"} 80000\n");
  assert_contains(s, "\nponder_inflight_requests 0\n");
  free(s);
  for (int i = 0; i < NW; i++)
    pd_metrics_free(st[i]);
}

/* ---- access log ---- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void test_access_log_lines(void **state) {
  (void)state;
  char path[] = "/tmp/ponder-access-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  pd_access_log_t *l = pd_access_log_open(path);
  assert_non_null(l);
  pd_access_entry_t e = {.request_id = "req-\"1\"",
                         .method = "POST",
                         .path = "/math/v1/chat/completions",
                         .route = "math",
                         .variant = "deep",
                         .rounds = 6,
                         .upstream_calls = 7,
                         .status = 200,
                         .stream = 1,
                         .duration_ms = 1234.5678,
                         .prompt_tokens = 10,
                         .completion_tokens = 20,
                         .reasoning_tokens = 15};
  assert_int_equal(pd_access_log_write(l, &e), 0);
  pd_access_entry_t e2 = {.request_id = "r2",
                          .method = "GET",
                          .path = "/x\n\t\x01\\\xff\xc3\xa9",
                          .route = NULL,
                          .variant = NULL,
                          .status = 404};
  assert_int_equal(pd_access_log_write(l, &e2), 0);
  pd_access_log_close(l);

  char *text = slurp(path);
  unlink(path);
  char *nl = strchr(text, '\n');
  assert_non_null(nl);
  assert_non_null(strchr(nl + 1, '\n'));
  assert_int_equal(strchr(nl + 1, '\n')[1], '\0');
  *nl = '\0';
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  if (!j)
    fail_msg("line 1 is not JSON: %s: %s", err.text, text);
  const char *keys[] = {"ts",
                        "request_id",
                        "method",
                        "path",
                        "route",
                        "variant",
                        "rounds",
                        "upstream_calls",
                        "status",
                        "duration_ms",
                        "stream",
                        "prompt_tokens",
                        "completion_tokens",
                        "reasoning_tokens"};
  assert_int_equal(json_object_size(j), 14);
  for (size_t i = 0; i < 14; i++)
    assert_non_null(json_object_get(j, keys[i]));
  /* Keys in the documented order. */
  assert_true(strstr(text, "\"ts\"") < strstr(text, "\"request_id\""));
  assert_true(strstr(text, "\"completion_tokens\"") < strstr(text, "\"reasoning_tokens\""));
  const char *ts = json_string_value(json_object_get(j, "ts"));
  assert_non_null(ts);
  assert_int_equal(strlen(ts), 24); /* 2025-01-02T03:04:05.678Z */
  assert_int_equal(ts[10], 'T');
  assert_int_equal(ts[19], '.');
  assert_int_equal(ts[23], 'Z');
  assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-\"1\"");
  assert_string_equal(json_string_value(json_object_get(j, "route")), "math");
  assert_int_equal(json_integer_value(json_object_get(j, "rounds")), 6);
  assert_int_equal(json_integer_value(json_object_get(j, "upstream_calls")), 7);
  assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
  assert_true(json_is_true(json_object_get(j, "stream")));
  assert_true(json_real_value(json_object_get(j, "duration_ms")) > 1234.567 &&
              json_real_value(json_object_get(j, "duration_ms")) < 1234.569);
  assert_int_equal(json_integer_value(json_object_get(j, "reasoning_tokens")), 15);
  json_decref(j);

  j = json_loads(nl + 1, 0, &err);
  if (!j)
    fail_msg("line 2 is not JSON: %s: %s", err.text, nl + 1);
  assert_true(json_is_null(json_object_get(j, "route")));
  assert_true(json_is_null(json_object_get(j, "variant")));
  assert_true(json_is_false(json_object_get(j, "stream")));
  /* Control characters escaped, an invalid byte replaced, valid UTF-8 kept. */
  assert_string_equal(json_string_value(json_object_get(j, "path")),
                      "/x\n\t\x01\\\xef\xbf\xbd\xc3\xa9");
  json_decref(j);
  free(text);
}

static void test_access_log_targets(void **state) {
  (void)state;
  pd_access_entry_t e = {.request_id = "r", .method = "GET", .path = "/", .status = 200};
  pd_access_log_t *off = pd_access_log_open("off");
  assert_non_null(off);
  assert_int_equal(pd_access_log_write(off, &e), 0);
  pd_access_log_close(off);
  pd_access_log_t *err = pd_access_log_open("-");
  assert_non_null(err);
  pd_access_log_close(err); /* must not close stderr */
  assert_true(fcntl(STDERR_FILENO, F_GETFD) >= 0);
  errno = 0;
  assert_null(pd_access_log_open("/nonexistent-dir/ponder/access.log"));
  assert_int_equal(errno, ENOENT);
  assert_int_equal(pd_access_log_write(NULL, &e), 0);
  pd_access_log_close(NULL);

  /* pd_access_log_format: snprintf-like length, always terminated. */
  char big[512], small[16];
  size_t n = pd_access_log_format(&e, big, sizeof big);
  assert_true(n < sizeof big);
  assert_int_equal(strlen(big), n);
  assert_int_equal(big[n - 1], '\n');
  assert_int_equal(pd_access_log_format(&e, small, sizeof small), n);
  assert_int_equal(strlen(small), sizeof small - 1);
}

typedef struct log_arg {
  pd_access_log_t *l;
  int self;
} log_arg_t;

static void *log_worker(void *p) {
  log_arg_t *a = p;
  char rid[32], longpath[3000];
  memset(longpath, 'p', sizeof longpath - 1); /* > the stack buffer: the heap path */
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = '\0';
  for (int i = 0; i < 500; i++) {
    snprintf(rid, sizeof rid, "w%d-%d", a->self, i);
    pd_access_entry_t e = {.request_id = rid,
                           .method = "POST",
                           .path = i % 5 ? "/v1/chat/completions" : longpath,
                           .route = "r",
                           .variant = "v",
                           .status = 200,
                           .duration_ms = i};
    pd_access_log_write(a->l, &e);
  }
  return NULL;
}

/* Lines from concurrent workers never interleave. */
static void test_access_log_concurrent(void **state) {
  (void)state;
  char path[] = "/tmp/ponder-access-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  pd_access_log_t *l = pd_access_log_open(path);
  pthread_t th[4];
  log_arg_t args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (log_arg_t){l, i};
    pthread_create(&th[i], NULL, log_worker, &args[i]);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  pd_access_log_close(l);
  char *text = slurp(path);
  unlink(path);
  int lines = 0;
  for (char *p = text, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
    *nl = '\0';
    json_t *j = json_loads(p, 0, NULL);
    if (!j)
      fail_msg("interleaved or invalid line %d", lines);
    json_decref(j);
    lines++;
  }
  assert_int_equal(lines, 2000);
  free(text);
}

/* ---- the log writer (last: it leaves the process's log stopped) ---- */

static void test_log_queue_never_blocks(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(pd_log_start(), 0);
  pd_metrics_t *m = pd_metrics_new();
  /* Nobody reads the pipe: the writer thread blocks on it, the producers never do. */
  char line[1000];
  memset(line, 'x', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  uint64_t d0 = pd_log_dropped();
  int queued = 0, dropped = 0;
  for (int i = 0; i < 3000; i++) {
    if (pd_log_enqueue(fds[1], line, sizeof line) == 0)
      queued++;
    else
      dropped++;
  }
  assert_true(dropped > 0);
  assert_true(queued > 1000); /* the queue's megabyte, plus the pipe */
  assert_true(pd_log_dropped() - d0 == (uint64_t)dropped);
  size_t len = 0;
  pd_metrics_t *st[1] = {m};
  char *text = pd_metrics_render(st, 1, &len);
  char want[64];
  snprintf(want, sizeof want, "ponder_log_dropped_total %llu\n",
           (unsigned long long)pd_log_dropped());
  assert_non_null(strstr(text, want));
  free(text);
  /* A stalled descriptor: stop gives up after its timeout and reports it. */
  assert_int_equal(pd_log_stop(100), -1);
  assert_int_equal(pd_log_stop(100), -1);                          /* idempotent */
  assert_int_equal(pd_log_enqueue(fds[1], line, sizeof line), -1); /* stopped: dropped */
  /* Reading the pipe lets the left-behind writer finish; every line it wrote is whole. */
  int fl = fcntl(fds[0], F_GETFL);
  fcntl(fds[0], F_SETFL, fl | O_NONBLOCK);
  size_t total = 0;
  char buf[65536];
  for (int tries = 0; tries < 200 && total < (size_t)queued * sizeof line; tries++) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0)
      total += (size_t)n;
    else
      usleep(10000);
  }
  assert_int_equal(total, (size_t)queued * sizeof line);
  close(fds[0]);
  close(fds[1]);
  pd_metrics_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_empty),          cmocka_unit_test(test_render_populated),
      cmocka_unit_test(test_many_series),           cmocka_unit_test(test_concurrent),
      cmocka_unit_test(test_access_log_lines),      cmocka_unit_test(test_access_log_targets),
      cmocka_unit_test(test_access_log_concurrent), cmocka_unit_test(test_log_queue_never_blocks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
