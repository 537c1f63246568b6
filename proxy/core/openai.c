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

static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* Bytes that end a plain run in scan_string: '"', '\\' and controls. */
static const unsigned char check_special[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

/* A string starting at the opening quote; returns the byte after the closing quote or NULL. */
static const char *scan_string(const char *p, const char *e) {
  for (p++; p < e; p++) {
    while (p < e && !check_special[(unsigned char)*p])
      p++;
    if (p >= e)
      return NULL;
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
  return pd_json_check_reply(b, n, NULL, NULL);
}

int pd_json_check_reply(const char *b, size_t n, const char **usage, size_t *usage_len) {
  const char *p = b, *e = b + n;
  char stack[64]; /* '{' or '[' per open container */
  int depth = 0, has_error = 0;
  /* The top-level "usage" value: seen its key (1), inside its value (2). */
  int in_usage = 0;
  const char *ustart = NULL, *uend = NULL;
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
      if (in_usage == 1) {
        ustart = p;
        in_usage = 2;
      }
      if (c == '{' || c == '[') {
        if (depth == (int)sizeof stack)
          return 0;
        stack[depth++] = c;
        p = skip_ws(p + 1, e);
        if (p < e && *p == (c == '{' ? '}' : ']')) {
          depth--;
          p++;
          want_value = 0;
          if (in_usage == 2 && depth == 1) {
            uend = p;
            in_usage = 0;
          }
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
      if (in_usage == 2 && depth == 1) {
        uend = p;
        in_usage = 0;
      }
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
      if (in_usage == 2 && depth == 1) {
        uend = p;
        in_usage = 0;
      }
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
      if (depth == 1 && p - k == 7 && memcmp(k, "\"usage\"", 7) == 0)
        in_usage = 1;
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
  if (usage) {
    *usage = uend ? ustart : NULL;
    *usage_len = uend ? (size_t)(uend - ustart) : 0;
  }
  return has_error ? 2 : 1;
}

/* ---- a compact JSON writer ------------------------------------------------------------------ */

static int write_json(pd_buf_t *out, const json_t *v, int depth) {
  if (depth > PD_JSON_WRITE_MAX_DEPTH)
    return -1;
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    if (pd_buf_append(out, "{", 1) < 0)
      return -1;
    int first = 1;
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
      if (!first && pd_buf_append(out, ",", 1) < 0)
        return -1;
      first = 0;
      if (pd_buf_append_json_str(out, json_object_iter_key(it), json_object_iter_key_len(it)) < 0 ||
          pd_buf_append(out, ":", 1) < 0 ||
          write_json(out, json_object_iter_value(it), depth + 1) < 0)
        return -1;
    }
    return pd_buf_append(out, "}", 1);
  }
  case JSON_ARRAY: {
    if (pd_buf_append(out, "[", 1) < 0)
      return -1;
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
      if ((i && pd_buf_append(out, ",", 1) < 0) ||
          write_json(out, json_array_get(v, i), depth + 1) < 0)
        return -1;
    }
    return pd_buf_append(out, "]", 1);
  }
  case JSON_STRING:
    return pd_buf_append_json_str(out, json_string_value(v), json_string_length(v));
  case JSON_INTEGER: {
    char num[24];
    size_t k = pd_buf_fmt_long(num, (long)json_integer_value(v));
    return pd_buf_append(out, num, k);
  }
  case JSON_REAL: {
    /* Rare in request bodies (temperature, top_p): let jansson format it, so that every
     * digit matches what it writes. */
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s)
      return -1;
    int rc = pd_buf_appends(out, s);
    free(s);
    return rc;
  }
  case JSON_TRUE:
    return pd_buf_append(out, "true", 4);
  case JSON_FALSE:
    return pd_buf_append(out, "false", 5);
  default:
    return pd_buf_append(out, "null", 4);
  }
}

int pd_json_write(pd_buf_t *out, const json_t *v) {
  return write_json(out, v, 0);
}

/* ---- chat request scan (pd_chat_req_scan) ---------------------------------------------------
 * A strict reader: anything json_loadb (flags 0) rejects is rejected here too, so that a body it
 * accepts is parsed identically. Rules taken from jansson 2.14's load.c: UTF-8 checked (no
 * overlongs, surrogates or values over U+10FFFF), no control characters in strings, escapes
 * limited to \" \\ \/ \b \f \n \r \t \uXXXX with paired surrogates and no \u0000, integers within
 * long long, reals that do not overflow a double. */

