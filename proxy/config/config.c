/* ponder configuration: loading, validation, defaults, CLI overrides, reference counting.
 *
 * The loader walks the tree of yaml.c against the tables of schema.c: one generic reader per
 * mapping (unknown and duplicate keys, did-you-mean, one typed read per row) and, for what a
 * type cannot say (lists, free-form maps, keys checked against each other), the hooks below,
 * found by their id in READS and POSTS. It keeps going after a problem, so one run of
 * --check-config reports every mistake in a file. Every string it stores is heap-owned by the
 * config. */
#include "config/config.h"
#include "base/log.h"
#include "base/url.h"
#include "config/read.h"
#include "config/schema.h"
#include "config/value.h"
#include "config/yaml.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ROUNDS PD_SCHEMA_MAX_ROUNDS
#define MAX_WORKERS PD_SCHEMA_MAX_WORKERS
#define GOT PD_VALUE_GOT
#define ABSENT PD_VALUE_ABSENT
#define BAD PD_VALUE_BAD

typedef pd_yaml_node_t node_t;
typedef pd_read_ctx_t ctx_t;
typedef pd_read_seen_t seen_t;
typedef pd_read_iter_t iter_t;
typedef pd_read_hook_fn read_fn;
typedef pd_read_post_fn post_fn;

#define at(c, n, ...) pd_value_at(&(c)->v, n, __VA_ARGS__)

/* ---- policies ---- */

/* The "chatml" template as heap strings. */
static void set_chatml(pd_policy_t *p) {
  pd_value_set(&p->tmpl.system, pd_value_xstrdup(pd_schema_chatml[0]));
  pd_value_set(&p->tmpl.user, pd_value_xstrdup(pd_schema_chatml[1]));
  pd_value_set(&p->tmpl.assistant, pd_value_xstrdup(pd_schema_chatml[2]));
  pd_value_set(&p->tmpl.assistant_start, pd_value_xstrdup(pd_schema_chatml[3]));
  pd_value_set(&p->template_name, pd_value_xstrdup("chatml"));
}

void pd_config_policy_defaults(pd_policy_t *p) {
  memset(p, 0, sizeof *p);
  pd_schema_defaults(&pd_schema_policy, p, 0);
  p->tmpl.system = (char *)pd_schema_chatml[0];
  p->tmpl.user = (char *)pd_schema_chatml[1];
  p->tmpl.assistant = (char *)pd_schema_chatml[2];
  p->tmpl.assistant_start = (char *)pd_schema_chatml[3];
  p->template_name = "chatml";
}

static void policy_init(pd_policy_t *p) {
  memset(p, 0, sizeof *p);
  pd_schema_defaults(&pd_schema_policy, p, 1);
  set_chatml(p);
}

static void policy_free(pd_policy_t *p) {
  pd_schema_free_strings(&pd_schema_policy, p);
  pd_schema_free_strings(&pd_schema_template, p);
  free(p->template_name);
}

static void read_template(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                          char *base) {
  (void)k, (void)kn;
  static const char usage[] = "\"template\" must be \"chatml\" or a mapping of system, user, "
                              "assistant and assistant_start";
  pd_policy_t *p = (pd_policy_t *)base;
  if (pd_yaml_is_null(v))
    return;
  if (v->kind == PD_YAML_SEQ) {
    at(c, v, "%s, not a list", usage);
    return;
  }
  if (v->kind == PD_YAML_SCALAR) {
    char *s;
    if (pd_value_text(&c->v, v, "template", &s) != GOT)
      return;
    if (!strcmp(s, "chatml"))
      set_chatml(p);
    else
      at(c, v, "%s (got \"%s\")", usage, s);
    free(s);
    return;
  }
  /* All four strings or none: read them aside, install them together. */
  pd_policy_t parts;
  memset(&parts, 0, sizeof parts);
  pd_read_block(c, &pd_schema_template, v, (char *)&parts);
  int whole = 1;
  for (size_t i = 0; i < pd_schema_template.nkeys; i++) {
    const pd_schema_key_t *t = &pd_schema_template.keys[i];
    if (!*(char **)((char *)&parts + t->off)) {
      at(c, v, "template is missing \"%s\"", t->name);
      whole = 0;
    }
  }
  if (whole) {
    pd_schema_free_strings(&pd_schema_template, p);
    p->tmpl = parts.tmpl;
    pd_value_set(&p->template_name, pd_value_xstrdup("custom"));
  } else {
    pd_schema_free_strings(&pd_schema_template, &parts);
  }
}

