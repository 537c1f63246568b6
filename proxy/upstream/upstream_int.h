/* Inside the upstream client: what upstream.c (the front and the shared response-head
 * bookkeeping), xfer.c (the transfer base and the retry rules), curl.c (libcurl, under
 * PONDER_UPSTREAM_CLIENT=curl and for URLs with credentials), h1.c (the native HTTP/1.1
 * client), h2.c (the native HTTP/2 client), origin.c, tls.c and proxy.c share. Nothing outside
 * proxy/upstream includes this. */
#ifndef PD_UPSTREAM_INT_H
#define PD_UPSTREAM_INT_H

#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/list.h"
#include "upstream/upstream.h"

#define PD_RETRY_AFTER_CAP_MS 30000

/* What the front calls on a transfer, one const table per framing (h1.c, h2.c, curl.c): the
 * framing's pause, resume, cancel and elapsed, as upstream.h describes them. */
typedef struct pd_xfer_ops {
  void (*pause)(pd_xfer_t *x);
  void (*resume)(pd_xfer_t *x);
  void (*cancel)(pd_xfer_t *x);
  double (*elapsed)(const pd_xfer_t *x);
} pd_xfer_ops_t;

/* Every transfer starts with this: ops says whose it is. The front fills reqid and target right
 * after the framing's start returned (no callback runs before that). */
struct pd_xfer {
  const pd_xfer_ops_t *ops;
  char reqid[48];   /* the call's x-request-id header, "" when none: for log lines */
  char target[160]; /* scheme://host:port/path of the URL, without userinfo or query */
};

/* Logs at info that an attempt failed and the call is tried again in delay_ms. */
void pd_xfer_log_retry(const pd_xfer_t *x, int attempt, const char *why, long delay_ms);

/* The call's deadline in loop milliseconds (0 = none): timeout_ms bounds the whole call. */
uint64_t pd_xfer_deadline(uint64_t now, long timeout_ms);
/* A new attempt started delay_ms from now would still begin before the deadline. */
int pd_xfer_retry_fits(uint64_t deadline, uint64_t now, long delay_ms);

typedef struct pd_curlup pd_curlup_t;
typedef struct pd_h1up pd_h1up_t;
typedef struct pd_h2up pd_h2up_t;

/* One attempt's response head as it is read: status, framing facts, the retry hint and the
 * relayable headers ("name\0value\0" pairs, names lower-cased). */
typedef struct pd_xhead {
  int status;
  long content_length; /* -1 when absent */
  long retry_after_ms; /* -1 when absent */
  char *content_type;  /* NULL when absent */
  pd_buf_t pairs;
} pd_xhead_t;

void pd_xhead_init(pd_xhead_t *h);
/* Forgets everything read (a new attempt, or a new header block after a 1xx). */
void pd_xhead_reset(pd_xhead_t *h);
void pd_xhead_free(pd_xhead_t *h);
/* One header line: value without surrounding blanks. A header whose name is not an HTTP token
 * or whose value holds CR, LF, NUL or another control byte (HTAB aside) is dropped: it is
 * neither relayed nor read for framing or retry hints, on every backend. Returns 0, or -1
 * when it was dropped. */
int pd_xhead_add(pd_xhead_t *h, const char *name, size_t nlen, const char *value, size_t vlen);
/* Calls on_head with the collected head (its arrays live on this call's stack). */
void pd_xhead_emit(const pd_xhead_t *h, void (*on_head)(void *, const pd_xfer_head_t *), void *ud);

/* The message of an attempt that failed because no byte came for stall_ms. */
void pd_xfer_stall_msg(char *buf, size_t n, long stall_ms);
/* A call's deadline passed elapsed_ms after it began: "Operation timed out after N
 * milliseconds", then " (K attempts)" for attempts > 0, " waiting for a connection" for
 * PD_XFER_WAITING, nothing for 0. */
#define PD_XFER_WAITING (-1)
void pd_xfer_timeout_msg(char *buf, size_t n, uint64_t elapsed_ms, int attempts);

/* A status the client is spared while retries remain: 429 and 5xx. */
int pd_xfer_retryable_status(int status);
/* Delay before retrying after a retryable status: Retry-After(-ms) when given, else an
 * exponential backoff from 250 ms; capped at PD_RETRY_AFTER_CAP_MS. */
long pd_xfer_status_delay(const pd_xhead_t *h, int attempt);
/* Delay before retrying a failed connect: 50 ms doubling per attempt. */
long pd_xfer_connect_delay(int attempt);

