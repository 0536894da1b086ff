/* qmp: commands — execute with an id and match the reply, error replies, fd passing, feature
 * detection and run-state helpers. */
#include "qmp/qmp-priv.h"

#include <errno.h>
#include <string.h>

static void clear_error(struct qmp *q)
{
    free(q->err_class);
    free(q->err_desc);
    q->err_class = q->err_desc = NULL;
}

const char *qmp_error_class(const struct qmp *q) { return q->err_class; }
const char *qmp_error_desc(const struct qmp *q) { return q->err_desc; }

/* Wait for the reply whose id equals want (any reply-like message if want is NULL); events met on the
 * way are queued, replies to other ids (late answers to commands that timed out) dropped. */
static int wait_reply(struct qmp *q, const json_t *want, double deadline, const char *what, json_t **reply,
                      vs_err *e)
{
    for (;;) {
        json_t *msg = NULL;
        int r = qmp__read_message(q, deadline, what, &msg, e);
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
        if (qmp__maybe_queue_event(q, msg))
            continue;
        if (!want || json_equal(json_object_get(msg, "id"), want)) {
            *reply = msg;
            return 0;
        }
        if (q->debug)
            fprintf(stderr, "qmp %s: dropping a reply that answers no pending command\n", q->name);
        json_decref(msg);
    }
}

static int execute(struct qmp *q, const char *cmd, json_t *args, int fd, double timeout_s, json_t **ret, vs_err *e)
{
    if (ret)
        *ret = NULL;
    clear_error(q);
    int r = qmp__check_alive(q, e);
    if (r < 0)
        return r;
    if (args && !json_is_object(args))
        return vs_err_set(e, EINVAL, "QMP '%s': arguments must be a JSON object", cmd);

    json_t *id = json_integer(q->next_id++);
    json_t *msg = json_pack("{s:s}", "execute", cmd);
    if (!msg)
        VS_BUG("json_pack");
    if (!q->lv)   /* through libvirt the call's result is the reply: libvirt adds its own id */
        json_object_set(msg, "id", id);
    if (args)
        json_object_set(msg, "arguments", args);
    VS_AUTOFREE char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text)
        VS_BUG("json_dumps");
    size_t len = strlen(text);
    text = vs_xrealloc(text, len + 2);
    memcpy(text + len, "\n", 2);

    double deadline = qmp__deadline(q, timeout_s);
    char what[160], quoted[150];
    snprintf(quoted, sizeof quoted, "'%s'", cmd);
    snprintf(what, sizeof what, "reply to %s", quoted);
    json_t *reply = NULL;
    r = q->lv ? qmp__lv_exchange(q, cmd, text, fd, &reply, e) : qmp__send(q, text, len + 1, fd, deadline, quoted, e);
    if (r == 0 && !q->lv) {
        r = wait_reply(q, id, deadline, what, &reply, e);
        if (r == -ETIMEDOUT)
            vs_err_set(e, ETIMEDOUT, "QMP socket '%s': no %s within %.1f s", q->name, what,
                       timeout_s > 0 ? timeout_s : q->timeout_s);
    }
    json_decref(id);
    if (r < 0)
        return r;

    json_t *err = json_object_get(reply, "error");
    json_t *val = json_object_get(reply, "return");
    if (val) {
        if (ret)
            *ret = json_incref(val);
    } else if (json_is_object(err)) {
        const char *cls = json_string_value(json_object_get(err, "class"));
        const char *desc = json_string_value(json_object_get(err, "desc"));
        q->err_class = vs_xstrdup(cls ? cls : "GenericError");
        q->err_desc = vs_xstrdup(desc ? desc : "(no description)");
        r = vs_err_set(e, EREMOTEIO, "QMP '%s' failed: %s: %s", cmd, q->err_class, q->err_desc);
    } else {
        r = vs_err_set(e, EPROTO, "QMP socket '%s': reply to '%s' has neither 'return' nor 'error'", q->name, cmd);
    }
    json_decref(reply);
    return r;
}

int qmp_execute(struct qmp *q, const char *cmd, json_t *args, json_t **ret, vs_err *e)
{
    return execute(q, cmd, args, -1, -1, ret, e);
}

int qmp_execute_timeout(struct qmp *q, const char *cmd, json_t *args, double timeout_s, json_t **ret, vs_err *e)
{
    return execute(q, cmd, args, -1, timeout_s > 0 ? timeout_s : -1, ret, e);
}

int qmp_execute_with_fd(struct qmp *q, const char *cmd, json_t *args, int fd, json_t **ret, vs_err *e)
{
    if (fd < 0)
        return vs_err_set(e, EBADF, "QMP '%s': no file descriptor to pass", cmd);
    return execute(q, cmd, args, fd, -1, ret, e);
}

/* ---- file descriptors ---- */

int qmp_getfd(struct qmp *q, const char *name, int fd, vs_err *e)
{
    json_t *args = json_pack("{s:s}", "fdname", name);
    int r = qmp_execute_with_fd(q, "getfd", args, fd, NULL, e);
    json_decref(args);
    return r;
}

int qmp_closefd(struct qmp *q, const char *name, vs_err *e)
{
    json_t *args = json_pack("{s:s}", "fdname", name);
    int r = qmp_execute(q, "closefd", args, NULL, e);
    json_decref(args);
    return r;
}

