/* Fuzz target: base/json.c's one tokenizer and everything built on it, differential against
 * jansson's json_loadb (flags 0), whose verdict each of them states as its contract:
 *  - the tokenizer ends with PD_JSON_END exactly when json_loadb accepts the text;
 *  - pd_json_load gives json_loadb's verdict and the same tree;
 *  - pd_openai_load_reply (core/openai.c) gives json_loadb's verdict and the reply cut down to the
 *    members the forcing engine reads (tests/lib/reply_cut.h), or for an array the whole tree;
 *  - pd_json_check_object says 1 or 2 exactly for the objects jansson accepts, 2 exactly when its
 *    tree has a top-level "error"; pd_json_check_reply's "usage" span parses to jansson's
 *    top-level "usage";
 *  - pd_openai_check_reply and pd_openai_remodel: the reply with the client's model name put
 *    back parses, has that name, and is otherwise jansson's tree;
 *  - pd_json_write of jansson's tree is byte for byte json_dumps(JSON_COMPACT).
 * Any difference aborts, so libFuzzer keeps the input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json_gen.h"
#include "../lib/reply_cut.h"
#include "base/json.h"
#include "core/openai.h"

static void check_write(const json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT);
  if (!want)
    abort();
  pd_buf_t b;
  pd_buf_init(&b);
  if (pd_json_write(&b, v) != 0 || b.len != strlen(want) || memcmp(pd_buf_data(&b), want, b.len))
    abort();
  pd_buf_free(&b);
  free(want);
}

static void check_remodel(const char *b, size_t n, const json_t *full) {
  pd_openai_reply_t r;
  int rc = pd_openai_check_reply(b, n, &r);
  if (rc != (json_object_get(full, "error") ? 2 : 1))
    abort();
  if (!json_object_get(full, "model") != !r.model)
    abort();
  pd_buf_t out;
  pd_buf_init(&out);
  if (pd_openai_remodel(&out, b, n, &r, "client") != 0)
    abort();
  json_t *j = json_loadb(pd_buf_data(&out), out.len, 0, NULL);
  if (!j)
    abort();
  json_t *want = json_deep_copy(full);
  if (r.model)
    json_object_set_new(want, "model", json_string("client"));
  if (!json_equal(j, want))
    abort();
  json_decref(want);
  json_decref(j);
  pd_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *b = (const char *)data;
  json_error_t err;
  json_t *full = json_loadb(b, size, 0, NULL);
  json_t *whole = pd_json_load(b, size, &err);
  json_t *reply = pd_openai_load_reply(b, size);
  int check = pd_json_check_object(b, size);
  if (scan_accepts(b, size) != !!full)
    abort();
  if (!full) {
    if (whole || reply || check)
      abort(); /* accepted what jansson rejects */
    return 0;
  }
  if (!whole || !json_equal(whole, full))
    abort();
  if (!reply)
    abort(); /* rejected what jansson accepts */
  json_t *cut = json_is_object(full) ? cut_reply(full) : json_incref(full);
  if (!json_equal(reply, cut))
    abort();
  if (check != (!json_is_object(full) ? 0 : json_object_get(full, "error") ? 2 : 1))
    abort();
  /* The "usage" span pd_json_check_reply finds parses to jansson's top-level "usage". */
  const char *u = NULL;
  size_t ulen = 0;
  if (pd_json_check_reply(b, size, &u, &ulen) != check)
    abort();
  if (check) {
    json_t *want = json_object_get(full, "usage");
    json_t *got = u ? json_loadb(u, ulen, JSON_DECODE_ANY, NULL) : NULL;
    if (!want != !got || (got && !json_equal(got, want)))
      abort();
    json_decref(got);
    check_remodel(b, size, full);
  }
  check_write(full);
  json_decref(cut);
  json_decref(reply);
  json_decref(whole);
  json_decref(full);
  return 0;
}
