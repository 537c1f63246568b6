/* The forced exchange: one engine chain per choice (n), each making its thinking calls and its
 * answer call in turn (SPEC section 5), the engine's outputs written through the client API's
 * writers as they come (streamed) or as one object at the end, with keep-alive comments while a
 * hidden display has nothing to send. Owns the chains' calls; the chains themselves belong to
 * the exchange. */
#ifndef PD_FORCED_H
#define PD_FORCED_H

#include "config/config.h"

struct pd_exchange;

/* Starts the forced exchange under policy pol with ex->rounds rounds on ex->body (the engine's
 * request): checks n and limits.max_upstream_calls (400s), creates the chains and makes each
 * one's first call. Failures end the exchange. */
void pd_forced_start(struct pd_exchange *ex, const pd_policy_t *pol);

#endif
