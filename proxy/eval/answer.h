/* The final-answer rules' number scanner, shared by answer.c's last-number rule and the
 * score_model grader's fallback (a judge reply that is not {"result": ...}). Pure. */
#ifndef PD_ANSWER_H
#define PD_ANSWER_H

#include <stddef.h>

/* Finds the last number in s[0..n): an optional '-', digits with optional thousands
 * separators (a ',' followed by exactly three digits), an optional fraction, and an optional
 * exponent when with_exp. Sets *start and *len (the number's bytes as written) and returns 1,
 * or returns 0 when s holds no digit. */
int pd_answer_last_number(const char *s, size_t n, int with_exp, size_t *start, size_t *len);

#endif