typedef struct jsc {
  const char *p, *e;
  int depth;
} jsc_t;

enum { JT_NONE = 0, JT_OBJ, JT_ARR, JT_STR, JT_INT, JT_REAL, JT_TRUE, JT_FALSE, JT_NULL };

#define JSC_MAX_DEPTH 64

typedef struct jsc_val {
  int type;
  const char *str; /* JT_STR: the raw bytes between the quotes */
  size_t len;
  int esc; /* JT_STR: has a backslash escape */
  long long ival;
} jsc_val_t;

static void jsc_ws(jsc_t *s) {
  while (s->p < s->e && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

/* Bytes that end a plain run inside a string: '"', '\\', controls and non-ASCII. */
static const unsigned char str_special[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xff] = 1,
};

static int hex4(const unsigned char *p, const unsigned char *e, unsigned *out) {
  if (e - p < 4)
    return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  *out = v;
  return 0;
}

static int jsc_string(jsc_t *s, jsc_val_t *v) {
  const unsigned char *p = (const unsigned char *)s->p + 1, *e = (const unsigned char *)s->e;
  const unsigned char *start = p;
  int esc = 0;
  for (;;) {
    while (p < e && !str_special[*p])
      p++;
    if (p >= e)
      return -1;
    unsigned c = *p;
    if (c == '"')
      break;
    if (c < 0x20)
      return -1;
    if (c == '\\') {
      esc = 1;
      if (++p >= e)
        return -1;
      switch (*p) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        p++;
        continue;
      case 'u':
        break;
      default:
        return -1;
      }
      unsigned u, u2;
      if (hex4(p + 1, e, &u) < 0 || u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
        return -1;
      p += 5;
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, e, &u2) < 0 || u2 < 0xDC00 ||
            u2 > 0xDFFF)
          return -1;
        p += 6;
      }
      continue;
    }
    size_t l = pd_utf8_seq(p, (size_t)(e - p));
    if (!l)
      return -1;
    p += l;
  }
  v->type = JT_STR;
  v->str = (const char *)start;
  v->len = (size_t)(p - start);
  v->esc = esc;
  s->p = (const char *)p + 1;
  return 0;
}

static int is_digit(const char *p, const char *e) {
  return p < e && *p >= '0' && *p <= '9';
}

static int jsc_number(jsc_t *s, jsc_val_t *v) {
  const char *p = s->p, *e = s->e;
  int neg = 0, real = 0;
  if (p < e && *p == '-') {
    neg = 1;
    p++;
  }
  const char *ds = p;
  if (p < e && *p == '0')
    p++;
  else if (is_digit(p, e))
    while (is_digit(p, e))
      p++;
  else
    return -1;
  size_t idig = (size_t)(p - ds);
  long exp10 = 0;
  if (p < e && *p == '.') {
    real = 1;
    if (!is_digit(++p, e))
      return -1;
    while (is_digit(p, e))
      p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    real = 1;
    p++;
    int eneg = 0;
    if (p < e && (*p == '+' || *p == '-'))
      eneg = *p++ == '-';
    if (!is_digit(p, e))
      return -1;
    while (is_digit(p, e)) {
      if (exp10 < 100000)
        exp10 = exp10 * 10 + (*p - '0');
      p++;
    }
    if (eneg)
      exp10 = 0; /* an underflow is no error for jansson */
  }
  if (real) {
    /* |value| < 10^(idig + exp10): far below DBL_MAX when that is at most 300. */
    if ((long)idig + exp10 > 300)
      return -1;
    v->type = JT_REAL;
  } else {
    if (idig > 18) /* might not fit json_int_t (long long): let jansson decide */
      return -1;
    long long x = 0;
    for (const char *q = ds; q < p; q++)
      x = x * 10 + (*q - '0');
    v->type = JT_INT;
    v->ival = neg ? -x : x;
  }
  s->p = p;
  return 0;
}

typedef int (*jsc_member_fn)(void *ud, jsc_t *s, const jsc_val_t *key);
typedef int (*jsc_elem_fn)(void *ud, jsc_t *s);

static int jsc_value(jsc_t *s, jsc_val_t *v);

/* After a member or element: 1 after a ',' (another follows), 0 after `close` (the container
 * ends), -1 for anything else. */
