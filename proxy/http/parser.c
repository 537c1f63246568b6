/* The request parser of a connection: llhttp's callbacks, which collect the url and header
 * table into the connection's arena, enforce SPEC section 3's limits (413, 431), answer
 * `Expect: 100-continue`, pick the request id, and dispatch a complete request; and the feed
 * that runs llhttp over the bytes read, answering 400 on a malformed request. Strict: no
 * lenient llhttp flags. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/res.h"
#include "http/server_int.h"

static pd_conn_t *conn_of(llhttp_t *p) {
  return (pd_conn_t *)p->data;
}

static int count_head(pd_conn_t *c, size_t n) {
  c->head_bytes += n;
  if ((long)c->head_bytes > c->srv->opts.max_header_bytes) {
    c->err_status = 431;
    return HPE_USER;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  c->state = CONN_HEAD;
  c->req.start_ns = uv_hrtime();
  if (c->head_bytes == 0)
    pd_server_arm_timer(c, c->srv->opts.header_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  if (count_head(c, n))
    return HPE_USER;
  return pd_buf_append(&c->arena, at, n) < 0 ? HPE_USER : 0;
}

static int on_url_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  /* The url ends with a NUL; header strings follow it in the arena. */
  return pd_buf_append(&c->arena, "", 1) < 0 ? HPE_USER : 0;
}

/* Chunk extensions and trailer fields (llhttp reports trailers through the header callbacks,
 * after on_headers_complete): read and ignored (SPEC section 4), never stored, so the frozen
 * arena and header table stay as they are; bounded like a head. */
static int count_tail(pd_conn_t *c, size_t n) {
  c->tail_bytes += n;
  if (c->tail_bytes > (size_t)c->srv->opts.max_header_bytes) {
    c->err_status = 431;
    return HPE_USER;
  }
  return 0;
}

static int on_tail_data(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return count_tail(conn_of(p), n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  if (c->head_done)
    return count_tail(c, n);
  if (count_head(c, n))
    return HPE_USER;
  pd_req_t *r = &c->req;
  if (r->nheaders >= PD_MAX_HEADERS) {
    c->too_many_headers = 1;
    return 0;
  }
  if (!c->in_value && c->hdr_name_off[r->nheaders] == (size_t)-1)
    c->hdr_name_off[r->nheaders] = c->arena.len;
  char *w = pd_buf_reserve(&c->arena, n);
  if (!w)
    return HPE_USER;
  /* ASCII lower-casing (llhttp admits only token bytes in a name), without tolower's locale
   * table per byte. */
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)at[i];
    w[i] = (char)((unsigned)(ch - 'A') < 26u ? ch | 0x20 : ch);
  }
  pd_buf_commit(&c->arena, n);
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  if (c->head_done || c->req.nheaders >= PD_MAX_HEADERS)
    return 0;
  c->in_value = 1;
  c->hdr_value_off[c->req.nheaders] = (size_t)-1;
  return pd_buf_append(&c->arena, "", 1) < 0 ? HPE_USER : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  if (c->head_done)
    return count_tail(c, n);
  if (count_head(c, n))
    return HPE_USER;
  if (c->req.nheaders >= PD_MAX_HEADERS)
    return 0;
  if (c->hdr_value_off[c->req.nheaders] == (size_t)-1)
    c->hdr_value_off[c->req.nheaders] = c->arena.len;
  return pd_buf_append(&c->arena, at, n) < 0 ? HPE_USER : 0;
}

static int on_header_value_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  pd_req_t *r = &c->req;
  if (c->head_done || r->nheaders >= PD_MAX_HEADERS)
    return 0;
  if (c->hdr_value_off[r->nheaders] == (size_t)-1)
    c->hdr_value_off[r->nheaders] = c->arena.len; /* empty value */
  if (pd_buf_append(&c->arena, "", 1) < 0)
    return HPE_USER;
  r->nheaders++;
  c->in_value = 0;
  if (r->nheaders < PD_MAX_HEADERS)
    c->hdr_name_off[r->nheaders] = (size_t)-1;
  return 0;
}

/* Offers a head that expects 100-continue to the server's head check. Returns 1 when the
 * check answered it: the body is then never read and the connection is not reused (the client
 * may send the body anyway, or not). */
