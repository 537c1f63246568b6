/* Incremental parser for the text/event-stream an upstream sends (the WHATWG event-stream
 * format, data fields only): bytes in any split, one callback per complete event. A parser
 * owns its carried line and event data (pd_sse_free releases them); events are bounded by
 * max_event. Pure: no I/O. */
#ifndef PD_SSE_H
#define PD_SSE_H

#include <stddef.h>

#include "base/buf.h"

/* Called once per complete event with its data (data lines joined with '\n'); `data` is valid
 * only during the call. Return 0 to go on, non-zero to stop parsing (returned by pd_sse_feed). */
typedef int (*pd_sse_cb)(void *ud, const char *data, size_t len);

typedef struct pd_sse {
  pd_buf_t line; /* the incomplete line carried between feeds */
  pd_buf_t data; /* data of the event being assembled */
  int has_data;
  size_t max_event; /* bound on one event's size */
} pd_sse_t;

/* Starts an empty parser whose events may be up to max_event bytes. */
void pd_sse_init(pd_sse_t *s, size_t max_event);
/* Frees the carried line and event data (pd_sse_init starts it again). */
void pd_sse_free(pd_sse_t *s);
/* Feeds bytes. Returns 0, a callback's non-zero value, or -1 when an event exceeds max_event
 * (or memory runs out). */
int pd_sse_feed(pd_sse_t *s, const char *p, size_t n, pd_sse_cb cb, void *ud);

#endif
