/* Upstream requests of an exchange: the headers sent upstream (SPEC section 4's list, the auth
 * rule of section 3, the upstream's own), the URL of a forced call, starting the transfer with
 * the upstream's limits and TLS settings; and ponder's own response headers (x-ponder-*).
 * Owns nothing past a call: the header block lives on the stack or for the start only. */
#ifndef PD_UPREQ_H
#define PD_UPREQ_H

#include <stddef.h>

#include "upstream/upstream.h"

struct pd_exchange;

/* Starts an upstream call of ex: method, url (borrowed for the call), body (malloc'd, len
 * bytes, may be NULL; the transfer owns it from here, also on failure), json_body (send
 * content-type application/json), with cbs and ud. Counts the call. Returns the transfer, or
 * NULL when it could not start. */
pd_xfer_t *pd_upreq_start(struct pd_exchange *ex, const char *method, const char *url, char *body,
                          size_t len, int json_body, const pd_xfer_cbs_t *cbs, void *ud);

/* pd_upreq_start_call's failures. */
#define PD_UPREQ_EURL (-1)   /* the URL could not be built */
#define PD_UPREQ_ESTART (-2) /* the transfer did not start */

/* Starts the engine's call `path` (under the upstream's base path; the client's query is not
 * sent with forced calls) as a POST of body (JSON, malloc'd, len bytes; owned from here).
 * Returns 0 with the transfer in *out, or PD_UPREQ_EURL / PD_UPREQ_ESTART. */
int pd_upreq_start_call(struct pd_exchange *ex, const char *path, char *body, size_t len,
                        const pd_xfer_cbs_t *cbs, void *ud, pd_xfer_t **out);

/* Appends ponder's response headers (name, value pairs, at most PD_UPREQ_PONDER_NHEADERS
 * entries) to extra at *n: route, variant, x-ponder-rounds, the thinking calls made when the
 * head is written (a forced stream's head (`stream_head`) leaves before thinking starts, so it
 * carries the planned rounds), and x-ponder-feedback-token (obs/feedback_token.h) under the
 * exchange's config's feedback.secret. The values live as long as ex. */
#define PD_UPREQ_PONDER_NHEADERS 8
void pd_upreq_ponder_headers(struct pd_exchange *ex, int stream_head, const char **extra,
                             size_t *n);

#endif