static int jsc_after_item(jsc_t *s, char close) {
  jsc_ws(s);
  if (s->p >= s->e)
    return -1;
  if (*s->p == ',') {
    s->p++;
    jsc_ws(s);
    return 1;
  }
  if (*s->p != close)
    return -1;
  s->p++;
  s->depth--;
  return 0;
}

/* An object at s->p == '{'. fn gets each key with s->p at the value and must consume it. */
static int jsc_object(jsc_t *s, jsc_member_fn fn, void *ud) {
  if (++s->depth > JSC_MAX_DEPTH)
    return -1;
  s->p++;
  jsc_ws(s);
  if (s->p < s->e && *s->p == '}') {
    s->p++;
    s->depth--;
    return 0;
  }
  for (;;) {
    jsc_val_t key;
    if (s->p >= s->e || *s->p != '"' || jsc_string(s, &key) < 0)
      return -1;
    jsc_ws(s);
    if (s->p >= s->e || *s->p != ':')
      return -1;
    s->p++;
    jsc_ws(s);
    if (fn) {
      if (fn(ud, s, &key) < 0)
        return -1;
    } else {
      jsc_val_t v;
      if (jsc_value(s, &v) < 0)
        return -1;
    }
    int more = jsc_after_item(s, '}');
    if (more <= 0)
      return more;
  }
}

/* An array at s->p == '['. fn gets each element at s->p and must consume it. */
static int jsc_array(jsc_t *s, jsc_elem_fn fn, void *ud) {
  if (++s->depth > JSC_MAX_DEPTH)
    return -1;
  s->p++;
  jsc_ws(s);
  if (s->p < s->e && *s->p == ']') {
    s->p++;
    s->depth--;
    return 0;
  }
  for (;;) {
    if (fn) {
      if (fn(ud, s) < 0)
        return -1;
    } else {
      jsc_val_t v;
      if (jsc_value(s, &v) < 0)
        return -1;
    }
    int more = jsc_after_item(s, ']');
    if (more <= 0)
      return more;
  }
}

static int jsc_literal(jsc_t *s, const char *lit, size_t n, int type, jsc_val_t *v) {
  if ((size_t)(s->e - s->p) < n || memcmp(s->p, lit, n) != 0)
    return -1;
  s->p += n;
  v->type = type;
  return 0;
}

/* Any value at s->p (blanks skipped); containers are checked and skipped. */
static int jsc_value(jsc_t *s, jsc_val_t *v) {
  if (s->p >= s->e)
    return -1;
  switch (*s->p) {
  case '{':
    v->type = JT_OBJ;
    return jsc_object(s, NULL, NULL);
  case '[':
    v->type = JT_ARR;
    return jsc_array(s, NULL, NULL);
  case '"':
    return jsc_string(s, v);
  case 't':
    return jsc_literal(s, "true", 4, JT_TRUE, v);
  case 'f':
    return jsc_literal(s, "false", 5, JT_FALSE, v);
  case 'n':
    return jsc_literal(s, "null", 4, JT_NULL, v);
  default:
    return jsc_number(s, v);
  }
}

static int key_is(const jsc_val_t *k, const char *name, size_t n) {
  return k->len == n && memcmp(k->str, name, n) == 0;
}

/* One message: an object with a string "role" and a string, array or null "content". */
typedef struct msg_scan {
  int role, content; /* JT_* of the last occurrence */
} msg_scan_t;

static int msg_member(void *ud, jsc_t *s, const jsc_val_t *key) {
  msg_scan_t *m = ud;
  if (key->esc)
    return -1;
  jsc_val_t v;
  if (jsc_value(s, &v) < 0)
    return -1;
  if (key_is(key, "role", 4))
    m->role = v.type;
  else if (key_is(key, "content", 7))
    m->content = v.type;
  return 0;
}

typedef struct msgs_scan {
  size_t n;
  int ok;
} msgs_scan_t;

static int msgs_elem(void *ud, jsc_t *s) {
  msgs_scan_t *ms = ud;
  ms->n++;
  if (s->p >= s->e || *s->p != '{') {
    jsc_val_t v;
    ms->ok = 0;
    return jsc_value(s, &v);
  }
  msg_scan_t m = {JT_NONE, JT_NONE};
  if (jsc_object(s, msg_member, &m) < 0)
    return -1;
  if (m.role != JT_STR ||
      !(m.content == JT_NONE || m.content == JT_STR || m.content == JT_ARR || m.content == JT_NULL))
    ms->ok = 0;
  return 0;
}

