/* The `multi` grader's calculate_output expressions: a recursive-descent parser (depth bounded
 * by PD_EXPR_MAX_DEPTH) that emits a postfix program, and an evaluator that runs it on a stack
 * whose size the parser computed. Grammar:
 *   expr    = term (("+" | "-") term)*
 *   term    = unary (("*" | "/") unary)*
 *   unary   = ("-" | "+") unary | primary
 *   primary = NUMBER | NAME | ("min" | "max") "(" expr ("," expr)* ")" | "(" expr ")"
 * NUMBER is digits with an optional fraction and exponent; NAME is [A-Za-z_][A-Za-z0-9_]*. */
#include "eval/expr.h"

#include "base/array.h"
#include "base/buf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { OP_NUM, OP_VAR, OP_NEG, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MIN, OP_MAX };

typedef struct op {
  int kind;
  int n;    /* OP_VAR: the index; OP_MIN/OP_MAX: the argument count */
  double v; /* OP_NUM */
} op_t;

struct pd_expr {
  op_t *ops;
  size_t nops, cap;
  size_t max_stack;
};

typedef struct parser {
  const char *s;
  size_t n, i;
  const char *const *names;
  size_t nnames;
  pd_expr_t *e;
  size_t stack; /* values on the evaluation stack after the ops so far */
  char *err;
} parser_t;

static int fail(parser_t *p, const char *what, size_t at) {
  if (!p->err) {
    pd_buf_t b = {0};
    pd_buf_appendf(&b, "at offset %zu: %s", at, what);
    p->err = pd_buf_steal(&b, NULL);
  }
  return -1;
}

static int emit(parser_t *p, int kind, int n, double v) {
  pd_expr_t *e = p->e;
  if (e->nops == e->cap) {
    op_t *ops = pd_array_grow(e->ops, &e->cap, sizeof *ops, 16);
    if (!ops)
      return fail(p, "out of memory", p->i);
    e->ops = ops;
  }
  e->ops[e->nops++] = (op_t){kind, n, v};
  /* Track the stack: a value pushes one; a binary op pops two, pushes one; min/max pop n. */
  if (kind == OP_NUM || kind == OP_VAR)
    p->stack++;
  else if (kind == OP_MIN || kind == OP_MAX)
    p->stack -= (size_t)n - 1;
  else if (kind != OP_NEG)
    p->stack--;
  if (p->stack > e->max_stack)
    e->max_stack = p->stack;
  return 0;
}

