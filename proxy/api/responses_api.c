/* The Responses API as a client-API table (POST [prefix]/v1/responses, SPEC section 10): the
 * thin adapter between api.h's hooks and responses.c's pure translation and writer. Owns, per
 * response, one small heap holder kept in pd_api_resp_t.state: the translated request's echo
 * (what the response object repeats) and the writer, created on first use once the exchange
 * has named the response (id, created, model, display). Never relayed: an unforced request is
 * one plain translated call, so rounds 0 speaks chat completions upstream too and an A/B control
 * differs from its variants only in forcing. Not streamed, that call skips the engine: its reply
 * is read in one pass straight into the response object (plain_final). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/responses.h"

typedef struct holder {
  pd_responses_req_t req; /* chat moved out to the engine's request; echo and summary kept */
  pd_responses_t *w;      /* NULL until the first writer call */
  uint64_t seed;          /* item ids: a sequence derived from the response's random id */
} holder_t;

typedef struct resp_state {
  holder_t *h;
} resp_state_t;
_Static_assert(sizeof(resp_state_t) <= PD_API_STATE_BYTES, "responses state fits");

static holder_t *holder(const pd_api_resp_t *r) {
  return ((const resp_state_t *)r->state.bytes)->h;
}

/* splitmix64 over the seed: item ids (rs_, msg_, fc_) unique per response without a second
 * random source, since the seed comes from the response id's own random characters. */
static uint64_t item_rnd(void *ud) {
  holder_t *h = ud;
  uint64_t z = (h->seed += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* The writer of r, made on first use. NULL when out of memory (or request() did not run). */
static pd_responses_t *writer(pd_api_resp_t *r) {
  holder_t *h = holder(r);
  if (!h)
    return NULL;
  if (!h->w) {
    uint64_t seed = 1469598103934665603ULL; /* FNV-1a of the id */
    for (const char *p = r->id; *p; p++)
      seed = (seed ^ (unsigned char)*p) * 1099511628211ULL;
    h->seed = seed;
    pd_responses_opts_t o = {r->id,   r->created, r->model, r->reasoning,
                             &h->req, item_rnd,   h,        r->max_held};
    h->w = pd_responses_new(&o);
  }
  return h->w;
}

static int resp_request(json_t **bodyp, pd_api_req_t *out, pd_api_resp_t *r) {
  memset(out, 0, offsetof(pd_api_req_t, msgbuf));
  holder_t *h = calloc(1, sizeof *h);
  pd_responses_error_t err;
  int rc = h ? pd_responses_req_translate(*bodyp, r->limit_param, &h->req, &err) : -2;
  if (rc < 0) {
    free(h);
    snprintf(out->msgbuf, sizeof out->msgbuf, "%s", rc == -2 ? "Out of memory." : err.message);
    out->msg = out->msgbuf;
    if (rc == -1 && err.param[0]) {
      snprintf(out->parambuf, sizeof out->parambuf, "%s", err.param);
      out->param = out->parambuf;
    }
    return -1;
  }
  ((resp_state_t *)r->state.bytes)->h = h;
  json_t *chat = h->req.chat;
  h->req.chat = NULL;
  /* The translation checks what the engine's pd_engine_validate would (tests/fuzz/
   * fuzz_responses.c holds it to that): no second pass over the tree. */
  json_t *ponder = json_object_get(chat, "ponder");
  out->rounds_param = json_object_get(ponder, "rounds") ? "ponder.rounds" : NULL;
  out->effort_param = json_object_get(chat, "reasoning_effort") ? "reasoning.effort" : NULL;
  out->stream = h->req.stream;
  json_decref(*bodyp);
  *bodyp = chat;
  return 0;
}

/* The rounds-0 fast path: the upstream body from the client's bytes, the echo kept as
 * resp_request keeps it. */
static int resp_plain_body(const char *body, size_t len, const char *model, pd_buf_t *out,
                           pd_api_resp_t *r) {
  holder_t *h = calloc(1, sizeof *h);
  if (!h)
    return -1;
  int rc = pd_responses_req_write(body, len, model, r->limit_param, out, &h->req);
  if (rc) {
    free(h);
    return rc == 1 ? 1 : -1;
  }
  ((resp_state_t *)r->state.bytes)->h = h;
  return 0;
}

static void resp_release(pd_api_resp_t *r) {
  holder_t *h = holder(r);
  if (!h)
    return;
  pd_responses_free(h->w);
  pd_responses_req_free(&h->req);
  free(h);
  ((resp_state_t *)r->state.bytes)->h = NULL;
}

/* The translation never asks for n: one chain, results[0]. */
static int resp_final(pd_buf_t *out, pd_api_resp_t *r, const pd_result_t *results, size_t n) {
  pd_responses_t *w = writer(r);
  if (!w || n < 1)
    return -1;
  return pd_responses_body(w, out, &results[0]);
}

static int resp_plain_final(pd_buf_t *out, pd_api_resp_t *r, const char *reply, size_t len,
                            pd_usage_t *usage) {
  pd_responses_t *w = writer(r);
  if (!w)
    return -1;
  int rc = pd_responses_from_reply(w, out, reply, len, usage);
  return rc == PD_RESPONSES_EUNREADABLE ? PD_API_EUNREADABLE : rc;
}

static int resp_stream_start(pd_buf_t *out, pd_api_resp_t *r) {
  pd_responses_t *w = writer(r);
  return w ? pd_responses_start(w, out) : -1;
}

static int resp_delta(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *c, const pd_out_t *o) {
  (void)c;
  pd_responses_t *w = writer(r);
  if (!w)
    return -1;
  int rc = pd_responses_emit(w, out, o);
  return rc == PD_RESPONSES_ETOOLARGE ? PD_API_ETOOLARGE : rc;
}

/* The answer's end arrived as a PD_OUT_FINISH output already (items closed there); the
 * engine's own reason is taken again in case no call carried one. */
static int resp_finish(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *c, const char *reason) {
  (void)c;
  pd_responses_t *w = writer(r);
  if (!w)
    return -1;
  pd_out_t o = {PD_OUT_FINISH, reason ? reason : "stop", strlen(reason ? reason : "stop"), NULL};
  int rc = pd_responses_emit(w, out, &o);
  return rc == PD_RESPONSES_ETOOLARGE ? PD_API_ETOOLARGE : rc;
}

static int resp_stream_end(pd_buf_t *out, pd_api_resp_t *r, const pd_usage_t *usage) {
  pd_responses_t *w = writer(r);
  if (!w)
    return -1;
  int rc = pd_responses_end(w, out, usage);
  return rc == PD_RESPONSES_ETOOLARGE ? PD_API_ETOOLARGE : rc;
}

static int resp_error_event(pd_buf_t *out, pd_api_resp_t *r, const char *upstream, size_t ulen,
                            const char *message, const char *type, const char *code) {
  pd_responses_t *w = writer(r);
  if (!w) /* no writer to speak for the response: OpenAI's plain error event */
    return pd_api_sse_error(out, upstream, ulen, message, type, code);
  return pd_responses_fail_body(w, out, upstream, ulen, message, type, code);
}

const pd_api_t pd_responses_api = {
    .name = "responses",
    .path = "/responses",
    .id_prefix = "resp_",
    .relay = 0,
    .scan = pd_responses_req_scan,
    .request = resp_request,
    .release = resp_release,
    .final = resp_final,
    .plain_final = resp_plain_final,
    .plain_body = resp_plain_body,
    .stream_start = resp_stream_start,
    .delta = resp_delta,
    .finish = resp_finish,
    .stream_end = resp_stream_end,
    .error_event = resp_error_event,
};
