/* The chat request scan (pd_chat_scan_body): one pass of base/json.h's tokenizer over a chat
 * request body, reading the members the relay fast path and pd_engine_validate need. The
 * tokenizer gives jansson's verdict; this file adds the request's shape rules. Owns nothing. */
#include "api/chat_scan.h"
#include "base/json.h"

#include <string.h>

enum {
  F_MODEL,
  F_MESSAGES,
  F_N,
  F_MAX_TOKENS,
  F_MAX_COMPLETION_TOKENS,
  F_STREAM,
  F_TEMPERATURE,
  F_TOP_P,
  F_TOOLS,
  F_STREAM_OPTIONS,
  F_STOP,
  F_USER,
  F_PONDER,
  F_REASONING_EFFORT,
  NFIELDS
};

static const struct {
  const char *name;
  size_t len;
} chat_fields[NFIELDS] = {
    {"model", 5},
    {"messages", 8},
    {"n", 1},
    {"max_tokens", 10},
    {"max_completion_tokens", 21},
    {"stream", 6},
    {"temperature", 11},
    {"top_p", 5},
    {"tools", 5},
    {"stream_options", 14},
    {"stop", 4},
    {"user", 4},
    {"ponder", 6},
    {"reasoning_effort", 16},
};

static int raw_is(const pd_json_tok_t *k, const char *name, size_t n) {
  return k->len == n && memcmp(k->s, name, n) == 0;
}

/* Text that may open with an inline <think> block: "<think>", or an escape that may decode to
 * it. */
static int may_think(const pd_json_tok_t *v) {
  return v->type == PD_JSON_STRING && v->len > 0 &&
         (v->s[0] == '\\' || (v->len >= 7 && memcmp(v->s, "<think>", 7) == 0));
}

/* A content array (its '[' read): *think set when a part's "text" may open with a <think>
 * block. -1 when the text is refused or a key is escaped. */
static int scan_parts(pd_json_scan_t *s, int *think) {
  pd_json_tok_t t, k, v;
  for (;;) {
    int type = pd_json_next(s, &t);
    if (type == PD_JSON_ARRAY_END)
      return 0;
    if (type <= PD_JSON_END)
      return -1;
    if (type != PD_JSON_OBJECT) {
      if (pd_json_skip(s, &t) < 0)
        return -1;
      continue;
    }
    for (;;) {
      type = pd_json_next(s, &k);
      if (type == PD_JSON_OBJECT_END)
        break;
      if (type != PD_JSON_KEY || k.esc)
        return -1;
      pd_json_next(s, &v);
      if (pd_json_skip(s, &v) < 0)
        return -1;
      *think |= raw_is(&k, "text", 4) && may_think(&v);
    }
  }
}

/* One message object (its '{' read): the types of the last "role" and "content" into
 * role/content, and *thinking set when it may hold earlier thinking the tree path removes
 * (SPEC section 5): an assistant message (or one whose role is escaped) with a
 * "reasoning_content" or "reasoning" member, or a content (or a content part's text) that
 * starts with "<think>" or with an escape, which may decode to it. Duplicate keys count whichever
 * occurrence looks so. -1 when the text is refused or a key is escaped. */
static int scan_message(pd_json_scan_t *s, int *role, int *content, int *thinking) {
  pd_json_tok_t k, v;
  int asst = 0, rkey = 0, think = 0;
  for (;;) {
    int type = pd_json_next(s, &k);
    if (type == PD_JSON_OBJECT_END) {
      *thinking = asst && (rkey || think);
      return 0;
    }
    if (type != PD_JSON_KEY || k.esc)
      return -1;
    pd_json_next(s, &v);
    if (v.type == PD_JSON_ARRAY && raw_is(&k, "content", 7)) {
      *content = v.type;
      if (scan_parts(s, &think) < 0)
        return -1;
      continue;
    }
    if (pd_json_skip(s, &v) < 0)
      return -1;
    if (raw_is(&k, "role", 4)) {
      *role = v.type;
      asst |= v.type == PD_JSON_STRING && (v.esc || raw_is(&v, "assistant", 9));
    } else if (raw_is(&k, "content", 7)) {
      *content = v.type;
      think |= may_think(&v);
    } else if (raw_is(&k, "reasoning_content", 17) || raw_is(&k, "reasoning", 9)) {
      rkey = 1;
    }
  }
}

/* The "messages" array (its '[' read): 1 when it has at least one element and each is an
 * object with a string "role" and a string, array or null "content" (or none), and none may
 * hold earlier thinking; 0 when not (the tree path decides), -1 when refused. */
static int scan_messages(pd_json_scan_t *s) {
  pd_json_tok_t t;
  int ok = 1;
  size_t n = 0;
  for (;; n++) {
    int type = pd_json_next(s, &t);
    if (type == PD_JSON_ARRAY_END)
      return ok && n > 0;
    if (type != PD_JSON_OBJECT) {
      ok = 0;
      if (pd_json_skip(s, &t) < 0)
        return -1;
      continue;
    }
    int role = PD_JSON_END, content = PD_JSON_END, thinking = 0;
    if (scan_message(s, &role, &content, &thinking) < 0)
      return -1;
    if (role != PD_JSON_STRING || thinking ||
        !(content == PD_JSON_END || content == PD_JSON_STRING || content == PD_JSON_ARRAY ||
          content == PD_JSON_NULL))
      ok = 0;
  }
}

