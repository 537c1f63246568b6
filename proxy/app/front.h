/* The front of the exchange: the request handler and the 100-continue head check the worker
 * gives its server. See front.c. */
#ifndef PD_FRONT_H
#define PD_FRONT_H

#include "http/server.h"

/* The request handler (a pd_server handler; ud is the pd_worker_t): dispatches r and answers
 * it, at once or through an exchange that owns itself from then on. */
void pd_front_dispatch(void *worker, pd_req_t *req);

/* The server's head check (pd_head_fn) for a request that expects 100-continue: the dispatch
 * decision taken on the head alone; an answer that does not depend on the body (an unknown
 * path, a missing or wrong key) is given before the body is sent (returns 1), anything else
 * waits for the body and the usual dispatch (returns 0). */
int pd_front_check_head(void *worker, pd_req_t *req);

#endif
