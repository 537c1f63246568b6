/* Test support for the JSON fuzz targets: the nesting depth of a jansson tree, to tell the
 * inputs ponder's 64-level readers must take from those they may refuse. */
#ifndef PD_TEST_JSON_DEPTH_H
#define PD_TEST_JSON_DEPTH_H

#include <jansson.h>

/* Containers on the deepest path (the root counts 1; scalars 0). */
static int depth(const json_t *v) {
  int d = 0;
  if (json_is_object(v)) {
    const char *k;
    json_t *m;
    json_object_foreach((json_t *)v, k, m) {
      int x = depth(m);
      if (x > d)
        d = x;
    }
    return d + 1;
  }
  if (json_is_array(v)) {
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
      int x = depth(m);
      if (x > d)
        d = x;
    }
    return d + 1;
  }
  return 0;
}

#endif
