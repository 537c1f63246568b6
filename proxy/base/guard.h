/* One re-entrancy guard for every object that calls user callbacks (redis's callHandler
 * idea): while a callback is on the stack the object is "entered", and a close requested from
 * inside the callback only marks it; the outermost frame to leave does the close. That keeps
 * an object from being freed under a caller's frame. Owns nothing. */
#ifndef PD_GUARD_H
#define PD_GUARD_H

typedef struct pd_guard {
  int depth;   /* callbacks on the stack */
  int closing; /* a close was asked for while entered */
} pd_guard_t;

static inline void pd_guard_enter(pd_guard_t *g) {
  g->depth++;
}

/* Leaves one level; returns 1 when this was the outermost frame and a close is pending: the
 * caller then closes (frees) the object, and must not touch it afterwards. */
static inline int pd_guard_leave(pd_guard_t *g) {
  return --g->depth == 0 && g->closing;
}

/* Whether a callback is on the stack (a close must then be deferred). */
static inline int pd_guard_entered(const pd_guard_t *g) {
  return g->depth > 0;
}

/* Asks for a close; returns 1 when it may happen now (nothing entered), else 0 and the
 * outermost pd_guard_leave returns 1. */
static inline int pd_guard_close(pd_guard_t *g) {
  g->closing = 1;
  return g->depth == 0;
}

#endif
