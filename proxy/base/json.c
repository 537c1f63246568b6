/* The one JSON module: the tokenizer (pd_json_next) that decides, for every reader in ponder,
 * whether a text is JSON exactly as jansson 2.14's json_loadb(b, n, 0) decides, and what is
 * built on it: validation with member spans (the relay), member replacement (the relay's model
 * remap), tree loaders (request bodies, upstream replies) and the compact writer. Owns no
 * memory beyond the trees it returns. The rules are jansson 2.14's behaviour (its load.c
 * read, then established case by case against json_loadb by tests/unit/base/test_json.c and
 * tests/fuzz/fuzz_json.c). */
/* pd_json_next (json.h) calls the helpers below inline here, through their static versions. */
#define PD_JSON_STRING_END scan_string
#define PD_JSON_NUMBER_END scan_number
#include <stddef.h>
struct pd_json_tok;
static inline const char *scan_string(const char *sp, const char *se, int *esc);
static inline const char *scan_number(const char *p, const char *e, struct pd_json_tok *t);
#include "base/json.h"
#include "base/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The blanks jansson skips between tokens. */
const unsigned char pd_json_blank_[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

/* Bytes that end a plain run inside a string: '"', '\\', controls and non-ASCII. */
static const unsigned char str_special[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xff] = 1,
};

static int hexval(unsigned c) {
  if (c >= '0' && c <= '9')
    return (int)(c - '0');
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return (int)(c - 'a' + 10);
  return -1;
}

/* The 4 hex digits at p (e bounds them); -1 when they are not 4 hex digits. */
static long hex4(const unsigned char *p, const unsigned char *e) {
  if (e - p < 4)
    return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return -1;
    v = (v << 4) | h;
  }
  return v;
}

/* A string's body from p (just after the opening quote): returns the closing quote, or NULL
 * where json_loadb refuses it (controls, bad escapes, \u0000, unpaired surrogates, UTF-8 that
 * pd_utf8_seq refuses, no closing quote). *esc is set when a backslash was seen. */
/* The 8-byte skip over a string's plain bytes reads them little-endian. */
#define PD_JSON_LE (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* The bytes of v (little-endian) that are '"', '\\', controls or non-ASCII, as their high bits.
 * A borrow can flag a byte above a flagged one as well, never below: the lowest flag is a
 * true one. */
static inline uint64_t special8(uint64_t v) {
  uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
  return (((q - ONES) & ~q) | ((b - ONES) & ~b) | (v - ONES * 0x20) | v) & HIGHS;
}

static inline __attribute__((always_inline)) const char *scan_string(const char *sp, const char *se,
                                                                     int *esc) {
  const unsigned char *p = (const unsigned char *)sp, *e = (const unsigned char *)se;
  for (;;) {
    if (PD_JSON_LE && e - p >= 8) {
      uint64_t v;
      memcpy(&v, p, 8);
      uint64_t m = special8(v);
      if (!m) {
        p += 8;
        continue;
      }
      p += __builtin_ctzll(m) >> 3; /* the lowest flag is always a true one */
    } else {
      while (p < e && !str_special[*p])
        p++;
      if (p >= e)
        return NULL;
    }
    unsigned c = *p;
    if (c == '"')
      return (const char *)p;
    if (c < 0x20)
      return NULL;
    if (c == '\\') {
      *esc = 1;
      if (++p >= e)
        return NULL;
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
        return NULL;
      }
      long u = hex4(p + 1, e);
      if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF)) /* \u0000: a NUL jansson does not allow */
        return NULL;
      p += 5;
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (e - p < 2 || p[0] != '\\' || p[1] != 'u')
          return NULL;
        long u2 = hex4(p + 2, e);
        if (u2 < 0xDC00 || u2 > 0xDFFF)
          return NULL;
        p += 6;
      }
      continue;
    }
    size_t l = pd_utf8_seq(p, (size_t)(e - p));
    if (!l)
      return NULL;
    p += l;
  }
}

/* The decimal text of a number as "[-]DIGITSeEXP" without a '.', so strtod reads the same
 * value whatever the locale's decimal point (jansson converts '.' to it). */
