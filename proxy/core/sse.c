/* The SSE parser (see core/sse.h): lines end at LF (a CR before it is dropped), data fields
 * are joined with '\n', comments and other fields are ignored, and an event is delivered at its
 * blank line. */
#include "core/sse.h"

#include <string.h>

void pd_sse_init(pd_sse_t *s, size_t max_event) {
  pd_buf_init(&s->line);
  pd_buf_init(&s->data);
  s->has_data = 0;
  s->max_event = max_event;
}

void pd_sse_free(pd_sse_t *s) {
  pd_buf_free(&s->line);
  pd_buf_free(&s->data);
}

/* One complete line (without its terminator). */
static int on_line(pd_sse_t *s, const char *l, size_t n, pd_sse_cb cb, void *ud) {
  if (n == 0) {
    if (!s->has_data)
      return 0;
    s->has_data = 0;
    int rc = cb(ud, pd_buf_data(&s->data), s->data.len);
    pd_buf_reset(&s->data);
    return rc;
  }
  if (l[0] == ':')
    return 0; /* comment */
  const char *colon = memchr(l, ':', n);
  size_t flen = colon ? (size_t)(colon - l) : n;
  if (flen != 4 || memcmp(l, "data", 4) != 0)
    return 0; /* event:, id:, retry: carry nothing ponder needs */
  const char *v = colon ? colon + 1 : l + n;
  if (v < l + n && *v == ' ')
    v++;
  size_t vlen = (size_t)(l + n - v);
  if (s->data.len + vlen + 1 > s->max_event)
    return -1;
  if (s->has_data && pd_buf_append(&s->data, "\n", 1) < 0)
    return -1;
  if (pd_buf_append(&s->data, v, vlen) < 0)
    return -1;
  s->has_data = 1;
  return 0;
}

int pd_sse_feed(pd_sse_t *s, const char *p, size_t n, pd_sse_cb cb, void *ud) {
  const char *end = p + n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
      if (s->line.len + (size_t)(end - p) > s->max_event)
        return -1;
      return pd_buf_append(&s->line, p, (size_t)(end - p)) < 0 ? -1 : 0;
    }
    const char *l = p;
    size_t len = (size_t)(nl - p);
    if (s->line.len) {
      if (pd_buf_append(&s->line, p, len) < 0)
        return -1;
      l = pd_buf_data(&s->line);
      len = s->line.len;
    }
    if (len && l[len - 1] == '\r')
      len--;
    int rc = on_line(s, l, len, cb, ud);
    pd_buf_reset(&s->line);
    if (rc)
      return rc;
    p = nl + 1;
  }
  return 0;
}
