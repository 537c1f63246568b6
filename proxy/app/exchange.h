/* The exchange: one client request from dispatch to the last byte. This header is private to
 * the exchange's modules in app/:
 *   exchange.c  the object's lifecycle: create, finish, fail, the guard, backpressure
 *   front.c     dispatch (the server's handler) and the ops endpoints
 *   upreq.c     building upstream requests (headers, URLs) and ponder's own response headers
 *   forced.c    the forced exchange: one engine chain per choice
 *   relay.c     the pass-through relay
 *   reply.c     one upstream call's reply state, shared by the chains and the relay
 * Which client API the request came in is only ever `ex->api` (api/api.h). */
#ifndef PD_EXCHANGE_H
#define PD_EXCHANGE_H

#include <jansson.h>
#include <uv.h>

#include "api/api.h"
#include "app/reply.h"
#include "app/worker.h"
#include "base/buf.h"
#include "base/guard.h"
#include "base/url.h"
#include "core/engine.h"
#include "core/router.h"
#include "obs/feedback_token.h"

#define PD_EXCHANGE_MAX_SSE_EVENT (8L * 1024 * 1024)

typedef enum { PD_EXCHANGE_PASS = 0, PD_EXCHANGE_FORCED, PD_EXCHANGE_MODELS } pd_exchange_kind_t;

typedef struct pd_exchange pd_exchange_t;

/* One choice of a forced exchange: an engine chain and its current upstream call. */
typedef struct pd_chain {
  pd_exchange_t *ex;
  pd_engine_t *eng;
  pd_reply_t reply;
  pd_api_choice_t choice; /* index and the API's state for this choice */
} pd_chain_t;

/* The pass-through relay's state beside its reply. */
typedef struct pd_relay_state {
  pd_reply_t reply;
  int buffer;   /* holding an error (or models) body instead of relaying */
  int validate; /* holding an API reply to check it before relaying */
  int remodel;  /* a mapped model: put the client's model name back into the reply */
  int usage;    /* reading the usage chunk of a relayed stream (bytes relayed as they are) */
  int plain;    /* an API's translated plain call: the API writes the response (plain_final) */
} pd_relay_state_t;

struct pd_exchange {
  pd_worker_t *w;
  pd_req_t *req; /* NULL once finished */
  pd_config_t *cfg;
  const pd_route_t *route;
  const pd_upstream_cfg_t *ucfg;
  const pd_api_t *api; /* the client API, or NULL for a plain pass-through or models */
  const char *variant;
  int rounds;
  pd_exchange_kind_t kind;
  json_t *body;       /* the engine's request (owned), or NULL */
  char *client_model; /* the body's model as the client sent it (owned), or NULL */
  int stream;
  pd_api_resp_t resp; /* id, created, model, display: what the API's writers read */
  pd_chain_t *chains;
  int n, active;
  int started; /* the response head went out */
  int failed, finished, aborted;
  pd_guard_t guard; /* callbacks on the stack: freed only when the outermost leaves */
  int pressure;
  int resume_next;          /* the chain on_drain resumes first (round robin) */
  const char *rounds_param; /* a rounds override in the body, as named in a 400, or NULL */
  const char *effort_param; /* an effort in the body the route maps, as named, or NULL */
  pd_buf_t out;             /* SSE events waiting to be written */
  pd_relay_state_t pass;
  /* Upstream URLs: the base_url's parts (pointing into cfg) and the pass-through URL. */
  pd_url_base_t base;
  char *url;
  /* Accounting. */
  int upstream_calls;
  int think_calls;
  pd_usage_t usage;
  uv_timer_t keepalive;
  int keepalive_on;
  char rounds_hdr[24];
  char feedback_token[PD_FEEDBACK_TOKEN_MAX]; /* x-ponder-feedback-token's value, or "" */
};

/* A new exchange for r on worker w (one config reference taken), entered once for the
 * caller's frame (pd_exchange_leave ends it). It becomes r's handler (abort, drain). Returns
 * NULL when out of memory. */
pd_exchange_t *pd_exchange_new(pd_worker_t *w, pd_req_t *r, pd_config_t *cfg);

/* Enters a callback frame: the exchange is not freed until the matching leave. */
static inline void pd_exchange_enter(pd_exchange_t *ex) {
  pd_guard_enter(&ex->guard);
}

/* Leaves a callback frame; frees the exchange when it finished meanwhile and this was the
 * outermost frame. Returns 1 when it finished (the caller must stop: it may be gone). */
int pd_exchange_leave(pd_exchange_t *ex);

/* Ends the request (once): metrics, access log, feedback memory, live upstream calls cancelled,
 * the server's request finished. Always called inside an entered frame; the outermost leave
 * frees. */
void pd_exchange_finish(pd_exchange_t *ex);

/* Ends the request with an error: an HTTP error before the response started, the API's error
 * event (no end marker, the connection closes) after. body (len bytes, may be NULL) is an
 * OpenAI error object to send instead of one built from message, type and code; retry_after
 * (may be NULL) goes out as the header. */
void pd_exchange_fail_body(pd_exchange_t *ex, int status, const char *body, size_t len,
                           const char *retry_after, const char *message, const char *type,
                           const char *code);
/* pd_exchange_fail_body with an error built from message, type and code. */
void pd_exchange_fail(pd_exchange_t *ex, int status, const char *message, const char *type,
                      const char *code);
/* A 400 invalid_request_error naming param (may be NULL). */
void pd_exchange_fail_400(pd_exchange_t *ex, const char *message, const char *param);

/* Writes what ex->out holds to the client; above the write queue's watermark it pauses every
 * live upstream call until the drain. */
void pd_exchange_flush(pd_exchange_t *ex);

/* Sums the chains' usage and thinking calls into ex->usage and ex->think_calls. */
void pd_exchange_sum_usage(pd_exchange_t *ex);

#endif