static void check_content(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *vn,
                          char *base) {
  (void)kn;
  if (!strstr(*(char **)(base + k->off), "{content}"))
    at(c, vn, "template \"%s\" must contain \"{content}\"", k->name);
}

static void post_forcing(ctx_t *c, const pd_schema_table_t *t, const seen_t *s, const node_t *map,
                         char *base) {
  pd_policy_t *p = (pd_policy_t *)base;
  const node_t *min_node = s->v[pd_read_row(t, "min_think_tokens")];
  if (p->min_think_tokens > 0 && p->max_think_tokens > 0 &&
      p->min_think_tokens > p->max_think_tokens)
    at(c, min_node ? min_node : map, "min_think_tokens (%d) is above max_think_tokens (%d)",
       p->min_think_tokens, p->max_think_tokens);
}

/* ---- upstreams ---- */

static void upstream_defaults(pd_upstream_cfg_t *u) {
  memset(u, 0, sizeof *u);
  pd_schema_defaults(&pd_schema_upstream, u, 1);
  u->http2 = -1; /* not given: its default depends on the scheme (resolve_http2) */
}

/* http2 left out: on for https:// (HTTP/2 offered by ALPN beside HTTP/1.1), off for http://
 * (h2c only when asked). Runs once every base_url is final (--upstream included). */
static void resolve_http2(pd_config_t *cfg) {
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    pd_upstream_cfg_t *u = &cfg->upstreams[i];
    if (u->http2 < 0)
      u->http2 = u->base_url && strncasecmp(u->base_url, "https://", 8) == 0;
  }
}

static void upstream_free(pd_upstream_cfg_t *u) {
  pd_schema_free_strings(&pd_schema_upstream, u);
  for (size_t i = 0; i < u->nheaders; i++) {
    free(u->headers[i].name);
    free(u->headers[i].value);
  }
  free(u->headers);
}

/* Upstream, route and variant names: well-formed, and not one an earlier sibling has (n
 * siblings from first, each name stride bytes apart). */
static void check_name(ctx_t *c, const node_t *vn, const char *what, const char *name,
                       const char *first, size_t n, size_t stride) {
  if (!pd_value_name_ok(name)) {
    at(c, vn, "%s name \"%s\" may only hold letters, digits, '_', '-' and '.'", what, name);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    const char *other = *(char *const *)(first + i * stride);
    if (other && !strcmp(other, name))
      at(c, vn, "duplicate %s name \"%s\"", what, name);
  }
}

static void check_upstream_name(ctx_t *c, const pd_schema_key_t *k, const node_t *kn,
                                const node_t *vn, char *base) {
  (void)k, (void)kn;
  const pd_upstream_cfg_t *all = c->cfg->upstreams;
  check_name(c, vn, "upstream", ((pd_upstream_cfg_t *)base)->name, (const char *)&all[0].name,
             c->idx, sizeof *all);
}

static void check_base_url(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *vn,
                           char *base) {
  (void)k, (void)kn;
  pd_upstream_cfg_t *u = (pd_upstream_cfg_t *)base;
  const char *why = pd_value_url_problem(u->base_url);
  if (why)
    at(c, vn, "\"base_url\" %s (got \"%s\")", why, u->base_url);
  pd_value_strip_slashes(u->base_url);
}

static void check_api_key(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *vn,
                          char *base) {
  (void)k, (void)kn;
  pd_upstream_cfg_t *u = (pd_upstream_cfg_t *)base;
  /* ${OPENAI_API_KEY} with the variable unset: forward the client's key instead. */
  if (!*u->api_key)
    pd_value_set(&u->api_key, NULL);
  else if (!pd_value_header_ok(u->api_key))
    at(c, vn, "\"api_key\" must not contain a line break");
}

static void read_headers(ctx_t *c, const pd_schema_key_t *k, const node_t *kn0, const node_t *v,
                         char *base) {
  (void)k, (void)kn0;
  pd_upstream_cfg_t *u = (pd_upstream_cfg_t *)base;
  iter_t it;
  const pd_schema_key_t *none;
  const node_t *kn, *vn;
  if (pd_read_iter_start(&it, c, v, "headers", NULL) != GOT)
    return;
  u->headers = pd_value_xcalloc(v->nkids / 2, sizeof *u->headers);
  while (pd_read_iter_next(&it, &none, &kn, &vn)) {
    const char *key = kn->text;
    if (!pd_value_token_ok(key)) {
      at(c, kn, "header name \"%s\" is not a valid HTTP header name", key);
      continue;
    }
    char *name = pd_value_xstrdup(key);
    pd_value_lower(name);
    int dup = 0;
    for (size_t i = 0; i < u->nheaders; i++)
      dup |= !strcmp(u->headers[i].name, name);
    if (dup) {
      at(c, kn, "header \"%s\" is given twice (header names are case-insensitive)", key);
      free(name);
      continue;
    }
    char *val = NULL;
    int rc = pd_value_text(&c->v, vn, key, &val);
    if (rc == ABSENT)
      val = pd_value_xstrdup("");
    if (rc == BAD) {
      free(name);
      continue;
    }
    if (!pd_value_header_ok(val)) {
      at(c, vn, "header \"%s\" must not contain a line break", key);
      free(name);
      free(val);
      continue;
    }
    u->headers[u->nheaders].name = name;
    u->headers[u->nheaders].value = val;
    u->nheaders++;
  }
}