int qmp_add_fd(struct qmp *q, int fd, int64_t fdset_id, const char *opaque, int64_t *fdset_out, int64_t *fd_out,
               vs_err *e)
{
    json_t *args = json_object();
    if (fdset_id >= 0)
        json_object_set_new(args, "fdset-id", json_integer(fdset_id));
    if (opaque)
        json_object_set_new(args, "opaque", json_string(opaque));
    json_t *ret = NULL;
    int r = qmp_execute_with_fd(q, "add-fd", args, fd, &ret, e);
    json_decref(args);
    if (r < 0)
        return r;
    json_t *set = json_object_get(ret, "fdset-id"), *qfd = json_object_get(ret, "fd");
    if (!json_is_integer(set) || !json_is_integer(qfd)) {
        json_decref(ret);
        return vs_err_set(e, EPROTO, "QMP socket '%s': add-fd reply lacks 'fdset-id' or 'fd'", q->name);
    }
    if (fdset_out)
        *fdset_out = json_integer_value(set);
    if (fd_out)
        *fd_out = json_integer_value(qfd);
    json_decref(ret);
    return 0;
}

/* ---- feature detection ---- */

/* Run a query returning an array of objects and collect member 'key' of each into a set. A QEMU
 * without the command at all yields an empty set. */
static int load_set(struct qmp *q, const char *cmd, const char *key, json_t **set, vs_err *e)
{
    if (*set)
        return 0;
    json_t *ret = NULL;
    int r = qmp_execute(q, cmd, NULL, &ret, e);
    if (r == -EREMOTEIO && !strcmp(q->err_class, "CommandNotFound")) {
        *set = json_object();
        return 0;
    }
    if (r < 0)
        return r;
    if (!json_is_array(ret)) {
        json_decref(ret);
        return vs_err_set(e, EPROTO, "QMP socket '%s': '%s' did not return an array", q->name, cmd);
    }
    *set = json_object();
    size_t i;
    json_t *item;
    json_array_foreach(ret, i, item) {
        const char *name = json_string_value(json_object_get(item, key));
        if (name)
            json_object_set_new(*set, name, json_true());
    }
    json_decref(ret);
    return 0;
}

int qmp_has_command(struct qmp *q, const char *name, vs_err *e)
{
    int r = load_set(q, "query-commands", "name", &q->commands, e);
    return r < 0 ? r : json_object_get(q->commands, name) != NULL;
}

int qmp_has_migrate_capability(struct qmp *q, const char *name, vs_err *e)
{
    int r = load_set(q, "query-migrate-capabilities", "capability", &q->migrate_caps, e);
    return r < 0 ? r : json_object_get(q->migrate_caps, name) != NULL;
}

/* ---- run state ---- */

int qmp_query_status(struct qmp *q, bool *running, char *status, size_t len, vs_err *e)
{
    json_t *ret = NULL;
    int r = qmp_execute(q, "query-status", NULL, &ret, e);
    if (r < 0)
        return r;
    json_t *run = json_object_get(ret, "running");
    const char *st = json_string_value(json_object_get(ret, "status"));
    if (!json_is_boolean(run) || !st) {
        json_decref(ret);
        return vs_err_set(e, EPROTO, "QMP socket '%s': query-status reply lacks 'running' or 'status'", q->name);
    }
    if (running)
        *running = json_is_true(run);
    if (status && len)
        snprintf(status, len, "%s", st);
    json_decref(ret);
    return 0;
}

int qmp_stop(struct qmp *q, vs_err *e) { return qmp_execute(q, "stop", NULL, NULL, e); }
int qmp_cont(struct qmp *q, vs_err *e) { return qmp_execute(q, "cont", NULL, NULL, e); }

int qmp_resume(struct qmp *q, bool *sent_cont, vs_err *e)
{
    bool running = false;
    char status[32];
    if (sent_cont)
        *sent_cont = false;
    int r = qmp_query_status(q, &running, status, sizeof status, e);
    if (r < 0 || running)
        return r;
    if ((r = qmp_cont(q, e)) < 0)
        return vs_err_prefix(e, "resuming the VM on '%s' (it was '%s')", q->name, status);
    if (sent_cont)
        *sent_cont = true;
    char after[32];
    if ((r = qmp_query_status(q, &running, after, sizeof after, e)) < 0)
        return r;
    if (!running)
        return vs_err_set(e, EAGAIN, "QMP socket '%s': the VM is '%s' after cont (it was '%s')", q->name, after,
                          status);
    return 0;
}

const char *qmp_resumed_by_name(enum qmp_resumed_by r)
{
    switch (r) {
    case QMP_RESUMED_QEMU: return "qemu";
    case QMP_RESUMED_VMSNAP: return "vmsnap";
    case QMP_LEFT_PAUSED: return "left-paused-as-found";
    case QMP_RESUMED_NOT_YET: break;
    }
    return "not-resumed";
}

/* ---- raw access for tests ---- */

int qmp_send_raw(struct qmp *q, const void *buf, size_t len, vs_err *e)
{
    return qmp__send(q, buf, len, -1, qmp__deadline(q, -1), "raw bytes", e);
}

int qmp_recv_reply(struct qmp *q, double timeout_s, json_t **msg, vs_err *e)
{
    int r = wait_reply(q, NULL, qmp__deadline(q, timeout_s), "a reply", msg, e);
    if (r == -ETIMEDOUT)
        vs_err_set(e, ETIMEDOUT, "QMP socket '%s': no reply within %.1f s", q->name, timeout_s < 0 ? q->timeout_s : timeout_s);
    return r;
}
