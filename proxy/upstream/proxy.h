/* HTTP proxies for the native upstream clients: which proxy a call takes (the upstream's
 * `proxy` key, else $https_proxy / $http_proxy, with $no_proxy, read the way curl reads them),
 * and the CONNECT tunnel (the request, and the proxy's reply read off the connection). The
 * clients connect to the proxy's address instead of the origin's; https:// (and h2c) then run
 * through the tunnel, plain HTTP/1.1 sends absolute-form request targets. Only the CONNECT line
 * and Host go to the proxy in a tunnel: never the upstream's headers. */
#ifndef PD_PROXY_H
#define PD_PROXY_H

#include <stddef.h>
#include <uv.h>

#include "base/buf.h"

/* The proxy environment, read once (a worker's upstream client reads it at start). Strings are
 * owned. */
typedef struct pd_proxy_env {
  char *https_proxy; /* https_proxy, else HTTPS_PROXY, else all_proxy / ALL_PROXY */
  char *http_proxy;  /* http_proxy (curl ignores HTTP_PROXY), else all_proxy / ALL_PROXY */
  char *no_proxy;    /* no_proxy, else NO_PROXY */
} pd_proxy_env_t;

void pd_proxy_env_load(pd_proxy_env_t *e);
void pd_proxy_env_free(pd_proxy_env_t *e);

/* The proxy URL a call to authority ("host:port", "[v6]:port") takes: configured when given,
 * else the environment's for the scheme; NULL when none, or when no_proxy names the host (a
 * name, a domain suffix, "*"). The string belongs to configured or to e. */
const char *pd_proxy_pick(const pd_proxy_env_t *e, const char *configured, int tls,
                          const char *auth, size_t alen);

/* The proxy's "host:port" from its URL ("http://host:port/", "host:port", credentials before an
 * '@' skipped; port 1080 when not given, as curl). Returns its length written to out
 * (NUL-terminated), or -1 for a URL this client cannot use (https://, socks, too long). */
long pd_proxy_authority(const char *url, char *out, size_t cap);

/* For a proxy URL with credentials ("http://user:password@host:port", percent-encoded as curl
 * takes them): "Proxy-Authorization: Basic ...\r\n", malloc'd; NULL without credentials (or
 * out of memory). Only a proxy URL from the environment carries them (the `proxy` key refuses
 * credentials). */
char *pd_proxy_auth_line(const char *url);

/* Writes "CONNECT authority" with its Host header (and auth_line, a header line with its CRLF,
 * when not NULL) to s; done(arg, status) runs once the write ended. Returns 0 or a libuv error
 * (then done never runs). */
int pd_proxy_send_connect(uv_stream_t *s, const char *authority, size_t alen, const char *auth_line,
                          void (*done)(void *arg, int status), void *arg);

/* Reads the proxy's reply to CONNECT as it arrives (acc keeps what came so far): 1 when the
 * tunnel is open (a 2xx head, nothing after it), 0 when more bytes are needed, -1 when the
 * proxy refused or sent something else (err names the proxy's status). */
int pd_proxy_reply(pd_buf_t *acc, const char *p, size_t n, char *err, size_t errlen);

#endif