/* A file path from the tls block: relative ones are taken from the config file's folder (so a
 * reload from another working directory reads the same files); it must be readable now. */
static void check_tls_file(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                           char *base) {
  (void)kn;
  char **dst = (char **)(base + k->off);
  const char *file = c->v.file;
  const char *slash = file ? strrchr(file, '/') : NULL;
  if ((*dst)[0] != '/' && slash) {
    size_t n = (size_t)(slash - file) + 1 + strlen(*dst) + 1;
    char *full = pd_value_xcalloc(n, 1);
    snprintf(full, n, "%.*s/%s", (int)(slash - file), file, *dst);
    pd_value_set(dst, full);
  }
  struct stat st;
  if (access(*dst, R_OK) != 0 || stat(*dst, &st) != 0)
    at(c, v, "tls \"%s\": cannot read %s: %s", k->name, *dst, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    at(c, v, "tls \"%s\": %s is not a file", k->name, *dst);
}

/* SNI carries a DNS name; an IPv4 address passes too (it is checked against the certificate). */
static void check_server_name(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                              char *base) {
  (void)k, (void)kn;
  const char *s = ((pd_upstream_cfg_t *)base)->tls_server_name;
  size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.");
  if (s[n] || n > 253)
    at(c, v, "tls \"server_name\" must be a host name of letters, digits, '-' and '.' (got \"%s\")",
       s);
}

static void check_proxy(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                        char *base) {
  (void)k, (void)kn;
  char *s = ((pd_upstream_cfg_t *)base)->proxy;
  const char *why = pd_value_proxy_problem(s);
  if (why && strchr(s, '@')) /* the message does not repeat a password */
    at(c, v, "\"proxy\" %s", why);
  else if (why)
    at(c, v, "\"proxy\" %s (got \"%s\")", why, s);
  else
    pd_value_strip_slashes(s);
}

static void post_tls(ctx_t *c, const pd_schema_table_t *t, const seen_t *s, const node_t *map,
                     char *base) {
  (void)map, (void)base;
  const node_t *cert = s->k[pd_read_row(t, "cert_file")], *keyn = s->k[pd_read_row(t, "key_file")];
  if (cert && !keyn)
    at(c, cert, "tls \"cert_file\" needs \"key_file\" (the client certificate's private key)");
  if (keyn && !cert)
    at(c, keyn, "tls \"key_file\" needs \"cert_file\" (the client certificate)");
}

static void post_upstream(ctx_t *c, const pd_schema_table_t *t, const seen_t *s, const node_t *map,
                          char *base) {
  pd_upstream_cfg_t *u = (pd_upstream_cfg_t *)base;
  const node_t *http2_node = s->v[pd_read_row(t, "http2")] ? s->v[pd_read_row(t, "http2")] : map;
  if (!u->name)
    at(c, map, "an upstream needs a \"name\"");
  if (!u->base_url)
    at(c, map, "upstream \"%s\" needs a \"base_url\"", u->name ? u->name : "?");
  if (!u->tls_verify)
    pd_log_warn(NULL,
                "upstream \"%s\": tls.verify is false: its certificate and host name are not "
                "checked, so anyone on the path can read and change its traffic, api_key included",
                u->name ? u->name : "?");
  if (u->http2 > 0 && u->base_url && strncasecmp(u->base_url, "http://", 7) == 0 &&
      memchr(u->base_url + 7, '@', strcspn(u->base_url + 7, "/?#")))
    at(c, http2_node,
       "\"http2: true\" does not take credentials in the URL (upstream \"%s\"); "
       "send them with \"api_key\" or \"headers\"",
       u->name ? u->name : "?");
}

/* The upstream built when the file declares none (SPEC section 2). --upstream is applied
 * later, and then a bad environment variable does not matter. */
static void default_upstream(ctx_t *c, pd_upstream_cfg_t *u) {
  upstream_defaults(u);
  u->name = pd_value_xstrdup("default");
  const char *url = "https://api.openai.com/v1", *var = NULL;
  const char *vars[] = {"PONDER_UPSTREAM", "OPENAI_BASE_URL"};
  for (int i = 0; i < 2 && !var; i++) {
    const char *e = getenv(vars[i]);
    if (e && *e) {
      url = e;
      var = vars[i];
    }
  }
  u->base_url = pd_value_xstrdup(url);
  if (var && !(c->ov && c->ov->upstream)) {
    const char *why = pd_value_url_problem(url);
    if (why)
      pd_value_problem(&c->v, -1, "$%s: the base URL %s (got \"%s\")", var, why, url);
  }
  pd_value_strip_slashes(u->base_url);
  const char *key = getenv("OPENAI_API_KEY");
  if (key && *key) {
    if (!pd_value_header_ok(key))
      pd_value_problem(&c->v, -1, "$OPENAI_API_KEY must not contain a line break");
    u->api_key = pd_value_xstrdup(key);
  }
}

static void read_upstreams(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                           char *base) {
  (void)kn, (void)base;
  pd_config_t *cfg = c->cfg;
  if (pd_value_seq(&c->v, v, k->name) == GOT && v->nkids > 0) {
    cfg->upstreams = pd_value_xcalloc(v->nkids, sizeof *cfg->upstreams);
    cfg->nupstreams = v->nkids;
    for (size_t i = 0; i < v->nkids; i++) {
      pd_upstream_cfg_t *u = &cfg->upstreams[i];
      upstream_defaults(u);
      c->idx = i;
      if (pd_read_block(c, &pd_schema_upstream, v->kids[i], (char *)u) == ABSENT)
        at(c, v->kids[i], "an upstream must be a mapping with at least \"name\" and \"base_url\"");
    }
  } else {
    cfg->upstreams = pd_value_xcalloc(1, sizeof *cfg->upstreams);
    cfg->nupstreams = 1;
    default_upstream(c, &cfg->upstreams[0]);
  }
}

/* ---- routes ---- */

static void route_free(pd_route_t *r) {
  pd_schema_free_strings(&pd_schema_route, r);
  for (size_t i = 0; i < r->nmodels; i++)
    free(r->models[i]);
  free(r->models);
  free(r->sticky_header);
  for (size_t i = 0; i < r->neffort; i++)
    free(r->effort[i].name);
  free(r->effort);
  for (size_t i = 0; i < r->nvariants; i++) {
    free(r->variants[i].name);
    policy_free(&r->variants[i].forcing);
  }
  free(r->variants);
}

/* One variant "default" of weight 1: for routes with a single policy or none. */
static pd_variant_t *single_variant(pd_route_t *r) {
  r->variants = pd_value_xcalloc(1, sizeof *r->variants);
  r->nvariants = 1;
  r->total_weight = 1;
  r->variants[0].name = pd_value_xstrdup("default");
  r->variants[0].weight = 1;
  policy_init(&r->variants[0].forcing);
  return &r->variants[0];
}

static void check_route_name(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *vn,
                             char *base) {
  (void)k, (void)kn;
  const pd_route_t *all = c->cfg->routes;
  check_name(c, vn, "route", ((pd_route_t *)base)->name, (const char *)&all[0].name, c->idx,
             sizeof *all);
}

static void check_path_prefix(ctx_t *c, const pd_schema_key_t *k, const node_t *kn,
                              const node_t *vn, char *base) {
  (void)k, (void)kn;
  pd_route_t *r = (pd_route_t *)base;
  if (r->path_prefix[0] != '/') {
    at(c, vn, "\"path_prefix\" must start with '/' (got \"%s\")", r->path_prefix);
    return;
  }
  if (strpbrk(r->path_prefix, "?# \t")) {
    at(c, vn, "\"path_prefix\" must be a plain path (got \"%s\")", r->path_prefix);
    return;
  }
  pd_value_strip_slashes(r->path_prefix);
  if (!*r->path_prefix) {
    at(c, vn, "\"path_prefix\" must not be \"/\": the catch-all is a route without `match`");
    pd_value_set(&r->path_prefix, NULL);
    return;
  }
  for (size_t i = 0; i < c->idx; i++)
    if (c->cfg->routes[i].path_prefix && !strcmp(c->cfg->routes[i].path_prefix, r->path_prefix))
      at(c, vn, "route \"%s\" already has path_prefix \"%s\"",
         c->cfg->routes[i].name ? c->cfg->routes[i].name : "?", r->path_prefix);
}

static void read_models(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                        char *base) {
  (void)kn;
  pd_route_t *r = (pd_route_t *)base;
  if (pd_value_seq(&c->v, v, k->name) != GOT)
    return;
  r->models = pd_value_xcalloc(v->nkids, sizeof *r->models);
  for (size_t i = 0; i < v->nkids; i++) {
    const node_t *item = v->kids[i];
    char *m = NULL;
    int rc = pd_value_nonempty(&c->v, item, "models", &m);
    if (rc == GOT)
      r->models[r->nmodels++] = m;
    else if (rc == ABSENT)
      at(c, item, "\"models\" entries must not be empty");
  }
}

static void post_match(ctx_t *c, const pd_schema_table_t *t, const seen_t *s, const node_t *map,
                       char *base) {
  pd_route_t *r = (pd_route_t *)base;
  r->has_match = 1;
  const node_t *prefix = s->v[pd_read_row(t, "path_prefix")];
  if (!(s->k[pd_read_row(t, "path_prefix")] && !pd_yaml_is_null(prefix)) && r->nmodels == 0)
    at(c, map,
       "\"match\" needs a \"path_prefix\" or a non-empty \"models\" list (a route without "
       "`match` is the catch-all)");
}

static void read_route_upstream(ctx_t *c, const pd_schema_key_t *k, const node_t *kn,
                                const node_t *vn, char *base) {
  (void)kn;
  pd_route_t *r = (pd_route_t *)base;
  pd_config_t *cfg = c->cfg;
  char *s = NULL;
  if (pd_value_nonempty(&c->v, vn, k->name, &s) != GOT)
    return;
  size_t i = 0;
  while (i < cfg->nupstreams && !(cfg->upstreams[i].name && !strcmp(cfg->upstreams[i].name, s)))
    i++;
  if (i == cfg->nupstreams)
    at(c, vn, "unknown upstream \"%s\"", s);
  else
    r->upstream = i;
  free(s);
}

static void check_model(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *vn,
                        char *base) {
  (void)c, (void)k, (void)kn, (void)vn;
  pd_route_t *r = (pd_route_t *)base;
  if (!*r->model)
    pd_value_set(&r->model, NULL); /* "" = the client's model, like an absent key */
}

static void read_sticky(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                        char *base) {
  (void)kn;
  pd_route_t *r = (pd_route_t *)base;
  char *s;
  if (pd_value_text(&c->v, v, k->name, &s) != GOT)
    return;
  if (!strcmp(s, "random")) {
    r->sticky = PD_STICKY_RANDOM;
  } else if (!strcmp(s, "body:user")) {
    r->sticky = PD_STICKY_BODY_USER;
  } else if (!strncmp(s, "header:", 7) && pd_value_token_ok(s + 7)) {
    r->sticky = PD_STICKY_HEADER;
    pd_value_set(&r->sticky_header, pd_value_xstrdup(s + 7));
    pd_value_lower(r->sticky_header);
  } else {
    at(c, v, "\"sticky\" must be header:NAME, body:user or random (got \"%s\")", s);
  }
  free(s);
}

static void read_effort(ctx_t *c, const pd_schema_key_t *k, const node_t *kn0, const node_t *v,
                        char *base) {
  (void)k, (void)kn0;
  pd_route_t *r = (pd_route_t *)base;
  iter_t it;
  const pd_schema_key_t *none;
  const node_t *kn, *vn;
  if (pd_read_iter_start(&it, c, v, "effort", NULL) != GOT)
    return;
  r->effort = pd_value_xcalloc(v->nkids / 2, sizeof *r->effort);
  while (pd_read_iter_next(&it, &none, &kn, &vn)) {
    const char *key = kn->text;
    int rounds;
    if (!*key) {
      at(c, kn, "effort names must not be empty");
      continue;
    }
    int rc = pd_value_int(&c->v, vn, key, 0, MAX_ROUNDS, &rounds);
    if (rc == ABSENT)
      at(c, vn, "effort \"%s\" needs a number of rounds (0..%d)", key, MAX_ROUNDS);
    if (rc != GOT)
      continue;
    r->effort[r->neffort].name = pd_value_xstrdup(key);
    r->effort[r->neffort].rounds = rounds;
    r->neffort++;
  }
}

/* forcing and variants are read once the whole route is (post_route): they exclude each other. */
static void read_later(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *vn,
                       char *base) {
  (void)c, (void)k, (void)kn, (void)vn, (void)base;
}

static void check_variant_name(ctx_t *c, const pd_schema_key_t *k, const node_t *kn,
                               const node_t *vn, char *base) {
  (void)k, (void)kn;
  const pd_variant_t *all = c->route->variants;
  check_name(c, vn, "variant", ((pd_variant_t *)base)->name, (const char *)&all[0].name, c->vidx,
             sizeof *all);
}

static void post_variant(ctx_t *c, const pd_schema_table_t *t, const seen_t *s, const node_t *map,
                         char *base) {
  (void)t, (void)s;
  if (!((pd_variant_t *)base)->name)
    at(c, map, "a variant needs a \"name\"");
}

static void read_variants(ctx_t *c, const node_t *v, pd_route_t *r) {
  if (pd_value_seq(&c->v, v, "variants") != GOT)
    return;
  if (v->nkids == 0) {
    at(c, v, "\"variants\" must not be empty");
    return;
  }
  r->variants = pd_value_xcalloc(v->nkids, sizeof *r->variants);
  r->nvariants = v->nkids;
  long long total = 0;
  c->route = r;
  for (size_t i = 0; i < v->nkids; i++) {
    pd_variant_t *var = &r->variants[i];
    pd_schema_defaults(&pd_schema_variant, var, 1);
    set_chatml(&var->forcing);
    c->vidx = i;
    int rc = pd_read_block(c, &pd_schema_variant, v->kids[i], (char *)var);
    if (rc == ABSENT)
      at(c, v->kids[i], "a variant must be a mapping with at least a \"name\"");
    if (rc != GOT)
      continue;
    total += var->weight;
  }
  if (total > INT_MAX)
    at(c, v, "the variants' weights add up to more than %d", INT_MAX);
  else
    r->total_weight = (int)total;
}

static void post_route(ctx_t *c, const pd_schema_table_t *t, const seen_t *s, const node_t *map,
                       char *base) {
  pd_route_t *r = (pd_route_t *)base;
  size_t fi = pd_read_row(t, "forcing"), vi = pd_read_row(t, "variants");
  const node_t *forcing = s->v[fi] && !pd_yaml_is_null(s->v[fi]) ? s->v[fi] : NULL;
  const node_t *variants = s->v[vi] && !pd_yaml_is_null(s->v[vi]) ? s->v[vi] : NULL;
  if (!r->name)
    at(c, map, "a route needs a \"name\"");
  if (forcing && variants) {
    const node_t *fk = s->k[fi], *vk = s->k[vi];
    at(c, fk->line > vk->line ? fk : vk,
       "a route has either \"forcing\" or \"variants\", not both");
  }
  if (variants) {
    read_variants(c, variants, r);
    if (r->nvariants == 0)
      single_variant(r); /* keep the "at least one variant" shape even on error paths */
  } else {
    pd_variant_t *var = single_variant(r);
    if (forcing)
      pd_read_block(c, &pd_schema_policy, forcing, (char *)&var->forcing);
    else if (c->ov && c->ov->rounds >= 0 && c->ov->rounds <= MAX_ROUNDS)
      var->forcing.rounds = c->ov->rounds;
  }
}

/* The catch-all route of a file without `routes` (SPEC section 3). */
static void default_route(ctx_t *c, pd_route_t *r) {
  memset(r, 0, sizeof *r);
  r->name = pd_value_xstrdup("default");
  pd_variant_t *var = single_variant(r);
  if (c->ov && c->ov->rounds >= 0 && c->ov->rounds <= MAX_ROUNDS)
    var->forcing.rounds = c->ov->rounds;
}

static void read_routes(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                        char *base) {
  (void)kn, (void)base;
  pd_config_t *cfg = c->cfg;
  if (pd_value_seq(&c->v, v, k->name) == GOT && v->nkids > 0) {
    cfg->routes = pd_value_xcalloc(v->nkids, sizeof *cfg->routes);
    cfg->nroutes = v->nkids;
    const pd_route_t *catchall = NULL;
    for (size_t i = 0; i < v->nkids; i++) {
      const node_t *rv = v->kids[i];
      pd_route_t *r = &cfg->routes[i];
      pd_schema_defaults(&pd_schema_route, r, 1);
      c->idx = i;
      if (pd_read_block(c, &pd_schema_route, rv, (char *)r) == ABSENT)
        at(c, rv, "a route must be a mapping with at least a \"name\"");
      if (r->has_match || !r->name || pd_yaml_is_null(rv) || rv->kind != PD_YAML_MAP)
        continue;
      if (catchall)
        at(c, rv,
           "route \"%s\" has no `match` and would never be used: route \"%s\" is already the "
           "catch-all",
           r->name, catchall->name);
      else
        catchall = r;
    }
  } else {
    cfg->routes = pd_value_xcalloc(1, sizeof *cfg->routes);
    cfg->nroutes = 1;
    default_route(c, &cfg->routes[0]);
  }
}

/* ---- top level ---- */

static void read_listen(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                        char *base) {
  (void)kn;
  pd_config_t *cfg = (pd_config_t *)base;
  char *s, *host = NULL;
  if (pd_value_text(&c->v, v, k->name, &s) != GOT)
    return;
  const char *why = pd_value_listen(s, &host, &cfg->listen_port);
  if (why)
    at(c, v, "\"listen\" %s (got \"%s\")", why, s);
  else
    pd_value_set(&cfg->listen_host, host);
  free(s);
}

static void read_auth_keys(ctx_t *c, const pd_schema_key_t *k, const node_t *kn, const node_t *v,
                           char *base) {
  (void)kn;
  pd_config_t *cfg = (pd_config_t *)base;
  if (pd_value_seq(&c->v, v, k->name) != GOT)
    return;
  cfg->auth_keys = pd_value_xcalloc(v->nkids, sizeof *cfg->auth_keys);
  for (size_t i = 0; i < v->nkids; i++) {
    const node_t *item = v->kids[i];
    char *key = NULL;
    int rc = pd_value_text(&c->v, item, "keys", &key);
    /* An empty key (an unset ${VAR}) would silently open the proxy: refuse it. */
    if (rc == ABSENT || (rc == GOT && !*key))
      at(c, item, "auth key %zu is empty (an unset ${VAR}?)", i + 1);
    else if (rc == GOT && !pd_value_header_ok(key))
      at(c, item, "auth key %zu must not contain a line break", i + 1);
    else if (rc == GOT) {
      cfg->auth_keys[cfg->nauth_keys++] = key;
      continue;
    }
    free(key);
  }
}

static const read_fn READS[PD_HOOK_COUNT] = {
    [PD_HOOK_LISTEN] = read_listen,
    [PD_HOOK_AUTH_KEYS] = read_auth_keys,
    [PD_HOOK_UPSTREAMS] = read_upstreams,
    [PD_HOOK_ROUTES] = read_routes,
    [PD_HOOK_UPSTREAM_NAME] = check_upstream_name,
    [PD_HOOK_BASE_URL] = check_base_url,
    [PD_HOOK_API_KEY] = check_api_key,
    [PD_HOOK_HEADERS] = read_headers,
    [PD_HOOK_TLS_FILE] = check_tls_file,
    [PD_HOOK_SERVER_NAME] = check_server_name,
    [PD_HOOK_PROXY] = check_proxy,
    [PD_HOOK_ROUTE_NAME] = check_route_name,
    [PD_HOOK_PATH_PREFIX] = check_path_prefix,
    [PD_HOOK_MODELS] = read_models,
    [PD_HOOK_ROUTE_UPSTREAM] = read_route_upstream,
    [PD_HOOK_MODEL] = check_model,
    [PD_HOOK_STICKY] = read_sticky,
    [PD_HOOK_EFFORT] = read_effort,
    [PD_HOOK_FORCING] = read_later,
    [PD_HOOK_VARIANTS] = read_later,
    [PD_HOOK_VARIANT_NAME] = check_variant_name,
    [PD_HOOK_TEMPLATE] = read_template,
    [PD_HOOK_CONTENT] = check_content,
};

static const post_fn POSTS[PD_HOOK_COUNT] = {
    [PD_HOOK_POST_UPSTREAM] = post_upstream, [PD_HOOK_POST_TLS] = post_tls,
    [PD_HOOK_POST_ROUTE] = post_route,       [PD_HOOK_POST_MATCH] = post_match,
    [PD_HOOK_POST_VARIANT] = post_variant,   [PD_HOOK_POST_FORCING] = post_forcing,
};

/* ---- load ---- */

static void config_free(pd_config_t *cfg) {
  free(cfg->path);
  free(cfg->listen_host);
  pd_schema_free_strings(&pd_schema_top, cfg);
  for (size_t i = 0; i < cfg->nauth_keys; i++)
    free(cfg->auth_keys[i]);
  free(cfg->auth_keys);
  for (size_t i = 0; i < cfg->nupstreams; i++)
    upstream_free(&cfg->upstreams[i]);
  free(cfg->upstreams);
  for (size_t i = 0; i < cfg->nroutes; i++)
    route_free(&cfg->routes[i]);
  free(cfg->routes);
  free(cfg);
}

static void apply_overrides(ctx_t *c, pd_config_t *cfg, const pd_cli_overrides_t *ov) {
  if (!ov)
    return;
  if (ov->listen) {
    char *host = NULL;
    const char *why = pd_value_listen(ov->listen, &host, &cfg->listen_port);
    if (why)
      pd_value_problem(&c->v, -1, "--listen %s (got \"%s\")", why, ov->listen);
    else
      pd_value_set(&cfg->listen_host, host);
  }
  if (ov->upstream) {
    const char *why = pd_value_url_problem(ov->upstream);
    if (why) {
      pd_value_problem(&c->v, -1, "--upstream %s (got \"%s\")", why, ov->upstream);
    } else {
      pd_value_set(&cfg->upstreams[0].base_url, pd_value_xstrdup(ov->upstream));
      pd_value_strip_slashes(cfg->upstreams[0].base_url);
    }
  }
  if (ov->rounds > MAX_ROUNDS)
    pd_value_problem(&c->v, -1, "--rounds must be between 0 and %d (got %d)", MAX_ROUNDS,
                     ov->rounds);
  if (ov->workers > MAX_WORKERS)
    pd_value_problem(&c->v, -1, "--workers must be between 0 and %d (got %d)", MAX_WORKERS,
                     ov->workers);
  else if (ov->workers >= 0)
    cfg->workers = ov->workers;
  if (ov->log_level > PD_LOG_DEBUG)
    pd_value_problem(&c->v, -1, "--log-level must be error, warn, info or debug");
  else if (ov->log_level >= 0)
    cfg->log_level = (pd_log_level_t)ov->log_level;
}

int pd_config_load(const char *path, const pd_cli_overrides_t *ov, pd_config_t **out,
                   char **errors) {
  *out = NULL;
  if (errors)
    *errors = NULL;
  pd_config_t *cfg = pd_value_xcalloc(1, sizeof *cfg);
  ctx_t c = {
      .v = {.file = path ? path : "ponder"}, .hooks = READS, .posts = POSTS, .cfg = cfg, .ov = ov};
  atomic_init(&cfg->refs, 1);
  cfg->path = pd_value_xstrdup(path);
  pd_value_listen(pd_schema_top.keys[pd_read_row(&pd_schema_top, "listen")].def, &cfg->listen_host,
                  &cfg->listen_port);
  pd_schema_defaults(&pd_schema_top, cfg, 1);

  pd_yaml_doc_t *doc = NULL;
  int readable = 1;
  if (path) {
    int line;
    char *msg;
    readable = pd_yaml_read(path, &doc, &line, &msg) == 0;
    if (msg)
      pd_value_problem(&c.v, line, "%s", msg);
    free(msg);
  }
  if (readable) {
    pd_read_block(&c, &pd_schema_top, pd_yaml_root(doc), (char *)cfg);
    apply_overrides(&c, cfg, ov);
  }
  resolve_http2(cfg);
  pd_yaml_free(doc);

  if (cfg->workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
  }
  if (c.v.nprobs) {
    if (errors)
      *errors = pd_value_join(&c.v);
    pd_value_ctx_free(&c.v);
    config_free(cfg);
    return -1;
  }
  pd_value_ctx_free(&c.v);
  /* Every base_url was checked to parse (url_problem): keep its parts for the dispatch, which
   * joins every request's URL to them. */
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    pd_upstream_cfg_t *u = &cfg->upstreams[i];
    if (u->base_url)
      pd_url_parse_base(u->base_url, strlen(u->base_url), &u->base);
  }
  *out = cfg;
  return 0;
}

int pd_config_warnings(const pd_config_t *cfg, void (*warn)(void *ud, const char *msg), void *ud) {
  int n = 0;
  if (!cfg || cfg->nauth_keys == 0)
    return 0;
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    const pd_upstream_cfg_t *u = &cfg->upstreams[i];
    if (u->api_key)
      continue;
    char msg[512];
    snprintf(msg, sizeof msg,
             "auth.keys is set but upstream \"%.200s\" has no api_key: the client's "
             "Authorization header (ponder's own key) is forwarded to it; set its api_key",
             u->name ? u->name : "");
    n++;
    if (warn)
      warn(ud, msg);
  }
  return n;
}

pd_config_t *pd_config_ref(pd_config_t *cfg) {
  if (cfg)
    atomic_fetch_add(&cfg->refs, 1);
  return cfg;
}

void pd_config_unref(pd_config_t *cfg) {
  if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
    config_free(cfg);
}
