/* Unit tests for eval/expr.c: calculate_output's grammar, precedence, errors and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/expr.h"

static const char *const names[] = {"a", "b", "c_2"};
static const double values[] = {0.5, 0.25, 4};

static double eval(const char *s) {
  char *err = NULL;
  pd_expr_t *e = pd_expr_parse(s, strlen(s), names, 3, &err);
  if (!e)
    fail_msg("\"%s\": %s", s, err);
  double v = NAN;
  assert_int_equal(pd_expr_eval(e, values, &v), 0);
  pd_expr_free(e);
  return v;
}

static void error(const char *s, const char *want) {
  char *err = NULL;
  pd_expr_t *e = pd_expr_parse(s, strlen(s), names, 3, &err);
  assert_null(e);
  assert_non_null(err);
  if (!strstr(err, want))
    fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, err, want);
  free(err);
}

static void test_values(void **state) {
  (void)state;
  /* Expected values by hand (a = 0.5, b = 0.25, c_2 = 4). */
  assert_true(eval("1") == 1);
  assert_true(eval("a") == 0.5);
  assert_true(eval("0.5 * a + 0.5 * b") == 0.375);
  assert_true(eval("1 + 2 * 3") == 7);
  assert_true(eval("(1 + 2) * 3") == 9);
  assert_true(eval("8 / 2 / 2") == 2); /* left to right */
  assert_true(eval("8 - 2 - 1") == 5);
  assert_true(eval("-a + --b") == -0.25);
  assert_true(eval("+3") == 3);
  assert_true(eval("min(a, b, c_2)") == 0.25);
  assert_true(eval("max(a, b, c_2) / c_2") == 1);
  assert_true(eval("min(max(a, b), 1) * 2") == 1);
  assert_true(eval("max(a)") == 0.5);
  assert_true(eval(" 1.5e1 + .5 ") == 15.5);
  assert_true(eval("c_2*(a-b)") == 1);
}

static void test_errors(void **state) {
  (void)state;
  error("", "at offset 0: expected a name");
  error("a +", "at offset 3: expected a name");
  error("d", "at offset 0: unknown name 'd'");
  error("a b", "at offset 2: unexpected character");
  error("(a", "expected ')'");
  error("sqrt(a)", "unknown function 'sqrt'");
  error("min()", "expected a name");
  error("min(a b)", "expected ',' or ')'");
  error("1e", "an exponent needs digits");
  error(".", "a number needs a digit");
  error("a ^ 2", "unexpected character");
  error("1e999", "out of range");
}

static void test_bounds(void **state) {
  (void)state;
  char s[PD_EXPR_MAX_LEN + 2];
  /* Nesting beyond the bound is an error, not a deep recursion. */
  memset(s, '(', 1000);
  s[1000] = 0;
  error(s, "nested too deeply");
  memset(s, '-', 1000);
  strcpy(s + 1000, "a");
  error(s, "nested too deeply");
  memset(s, ' ', sizeof s - 1);
  s[sizeof s - 1] = 0;
  error(s, "longer than");
  /* A long flat sum is fine (the stack stays small). */
  size_t n = 0;
  for (int i = 0; i < 500; i++)
    n += (size_t)sprintf(s + n, "a+");
  strcpy(s + n, "a");
  assert_true(eval(s) == 250.5);
  /* Many arguments: bounded. */
  n = (size_t)sprintf(s, "max(");
  for (int i = 0; i < PD_EXPR_MAX_ARGS + 1; i++)
    n += (size_t)sprintf(s + n, "a,");
  strcpy(s + n, "a)");
  error(s, "too many arguments");
  /* Division by zero: not finite. */
  char *err = NULL;
  pd_expr_t *e = pd_expr_parse("a / (b - b)", 11, names, 3, &err);
  double v;
  assert_int_equal(pd_expr_eval(e, values, &v), -1);
  pd_expr_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
