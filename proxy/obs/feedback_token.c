/* Feedback tokens (obs/feedback_token.h): the payload layout, its base64url form and its
 * HMAC-SHA256 (OpenSSL's EVP_MAC "HMAC" with SHA-256).
 *
 * The payload, all integers big-endian:
 *   kind      1 byte   KIND_TEXT, or KIND_PACKED for ponder's own "req_" + 32 hex ids
 *   issued    5 bytes  Unix seconds
 *   route     1 byte length (1..255), the bytes
 *   variant   1 byte length (1..255), the bytes
 *   id        KIND_PACKED: the 16 bytes the hex spells; KIND_TEXT: 1 byte length (1..128), bytes
 *   mac       32 bytes HMAC-SHA256 of everything before it
 * Packing ponder's ids keeps a typical payload under 56 bytes, one SHA-256 block for the inner
 * hash instead of two, and the header short.
 *
 * Keys: each thread keeps one EVP_MAC_CTX keyed with the secret it last saw (the HMAC key
 * schedule, both pad blocks, computed once); a token re-initialises it without the key, which
 * restarts from the precomputed inner state. A different secret (a reload) re-keys it. */
#include "obs/feedback_token.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base/buf.h"

#define KIND_TEXT 0x01
#define KIND_PACKED 0x02
#define MAC_LEN 32
#define RAW_MAX                                                                                    \
  (1 + 5 + 2 * (1 + PD_FEEDBACK_TOKEN_NAME_MAX) + 1 + PD_FEEDBACK_TOKEN_ID_MAX + MAC_LEN)
#define RAW_MIN (1 + 5 + 2 * 2 + 2 + MAC_LEN)
#define PACKED_ID_LEN 36 /* "req_" and 32 lower-case hex digits */
#define ISSUED_MAX ((int64_t)1 << 40)

_Static_assert((RAW_MAX + 2) / 3 * 4 < PD_FEEDBACK_TOKEN_MAX, "the largest token fits");

/* ---- keys ---- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;
static int cache_key_ok;
static EVP_MAC *hmac;              /* fetched once, shared (EVP_MAC objects are thread-safe) */
static unsigned char proc_key[32]; /* the key when no secret is configured */
static int proc_key_ok;

/* One thread's keyed HMAC state. */
typedef struct mac_cache {
  EVP_MAC_CTX *ctx;
  char *secret; /* a copy of the secret ctx is keyed with; NULL: the process key */
  int keyed;
} mac_cache_t;

static void cache_free(void *p) {
  mac_cache_t *c = p;
  EVP_MAC_CTX_free(c->ctx);
  if (c->secret)
    OPENSSL_clear_free(c->secret, strlen(c->secret));
  free(c);
}

static void init_once(void) {
  cache_key_ok = pthread_key_create(&cache_key, cache_free) == 0;
  hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  proc_key_ok = RAND_bytes(proc_key, sizeof proc_key) == 1;
}

static int rekey(mac_cache_t *c, const char *secret) {
  const unsigned char *key = secret ? (const unsigned char *)secret : proc_key;
  size_t len = secret ? strlen(secret) : sizeof proc_key;
  if (!secret && !proc_key_ok)
    return -1;
  char *copy = NULL;
  if (secret && !(copy = strdup(secret)))
    return -1;
  if (c->secret)
    OPENSSL_clear_free(c->secret, strlen(c->secret));
  c->secret = copy;
  c->keyed = 0;
  if (!c->ctx && !(c->ctx = EVP_MAC_CTX_new(hmac)))
    return -1;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(c->ctx, key, len, params) != 1)
    return -1;
  c->keyed = 1;
  return 0;
}

/* This thread's HMAC state for secret, initialised and ready for the payload; NULL when no key
 * can be made. */
static EVP_MAC_CTX *keyed_ctx(const char *secret) {
  pthread_once(&once, init_once);
  if (!cache_key_ok || !hmac)
    return NULL;
  if (secret && !*secret)
    secret = NULL;
  mac_cache_t *c = pthread_getspecific(cache_key);
  if (!c) {
    if (!(c = calloc(1, sizeof *c)))
      return NULL;
    if (pthread_setspecific(cache_key, c) != 0) {
      free(c);
      return NULL;
    }
  }
  int same = c->keyed && (secret ? c->secret && strcmp(c->secret, secret) == 0 : !c->secret);
  if (same)
    return EVP_MAC_init(c->ctx, NULL, 0, NULL) == 1 ? c->ctx : NULL;
  return rekey(c, secret) == 0 ? c->ctx : NULL;
}

