/* Access log (SPEC section 8): one JSON object per line per request.
 *
 * One log is shared by every worker thread. Each line is built in memory and queued whole for
 * log.c's writer thread (pd_log_enqueue), which writes it to an O_APPEND descriptor: lines
 * never interleave, and a loop thread never blocks on a slow disk or a stalled stderr pipe. */
#ifndef PD_ACCESS_LOG_H
#define PD_ACCESS_LOG_H

#include <stddef.h>

typedef struct pd_access_log pd_access_log_t;

/* Opens target: "-" = stderr, "off" = a log that writes nothing, else a path opened with
 * O_WRONLY|O_APPEND|O_CREAT (mode 0644). Returns NULL with errno set on failure. */
pd_access_log_t *pd_access_log_open(const char *target);

/* Stops the log writer (pd_log_stop), closes the file (never stderr) once the queued lines are
 * written, and frees the log. NULL is ignored. Main thread, after the workers stopped. */
void pd_access_log_close(pd_access_log_t *l);

/* One finished request. Strings may be NULL (written as JSON null); borrowed for the call. */
typedef struct pd_access_entry {
  const char *request_id, *method, *path, *route, *variant;
  int rounds, upstream_calls, status, stream;
  double duration_ms;
  long prompt_tokens, completion_tokens, reasoning_tokens;
} pd_access_entry_t;

/* Writes one line: {"ts","request_id","method","path","route","variant","rounds",
 * "upstream_calls","status","duration_ms","stream","prompt_tokens","completion_tokens",
 * "reasoning_tokens"}, ts in ISO-8601 UTC with milliseconds. The line is queued, not written
 * here (see log.h). Returns 0, or -1 when it was dropped (queue full, or out of memory); a log
 * opened "off" (or NULL) always returns 0. */
int pd_access_log_write(pd_access_log_t *l, const pd_access_entry_t *e);

/* Formats the line (with its trailing "\n") into buf without writing it; returns the length
 * that the whole line needs (like snprintf: the line is complete only when < size). */
size_t pd_access_log_format(const pd_access_entry_t *e, char *buf, size_t size);

#endif
