/* Logging: a level check before the arguments are evaluated, the request id, printf format. */
#ifndef PD_LOG_H
#define PD_LOG_H

#include "config.h"

/* Set by the main thread (config load and reload), read by every worker. */
extern _Atomic pd_log_level_t pd_log_level_current;

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

#endif
