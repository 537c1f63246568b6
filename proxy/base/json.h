/* The one JSON module: a tokenizer whose verdict is jansson's json_loadb(b, n, 0) verdict, and
 * what is built on it (validation with member spans, tree loaders, a compact writer). Every
 * reader of JSON text in ponder goes through pd_json_next, so they all accept the same input. */
#ifndef PD_JSON_H
#define PD_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"

/* jansson's JSON_PARSER_MAX_DEPTH: a value is refused when it sits inside this many
 * containers (a container counts itself, so 2048 nested empty arrays pass, and a scalar inside
 * them does not). */
#define PD_JSON_MAX_DEPTH 2048

/* Token types pd_json_next returns. */
enum {
  PD_JSON_ERROR = -1, /* the text is not what json_loadb accepts; stays so */
  PD_JSON_END = 0,    /* the top-level value ended and only blanks follow */
  PD_JSON_OBJECT,     /* '{' */
  PD_JSON_OBJECT_END, /* '}' */
  PD_JSON_ARRAY,      /* '[' */
  PD_JSON_ARRAY_END,  /* ']' */
  PD_JSON_KEY,        /* a member's key, with its ':' consumed: the value comes next */
  PD_JSON_STRING,
  PD_JSON_INTEGER, /* within json_int_t (long long) */
  PD_JSON_REAL,    /* a number with a fraction or an exponent that strtod does not overflow */
  PD_JSON_TRUE,
  PD_JSON_FALSE,
  PD_JSON_NULL,
};

/* One token. The pointers are into the scanned text. */
typedef struct pd_json_tok {
  int type;
  const char *s; /* KEY, STRING: the raw bytes between the quotes; others: the token's text */
  size_t len;
  int esc;        /* KEY, STRING: the raw bytes hold a backslash escape */
  long long ival; /* INTEGER: the value */
} pd_json_tok_t;

/* Scanner state: caller-owned (about 300 bytes), no allocation. */
typedef struct pd_json_scan {
  const char *p, *e;
  int depth; /* containers open */
  int state;
  uint64_t obj[PD_JSON_MAX_DEPTH / 64]; /* bit d: the container at depth d + 1 is an object */
} pd_json_scan_t;

/* Starts scanning the n bytes at b (one JSON text: an object or an array, as json_loadb with
 * flags 0 wants). */
void pd_json_scan_init(pd_json_scan_t *s, const char *b, size_t n);
/* pd_json_skip's container case (out of line: scalars need no call). */
int pd_json_skip_container_(pd_json_scan_t *s, const pd_json_tok_t *t);
/* After t (the token that began a value) consumes the rest of that value: for an object or
 * array, every token up to its end. Returns 0, or -1 when the text is refused. */
static inline int pd_json_skip(pd_json_scan_t *s, const pd_json_tok_t *t) {
  if (t->type != PD_JSON_OBJECT && t->type != PD_JSON_ARRAY)
    return t->type == PD_JSON_ERROR ? -1 : 0;
  return pd_json_skip_container_(s, t);
}
/* Decodes the raw bytes of a STRING or KEY token into out (room for len bytes: decoding never
 * grows them); returns the decoded length. */
size_t pd_json_unescape(const char *raw, size_t len, char *out);
/* Whether a KEY or STRING token decodes to the n bytes at name. */
int pd_json_tok_is(const pd_json_tok_t *t, const char *name, size_t n);
/* The double json_loadb makes of a REAL (or INTEGER) token; 0 or -1 when out of memory. */
int pd_json_real(const pd_json_tok_t *t, double *out);

/* A top-level member to look for in pd_json_check_members. */
typedef struct pd_json_member {
  const char *name; /* in: the key, decoded (escaped keys in the text match too) */
  size_t name_len;
  const char *value; /* out: the text of the last such member's value (jansson keeps the
                        last), NULL when there is none */
  size_t len;
  size_t count; /* out: how many members have that key */
} pd_json_member_t;

/* Checks in one pass, without allocating, that b is a JSON object json_loadb(b, n, 0) accepts,
 * and finds the top-level members named in m[0..nm). Returns 1 for such an object, 0 otherwise
 * (the outputs are then unspecified). The relay uses it on every reply it passes through. */
int pd_json_check_members(const char *b, size_t n, pd_json_member_t *m, size_t nm);

/* Appends b with the value of every top-level member named name replaced by the n bytes of
 * JSON text at value. Returns the number of members replaced, or -1 when b is refused (out is
 * then unchanged) or out of memory. */
