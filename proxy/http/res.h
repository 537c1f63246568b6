/* The HTTP/1.1 response writer: a handler answers the pd_req_t it was dispatched with through
 * these, once (a whole response, or a head followed by streamed body parts). Heads carry
 * content-type, content-length or chunked framing, x-request-id and the caller's extra fields;
 * bodies a response must not have (HEAD, 1xx, 204, 304) are dropped. Owns the status reason
 * table. Bytes go to the connection's write queue (http/server.c). */
#ifndef PD_RES_H
#define PD_RES_H

#include <stddef.h>

#include "base/buf.h"
#include "http/req.h"

/* Sends a whole response with Content-Length. extra: NULL-terminated name/value pairs. */
void pd_res_send(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                 const char *body, size_t len);
/* Sends the OpenAI error object with status. */
void pd_res_error(pd_req_t *r, int status, const char *message, const char *type, const char *param,
                  const char *code);
/* Starts a response; content_length < 0 means a streamed (chunked) body. */
void pd_res_start(pd_req_t *r, int status, const char *content_type, const char *const *extra,
                  long content_length);
/* Appends body bytes (copied). Returns 1 when the write queue is above the high watermark:
 * the caller should pause its producer until on_drain. */
int pd_res_write(pd_req_t *r, const char *data, size_t len);
/* Like pd_res_write, but takes the buffer's storage (no copy); b is left empty. */
int pd_res_write_buf(pd_req_t *r, pd_buf_t *b);
/* Ends the response body. `close_after` closes the connection once written (e.g. after a
 * failure mid-stream). */
void pd_res_end(pd_req_t *r, int close_after);

/* Status reason phrase (a static string). */
const char *pd_res_reason(int status);

#endif
