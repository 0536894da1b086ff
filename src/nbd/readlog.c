/* nbd: why reads of a served disk fail, told to the server's owner (a log) once per failure episode. A store
 * that went away fails every read for as long as it is gone, each after its retry deadline: one line when that
 * starts, then one a minute, never one per request. */
#include "nbd/internal.h"

#include <inttypes.h>
#include <stdio.h>

#define REPEAT_S 60.0

void read_log_init(struct read_log *l)
{
    pthread_mutex_init(&l->lock, NULL);
    atomic_init(&l->failing, false);
    l->failed = 0;
    l->logged_at = 0;
}

void read_log_destroy(struct read_log *l) { pthread_mutex_destroy(&l->lock); }

void read_log_outcome(struct nbd_server *srv, int r, const vs_err *e)
{
    const struct nbd_server_opts *o = server_opts(srv);
    struct read_log *l = server_read_log(srv);
    if (!o->log || (r >= 0 && !atomic_load(&l->failing)))
        return;
    char line[700];
    line[0] = 0;
    pthread_mutex_lock(&l->lock);
    if (r >= 0) {
        atomic_store(&l->failing, false);
        l->failed = 0;
    } else if (!atomic_load(&l->failing)) {
        atomic_store(&l->failing, true);
        l->failed = 1;
        l->logged_at = vs_now_s();
        snprintf(line, sizeof line, "disk read failed, the guest gets EIO (further failures: once a minute until a "
                 "read succeeds): %s", e && e->msg[0] ? e->msg : "(no reason given)");
    } else if (l->failed++, vs_now_s() - l->logged_at >= REPEAT_S) {
        l->logged_at = vs_now_s();
        snprintf(line, sizeof line, "disk reads still fail, %" PRIu64 " since the episode began: %s", l->failed,
                 e && e->msg[0] ? e->msg : "(no reason given)");
    }
    pthread_mutex_unlock(&l->lock);
    if (line[0])
        o->log(o->log_opaque, line);
}
