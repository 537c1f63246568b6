/* OpenAI JSON shapes: error objects, the final chat.completion, stream chunks and usage, ids,
 * and what ponder reads of an upstream's chat reply (the members pd_openai_load_reply builds, the
 * same read in one pass without a tree by pd_openai_read_reply, the spans the relay checks and
 * rewrites). The JSON machinery itself is base/json.c. Owns nothing:
 * every function appends to a caller's buffer or returns a new reference. */
#include "core/openai.h"
#include "base/utf8.h"

#include <stdlib.h>
#include <string.h>

static int append_str_or_null(pd_buf_t *b, const char *s) {
  if (!s)
    return pd_buf_appends(b, "null");
  return pd_buf_append_json_str(b, s, strlen(s));
}

/* Error texts may quote what a client sent (a path, a model name, a header value) and may be
 * cut to a length mid-character: each byte that does not start a well-formed UTF-8 sequence
 * becomes U+FFFD, so every error body is valid UTF-8 JSON. */
static int append_text_or_null(pd_buf_t *b, const char *s) {
  if (!s)
    return pd_buf_appends(b, "null");
  size_t n = strlen(s), i = 0;
  while (i < n && (unsigned char)s[i] < 0x80)
    i++;
  if (i == n)
    return pd_buf_append_json_str(b, s, n);
  pd_buf_t t;
  pd_buf_init(&t);
  int rc = pd_buf_append(&t, s, i);
  while (i < n) {
    size_t l = (unsigned char)s[i] < 0x80 ? 1 : pd_utf8_seq((const unsigned char *)s + i, n - i);
    rc |= l ? pd_buf_append(&t, s + i, l) : pd_buf_append(&t, "\xEF\xBF\xBD", 3);
    i += l ? l : 1;
  }
  rc |= pd_buf_append_json_str(b, pd_buf_data(&t), t.len);
  pd_buf_free(&t);
  return rc ? -1 : 0;
}

int pd_openai_error(pd_buf_t *b, const char *message, const char *type, const char *param,
                    const char *code) {
  int rc = pd_buf_appends(b, "{\"error\":{\"message\":");
  rc |= append_text_or_null(b, message ? message : "");
  rc |= pd_buf_appends(b, ",\"type\":");
  rc |= append_text_or_null(b, type);
  rc |= pd_buf_appends(b, ",\"param\":");
  rc |= append_text_or_null(b, param);
  rc |= pd_buf_appends(b, ",\"code\":");
  rc |= append_text_or_null(b, code);
  rc |= pd_buf_appends(b, "}}");
  return rc ? -1 : 0;
}

/* ---- upstream replies ------------------------------------------------------------------------
 * What the forcing engine and the error check read of a chat reply or stream chunk. */
static const pd_json_keep_t reply_msg[] = {{"content", 7, PD_JSON_KEEP_ALL, NULL},
                                           {"reasoning_content", 17, PD_JSON_KEEP_ALL, NULL},
                                           {"reasoning", 9, PD_JSON_KEEP_ALL, NULL},
                                           {"tool_calls", 10, PD_JSON_KEEP_ALL, NULL},
                                           {NULL, 0, 0, NULL}};
static const pd_json_keep_t reply_choice[] = {{"message", 7, PD_JSON_KEEP_OBJECT, reply_msg},
                                              {"delta", 5, PD_JSON_KEEP_OBJECT, reply_msg},
                                              {"text", 4, PD_JSON_KEEP_ALL, NULL},
                                              {"finish_reason", 13, PD_JSON_KEEP_ALL, NULL},
                                              {NULL, 0, 0, NULL}};
static const pd_json_keep_t reply_top[] = {{"choices", 7, PD_JSON_KEEP_FIRST, reply_choice},
                                           {"usage", 5, PD_JSON_KEEP_ALL, NULL},
                                           {"error", 5, PD_JSON_KEEP_ALL, NULL},
                                           {NULL, 0, 0, NULL}};

json_t *pd_openai_load_reply(const char *b, size_t n) {
  return pd_json_load_kept(b, n, reply_top);
}

/* ---- the one-pass reader ----
 * Each reader below is called with the scanner just past a member's key and consumes that
 * member's value whole; -1 when the text is refused. */

typedef int (*member_fn)(pd_json_scan_t *s, const pd_json_tok_t *key, pd_openai_msg_t *m);

/* The members of the object whose '{' was just read, each handed to fn. */
static int read_object(pd_json_scan_t *s, member_fn fn, pd_openai_msg_t *m) {
  pd_json_tok_t k;
  for (;;) {
    int type = pd_json_next(s, &k);
    if (type == PD_JSON_OBJECT_END)
      return 0;
    if (type != PD_JSON_KEY || fn(s, &k, m) < 0)
      return -1;
  }
}

/* The next value when it is an object, read member by member with fn (returns 1); any other
 * value skipped (returns 0). */
static int object_value(pd_json_scan_t *s, member_fn fn, pd_openai_msg_t *m) {
  pd_json_tok_t v;
  if (pd_json_next(s, &v) == PD_JSON_OBJECT)
    return read_object(s, fn, m) < 0 ? -1 : 1;
  return pd_json_skip(s, &v);
}