static int mac(const char *secret, const unsigned char *data, size_t len,
               unsigned char out[MAC_LEN]) {
  EVP_MAC_CTX *ctx = keyed_ctx(secret);
  size_t got = 0;
  if (!ctx || EVP_MAC_update(ctx, data, len) != 1 || EVP_MAC_final(ctx, out, &got, MAC_LEN) != 1 ||
      got != MAC_LEN)
    return -1;
  return 0;
}

/* ---- base64url, no padding (RFC 4648 section 5) ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = B64[v >> 18];
    out[o++] = B64[(v >> 12) & 63];
    out[o++] = B64[(v >> 6) & 63];
    out[o++] = B64[v & 63];
  }
  if (n - i == 1) {
    out[o++] = B64[in[i] >> 2];
    out[o++] = B64[(in[i] & 3) << 4];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
    out[o++] = B64[v >> 10];
    out[o++] = B64[(v >> 4) & 63];
    out[o++] = B64[(v & 15) << 2];
  }
  out[o] = '\0';
  return o;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

/* Decodes exactly the canonical encoding: a character outside the alphabet, padding, a length
 * no encoding has, or set bits past the last byte are refused (so no two strings decode to the
 * same token). Returns the byte count, or -1. out holds len * 3 / 4 bytes. */
static long b64_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 == 1)
    return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64_value((unsigned char)in[i]);
    if (v < 0)
      return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0)
    return -1;
  return (long)o;
}

/* ---- the payload ---- */

