/* Unit tests for core/sse.c: events split across feeds, multi-line data, the event size bound
 * and a callback that stops the parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/sse.h"

typedef struct {
  char events[16][64];
  int n;
} sink_t;

static int collect(void *ud, const char *data, size_t len) {
  sink_t *s = ud;
  if (s->n < 16) {
    snprintf(s->events[s->n], sizeof s->events[0], "%.*s", (int)len, data);
    s->n++;
  }
  return 0;
}

static void test_events_across_feeds(void **state) {
  (void)state;
  pd_sse_t p;
  pd_sse_init(&p, 1024);
  sink_t s = {.n = 0};
  const char *stream =
      "data: {\"a\":1}\n\n: comment\n\ndata: {\"b\"\r\n\r\nevent: x\ndata: [DONE]\n\n";
  /* Byte by byte: every split point must give the same events. */
  for (size_t i = 0; i < strlen(stream); i++)
    assert_int_equal(pd_sse_feed(&p, stream + i, 1, collect, &s), 0);
  assert_int_equal(s.n, 3);
  assert_string_equal(s.events[0], "{\"a\":1}");
  assert_string_equal(s.events[1], "{\"b\"");
  assert_string_equal(s.events[2], "[DONE]");
  pd_sse_free(&p);
}

static void test_multiline_data(void **state) {
  (void)state;
  pd_sse_t p;
  pd_sse_init(&p, 1024);
  sink_t s = {.n = 0};
  const char *stream = "data:line1\ndata: line2\n\n";
  assert_int_equal(pd_sse_feed(&p, stream, strlen(stream), collect, &s), 0);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.events[0], "line1\nline2");
  pd_sse_free(&p);
}

static void test_event_too_large(void **state) {
  (void)state;
  pd_sse_t p;
  pd_sse_init(&p, 16);
  sink_t s = {.n = 0};
  const char *stream = "data: 0123456789012345678901234567890\n\n";
  assert_int_equal(pd_sse_feed(&p, stream, strlen(stream), collect, &s), -1);
  pd_sse_free(&p);
  /* An unterminated line is bounded too. */
  pd_sse_init(&p, 16);
  assert_int_equal(pd_sse_feed(&p, "data: 0123456789", 16, collect, &s), 0);
  assert_int_equal(pd_sse_feed(&p, "0123456789", 10, collect, &s), -1);
  pd_sse_free(&p);
}

static int stop_at_first(void *ud, const char *data, size_t len) {
  (void)data;
  (void)len;
  (*(int *)ud)++;
  return 7;
}

static void test_callback_stops(void **state) {
  (void)state;
  pd_sse_t p;
  pd_sse_init(&p, 1024);
  int calls = 0;
  const char *stream = "data: a\n\ndata: b\n\n";
  assert_int_equal(pd_sse_feed(&p, stream, strlen(stream), stop_at_first, &calls), 7);
  assert_int_equal(calls, 1);
  pd_sse_free(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_events_across_feeds), cmocka_unit_test(test_multiline_data),
      cmocka_unit_test(test_event_too_large), cmocka_unit_test(test_callback_stops)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
