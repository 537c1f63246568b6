#include "openai.h"

#include <string.h>

static int append_str_or_null(pd_buf_t *b, const char *s) {
  if (!s)
    return pd_buf_appends(b, "null");
  return pd_buf_append_json_str(b, s, strlen(s));
}

int pd_openai_error(pd_buf_t *b, const char *message, const char *type, const char *param,
                    const char *code) {
  int rc = pd_buf_appends(b, "{\"error\":{\"message\":");
  rc |= append_str_or_null(b, message ? message : "");
  rc |= pd_buf_appends(b, ",\"type\":");
  rc |= append_str_or_null(b, type);
  rc |= pd_buf_appends(b, ",\"param\":");
  rc |= append_str_or_null(b, param);
  rc |= pd_buf_appends(b, ",\"code\":");
  rc |= append_str_or_null(b, code);
  rc |= pd_buf_appends(b, "}}");
  return rc ? -1 : 0;
}

static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* A string starting at the opening quote; returns the byte after the closing quote or NULL. */
static const char *scan_string(const char *p, const char *e) {
  for (p++; p < e; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"')
      return p + 1;
    if (c < 0x20)
      return NULL;
    if (c == '\\') {
      if (++p >= e)
        return NULL;
      if (*p == 'u') {
        for (int i = 0; i < 4; i++)
          if (++p >= e ||
              !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return NULL;
      } else if (!strchr("\"\\/bfnrt", *p)) {
        return NULL;
      }
    }
  }
  return NULL;
}

static const char *scan_number(const char *p, const char *e) {
  const char *s = p;
  if (p < e && *p == '-')
    p++;
  if (p < e && *p == '0')
    p++;
  else if (p < e && *p >= '1' && *p <= '9')
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  else
    return NULL;
  if (p < e && *p == '.') {
    if (++p >= e || *p < '0' || *p > '9')
      return NULL;
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-'))
      p++;
    if (p >= e || *p < '0' || *p > '9')
      return NULL;
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  }
  return p > s ? p : NULL;
}

static const char *scan_literal(const char *p, const char *e, const char *lit) {
  size_t n = strlen(lit);
  return (size_t)(e - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

int pd_json_check_object(const char *b, size_t n) {
  const char *p = b, *e = b + n;
  char stack[64]; /* '{' or '[' per open container */
  int depth = 0, has_error = 0;
  p = skip_ws(p, e);
  if (p >= e || *p != '{')
    return 0;
  /* States: expecting a value, or expecting ',' / a closer after one. */
  int want_value = 1;
  while (1) {
    p = skip_ws(p, e);
    if (p >= e)
      return 0;
    if (want_value) {
      char c = *p;
      if (c == '{' || c == '[') {
        if (depth == (int)sizeof stack)
          return 0;
        stack[depth++] = c;
        p = skip_ws(p + 1, e);
        if (p < e && *p == (c == '{' ? '}' : ']')) {
          depth--;
          p++;
          want_value = 0;
        } else if (c == '{') {
          goto key;
        }
        if (depth == 0)
          break;
        continue;
      }
      if (c == '"')
        p = scan_string(p, e);
      else if (c == 't')
        p = scan_literal(p, e, "true");
      else if (c == 'f')
        p = scan_literal(p, e, "false");
      else if (c == 'n')
        p = scan_literal(p, e, "null");
      else
        p = scan_number(p, e);
      if (!p)
        return 0;
      want_value = 0;
      continue;
    }
    /* After a value. */
    if (*p == ',') {
      p++;
      if (stack[depth - 1] == '{')
        goto key;
      want_value = 1;
      continue;
    }
    if (*p == (stack[depth - 1] == '{' ? '}' : ']')) {
      p++;
      if (--depth == 0)
        break;
      continue;
    }
    return 0;
  key:
    p = skip_ws(p, e);
    if (p >= e || *p != '"')
      return 0;
    {
      const char *k = p;
      p = scan_string(p, e);
      if (!p)
        return 0;
      if (depth == 1 && p - k == 7 && memcmp(k, "\"error\"", 7) == 0)
        has_error = 1;
    }
    p = skip_ws(p, e);
    if (p >= e || *p != ':')
      return 0;
    p++;
    want_value = 1;
  }
  p = skip_ws(p, e);
  if (p != e)
    return 0;
  return has_error ? 2 : 1;
}

int pd_openai_is_error(const json_t *body) {
  const json_t *e = json_object_get(body, "error");
  return json_is_object(e) && json_is_string(json_object_get(e, "message"));
}

void pd_openai_new_id(char *out, const char *prefix, uint64_t (*rnd)(void *), void *ud) {
  static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  size_t n = strlen(prefix);
  memcpy(out, prefix, n);
  uint64_t r = 0;
  for (int i = 0; i < 24; i++) {
    if (i % 8 == 0)
      r = rnd(ud);
    out[n + i] = alnum[r % 62];
    r /= 62;
  }
  out[n + 24] = '\0';
}

int pd_openai_usage(pd_buf_t *b, const pd_usage_t *u) {
  return pd_buf_appendf(b,
                        "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld,"
                        "\"completion_tokens_details\":{\"reasoning_tokens\":%ld}}",
                        u->prompt_tokens, u->completion_tokens,
                        u->prompt_tokens + u->completion_tokens, u->reasoning_tokens);
}

int pd_openai_completion(pd_buf_t *b, const char *id, long created, const char *model,
                         pd_reasoning_t reasoning, const pd_result_t *results, size_t n) {
  int rc = pd_buf_appends(b, "{\"id\":");
  rc |= append_str_or_null(b, id);
  rc |= pd_buf_appendf(b, ",\"object\":\"chat.completion\",\"created\":%ld,\"model\":", created);
  rc |= append_str_or_null(b, model);
  rc |= pd_buf_appends(b, ",\"choices\":[");
  pd_usage_t sum = {0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    const pd_result_t *r = &results[i];
    sum.prompt_tokens += r->usage.prompt_tokens;
    sum.completion_tokens += r->usage.completion_tokens;
    sum.reasoning_tokens += r->usage.reasoning_tokens;
    rc |= pd_buf_appendf(
        b, "%s{\"index\":%zu,\"message\":{\"role\":\"assistant\",\"content\":", i ? "," : "", i);
    int has_tools = r->tool_calls && json_array_size(r->tool_calls) > 0;
    if (reasoning == PD_REASONING_INLINE && r->reasoning_len > 0) {
      pd_buf_t tmp;
      pd_buf_init(&tmp);
      rc |= pd_buf_appends(&tmp, "<think>\n");
      rc |= pd_buf_append(&tmp, r->reasoning, r->reasoning_len);
      rc |= pd_buf_appends(&tmp, "\n</think>\n\n");
      rc |= pd_buf_append(&tmp, r->content, r->content_len);
      rc |= pd_buf_append_json_str(b, pd_buf_data(&tmp), tmp.len);
      pd_buf_free(&tmp);
    } else if (r->content_len == 0 && has_tools) {
      rc |= pd_buf_appends(b, "null");
    } else {
      rc |= pd_buf_append_json_str(b, r->content ? r->content : "", r->content_len);
    }
    if (reasoning == PD_REASONING_FIELD && r->reasoning_len > 0) {
      rc |= pd_buf_appends(b, ",\"reasoning_content\":");
      rc |= pd_buf_append_json_str(b, r->reasoning, r->reasoning_len);
    }
    if (has_tools) {
      char *tc = json_dumps(r->tool_calls, JSON_COMPACT);
      rc |= pd_buf_appends(b, ",\"tool_calls\":");
      rc |= tc ? pd_buf_appends(b, tc) : -1;
      free(tc);
    }
    rc |= pd_buf_appends(b, "},\"logprobs\":null,\"finish_reason\":");
    rc |= append_str_or_null(b, r->finish_reason ? r->finish_reason : "stop");
    rc |= pd_buf_appends(b, "}");
  }
  rc |= pd_buf_appends(b, "],\"usage\":");
  rc |= pd_openai_usage(b, &sum);
  rc |= pd_buf_appends(b, "}");
  return rc ? -1 : 0;
}

static int chunk_head(pd_buf_t *b, const pd_chunk_ctx_t *c) {
  int rc = pd_buf_appends(b, "data: {\"id\":");
  rc |= append_str_or_null(b, c->id);
  rc |= pd_buf_appendf(
      b, ",\"object\":\"chat.completion.chunk\",\"created\":%ld,\"model\":", c->created);
  rc |= append_str_or_null(b, c->model);
  return rc;
}

int pd_openai_chunk_text(pd_buf_t *b, const pd_chunk_ctx_t *c, int index, const char *field,
                         const char *text, size_t len) {
  int rc = chunk_head(b, c);
  rc |= pd_buf_appendf(b, ",\"choices\":[{\"index\":%d,\"delta\":{", index);
  if (strcmp(field, "role") == 0) {
    rc |= pd_buf_appends(b, "\"role\":\"assistant\",\"content\":");
    rc |= pd_buf_append_json_str(b, text, len);
  } else {
    rc |= pd_buf_appendf(b, "\"%s\":", field);
    rc |= pd_buf_append_json_str(b, text, len);
  }
  rc |= pd_buf_appends(b, "},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
  return rc ? -1 : 0;
}

int pd_openai_chunk_tool_calls(pd_buf_t *b, const pd_chunk_ctx_t *c, int index,
                               const json_t *tool_calls) {
  char *tc = json_dumps(tool_calls, JSON_COMPACT);
  if (!tc)
    return -1;
  int rc = chunk_head(b, c);
  rc |= pd_buf_appendf(b,
                       ",\"choices\":[{\"index\":%d,\"delta\":{\"tool_calls\":%s},"
                       "\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                       index, tc);
  free(tc);
  return rc ? -1 : 0;
}

int pd_openai_chunk_finish(pd_buf_t *b, const pd_chunk_ctx_t *c, int index, const char *reason) {
  int rc = chunk_head(b, c);
  rc |= pd_buf_appendf(b,
                       ",\"choices\":[{\"index\":%d,\"delta\":{},\"logprobs\":null,"
                       "\"finish_reason\":",
                       index);
  rc |= append_str_or_null(b, reason ? reason : "stop");
  rc |= pd_buf_appends(b, "}]}\n\n");
  return rc ? -1 : 0;
}

int pd_openai_chunk_usage(pd_buf_t *b, const pd_chunk_ctx_t *c, const pd_usage_t *u) {
  int rc = chunk_head(b, c);
  rc |= pd_buf_appends(b, ",\"choices\":[],\"usage\":");
  rc |= pd_openai_usage(b, u);
  rc |= pd_buf_appends(b, "}\n\n");
  return rc ? -1 : 0;
}

int pd_openai_chunk_error(pd_buf_t *b, const char *message, const char *type, const char *code) {
  int rc = pd_buf_appends(b, "data: ");
  rc |= pd_openai_error(b, message, type, NULL, code);
  rc |= pd_buf_appends(b, "\n\n");
  return rc ? -1 : 0;
}
