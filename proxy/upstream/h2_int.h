/* Inside the native HTTP/2 client: the backend, origin, connection and transfer structs and
 * what its three files call of each other. h2.c owns the backend, its origins and connections
 * (connect, TLS, CONNECT tunnels, reads and writes) and the public pd_h2up_* side; h2_xfer.c a
 * transfer's timers, retries and endings, its request headers and the hand-over to the HTTP/1.1
 * client; h2_session.c the streams on a connection and the nghttp2 callbacks. Nothing outside
 * h2*.c includes this. */
#ifndef PD_UPSTREAM_H2_INT_H
#define PD_UPSTREAM_H2_INT_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/conn.h"
#include "upstream/origin.h"
#include "upstream/upstream_int.h"

#define READ_BUF_SIZE PD_CONN_READ_BUF
#define MAX_HEAD_BYTES (100 * 1024) /* one response header block */
#define IDLE_MAX_MS 60000           /* connections without streams longer than this are closed */
#define SETTINGS_WAIT_MAX_MS                                                                       \
  30000 /* the wait for the server's SETTINGS when connect_timeout_ms is 0 */
#define ERRMSG_SIZE 160
#define STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE we advertise */
#define CONN_WINDOW (1 << 30)      /* so that paused streams do not stall the others */
#define WRITE_CHUNK (256 * 1024)   /* frames gathered into one write at most (about) */
#define PROVISIONAL_STREAMS 100    /* per connection until the server's SETTINGS arrive */
#define MAX_FREE_REFUSALS 4        /* refused streams retried without counting an attempt */
#define MAX_EARLY_REFUSALS 16      /* the same, for streams sent before the server's SETTINGS */
#define LAST_STREAM_ID 0x7fffff00u /* past this a connection takes no new streams */

typedef struct xfer xfer_t;
typedef struct conn conn_t;
typedef struct origin origin_t;

struct pd_h2up {
  uv_loop_t *loop;
  pd_h1up_t *h1;         /* takes the calls to origins whose server chose HTTP/1.1 by ALPN */
  pd_origin_owner_t own; /* its origins, connections, transfers, and its close (origin.h) */
  nghttp2_session_callbacks *ngcbs;
  nghttp2_option *ngopt;
  char rbuf[READ_BUF_SIZE]; /* shared by all reads: nghttp2 consumes it before on_read returns */
};

/* One http://host:port: its addresses, connections and waiting transfers. */
struct origin {
  pd_h2up_t *b;
  pd_origin_t base;  /* the key, the dialled address, TLS, the proxy, the slots (nconns: the
                        length of live) */
  int h1;            /* its server chose HTTP/1.1 by ALPN: calls go to the HTTP/1.1 client */
  conn_t *live;      /* connections not closing, newest first */
  uint32_t peer_max; /* the server's last SETTINGS_MAX_CONCURRENT_STREAMS; 0 = not known */
  int serving, serve_again;
};

static inline origin_t *pd_h2_origin_of(pd_origin_t *base) {
  return (origin_t *)((char *)base - offsetof(origin_t, base));
}

struct conn {
  pd_conn_t cn; /* first: the socket, the timer (connect deadline until the server's SETTINGS,
                   then idle expiry), TLS, the tunnel, the state (conn.h) */
  nghttp2_session *ng;
  origin_t *o;
  int ready;   /* the server's SETTINGS arrived */
  int goaway;  /* takes no new streams */
  int retired; /* neither (its calls or its age reached the pool's bounds): closes once idle */
  uint32_t goaway_code;
  int served; /* a stream has ended on it */
  int writing;
  int in_recv, in_send; /* inside nghttp2_session_mem_recv / mem_send */
  long connect_timeout_ms;
  int nstreams;
  xfer_t *streams; /* bound transfers, cancelled ones included until their stream closes */
  pd_buf_t wbuf;   /* frames being written */
  conn_t *oprev, *onext;
};

/* The transfer timer's own modes (after the base's PD_XT_*): the call's deadline or stall
 * bound, and a stream's ending handled from the loop. */
enum { T_DEADLINE = PD_XT_FRAMING, T_ENDED };