/* A "stop" array (its '[' read): 1 when every element is a string, 0 when not, -1 refused. */
static int scan_stop(pd_json_scan_t *s) {
  pd_json_tok_t t;
  int ok = 1;
  for (;;) {
    int type = pd_json_next(s, &t);
    if (type == PD_JSON_ARRAY_END)
      return ok;
    if (type != PD_JSON_STRING)
      ok = 0;
    if (pd_json_skip(s, &t) < 0)
      return -1;
  }
}

/* "stream_options" (its '{' read): whether the last "include_usage" is true; -1 when refused
 * or a key is escaped. */
static int scan_options(pd_json_scan_t *s) {
  pd_json_tok_t k, v;
  int include_usage = 0;
  for (;;) {
    int type = pd_json_next(s, &k);
    if (type == PD_JSON_OBJECT_END)
      return include_usage;
    if (type != PD_JSON_KEY || k.esc)
      return -1;
    pd_json_next(s, &v);
    if (pd_json_skip(s, &v) < 0)
      return -1;
    if (raw_is(&k, "include_usage", 13))
      include_usage = v.type == PD_JSON_TRUE;
  }
}

int pd_chat_scan_body(const char *b, size_t n, pd_chat_scan_t *out) {
  pd_json_scan_t s;
  pd_json_tok_t k, v, f[NFIELDS];
  int messages_ok = 0, stop_ok = 0, include_usage = 0;
  for (int i = 0; i < NFIELDS; i++)
    f[i].type = PD_JSON_END; /* absent */
  pd_json_scan_init(&s, b, n);
  if (pd_json_next(&s, &k) != PD_JSON_OBJECT)
    return 0;
  for (;;) {
    int type = pd_json_next(&s, &k);
    if (type == PD_JSON_OBJECT_END)
      break;
    if (type != PD_JSON_KEY || k.esc)
      return 0;
    int i = 0;
    while (i < NFIELDS && !raw_is(&k, chat_fields[i].name, chat_fields[i].len))
      i++;
    pd_json_next(&s, &v);
    int rc = 0;
    if (i == F_MESSAGES && v.type == PD_JSON_ARRAY)
      rc = messages_ok = scan_messages(&s);
    else if (i == F_STOP && v.type == PD_JSON_ARRAY)
      rc = stop_ok = scan_stop(&s);
    else if (i == F_STREAM_OPTIONS && v.type == PD_JSON_OBJECT)
      rc = include_usage = scan_options(&s);
    else
      rc = pd_json_skip(&s, &v);
    if (rc < 0)
      return 0;
    if (i < NFIELDS)
      f[i] = v;
  }
  if (pd_json_next(&s, &k) != PD_JSON_END)
    return 0;
    /* pd_engine_validate's rules, and a string model (start_chat); null counts as absent. */
#define ABSENT(i) (f[i].type == PD_JSON_END || f[i].type == PD_JSON_NULL)
#define IS(i, t) (f[i].type == PD_JSON_##t)
  if (!IS(F_MESSAGES, ARRAY) || !messages_ok)
    return 0;
  if (!IS(F_MODEL, STRING) || f[F_MODEL].esc)
    return 0;
  if (!ABSENT(F_N) && (!IS(F_N, INTEGER) || f[F_N].ival < 1 || f[F_N].ival > 128))
    return 0;
  if (!ABSENT(F_MAX_TOKENS) && (!IS(F_MAX_TOKENS, INTEGER) || f[F_MAX_TOKENS].ival < 1))
    return 0;
  if (!ABSENT(F_MAX_COMPLETION_TOKENS) &&
      (!IS(F_MAX_COMPLETION_TOKENS, INTEGER) || f[F_MAX_COMPLETION_TOKENS].ival < 1))
    return 0;
  if (!ABSENT(F_STREAM) && !IS(F_STREAM, TRUE) && !IS(F_STREAM, FALSE))
    return 0;
  if (!ABSENT(F_TEMPERATURE) && !IS(F_TEMPERATURE, INTEGER) && !IS(F_TEMPERATURE, REAL))
    return 0;
  if (!ABSENT(F_TOP_P) && !IS(F_TOP_P, INTEGER) && !IS(F_TOP_P, REAL))
    return 0;
  if (!ABSENT(F_TOOLS) && !IS(F_TOOLS, ARRAY))
    return 0;
  if (!ABSENT(F_STREAM_OPTIONS) && !IS(F_STREAM_OPTIONS, OBJECT))
    return 0;
  if (!ABSENT(F_STOP) && !IS(F_STOP, STRING) && !(IS(F_STOP, ARRAY) && stop_ok))
    return 0;
  if (!IS(F_PONDER, END) || !IS(F_REASONING_EFFORT, END))
    return 0;
  if (IS(F_USER, STRING) && f[F_USER].esc)
    return 0;
  out->model = f[F_MODEL].s;
  out->model_len = f[F_MODEL].len;
  out->user = IS(F_USER, STRING) ? f[F_USER].s : NULL;
  out->user_len = IS(F_USER, STRING) ? f[F_USER].len : 0;
  out->stream = IS(F_STREAM, TRUE);
  out->include_usage = IS(F_STREAM_OPTIONS, OBJECT) && include_usage;
  return 1;
#undef ABSENT
#undef IS
}