/* The transfer base (xfer.c): what a transfer of every framing (h1*.c, h2*.c, curl.c) keeps
 * the same way: its options, the caller's callbacks, the retry, stale-connection and pause
 * bookkeeping, the head and the held body, the deferred failure, the clocks, and the
 * transfer's own timer (retry delay, queue wait, deferred failure, and what else the framing
 * times). Each framing embeds one as xb in its own transfer, which adds its request form and
 * its connection or stream, and gives it a const table of what differs:
 *   fire: the timer came due in one of the framing's modes (from PD_XT_FRAMING on, or
 *         PD_XT_RETRY); never for a cancelled transfer, never for PD_XT_FAIL (the base reports
 *         the kept failure itself);
 *   destroy: tear the transfer down after its on_done (pd_xfer_base_finish);
 *   timer_closed: the timer handle is closed (or was never opened): the framing may free the
 *         transfer once nothing else names it.
 * The framing owns the transfer: pd_xfer_base_init when it makes it, pd_xfer_base_release when
 * it destroys it. */
typedef struct pd_xfer_base pd_xfer_base_t;
typedef struct pd_xfer_base_ops {
  void (*fire)(pd_xfer_base_t *t, int mode);
  void (*destroy)(pd_xfer_base_t *t);
  void (*timer_closed)(pd_xfer_base_t *t);
} pd_xfer_base_ops_t;
enum { PD_XT_NONE, PD_XT_FAIL, PD_XT_RETRY, PD_XT_FRAMING };

struct pd_xfer_base {
  const pd_xfer_base_ops_t *ops;
  uv_loop_t *loop;
  long connect_timeout_ms, timeout_ms;
  long stall_ms; /* stall_timeout_ms; 0 = none */
  int retries, attempt;
  pd_xfer_cbs_t cbs;
  void *ud;
  int in_cb; /* a caller's callback is on the stack: a cancel inside it only marks cancelled */
  int cancelled;
  int head_done;
  int discard;          /* a retryable status: this attempt's body is not the caller's */
  int paused;           /* the caller's: stays across retries */
  int complete_pending; /* the response ended while held data waits for a resume */
  int stale_retried;    /* a reused connection died under it once: retried, not counted */
  int reader_abort;     /* on_data asked to stop: the caller's decision, not an upstream failure */
  pd_xhead_t head;
  pd_buf_t held; /* body that arrived while paused, delivered on resume */
  int fail_result;
  char fail_msg[160];
  uint64_t start_ns;
  uint64_t start_ms; /* loop ms: the call began */
  uint64_t deadline; /* loop ms: timeout_ms from start_ms, retries included; 0 = none */
  /* Loop ms the stall clock runs from: the attempt's last byte received, else the moment it
   * was bound or the caller resumed it. Only written on reads (no timer call per read): the
   * framing's deadline timer checks it when it fires and re-arms itself. */
  uint64_t rx_ms;
  pd_list_t wlink;  /* in its origin's waiter queue */
  pd_list_t blink;  /* in its framing's list of live transfers */
  uv_timer_t timer; /* opened on first use */
  int timer_open;
  int timer_mode; /* PD_XT_*, or the framing's own from PD_XT_FRAMING; PD_XT_NONE when idle */
};

/* Reports t's response head to the caller, once per transfer, unless cancelled. */
void pd_xfer_base_head(pd_xfer_base_t *t);
/* The caller's on_done with result and msg (the head first when result is PD_XFER_OK), unless
 * cancelled; the framing destroys the transfer afterwards. */
void pd_xfer_base_done(pd_xfer_base_t *t, int result, const char *msg);
/* The transfer's end: its timer stopped, on_done (pd_xfer_base_done), then ops->destroy. */
void pd_xfer_base_finish(pd_xfer_base_t *t, int result, const char *msg);
/* Reports a failure from the loop (a 0 ms PD_XT_FAIL), never inside the caller's frame. */
void pd_xfer_base_fail_soon(pd_xfer_base_t *t, int result, const char *msg);
/* The call's deadline passed after `attempts` attempts (PD_XFER_WAITING: while it waited for a
 * connection): PD_XFER_ETIMEOUT with pd_xfer_timeout_msg's message, at once or (soon) from the
 * loop. */