static int skip_value(pd_json_scan_t *s) {
  pd_json_tok_t v;
  pd_json_next(s, &v);
  return pd_json_skip(s, &v);
}

static int text_value(pd_json_scan_t *s, pd_openai_text_t *out) {
  pd_json_tok_t v;
  int type = pd_json_next(s, &v);
  if (pd_json_skip(s, &v) < 0)
    return -1;
  out->s = type == PD_JSON_STRING ? v.s : NULL;
  out->len = type == PD_JSON_STRING ? v.len : 0;
  out->esc = type == PD_JSON_STRING && v.esc;
  return 0;
}

static int int_value(pd_json_scan_t *s, long long *out, int *has) {
  pd_json_tok_t v;
  int type = pd_json_next(s, &v);
  if (pd_json_skip(s, &v) < 0)
    return -1;
  *has = type == PD_JSON_INTEGER;
  *out = *has ? v.ival : 0;
  return 0;
}

/* A key is the literal: compared in place (the length known at compile time) unless escaped. */
static inline int key_is(const pd_json_tok_t *k, const char *lit, size_t n) {
  if (!k->esc)
    return k->len == n && memcmp(k->s, lit, n) == 0;
  return pd_json_tok_is(k, lit, n);
}
#define KEY_IS(k, lit) key_is(k, lit, sizeof lit - 1)

static int msg_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m) {
  if (KEY_IS(k, "content"))
    return text_value(s, &m->content);
  if (KEY_IS(k, "reasoning_content"))
    return text_value(s, &m->reasoning_content);
  if (KEY_IS(k, "reasoning"))
    return text_value(s, &m->reasoning);
  if (!KEY_IS(k, "tool_calls"))
    return skip_value(s);
  pd_json_tok_t v;
  int type = pd_json_next(s, &v);
  const char *start = v.s;
  if (pd_json_skip(s, &v) < 0)
    return -1;
  m->tool_calls = type == PD_JSON_ARRAY ? start : NULL;
  m->tool_calls_len = type == PD_JSON_ARRAY ? (size_t)(s->p - start) : 0;
  return 0;
}

static int choice_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m, int delta) {
  if (delta ? KEY_IS(k, "delta") : KEY_IS(k, "message")) {
    /* A repeated key: the last value counts, as in jansson's tree. */
    memset(&m->content, 0, sizeof m->content);
    m->reasoning_content = m->reasoning = m->content;
    m->tool_calls = NULL;
    m->tool_calls_len = 0;
    return object_value(s, msg_member, m) < 0 ? -1 : 0;
  }
  if (KEY_IS(k, "finish_reason"))
    return text_value(s, &m->finish_reason);
  return skip_value(s);
}

static int message_choice_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m) {
  return choice_member(s, k, m, 0);
}

static int delta_choice_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m) {
  return choice_member(s, k, m, 1);
}

static int details_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m) {
  if (KEY_IS(k, "reasoning_tokens"))
    return int_value(s, &m->reasoning_tokens, &m->has_reasoning);
  return skip_value(s);
}

static int usage_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m) {
  if (KEY_IS(k, "prompt_tokens"))
    return int_value(s, &m->prompt_tokens, &m->has_prompt);
  if (KEY_IS(k, "completion_tokens"))
    return int_value(s, &m->completion_tokens, &m->has_completion);
  if (KEY_IS(k, "completion_tokens_details")) {
    m->reasoning_tokens = 0;
    m->has_reasoning = 0;
    return object_value(s, details_member, m) < 0 ? -1 : 0;
  }
  return skip_value(s);
}

static int error_member(pd_json_scan_t *s, const pd_json_tok_t *k, pd_openai_msg_t *m) {
  if (!KEY_IS(k, "message"))
    return skip_value(s);
  pd_json_tok_t v;
  int type = pd_json_next(s, &v);
  m->error = type == PD_JSON_STRING;
  return pd_json_skip(s, &v);
}

/* The elements of "choices": the first read when it is an object, the rest checked. */
static int choices_value(pd_json_scan_t *s, pd_openai_msg_t *m, int delta) {
  memset(&m->content, 0, sizeof m->content);
  m->reasoning_content = m->reasoning = m->finish_reason = m->content;
  m->tool_calls = NULL;
  m->tool_calls_len = 0;
  m->choice = 0;
  pd_json_tok_t v;
  if (pd_json_next(s, &v) != PD_JSON_ARRAY)
    return pd_json_skip(s, &v);
  for (int i = 0;; i++) {
    int type = pd_json_next(s, &v);
    if (type == PD_JSON_ARRAY_END)
      return 0;
    if (i == 0 && type == PD_JSON_OBJECT) {
      m->choice = 1;
      if (read_object(s, delta ? delta_choice_member : message_choice_member, m) < 0)
        return -1;
    } else if (pd_json_skip(s, &v) < 0) {
      return -1;
    }
  }
}

