/* Unit tests for base/list.h (the intrusive circular list) and base/guard.h (the re-entrancy
 * guard): every operation, the idempotent remove, removal while visiting, and a close asked
 * for inside nested callbacks that happens only when the outermost frame leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/guard.h"
#include "base/list.h"

typedef struct item {
  int id;
  pd_list_t link;
} item_t;

/* The ids of head's members in order, as a number written with one digit per member. */
static int ids(pd_list_t *head) {
  int v = 0;
  pd_list_t *it, *tmp;
  pd_list_each(it, tmp, head) {
    v = v * 10 + pd_list_entry(it, item_t, link)->id;
  }
  return v;
}

static void test_list_basics(void **state) {
  (void)state;
  pd_list_t head;
  pd_list_init(&head);
  assert_true(pd_list_empty(&head));
  assert_null(pd_list_first(&head));
  assert_int_equal(ids(&head), 0);

  item_t a = {1, {0}}, b = {2, {0}}, c = {3, {0}};
  pd_list_init(&a.link);
  pd_list_init(&b.link);
  pd_list_init(&c.link);
  assert_false(pd_list_linked(&a.link));

  pd_list_insert_tail(&head, &a.link);
  pd_list_insert_tail(&head, &b.link);
  pd_list_insert_head(&head, &c.link);
  assert_false(pd_list_empty(&head));
  assert_true(pd_list_linked(&a.link) && pd_list_linked(&b.link) && pd_list_linked(&c.link));
  assert_int_equal(ids(&head), 312);
  assert_ptr_equal(pd_list_entry(pd_list_first(&head), item_t, link), &c);
  /* Backwards too: the list is circular both ways. */
  assert_ptr_equal(head.prev, &b.link);
  assert_ptr_equal(b.link.prev, &a.link);
  assert_ptr_equal(c.link.prev, &head);

  /* Removing from the middle, then again (a no-op), never needs the head. */
  pd_list_remove(&a.link);
  assert_false(pd_list_linked(&a.link));
  assert_int_equal(ids(&head), 32);
  pd_list_remove(&a.link);
  assert_int_equal(ids(&head), 32);
  /* A link removed can be inserted again. */
  pd_list_insert_head(&head, &a.link);
  assert_int_equal(ids(&head), 132);

  pd_list_remove(&c.link);
  pd_list_remove(&a.link);
  pd_list_remove(&b.link);
  assert_true(pd_list_empty(&head));
  assert_null(pd_list_first(&head));
  assert_ptr_equal(head.next, &head);
  assert_ptr_equal(head.prev, &head);
}

/* pd_list_each allows removing the link being visited: here every other one, then the rest. */
static void test_list_remove_while_visiting(void **state) {
  (void)state;
  pd_list_t head;
  pd_list_init(&head);
  item_t items[6];
  for (int i = 0; i < 6; i++) {
    items[i].id = i + 1;
    pd_list_init(&items[i].link);
    pd_list_insert_tail(&head, &items[i].link);
  }
  assert_int_equal(ids(&head), 123456);
  pd_list_t *it, *tmp;
  pd_list_each(it, tmp, &head) {
    if (pd_list_entry(it, item_t, link)->id % 2 == 0)
      pd_list_remove(it);
  }
  assert_int_equal(ids(&head), 135);
  int visited = 0;
  pd_list_each(it, tmp, &head) {
    pd_list_remove(it);
    visited++;
  }
  assert_int_equal(visited, 3);
  assert_true(pd_list_empty(&head));
  for (int i = 0; i < 6; i++)
    assert_false(pd_list_linked(&items[i].link));
}

/* Popping the first until empty (the pattern of a run queue), with a member that queues itself
 * again while it runs being run again. */
static void test_list_pop_until_empty(void **state) {
  (void)state;
  pd_list_t head;
  pd_list_init(&head);
  item_t a = {1, {0}}, b = {2, {0}};
  pd_list_init(&a.link);
  pd_list_init(&b.link);
  pd_list_insert_head(&head, &a.link);
  pd_list_insert_head(&head, &b.link);
  int order = 0, again = 1;
  pd_list_t *l;
  while ((l = pd_list_first(&head))) {
    item_t *x = pd_list_entry(l, item_t, link);
    pd_list_remove(l);
    order = order * 10 + x->id;
    if (x->id == 2 && again) {
      again = 0;
      pd_list_insert_head(&head, &x->link);
    }
  }
  assert_int_equal(order, 221);
}

static void test_guard_close_outside(void **state) {
  (void)state;
  pd_guard_t g = {0};
  assert_false(pd_guard_entered(&g));
  /* Nothing on the stack: the close may happen at once. */
  assert_int_equal(pd_guard_close(&g), 1);
  assert_true(g.closing);
}

static void test_guard_close_inside(void **state) {
  (void)state;
  pd_guard_t g = {0};
  pd_guard_enter(&g); /* a callback */
  assert_true(pd_guard_entered(&g));
  pd_guard_enter(&g); /* which calls another */
  /* A close asked for inside is deferred ... */
  assert_int_equal(pd_guard_close(&g), 0);
  /* ... past the inner frame ... */
  assert_int_equal(pd_guard_leave(&g), 0);
  assert_true(pd_guard_entered(&g));
  /* ... to the outermost one, which does it. */
  assert_int_equal(pd_guard_leave(&g), 1);
  assert_false(pd_guard_entered(&g));
}

static void test_guard_no_close(void **state) {
  (void)state;
  pd_guard_t g = {0};
  for (int i = 0; i < 3; i++)
    pd_guard_enter(&g);
  for (int i = 0; i < 3; i++)
    assert_int_equal(pd_guard_leave(&g), 0);
  assert_false(pd_guard_entered(&g));
  assert_false(g.closing);
  /* The guard is reusable: a later callback with a close inside it. */
  pd_guard_enter(&g);
  assert_int_equal(pd_guard_close(&g), 0);
  assert_int_equal(pd_guard_leave(&g), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_list_basics),
      cmocka_unit_test(test_list_remove_while_visiting),
      cmocka_unit_test(test_list_pop_until_empty),
      cmocka_unit_test(test_guard_close_outside),
      cmocka_unit_test(test_guard_close_inside),
      cmocka_unit_test(test_guard_no_close),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
