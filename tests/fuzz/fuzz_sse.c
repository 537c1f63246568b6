/* Fuzz target: the upstream SSE parser (proxy/core/sse.c). The input is split at a position taken
 * from its first byte, so events straddling two feeds are exercised too. Checks: no crash, no
 * leak, every delivered event fits the bound, and the same bytes fed whole or split yield the
 * same events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sse.h"

typedef struct {
  pd_buf_t all; /* every event's data, each followed by a NUL */
  size_t max;
} sink_t;

static int collect(void *ud, const char *data, size_t len) {
  sink_t *s = ud;
  if (len > s->max)
    abort();
  pd_buf_append(&s->all, data, len);
  pd_buf_append(&s->all, "", 1);
  return 0;
}

static int run(const uint8_t *data, size_t size, size_t split, sink_t *s) {
  pd_sse_t p;
  pd_sse_init(&p, s->max);
  int rc = pd_sse_feed(&p, (const char *)data, split, collect, s);
  if (rc == 0)
    rc = pd_sse_feed(&p, (const char *)data + split, size - split, collect, s);
  pd_sse_free(&p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t max = 16 + (data[0] & 0x3f) * 4;
  data++, size--;
  size_t split = size ? (size_t)data[0] % (size + 1) : 0;
  sink_t whole = {.max = max}, parts = {.max = max};
  pd_buf_init(&whole.all);
  pd_buf_init(&parts.all);
  int a = run(data, size, size, &whole);
  int b = run(data, size, split, &parts);
  /* Oversized events stop both runs; when neither stopped, they saw the same events. */
  if (a == 0 && b == 0 &&
      (whole.all.len != parts.all.len ||
       memcmp(pd_buf_str(&whole.all), pd_buf_str(&parts.all), whole.all.len)))
    abort();
  pd_buf_free(&whole.all);
  pd_buf_free(&parts.all);
  return 0;
}
