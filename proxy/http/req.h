/* One HTTP request as the server hands it to a handler: method, url, the header table and the
 * body, plus the response state that http/res.c keeps in it. Owns the header lookup and the
 * request ids (x-request-id: the client's when usable, else a random one). The strings point
 * into the connection's buffers and stay valid until pd_server_finish. */
#ifndef PD_REQ_H
#define PD_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct pd_conn pd_conn_t;
typedef struct pd_req pd_req_t;

/* Hooks a handler sets on a request it keeps in flight. */
typedef struct pd_req_hooks {
  /* The client went away (or the server is forced down). The handler must stop its work and
   * call pd_server_finish, now or later; writing is no longer possible. */
  void (*on_abort)(pd_req_t *req);
  /* The write queue dropped below the low watermark after pd_res_write reported pressure. */
  void (*on_drain)(pd_req_t *req);
} pd_req_hooks_t;

#define PD_MAX_HEADERS 100

struct pd_req {
  pd_conn_t *conn;
  const char *method; /* "GET", "POST", ... */
  char *url;          /* path + query, NUL-terminated; valid until pd_server_finish */
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

/* Request header lookup (name lower-case); NULL when absent. The value is the request's. */
const char *pd_req_header(const pd_req_t *r, const char *name);

/* The length of a usable client request id (1 to 128 visible ASCII bytes), or 0. */
size_t pd_req_id_valid(const char *s);
/* Writes a new random id "req_" + 32 hex digits and a NUL into out (37 bytes). */
void pd_req_id_new(char *out);

#endif
