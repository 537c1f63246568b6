/* Fuzz target: the dispatch decision (proxy/dispatch.c) on its own, against the configs of
 * dispatch_check.h. Input: byte 0 picks the config and the method; then the target, the
 * Authorization value, the Content-Type value and the body, separated by '\n'.
 * Properties: no crash or leak, and those check_decision asserts (dispatch_check.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dispatch_check.h"

static const char *const METHODS[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"};

static const char *hdr_auth, *hdr_ct;

static const char *get_header(void *ud, const char *name) {
  (void)ud;
  if (!strcmp(name, "authorization"))
    return hdr_auth;
  if (!strcmp(name, "content-type"))
    return hdr_ct;
  return NULL;
}

/* The next '\n'-separated field of [*p, end) as a malloc'd NUL-terminated string. */
static char *field(const uint8_t **p, const uint8_t *end, size_t *len) {
  const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
  const uint8_t *e = nl ? nl : end;
  size_t n = (size_t)(e - *p);
  char *s = malloc(n + 1);
  if (!s)
    abort();
  memcpy(s, *p, n);
  s[n] = '\0';
  *p = nl ? nl + 1 : end;
  if (len)
    *len = n;
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  init_once();
  if (size < 1)
    return 0;
  const pd_config_t *c = &cfgs[data[0] % 3];
  const char *method = METHODS[(data[0] / 3) % (sizeof METHODS / sizeof *METHODS)];
  const uint8_t *p = data + 1, *end = data + size;
  size_t tlen, blen;
  char *target = field(&p, end, &tlen);
  char *auth = field(&p, end, NULL);
  char *ct = field(&p, end, NULL);
  char *body = field(&p, end, &blen);
  /* As the server hands it over: path before the first '?', query after it; the target has
   * no NUL (llhttp refuses one), so it ends at the first. */
  tlen = strlen(target);
  char *q = strchr(target, '?');
  size_t plen = q ? (size_t)(q - target) : tlen;
  hdr_auth = *auth ? auth : NULL;
  hdr_ct = *ct ? ct : NULL;
  pd_dispatch_req_t in = {method, target, plen, q ? q + 1 : "", q ? strlen(q + 1) : 0, get_header,
                          NULL,   body,   blen};
  check_decision(c, &in, hdr_auth);
  free(target);
  free(auth);
  free(ct);
  free(body);
  return 0;
}