static int answer_before_body(pd_conn_t *c) {
  pd_server_t *s = c->srv;
  pd_req_t *r = &c->req;
  if (!s->check_head)
    return 0;
  pd_buf_append(&r->body, "", 0); /* handlers may rely on a NUL-terminated body */
  int keep_alive = r->keep_alive;
  r->keep_alive = 0; /* an answer says "connection: close" */
  c->state = CONN_INFLIGHT;
  s->inflight++;
  uv_timer_stop(&c->timer);
  if (s->check_head(s->ud, r))
    return 1;
  s->inflight--;
  c->state = CONN_HEAD;
  r->keep_alive = keep_alive;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  pd_req_t *r = &c->req;
  /* The arena is complete: from here on it is frozen (head_done), and only now are pointers
   * into it handed out. */
  if (!c->arena.base && pd_buf_append(&c->arena, "", 1) < 0)
    return HPE_USER;
  c->head_done = 1;
  char *a = c->arena.base + c->arena.off;
  r->url = a;
  char *q = strchr(a, '?');
  r->path_len = q ? (size_t)(q - a) : strlen(a);
  r->query = q ? q + 1 : "";
  for (size_t i = 0; i < r->nheaders; i++) {
    r->headers[i].name = a + c->hdr_name_off[i];
    r->headers[i].value = a + c->hdr_value_off[i];
  }
  /* ponder speaks HTTP/1.1 only: an Upgrade (h2c, websocket) request is answered as a plain
   * request, and the connection stays HTTP/1.1. */
  p->upgrade = 0;
  r->method = llhttp_method_name((llhttp_method_t)p->method);
  r->is_head = p->method == HTTP_HEAD;
  r->http_minor = p->http_minor;
  r->keep_alive = llhttp_should_keep_alive(p);
  const char *rid = pd_req_header(r, "x-request-id");
  size_t rid_len = rid ? pd_req_id_valid(rid) : 0;
  if (rid_len) {
    memcpy(r->request_id, rid, rid_len);
    r->request_id[rid_len] = '\0';
  } else {
    pd_req_id_new(r->request_id);
  }
  if (c->too_many_headers) {
    c->err_status = 431;
    return HPE_USER;
  }
  /* Unsigned: llhttp takes lengths up to 2^64 - 1, which a signed compare would see as
   * negative. max_body_bytes is at least 1 (config). */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    return HPE_USER;
  }
  /* An HTTP/1.0 client cannot take an interim response: its expectation is ignored (RFC 9110
   * section 10.1.1). */
  const char *expect = pd_req_header(r, "expect");
  if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
      p->http_minor >= 1) {
    /* The client waits for a go-ahead before it sends the body: the handler decides first
     * (auth), so a request it refuses never gets a 100 Continue. */
    if (answer_before_body(c))
      return HPE_PAUSED; /* answered; the connection closes once the answer is written */
    pd_server_write(c, NULL, 0, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, NULL, 0);
  }
  c->state = CONN_BODY;
  pd_server_arm_timer(c, c->srv->opts.idle_timeout_ms);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  pd_conn_t *c = conn_of(p);
  pd_req_t *r = &c->req;
  if (r->body.len + n > (size_t)c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    return HPE_USER;
  }
  return pd_buf_append(&r->body, at, n) < 0 ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p) {
  pd_conn_t *c = conn_of(p);
  pd_server_t *s = c->srv;
  pd_req_t *r = &c->req;
  uv_timer_stop(&c->timer);
  if (!r->body.base)
    pd_buf_append(&r->body, "", 0); /* handlers may rely on a NUL-terminated body */
  c->state = CONN_INFLIGHT;
  s->inflight++;
  s->dispatch(s->ud, r);
  if (c->state == CONN_INFLIGHT || c->closing || c->close_after)
    return HPE_PAUSED; /* hold the rest until the response is done */
  if (pd_server_write_block(c))
    return HPE_PAUSED; /* answered at once, but the client is not reading: hold the rest */
  return 0;
}

/* Const and shared by every connection of every loop: nothing to set up per thread. */
static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_tail_data,
    .on_chunk_extension_value = on_tail_data,
    .on_message_complete = on_message_complete,
};

void pd_parser_init(pd_conn_t *c) {
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
}

/* Answers a request that failed to parse, then closes. */
static void fail_parse(pd_conn_t *c, int status, const char *msg, const char *code) {
  pd_server_t *s = c->srv;
  pd_req_t *r = &c->req;
  if (!r->request_id[0])
    pd_req_id_new(r->request_id);
  if (c->state != CONN_INFLIGHT) {
    c->state = CONN_INFLIGHT;
    s->inflight++;
  }
  r->keep_alive = 0;
  r->http_minor = 1;
  pd_server_stop_reading(c);
  pd_res_error(r, status, msg, "invalid_request_error", NULL, code);
  pd_server_finish(r);
}

void pd_parser_feed(pd_conn_t *c, const char *data, size_t len) {
  if (len == 0)
    return;
  c->parsing = 1;
  llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
  c->parsing = 0;
  if (c->closing)
    return;
  if (err == HPE_OK)
    return;
  if (err == HPE_PAUSED) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : 0;
    /* Bytes after a request that closes the connection are never parsed: drop them. */
    if (used < len && !c->close_after)
      pd_buf_append(&c->pending, data + used, len - used);
    if (c->state != CONN_INFLIGHT && !c->closing && !c->close_after && !c->write_blocked)
      pd_server_resume(c); /* finished synchronously while paused */
    return;
  }
  if (c->state == CONN_INFLIGHT)
    return;
  if (c->err_status == 413)
    fail_parse(c, 413, "Request body too large: the limit is max_body_bytes.", "request_too_large");
  else if (c->err_status == 431)
    fail_parse(c, 431, "Request header fields too large: the limit is max_header_bytes.",
               "request_header_fields_too_large");
  else {
    char msg[200];
    snprintf(msg, sizeof msg, "Malformed HTTP request: %s.", llhttp_get_error_reason(&c->parser));
    fail_parse(c, 400, msg, "bad_request");
  }
}
