/* The request side of the HTTP server that needs no connection: header lookup and request
 * ids. See http/req.h. */
#include "http/req.h"

#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <uv.h>

#include "base/buf.h"

const char *pd_req_header(const pd_req_t *r, const char *name) {
  char c0 = name[0];
  for (size_t i = 0; i < r->nheaders; i++)
    if (r->headers[i].name[0] == c0 && strcmp(r->headers[i].name, name) == 0)
      return r->headers[i].value;
  return NULL;
}

size_t pd_req_id_valid(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
      return 0;
  return n <= 128 ? n : 0;
}

void pd_req_id_new(char *out) {
  /* Kernel randomness fetched 256 bytes (16 ids) at a time: one getrandom call per 16
   * requests instead of one per request. Per thread, so no locking. */
  static _Thread_local unsigned char pool[256];
  static _Thread_local size_t pool_pos = sizeof pool;
  unsigned char rnd[16];
  if (pool_pos + sizeof rnd > sizeof pool &&
      getrandom(pool, sizeof pool, GRND_NONBLOCK) == (ssize_t)sizeof pool)
    pool_pos = 0;
  if (pool_pos + sizeof rnd <= sizeof pool) {
    memcpy(rnd, pool + pool_pos, sizeof rnd);
    memset(pool + pool_pos, 0, sizeof rnd);
    pool_pos += sizeof rnd;
  } else {
    uint64_t t = uv_hrtime();
    for (int i = 0; i < 16; i++)
      rnd[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 37);
  }
  memcpy(out, "req_", 4);
  pd_buf_fmt_hex(out + 4, rnd, sizeof rnd);
  out[36] = '\0';
}
