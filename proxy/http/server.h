/* HTTP/1.1 server on libuv + llhttp: keep-alive, pipelining (one request in flight per
 * connection, the rest held unparsed), Content-Length and chunked bodies (trailer fields read
 * and ignored), SPEC section 3 limits, x-request-id on every response, backpressure on writes
 * (a write-queue watermark that also stops reading and parsing pipelined requests), a deadline
 * in every connection state. Only server.c includes llhttp.h. */
#ifndef PD_SERVER_H
#define PD_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "config/config.h"

typedef struct pd_server pd_server_t;
typedef struct pd_conn pd_conn_t;
typedef struct pd_req pd_req_t;

/* Called when a request is complete. The handler owns the request until pd_req_finish. */
typedef void (*pd_dispatch_fn)(void *ud, pd_req_t *req);
/* Called with a request head that carries `Expect: 100-continue`, before any interim response
 * is sent and before a body byte is read (req->body is empty). Returns 0 to let the body come
 * (the request is dispatched once complete, as any other), or answers the request itself and
 * returns 1: it then owns the request until pd_req_finish, exactly as after dispatch; no
 * 100 Continue is sent, the body is never read and the connection closes after the answer. */
typedef int (*pd_head_fn)(void *ud, pd_req_t *req);

/* Hooks a handler sets on a request it keeps in flight. */
typedef struct pd_req_hooks {
  /* The client went away (or the server is forced down). The handler must stop its work and
   * call pd_req_finish, now or later; writing is no longer possible. */
  void (*on_abort)(pd_req_t *req);
  /* The write queue dropped below the low watermark after pd_res_write reported pressure. */
  void (*on_drain)(pd_req_t *req);
} pd_req_hooks_t;

#define PD_MAX_HEADERS 100

struct pd_req {
  pd_conn_t *conn;
  const char *method; /* "GET", "POST", ... */
  char *url;          /* path + query, NUL-terminated; valid until pd_req_finish */
  size_t path_len;    /* bytes of url before '?' */
  const char *query;  /* after '?', or "" */
  size_t nheaders;
  struct {
    const char *name; /* lower-case */
    const char *value;
  } headers[PD_MAX_HEADERS];
  pd_buf_t body;
  char request_id[130];
  /* Reset per request from here to the end (fields above are reset one by one). */
  int http_minor;
  int keep_alive;
  int is_head;
  uint64_t start_ns; /* uv_hrtime at message begin */
  /* Handler side. */
  const pd_req_hooks_t *hooks;
  void *data;
  /* Response side (managed by pd_res_*). */
  int status;
  int res_started, res_chunked, res_ended, res_bodiless, pressure;
};

/* Server options resolved from the config. */
typedef struct pd_server_opts {
  long max_body_bytes, max_header_bytes, header_timeout_ms, idle_timeout_ms;
  long max_connections; /* per worker */
} pd_server_opts_t;

/* Starts serving on an already bound and listening socket fd, or, with fd < 0, only the
 * connections handed to pd_server_adopt. Returns NULL on failure. */
pd_server_t *pd_server_start(uv_loop_t *loop, int fd, const pd_server_opts_t *opts,
                             pd_dispatch_fn dispatch, void *ud);
/* Serves an already connected stream socket (TCP, or AF_UNIX such as one end of a socketpair)
 * exactly as an accepted connection. On success (0) the server owns fd; on failure (a negative
 * libuv code) the caller still does. Used by tests and the fuzz target to feed the real parser
 * without a network. */
int pd_server_adopt(pd_server_t *s, int fd);
/* Sets the check offered each head that expects 100-continue (NULL: none, the interim
 * response is sent at once). The check gets the dispatch `ud`. */
void pd_server_set_head_check(pd_server_t *s, pd_head_fn check);
/* Updates limits for new connections and requests (config reload). */
void pd_server_set_opts(pd_server_t *s, const pd_server_opts_t *opts);
/* Stops accepting and closes idle connections; connections with a request in flight close
 * after it. `force` also aborts in-flight requests. on_closed runs once everything is closed. */
void pd_server_stop(pd_server_t *s, int force, void (*on_closed)(void *ud), void *ud);
size_t pd_server_inflight(const pd_server_t *s);
/* Frees the server after pd_server_stop's on_closed ran and the loop has finished. */
void pd_server_free(pd_server_t *s);

/* Request header lookup (name lower-case); NULL when absent. */
const char *pd_req_header(const pd_req_t *r, const char *name);

/* Sends a whole response with Content-Length. extra: NULL-terminated name/value pairs. */
void pd_res_send(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                 const char *body, size_t len);
/* Sends the OpenAI error object with status. */
void pd_res_error(pd_req_t *r, int status, const char *message, const char *type, const char *param,
                  const char *code);
/* Starts a response; content_length < 0 means a streamed (chunked) body. */
void pd_res_start(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                  long content_length);
/* Appends body bytes (copied). Returns 1 when the write queue is above the high watermark:
 * the caller should pause its producer until on_drain. */
int pd_res_write(pd_req_t *r, const char *data, size_t len);
/* Like pd_res_write, but takes the buffer's storage (no copy); b is left empty. */
int pd_res_write_buf(pd_req_t *r, pd_buf_t *b);
/* Ends the response body. `close_after` closes the connection once written (e.g. after a
 * failure mid-stream). */
void pd_res_end(pd_req_t *r, int close_after);
/* The handler is done with the request (response ended, or aborted). The request memory is
 * released; the connection moves on to the next pipelined request or idles. */
void pd_req_finish(pd_req_t *r);

/* Status reason phrase. */
const char *pd_http_reason(int status);

#endif