static void skip_space(parser_t *p) {
  while (p->i < p->n &&
         (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
    p->i++;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

static int parse_expr(parser_t *p, int depth);

static int parse_number(parser_t *p) {
  size_t b = p->i, i = p->i;
  while (i < p->n && is_digit(p->s[i]))
    i++;
  if (i < p->n && p->s[i] == '.') {
    i++;
    while (i < p->n && is_digit(p->s[i]))
      i++;
  }
  if (i == b + 1 && p->s[b] == '.')
    return fail(p, "a number needs a digit", b);
  if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
    size_t j = i + 1;
    if (j < p->n && (p->s[j] == '+' || p->s[j] == '-'))
      j++;
    if (j >= p->n || !is_digit(p->s[j]))
      return fail(p, "an exponent needs digits", i);
    while (j < p->n && is_digit(p->s[j]))
      j++;
    i = j;
  }
  char buf[64];
  if (i - b >= sizeof buf)
    return fail(p, "number too long", b);
  memcpy(buf, p->s + b, i - b);
  buf[i - b] = 0;
  double v = strtod(buf, NULL);
  if (!isfinite(v))
    return fail(p, "number out of range", b);
  p->i = i;
  return emit(p, OP_NUM, 0, v);
}

/* min(...) / max(...) after the name and its "(". */
static int parse_call(parser_t *p, int kind, int depth) {
  int n = 0;
  for (;;) {
    if (n == PD_EXPR_MAX_ARGS)
      return fail(p, "too many arguments", p->i);
    if (parse_expr(p, depth + 1))
      return -1;
    n++;
    skip_space(p);
    if (p->i < p->n && p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (p->i < p->n && p->s[p->i] == ')') {
      p->i++;
      break;
    }
    return fail(p, "expected ',' or ')'", p->i);
  }
  return emit(p, kind, n, 0);
}

static int parse_primary(parser_t *p, int depth) {
  skip_space(p);
  if (p->i >= p->n)
    return fail(p, "expected a name, a number or '('", p->i);
  char c = p->s[p->i];
  if (is_digit(c) || c == '.')
    return parse_number(p);
  if (c == '(') {
    p->i++;
    if (parse_expr(p, depth + 1))
      return -1;
    skip_space(p);
    if (p->i >= p->n || p->s[p->i] != ')')
      return fail(p, "expected ')'", p->i);
    p->i++;
    return 0;
  }
  if (!is_name_start(c))
    return fail(p, "expected a name, a number or '('", p->i);
  size_t b = p->i;
  while (p->i < p->n && is_name_char(p->s[p->i]))
    p->i++;
  size_t len = p->i - b;
  size_t after = p->i;
  skip_space(p);
  if (p->i < p->n && p->s[p->i] == '(') {
    int kind = len == 3 && memcmp(p->s + b, "min", 3) == 0   ? OP_MIN
               : len == 3 && memcmp(p->s + b, "max", 3) == 0 ? OP_MAX
                                                             : -1;
    if (kind < 0) {
      pd_buf_t m = {0};
      pd_buf_appendf(&m, "unknown function '%.*s' (min and max are)", (int)len, p->s + b);
      fail(p, pd_buf_str(&m), b);
      pd_buf_free(&m);
      return -1;
    }
    p->i++;
    return parse_call(p, kind, depth);
  }
  p->i = after;
  for (size_t k = 0; k < p->nnames; k++)
    if (strlen(p->names[k]) == len && memcmp(p->names[k], p->s + b, len) == 0)
      return emit(p, OP_VAR, (int)k, 0);
  pd_buf_t m = {0};
  pd_buf_appendf(&m, "unknown name '%.*s' (not one of the graders)", (int)len, p->s + b);
  fail(p, pd_buf_str(&m), b);
  pd_buf_free(&m);
  return -1;
}

static int parse_unary(parser_t *p, int depth) {
  if (depth > PD_EXPR_MAX_DEPTH)
    return fail(p, "nested too deeply", p->i);
  skip_space(p);
  if (p->i < p->n && (p->s[p->i] == '-' || p->s[p->i] == '+')) {
    char c = p->s[p->i++];
    if (parse_unary(p, depth + 1))
      return -1;
    return c == '-' ? emit(p, OP_NEG, 0, 0) : 0;
  }
  return parse_primary(p, depth);
}

static int parse_term(parser_t *p, int depth) {
  if (parse_unary(p, depth))
    return -1;
  for (;;) {
    skip_space(p);
    if (p->i >= p->n || (p->s[p->i] != '*' && p->s[p->i] != '/'))
      return 0;
    int kind = p->s[p->i++] == '*' ? OP_MUL : OP_DIV;
    if (parse_unary(p, depth) || emit(p, kind, 0, 0))
      return -1;
  }
}

static int parse_expr(parser_t *p, int depth) {
  if (depth > PD_EXPR_MAX_DEPTH)
    return fail(p, "nested too deeply", p->i);
  if (parse_term(p, depth))
    return -1;
  for (;;) {
    skip_space(p);
    if (p->i >= p->n || (p->s[p->i] != '+' && p->s[p->i] != '-'))
      return 0;
    int kind = p->s[p->i++] == '+' ? OP_ADD : OP_SUB;
    if (parse_term(p, depth) || emit(p, kind, 0, 0))
      return -1;
  }
}

pd_expr_t *pd_expr_parse(const char *text, size_t len, const char *const *names, size_t nnames,
                         char **err) {
  parser_t p = {.s = text, .n = len, .names = names, .nnames = nnames};
  *err = NULL;
  if (len > PD_EXPR_MAX_LEN) {
    fail(&p, "expression longer than 4096 bytes", 0);
    *err = p.err;
    return NULL;
  }
  p.e = calloc(1, sizeof *p.e);
  if (!p.e)
    return NULL;
  if (parse_expr(&p, 0) == 0) {
    skip_space(&p);
    if (p.i < p.n)
      fail(&p, "unexpected character", p.i);
  }
  if (p.err) {
    *err = p.err;
    pd_expr_free(p.e);
    return NULL;
  }
  return p.e;
}

int pd_expr_eval(const pd_expr_t *e, const double *values, double *out) {
  double small[PD_EXPR_MAX_DEPTH + 8];
  double *st =
      e->max_stack <= sizeof small / sizeof small[0] ? small : malloc(e->max_stack * sizeof *st);
  if (!st)
    return -1;
  size_t sp = 0;
  int rc = 0;
  for (size_t k = 0; k < e->nops && rc == 0; k++) {
    const op_t *o = &e->ops[k];
    switch (o->kind) {
    case OP_NUM:
      st[sp++] = o->v;
      break;
    case OP_VAR:
      st[sp++] = values[o->n];
      break;
    case OP_NEG:
      st[sp - 1] = -st[sp - 1];
      break;
    case OP_MIN:
    case OP_MAX: {
      size_t b = sp - (size_t)o->n;
      double v = st[b];
      for (size_t j = b + 1; j < sp; j++)
        v = o->kind == OP_MIN ? (st[j] < v ? st[j] : v) : (st[j] > v ? st[j] : v);
      sp = b;
      st[sp++] = v;
      break;
    }
    default: {
      double y = st[--sp], x = st[sp - 1];
      double r = o->kind == OP_ADD   ? x + y
                 : o->kind == OP_SUB ? x - y
                 : o->kind == OP_MUL ? x * y
                                     : x / y;
      if (!isfinite(r))
        rc = -1;
      st[sp - 1] = r;
    }
    }
  }
  if (rc == 0 && (sp != 1 || !isfinite(st[0])))
    rc = -1;
  if (rc == 0)
    *out = st[0];
  if (st != small)
    free(st);
  return rc;
}

void pd_expr_free(pd_expr_t *e) {
  if (!e)
    return;
  free(e->ops);
  free(e);
}
