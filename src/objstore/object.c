/* objstore: a readable object — HEAD at open, then range GETs conditional on the ETag seen there. */
#include "objstore/objstore_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

struct os_object {
    struct os_client *c;
    char *loc, *url;
    uint64_t size;
    char etag[160];            /* "" when the server gives none (then only the size is checked) */
    atomic_bool changed;
    _Atomic double last_check;   /* monotonic seconds of the last HEAD of os_object_check */
};

#define CHECK_INTERVAL_S 1.0

/* once: a single attempt, whose transient failure is returned as 1; else retried until the deadline. */
static int head(struct os_object *o, bool once, uint64_t *size, char *etag, size_t cap, vs_err *e)
{
    struct os_req q = { .method = "HEAD", .url = o->url };
    int r = once ? os__req_once(o->c, &q, o->loc, e) : os__req_run(o->c, &q, o->loc, e);
    if (r != 0)
        return r;
    if (!q.have_length)
        return vs_err_set(e, EIO, "%s: the store did not say the object's size (no Content-Length)", o->loc);
    *size = q.content_length;
    snprintf(etag, cap, "%s", q.etag);
    return 0;
}

int os_object_open(const char *loc, struct os_object **out, vs_err *e)
{
    struct os_object *o = vs_xcalloc(1, sizeof *o);
    o->loc = vs_xstrdup(loc);
    atomic_init(&o->last_check, vs_now_s());
    int r = os_client_new(loc, &o->c, e);
    if (r >= 0 && !(o->url = os__url(o->c, loc, "", e)))
        r = e ? e->code : -EINVAL;
    if (r >= 0)
        r = head(o, false, &o->size, o->etag, sizeof o->etag, e);
    if (r < 0) {
        os_object_close(o);
        return r;
    }
    *out = o;
    return 0;
}

uint64_t os_object_size(const struct os_object *o) { return o->size; }
const char *os_object_etag(const struct os_object *o) { return o->etag; }

int os_object_pread(struct os_object *o, void *buf, size_t len, uint64_t off, vs_err *e)
{
    if (off > o->size || len > o->size - off)
        return vs_err_set(e, EIO, "%s: truncated: wanted %zu bytes at offset %" PRIu64 " of %" PRIu64, o->loc, len,
                          off, o->size);
    if (!len)
        return 0;
    struct os_req q = { .method = "GET", .url = o->url, .out = buf, .out_cap = len,
                        .if_match = o->etag[0] ? o->etag : NULL };
    snprintf(q.range, sizeof q.range, "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    int r = os__req_run(o->c, &q, o->loc, e);
    if (r == -ESTALE) {
        atomic_store(&o->changed, true);
        return vs_err_set(e, ESTALE, "%s: the object was replaced after it was opened (its ETag is no longer %s): "
                          "refusing to read from it", o->loc, o->etag);
    }
    if (r < 0)
        return r;
    bool whole = q.status == 200 && off == 0 && len == o->size;   /* a server may answer a full range with 200 */
    if ((q.status != 206 && !whole) || q.out_len != len || (q.have_total && q.range_total != o->size))
        return vs_err_set(e, EIO, "%s: asked for %zu bytes at offset %" PRIu64 ", the store answered HTTP %ld with "
                          "%zu bytes of a %" PRIu64 "-byte object", o->loc, len, off, q.status, q.out_len,
                          q.have_total ? q.range_total : o->size);
    return 0;
}

/* Called before every page read of a lazily resumed VM: a HEAD at most once a second. Between them nothing is
 * lost, since every GET is conditional on the ETag (a replaced object answers 412 and latches `changed`). A HEAD
 * that gets no answer (store away, 5xx) proves nothing: the read goes on, served from the block cache (scoped by
 * the ETag seen at open) or failing on its own GET, and the next check asks again. Retrying it until the deadline
 * would fail reads the cache holds, and a failed page read stops the VM. */
int os_object_check(struct os_object *o, vs_err *e)
{
    double now = vs_now_s(), last = atomic_load(&o->last_check);
    if (!atomic_load(&o->changed) && now - last < CHECK_INTERVAL_S)
        return 0;
    if (!atomic_load(&o->changed) && !atomic_compare_exchange_strong(&o->last_check, &last, now))
        return 0;   /* another thread checks now */
    if (!atomic_load(&o->changed)) {
        uint64_t size;
        char etag[160];
        int r = head(o, true, &size, etag, sizeof etag, e);
        if (r > 0) {
            if (e)
                *e = (vs_err){ 0 };
            return 0;
        }
        if (r == -ENOENT)
            atomic_store(&o->changed, true);
        else if (r < 0)
            return r;
        else if (size == o->size && !strcmp(etag, o->etag))
            return 0;
        atomic_store(&o->changed, true);
    }
    return vs_err_set(e, ESTALE, "%s: the object was replaced or removed after it was opened: refusing to read "
                      "from it", o->loc);
}

void os_object_close(struct os_object *o)
{
    if (!o)
        return;
    os_client_free(o->c);
    free(o->loc);
    free(o->url);
    free(o);
}
