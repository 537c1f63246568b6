/* The registry of client APIs and what they share. See api.h. Owns the one list of tables:
 * a new client API is one line here (and its own file). */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

static const pd_api_t *const apis[] = {&pd_chat_api, &pd_responses_api};

const pd_api_t *pd_api_find(const char *rest, size_t len) {
  for (size_t i = 0; i < sizeof apis / sizeof apis[0]; i++) {
    const char *p = apis[i]->path;
    size_t n = strlen(p);
    if (len == n && memcmp(rest, p, n) == 0)
      return apis[i];
  }
  return NULL;
}

int pd_api_sse_error(pd_buf_t *out, const char *upstream, size_t ulen, const char *message,
                     const char *type, const char *code) {
  if (!upstream || !ulen)
    return pd_openai_chunk_error(out, message, type, code);
  /* The upstream's own error object as the event, compacted to one data line. */
  int rc = pd_buf_appends(out, "data: ");
  json_t *j = json_loadb(upstream, ulen, 0, NULL);
  char *compact = j ? json_dumps(j, JSON_COMPACT) : NULL;
  rc |= pd_buf_appends(out, compact ? compact : "{}");
  free(compact);
  json_decref(j);
  rc |= pd_buf_appends(out, "\n\n");
  return rc < 0 ? -1 : 0;
}
