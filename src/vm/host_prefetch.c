/* vm: the boot host's `--prefetch all` — once the VM runs, a thread fetches the whole archive chain into the block
 * cache (pinned there while the VM lives), after which the VM's reads need no source. Its outcome is written to
 * prefetch.json in the run directory, where tests and users look for it (a detached host has no terminal). */
#include "vm/host.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

static void *prefetch_main(void *opaque)
{
    struct host *h = opaque;
    vs_err e = { 0 };
    uint64_t fetched = 0;
    double t0 = vs_now_s();
    int r = arc_prefetch_all(h->arc, &h->prefetch_stop, &fetched, &e);
    struct arc_cache_stats cs;
    arc_cache_stats(h->arc, &cs);
    json_t *j = r < 0 ? json_pack("{s:s,s:s}", "state", "failed", "error", e.msg)
                      : json_pack("{s:s,s:I,s:f,s:b}", "state", "done", "fetched-bytes", (json_int_t)fetched,
                                  "seconds", vs_now_s() - t0, "cache", cs.enabled);
    VS_AUTOFREE char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    vm_rundir_write(h->st.dir, "prefetch.json", text, NULL);
    if (r != -ECANCELED) {
        VS_AUTOFREE char *m = r < 0 ? vs_xasprintf("prefetch: %s", e.msg)
                              : !cs.enabled ? vs_xstrdup("prefetch: the archive is read without a block cache (a local "
                                                         "file; VMSNAP_CACHE=on caches it): nothing to fetch")
                                            : vs_xasprintf("prefetch: the archive chain is in the block cache (%" PRIu64
                                                           " bytes fetched): the VM no longer needs its source",
                                                           fetched);
        host_log(h, m);
    }
    return NULL;
}

void host_prefetch_start(struct host *h)
{
    sigset_t all, old;   /* signals stay with the event loop's signalfd */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    h->prefetching = pthread_create(&h->prefetch, NULL, prefetch_main, h) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void host_prefetch_stop(struct host *h)
{
    if (!h->prefetching)
        return;
    atomic_store(&h->prefetch_stop, true);
    pthread_join(h->prefetch, NULL);
    h->prefetching = false;
}
