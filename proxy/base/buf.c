/* The one growable byte buffer (see base/buf.h): reserve/commit, append, formatted and JSON
 * appends, consume from the front with compaction, steal. */
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pd_buf_init(pd_buf_t *b) {
  b->base = NULL;
  b->off = b->len = b->cap = 0;
}

void pd_buf_free(pd_buf_t *b) {
  free(b->base);
  pd_buf_init(b);
}

char *pd_buf_reserve_slow_(pd_buf_t *b, size_t n) {
  /* Room for n bytes plus a terminating NUL. Compact first: consumed space at the front is
   * reused before growing, so a buffer that is filled and drained never grows without bound. */
  if (b->off + b->len + n + 1 <= b->cap)
    return b->base + b->off + b->len;
  if (b->off > 0) {
    memmove(b->base, b->base + b->off, b->len);
    b->off = 0;
    if (b->len + n + 1 <= b->cap)
      return b->base + b->len;
  }
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1)
    cap *= 2;
  char *p = realloc(b->base, cap);
  if (!p)
    return NULL;
  b->base = p;
  b->cap = cap;
  return b->base + b->len;
}

int pd_buf_appends(pd_buf_t *b, const char *s) {
  return s ? pd_buf_append(b, s, strlen(s)) : pd_buf_append(b, "", 0);
}

int pd_buf_appendv(pd_buf_t *b, const char *fmt, va_list ap) {
  /* Most pieces fit the stack: one vsnprintf. A longer one is formatted again in place. */
  va_list again;
  va_copy(again, ap);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  int rc = -1;
  if (n >= 0 && (size_t)n < sizeof tmp) {
    rc = pd_buf_append(b, tmp, (size_t)n);
  } else if (n >= 0) {
    char *p = pd_buf_reserve(b, (size_t)n);
    if (p) {
      vsnprintf(p, (size_t)n + 1, fmt, again);
      pd_buf_commit(b, (size_t)n);
      rc = 0;
    }
  }
  va_end(again);
  return rc;
}

int pd_buf_appendf(pd_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = pd_buf_appendv(b, fmt, ap);
  va_end(ap);
  return rc;
}

/* "00".."99": two digits per division, since numbers are formatted on every request (status
 * codes, lengths, timestamps, durations). */
static const char DIGITS2[201] = "0001020304050607080910111213141516171819"
                                 "2021222324252627282930313233343536373839"
                                 "4041424344454647484950515253545556575859"
                                 "6061626364656667686970717273747576777879"
                                 "8081828384858687888990919293949596979899";

void pd_buf_fmt_hex(char *out, const unsigned char *in, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 15];
  }
}

size_t pd_buf_fmt_long(char *out, long v) {
  size_t len = 0;
  unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
  if (v < 0)
    out[len++] = '-';
  size_t n = 1;
  for (unsigned long t = u; t >= 10; t /= 10)
    n++;
  char *p = out + len + n;
  while (u >= 100) {
    unsigned long r = (u % 100) * 2;
    u /= 100;
    *--p = DIGITS2[r + 1];
    *--p = DIGITS2[r];
  }
  if (u >= 10) {
    *--p = DIGITS2[u * 2 + 1];
    *--p = DIGITS2[u * 2];
  } else {
    *--p = (char)('0' + u);
  }
  return len + n;
}

int pd_buf_append_long(pd_buf_t *b, long v) {
  char *p = pd_buf_reserve(b, 21);
  if (!p)
    return -1;
  pd_buf_commit(b, pd_buf_fmt_long(p, v));
  return 0;
}

/* 0: copied as is; 1: a short escape; 2: \u00XX. */
static const unsigned char JSON_ESC[256] = {
    [0 ... 7] = 2, ['\b'] = 1, ['\t'] = 1,          ['\n'] = 1, [0x0b] = 2,
    ['\f'] = 1,    ['\r'] = 1, [0x0e ... 0x1f] = 2, ['"'] = 1,  ['\\'] = 1,
};

int pd_buf_append_json_str(pd_buf_t *b, const char *s, size_t n) {
  /* Worst case: every byte as \u00XX. */
  char *w = pd_buf_reserve(b, n * 6 + 2);
  if (!w)
    return -1;
  char *p = w;
  *p++ = '"';
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    unsigned char e = JSON_ESC[c];
    if (!e)
      continue;
    memcpy(p, s + run, i - run);
    p += i - run;
    run = i + 1;
    *p++ = '\\';
    if (e == 1) {
      switch (c) {
      case '"':
        *p++ = '"';
        break;
      case '\\':
        *p++ = '\\';
        break;
      case '\b':
        *p++ = 'b';
        break;
      case '\f':
        *p++ = 'f';
        break;
      case '\n':
        *p++ = 'n';
        break;
      case '\r':
        *p++ = 'r';
        break;
      default:
        *p++ = 't';
        break;
      }
    } else {
      static const char hex[] = "0123456789ABCDEF";
      memcpy(p, "u00", 3);
      p[3] = hex[c >> 4];
      p[4] = hex[c & 15];
      p += 5;
    }
  }
  memcpy(p, s + run, n - run);
  p += n - run;
  *p++ = '"';
  pd_buf_commit(b, (size_t)(p - w));
  return 0;
}

void pd_buf_consume(pd_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->off = b->len = 0;
    if (b->base)
      b->base[0] = '\0';
    return;
  }
  b->off += n;
  b->len -= n;
}

void pd_buf_reset(pd_buf_t *b) {
  b->off = b->len = 0;
  if (b->base)
    b->base[0] = '\0';
}

char *pd_buf_steal(pd_buf_t *b, size_t *len) {
  if (!b->base && !pd_buf_reserve(b, 0))
    return NULL;
  if (b->off)
    memmove(b->base, b->base + b->off, b->len + 1);
  char *p = b->base;
  if (len)
    *len = b->len;
  p[b->len] = '\0';
  pd_buf_init(b);
  return p;
}