struct xfer {
  pd_xfer_t base;    /* first: the front casts */
  pd_xfer_base_t xb; /* what both native framings keep the same way */
  pd_h2up_t *b;
  origin_t *o;
  conn_t *c;        /* while bound to a stream */
  pd_xfer_t *inner; /* handed to the HTTP/1.1 client: this transfer only forwards to it */
  int32_t stream_id;
  xfer_t *sprev, *snext;
  char *method, *path, *authority; /* authority: a configured Host, else NULL */
  char *hdrs;                      /* "name\0value\0" pairs, names lower-case */
  size_t hdrs_len;
  int nhdrs;
  char *body;
  size_t body_len, body_off;
  int send_length;
  int refusals, early_refusals;
  int destroyed; /* no callbacks ever again; freed once the timer and stream let go */
  int timer_closed;
  int got_response; /* a header block of this attempt began */
  int final_head;   /* this attempt's final (non-1xx) head is complete */
  int ended;        /* END_STREAM seen */
  int too_large;
  int on_reused; /* bound to a connection that had served streams already */
  int early;     /* sent before the connection had the server's SETTINGS */
  uint32_t end_code;
  size_t head_bytes;
};

/* A new connection of origin o with its nghttp2 session and our SETTINGS queued, not yet
 * connecting; NULL when out of memory. */
conn_t *pd_h2up_conn_new(origin_t *o, long connect_timeout_ms);
/* Starts opening c: resolves the origin's addresses first if they are stale. */
void pd_h2up_conn_start_connect(conn_t *c);
/* A connection's timer: a deferred connect failure, the connect or SETTINGS wait, or the
 * idle expiry. */
void pd_h2up_on_conn_timer(uv_timer_t *t);
/* Writes what nghttp2 has to send: one write at a time, up to about WRITE_CHUNK; the rest
 * waits in nghttp2 until that write is done. Closes the connection once nghttp2 wants
 * neither to read nor to write. Does nothing inside nghttp2's own calls. */
void pd_h2up_conn_flush(conn_t *c);

/* Arms T_DEADLINE for the nearer of the call's deadline and the stall bound, unless the timer
 * is busy with something else (a retry, an ending, a failure to report). */
void pd_h2_xfer_arm_deadline(xfer_t *x);
/* Forgets what the previous attempt received (head, held body) before the next one. */
void pd_h2_xfer_new_attempt(xfer_t *x);
/* The HTTP/2 transfer's table for its base: its timer's deadline, retry and stream ending,
 * its teardown. */
extern const pd_xfer_base_ops_t pd_h2_xfer_base_ops;
/* Frees a destroyed transfer once its timer is closed and no stream names it. */
void pd_h2_xfer_maybe_free(xfer_t *x);
/* Takes x out of its origin's waiter queue (a no-op when not queued). */
void pd_h2_xfer_queue_unlink(xfer_t *x);
/* Takes a transfer off its stream (which is closed, never sent, or going with its connection).
 * Bytes it holds are released at the connection level: no more can come for the stream. */
void pd_h2_xfer_stream_release(xfer_t *x);
/* Cancels for good: no callback runs after this. The memory goes once the timer has closed and
 * nghttp2 has let go of the stream. */
void pd_h2_xfer_destroy(xfer_t *x);
/* The transfer's stream closed (x is released from it). */
void pd_h2_xfer_ended(xfer_t *x, uint32_t code);
/* The connection x was on failed or ended (x is released from it already). Nothing calls back
 * from here: the outcome comes from x's timer. */
void pd_h2_xfer_conn_lost(xfer_t *x, int result, const char *msg);
/* "Name: value" lines to lower-case "name\0value\0" pairs; a Host line becomes :authority. */
int pd_h2_xfer_parse_headers(xfer_t *x, const char *const *lines);
/* The server chose HTTP/1.1: hands x's call to the HTTP/1.1 client, whose callbacks are
 * forwarded to x's caller. */
void pd_h2_xfer_hand_over(xfer_t *x);

/* Sends x's request as a new stream of c. */
void pd_h2_session_submit(conn_t *c, xfer_t *x);
/* Gets the transfer a stream, or a place in the queue (first come, first served). */
void pd_h2_session_acquire(xfer_t *x);
/* The connection takes no new streams (the pool's bounds): it closes once it has none. */
void pd_h2_session_retire(conn_t *c);
/* Places o's waiting transfers on connections with free stream slots, in order; safe to
 * call from inside itself (it loops again instead). */
void pd_h2_session_serve_waiters(origin_t *o);
/* Builds the backend's nghttp2 callback table; 0, or -1 when out of memory. */
int pd_h2_session_setup_callbacks(pd_h2up_t *b);

#endif
