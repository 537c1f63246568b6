/* Feedback tokens (SPEC section 7): the x-ponder-feedback-token a chat or responses reply
 * carries, so that any replica sharing `feedback.secret` can credit a later score to the route
 * and variant that served the request, after restarts too. A token is base64url (no padding)
 * of a compact binary payload (version, issue time, route, variant, request id) followed by
 * its HMAC-SHA256 under the secret, computed with OpenSSL's libcrypto. With no secret the key
 * is drawn once per process from the OS CSPRNG (RAND_bytes) and shared by all its threads.
 * Owns the per-process random key and, per thread, the keyed HMAC state (the key schedule is
 * computed once per secret and thread, not per token). */
#ifndef PD_FEEDBACK_TOKEN_H
#define PD_FEEDBACK_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/* Longest route or variant name a token can carry (a longer one gets no token), and the longest
 * request id (ponder's ids, and a client's x-request-id, are at most 128 characters). */
#define PD_FEEDBACK_TOKEN_NAME_MAX 255
#define PD_FEEDBACK_TOKEN_ID_MAX 128
/* The buffer an encoded token needs, NUL included; longer input is refused unread. */
#define PD_FEEDBACK_TOKEN_MAX 1024
/* How far in the future an issue time may be (clocks of replicas differ a little). */
#define PD_FEEDBACK_TOKEN_SKEW_S 60

/* pd_feedback_token_verify's refusals. */
#define PD_FEEDBACK_TOKEN_EBAD (-1)     /* not a token of this key: forged, altered, truncated */
#define PD_FEEDBACK_TOKEN_EEXPIRED (-2) /* authentic, but older than max_age_s */
#define PD_FEEDBACK_TOKEN_EFUTURE (-3)  /* authentic, but issued beyond the skew in the future */
#define PD_FEEDBACK_TOKEN_EKEY (-4)     /* no key (the CSPRNG or libcrypto failed) */

/* What an authentic token says. */
typedef struct pd_feedback_claim {
  char route[PD_FEEDBACK_TOKEN_NAME_MAX + 1];
  char variant[PD_FEEDBACK_TOKEN_NAME_MAX + 1];
  char request_id[PD_FEEDBACK_TOKEN_ID_MAX + 1];
  int64_t issued; /* Unix seconds */
} pd_feedback_claim_t;

/* Writes the token for (route, variant, request_id) issued at `now` (Unix seconds) under
 * secret (NULL or "": the per-process random key) into out (outlen bytes, at least
 * PD_FEEDBACK_TOKEN_MAX for any input), NUL-terminated. Returns its length, or -1 (nothing
 * usable in out) when a name or the id is too long or empty, or no key could be made. Any
 * thread; no allocation after a thread's first call with a given secret. */
int pd_feedback_token_issue(const char *secret, const char *route, const char *variant,
                            const char *request_id, int64_t now, char *out, size_t outlen);

/* Checks token (len bytes, untrusted) under secret (as for issue) at `now`: its encoding, its
 * MAC (compared in constant time), then its age against max_age_s and the skew. Returns 0 with
 * *claim filled, or one of the PD_FEEDBACK_TOKEN_E* codes (*claim is filled for EEXPIRED and
 * EFUTURE, undefined for the others). */
int pd_feedback_token_verify(const char *secret, const char *token, size_t len, int64_t now,
                             long max_age_s, pd_feedback_claim_t *claim);

/* A POST /v1/ponder/feedback body, read: {"token": "...", "score": N} or
 * {"request_id": "...", "score": N} (a token wins when both are there). */
typedef struct pd_feedback_body {
  void *json;             /* the parsed document (owned; pd_feedback_token_body_free) */
  const char *token;      /* into json, or NULL */
  size_t token_len;       /* its length in bytes */
  const char *request_id; /* into json, or NULL when token is set */
  double score;           /* finite */
  const char *bad;        /* on failure: the field at fault ("token", "request_id", "score"),
                           * or NULL when the body is not a JSON object */
} pd_feedback_body_t;

/* Reads a feedback body (len bytes, untrusted). Returns 0, or -1 with b->bad set (the 400's
 * param). Either way b must be freed with pd_feedback_token_body_free. */
int pd_feedback_token_body_read(const char *body, size_t len, pd_feedback_body_t *b);
/* Frees what pd_feedback_token_body_read kept; the pointers into it become invalid. */
void pd_feedback_token_body_free(pd_feedback_body_t *b);

#endif
