/* Building an exchange's upstream requests and ponder's own response headers. See upreq.h. */
#include "app/upreq.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/exchange.h"

/* Headers sent upstream: SPEC section 4's list, the auth rule of section 3, the upstream's own.
 * The lines ("Name: value", NULL-terminated array) and their text share one block: `stack`
 * (UP_HDR_STACK bytes, pointer-aligned) when it fits, else one malloc returned in *heap. */
#define UP_HDR_STACK 4096
#define NFWD 5

static const char **upstream_headers(pd_exchange_t *ex, int json_body, void *stack, void **heap) {
  static const char *const fwd[NFWD] = {"content-type", "accept", "openai-organization",
                                        "openai-project", "authorization"};
  static const size_t fwd_len[NFWD] = {12, 6, 19, 14, 13};
  pd_req_t *r = ex->req;
  const pd_upstream_cfg_t *u = ex->ucfg;
  /* One pass over the request headers; the first of each name counts (as pd_req_header). */
  const char *val[NFWD] = {NULL, NULL, NULL, NULL, NULL};
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *name = r->headers[i].name;
    for (int k = 0; k < NFWD; k++)
      if (!val[k] && name[0] == fwd[k][0] && strcmp(name, fwd[k]) == 0)
        val[k] = r->headers[i].value;
  }
  if (json_body)
    val[0] = "application/json";
  const char *auth_pre = NULL, *auth = NULL;
  if (u->api_key) {
    auth_pre = "Bearer ";
    auth = u->api_key;
  } else if (val[4]) {
    auth_pre = "";
    auth = val[4];
  }
  /* name, ": ", value, NUL per line. */
  size_t nlines = 0, text = 0;
  size_t vlen[NFWD];
  for (int k = 0; k < 4; k++)
    if (val[k]) {
      vlen[k] = strlen(val[k]);
      text += fwd_len[k] + 2 + vlen[k] + 1;
      nlines++;
    }
  size_t idlen = strlen(r->request_id);
  text += 14 + idlen + 1; /* "x-request-id: " */
  nlines++;
  size_t prelen = 0;
  if (auth) {
    prelen = strlen(auth_pre);
    vlen[4] = strlen(auth);
    text += 15 + prelen + vlen[4] + 1; /* "authorization: " */
    nlines++;
  }
  for (size_t i = 0; i < u->nheaders; i++) {
    text += strlen(u->headers[i].name) + 2 + strlen(u->headers[i].value) + 1;
    nlines++;
  }
  size_t total = (nlines + 1) * sizeof(char *) + text;
  char **h;
  *heap = NULL;
  if (total <= UP_HDR_STACK) {
    h = stack;
  } else {
    h = *heap = malloc(total);
    if (!h)
      return NULL;
  }
  char *t = (char *)(h + nlines + 1);
  size_t n = 0;
#define PUT(p, len)                                                                                \
  do {                                                                                             \
    memcpy(t, p, len);                                                                             \
    t += len;                                                                                      \
  } while (0)
  for (int k = 0; k < 4; k++) {
    if (!val[k])
      continue;
    h[n++] = t;
    PUT(fwd[k], fwd_len[k]);
    PUT(": ", 2);
    PUT(val[k], vlen[k]);
    *t++ = '\0';
  }
  h[n++] = t;
  PUT("x-request-id: ", 14);
  PUT(r->request_id, idlen);
  *t++ = '\0';
  if (auth) {
    h[n++] = t;
    PUT("authorization: ", 15);
    PUT(auth_pre, prelen);
    PUT(auth, vlen[4]);
    *t++ = '\0';
  }
  for (size_t i = 0; i < u->nheaders; i++) {
    size_t nl = strlen(u->headers[i].name), vl = strlen(u->headers[i].value);
    h[n++] = t;
    PUT(u->headers[i].name, nl);
    PUT(": ", 2);
    PUT(u->headers[i].value, vl);
    *t++ = '\0';
  }