static __attribute__((noinline)) int real_of(const char *s, size_t len, double *out) {
  char small[128];
  char *buf = len + 32 <= sizeof small ? small : malloc(len + 32);
  if (!buf)
    return -1;
  const char *p = s, *e = s + len;
  char *o = buf;
  if (*p == '-')
    *o++ = *p++;
  long long frac = 0, ex = 0;
  while (p < e && *p >= '0' && *p <= '9')
    *o++ = *p++;
  if (p < e && *p == '.')
    for (p++; p < e && *p >= '0' && *p <= '9'; frac++)
      *o++ = *p++;
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    int neg = p < e && *p == '-';
    if (p < e && (*p == '+' || *p == '-'))
      p++;
    for (; p < e; p++)
      if (ex < 1000000000000000LL) /* beyond any double's range, whatever the digit count */
        ex = ex * 10 + (*p - '0');
    if (neg)
      ex = -ex;
  }
  snprintf(o, 24, "e%lld", ex - frac);
  errno = 0;
  double v = strtod(buf, NULL);
  int overflow = (v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE;
  if (buf != small)
    free(buf);
  *out = v;
  return overflow ? 1 : 0;
}

#define DIGIT(p, e) ((p) < (e) && *(p) >= '0' && *(p) <= '9')

/* A number at p; returns the byte after it, or NULL where json_loadb refuses it (bad syntax,
 * an integer outside long long, a real that overflows a double). */
static inline __attribute__((always_inline)) const char *scan_number(const char *p, const char *e,
                                                                     pd_json_tok_t *t) {
  const char *s = p;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  const char *ds = p;
  unsigned long long v = 0;
  if (p < e && *p == '0')
    p++;
  else if (DIGIT(p, e))
    while (DIGIT(p, e))
      v = v * 10 + (unsigned)(*p++ - '0'); /* wraps past 19 digits: refused below anyway */
  else
    return NULL;
  size_t idig = (size_t)(p - ds);
  t->s = s;
  if (p >= e || (*p != '.' && *p != 'e' && *p != 'E')) {
    if (idig > 19)
      return NULL;
    if (idig == 19 && v > 9223372036854775807ULL + (unsigned)neg)
      return NULL;
    t->type = PD_JSON_INTEGER;
    t->ival = neg ? (v ? -(long long)(v - 1) - 1 : 0) : (long long)v;
    t->len = (size_t)(p - s);
    return p;
  }
  int nonzero_int = *ds != '0', any = nonzero_int;
  long long lead0 = 0, ex = 0;
  if (*p == '.') {
    p++;
    if (!DIGIT(p, e))
      return NULL;
    for (; DIGIT(p, e); p++)
      if (!any) {
        if (*p == '0')
          lead0++;
        else
          any = 1;
      }
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    int eneg = p < e && *p == '-';
    if (p < e && (*p == '+' || *p == '-'))
      p++;
    if (!DIGIT(p, e))
      return NULL;
    for (; DIGIT(p, e); p++)
      if (ex < 1000000000000000LL)
        ex = ex * 10 + (*p - '0');
    if (eneg)
      ex = -ex;
  }
  t->type = PD_JSON_REAL;
  t->len = (size_t)(p - s);
  if (any) {
    /* The value lies in [10^(mag-1), 10^mag): below DBL_MAX (1.8e308) for mag <= 308, above it
     * for mag >= 310; in between strtod decides, as it does for jansson. */
    long long mag = nonzero_int ? (long long)idig + ex : ex - lead0;
    double v;
    if (mag >= 310 || (mag == 309 && real_of(s, t->len, &v) != 0))
      return NULL;
  }
  return p;
}

const char *pd_json_string_end_(const char *p, const char *e, int *esc) {
  return scan_string(p, e, esc);
}

const char *pd_json_number_end_(const char *p, const char *e, pd_json_tok_t *t) {
  return scan_number(p, e, t);
}

void pd_json_scan_init(pd_json_scan_t *s, const char *b, size_t n) {
  s->p = b;
  s->e = b + n;
  s->depth = 0;
  s->state = PD_JSON_ST_TOP;
}

