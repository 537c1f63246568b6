/* Test support shared by the client-API unit tests (tests/unit/api/test_chat.c and
 * test_responses.c): JSON fixtures that fail the test when they do not parse, comparisons of
 * buffers and trees, and the response and outputs an API's writers are called with. Static
 * inline functions (a test need not use them all): include it after cmocka.h. */
#ifndef PD_TEST_API_TEST_H
#define PD_TEST_API_TEST_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

/* The JSON text as a tree (the caller decrefs); fails the test when it is not JSON. */
static inline json_t *J(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j)
    fail_msg("bad test JSON: %s (%s)", e.text, text);
  return j;
}

static inline void assert_buf_equal(const pd_buf_t *a, const pd_buf_t *b) {
  assert_int_equal(a->len, b->len);
  assert_memory_equal(pd_buf_data(a), pd_buf_data(b), a->len);
}

/* got equals the JSON text want (keys in any order); both are printed sorted when not. */
static inline void assert_json_eq(const json_t *got, const char *want) {
  json_t *w = J(want);
  if (!json_equal((json_t *)got, w)) {
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *x = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
    fail_msg("got  %s\nwant %s", g, x);
  }
  json_decref(w);
}

/* A response as the exchange names it before the first writer runs: id, created 1700000000,
 * model "client-model", the display, n choices, include_usage; the rest zero. */
static inline pd_api_resp_t api_resp(const char *id, pd_reasoning_t mode, int n,
                                     int include_usage) {
  pd_api_resp_t r;
  memset(&r, 0, sizeof r);
  snprintf(r.id, sizeof r.id, "%s", id);
  r.created = 1700000000;
  r.model = "client-model";
  r.reasoning = mode;
  r.n = n;
  r.include_usage = include_usage;
  return r;
}

/* An engine output of kind with text (NULL: none). */
static inline pd_out_t api_out(pd_out_kind_t kind, const char *text) {
  pd_out_t o = {kind, text, text ? strlen(text) : 0, NULL};
  return o;
}

#endif