void pd_xfer_base_time_out(pd_xfer_base_t *t, int attempts, int soon);
/* Arms t's timer in mode to fire in ms (replacing what it was armed for). */
void pd_xfer_base_arm(pd_xfer_base_t *t, int mode, uint64_t ms);
/* Arms mode for t's deadline (at once when it has passed); stops the timer when there is none. */
void pd_xfer_base_arm_deadline(pd_xfer_base_t *t, int mode);
/* Stops t's timer, whatever it was armed for. */
void pd_xfer_base_stop(pd_xfer_base_t *t);
/* Frees what the base holds and closes its timer: ops->timer_closed follows, from the loop when
 * the timer was open, else before this returns. No ops->fire runs after this. */
void pd_xfer_base_release(pd_xfer_base_t *t);
/* Hands body bytes to the caller's on_data (the re-entrancy guard held around it): PD_GIVE_OK
 * (paused set when it asked for a pause), PD_GIVE_CANCELLED (it cancelled the transfer: no
 * callback may follow) or PD_GIVE_ABORT (it asked to abort). */
enum { PD_GIVE_OK = 0, PD_GIVE_CANCELLED = -1, PD_GIVE_ABORT = -2 };
static inline int pd_xfer_base_give(pd_xfer_base_t *t, const char *p, size_t n) {
  t->in_cb++;
  int rc = t->cbs.on_data ? t->cbs.on_data(t->ud, p, n) : 0;
  t->in_cb--;
  if (t->cancelled)
    return PD_GIVE_CANCELLED;
  if (rc < 0)
    return PD_GIVE_ABORT;
  if (rc > 0)
    t->paused = 1;
  return PD_GIVE_OK;
}
/* The same for everything held while paused, taken out of held (its length in *n). */
int pd_xfer_base_give_held(pd_xfer_base_t *t, size_t *n);
#define PD_XFER_READER_ABORT "the transfer was aborted by its reader"
/* Whether another attempt is allowed after delay_ms from now: retries left, and the total
 * deadline leaves room. */
int pd_xfer_base_may_retry(const pd_xfer_base_t *t, long delay_ms);
/* Keeps result and msg for the failure the framing reports from its timer. */
void pd_xfer_base_fail_later(pd_xfer_base_t *t, int result, const char *msg);
/* Forgets what the previous attempt received (its head, held body, discard and completion)
 * before the next one; paused stays, it is the caller's. */
void pd_xfer_base_new_attempt(pd_xfer_base_t *t);
/* Sets t up for a call of o on loop (its timeouts, retries, callbacks; the clock from now),
 * wlink and blink unlinked: the framing links them itself. ops is the framing's table. */
void pd_xfer_base_init(pd_xfer_base_t *t, const pd_xfer_base_ops_t *ops, uv_loop_t *loop,
                       const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs, void *ud);
/* The caller cancels t: 1 when the framing tears the transfer down now, 0 when it was
 * cancelled already or a callback runs (whoever calls back tears it down when it returns). */
int pd_xfer_base_cancel(pd_xfer_base_t *t);
/* Seconds since t's call started. */
double pd_xfer_base_elapsed(const pd_xfer_base_t *t);
/* Whether a call of o states its body's length even when it has none (POST, PUT, PATCH). */
int pd_xfer_sends_length(const pd_xfer_opts_t *o);

/* An origin's (or a proxy's) address, as the native clients keep it (origin.c): the authority
 * parsed, literal IP addresses taken as they are, host names resolved with uv_getaddrinfo and
 * cached. */
#define PD_ORIGIN_MAX_ADDRS 4
#define PD_ORIGIN_RESOLVE_TTL_MS 30000 /* how long a host name's addresses are reused */
typedef struct pd_origin_addr {
  char *authority; /* "host:port" as the URL spells it */
  size_t alen;
  char *host; /* without brackets */
  char port[8];
  int literal; /* host is an IP address: never resolved */
  struct sockaddr_storage addrs[PD_ORIGIN_MAX_ADDRS];
  int naddrs;
  uint64_t resolved_at;
} pd_origin_addr_t;

/* The request target for the path pd_url_split found: the fragment cut, "/" put before an
 * empty path or a bare query. Returns a malloc'd string, or NULL. */
char *pd_url_target(const char *path);
/* Splits "http://authority/path?query" or "https://..." (*tls set to 1 for https); returns the
 * authority's length or -1. */
long pd_url_split(const char *url, const char **auth, const char **path, int *tls);
/* Parses "host", "host:port" or "[v6]:port" (port default_port when not given). Returns 0, or
 * -1 with nothing left to free. */
int pd_origin_addr_init(pd_origin_addr_t *a, const char *auth, size_t alen,
                        const char *default_port);
