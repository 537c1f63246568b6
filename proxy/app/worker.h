/* Worker threads: one libuv loop each, sharing the listening port through SO_REUSEPORT. All
 * mutable state lives in a worker; the config is shared read-only and swapped on reload. */
#ifndef PD_WORKER_H
#define PD_WORKER_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "obs/access_log.h"
#include "config/config.h"
#include "obs/feedback.h"
#include "obs/metrics.h"
#include "http/server.h"
#include "upstream/upstream.h"

typedef struct pd_worker pd_worker_t;

/* Process-wide, fixed once the workers start; read-only afterwards. */
typedef struct pd_app {
  size_t nworkers;
  pd_worker_t *workers;
  pd_metrics_t **metrics;         /* one store per worker */
  pd_feedback_store_t **feedback; /* one store per worker */
  pd_access_log_t *access_log;
  /* Set by main before the workers start: each worker increments nstopped and sends
   * `stopped` (on the main loop) when its loop has ended. */
  uv_async_t *stopped;
  atomic_size_t nstopped;
} pd_app_t;

struct pd_worker {
  int id;
  pd_app_t *app;
  uv_loop_t loop;
  uv_async_t async;
  uv_mutex_t async_lock; /* held to send on `async`, and to close it (async_closed) */
  int async_closed;
  uv_thread_t thread;
  uv_timer_t grace_timer;
  int fd;
  pd_config_t *cfg;                /* the current config (one reference) */
  _Atomic(pd_config_t *) next_cfg; /* handed over by the main thread on reload */
  atomic_int stop_req;             /* 1 graceful stop requested, 2 abort what is left */
  int stopping;                    /* the loop thread's view: 1 draining, 2 aborted */
  pd_server_t *server;
  pd_upstream_t *up;
  pd_metrics_t *metrics;
  pd_feedback_store_t *feedback;
  uint64_t rng;
};

/* Starts the worker thread serving on w->fd with w->cfg. The thread inherits the caller's
 * signal mask: main blocks the signals it handles first, so only the main thread takes them.
 * When the worker's loop has ended it reports to w->app->stopped. Returns 0 or a negative
 * errno. */
int pd_worker_start(pd_worker_t *w);
/* Thread-safe: hands a new config to the worker (takes one reference; dropped at once when the
 * worker has already stopped). */
void pd_worker_reload(pd_worker_t *w, pd_config_t *cfg);
/* Thread-safe: asks the worker to stop: stop accepting and let in-flight requests finish
 * within cfg->shutdown_grace_ms, or with `abort` close whatever is left at once (also after a
 * graceful stop began). Does nothing once the worker's loop has ended. */
void pd_worker_stop(pd_worker_t *w, int abort);
/* Waits for the worker thread to end (after a stop), then frees what the worker owns. */
void pd_worker_join(pd_worker_t *w);

/* A 64-bit random number from the worker's generator. */
uint64_t pd_worker_rand(pd_worker_t *w);

/* Server options from a config for one worker. */
void pd_worker_server_opts(const pd_config_t *cfg, size_t nworkers, pd_server_opts_t *o);

#endif