static int stop_elem(void *ud, jsc_t *s) {
  jsc_val_t v;
  if (jsc_value(s, &v) < 0)
    return -1;
  if (v.type != JT_STR)
    *(int *)ud = 0;
  return 0;
}

static int opts_member(void *ud, jsc_t *s, const jsc_val_t *key) {
  if (key->esc)
    return -1;
  jsc_val_t v;
  if (jsc_value(s, &v) < 0)
    return -1;
  if (key_is(key, "include_usage", 13))
    *(int *)ud = v.type == JT_TRUE;
  return 0;
}

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

typedef struct chat_scan {
  jsc_val_t f[NFIELDS]; /* type JT_NONE when absent */
  int messages_ok, stop_ok, include_usage;
} chat_scan_t;

static int chat_member(void *ud, jsc_t *s, const jsc_val_t *key) {
  chat_scan_t *c = ud;
  if (key->esc)
    return -1;
  int f = 0;
  while (f < NFIELDS && !key_is(key, chat_fields[f].name, chat_fields[f].len))
    f++;
  if (f == NFIELDS) {
    jsc_val_t v;
    return jsc_value(s, &v);
  }
  jsc_val_t *v = &c->f[f];
  char first = s->p < s->e ? *s->p : 0;
  if (f == F_MESSAGES && first == '[') {
    msgs_scan_t ms = {0, 1};
    v->type = JT_ARR;
    if (jsc_array(s, msgs_elem, &ms) < 0)
      return -1;
    c->messages_ok = ms.ok && ms.n > 0;
    return 0;
  }
  if (f == F_STOP && first == '[') {
    c->stop_ok = 1;
    v->type = JT_ARR;
    return jsc_array(s, stop_elem, &c->stop_ok);
  }
  if (f == F_STREAM_OPTIONS && first == '{') {
    c->include_usage = 0;
    v->type = JT_OBJ;
    return jsc_object(s, opts_member, &c->include_usage);
  }
  return jsc_value(s, v);
}

int pd_chat_req_scan(const char *b, size_t n, pd_chat_req_t *out) {
  jsc_t s = {b, b + n, 0};
  chat_scan_t c;
  memset(&c, 0, sizeof c);
  jsc_ws(&s);
  if (s.p >= s.e || *s.p != '{' || jsc_object(&s, chat_member, &c) < 0)
    return 0;
  jsc_ws(&s);
  if (s.p != s.e)
    return 0;
  /* pd_engine_validate's rules, and a string model (start_chat); null counts as absent. */
  const jsc_val_t *f = c.f;
#define ABSENT(i) (f[i].type == JT_NONE || f[i].type == JT_NULL)
  if (f[F_MESSAGES].type != JT_ARR || !c.messages_ok)
    return 0;
  if (f[F_MODEL].type != JT_STR || f[F_MODEL].esc)
    return 0;
  if (!ABSENT(F_N) && (f[F_N].type != JT_INT || f[F_N].ival < 1 || f[F_N].ival > 128))
    return 0;
  if (!ABSENT(F_MAX_TOKENS) && (f[F_MAX_TOKENS].type != JT_INT || f[F_MAX_TOKENS].ival < 1))
    return 0;
  if (!ABSENT(F_MAX_COMPLETION_TOKENS) &&
      (f[F_MAX_COMPLETION_TOKENS].type != JT_INT || f[F_MAX_COMPLETION_TOKENS].ival < 1))
    return 0;
  if (!ABSENT(F_STREAM) && f[F_STREAM].type != JT_TRUE && f[F_STREAM].type != JT_FALSE)
    return 0;
  if (!ABSENT(F_TEMPERATURE) && f[F_TEMPERATURE].type != JT_INT && f[F_TEMPERATURE].type != JT_REAL)
    return 0;
  if (!ABSENT(F_TOP_P) && f[F_TOP_P].type != JT_INT && f[F_TOP_P].type != JT_REAL)
    return 0;
  if (!ABSENT(F_TOOLS) && f[F_TOOLS].type != JT_ARR)
    return 0;
  if (!ABSENT(F_STREAM_OPTIONS) && f[F_STREAM_OPTIONS].type != JT_OBJ)
    return 0;
  if (!ABSENT(F_STOP) && f[F_STOP].type != JT_STR && !(f[F_STOP].type == JT_ARR && c.stop_ok))
    return 0;
#undef ABSENT
  if (f[F_PONDER].type != JT_NONE || f[F_REASONING_EFFORT].type != JT_NONE)
    return 0;
  if (f[F_USER].type == JT_STR && f[F_USER].esc)
    return 0;
  out->model = f[F_MODEL].str;
  out->model_len = f[F_MODEL].len;
  out->user = f[F_USER].type == JT_STR ? f[F_USER].str : NULL;
  out->user_len = f[F_USER].type == JT_STR ? f[F_USER].len : 0;
  out->stream = f[F_STREAM].type == JT_TRUE;
  out->include_usage = f[F_STREAM_OPTIONS].type == JT_OBJ && c.include_usage;
  return 1;
}

