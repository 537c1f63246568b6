/* Fuzz target: the multi grader's calculate_output parser pd_expr_parse (proxy/eval/expr.c)
 * and its evaluator, with the names a, b and c. Checks: no crash, no leak, no deep recursion
 * (ASan's stack); a failed parse has a message; a successful evaluation is finite. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "eval/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {"a", "b", "c"};
  static const double values[] = {0.5, 0, 1};
  char *err = NULL;
  pd_expr_t *e = pd_expr_parse((const char *)data, size, names, 3, &err);
  if (!e) {
    if (!err || !*err)
      abort();
    free(err);
    return 0;
  }
  double v;
  if (pd_expr_eval(e, values, &v) == 0 && !isfinite(v))
    abort();
  pd_expr_free(e);
  return 0;
}
