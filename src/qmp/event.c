/* qmp: the event queue — events that arrive while waiting for replies are kept, oldest first, until a
 * caller asks for them by name (and optionally by data members). */
#include "qmp/qmp-priv.h"

#include <errno.h>
#include <string.h>

int qmp__maybe_queue_event(struct qmp *q, json_t *msg)
{
    if (!json_is_string(json_object_get(msg, "event")))
        return 0;
    if (q->ev_count >= QMP_MAX_QUEUED_EVENTS) {
        /* Bounded memory beats completeness for a caller that never drains. */
        struct qmp_event_node *old = q->ev_head;
        q->ev_head = old->next;
        if (!q->ev_head)
            q->ev_tail = NULL;
        json_decref(old->msg);
        free(old);
        q->ev_count--;
        q->ev_dropped++;
    }
    struct qmp_event_node *n = vs_xcalloc(1, sizeof *n);
    n->msg = msg;
    if (q->ev_tail)
        q->ev_tail->next = n;
    else
        q->ev_head = n;
    q->ev_tail = n;
    q->ev_count++;
    return 1;
}

void qmp__free_events(struct qmp *q)
{
    while (q->ev_head) {
        struct qmp_event_node *n = q->ev_head;
        q->ev_head = n->next;
        json_decref(n->msg);
        free(n);
    }
    q->ev_tail = NULL;
    q->ev_count = 0;
}

void qmp_drop_events(struct qmp *q) { qmp__free_events(q); }
size_t qmp_queued_events(const struct qmp *q) { return q->ev_count; }

static bool matches(json_t *ev, const char *name, const json_t *match)
{
    if (name && strcmp(json_string_value(json_object_get(ev, "event")), name))
        return false;
    if (!match)
        return true;
    json_t *data = json_object_get(ev, "data");
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)match, key, want) {
        if (!json_equal(json_object_get(data, key), want))
            return false;
    }
    return true;
}

/* Unlink and return the oldest queued match, or NULL. */
static json_t *take(struct qmp *q, const char *name, const json_t *match)
{
    for (struct qmp_event_node **pp = &q->ev_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        struct qmp_event_node *n = *pp;
        if (!matches(n->msg, name, match))
            continue;
        *pp = n->next;
        if (q->ev_tail == n)
            q->ev_tail = prev;
        q->ev_count--;
        json_t *msg = n->msg;
        free(n);
        return msg;
    }
    return NULL;
}

int qmp_pop_event(struct qmp *q, const char *name, json_t **event)
{
    json_t *ev = take(q, name, NULL);
    if (!ev)
        return 0;
    *event = ev;
    return 1;
}

/* Read messages until the deadline; queue events; drop replies (nothing is pending between commands).
 * Stops early, returning 1, once an event matching name/match is queued (only if name or match given
 * or stop_on_any). 0 at the deadline, negative if the connection broke. */
static int read_until(struct qmp *q, double deadline, const char *what, const char *name, const json_t *match,
                      bool want_event, vs_err *e)
{
    for (;;) {
        json_t *msg = NULL;
        int r = qmp__read_message(q, deadline, what, &msg, e);
        if (r <= 0)
            return r;
        if (!qmp__maybe_queue_event(q, msg)) {
            if (q->debug)
                fprintf(stderr, "qmp %s: dropping a reply that answers no pending command\n", q->name);
            json_decref(msg);
            continue;
        }
        if (want_event && matches(q->ev_tail->msg, name, match))
            return 1;
    }
}

int qmp_wait_event(struct qmp *q, const char *name, const json_t *match, double timeout_s, json_t **event,
                   vs_err *e)
{
    *event = NULL;
    if (match && !json_is_object(match))
        return vs_err_set(e, EINVAL, "QMP socket '%s': event match must be a JSON object", q->name);
    json_t *ev = take(q, name, match);
    if (!ev) {
        char what[160];
        snprintf(what, sizeof what, "event '%s'", name ? name : "(any)");
        int r = read_until(q, qmp__deadline(q, timeout_s), what, name, match, true, e);
        if (r < 0)
            return r;
        if (r == 0)
            return vs_err_set(e, ETIMEDOUT, "QMP socket '%s': no %s within %.1f s", q->name, what,
                              timeout_s < 0 ? q->timeout_s : timeout_s);
        ev = take(q, name, match);
    }
    *event = ev;
    return 0;
}

int qmp_pump(struct qmp *q, vs_err *e)
{
    int r = read_until(q, vs_now_s(), "events", NULL, NULL, false, e);
    return r < 0 ? r : 0;
}
