/* Inside the HTTP server: the server and connection structs and the connection operations that
 * server.c (listener, connections, write queue, timers), parser.c (the llhttp callbacks and
 * limits) and res.c (the response writer) share. Only the files of proxy/http/ include this; it
 * is the server's one include of llhttp.h (the upstream HTTP/1.1 client has its own). */
#ifndef PD_SERVER_INT_H
#define PD_SERVER_INT_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/list.h"
#include "http/req.h"
#include "http/server.h"

/* Bytes queued for a client and not yet taken by its socket: above HIGH_WATERMARK a handler's
 * producer pauses (pd_res_write returns 1) and no further pipelined request is read or parsed;
 * below LOW_WATERMARK both resume. */
#define HIGH_WATERMARK (64 * 1024)
#define LOW_WATERMARK (16 * 1024)
#define READ_CHUNK (64 * 1024)
/* Bytes of pipelined requests held while one is in flight before reading stops. */
#define PENDING_MAX (256 * 1024)

enum { CONN_IDLE, CONN_HEAD, CONN_BODY, CONN_INFLIGHT };

struct pd_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  pd_server_opts_t opts;
  pd_dispatch_fn dispatch;
  pd_head_fn check_head; /* NULL: every Expect: 100-continue is answered 100 at once */
  void *ud;
  size_t nconns;
  size_t inflight;
  pd_list_t conns; /* open connections (pd_conn_t.link), newest first */
  int stopping, listener_closed;
  void (*on_closed)(void *);
  void *on_closed_ud;
  uv_idle_t resume_idle; /* runs deferred parsing of pipelined requests */
  /* One read buffer for every connection of this loop: libuv allocates, reads and calls back
   * one stream at a time, and the bytes are parsed (or copied to `pending`) before the next
   * read. Saves a 64 KiB buffer per idle connection. */
  char rbuf[READ_CHUNK];
  int rbuf_busy;
  pd_list_t resume; /* connections with parsing to resume (pd_conn_t.resume_link) */
};

struct pd_conn {
  /* First member: a connection that failed to be accepted is freed through its handle. TCP for
   * accepted connections; a pipe for a connected AF_UNIX socket handed to pd_server_adopt. */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } io;
  uv_timer_t timer;
  pd_server_t *srv;
  pd_list_t link;        /* in srv->conns */
  pd_list_t resume_link; /* in srv->resume while linked */
  llhttp_t parser;
  int state;
  int closing;
  int handles_open; /* tcp + timer until both close callbacks ran */
  int handles_closing;
  int close_after; /* close once the write queue is empty */
  int parsing;     /* inside llhttp_execute */
  int reading;     /* uv_read_start active */
  /* The write queue went above HIGH_WATERMARK between requests: neither reading nor parsing
   * goes on until it drains below LOW_WATERMARK (on_write). */
  int write_blocked;
  int err_status;            /* a limit was hit while parsing: 413 / 431 */
  size_t queued;             /* bytes handed to uv_write and not yet written */
  uint64_t out_total;        /* bytes ever handed to the socket (written at once or queued) */
  uint64_t flushed_at_timer; /* flushed() at the last tick; UINT64_MAX: not taken yet */
  size_t head_bytes;
  size_t tail_bytes; /* chunk extensions and trailer fields of the body (read, not kept) */
  pd_buf_t pending;  /* bytes received while a request is in flight */
  /* url and header strings of the current request. It grows (and may move) only while the
   * head is parsed, so only offsets are kept until then; once the head is complete
   * (head_done) it is frozen and r->url / r->headers[] point into it until the request ends. */
  pd_buf_t arena;
  size_t hdr_name_off[PD_MAX_HEADERS], hdr_value_off[PD_MAX_HEADERS];
  int in_value;
  int too_many_headers;
  int head_done;
  pd_req_t req;
};

/* ---- server.c: the connection ---- */

/* Queues pre + data + post on the connection (tried at once with uv_try_write; what the
 * socket does not take is queued, copied unless `owned` is given). Takes ownership of `owned`
 * (which holds data) when non-NULL. Returns 0, or -1 on allocation or write failure. */
int pd_server_write(pd_conn_t *c, const char *pre, size_t prelen, const char *data, size_t len,
                    char *owned, const char *post, size_t postlen);
/* (Re)starts the connection's deadline: ms from now (<= 0: none). */
void pd_server_arm_timer(pd_conn_t *c, long ms);
/* Queues the connection to parse its held bytes and read again, from the loop (never from the
 * caller's frame). */
void pd_server_resume(pd_conn_t *c);
/* Stops reading the socket (a no-op when not reading). */
void pd_server_stop_reading(pd_conn_t *c);
/* Between two requests: when the client is not taking its responses, neither read its next
 * requests nor parse those already read, until the write queue is below LOW_WATERMARK.
 * Returns 1 when blocked. */
int pd_server_write_block(pd_conn_t *c);

/* ---- parser.c: llhttp on a connection ---- */

/* Sets the connection's parser up for a first request. */
void pd_parser_init(pd_conn_t *c);
/* Parses bytes the connection read; answers 400 / 413 / 431 itself on a parse error or a limit,
 * and holds bytes after a request that is in flight in c->pending. */
void pd_parser_feed(pd_conn_t *c, const char *data, size_t len);

#endif
