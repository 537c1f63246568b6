/* SPEC section 11's final answer of an answer text ({{sample.final_answer}}): the content of
 * the last \boxed{...}, else the text after the last "Answer:" (which "Final Answer:" ends
 * with), else the last number; then trimmed, with surrounding `$`, a trailing period and
 * thousands separators removed. Pure: owns nothing but the strings it returns. Every scan is
 * one linear pass (answer texts are an upstream's, so semi-trusted and of any length). */
#include "eval/answer.h"
#include "eval/eval.h"

#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A thousands separator at s[i]: ',' after a digit, then exactly three digits. */
static int is_separator(const char *s, size_t n, size_t i) {
  if (s[i] != ',' || i == 0 || !is_digit(s[i - 1]) || i + 3 >= n)
    return 0;
  if (!is_digit(s[i + 1]) || !is_digit(s[i + 2]) || !is_digit(s[i + 3]))
    return 0;
  return i + 4 == n || !is_digit(s[i + 4]);
}

/* The number starting at s[i] (a digit): its end. */
static size_t number_end(const char *s, size_t n, size_t i, int with_exp) {
  while (i < n && is_digit(s[i]))
    i++;
  while (i < n && is_separator(s, n, i)) {
    i += 4;
  }
  if (i + 1 < n && s[i] == '.' && is_digit(s[i + 1])) {
    i++;
    while (i < n && is_digit(s[i]))
      i++;
  }
  if (with_exp && i < n && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < n && (s[j] == '+' || s[j] == '-'))
      j++;
    if (j < n && is_digit(s[j])) {
      while (j < n && is_digit(s[j]))
        j++;
      i = j;
    }
  }
  return i;
}

int pd_answer_last_number(const char *s, size_t n, int with_exp, size_t *start, size_t *len) {
  int found = 0;
  size_t i = 0;
  while (i < n) {
    if (!is_digit(s[i])) {
      i++;
      continue;
    }
    size_t b = i;
    /* A minus sign belongs to the number unless it is a binary minus ("3-5", "x-1"). */
    if (b > 0 && s[b - 1] == '-' && (b == 1 || (!is_alnum(s[b - 2]) && s[b - 2] != ')')))
      b--;
    i = number_end(s, n, i, with_exp);
    *start = b;
    *len = i - b;
    found = 1;
  }
  return found;
}

/* The content of the last \boxed{...} (by where it starts), braces balanced, "\{" and "\}"
 * taken as literal braces. One pass with a stack of the open braces; nesting deeper than
 * MAX_DEPTH is counted but not remembered (such a brace cannot open a \boxed). */
#define MAX_DEPTH 256
static int last_boxed(const char *s, size_t n, size_t *start, size_t *len) {
  size_t open[MAX_DEPTH]; /* content start of a \boxed{, or (size_t)-1 for another brace */
  size_t depth = 0;
  int found = 0;
  size_t best = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\') {
      if (i + 1 < n && (s[i + 1] == '{' || s[i + 1] == '}')) {
        i++;
        continue;
      }
      if (n - i >= 6 && memcmp(s + i, "\\boxed", 6) == 0) {
        size_t j = i + 6;
        while (j < n && s[j] == ' ')
          j++;
        if (j < n && s[j] == '{') {
          if (depth < MAX_DEPTH)
            open[depth] = j + 1;
          depth++;
          i = j;
        }
      }
      continue;
    }
    if (c == '{') {
      if (depth < MAX_DEPTH)
        open[depth] = (size_t)-1;
      depth++;
    } else if (c == '}' && depth > 0) {
      depth--;
      if (depth < MAX_DEPTH && open[depth] != (size_t)-1 && (!found || open[depth] > best)) {
        found = 1;
        best = open[depth];
        *start = best;
        *len = i - best;
      }
    }
  }
  return found;
}

/* The rest of the line after the last "answer:" (case-insensitive; "**Answer:**" and
 * "Answer**:" too), or 0 when there is none or it is empty. */
static int after_answer(const char *s, size_t n, size_t *start, size_t *len) {
  static const char key[] = "answer";
  int found = 0;
  for (size_t i = 0; i + 6 <= n; i++) {
    size_t k = 0;
    while (k < 6 && lower(s[i + k]) == key[k])
      k++;
    if (k < 6)
      continue;
    size_t j = i + 6;
    while (j < n && s[j] == '*')
      j++;
    if (j >= n || s[j] != ':')
      continue;
    j++;
    while (j < n && (s[j] == '*' || s[j] == ' ' || s[j] == '\t'))
      j++;
    /* "Answer:\n42": the answer on the next line. */
    if (j < n && (s[j] == '\n' || s[j] == '\r')) {
      while (j < n && is_space(s[j]))
        j++;
    }
    size_t e = j;
    while (e < n && s[e] != '\n' && s[e] != '\r')
      e++;
    while (e > j && (is_space(s[e - 1]) || s[e - 1] == '*'))
      e--;
    if (e > j) {
      *start = j;
      *len = e - j;
      found = 1;
    }
    i = j > i ? j - 1 : i;
  }
  return found;
}

char *pd_eval_final_answer(const char *text) {
  size_t n = text ? strlen(text) : 0;
  size_t b = 0, len = 0;
  if (!n || !(last_boxed(text, n, &b, &len) || after_answer(text, n, &b, &len) ||
              pd_answer_last_number(text, n, 0, &b, &len)))
    return strdup("");
  const char *p = text + b;
  /* Trim, strip a surrounding `$` pair or a trailing period, until nothing changes. */
  for (;;) {
    while (len && is_space(p[0]))
      p++, len--;
    while (len && is_space(p[len - 1]))
      len--;
    if (len >= 2 && p[0] == '$' && p[len - 1] == '$') {
      p++;
      len -= 2;
    } else if (len && p[len - 1] == '.') {
      len--;
    } else {
      break;
    }
  }
  pd_buf_t out = {0};
  if (!pd_buf_reserve(&out, len))
    return NULL;
  for (size_t i = 0; i < len; i++) {
    if (is_separator(p, len, i))
      continue;
    pd_buf_append(&out, p + i, 1);
  }
  return pd_buf_steal(&out, NULL);
}