static inline __attribute__((always_inline)) int skip_value(pd_json_scan_t *s,
                                                            const pd_json_tok_t *t) {
  if (t->type != PD_JSON_OBJECT && t->type != PD_JSON_ARRAY)
    return t->type == PD_JSON_ERROR ? -1 : 0;
  int base = s->depth - 1;
  pd_json_tok_t x;
  do {
    if (pd_json_next(s, &x) == PD_JSON_ERROR)
      return -1;
  } while (s->depth > base);
  return 0;
}

int pd_json_skip_container_(pd_json_scan_t *s, const pd_json_tok_t *t) {
  return skip_value(s, t);
}

static inline const char *value_text(const pd_json_scan_t *s, const pd_json_tok_t *t, size_t *len) {
  const char *start = t->type == PD_JSON_STRING ? t->s - 1 : t->s, *end;
  if (t->type == PD_JSON_OBJECT || t->type == PD_JSON_ARRAY)
    end = s->p;
  else
    end = t->s + t->len + (t->type == PD_JSON_STRING);
  *len = (size_t)(end - start);
  return start;
}

size_t pd_json_unescape(const char *raw, size_t len, char *out) {
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
      unsigned long u = (unsigned long)hex4(p, e);
      p += 4;
      if (u >= 0xD800 && u <= 0xDBFF) {
        unsigned long u2 = (unsigned long)hex4(p + 2, e);
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

static int tok_is_escaped(const pd_json_tok_t *t, const char *name, size_t n);

static inline int tok_is(const pd_json_tok_t *t, const char *name, size_t n) {
  if (!t->esc)
    return t->len == n && memcmp(t->s, name, n) == 0;
  return tok_is_escaped(t, name, n);
}

int pd_json_tok_is(const pd_json_tok_t *t, const char *name, size_t n) {
  return tok_is(t, name, n);
}

static int tok_is_escaped(const pd_json_tok_t *t, const char *name, size_t n) {
  /* An escape takes at least 2 bytes for 1 and at most 6 for 1: decoded, the raw bytes are
   * between len / 6 and len long. */
  if (t->len < n || t->len > 6 * n)
    return 0;
  char small[256];
  char *buf = t->len <= sizeof small ? small : malloc(t->len);
  if (!buf)
    return 0;
  size_t k = pd_json_unescape(t->s, t->len, buf);
  int same = k == n && memcmp(buf, name, n) == 0;
  if (buf != small)
    free(buf);
  return same;
}

int pd_json_real(const pd_json_tok_t *t, double *out) {
  return real_of(t->s, t->len, out) < 0 ? -1 : 0;
}

/* ---- validation -------------------------------------------------------------------------- */

int pd_json_check_members(const char *b, size_t n, pd_json_member_t *m, size_t nm) {
  for (size_t i = 0; i < nm; i++) {
    m[i].value = NULL;
    m[i].len = 0;
    m[i].count = 0;
  }
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, n);
  if (pd_json_next(&s, &t) != PD_JSON_OBJECT)
    return 0;
  for (;;) {
    switch (pd_json_next(&s, &t)) {
    case PD_JSON_ERROR:
      return 0;
    case PD_JSON_END:
      return 1;
    case PD_JSON_KEY:
      if (s.depth == 1) {
        size_t i = 0;
        while (i < nm && !tok_is(&t, m[i].name, m[i].name_len))
          i++;
        if (i < nm) {
          pd_json_tok_t v = {.s = NULL, .len = 0};
          pd_json_next(&s, &v);
          if (skip_value(&s, &v) < 0)
            return 0;
          m[i].value = value_text(&s, &v, &m[i].len);
          m[i].count++;
        }
      }
      break;
    default:
      break;
    }
  }
}

int pd_json_replace_members(pd_buf_t *out, const char *b, size_t n, const char *name,
                            size_t name_len, const char *value, size_t value_len) {
  size_t saved = out->len;
  int count = 0, rc = 0;
  const char *done = b;
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, n);
  if (pd_json_next(&s, &t) != PD_JSON_OBJECT)
    goto fail;
  for (;;) {
    int type = pd_json_next(&s, &t);
    if (type == PD_JSON_ERROR)
      goto fail;
    if (type == PD_JSON_END)
      break;
    if (type == PD_JSON_KEY && s.depth == 1 && tok_is(&t, name, name_len)) {
      pd_json_tok_t v = {.s = NULL, .len = 0};
      pd_json_next(&s, &v);
      if (skip_value(&s, &v) < 0)
        goto fail;
      size_t len;
      const char *at = value_text(&s, &v, &len);
      rc |= pd_buf_append(out, done, (size_t)(at - done));
      rc |= pd_buf_append(out, value, value_len);
      done = at + len;
      if (done < b + n && *done == '\0')
        done++; /* the NUL jansson drops after a number or literal: not after a value */
      count++;
    }
  }
  rc |= pd_buf_append(out, done, (size_t)(b + n - done));
  if (rc == 0)
    return count;
fail:
  out->len = saved;
  if (out->base)
    out->base[out->off + out->len] = '\0';
  return -1;
}

