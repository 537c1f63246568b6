/* One upstream call's reply and what its failures mean to the client. See reply.h. The one
 * place that reads an upstream reply's head (status, Retry-After) and maps a failed call to
 * SPEC's errors, for forced chains and the relay alike. */
#include "app/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/exchange.h"
#include "base/log.h"
#include "core/openai.h"

void pd_reply_init(pd_reply_t *r, size_t max_event) {
  memset(r, 0, sizeof *r);
  r->length = -1;
  pd_buf_init(&r->body);
  pd_sse_init(&r->parser, max_event);
}

void pd_reply_free(pd_reply_t *r) {
  pd_buf_free(&r->body);
  pd_sse_free(&r->parser);
  free(r->retry_after);
  r->retry_after = NULL;
}

void pd_reply_restart(pd_reply_t *r) {
  r->status = 0;
  size_t max_event = r->parser.max_event;
  pd_sse_free(&r->parser);
  pd_sse_init(&r->parser, max_event);
}

void pd_reply_head(pd_reply_t *r, const pd_xfer_head_t *h) {
  r->status = h->status;
  r->sse = h->content_type && strncasecmp(h->content_type, "text/event-stream", 17) == 0;
  r->length = h->content_length;
  pd_buf_reset(&r->body);
  free(r->retry_after);
  r->retry_after = NULL;
  /* Only an error reply's Retry-After is relayed (with its status); the last one counts. */
  for (size_t i = 0; i < h->nheaders && h->status >= 400; i++)
    if (strcmp(h->headers[2 * i], "retry-after") == 0) {
      free(r->retry_after);
      r->retry_after = strdup(h->headers[2 * i + 1]);
    }
}

int pd_reply_hold(pd_reply_t *r, const char *p, size_t n, long limit) {
  if ((long)(r->body.len + n) > limit)
    return -1;
  /* A known length is allocated at once rather than grown by doubling. */
  if (r->body.len == 0 && r->length > 0 && r->length <= PD_REPLY_MAX_ERROR_BODY &&
      r->length <= limit)
    pd_buf_reserve(&r->body, (size_t)r->length);
  pd_buf_append(&r->body, p, n);
  return 0;
}

void pd_reply_count(pd_exchange_t *ex, pd_reply_t *r, int result) {
  double secs = r->xfer ? pd_xfer_elapsed(r->xfer) : 0.0;
  r->xfer = NULL;
  char num[24];
  const char *code = num;
  if (result == PD_XFER_ETIMEOUT)
    code = "timeout";
  else if (result != PD_XFER_OK && r->status == 0)
    code = "error";
  else
    num[pd_buf_fmt_long(num, r->status)] = '\0';
  pd_metrics_upstream(ex->w->metrics, ex->ucfg->name, code, secs);
}

void pd_reply_cancel(pd_exchange_t *ex, pd_reply_t *r) {
  if (!r->xfer)
    return;
  pd_metrics_upstream(ex->w->metrics, ex->ucfg->name, "499", pd_xfer_elapsed(r->xfer));
  pd_xfer_cancel(r->xfer);
  r->xfer = NULL;
}

void pd_reply_log_failure(pd_exchange_t *ex, int status, const char *cause) {
  pd_log_warn(ex->req ? ex->req->request_id : NULL,
              "upstream call failed: route=%s upstream=%s status=%d cause=%s",
              ex->route ? ex->route->name : "-", ex->ucfg ? ex->ucfg->name : "-", status,
              cause ? cause : "-");
}

const char *pd_reply_cause(int result) {
  switch (result) {
  case PD_XFER_ECONNECT:
    return "connect";
  case PD_XFER_ETIMEOUT:
    return "timeout";
  case PD_XFER_ERECV:
    return "broken";
  default:
    return "error";
  }
}

void pd_reply_fail_bad(pd_exchange_t *ex, int status, const char *cause, const char *message) {
  pd_reply_log_failure(ex, status, cause);
  pd_exchange_fail(ex, 502, message, "upstream_error", "upstream_error");
}

void pd_reply_fail_too_large(pd_exchange_t *ex, int status) {
  char msg[200];
  snprintf(msg, sizeof msg, "The upstream reply exceeds limits.max_reply_bytes (%ld bytes).",
           ex->cfg->limits.max_reply_bytes);
  pd_reply_fail_bad(ex, status, "reply over limits.max_reply_bytes", msg);
}

void pd_reply_fail(pd_exchange_t *ex, const pd_reply_t *r, int result, const char *errmsg) {
  char msg[512];
  int status = r->status;
  if (result != PD_XFER_OK) {
    char cause[320];
    snprintf(cause, sizeof cause, "%s (%.300s)", pd_reply_cause(result), errmsg ? errmsg : "");
    pd_reply_log_failure(ex, status, cause);
  }
  if (result == PD_XFER_ETIMEOUT) {
    snprintf(msg, sizeof msg, "The upstream '%s' timed out: %s", ex->ucfg->name, errmsg);
    pd_exchange_fail(ex, 504, msg, "upstream_error", "upstream_timeout");
    return;
  }
  if (result != PD_XFER_OK) {
    snprintf(msg, sizeof msg, "The upstream '%s' could not be reached or broke off: %s",
             ex->ucfg->name, errmsg);
    pd_exchange_fail(ex, 502, msg, "upstream_error", "upstream_error");
    return;
  }
  const pd_buf_t *body = &r->body;
  json_t *j = body->len ? json_loadb(pd_buf_data(body), body->len, 0, NULL) : NULL;
  int shaped = j && pd_openai_is_error(j);
  if (shaped) {
    /* The error's type and code (short, the provider's own), not its message. */
    const json_t *err = json_object_get(j, "error");
    char cause[200];
    snprintf(cause, sizeof cause, "error status (type=%.60s code=%.60s)",
             json_is_string(json_object_get(err, "type"))
                 ? json_string_value(json_object_get(err, "type"))
                 : "-",
             json_is_string(json_object_get(err, "code"))
                 ? json_string_value(json_object_get(err, "code"))
                 : "-");
    pd_reply_log_failure(ex, status, cause);
  } else {
    pd_reply_log_failure(ex, status, "error status without an OpenAI error body");
  }
  json_decref(j);
  if (shaped) {
    pd_exchange_fail_body(ex, status, pd_buf_data(body), body->len, r->retry_after, NULL, NULL,
                          NULL);
    return;
  }
  snprintf(msg, sizeof msg, "The upstream '%s' answered with status %d and no OpenAI error.",
           ex->ucfg->name, status);
  pd_exchange_fail(ex, 502, msg, "upstream_error", "upstream_error");
}
