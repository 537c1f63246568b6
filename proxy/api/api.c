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

void pd_api_strip_think(const char **s, size_t *n) {
  static const char open[] = "<think>", close[] = "</think>";
  if (*n < sizeof open - 1 || memcmp(*s, open, sizeof open - 1) != 0)
    return;
  const char *end = memmem(*s, *n, close, sizeof close - 1);
  if (!end)
    return;
  const char *p = end + sizeof close - 1, *e = *s + *n;
  for (int k = 0; k < 2 && p < e && *p == '\n'; k++)
    p++;
  *n = (size_t)(e - p);
  *s = p;
}

/* Replaces the string *slot (in obj under key) by its text without a leading <think> block.
 * Returns 1 when it changed, 0 when not, -1 when memory ran out. */
static int strip_string(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  const char *s = json_string_value(v);
  if (!s)
    return 0;
  size_t n = json_string_length(v);
  const char *t = s;
  pd_api_strip_think(&t, &n);
  if (t == s)
    return 0;
  return json_object_set_new(obj, key, json_stringn(t, n)) < 0 ? -1 : 1;
}

int pd_api_strip_history(json_t *messages) {
  size_t i;
  json_t *m;
  int changed = 0;
  if (!json_is_array(messages))
    return 0;
  json_array_foreach(messages, i, m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!role || strcmp(role, "assistant") != 0)
      continue;
    int c = 0;
    if (json_object_get(m, "reasoning_content"))
      c = 1, json_object_del(m, "reasoning_content");
    if (json_object_get(m, "reasoning"))
      c = 1, json_object_del(m, "reasoning");
    json_t *content = json_object_get(m, "content");
    int rc = 0;
    if (json_is_string(content)) {
      rc = strip_string(m, "content");
    } else if (json_is_array(content)) {
      /* The first text part is where the inline display's block would be. */
      size_t k;
      json_t *part;
      json_array_foreach(content, k, part) {
        if (json_is_string(json_object_get(part, "text"))) {
          rc = strip_string(part, "text");
          break;
        }
      }
    }
    if (rc < 0)
      return -1;
    changed += c || rc;
  }
  return changed;
}
