/* The pass-through relay: a request sent upstream as it came (or with the route's model and the
 * router's removals) and the reply relayed back with backpressure: any [prefix]/v1 path, the
 * model list (with the routes' models added), and a client API's unforced requests, whose
 * replies are checked to be OpenAI JSON, read for their usage and given back the client's model
 * name when the route maps it. Owns ex->pass (the relay's reply state). */
#ifndef PD_RELAY_H
#define PD_RELAY_H

#include <stddef.h>

struct pd_exchange;

/* Sends the request to ex->url (joined and checked by the dispatch decision) with body
 * (malloc'd, len bytes, may be NULL; owned from here), as JSON when json_body, and relays the
 * reply. A failure to start ends the exchange with a 502. */
void pd_relay_start(struct pd_exchange *ex, char *body, size_t len, int json_body);

/* Relays an unforced client-API request (ex->body, after the router): with the route's model
 * when it maps one, the client's own bytes when `verbatim` (nothing in them changed), else the
 * tree serialised. For an API that does not relay (a non-streamed request of one with
 * plain_final), the engine's plain call of ex->body goes to the chat completions path instead
 * and the API writes its response from the reply. */
void pd_relay_unforced(struct pd_exchange *ex, int verbatim);

/* The translated relay of an API that does not relay: body (malloc'd chat completions JSON,
 * len bytes; owned from here; NULL: out of memory, a 500) goes to the upstream's chat
 * completions path as the plain call, and the API writes its response from the reply. */
void pd_relay_translated(struct pd_exchange *ex, char *body, size_t len);

#endif