int pd_openai_read_reply(const char *b, size_t n, int delta, pd_openai_msg_t *m) {
  memset(m, 0, sizeof *m);
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, n);
  if (pd_json_next(&s, &t) != PD_JSON_OBJECT)
    return 0;
  for (;;) {
    int type = pd_json_next(&s, &t), rc;
    if (type == PD_JSON_OBJECT_END)
      break;
    if (type != PD_JSON_KEY)
      return 0;
    if (KEY_IS(&t, "choices")) {
      rc = choices_value(&s, m, delta);
    } else if (KEY_IS(&t, "usage")) {
      m->prompt_tokens = m->completion_tokens = m->reasoning_tokens = 0;
      m->has_prompt = m->has_completion = m->has_reasoning = 0;
      rc = object_value(&s, usage_member, m);
      m->has_usage = rc == 1;
    } else if (KEY_IS(&t, "error")) {
      m->error = 0;
      rc = object_value(&s, error_member, m);
      m->error_object = rc == 1;
    } else {
      rc = skip_value(&s);
    }
    if (rc < 0)
      return 0;
  }
  return pd_json_next(&s, &t) == PD_JSON_END;
}

int pd_openai_read_usage(const char *u, size_t n, pd_openai_msg_t *m) {
  memset(m, 0, sizeof *m);
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, u, n);
  if (object_value(&s, usage_member, m) == 1 && pd_json_next(&s, &t) == PD_JSON_END) {
    m->has_usage = 1;
    return 1;
  }
  memset(m, 0, sizeof *m);
  return 0;
}

int pd_openai_text(const pd_openai_text_t *t, pd_buf_t *scratch, const char **s, size_t *n) {
  if (!t->s || !t->esc) {
    *s = t->s ? t->s : "";
    *n = t->s ? t->len : 0;
    return 0;
  }
  char *p = pd_buf_reserve(scratch, t->len);
  if (!p)
    return -1;
  size_t k = pd_json_unescape(t->s, t->len, p);
  *s = p;
  *n = k;
  pd_buf_commit(scratch, k);
  return 0;
}

int pd_openai_check_reply(const char *b, size_t n, pd_openai_reply_t *r) {
  pd_json_member_t m[3] = {
      {"error", 5, NULL, 0, 0}, {"usage", 5, NULL, 0, 0}, {"model", 5, NULL, 0, 0}};
  memset(r, 0, sizeof *r);
  if (!pd_json_check_members(b, n, m, 3))
    return 0;
  r->usage = m[1].value;
  r->usage_len = m[1].len;
  r->model = m[2].value;
  r->model_len = m[2].len;
  r->nmodel = m[2].count;
  return m[0].count ? 2 : 1;
}

int pd_openai_remodel(pd_buf_t *out, const char *b, size_t n, const pd_openai_reply_t *r,
                      const char *model) {
  pd_buf_t name;
  pd_buf_init(&name);
  size_t saved = out->len;
  int rc = append_str_or_null(&name, model);
  if (rc == 0 && r->nmodel == 1) {
    /* The usual case: the span the check found is the one to rewrite, no second pass. */
    const char *after = r->model + r->model_len;
    if (after < b + n && *after == '\0')
      after++; /* the NUL jansson drops after a number or literal: not after a string */
    rc |= pd_buf_append(out, b, (size_t)(r->model - b));
    rc |= pd_buf_append(out, pd_buf_data(&name), name.len);
    rc |= pd_buf_append(out, after, (size_t)(b + n - after));
  } else if (rc == 0 && r->nmodel > 1) {
    rc = pd_json_replace_members(out, b, n, "model", 5, pd_buf_data(&name), name.len) < 0 ? -1 : 0;
  } else if (rc == 0) {
    rc = pd_buf_append(out, b, n);
  }
  pd_buf_free(&name);
  if (rc) { /* out as it was: the caller may still relay the reply unchanged */
    out->len = saved;
    if (out->base)
      out->base[out->off + out->len] = '\0';
    return -1;
  }
  return 0;
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
  return pd_openai_completion_named(b, id, created, model, reasoning, NULL, results, n);
}

int pd_openai_completion_named(pd_buf_t *b, const char *id, long created, const char *model,
                               pd_reasoning_t reasoning, const char *const *rfields,
                               const pd_result_t *results, size_t n) {
  static const char *const deflt[] = {"reasoning_content", NULL};
  if (!rfields)
    rfields = deflt;
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
    for (size_t k = 0; reasoning == PD_REASONING_FIELD && r->reasoning_len > 0 && rfields[k]; k++) {
      rc |= pd_buf_appendf(b, ",\"%s\":", rfields[k]);
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

int pd_openai_chunk_texts(pd_buf_t *b, const pd_chunk_ctx_t *c, int index,
                          const char *const *fields, const char *text, size_t len) {
  int rc = chunk_head(b, c);
  rc |= pd_buf_appendf(b, ",\"choices\":[{\"index\":%d,\"delta\":{", index);
  for (size_t k = 0; fields[k]; k++) {
    rc |= pd_buf_appendf(b, "%s\"%s\":", k ? "," : "", fields[k]);
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
