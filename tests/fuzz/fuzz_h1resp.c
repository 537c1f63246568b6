/* Fuzz target: the native HTTP/1.1 client's response reading (proxy/upstream_h1.c): llhttp with
 * the client's settings, the shared head bookkeeping (proxy/upstream.c) and the body framing
 * (Content-Length, chunked, close-delimited, HEAD, 1xx, keep-alive responses back to back), fed
 * through pd_h1up_parse_bytes with no network. The first byte picks the read size, HEAD and
 * retries. Checks: no crash, no leak, every head counted stays under the 100 KiB cap, and no
 * more body bytes come out than went in. */
#include <stdint.h>
#include <stdlib.h>

#include "upstream_int.h"

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
  pd_h1up_parse_stats_t st;
  pd_h1up_parse_bytes((const char *)data, size, chunk, is_head, retries, &st);
  /* The cap is checked as bytes are counted: one read may overshoot it by the callback's
   * piece before the parser stops, never by more than what was read. */
  if (st.max_head > HEAD_CAP + chunk)
    abort();
  if (st.body_bytes > size)
    abort();
  if (st.heads > st.responses + 1)
    abort();
  return 0;
}