/* ---- tree loaders ------------------------------------------------------------------------ */

static json_t *string_json(const pd_json_tok_t *t) {
  if (!t->esc)
    return json_stringn_nocheck(t->s, t->len);
  char small[256];
  char *buf = t->len <= sizeof small ? small : malloc(t->len);
  if (!buf)
    return NULL;
  json_t *j = json_stringn_nocheck(buf, pd_json_unescape(t->s, t->len, buf));
  if (buf != small)
    free(buf);
  return j;
}

static json_t *scalar_json(const pd_json_tok_t *t) {
  switch (t->type) {
  case PD_JSON_STRING:
    return string_json(t);
  case PD_JSON_INTEGER:
    return json_integer((json_int_t)t->ival);
  case PD_JSON_REAL: {
    double v;
    return pd_json_real(t, &v) < 0 ? NULL : json_real(v);
  }
  case PD_JSON_TRUE:
    return json_true();
  case PD_JSON_FALSE:
    return json_false();
  case PD_JSON_NULL:
    return json_null();
  default:
    return NULL;
  }
}

/* A key for json_object_setn: the raw bytes, or decoded into *buf (grown as needed). */
static const char *key_bytes(const pd_json_tok_t *t, char **buf, size_t *cap, size_t *len) {
  if (!t->esc) {
    *len = t->len;
    return t->s;
  }
  if (*cap < t->len) {
    char *nb = realloc(*buf, t->len);
    if (!nb)
      return NULL;
    *buf = nb;
    *cap = t->len;
  }
  *len = pd_json_unescape(t->s, t->len, *buf);
  return *buf;
}

/* The whole value that began with t0, built without recursion (a stack of open containers,
 * on the C stack up to 64 deep, then on the heap). */
static json_t *build_value(pd_json_scan_t *s, const pd_json_tok_t *t0) {
  if (t0->type != PD_JSON_OBJECT && t0->type != PD_JSON_ARRAY)
    return scalar_json(t0);
  json_t *small[64], **st = small;
  size_t n = 0, cap = 64;
  char *kbuf = NULL;
  size_t kcap = 0, klen = 0;
  const char *key = NULL;
  json_t *root = t0->type == PD_JSON_OBJECT ? json_object() : json_array();
  if (!root)
    return NULL;
  st[n++] = root;
  pd_json_tok_t t;
  while (n > 0) {
    json_t *v;
    switch (pd_json_next(s, &t)) {
    case PD_JSON_KEY:
      key = key_bytes(&t, &kbuf, &kcap, &klen);
      if (!key)
        goto fail;
      continue;
    case PD_JSON_OBJECT_END:
    case PD_JSON_ARRAY_END:
      n--;
      continue;
    case PD_JSON_OBJECT:
      v = json_object();
      break;
    case PD_JSON_ARRAY:
      v = json_array();
      break;
    case PD_JSON_ERROR:
    case PD_JSON_END:
      goto fail;
    default:
      v = scalar_json(&t);
    }
    if (!v)
      goto fail;
    json_t *parent = st[n - 1];
    if (json_is_object(parent) ? json_object_setn_new_nocheck(parent, key, klen, v) < 0
                               : json_array_append_new(parent, v) < 0)
      goto fail;
    if (t.type == PD_JSON_OBJECT || t.type == PD_JSON_ARRAY) {
      if (n == cap) {
        json_t **ns = malloc(2 * cap * sizeof *ns);
        if (!ns)
          goto fail;
        memcpy(ns, st, n * sizeof *ns);
        if (st != small)
          free(st);
        st = ns;
        cap *= 2;
      }
      st[n++] = v;
    }
  }
  free(kbuf);
  if (st != small)
    free(st);
  return root;
fail:
  free(kbuf);
  if (st != small)
    free(st);
  json_decref(root);
  return NULL;
}

