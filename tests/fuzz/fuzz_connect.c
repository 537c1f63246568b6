/* Fuzz target: the reader of a proxy's reply to CONNECT (proxy/upstream/proxy.c,
 * pd_proxy_reply), fed in reads of a size the first byte picks; also the proxy URL's
 * authority and the no_proxy match on the same bytes. Checks: no crash, no leak, a verdict
 * once the head is complete, the message always NUL-terminated, the held reply under its cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static const size_t chunks[] = {1, 2, 3, 7, 16, 100, 1000, 1 << 20};
  size_t chunk = chunks[data[0] & 7];
  data++, size--;
  pd_buf_t acc;
  pd_buf_init(&acc);
  char err[160];
  int r = 0;
  for (size_t off = 0; off < size && r == 0; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    err[0] = '\0';
    r = pd_proxy_reply(&acc, (const char *)data + off, n, err, sizeof err);
    if (r < 0 && !memchr(err, '\0', sizeof err))
      abort();
    if (acc.len > 8192)
      abort();
  }
  pd_buf_free(&acc);
  /* The same bytes as a proxy URL and as a no_proxy list. */
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  char out[300];
  long n = pd_proxy_authority(s, out, sizeof out);
  if (n >= (long)sizeof out || (n >= 0 && strlen(out) != (size_t)n))
    abort();
  char *line = pd_proxy_auth_line(s);
  if (line &&
      (strncmp(line, "Proxy-Authorization: Basic ", 27) || strcspn(line, "\r") + 2 != strlen(line)))
    abort();
  free(line);
  pd_proxy_env_t e = {.https_proxy = "http://p:1", .no_proxy = s};
  const char *host = size > 8 ? s + size / 2 : "h";
  (void)pd_proxy_pick(&e, NULL, 1, host, strlen(host));
  free(s);
  return 0;
}
