/* One upstream connection as every native framing holds it: its socket and timer, its way to
 * the origin (the lookup and connect), the CONNECT tunnel through a proxy, the TLS handshake,
 * the read dispatch and the close bookkeeping. A framing embeds a pd_conn_t first in its own
 * connection and says what differs in a small const table (pd_conn_ops_t), the way
 * upstream.c's transfer base does for transfers. Owns the socket, the timer, the TLS state and
 * the tunnel reply buffer; the framing owns the rest of its connection. */
#ifndef PD_CONN_H
#define PD_CONN_H

#include <sys/types.h>

#include "base/buf.h"
#include "base/list.h"
#include "upstream/origin.h"
#include "upstream/tls.h"

/* PD_CONN_DIALING: looking the address up or connecting (k says which). */
enum { PD_CONN_DIALING, PD_CONN_TUNNEL, PD_CONN_HANDSHAKE, PD_CONN_OPEN, PD_CONN_CLOSING };

typedef struct pd_conn pd_conn_t;

/* What a framing does at each step; c is its own connection (pd_conn_t first). */
typedef struct pd_conn_ops {
  /* The TCP connect succeeded (nodelay and keep-alive set): tunnel, TLS or open. */
  void (*connected)(pd_conn_t *c);
  /* The lookup or connect failed with a libuv status (try the next address, or fail). */
  void (*connect_failed)(pd_conn_t *c, int status);
  /* The connection reaches the origin and speaks plaintext or TLS is done: ready for the
   * framing's bytes (sets PD_CONN_OPEN). */
  void (*opened)(pd_conn_t *c);
  /* The TLS handshake is done: 1 when the connection is open for response bytes, else 0
   * (it went elsewhere or closed). */
  int (*tls_done)(pd_conn_t *c);
  /* The tunnel or TLS failed (result: PD_XFER_*, msg the cause): the framing closes c. */
  void (*fail)(pd_conn_t *c, int result, const char *msg);
  /* Bytes read on a TLS connection (its handshake and records are the framing's loop). */
  void (*tls_read)(pd_conn_t *c, ssize_t nread, const char *data);
  /* Plaintext read off the socket, or its end (nread < 0). */
  void (*read)(pd_conn_t *c, ssize_t nread, const char *data);
  /* The handles are closed: frees what the framing's connection owns (not c itself). */
  void (*freed)(pd_conn_t *c);
} pd_conn_ops_t;

struct pd_conn {
  uv_tcp_t *tcp; /* its own allocation: a connection can change hands (pd_h1up_adopt) */
  uv_write_t write_req;
  pd_origin_conn_t k; /* the lookup and connect (origin.c) */
  uv_timer_t timer;   /* the framing's deadlines and idle expiry */
  pd_tls_t *tls;      /* https://: the connection's TLS state, from the TCP connect on */
  pd_buf_t tunnel;    /* through a proxy: its reply to CONNECT, as it arrives */
  pd_origin_t *origin;
  const pd_conn_ops_t *ops;
  char *rbuf;      /* the backend's read buffer (PD_CONN_READ_BUF bytes), shared by its reads */
  int state;       /* PD_CONN_* */
  int pending;     /* handles still to close */
  pd_list_t blink; /* in the owner's conns */
};

#define PD_CONN_READ_BUF (64 * 1024)

/* Sets c up on tcp (a connected socket to adopt) or a new socket (tcp NULL), counted in o's
 * slots and linked in its owner's conns; on_timer is the framing's timer callback. Returns 0,
 * or -1 (nothing to undo: a socket given stays the caller's). */
int pd_conn_init(pd_conn_t *c, const pd_conn_ops_t *ops, pd_origin_t *o, uv_loop_t *loop,
                 uv_tcp_t *tcp, uv_timer_cb on_timer, char *rbuf);
/* Starts opening c: resolves the origin's addresses first if they are stale. */
void pd_conn_start_connect(pd_conn_t *c, uv_loop_t *loop);
/* Closes c's handles (the framing set PD_CONN_CLOSING and let go of what it links); once they
 * are closed ops->freed runs, then c is freed and its owner told. No socket: adopted elsewhere. */
void pd_conn_close_handles(pd_conn_t *c);
/* libuv's alloc callback for every connection: the backend's shared read buffer. */
void pd_conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* libuv's read callback: to TLS, the CONNECT reply, or ops->read. */
void pd_conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
/* The TCP path reaches the origin: starts TLS when it has it, else ops->opened. */
void pd_conn_reached(pd_conn_t *c);
/* Asks the proxy for a tunnel to the origin. Only the CONNECT line and Host go to the proxy:
 * the calls' own headers (their api_key) only ever travel inside the tunnel. */
void pd_conn_tunnel_start(pd_conn_t *c);
/* Starts the TLS handshake (PD_CONN_HANDSHAKE). */
void pd_conn_tls_start(pd_conn_t *c);
/* Bytes read on a TLS connection: the handshake (ops->tls_done at its end), the end of the
 * stream (to ops->read after it), or records fed to libssl. Returns 1 when plaintext may be
 * read now with pd_tls_read, else 0. */
int pd_conn_tls_input(pd_conn_t *c, ssize_t nread, const char *data);
/* "Connection timed out after N milliseconds", N since c's connect started (loop ms now). */
void pd_conn_timeout_msg(const pd_conn_t *c, uint64_t now, char *msg, size_t n);
/* A failure the origin's lookup or connect kept for the timer (k.err), taken: 1 when there was
 * one and ops->connect_failed had it. */
int pd_conn_deferred_failure(pd_conn_t *c);

#endif
