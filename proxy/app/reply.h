/* One upstream call's reply as the exchange reads it, the same for a forced chain's calls and
 * the pass-through relay: the transfer, status, whether it streams, the body held whole (an
 * error, a reply to check), the SSE parser, the Retry-After of an error reply; and what a
 * failed or refused reply turns into for the client (SPEC's upstream errors), with the metrics
 * and the log line of the call. Owns the reply's buffers and the retry-after copy. */
#ifndef PD_REPLY_H
#define PD_REPLY_H

#include <stddef.h>

#include "base/buf.h"
#include "core/sse.h"
#include "upstream/upstream.h"

/* The most of an error body ponder holds (to relay or log). */
#define PD_REPLY_MAX_ERROR_BODY (1024L * 1024)

struct pd_exchange;

typedef struct pd_reply {
  pd_xfer_t *xfer; /* the live call, or NULL */
  int status;
  int sse;           /* the reply is text/event-stream */
  long length;       /* its Content-Length, or -1 */
  pd_buf_t body;     /* a reply held whole */
  pd_sse_t parser;   /* the events of a streamed reply, when read */
  char *retry_after; /* of an error reply (malloc'd), or NULL */
} pd_reply_t;

/* An empty reply (no call yet). */
void pd_reply_init(pd_reply_t *r, size_t max_event);
/* Frees what r holds (not the transfer: cancel or finish it first). */
void pd_reply_free(pd_reply_t *r);

/* Prepares r for a new call: the parser emptied (its limit kept), status cleared. */
void pd_reply_restart(pd_reply_t *r);

/* Takes a call's head: status, whether it streams, the Retry-After of an error status; the
 * held body emptied (a known length reserved at once when it is one ponder may hold). */
void pd_reply_head(pd_reply_t *r, const pd_xfer_head_t *h);

/* Whether the status is a success (2xx). */
static inline int pd_reply_ok(const pd_reply_t *r) {
  return r->status >= 200 && r->status < 300;
}

/* Holds n more bytes of a reply kept whole, up to limit bytes in all. Returns 0, or -1 when the
 * reply would exceed limit (nothing appended). */
int pd_reply_hold(pd_reply_t *r, const char *p, size_t n, long limit);

/* Counts the call that just ended (its on_done) in the metrics under its status or "timeout"
 * / "error", and forgets the transfer (the upstream module frees it after on_done). */
void pd_reply_count(struct pd_exchange *ex, pd_reply_t *r, int result);

/* Ends a live call ponder abandons before its reply is complete (a reply it refuses, a sibling
 * chain's failure, the client gone), counting it first: a cancelled transfer runs no on_done.
 * Its code is "499", as a request whose client went away is counted; its time so far goes into
 * the duration. A no-op when r has no live call. */
void pd_reply_cancel(struct pd_exchange *ex, pd_reply_t *r);

/* Logs a failed upstream call (warn): request id, route, upstream, status and cause. Never the
 * URL, headers or bodies (they may carry keys or the client's content). */
void pd_reply_log_failure(struct pd_exchange *ex, int status, const char *cause);

/* "connect", "timeout", "broken" or "error" for a transfer result. */
const char *pd_reply_cause(int result);

/* An upstream reply ponder refuses (not OpenAI JSON, cut short): logged, then a 502 with
 * message. */
void pd_reply_fail_bad(struct pd_exchange *ex, int status, const char *cause, const char *message);

/* The 502 for a reply over limits.max_reply_bytes. */
void pd_reply_fail_too_large(struct pd_exchange *ex, int status);

/* A call that failed (transport error, or an error status): the client gets SPEC's error for
 * it (504 on a timeout, 502 when unreachable or not OpenAI-shaped, else the upstream's own
 * status, error object and Retry-After), and the call is logged. */
void pd_reply_fail(struct pd_exchange *ex, const pd_reply_t *r, int result, const char *errmsg);

#endif
