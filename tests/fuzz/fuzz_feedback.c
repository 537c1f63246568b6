/* Fuzz target: the feedback endpoint's readers (proxy/obs/feedback_token.c). The first byte
 * picks what the rest is:
 *   0  a POST /v1/ponder/feedback body: read, and its token (if any) verified;
 *   1  a token as a client sends it: verified under a fixed secret;
 *   2  a payload that gets a valid MAC here (as a replica of another version with the same
 *      secret would send it), so the parser behind the MAC check is reached too.
 * Properties: no crash, no read past the input; a refused body names a field or none; a
 * verified token's claim holds NUL-terminated strings within their bounds, and issuing that
 * claim again gives a token that verifies to the same claim; a token that verifies is in
 * base64url without padding, so it is header-safe. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "obs/feedback_token.h"

#define SECRET "fuzz secret"
#define NOW 1700000000

static void check_claim(const char *tok, size_t len, const pd_feedback_claim_t *c) {
  for (size_t i = 0; i < len; i++) {
    char ch = tok[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_'))
      abort();
  }
  size_t lr = strnlen(c->route, sizeof c->route), lv = strnlen(c->variant, sizeof c->variant),
         li = strnlen(c->request_id, sizeof c->request_id);
  if (lr == 0 || lr >= sizeof c->route || lv == 0 || lv >= sizeof c->variant || li == 0 ||
      li >= sizeof c->request_id)
    abort();
  char again[PD_FEEDBACK_TOKEN_MAX];
  if (pd_feedback_token_issue(SECRET, c->route, c->variant, c->request_id, c->issued, again,
                              sizeof again) <= 0)
    abort();
  pd_feedback_claim_t d;
  if (pd_feedback_token_verify(SECRET, again, strlen(again), c->issued, 1, &d) != 0 ||
      strcmp(d.route, c->route) || strcmp(d.variant, c->variant) ||
      strcmp(d.request_id, c->request_id) || d.issued != c->issued)
    abort();
}

static void verify(const char *tok, size_t len) {
  pd_feedback_claim_t c;
  int rc = pd_feedback_token_verify(SECRET, tok, len, NOW, 604800, &c);
  if (rc == 0 || rc == PD_FEEDBACK_TOKEN_EEXPIRED || rc == PD_FEEDBACK_TOKEN_EFUTURE)
    check_claim(tok, len, &c);
  else if (rc != PD_FEEDBACK_TOKEN_EBAD)
    abort();
}

static size_t b64url(const unsigned char *in, size_t n, char *out) {
  static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = acc << 8 | in[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[o++] = A[(acc >> bits) & 63];
    }
  }
  if (bits)
    out[o++] = A[(acc << (6 - bits)) & 63];
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  switch (data[0] % 3) {
  case 0: {
    pd_feedback_body_t b;
    if (pd_feedback_token_body_read((const char *)p, n, &b) == 0) {
      if (!b.token == !b.request_id)
        abort();
      if (b.token)
        verify(b.token, b.token_len);
    } else if (b.bad && strcmp(b.bad, "token") && strcmp(b.bad, "request_id") &&
               strcmp(b.bad, "score")) {
      abort();
    }
    pd_feedback_token_body_free(&b);
    break;
  }
  case 1: {
    char *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees any read past them */
    memcpy(copy, p, n);
    verify(copy, n);
    free(copy);
    break;
  }
  default: {
    if (n > 800)
      return 0;
    unsigned char raw[832];
    unsigned int mlen = 0;
    memcpy(raw, p, n);
    if (!HMAC(EVP_sha256(), SECRET, sizeof SECRET - 1, raw, n, raw + n, &mlen) || mlen != 32)
      abort();
    char tok[1200];
    size_t len = b64url(raw, n + 32, tok);
    verify(tok, len);
    break;
  }
  }
  return 0;
}
