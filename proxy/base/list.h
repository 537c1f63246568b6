/* One intrusive doubly linked list for every module (libuv's queue.h idea): a pd_list_t is
 * embedded both in the owner (as the head) and in each member (as its link), and a member is
 * found from its link with pd_list_entry. The list is circular: an empty head, and a link that
 * is in no list, point at themselves, so removing is safe and idempotent and never needs to
 * know the head. Owns nothing: members are freed by whoever owns them. */
#ifndef PD_LIST_H
#define PD_LIST_H

#include <stddef.h>

typedef struct pd_list {
  struct pd_list *prev, *next;
} pd_list_t;

/* The struct of type `type` whose member `field` is the link `l`. */
#define pd_list_entry(l, type, field) ((type *)((char *)(l)-offsetof(type, field)))

/* Visits every link of head; `it` may be removed (not others) during the visit. */
#define pd_list_each(it, tmp, head)                                                                \
  for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

/* Makes an empty head, or a link that is in no list. */
static inline void pd_list_init(pd_list_t *l) {
  l->prev = l->next = l;
}

static inline int pd_list_empty(const pd_list_t *head) {
  return head->next == head;
}

/* Whether a link (initialised with pd_list_init) is in a list. */
static inline int pd_list_linked(const pd_list_t *l) {
  return l->next != l;
}

static inline void pd_list_insert_tail(pd_list_t *head, pd_list_t *l) {
  l->next = head;
  l->prev = head->prev;
  head->prev->next = l;
  head->prev = l;
}

static inline void pd_list_insert_head(pd_list_t *head, pd_list_t *l) {
  l->prev = head;
  l->next = head->next;
  head->next->prev = l;
  head->next = l;
}

/* Unlinks l from whatever list holds it; a no-op for an unlinked link. */
static inline void pd_list_remove(pd_list_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = l;
}

/* The first link, or NULL when the list is empty. */
static inline pd_list_t *pd_list_first(const pd_list_t *head) {
  return head->next == head ? NULL : head->next;
}

#endif