/* Lower-case hex digits' values plus one (0: not a digit). */
static const unsigned char HEX1[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* ponder's own request ids, "req_" and 32 lower-case hex digits, packed into 16 bytes. */
static int pack_id(const char *id, size_t len, unsigned char out[16]) {
  if (len != PACKED_ID_LEN || memcmp(id, "req_", 4) != 0)
    return -1;
  const unsigned char *h = (const unsigned char *)id + 4;
  for (int i = 0; i < 16; i++) {
    unsigned hi = HEX1[h[2 * i]], lo = HEX1[h[2 * i + 1]];
    if (!hi || !lo)
      return -1;
    out[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
  }
  return 0;
}

static void unpack_id(const unsigned char in[16], char *out) {
  memcpy(out, "req_", 4);
  pd_buf_fmt_hex(out + 4, in, 16);
  out[PACKED_ID_LEN] = '\0';
}

static size_t put_str(unsigned char *p, const char *s, size_t len) {
  p[0] = (unsigned char)len;
  memcpy(p + 1, s, len);
  return 1 + len;
}

int pd_feedback_token_issue(const char *secret, const char *route, const char *variant,
                            const char *request_id, int64_t now, char *out, size_t outlen) {
  if (outlen)
    out[0] = '\0';
  if (!route || !variant || !request_id || now < 0 || now >= ISSUED_MAX)
    return -1;
  size_t lr = strlen(route), lv = strlen(variant), li = strlen(request_id);
  if (lr == 0 || lr > PD_FEEDBACK_TOKEN_NAME_MAX || lv == 0 || lv > PD_FEEDBACK_TOKEN_NAME_MAX ||
      li == 0 || li > PD_FEEDBACK_TOKEN_ID_MAX)
    return -1;
  unsigned char raw[RAW_MAX];
  size_t n = 1;
  for (int i = 4; i >= 0; i--)
    raw[n++] = (unsigned char)((uint64_t)now >> (8 * i));
  n += put_str(raw + n, route, lr);
  n += put_str(raw + n, variant, lv);
  if (pack_id(request_id, li, raw + n) == 0) {
    raw[0] = KIND_PACKED;
    n += 16;
  } else {
    raw[0] = KIND_TEXT;
    n += put_str(raw + n, request_id, li);
  }
  if ((n + MAC_LEN + 2) / 3 * 4 + 1 > outlen || mac(secret, raw, n, raw + n) < 0)
    return -1;
  n += MAC_LEN;
  return (int)b64_encode(raw, n, out);
}

/* Reads a length-prefixed string of 1..max bytes without NULs at raw[*at] (end: where the
 * payload stops) into out. */
static int get_str(const unsigned char *raw, size_t end, size_t *at, size_t max, char *out) {
  if (*at >= end)
    return -1;
  size_t len = raw[*at];
  if (len == 0 || len > max || len > end - *at - 1 || memchr(raw + *at + 1, '\0', len))
    return -1;
  memcpy(out, raw + *at + 1, len);
  out[len] = '\0';
  *at += 1 + len;
  return 0;
}

int pd_feedback_token_verify(const char *secret, const char *token, size_t len, int64_t now,
                             long max_age_s, pd_feedback_claim_t *claim) {
  if (!token || len >= PD_FEEDBACK_TOKEN_MAX)
    return PD_FEEDBACK_TOKEN_EBAD;
  unsigned char raw[PD_FEEDBACK_TOKEN_MAX * 3 / 4 + 1];
  long n = b64_decode(token, len, raw);
  if (n < RAW_MIN)
    return PD_FEEDBACK_TOKEN_EBAD;
  size_t end = (size_t)n - MAC_LEN;
  unsigned char want[MAC_LEN];
  if (mac(secret, raw, end, want) < 0)
    return PD_FEEDBACK_TOKEN_EKEY;
  if (CRYPTO_memcmp(want, raw + end, MAC_LEN) != 0)
    return PD_FEEDBACK_TOKEN_EBAD;
  /* Authentic from here: what follows only guards against a replica of another version. */
  if (raw[0] != KIND_TEXT && raw[0] != KIND_PACKED)
    return PD_FEEDBACK_TOKEN_EBAD;
  int64_t issued = 0;
  for (int i = 1; i <= 5; i++)
    issued = issued << 8 | raw[i];
  size_t at = 6;
  if (get_str(raw, end, &at, PD_FEEDBACK_TOKEN_NAME_MAX, claim->route) < 0 ||
      get_str(raw, end, &at, PD_FEEDBACK_TOKEN_NAME_MAX, claim->variant) < 0)
    return PD_FEEDBACK_TOKEN_EBAD;
  if (raw[0] == KIND_PACKED) {
    if (end - at != 16)
      return PD_FEEDBACK_TOKEN_EBAD;
    unpack_id(raw + at, claim->request_id);
    at += 16;
  } else if (get_str(raw, end, &at, PD_FEEDBACK_TOKEN_ID_MAX, claim->request_id) < 0) {
    return PD_FEEDBACK_TOKEN_EBAD;
  }
  if (at != end)
    return PD_FEEDBACK_TOKEN_EBAD;
  claim->issued = issued;
  if (issued > now + PD_FEEDBACK_TOKEN_SKEW_S)
    return PD_FEEDBACK_TOKEN_EFUTURE;
  if (now - issued > (int64_t)max_age_s)
    return PD_FEEDBACK_TOKEN_EEXPIRED;
  return 0;
}

/* ---- the feedback body ---- */

int pd_feedback_token_body_read(const char *body, size_t len, pd_feedback_body_t *b) {
  memset(b, 0, sizeof *b);
  json_error_t jerr;
  json_t *j = json_loadb(body, len, 0, &jerr);
  b->json = j;
  if (!json_is_object(j))
    return -1;
  json_t *tok = json_object_get(j, "token");
  json_t *score = json_object_get(j, "score");
  if (tok) {
    if (!json_is_string(tok)) {
      b->bad = "token";
      return -1;
    }
    b->token = json_string_value(tok);
    b->token_len = json_string_length(tok);
  } else if (!(b->request_id = json_string_value(json_object_get(j, "request_id")))) {
    b->bad = "request_id";
    return -1;
  }
  /* JSON has no NaN or infinity, and the parser refuses numbers beyond a double's range; the
   * check stays so that no other reader can let one into the metrics' sums. */
  if (!json_is_number(score) || !isfinite(json_number_value(score))) {
    b->bad = "score";
    return -1;
  }
  b->score = json_number_value(score);
  return 0;
}

void pd_feedback_token_body_free(pd_feedback_body_t *b) {
  json_decref(b->json);
  b->json = NULL;
}
