/* Unit tests for eval/answer.c: SPEC section 11's final-answer rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/answer.h"
#include "eval/eval.h"

static void check(const char *text, const char *want) {
  char *got = pd_eval_final_answer(text);
  assert_non_null(got);
  if (strcmp(got, want) != 0)
    fail_msg("final answer of \"%s\": got \"%s\", want \"%s\"", text ? text : "(null)", got, want);
  free(got);
}

static void test_boxed(void **state) {
  (void)state;
  check("so the answer is \\boxed{42}.", "42");
  /* The last one wins; nested braces are kept whole. */
  check("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}");
  check("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}");
  check("\\boxed {7}", "7");
  /* Boxed beats "Answer:" and later numbers. */
  check("\\boxed{5}\nAnswer: 6\nchecked 7 times", "5");
  /* Nested boxed: the one that starts last. */
  check("\\boxed{a \\boxed{b}}", "b");
  /* Unbalanced: not a boxed answer; the last number instead. */
  check("\\boxed{12 and more", "12");
  /* Inside the box the same cleaning: $, period, separators. */
  check("\\boxed{$1,234,567$.}", "1234567");
}

static void test_answer_line(void **state) {
  (void)state;
  check("Work...\nAnswer: 17\nThanks", "17");
  check("Final Answer: The final answer is $23$.", "The final answer is $23$");
  check("Final Answer: $23$.", "23");
  check("answer: first\nmore\n**Answer:** x = 3", "x = 3");
  check("Answer:\n  204\n", "204");
  /* An empty "Answer:" falls through to the last number. */
  check("we get 12, so Answer:", "12");
}

static void test_numbers(void **state) {
  (void)state;
  check("there are 1,000,000 ways, or 2,024.", "2024");
  check("total 12,345 apples", "12345");
  check("x = -3.5 is the root.", "-3.5");
  check("from 3-5 we get", "5");
  check("the pair (1,23)", "23");
  check("digits 1,2345", "2345");
  check("1,234.5", "1234.5");
}

static void test_none(void **state) {
  (void)state;
  check("", "");
  check(NULL, "");
  check("I do not know.", "");
  check("Answer: .", "");
}

static void test_last_number_exp(void **state) {
  (void)state;
  size_t b, n;
  const char *s = "score 7, final 1.5e2 ok";
  assert_int_equal(pd_answer_last_number(s, strlen(s), 1, &b, &n), 1);
  assert_int_equal(b, 15);
  assert_int_equal(n, 5);
  /* Without exponents "e2" ends the number and its "2" is the last one. */
  assert_int_equal(pd_answer_last_number(s, strlen(s), 0, &b, &n), 1);
  assert_int_equal(b, 19);
  assert_int_equal(n, 1);
  assert_int_equal(pd_answer_last_number("none", 4, 1, &b, &n), 0);
}

static void test_long_inputs(void **state) {
  (void)state;
  /* Deep nesting and many opens stay linear and bounded. */
  size_t n = 200000;
  char *s = malloc(n + 1);
  for (size_t i = 0; i < n; i++)
    s[i] = "\\boxed{"[i % 7];
  s[n] = 0;
  check(s, "");
  memset(s, '{', n);
  memcpy(s + n - 9, "\\boxed{9}", 9);
  check(s, "9");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_boxed),           cmocka_unit_test(test_answer_line),
      cmocka_unit_test(test_numbers),         cmocka_unit_test(test_none),
      cmocka_unit_test(test_last_number_exp), cmocka_unit_test(test_long_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
