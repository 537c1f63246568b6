/* Upstream URLs from parsed parts (SPEC section 4, "Pass-through paths"): a base_url is read
 * once into scheme, authority, path and query; what a client adds (the rest of its path after
 * [prefix]/v1, and its query) is checked byte by byte and joined to those parts, so that the
 * joined URL always has the base's scheme, host and port and a path under the base path.
 *
 * Pure functions: no I/O, no allocation except into the caller's pd_buf_t. */
#ifndef PD_URL_H
#define PD_URL_H

#include <stddef.h>

#include "base/buf.h"

/* Error codes (negative; 0 is success). Every code but PD_URL_EBASE and PD_URL_ENOMEM is the
 * client's fault and is answered with 400 invalid_request_error. */
#define PD_URL_EBASE (-1)    /* the base URL is not http(s)://authority[/path][?query] */
#define PD_URL_EPATH (-2)    /* the rest is not "" or "/...", or has an empty segment ("//") */
#define PD_URL_EDOT (-3)     /* a "." or ".." segment */
#define PD_URL_EENCODED (-4) /* an encoded '/', '.', '\', '%' or control byte, or bad UTF-8 */
#define PD_URL_ECHAR (-5)    /* '@', '\', or a byte RFC 3986 does not allow in a path */
#define PD_URL_EQUERY (-6)   /* a query byte RFC 3986 does not allow, or a bad escape */
#define PD_URL_ENOMEM (-7)

/* A base URL's parts. Every pointer points into the string given to pd_url_parse_base (or to
 * a static "/"), so the parts live as long as that string. */
typedef struct pd_url_base {
  const char *scheme; /* "http" or "https", in the case the URL used */
  size_t scheme_len;
  const char *authority; /* [userinfo@]host[:port], exactly as written */
  size_t authority_len;
  const char *host; /* inside authority; an IPv6 literal keeps its brackets */
  size_t host_len;
  const char *port; /* the digits after the host's ':', or NULL when none was written */
  size_t port_len;
  const char *path; /* starts with '/'; "/" when the URL has none */
  size_t path_len;
  const char *query; /* after '?' (NULL when the URL has none) */
  size_t query_len;
} pd_url_base_t;

/* Reads url[0..len) as an upstream base URL: scheme http or https (any case), "://", a
 * non-empty authority up to the first '/', '?' or '#', an optional path and an optional query.
 * A fragment, a byte at or below ' ' or at or above 0x7f, a backslash, an empty host or a port
 * that is not 1..65535 digits-only are refused. Returns 0 and fills *out, or PD_URL_EBASE. */
int pd_url_parse_base(const char *url, size_t len, pd_url_base_t *out);

/* Checks what a client puts after [prefix]/v1: "" or a path starting with '/'. Refused: a
 * "." or ".." segment, an empty segment except a trailing one ("/a//b"), '@', '\', bytes RFC
 * 3986 does not allow in a path segment (unreserved, sub-delims, ':' and %XX are allowed),
 * a malformed escape, and an escape that decodes to '/', '.', '\', '%', a control byte, or
 * bytes that are not UTF-8. Returns 0 or one of the negative codes above. */
int pd_url_check_rest(const char *rest, size_t len);

/* Checks a client's query (without the '?'): RFC 3986 query bytes (pchar, '/', '?') with
 * well-formed escapes. Returns 0 or PD_URL_EQUERY. */
int pd_url_check_query(const char *query, size_t len);

/* Appends to out the URL for rest (checked with pd_url_check_rest) and query (checked with
 * pd_url_check_query; len 0 for none) under base b, NUL-terminated: scheme "://" authority,
 * then the base path with rest joined at one '/' (the base path alone when rest is ""), then
 * the base's query and the client's joined with '&'. Returns 0, a check's code (out is then
 * unchanged), or PD_URL_ENOMEM. */
int pd_url_join(const pd_url_base_t *b, const char *rest, size_t rest_len, const char *query,
                size_t query_len, pd_buf_t *out);

/* A sentence for the client saying why pd_url_check_* refused (static storage). */
const char *pd_url_strerror(int code);

#endif
