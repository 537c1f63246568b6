/* Logging: a level check before the arguments are evaluated, the request id, printf format.
 *
 * Every line (these log lines and the access log's) goes through one bounded in-memory queue
 * that a writer thread drains with blocking write(2)s, so a loop thread never waits on a slow
 * disk or a stderr pipe nobody reads. When the queue is full a line is dropped and counted
 * (ponder_log_dropped_total). Before pd_log_start (command-line errors, --check-config, unit
 * tests) lines are written at once. */
#ifndef PD_LOG_H
#define PD_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PD_LOG_ERROR = 0, PD_LOG_WARN, PD_LOG_INFO, PD_LOG_DEBUG } pd_log_level_t;

/* Bytes the queue holds (lines and an 8-byte header each) before it drops lines. */
#define PD_LOG_QUEUE_BYTES (1024 * 1024)

/* Set by the main thread (config load and reload), read by every worker. */
extern _Atomic pd_log_level_t pd_log_level_current;

/* Formats one stderr line (time, level, [request id] when reqid is non-NULL, message; cut at
 * 2 KiB) and queues it for the writer thread; never blocks. Call through pd_log, which checks the
 * level first. */
void pd_log_write(pd_log_level_t lvl, const char *reqid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define pd_log(lvl, reqid, ...)                                                                    \
  do {                                                                                             \
    if ((lvl) <= pd_log_level_current)                                                             \
      pd_log_write((lvl), (reqid), __VA_ARGS__);                                                   \
  } while (0)
#define pd_log_error(id, ...) pd_log(PD_LOG_ERROR, id, __VA_ARGS__)
#define pd_log_warn(id, ...) pd_log(PD_LOG_WARN, id, __VA_ARGS__)
#define pd_log_info(id, ...) pd_log(PD_LOG_INFO, id, __VA_ARGS__)
#define pd_log_debug(id, ...) pd_log(PD_LOG_DEBUG, id, __VA_ARGS__)

/* Starts the writer thread (main thread, once, before any loop thread runs). Returns 0 or a
 * negative errno; on failure lines keep being written at once. */
int pd_log_start(void);

/* Waits up to timeout_ms for the queued lines to be written, then stops the writer thread.
 * Returns 0 when everything was written, -1 when a write was still blocked (the thread is then
 * left to finish or die with the process, and the descriptors it writes must stay open). Lines
 * logged afterwards are dropped. Idempotent (a later call returns what the first returned);
 * main thread only. */
int pd_log_stop(long timeout_ms);

/* Queues len bytes (whole lines) to be written to fd, in order with every other queued line.
 * Never blocks on fd. The bytes are copied. Returns 0, or -1 when the line was dropped (queue
 * full, or the writer stopped). Any thread. */
int pd_log_enqueue(int fd, const char *p, size_t len);

/* Parses "error|warn|info|debug"; returns -1 when unknown (or s is NULL). */
int pd_log_level_parse(const char *s);

/* Lines dropped so far (ponder_log_dropped_total). Any thread. */
uint64_t pd_log_dropped(void);

#endif
