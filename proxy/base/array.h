/* The one growable element array of the tree (items, rows, ops, owned strings, ...): the caller
 * keeps the pointer, its count and its capacity; pd_array_grow makes room by doubling. Header
 * only. Byte buffers are base/buf.h's. */
#ifndef PD_ARRAY_H
#define PD_ARRAY_H

#include <stdint.h>
#include <stdlib.h>

/* Room for more elements in `items`, an array of *cap elements of `elem` bytes: the array
 * reallocated to twice its capacity (`first` elements when *cap is 0) and returned, with *cap
 * updated. NULL when out of memory or when the size would pass PTRDIFF_MAX; then `items` and *cap
 * are unchanged and still the caller's. */
static inline void *pd_array_grow(void *items, size_t *cap, size_t elem, size_t first) {
  size_t ncap = *cap ? *cap * 2 : first;
  if (ncap <= *cap || ncap > PTRDIFF_MAX / elem) /* no object may be larger */
    return NULL;
  void *p = realloc(items, ncap * elem);
  if (p)
    *cap = ncap;
  return p;
}

#endif