#undef PUT
  h[n] = NULL;
  return (const char **)h;
}

pd_xfer_t *pd_upreq_start(pd_exchange_t *ex, const char *method, const char *url, char *body,
                          size_t len, int json_body, const pd_xfer_cbs_t *cbs, void *ud) {
  void *stack[UP_HDR_STACK / sizeof(void *)], *heap;
  const char **hdrs = upstream_headers(ex, json_body, stack, &heap);
  if (!hdrs) {
    free(body);
    return NULL;
  }
  const pd_upstream_cfg_t *u = ex->ucfg;
  pd_xfer_opts_t o = {.method = method,
                      .url = url,
                      .headers = hdrs,
                      .body = body,
                      .body_len = len,
                      .connect_timeout_ms = u->connect_timeout_ms,
                      .timeout_ms = u->timeout_ms,
                      .stall_timeout_ms = u->stall_timeout_ms,
                      .retries = u->retries,
                      .http2 = u->http2,
                      .tls_ca_file = u->tls_ca_file,
                      .tls_cert_file = u->tls_cert_file,
                      .tls_key_file = u->tls_key_file,
                      .tls_insecure = !u->tls_verify,
                      .tls_server_name = u->tls_server_name,
                      .proxy = u->proxy,
                      .max_connections = u->max_connections,
                      .max_conn_requests = u->max_connection_requests,
                      .max_conn_age_ms = u->max_connection_age_ms};
  pd_xfer_t *x = pd_xfer_start(ex->w->up, &o, cbs, ud);
  free(heap);
  if (x)
    ex->upstream_calls++;
  return x;
}

int pd_upreq_start_call(pd_exchange_t *ex, const char *path, char *body, size_t len,
                        const pd_xfer_cbs_t *cbs, void *ud, pd_xfer_t **out) {
  pd_buf_t url;
  pd_buf_init(&url);
  *out = NULL;
  if (pd_url_join(&ex->base, path, strlen(path), NULL, 0, &url) < 0) {
    free(body);
    pd_buf_free(&url);
    return PD_UPREQ_EURL;
  }
  *out = pd_upreq_start(ex, "POST", pd_buf_data(&url), body, len, 1, cbs, ud);
  pd_buf_free(&url);
  return *out ? 0 : PD_UPREQ_ESTART;
}

/* The thinking calls made so far (the most of any chain; a call counts once it was started,
 * failed or not, as the access log counts it). */
static int think_calls_made(const pd_exchange_t *ex) {
  int made = 0;
  for (int i = 0; i < ex->n; i++) {
    pd_result_t r;
    if (!ex->chains[i].eng)
      continue;
    pd_engine_result(ex->chains[i].eng, &r);
    if (r.think_calls > made)
      made = r.think_calls;
  }
  return made;
}

void pd_upreq_ponder_headers(pd_exchange_t *ex, int stream_head, const char **extra, size_t *n) {
  int rounds = stream_head && ex->kind == PD_EXCHANGE_FORCED ? ex->rounds : think_calls_made(ex);
  ex->rounds_hdr[pd_buf_fmt_long(ex->rounds_hdr, rounds)] = '\0';
  extra[(*n)++] = "x-ponder-route";
  extra[(*n)++] = ex->route ? ex->route->name : "";
  extra[(*n)++] = "x-ponder-variant";
  extra[(*n)++] = ex->variant ? ex->variant : "";
  extra[(*n)++] = "x-ponder-rounds";
  extra[(*n)++] = ex->rounds_hdr;
  /* Issued when the head leaves: a token is credited to what was served. */
  if (ex->route && ex->variant && ex->req &&
      pd_feedback_token_issue(ex->cfg->feedback.secret, ex->route->name, ex->variant,
                              ex->req->request_id, (int64_t)time(NULL), ex->feedback_token,
                              sizeof ex->feedback_token) > 0) {
    extra[(*n)++] = "x-ponder-feedback-token";
    extra[(*n)++] = ex->feedback_token;
  }
}
