/* Worker threads: one libuv loop each, sharing the listening port through SO_REUSEPORT. All
 * mutable state lives in a worker; the config is shared read-only and swapped on reload. */
#ifndef PD_WORKER_H
#define PD_WORKER_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "access_log.h"
#include "config.h"
#include "metrics.h"
#include "server.h"
#include "upstream.h"

typedef struct pd_worker pd_worker_t;

/* Process-wide, fixed once the workers start; read-only afterwards. */
typedef struct pd_app {
  size_t nworkers;
  pd_worker_t *workers;
  pd_metrics_t **metrics;         /* one store per worker */
  pd_feedback_store_t **feedback; /* one store per worker */
  pd_access_log_t *access_log;
} pd_app_t;

struct pd_worker {
  int id;
  pd_app_t *app;
  uv_loop_t loop;
  uv_async_t async;
  uv_thread_t thread;
  uv_timer_t grace_timer;
  int fd;
  pd_config_t *cfg;                /* the current config (one reference) */
  _Atomic(pd_config_t *) next_cfg; /* handed over by the main thread on reload */
  atomic_int stop_req;             /* 1 graceful stop requested */
  int stopping;
  pd_server_t *server;
  pd_upstream_t *up;
  pd_metrics_t *metrics;
  pd_feedback_store_t *feedback;
  uint64_t rng;
  int exit_status;
};

/* Starts the worker thread serving on w->fd with w->cfg. Returns 0 or a negative errno. */
int pd_worker_start(pd_worker_t *w);
/* Thread-safe: hands a new config to the worker (takes one reference). */
void pd_worker_reload(pd_worker_t *w, pd_config_t *cfg);
/* Thread-safe: asks the worker to stop gracefully (within cfg->shutdown_grace_ms). */
void pd_worker_stop(pd_worker_t *w);
void pd_worker_join(pd_worker_t *w);

/* A 64-bit random number from the worker's generator. */
uint64_t pd_worker_rand(pd_worker_t *w);

/* Server options from a config for one worker. */
void pd_worker_server_opts(const pd_config_t *cfg, size_t nworkers, pd_server_opts_t *o);

/* The request handler (exchange.c). */
void pd_exchange_dispatch(void *worker, pd_req_t *req);
/* The head check for requests that expect 100-continue (exchange.c, a pd_head_fn). */
int pd_exchange_check_head(void *worker, pd_req_t *req);

#endif