/* ---- upstream reply reader (pd_json_load_reply) ---------------------------------------------
 * The jsc rules again, now building jansson values, but only for the members the forcing engine
 * reads. Whatever jsc is unsure of (escaped keys, long numbers, deep nesting, a top level that
 * is not an object) goes to json_loadb, which then decides. */

enum { RK_ALL, RK_OBJ, RK_FIRST };

typedef struct rkeep {
  const char *key;
  size_t len;
  int kind;                /* RK_ALL: the whole value; RK_OBJ: an object built per sub;
                              RK_FIRST: an array of which only element 0 is built, per sub */
  const struct rkeep *sub; /* terminated by a NULL key */
} rkeep_t;

static const rkeep_t reply_msg[] = {{"content", 7, RK_ALL, NULL},
                                    {"reasoning_content", 17, RK_ALL, NULL},
                                    {"reasoning", 9, RK_ALL, NULL},
                                    {"tool_calls", 10, RK_ALL, NULL},
                                    {NULL, 0, 0, NULL}};
static const rkeep_t reply_choice[] = {{"message", 7, RK_OBJ, reply_msg},
                                       {"delta", 5, RK_OBJ, reply_msg},
                                       {"text", 4, RK_ALL, NULL},
                                       {"finish_reason", 13, RK_ALL, NULL},
                                       {NULL, 0, 0, NULL}};
static const rkeep_t reply_top[] = {{"choices", 7, RK_FIRST, reply_choice},
                                    {"usage", 5, RK_ALL, NULL},
                                    {"error", 5, RK_ALL, NULL},
                                    {NULL, 0, 0, NULL}};

