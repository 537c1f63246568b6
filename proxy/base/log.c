/* Log lines and the writer thread that owns every blocking write to a log descriptor. See log.h.
 *
 * The queue is one fixed ring of records (fd, length, bytes) under a mutex: producers copy a line
 * in and signal; the writer copies a batch out, writes it without the lock (consecutive records
 * for one fd in one write) and signals waiters once the ring is empty. */
#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

_Atomic pd_log_level_t pd_log_level_current = PD_LOG_INFO;

static const char *level_names[] = {"error", "warn", "info", "debug"};

enum { Q_OFF = 0, Q_RUNNING, Q_STOPPED };

typedef struct rec_head {
  int32_t fd;
  uint32_t len;
} rec_head_t;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a record was queued, or stop */
  pthread_cond_t idle; /* the ring is empty and nothing is being written */
  pthread_t thread;
  char *ring;
  size_t head, len; /* read position and bytes held */
  int busy;         /* the writer holds a batch it has not finished writing */
  int stop;
} q = {.mu = PTHREAD_MUTEX_INITIALIZER};
static _Atomic int q_state = Q_OFF;
static int q_stop_rc; /* what the first pd_log_stop returned */
static _Atomic uint64_t q_dropped;

static void ring_put(const void *p, size_t n) {
  size_t at = (q.head + q.len) % PD_LOG_QUEUE_BYTES, first = PD_LOG_QUEUE_BYTES - at;
  if (first > n)
    first = n;
  memcpy(q.ring + at, p, first);
  memcpy(q.ring, (const char *)p + first, n - first);
  q.len += n;
}

static void ring_get(void *p, size_t n) {
  size_t first = PD_LOG_QUEUE_BYTES - q.head;
  if (first > n)
    first = n;
  memcpy(p, q.ring + q.head, first);
  memcpy((char *)p + first, q.ring, n - first);
  q.head = (q.head + n) % PD_LOG_QUEUE_BYTES;
  q.len -= n;
}

/* write(2) until done; gives up on an error other than EINTR (the line is lost either way). */
static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

#define BATCH_BYTES (64 * 1024)

/* Skips n bytes of the ring. */
static void ring_skip(size_t n) {
  q.head = (q.head + n) % PD_LOG_QUEUE_BYTES;
  q.len -= n;
}

static void *writer_main(void *arg) {
  (void)arg;
  size_t cap = BATCH_BYTES;
  char *batch = malloc(cap);
  pthread_mutex_lock(&q.mu);
  for (;;) {
    while (q.len == 0 && !q.stop)
      pthread_cond_wait(&q.work, &q.mu);
    if (q.len == 0 && q.stop)
      break;
    /* One batch: consecutive whole records for one fd while they fit (at least one). */
    size_t used = 0;
    int fd = -1;
    while (q.len > 0) {
      rec_head_t h;
      size_t save_head = q.head;
      ring_get(&h, sizeof h);
      q.head = save_head;
      q.len += sizeof h;
      if (used > 0 && (h.fd != fd || used + h.len > cap))
        break;
      if (h.len > cap || !batch) {
        char *nb = realloc(batch, h.len > cap ? h.len : cap);
        if (!nb) { /* no memory for this record: it is lost */
          ring_skip(sizeof h + h.len);
          atomic_fetch_add(&q_dropped, 1);
          continue;
        }
        batch = nb;
        if (h.len > cap)
          cap = h.len;
      }
      ring_skip(sizeof h);
      ring_get(batch + used, h.len);
      used += h.len;
      fd = h.fd;
    }
    q.busy = 1;
    pthread_mutex_unlock(&q.mu);
    if (used)
      write_all(fd, batch, used);
    pthread_mutex_lock(&q.mu);
    q.busy = 0;
    if (q.len == 0)
      pthread_cond_broadcast(&q.idle);
  }
  pthread_cond_broadcast(&q.idle);
  pthread_mutex_unlock(&q.mu);
  free(batch);
  return NULL;
}

int pd_log_start(void) {
  if (atomic_load(&q_state) != Q_OFF)
    return 0;
  q.ring = malloc(PD_LOG_QUEUE_BYTES);
  if (!q.ring)
    return -ENOMEM;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q.work, NULL);
  pthread_cond_init(&q.idle, &ca);
  pthread_condattr_destroy(&ca);
  int rc = pthread_create(&q.thread, NULL, writer_main, NULL);
  if (rc != 0) {
    free(q.ring);
    q.ring = NULL;
    return -rc;
  }
  atomic_store(&q_state, Q_RUNNING);
  return 0;
}

int pd_log_stop(long timeout_ms) {
  if (atomic_load(&q_state) != Q_RUNNING)
    return q_stop_rc;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&q.mu);
  int rc = 0;
  while ((q.len > 0 || q.busy) && rc == 0)
    rc = pthread_cond_timedwait(&q.idle, &q.mu, &until);
  int drained = q.len == 0 && !q.busy;
  atomic_store(&q_state, Q_STOPPED);
  q.stop = 1;
  pthread_cond_signal(&q.work);
  pthread_mutex_unlock(&q.mu);
  if (!drained) {
    /* The writer is blocked in write(2) on a descriptor nobody drains: leave it (and its ring)
     * to the process exit. */
    pthread_detach(q.thread);
    q_stop_rc = -1;
    return -1;
  }
  pthread_join(q.thread, NULL);
  free(q.ring);
  q.ring = NULL;
  return 0;
}

int pd_log_enqueue(int fd, const char *p, size_t len) {
  if (len == 0)
    return 0;
  int st = atomic_load(&q_state);
  if (st == Q_OFF) {
    write_all(fd, p, len);
    return 0;
  }
  rec_head_t h = {fd, (uint32_t)len};
  int ok = 0;
  if (st == Q_RUNNING && len <= PD_LOG_QUEUE_BYTES - sizeof h) {
    pthread_mutex_lock(&q.mu);
    if (!q.stop && q.len + sizeof h + len <= PD_LOG_QUEUE_BYTES) {
      int was_empty = q.len == 0;
      ring_put(&h, sizeof h);
      ring_put(p, len);
      ok = 1;
      if (was_empty)
        pthread_cond_signal(&q.work);
    }
    pthread_mutex_unlock(&q.mu);
  }
  if (!ok) {
    atomic_fetch_add(&q_dropped, 1);
    return -1;
  }
  return 0;
}

uint64_t pd_log_dropped(void) {
  return atomic_load(&q_dropped);
}

void pd_log_write(pd_log_level_t lvl, const char *reqid, const char *fmt, ...) {
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), level_names[lvl]);
  if (reqid && n < (int)sizeof line)
    n += snprintf(line + n, sizeof line - n, "[%s] ", reqid);
  if (n < (int)sizeof line) {
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
  }
  if (n >= (int)sizeof line - 1)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  pd_log_enqueue(STDERR_FILENO, line, (size_t)n);
}

int pd_log_level_parse(const char *s) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; s && i < (int)(sizeof names / sizeof names[0]); i++)
    if (!strcmp(s, names[i]))
      return i;
  return -1;
}