int pd_json_replace_members(pd_buf_t *out, const char *b, size_t n, const char *name,
                            size_t name_len, const char *value, size_t value_len);

/* json_loadb(b, n, 0, err) at a fraction of its cost: the tree is built from the tokens. On
 * failure NULL is returned and err (when not NULL) holds json_loadb's own message. */
json_t *pd_json_load(const char *b, size_t n, json_error_t *err);

/* Which members of an object pd_json_load_kept builds. */
enum { PD_JSON_KEEP_ALL, PD_JSON_KEEP_OBJECT, PD_JSON_KEEP_FIRST };
typedef struct pd_json_keep {
  const char *key; /* NULL ends a list */
  size_t len;
  int kind; /* KEEP_ALL: the whole value; KEEP_OBJECT: an object built per sub (any other
               value whole); KEEP_FIRST: an array of which only element 0 is built, per sub as
               KEEP_OBJECT (any other value whole) */
  const struct pd_json_keep *sub;
} pd_json_keep_t;

/* Parses b, accepting and rejecting exactly what json_loadb(b, n, 0) does, but building only
 * the members of the top-level object that keep lists (a top-level array is built whole).
 * Other members are checked and left out. Returns a new reference, or NULL. */
json_t *pd_json_load_kept(const char *b, size_t n, const pd_json_keep_t *keep);

/* Appends v as compact JSON, byte for byte what json_dumps(v, JSON_COMPACT) writes (keys in
 * insertion order, UTF-8 kept, control characters escaped as jansson does) at a fraction of its
 * cost: the forced path serialises every upstream request body with it. Returns 0, or -1 when
 * out of memory or nested deeper than PD_JSON_WRITE_MAX_DEPTH (twice what jansson's parser
 * accepts, so any tree built from a parsed body fits). */
#define PD_JSON_WRITE_MAX_DEPTH 4096
int pd_json_write(pd_buf_t *out, const json_t *v);

/* ---- pd_json_next, inline so that each reader's loop has the tokenizer in place ----------
 * (the hot path validates every relayed reply with it). Its helpers live in json.c. */
enum {
  PD_JSON_ST_TOP,        /* nothing read: '{' or '[' */
  PD_JSON_ST_VALUE,      /* after ':' or an array's ',': a value */
  PD_JSON_ST_ELEM_FIRST, /* after '[': ']' or a value */
  PD_JSON_ST_KEY_FIRST,  /* after '{': '}' or a key */
  PD_JSON_ST_KEY,        /* after an object's ',': a key */
  PD_JSON_ST_AFTER,      /* after a value: ',' or the container's closer */
  PD_JSON_ST_DONE,       /* the top-level value closed: blanks, then the end */
  PD_JSON_ST_FAIL,
};

/* The blanks jansson skips between tokens. */
extern const unsigned char pd_json_blank_[256];
/* The rest of a string after its opening quote: the closing quote, or NULL where json_loadb
 * refuses it; *esc set when a backslash was seen. */
const char *pd_json_string_end_(const char *p, const char *e, int *esc);
/* A number at p (into *t): the byte after it, or NULL where json_loadb refuses it. */
const char *pd_json_number_end_(const char *p, const char *e, pd_json_tok_t *t);
#ifndef PD_JSON_STRING_END
#define PD_JSON_STRING_END pd_json_string_end_
#define PD_JSON_NUMBER_END pd_json_number_end_
#endif

/* The string whose opening quote is at p, into t's s, len and esc: the byte after its closing
 * quote, or NULL. */
static inline const char *pd_json_string_tok_(const char *p, const char *e, pd_json_tok_t *t) {
  int esc = 0;
  const char *q = PD_JSON_STRING_END(p + 1, e, &esc);
  if (!q)
    return NULL;
  t->s = p + 1;
  t->len = (size_t)(q - p - 1);
  t->esc = esc;
  return q + 1;
}

static inline int pd_json_top_is_object_(const pd_json_scan_t *s) {
  int d = s->depth - 1;
  return (int)((s->obj[d >> 6] >> (d & 63)) & 1);
}

/* Reads the next token into *t and returns its type. The sequence of tokens ends with
 * PD_JSON_END exactly when json_loadb(b, n, 0) accepts the text (UTF-8 checked, escapes and
 * surrogate pairs checked, no \\u0000, integers within long long, reals that do not overflow,
 * the depth limit above, and jansson's quirk of dropping one NUL byte right after a number or a
 * literal); otherwise with PD_JSON_ERROR, possibly after tokens that were fine. */
