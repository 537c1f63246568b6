/* Inside the native HTTP/1.1 client: the backend, origin, connection and transfer structs and
 * what its three files call of each other. h1.c owns the backend, its origins and connections
 * (connect, TLS, CONNECT tunnels) and the public pd_h1up_* side; h1_xfer.c a transfer's attempts,
 * retries, timers and endings; h1_wire.c the bytes on the wire: the request written and the
 * response parsed. Nothing outside h1*.c includes this. */
#ifndef PD_UPSTREAM_H1_INT_H
#define PD_UPSTREAM_H1_INT_H

#include <llhttp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/conn.h"
#include "upstream/origin.h"
#include "upstream/upstream_int.h"

#define READ_BUF_SIZE PD_CONN_READ_BUF
#define MAX_HEAD_BYTES (100 * 1024) /* response status line + headers */
#define IDLE_MAX_MS 60000           /* idle keep-alive connections older than this are closed */
#define ERRMSG_SIZE 160

typedef struct xfer xfer_t;
typedef struct conn conn_t;
typedef struct origin origin_t;

struct pd_h1up {
  uv_loop_t *loop;
  pd_origin_owner_t own;    /* its origins, connections, transfers, and its close (origin.h) */
  char rbuf[READ_BUF_SIZE]; /* shared by all reads: data is parsed before the callback returns */
};

/* One scheme://host:port: its addresses, idle connections and waiting transfers. */
struct origin {
  pd_h1up_t *b;
  pd_origin_t base; /* the key, the dialled address, TLS, the proxy, the slots (nconns: open or
                       opening, idle included) */
  conn_t *idle;     /* most recently used first */
};

static inline origin_t *pd_h1_origin_of(pd_origin_t *base) {
  return (origin_t *)((char *)base - offsetof(origin_t, base));
}

struct conn {
  pd_conn_t cn; /* first: the socket, the timer (connect/stall/total deadline while busy,
                   expiry while idle), TLS, the state (conn.h) */
  llhttp_t parser;
  origin_t *o;
  xfer_t *x; /* the transfer being served; NULL when idle */
  int state;
  int idle;
  int reused;    /* it has served a response before */
  int got_bytes; /* any byte of the current response */
  int writing;
  int reading;
  int msg_done;
  int aborted; /* the transfer's on_data asked to abort */
  int too_large;
  size_t head_bytes;
  pd_buf_t hname, hvalue;
  pd_buf_t out;  /* the request head being written */
  char *orphan;  /* a body left by a transfer cancelled mid-write; freed when the write ends */
  conn_t *lnext; /* idle list */
};

/* The transfer timer's own mode (after the base's PD_XT_*): the wait for a free connection. */
enum { T_QUEUE = PD_XT_FRAMING };

struct xfer {
  pd_xfer_t base;    /* first: the front casts */
  pd_xfer_base_t xb; /* what both native framings keep the same way */
  pd_h1up_t *b;
  origin_t *o;
  conn_t *c;
  char *method, *path, *hdrs, *body;
  size_t hdrs_len, body_len;
  int send_length;
  int own_host; /* the caller's headers carry Host */
  int is_head;
  int fresh_only; /* a reused connection died under this attempt: open a new one */
};

/* Closes a connection its transfer has already left (c->x == NULL), without giving its slot to
 * a waiting transfer: for a caller that will use the slot itself. */
void pd_h1up_conn_close_keep_slot(conn_t *c);
/* Closes a connection its transfer has already left, and lets a waiting transfer have its slot. */
void pd_h1up_conn_close(conn_t *c);
/* A new connection of origin o, not yet connecting; counted in its slots. */
conn_t *pd_h1up_conn_new(origin_t *o);
/* Unbinds x from its connection (if any) and stops that connection's deadline; the
 * connection stays open, the caller decides its fate. */
