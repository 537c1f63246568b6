/* Unit tests for base/buf.c: append and consume, formatted appends (short and long), reuse
 * without growth, JSON string escaping, steal, decimal formatting, pd_buf_str and NULL appends. */
#include <limits.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/buf.h"

static void test_append_and_consume(void **state) {
  (void)state;
  pd_buf_t b;
  pd_buf_init(&b);
  assert_int_equal(pd_buf_appends(&b, "hello "), 0);
  assert_int_equal(pd_buf_appendf(&b, "%s %d", "world", 42), 0);
  assert_string_equal(pd_buf_data(&b), "hello world 42");
  pd_buf_consume(&b, 6);
  assert_int_equal(b.len, 8);
  assert_memory_equal(pd_buf_data(&b), "world 42", 8);
  pd_buf_consume(&b, 100);
  assert_int_equal(b.len, 0);
  pd_buf_free(&b);
}

static void test_long_appendf(void **state) {
  (void)state;
  pd_buf_t b;
  pd_buf_init(&b);
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(pd_buf_appendf(&b, "<%s>", big), 0);
  assert_int_equal(b.len, 1001);
  assert_int_equal(pd_buf_data(&b)[0], '<');
  assert_int_equal(pd_buf_data(&b)[1000], '>');
  pd_buf_free(&b);
}

static void test_reuse_does_not_grow(void **state) {
  (void)state;
  /* Filling and draining a buffer repeatedly reuses the consumed space. */
  pd_buf_t b;
  pd_buf_init(&b);
  for (int i = 0; i < 10000; i++) {
    pd_buf_append(&b, "0123456789", 10);
    pd_buf_consume(&b, 10);
  }
  assert_true(b.cap <= 256);
  pd_buf_free(&b);
}

static void test_json_escape(void **state) {
  (void)state;
  pd_buf_t b;
  pd_buf_init(&b);
  const char s[] = "a\"b\\c\nd\te\x01";
  pd_buf_append_json_str(&b, s, sizeof s - 1);
  assert_string_equal(pd_buf_data(&b), "\"a\\\"b\\\\c\\nd\\te\\u0001\"");
  pd_buf_free(&b);
}

static void test_steal(void **state) {
  (void)state;
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appends(&b, "xxabc");
  pd_buf_consume(&b, 2);
  size_t len;
  char *p = pd_buf_steal(&b, &len);
  assert_int_equal(len, 3);
  assert_string_equal(p, "abc");
  assert_null(b.base);
  free(p);
}

static void test_fmt_long(void **state) {
  (void)state;
  char out[32];
  static const struct {
    long v;
    const char *s;
  } cases[] = {{0, "0"},
               {7, "7"},
               {200, "200"},
               {-42, "-42"},
               {1234567890L, "1234567890"},
               {LONG_MAX, "9223372036854775807"},
               {LONG_MIN, "-9223372036854775808"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t n = pd_buf_fmt_long(out, cases[i].v);
    out[n] = '\0';
    assert_string_equal(out, cases[i].s);
  }
  /* Against printf at every digit-count boundary, both signs, and a spread in between. */
  char want[32];
  /* p runs over 10^0 .. 10^18; the step is skipped after the last so it cannot overflow. */
  for (long p = 1, k = 0; k < 19; k++, p = k < 19 ? p * 10 : p) {
    long vs[] = {p - 1, p, p + 1, -p + 1, -p, -p - 1, p * 7 / 3};
    for (size_t j = 0; j < sizeof vs / sizeof vs[0]; j++) {
      size_t n = pd_buf_fmt_long(out, vs[j]);
      out[n] = '\0';
      snprintf(want, sizeof want, "%ld", vs[j]);
      assert_string_equal(out, want);
    }
  }
  pd_buf_t b;
  pd_buf_init(&b);
  assert_int_equal(pd_buf_append_long(&b, -5), 0);
  assert_int_equal(pd_buf_append_long(&b, 31), 0);
  assert_string_equal(pd_buf_data(&b), "-531");
  pd_buf_free(&b);
}

/* pd_buf_str is "" before any append and the live data (after a consume) once there is some;
 * pd_buf_appends(NULL) appends nothing but leaves a NUL-terminated, allocated buffer. */
static void test_str_and_null_appends(void **state) {
  (void)state;
  pd_buf_t b;
  pd_buf_init(&b);
  assert_string_equal(pd_buf_str(&b), "");
  assert_int_equal(pd_buf_appends(&b, NULL), 0);
  assert_int_equal(b.len, 0);
  assert_non_null(b.base);
  assert_string_equal(pd_buf_str(&b), "");
  assert_int_equal(pd_buf_appends(&b, "abc"), 0);
  assert_int_equal(pd_buf_appends(&b, NULL), 0);
  assert_string_equal(pd_buf_str(&b), "abc");
  pd_buf_consume(&b, 1);
  assert_string_equal(pd_buf_str(&b), "bc");
  pd_buf_free(&b);
  assert_string_equal(pd_buf_str(&b), "");
}

static void test_fmt_hex(void **state) {
  (void)state;
  const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
  char out[11];
  memset(out, '#', sizeof out);
  pd_buf_fmt_hex(out, in, sizeof in);
  assert_memory_equal(out, "000fa5ff10", 10);
  assert_int_equal(out[10], '#'); /* no NUL, nothing past 2n */
}

/* base/array.h: doubling from `first`, the elements kept, and a size that would overflow
 * refused with the array and its capacity left as they were. */
static void test_array_grow(void **state) {
  (void)state;
  int *a = NULL;
  size_t n = 0, cap = 0;
  for (int i = 0; i < 100; i++) {
    if (n == cap) {
      size_t before = cap;
      int *g = pd_array_grow(a, &cap, sizeof *a, 4);
      assert_non_null(g);
      assert_int_equal(cap, before ? before * 2 : 4);
      a = g;
    }
    a[n++] = i;
  }
  for (int i = 0; i < 100; i++)
    assert_int_equal(a[i], i);
  assert_int_equal(cap, 128);
  size_t huge = SIZE_MAX / 2 + 1;
  assert_null(pd_array_grow(a, &huge, sizeof *a, 4)); /* doubling wraps */
  assert_int_equal(huge, SIZE_MAX / 2 + 1);
  size_t big = PTRDIFF_MAX / 8 + 1;
  assert_null(pd_array_grow(a, &big, sizeof *a, 4)); /* over PTRDIFF_MAX bytes */
  assert_int_equal(big, PTRDIFF_MAX / 8 + 1);
  assert_int_equal(a[99], 99); /* still the caller's, unchanged */
  free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_append_and_consume),
                                     cmocka_unit_test(test_long_appendf),
                                     cmocka_unit_test(test_reuse_does_not_grow),
                                     cmocka_unit_test(test_json_escape),
                                     cmocka_unit_test(test_steal),
                                     cmocka_unit_test(test_fmt_long),
                                     cmocka_unit_test(test_str_and_null_appends),
                                     cmocka_unit_test(test_array_grow),
                                     cmocka_unit_test(test_fmt_hex)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
