/* The HTTP/1.1 response writer (see http/res.h): response heads built on the stack, bodies in
 * Content-Length or chunked framing, handed to the connection's write queue
 * (pd_server_write), and the status reason table. */
#include "http/res.h"

#include <stdlib.h>
#include <string.h>

#include "core/openai.h"
#include "http/server_int.h"

const char *pd_res_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

/* Responses that never carry a body (RFC 9110): HEAD, 1xx, 204, 304. */
static int bodiless(const pd_req_t *r, int status) {
  return r->is_head || status < 200 || status == 204 || status == 304;
}

/* A response head is written into a caller's buffer; what does not fit is counted, so the
 * caller can retry with a buffer of the right size (heads rarely exceed the stack buffer). */
typedef struct head_w {
  char *buf;
  size_t cap, len;
} head_w_t;

static void hw_put(head_w_t *w, const char *s, size_t n) {
  if (w->len + n <= w->cap)
    memcpy(w->buf + w->len, s, n);
  w->len += n;
}

#define HW_LIT(w, lit) hw_put(w, lit, sizeof lit - 1)

static void hw_str(head_w_t *w, const char *s) {
  if (!s)
    s = "(null)"; /* what printf's %s wrote */
  hw_put(w, s, strlen(s));
}

static void hw_long(head_w_t *w, long v) {
  char tmp[24];
  hw_put(w, tmp, pd_buf_fmt_long(tmp, v));
}

static void build_head(head_w_t *h, const pd_req_t *r, int status, const char *content_type,
                       const char *const *extra, long content_length) {
  HW_LIT(h, "HTTP/1.1 ");
  hw_long(h, status);
  HW_LIT(h, " ");
  hw_str(h, pd_res_reason(status));
  HW_LIT(h, "\r\n");
  if (content_type) {
    HW_LIT(h, "content-type: ");
    hw_str(h, content_type);
    HW_LIT(h, "\r\n");
  }
  if (content_length >= 0 && status != 204 && status >= 200 && status != 304) {
    HW_LIT(h, "content-length: ");
    hw_long(h, content_length);
    HW_LIT(h, "\r\n");
  } else if (r->res_chunked) {
    HW_LIT(h, "transfer-encoding: chunked\r\n");
  }
  HW_LIT(h, "x-request-id: ");
  hw_str(h, r->request_id);
  HW_LIT(h, "\r\n");
  for (const char *const *e = extra; e && e[0]; e += 2) {
    hw_str(h, e[0]);
    HW_LIT(h, ": ");
    hw_str(h, e[1]);
    HW_LIT(h, "\r\n");
  }
  if (!r->keep_alive)
    HW_LIT(h, "connection: close\r\n");
  HW_LIT(h, "\r\n");
}

#define HEAD_STACK 2048

/* Builds the head in stack (HEAD_STACK bytes) or, when larger, in a malloc'd buffer returned in
 * *heap (NULL on allocation failure: the head is then empty). Returns the head. */
static const char *make_head(char *stack, char **heap, size_t *len, const pd_req_t *r, int status,
                             const char *content_type, const char *const *extra,
                             long content_length) {
  head_w_t w = {stack, HEAD_STACK, 0};
  *heap = NULL;
  build_head(&w, r, status, content_type, extra, content_length);
  if (w.len <= HEAD_STACK) {
    *len = w.len;
    return stack;
  }
  size_t need = w.len;
  *heap = malloc(need);
  *len = 0;
  if (!*heap)
    return stack;
  w = (head_w_t){*heap, need, 0};
  build_head(&w, r, status, content_type, extra, content_length);
  *len = w.len;
  return *heap;
}

/* The first call of a response: records the status (a stopping server closes the connection
 * after it). Returns 0 when a response was already started. */
static int begin(pd_req_t *r, int status) {
  if (r->res_started)
    return 0;
  r->res_started = 1;
  r->status = status;
  if (r->conn->srv->stopping)
    r->keep_alive = 0;
  return 1;
}

void pd_res_start(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                  long content_length) {
  if (!begin(r, status))
    return;
  r->res_bodiless = bodiless(r, status);
  if (content_length < 0 && !r->res_bodiless) {
    if (r->http_minor >= 1)
      r->res_chunked = 1;
    else
      r->keep_alive = 0; /* HTTP/1.0: the body ends when the connection closes */
  }
  char stack[HEAD_STACK], *heap;
  size_t len;
  const char *h = make_head(stack, &heap, &len, r, status, content_type, extra, content_length);
  /* pd_server_write copies what the socket does not take at once; a heap head is handed over. */
  pd_server_write(r->conn, NULL, 0, h, len, heap, NULL, 0);
}

/* Queues one piece of the body, in chunked framing when the response is chunked. Takes
 * `owned` (which holds p) when non-NULL; otherwise p is copied only if the socket is full. */
static int write_body(pd_req_t *r, const char *p, size_t len, char *owned) {
  pd_conn_t *c = r->conn;
  if (r->res_chunked) {
    static const char hex[] = "0123456789abcdef";
    char pre[24], tmp[20];
    size_t n = 0, pl = 0;
    size_t v = len;
    do {
      tmp[n++] = hex[v & 15];
      v >>= 4;
    } while (v);
    while (n)
      pre[pl++] = tmp[--n];
    pre[pl++] = '\r';
    pre[pl++] = '\n';
    pd_server_write(c, pre, pl, p, len, owned, "\r\n", 2);
  } else {
    pd_server_write(c, NULL, 0, p, len, owned, NULL, 0);
  }
  if (c->queued > HIGH_WATERMARK)
    r->pressure = 1;
  return r->pressure;
}

int pd_res_write_buf(pd_req_t *r, pd_buf_t *b) {
  if (!r->res_started || r->res_ended || b->len == 0 || r->res_bodiless) {
    pd_buf_reset(b);
    return r->pressure;
  }
  size_t len;
  char *p = pd_buf_steal(b, &len);
  return write_body(r, p, len, p);
}

int pd_res_write(pd_req_t *r, const char *data, size_t len) {
  if (!r->res_started || r->res_ended || len == 0 || r->res_bodiless)
    return r->pressure;
  return write_body(r, data, len, NULL);
}

void pd_res_end(pd_req_t *r, int close_after) {
  pd_conn_t *c = r->conn;
  if (r->res_ended)
    return;
  r->res_ended = 1;
  if (close_after || !r->keep_alive) {
    r->keep_alive = 0;
    c->close_after = 1;
  }
  if (r->res_started && r->res_chunked && !close_after)
    pd_server_write(c, NULL, 0, "0\r\n\r\n", 5, NULL, NULL, 0);
}

void pd_res_send(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                 const char *body, size_t len) {
  if (!begin(r, status))
    return;
  char stack[HEAD_STACK], *heap;
  size_t hlen;
  const char *h = make_head(stack, &heap, &hlen, r, status, content_type, extra, (long)len);
  if (bodiless(r, status))
    len = 0;
  /* One write for head and body; the body is copied only if the socket is full. */
  pd_server_write(r->conn, h, hlen, body, len, NULL, NULL, 0);
  free(heap);
  pd_res_end(r, 0);
}

void pd_res_error(pd_req_t *r, int status, const char *message, const char *type, const char *param,
                  const char *code) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, message, type, param, code);
  pd_res_send(r, status, "application/json", NULL, pd_buf_data(&b), b.len);
  pd_buf_free(&b);
}