void pd_h1up_detach(xfer_t *x);
/* The caller's pause holds this transfer's input: it is paused and the bytes coming are body it
 * would deliver (its head is delivered). Until then a paused transfer reads on: a head, and a
 * retryable status's body that is discarded (else the retry would wait for the resume). */
int pd_h1up_input_held(const xfer_t *x);
/* The stall clock runs: a stall bound is set and the caller's pause does not hold the input
 * (time ponder itself holds the response is not the upstream's silence). */
int pd_h1up_stall_armed(const xfer_t *x);
/* Arms the connection's timer for the transfer's next deadline: connect, stall or total. */
void pd_h1up_arm_deadline(conn_t *c);
/* Binds x to c for one attempt: resets the per-response state and starts the deadlines. */
void pd_h1up_bind_conn(conn_t *c, xfer_t *x);
/* Starts opening c: resolves the origin's addresses first if they are stale. */
void pd_h1up_conn_start_connect(conn_t *c);
/* Puts a connection whose response ended cleanly back in its origin's idle list. */
void pd_h1up_conn_release(conn_t *c);
/* A connect (or resolve) of c failed with status: tries the next address, else fails or
 * retries the bound transfer; c is closed. */
void pd_h1up_connect_failed(conn_t *c, int status);
/* Starts reading c's socket (idempotent). */
void pd_h1up_start_reading(conn_t *c);
/* Stops reading c's socket (idempotent): a paused transfer holds its input. */
void pd_h1up_stop_reading(conn_t *c);
/* Writes what libssl has for the network (request: the write ends the request's). A failed
 * handshake write shows as a failed read, or as the connect timeout. Returns 0 or a libuv
 * error. */
int pd_h1up_tls_flush(conn_t *c, int request);
/* The HTTP/1.1 transfer's table for its base: its timer's queue wait and retry, its teardown. */
extern const pd_xfer_base_ops_t pd_h1_xfer_base_ops;
/* An attempt failed before a complete response: retry a failed connect while retries remain,
 * else report. The connection is already detached. */
void pd_h1_xfer_attempt_failed(xfer_t *x, int result, const char *msg);
/* The response ended; the connection goes back to the pool when it can be reused. */
void pd_h1_xfer_attempt_complete(xfer_t *x, int keep);
/* Gets the transfer a connection: an idle one, a new one, or a place in the queue. */
void pd_h1_xfer_acquire(xfer_t *x);
/* Gives o's free or new connection slots to its waiting transfers, in order. */
void pd_h1_xfer_serve_waiters(origin_t *o);
/* Frees x: unbinds it (a connection mid-write keeps its body), leaves its queue, releases its
 * base (the memory goes once the timer has closed). No callback runs. */
void pd_h1_xfer_destroy(xfer_t *x);
/* A connection error or end of stream while serving x (status < 0). */
void pd_h1_xfer_conn_failed(conn_t *c, int status, const char *what);
/* A connection's timer: a deferred connect failure, the connect, stall or total deadline of
 * its transfer, or the idle expiry. */
void pd_h1_xfer_on_conn_timer(uv_timer_t *t);

/* The request (head and body) is written, or could not be. */
void pd_h1_wire_write_done(conn_t *c, int status);
/* Writes x's request (head, then body) on its connection c, over TLS when c has it. */
void pd_h1_wire_conn_send(conn_t *c);
/* Response bytes (plaintext) for the parser, or the end of the stream (nread < 0). Returns 1
 * when the connection is still the transfer's and reading may go on. */
int pd_h1_wire_conn_input(conn_t *c, ssize_t nread, const char *data);
/* Plaintext read off a connection's socket (not TLS, not the CONNECT reply), or its end. */
void pd_h1_wire_read(pd_conn_t *cn, ssize_t nread, const char *data);

/* llhttp callbacks of a response (h1_wire.c); every connection's parser uses them. */
extern const llhttp_settings_t pd_h1_wire_settings;

#endif
