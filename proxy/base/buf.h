/* The one growable byte buffer of the tree (h2o/lwan style): reserve/commit, append, consume
 * from the front. Every module that builds or accumulates bytes uses it (request arenas and
 * bodies, upstream request bodies, SSE lines, the engine's texts, the metrics page). A buffer
 * owns its storage until pd_buf_free or pd_buf_steal. */
#ifndef PD_BUF_H
#define PD_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct pd_buf {
  char *base; /* NUL-terminated when len > 0 or after any append */
  size_t off; /* bytes already consumed from the front */
  size_t len; /* bytes of live data starting at base + off */
  size_t cap;
} pd_buf_t;

/* Data start and length. */
/* (A buffer never grown has base NULL and off 0: no arithmetic on the null pointer, which C
 * leaves undefined.) */
#define pd_buf_data(b) ((b)->off ? (b)->base + (b)->off : (b)->base)
/* The live data as a C string, "" when nothing was ever appended; valid until the next change
 * to the buffer. */
static inline const char *pd_buf_str(const pd_buf_t *b) {
  return b->base ? b->base + b->off : "";
}

/* Makes an empty buffer that owns nothing yet (all zero: `pd_buf_t b = {0}` is the same). */
void pd_buf_init(pd_buf_t *b);
/* Frees the storage; the buffer may be reused after pd_buf_init. */
void pd_buf_free(pd_buf_t *b);
/* Makes room for at least n more bytes after the live data; returns the write pointer or NULL
 * on allocation failure. Commit with pd_buf_commit. */
char *pd_buf_reserve_slow_(pd_buf_t *b, size_t n);
static inline char *pd_buf_reserve(pd_buf_t *b, size_t n) {
  /* The common case inline (every response and upstream request is built by appends). */
  if (b->off + b->len + n + 1 <= b->cap)
    return b->base + b->off + b->len;
  return pd_buf_reserve_slow_(b, n);
}
/* Counts n bytes written at pd_buf_reserve's pointer as live data (and NUL-terminates). */
static inline void pd_buf_commit(pd_buf_t *b, size_t n) {
  b->len += n;
  b->base[b->off + b->len] = '\0';
}
/* Appends n bytes (copied); 0, or -1 on allocation failure (nothing appended). */
static inline int pd_buf_append(pd_buf_t *b, const void *data, size_t n) {
  char *p = pd_buf_reserve(b, n);
  if (!p)
    return -1;
  if (n)
    memcpy(p, data, n);
  pd_buf_commit(b, n);
  return 0;
}
/* Appends a C string; NULL appends nothing (the buffer is still NUL-terminated after). */
int pd_buf_appends(pd_buf_t *b, const char *s);
/* Appends printf-formatted text; 0, or -1 on allocation or format failure (nothing appended). */
int pd_buf_appendf(pd_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* pd_buf_appendf with a va_list (ap is used up, as by vprintf). */
int pd_buf_appendv(pd_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Writes v in decimal to out (room for 21 bytes); returns the length, no NUL is written. */
size_t pd_buf_fmt_long(char *out, long v);
/* Writes the n bytes of in as 2n lower-case hex digits to out; no NUL is written. */
void pd_buf_fmt_hex(char *out, const unsigned char *in, size_t n);
/* Appends v in decimal. */
int pd_buf_append_long(pd_buf_t *b, long v);
/* Appends s as a JSON string literal, escaped as jansson's json_dumps does: '"', '\\' and the
 * short forms \b \f \n \r \t, other control bytes as \u00XX (upper-case hex), everything else
 * (UTF-8 included) as is. */
int pd_buf_append_json_str(pd_buf_t *b, const char *s, size_t n);
/* Drops n bytes from the front. */
void pd_buf_consume(pd_buf_t *b, size_t n);
/* Empties the buffer and keeps its storage for reuse. */
void pd_buf_reset(pd_buf_t *b);
/* Hands the storage to the caller (malloc'd, NUL-terminated, length in *len) and resets. */
char *pd_buf_steal(pd_buf_t *b, size_t *len);

#endif