/* Fills err with json_loadb's message for a text the tokenizer refused. */
static void refusal(const char *b, size_t n, json_error_t *err) {
  if (!err)
    return;
  json_t *j = json_loadb(b, n, 0, err);
  if (j) { /* cannot happen while the tokenizer matches jansson; never report success */
    json_decref(j);
    snprintf(err->text, sizeof err->text, "invalid JSON");
  }
}

json_t *pd_json_load(const char *b, size_t n, json_error_t *err) {
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, n);
  json_t *j = NULL;
  if (pd_json_next(&s, &t) != PD_JSON_ERROR)
    j = build_value(&s, &t);
  if (j && pd_json_next(&s, &t) == PD_JSON_END)
    return j;
  json_decref(j);
  refusal(b, n, err);
  return NULL;
}

static json_t *build_kept(pd_json_scan_t *s, const pd_json_tok_t *t, const pd_json_keep_t *k);

/* An object (its '{' just read) with only the members keep names. */
static json_t *build_kept_object(pd_json_scan_t *s, const pd_json_keep_t *keep) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  pd_json_tok_t t, v;
  for (;;) {
    int type = pd_json_next(s, &t);
    if (type == PD_JSON_OBJECT_END)
      return o;
    if (type != PD_JSON_KEY)
      break;
    const pd_json_keep_t *k = keep;
    while (k->key && !tok_is(&t, k->key, k->len))
      k++;
    pd_json_next(s, &v);
    if (!k->key) {
      if (skip_value(s, &v) < 0)
        break;
      continue;
    }
    json_t *m = build_kept(s, &v, k);
    if (!m || json_object_setn_new_nocheck(o, k->key, k->len, m) < 0)
      break;
  }
  json_decref(o);
  return NULL;
}

/* An array (its '[' just read) of which element 0 is built per sub, the others skipped. */
static json_t *build_first(pd_json_scan_t *s, const pd_json_keep_t *sub) {
  json_t *a = json_array();
  if (!a)
    return NULL;
  pd_json_tok_t t;
  for (size_t i = 0;; i++) {
    int type = pd_json_next(s, &t);
    if (type == PD_JSON_ARRAY_END)
      return a;
    if (type == PD_JSON_ERROR)
      break;
    if (i > 0) {
      if (skip_value(s, &t) < 0)
        break;
      continue;
    }
    json_t *v = type == PD_JSON_OBJECT ? build_kept_object(s, sub) : build_value(s, &t);
    if (!v || json_array_append_new(a, v) < 0)
      break;
  }
  json_decref(a);
  return NULL;
}

static json_t *build_kept(pd_json_scan_t *s, const pd_json_tok_t *t, const pd_json_keep_t *k) {
  if (t->type == PD_JSON_OBJECT && k->kind == PD_JSON_KEEP_OBJECT)
    return build_kept_object(s, k->sub);
  if (t->type == PD_JSON_ARRAY && k->kind == PD_JSON_KEEP_FIRST)
    return build_first(s, k->sub);
  return build_value(s, t);
}

json_t *pd_json_load_kept(const char *b, size_t n, const pd_json_keep_t *keep) {
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, n);
  int type = pd_json_next(&s, &t);
  json_t *j = NULL;
  if (type == PD_JSON_OBJECT)
    j = build_kept_object(&s, keep);
  else if (type == PD_JSON_ARRAY)
    j = build_value(&s, &t);
  if (j && pd_json_next(&s, &t) == PD_JSON_END)
    return j;
  json_decref(j);
  return NULL;
}

/* ---- the compact writer ------------------------------------------------------------------ */

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
