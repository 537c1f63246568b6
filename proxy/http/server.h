/* HTTP/1.1 server on libuv + llhttp: keep-alive, pipelining (one request in flight per
 * connection, the rest held unparsed), Content-Length and chunked bodies (trailer fields read
 * and ignored), SPEC section 3 limits, x-request-id on every response, backpressure on writes
 * (a write-queue watermark that also stops reading and parsing pipelined requests), a deadline
 * in every connection state. This header is the server's lifecycle; the request a handler gets
 * is http/req.h, the response writer http/res.h. Inside: server.c (listener, connections, write
 * queue, timers), parser.c (llhttp callbacks and limits) and res.c share http/server_int.h,
 * the server's one include of llhttp.h; nothing outside proxy/http/ sees llhttp through it. */
#ifndef PD_SERVER_H
#define PD_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "http/req.h"

typedef struct pd_server pd_server_t;

/* Called when a request is complete. The handler owns the request until pd_server_finish. */
typedef void (*pd_dispatch_fn)(void *ud, pd_req_t *req);
/* Called with a request head that carries `Expect: 100-continue`, before any interim response
 * is sent and before a body byte is read (req->body is empty). Returns 0 to let the body come
 * (the request is dispatched once complete, as any other), or answers the request itself and
 * returns 1: it then owns the request until pd_server_finish, exactly as after dispatch; no
 * 100 Continue is sent, the body is never read and the connection closes after the answer. */
typedef int (*pd_head_fn)(void *ud, pd_req_t *req);

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
/* Requests dispatched and not yet finished. */
size_t pd_server_inflight(const pd_server_t *s);
/* Frees the server after pd_server_stop's on_closed ran and the loop has finished. */
void pd_server_free(pd_server_t *s);

/* The handler is done with the request (response ended, or aborted). The request memory is
 * released; the connection moves on to the next pipelined request or idles. */
void pd_server_finish(pd_req_t *r);

#endif
