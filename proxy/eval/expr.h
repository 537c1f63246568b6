/* The `multi` grader's calculate_output expressions (SPEC section 11): grader names, numbers,
 * + - * /, parentheses, min(...) and max(...). Parsed once at load time into a postfix
 * program, evaluated per sample with a bounded stack. Pure; an expression owns its program. */
#ifndef PD_EXPR_H
#define PD_EXPR_H

#include <stddef.h>

/* Bounds on what a grader file may ask for (the file is an operator's, but a parser takes no
 * input on trust): source length, nesting depth, and arguments of min/max. */
#define PD_EXPR_MAX_LEN 4096
#define PD_EXPR_MAX_DEPTH 32
#define PD_EXPR_MAX_ARGS 64

typedef struct pd_expr pd_expr_t;

/* Parses text[0..len) with the variables names[0..nnames) (a name refers to its index). On
 * error returns NULL and puts a malloc'd message ("at offset N: ...") in *err. */
pd_expr_t *pd_expr_parse(const char *text, size_t len, const char *const *names, size_t nnames,
                         char **err);
/* Evaluates with values[i] for names[i]. Returns 0 and the value in *out, or -1 when the
 * result or a step is not finite (a division by zero). */
int pd_expr_eval(const pd_expr_t *e, const double *values, double *out);
void pd_expr_free(pd_expr_t *e);

#endif
