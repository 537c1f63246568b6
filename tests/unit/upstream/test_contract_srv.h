/* Scripted loopback upstreams for the upstream contract suite: an HTTP/1.1 or h2c (prior
 * knowledge) server on 127.0.0.1 that runs in its own thread with blocking sockets, so the loop
 * under test is the only libuv loop in the test, and a "blackhole" listener whose accept queue
 * is full, so a connect to it never completes. The server answers its Nth request (counted over
 * all its connections) with step N of its script (the last step repeats). The h2 side writes its
 * frames by hand (HPACK literals only) so a test controls every frame: RST_STREAM codes, resets
 * after DATA, a byte at a time. Owned by the test that starts it; stop it before freeing. */
#ifndef TEST_CONTRACT_SRV_H
#define TEST_CONTRACT_SRV_H

#include <pthread.h>
#include <stdatomic.h>

enum {
  TS_RESP,         /* a whole response: status, body, Retry-After-Ms when retry_after_ms >= 0 */
  TS_SILENT,       /* read the request, answer nothing (the connection stays open) */
  TS_HEAD_SILENT,  /* the head and the first bytes of a longer body, then nothing */
  TS_DRIP,         /* a 200 head, then one body byte every drip_ms, never ending */
  TS_REFUSE,       /* h2: RST_STREAM REFUSED_STREAM at once; h1: close without a byte */
  TS_RESET_STREAM, /* head and the first bytes, then h2: RST_STREAM INTERNAL_ERROR; h1: RST */
  TS_RESET_CONN,   /* head and the first bytes, then the connection is reset (SO_LINGER 0) */
};

typedef struct ts_step {
  int act;
  int status;
  const char *body;
  int retry_after_ms; /* -1: none */
  int split_ms;       /* TS_RESP: > 0 sends the body this long after the head, else both at once */
} ts_step_t;

#define TS_MAX_STEPS 8
#define TS_MAX_CONNS 16

typedef struct ts_server {
  int h2;
  int drip_ms;
  ts_step_t steps[TS_MAX_STEPS];
  int nsteps;
  int port;
  int lfd;
  atomic_int requests; /* requests seen, complete */
  atomic_int conns;    /* connections accepted */
  atomic_int stop;
  pthread_t th;
} ts_server_t;

/* Starts the server thread on an ephemeral port (s->port); s->h2, drip_ms and the script are
 * set by the caller first. Returns 0 or -1. */
int ts_server_start(ts_server_t *s);
/* Stops the thread and closes every socket it had. */
void ts_server_stop(ts_server_t *s);

/* A listener that never accepts, with its one-slot accept queue filled: connects to its port
 * hang (the kernel drops their SYNs). */
typedef struct ts_blackhole {
  int lfd;
  int fill[3];
  int port;
} ts_blackhole_t;
int ts_blackhole_start(ts_blackhole_t *b);
void ts_blackhole_stop(ts_blackhole_t *b);

#endif