static inline __attribute__((always_inline)) int pd_json_next(pd_json_scan_t *s, pd_json_tok_t *t) {
  const char *p = s->p, *e = s->e;
  while (p < e && pd_json_blank_[(unsigned char)*p])
    p++;
  switch (s->state) {
  case PD_JSON_ST_AFTER:
    if (p >= e)
      goto fail;
    if (*p == ',') {
      p++;
      while (p < e && pd_json_blank_[(unsigned char)*p])
        p++;
      if (pd_json_top_is_object_(s))
        goto key;
      goto value;
    }
    if (*p == (pd_json_top_is_object_(s) ? '}' : ']'))
      goto close;
    goto fail;
  case PD_JSON_ST_DONE:
    if (p != e)
      goto fail;
    s->p = p;
    t->type = PD_JSON_END;
    return PD_JSON_END;
  case PD_JSON_ST_KEY_FIRST:
    if (p < e && *p == '}')
      goto close;
    /* fall through */
  case PD_JSON_ST_KEY:
  key:
    if (p >= e || *p != '"')
      goto fail;
    if (!(p = pd_json_string_tok_(p, e, t)))
      goto fail;
    while (p < e && pd_json_blank_[(unsigned char)*p])
      p++;
    if (p >= e || *p != ':')
      goto fail;
    s->p = p + 1;
    s->state = PD_JSON_ST_VALUE;
    t->type = PD_JSON_KEY;
    return PD_JSON_KEY;
  case PD_JSON_ST_ELEM_FIRST:
    if (p < e && *p == ']')
      goto close;
    /* fall through */
  case PD_JSON_ST_VALUE:
  value:
    if (p >= e || s->depth >= PD_JSON_MAX_DEPTH)
      goto fail;
    switch (*p) {
    case '{':
    case '[': {
      int d = s->depth++;
      uint64_t bit = 1ULL << (d & 63);
      if (*p == '{') {
        s->obj[d >> 6] |= bit;
        s->state = PD_JSON_ST_KEY_FIRST;
        t->type = PD_JSON_OBJECT;
      } else {
        s->obj[d >> 6] &= ~bit;
        s->state = PD_JSON_ST_ELEM_FIRST;
        t->type = PD_JSON_ARRAY;
      }
      t->s = p;
      t->len = 1;
      s->p = p + 1;
      return t->type;
    }
    case '"': {
      const char *q = pd_json_string_tok_(p, e, t);
      if (!q)
        goto fail;
      t->type = PD_JSON_STRING;
      s->p = q;
      s->state = PD_JSON_ST_AFTER;
      return PD_JSON_STRING;
    }
    case 't':
    case 'f':
    case 'n': {
      char c = *p;
      size_t n = c == 'f' ? 5 : 4;
      if ((size_t)(e - p) < n || memcmp(p, c == 't' ? "true" : c == 'f' ? "false" : "null", n))
        goto fail;
      t->type = c == 't' ? PD_JSON_TRUE : c == 'f' ? PD_JSON_FALSE : PD_JSON_NULL;
      t->len = n;
      break;
    }
    default: {
      const char *q = PD_JSON_NUMBER_END(p, e, t);
      if (!q)
        goto fail;
      p = q;
      goto scalar_end;
    }
    }
    t->s = p;
    p += t->len;
  scalar_end:
    /* jansson pushes back the byte that ended a number or a literal, and a pushed-back NUL is
     * lost (its look-ahead buffer is NUL-terminated): that one NUL is skipped. */
    if (p < e && *p == '\0')
      p++;
    s->p = p;
    s->state = PD_JSON_ST_AFTER;
    return t->type;
  case PD_JSON_ST_TOP:
    if (p >= e || (*p != '{' && *p != '['))
      goto fail;
    goto value;
  default:
    goto fail;
  }
close:
  t->type = pd_json_top_is_object_(s) ? PD_JSON_OBJECT_END : PD_JSON_ARRAY_END;
  t->s = p;
  t->len = 1;
  s->p = p + 1;
  s->state = --s->depth == 0 ? PD_JSON_ST_DONE : PD_JSON_ST_AFTER;
  return t->type;
fail:
  s->state = PD_JSON_ST_FAIL;
  t->type = PD_JSON_ERROR;
  t->s = p;
  t->len = 0;
  return PD_JSON_ERROR;
}

#endif