/* Decodes the escapes of a string jsc_string accepted into out (at least len bytes). */
static size_t jsc_unescape(const char *raw, size_t len, char *out) {
  const unsigned char *p = (const unsigned char *)raw, *e = p + len;
  char *o = out;
  while (p < e) {
    if (*p != '\\') {
      *o++ = (char)*p++;
      continue;
    }
    p++;
    char c = (char)*p++;
    switch (c) {
    case 'b':
      *o++ = '\b';
      break;
    case 'f':
      *o++ = '\f';
      break;
    case 'n':
      *o++ = '\n';
      break;
    case 'r':
      *o++ = '\r';
      break;
    case 't':
      *o++ = '\t';
      break;
    case 'u': {
      unsigned u, u2;
      hex4(p, e, &u);
      p += 4;
      if (u >= 0xD800 && u <= 0xDBFF) {
        hex4(p + 2, e, &u2);
        p += 6;
        u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00);
      }
      if (u < 0x80) {
        *o++ = (char)u;
      } else if (u < 0x800) {
        *o++ = (char)(0xC0 | (u >> 6));
        *o++ = (char)(0x80 | (u & 0x3F));
      } else if (u < 0x10000) {
        *o++ = (char)(0xE0 | (u >> 12));
        *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (char)(0x80 | (u & 0x3F));
      } else {
        *o++ = (char)(0xF0 | (u >> 18));
        *o++ = (char)(0x80 | ((u >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (char)(0x80 | (u & 0x3F));
      }
      break;
    }
    default: /* '"', '\\', '/' */
      *o++ = c;
    }
  }
  return (size_t)(o - out);
}

static json_t *jsc_string_json(const jsc_val_t *v) {
  if (!v->esc)
    return json_stringn_nocheck(v->str, v->len);
  char small[256];
  char *buf = v->len <= sizeof small ? small : malloc(v->len);
  if (!buf)
    return NULL;
  json_t *j = json_stringn_nocheck(buf, jsc_unescape(v->str, v->len, buf));
  if (buf != small)
    free(buf);
  return j;
}

static json_t *jsc_build(jsc_t *s, const rkeep_t *spec, int kind);

/* The members of an object at s->p == '{': those in spec built (escaped keys: unsure), the others
 * checked and skipped; spec NULL builds every member. */
static json_t *jsc_build_object(jsc_t *s, const rkeep_t *spec) {
  if (++s->depth > JSC_MAX_DEPTH)
    return NULL;
  json_t *o = json_object();
  if (!o)
    return NULL;
  s->p++;
  jsc_ws(s);
  if (s->p < s->e && *s->p == '}') {
    s->p++;
    s->depth--;
    return o;
  }
  for (;;) {
    jsc_val_t key;
    if (s->p >= s->e || *s->p != '"' || jsc_string(s, &key) < 0 || key.esc)
      goto fail;
    jsc_ws(s);
    if (s->p >= s->e || *s->p != ':')
      goto fail;
    s->p++;
    jsc_ws(s);
    const rkeep_t *k = spec;
    while (k && k->key && !key_is(&key, k->key, k->len))
      k++;
    if (k && !k->key) {
      jsc_val_t v;
      if (jsc_value(s, &v) < 0)
        goto fail;
    } else {
      json_t *v = jsc_build(s, k ? k->sub : NULL, k ? k->kind : RK_ALL);
      if (!v || json_object_setn_new_nocheck(o, key.str, key.len, v) < 0)
        goto fail;
    }
    int more = jsc_after_item(s, '}');
    if (more < 0)
      goto fail;
    if (more == 0)
      return o;
  }
fail:
  json_decref(o);
  return NULL;
}

/* An array at s->p == '[': every element built, or only element 0 (per spec) when first. */
static json_t *jsc_build_array(jsc_t *s, const rkeep_t *spec, int first) {
  if (++s->depth > JSC_MAX_DEPTH)
    return NULL;
  json_t *a = json_array();
  if (!a)
    return NULL;
  s->p++;
  jsc_ws(s);
  if (s->p < s->e && *s->p == ']') {
    s->p++;
    s->depth--;
    return a;
  }
  for (size_t i = 0;; i++) {
    if (first && i > 0) {
      jsc_val_t v;
      if (jsc_value(s, &v) < 0)
        goto fail;
    } else {
      json_t *v = jsc_build(s, spec, first ? RK_OBJ : RK_ALL);
      if (!v || json_array_append_new(a, v) < 0)
        goto fail;
    }
    int more = jsc_after_item(s, ']');
    if (more < 0)
      goto fail;
    if (more == 0)
      return a;
  }
fail:
  json_decref(a);
  return NULL;
}

/* One value at s->p. kind says how much of it to build (an RK_OBJ or RK_FIRST spec applies only
 * when the value is an object or an array respectively; any other value is built whole). */
static json_t *jsc_build(jsc_t *s, const rkeep_t *spec, int kind) {
  if (s->p >= s->e)
    return NULL;
  char c = *s->p;
  if (c == '{')
    return jsc_build_object(s, kind == RK_OBJ ? spec : NULL);
  if (c == '[')
    return jsc_build_array(s, kind == RK_FIRST ? spec : NULL, kind == RK_FIRST);
  const char *start = s->p;
  jsc_val_t v;
  if (jsc_value(s, &v) < 0)
    return NULL;
  switch (v.type) {
  case JT_STR:
    return jsc_string_json(&v);
  case JT_INT:
    return json_integer((json_int_t)v.ival);
  case JT_REAL: {
    char num[64];
    size_t n = (size_t)(s->p - start);
    if (n >= sizeof num)
      return NULL;
    memcpy(num, start, n);
    num[n] = '\0';
    return json_real(strtod(num, NULL));
  }
  case JT_TRUE:
    return json_true();
  case JT_FALSE:
    return json_false();
  default:
    return json_null();
  }
}

/* An object read per spec (NULL: whole), else whatever json_loadb makes of the text. */
static json_t *load_object(const char *b, size_t n, const rkeep_t *spec, json_error_t *err) {
  jsc_t s = {b, b + n, 0};
  jsc_ws(&s);
  if (s.p < s.e && *s.p == '{') {
    json_t *j = jsc_build_object(&s, spec);
    if (j) {
      jsc_ws(&s);
      if (s.p == s.e)
        return j;
      json_decref(j);
    }
  }
  return json_loadb(b, n, 0, err);
}

json_t *pd_json_load(const char *b, size_t n, json_error_t *err) {
  return load_object(b, n, NULL, err);
}

json_t *pd_json_load_reply(const char *b, size_t n) {
  return load_object(b, n, reply_top, NULL);
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
