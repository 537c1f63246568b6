/* Test support for tests/unit/api/test_responses.c and tests/fuzz/fuzz_responses.c: the
 * rounds-0 fast path (pd_responses_req_scan, pd_responses_req_write) against the tree path
 * (pd_json_load as the dispatch parses, pd_responses_req_translate, then what app/relay.c's
 * translated relay removes and sets before pd_json_write). Static functions: include it from
 * one file of each program. */
#ifndef PD_TEST_RESPONSES_DIFF_H
#define PD_TEST_RESPONSES_DIFF_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/responses.h"
#include "base/json.h"

/* What diff_fast found; a violation calls diff_fail (abort or a test failure). */
enum { DIFF_TREE = 0, DIFF_FAST = 1 };

#ifndef DIFF_FAIL
#define DIFF_FAIL(why) abort()
#endif

/* The upstream body the tree path sends for b at rounds 0 (route_model NULL: the client's),
 * into *out; the translation's result (0, -1 or -2, -3 when b is not a JSON object). */
__attribute__((unused)) static int diff_tree(const char *b, size_t n, const char *route_model,
                                             const char *limit, pd_buf_t *out,
                                             pd_responses_req_t *req, char **client_model) {
  *client_model = NULL;
  json_t *body = pd_json_load(b, n, NULL);
  if (!json_is_object(body)) {
    json_decref(body);
    return -3;
  }
  const char *cm = json_string_value(json_object_get(body, "model"));
  *client_model = cm ? strdup(cm) : NULL;
  pd_responses_error_t err;
  int rc = pd_responses_req_translate(body, limit, req, &err);
  json_decref(body);
  if (rc < 0)
    return rc;
  json_t *chat = req->chat;
  const char *model = route_model ? route_model : *client_model;
  json_object_del(chat, "n");
  json_object_del(chat, "ponder");
  json_object_del(chat, "stream");
  json_object_del(chat, "stream_options");
  const char *now = json_string_value(json_object_get(chat, "model"));
  if (!(now && !strcmp(now, model ? model : "")))
    json_object_set_new(chat, "model", json_string(model ? model : ""));
  if (pd_json_write(out, chat) < 0)
    DIFF_FAIL("write");
  return 0;
}

/* Compares the paths on b: when the scan takes b, the tree path translates it with the same
 * model, user and stream, no "ponder" and no "reasoning_effort" (the router reads only
 * "user"), and the fast writer gives the same upstream body and echo byte for byte. Returns
 * DIFF_FAST when the fast path took b. */
__attribute__((unused)) static int diff_fast(const char *b, size_t n, const char *route_model,
                                             const char *limit) {
  pd_chat_scan_t cs;
  int scanned = pd_responses_req_scan(b, n, &cs);
  pd_buf_t tb, fb;
  pd_buf_init(&tb);
  pd_buf_init(&fb);
  pd_responses_req_t tr, fr;
  memset(&tr, 0, sizeof tr);
  char *cm = NULL;
  int trc = diff_tree(b, n, route_model, limit, &tb, &tr, &cm);
  if (scanned) {
    if (trc != 0)
      DIFF_FAIL("scan took a body the tree path refuses");
    if (!cm || strlen(cm) != cs.model_len || memcmp(cm, cs.model, cs.model_len))
      DIFF_FAIL("model");
    const json_t *u = json_object_get(tr.chat, "user");
    if (json_is_string(u) != (cs.user != NULL) ||
        (cs.user && (json_string_length(u) != cs.user_len ||
                     memcmp(json_string_value(u), cs.user, cs.user_len))))
      DIFF_FAIL("user");
    if (cs.stream != tr.stream)
      DIFF_FAIL("stream");
    if (json_object_get(tr.chat, "reasoning_effort"))
      DIFF_FAIL("effort");
    const char *model = route_model ? route_model : cm;
    int frc = pd_responses_req_write(b, n, model, limit, &fb, &fr);
    if (frc != 0)
      DIFF_FAIL("write refused a scanned body");
    if (fb.len != tb.len || memcmp(pd_buf_data(&fb), pd_buf_data(&tb), tb.len)) {
      fprintf(stderr, "tree: %.*s\nfast: %.*s\n", (int)tb.len, pd_buf_data(&tb), (int)fb.len,
              pd_buf_data(&fb));
      DIFF_FAIL("upstream body");
    }
    if (fr.echo.len != tr.echo.len || fr.echo_head != tr.echo_head || fr.echo_mid != tr.echo_mid ||
        memcmp(pd_buf_data(&fr.echo), pd_buf_data(&tr.echo), tr.echo.len)) {
      fprintf(stderr, "tree: %.*s\nfast: %.*s\n", (int)tr.echo.len, pd_buf_data(&tr.echo),
              (int)fr.echo.len, pd_buf_data(&fr.echo));
      DIFF_FAIL("echo");
    }
    if (fr.stream != tr.stream || fr.summary != tr.summary || fr.chat)
      DIFF_FAIL("flags");
    pd_responses_req_free(&fr);
  } else if (pd_responses_req_write(b, n, "m", limit, &fb, &fr) != 1) {
    DIFF_FAIL("write took a body the scan refused");
  }
  if (trc == 0)
    pd_responses_req_free(&tr);
  free(cm);
  pd_buf_free(&tb);
  pd_buf_free(&fb);
  return scanned ? DIFF_FAST : DIFF_TREE;
}

#endif
