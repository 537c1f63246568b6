/* Serving a config: the listening sockets (one per worker, sharing the port through
 * SO_REUSEPORT), the process-wide state the workers share (pd_app_t: metrics and feedback
 * stores, the access log) and the worker threads. `ponder` (main.c) serves this way for the
 * process's life; `ponder eval --config` serves its config in-process on a loopback port and
 * sends its requests to itself. */
#ifndef PD_SERVE_H
#define PD_SERVE_H

#include "app/worker.h"

/* pd_serve_start's failures: the port could not be bound (main exits 2), the access log could
 * not be opened (exit 1), a worker could not start (exit 2). */
enum { PD_SERVE_EBIND = -1, PD_SERVE_EACCESS_LOG = -2, PD_SERVE_EWORKER = -3 };

typedef struct pd_serve {
  pd_app_t app;
  int port; /* the port bound (the one the OS picked when cfg's port is 0) */
} pd_serve_t;

/* Binds cfg's listen address, starts the log writer, opens the access log and starts
 * max(cfg->workers, 1) workers, each with a reference to cfg. `stopped` (a handle on the
 * caller's loop) is sent from each worker thread once its loop has ended. Problems are printed
 * on stderr as "ponder: ...". Returns 0 or PD_SERVE_E*; after a failure nothing needs undoing
 * except by exiting (a worker may already run). */
int pd_serve_start(pd_serve_t *s, pd_config_t *cfg, uv_async_t *stopped);
/* Asks every worker to stop (pd_worker_stop). Thread-safe. */
void pd_serve_stop(pd_serve_t *s, int abort);
/* Hands every worker a new config (takes one reference, gives each worker its own). */
void pd_serve_reload(pd_serve_t *s, pd_config_t *cfg);
/* After a stop: waits for every worker thread and frees the per-worker stores. */
void pd_serve_join(pd_serve_t *s);
/* After pd_serve_join: stops the log writer (queued lines get up to 2 s), closes the access
 * log and frees the rest. */
void pd_serve_close(pd_serve_t *s);

#endif
