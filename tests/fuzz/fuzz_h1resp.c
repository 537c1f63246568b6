/* Fuzz target: the native HTTP/1.1 client's response reading (proxy/upstream_h1.c): llhttp with
 * the client's settings, the shared head bookkeeping (proxy/upstream.c) and the body framing
 * (Content-Length, chunked, close-delimited, HEAD, 1xx, keep-alive responses back to back), fed
 * through pd_h1_wire_parse_bytes with no network. The first byte picks the read size, HEAD and
 * retries, and whether the input is repeated past 100 KiB. Checks: no crash, no leak, every head
 * counted stays under the 100 KiB cap, and no more body bytes come out than went in. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/upstream_int.h"

#define HEAD_CAP (100 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t ctl = data[0];
  data++, size--;
  static const size_t chunks[] = {1, 2, 7, 64, 512, 4096, 65536, 1 << 20};
  size_t chunk = chunks[ctl & 7];
  int is_head = (ctl >> 3) & 1;
  int retries = (ctl >> 4) & 1;
  /* Heads near the cap need over 100 KiB: with bit 5 the input is repeated past it (a header
   * line repeated, say), since libFuzzer's inputs stay small. */
  char *big = NULL;
  if ((ctl >> 5) & 1 && size > 0) {
    size_t n = 0, want = HEAD_CAP + HEAD_CAP / 2;
    big = malloc(want + size);
    if (!big)
      return 0;
    while (n < want) {
      memcpy(big + n, data, size);
      n += size;
    }
    data = (const uint8_t *)big;
    size = n;
  }
  pd_h1_wire_parse_stats_t st;
  pd_h1_wire_parse_bytes((const char *)data, size, chunk, is_head, retries, &st);
  /* The cap is checked as bytes are counted: one read may overshoot it by the callback's
   * piece before the parser stops, never by more than what was read. */
  if (st.max_head > HEAD_CAP + chunk)
    abort();
  if (st.body_bytes > size)
    abort();
  if (st.heads > st.responses + 1)
    abort();
  free(big);
  return 0;
}