void pd_origin_addr_free(pd_origin_addr_t *a);
/* The addresses can be used without resolving (a literal, or resolved less than the TTL ago). */
int pd_origin_addr_fresh(const pd_origin_addr_t *a, uint64_t now);
/* Takes uv_getaddrinfo's answer (and frees res); returns the status to report: UV_EAI_NONAME
 * when it held no IPv4 or IPv6 address. */
int pd_origin_addr_resolved(pd_origin_addr_t *a, int status, struct addrinfo *res, uint64_t now);

pd_curlup_t *pd_curlup_new(uv_loop_t *loop, int max_host_connections);
void pd_curlup_close(pd_curlup_t *c, void (*on_closed)(void *ud), void *ud);
void pd_curlup_free(pd_curlup_t *c);
pd_xfer_t *pd_curlup_start(pd_curlup_t *c, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                           void *ud);
void pd_curlup_pause(pd_xfer_t *x);
void pd_curlup_resume(pd_xfer_t *x);
void pd_curlup_cancel(pd_xfer_t *x);
double pd_curlup_elapsed(const pd_xfer_t *x);

/* HTTP/1.1: http:// calls, and https:// ones that offer only HTTP/1.1 by ALPN ("http2: false",
 * or handed over by the HTTP/2 client once an origin's server chose HTTP/1.1). */
pd_h1up_t *pd_h1up_new(uv_loop_t *loop, int max_host_connections);
void pd_h1up_close(pd_h1up_t *b, void (*on_closed)(void *ud), void *ud);
void pd_h1up_free(pd_h1up_t *b);
/* Takes http:// and https:// URLs. Returns NULL on failure (the body is freed). */
pd_xfer_t *pd_h1up_start(pd_h1up_t *b, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs, void *ud);
void pd_h1up_pause(pd_xfer_t *x);
typedef struct pd_tls pd_tls_t;
/* Takes an https:// connection whose TLS handshake chose HTTP/1.1 (made by the HTTP/2 client)
 * as an idle connection of op's origin: tcp (its own allocation, not reading) and tls are this
 * client's from a return of 0; on -1 (closing, no slot, out of memory) the caller keeps them. */
int pd_h1up_adopt(pd_h1up_t *b, const pd_xfer_opts_t *op, uv_tcp_t *tcp, pd_tls_t *tls);
/* For the fuzz target: what pd_h1_wire_parse_bytes saw. */
typedef struct pd_h1up_parse_stats {
  int heads;         /* final heads delivered */
  int responses;     /* responses that ended */
  size_t max_head;   /* largest head (status line and fields) counted */
  size_t body_bytes; /* body bytes given to on_data or held during a pause */
  int error;         /* the parser stopped on bad bytes or a head over the cap */
} pd_h1_wire_parse_stats_t;
/* Runs the client's response parsing (the llhttp settings, the head bookkeeping, the body
 * framing, pause holding) over data as one connection would receive it in reads of `chunk`
 * bytes, with no network: after each complete response the next bytes are parsed as the next
 * response on the same connection; the end of data is the end of the connection. is_head makes
 * every request a HEAD; retries > 0 exercises the discarding of retryable statuses. */
void pd_h1_wire_parse_bytes(const char *data, size_t len, size_t chunk, int is_head, int retries,
                            pd_h1_wire_parse_stats_t *st);
void pd_h1up_resume(pd_xfer_t *x);
void pd_h1up_cancel(pd_xfer_t *x);
double pd_h1up_elapsed(const pd_xfer_t *x);

pd_h2up_t *pd_h2up_new(uv_loop_t *loop, int max_host_connections, pd_h1up_t *h1);
void pd_h2up_close(pd_h2up_t *b, void (*on_closed)(void *ud), void *ud);
void pd_h2up_free(pd_h2up_t *b);
/* Takes http:// URLs (HTTP/2 with prior knowledge) and https:// ones (TLS, ALPN offering h2
 * and HTTP/1.1), streams multiplexed over a few connections per origin. A call to an origin
 * whose server chose HTTP/1.1 is returned by the HTTP/1.1 client (its ops say so). Returns
 * NULL on failure (the body is freed). */
pd_xfer_t *pd_h2up_start(pd_h2up_t *b, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs, void *ud);
void pd_h2up_pause(pd_xfer_t *x);
void pd_h2up_resume(pd_xfer_t *x);
void pd_h2up_cancel(pd_xfer_t *x);
double pd_h2up_elapsed(const pd_xfer_t *x);

#endif
