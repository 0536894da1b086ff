/* objstore: multipart uploads — parts in flight on curl's multi interface, completed last, aborted on failure. */
#include "objstore/objstore_priv.h"

#include <errno.h>
#include <string.h>

#define INFLIGHT 3   /* parts on the wire at once: with the part size, the upload's memory bound */

struct slot {
    bool busy;
    unsigned part, attempts;
    void *buf;
    size_t len;
    double t0;                 /* first attempt: retries stop at the client's deadline */
    struct os_req q;
};

struct os_upload {
    struct os_client *c;
    char *loc, *upload_id;
    CURLM *m;
    struct slot slots[INFLIGHT];
    char **etags;              /* per part number */
    unsigned maxpart;
    void *first;               /* part 1, when given: sent at finish (alone: as a single PUT) */
    size_t first_len;
    bool have_first, failed;
    vs_err err;
};

static int fail(struct os_upload *u, int r, vs_err *e)
{
    if (!u->failed) {
        u->failed = true;
        if (e)
            u->err = *e;
    }
    return r;
}

/* "?uploadId=ID", or for part > 0 "?partNumber=N&uploadId=ID" (sorted: RGW signs the query as written). */
static char *query_url(struct os_upload *u, unsigned part, vs_err *e)
{
    VS_AUTOFREE char *id = os__escape(u->upload_id ? u->upload_id : "", false);
    VS_AUTOFREE char *query = part ? vs_xasprintf("?partNumber=%u&uploadId=%s", part, id)
                                   : vs_xasprintf("?uploadId=%s", id);
    return os__url(u->c, u->loc, query, e);
}

int os_upload_begin(const char *loc, struct os_upload **out, vs_err *e)
{
    if (os_scheme_of(loc) != OS_S3)
        return vs_err_set(e, EROFS, "'%s': only s3:// locations can be written (http(s) URLs are read-only)", loc);
    struct os_upload *u = vs_xcalloc(1, sizeof *u);
    u->loc = vs_xstrdup(loc);
    int r = os_client_new(loc, &u->c, e);
    if (r < 0)
        goto fail;
    struct os_req q = { .method = "POST", .has_body = true };
    if (!(q.url = os__url(u->c, loc, "?uploads=", e))) {
        r = e ? e->code : -EINVAL;
        goto fail;
    }
    r = os__req_run(u->c, &q, loc, e);
    free(q.url);
    if (r < 0)
        goto fail;
    u->upload_id = os_xml_text(q.small, q.small_len, "UploadId");
    if (!u->upload_id || !*u->upload_id || !vs_text_ok(u->upload_id, strlen(u->upload_id))) {
        r = vs_err_set(e, EIO, "%s: the store's answer to starting an upload has no UploadId", loc);
        goto fail;
    }
    if (!(u->m = curl_multi_init()))
        abort();
    *out = u;
    return 0;
fail:
    os_upload_abort(u);
    return r;
}

static void slot_free(struct slot *s)
{
    free(s->buf);
    free(s->q.url);
    os__req_clear(&s->q);
    *s = (struct slot){ 0 };
}

static void slot_start(struct os_upload *u, struct slot *s)
{
    CURL *h = os__handle_get(u->c);
    os__req_setup(u->c, &s->q, h);
    curl_easy_setopt(h, CURLOPT_PRIVATE, s);
    curl_multi_add_handle(u->m, h);
}

/* Move transfers along; wait (at most a second) for one to end when block is set. Collects finished parts:
 * their ETags kept, a transient failure retried until the deadline, any other failure sticky. */
static int pump(struct os_upload *u, bool block, vs_err *e)
{
    int running = 0;
    if (block)
        curl_multi_poll(u->m, NULL, 0, 1000, NULL);
    curl_multi_perform(u->m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *h = msg->easy_handle;
        CURLcode cc = msg->data.result;
        struct slot *s = NULL;
        curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&s);
        curl_multi_remove_handle(u->m, h);
        int r = os__req_result(u->c, &s->q, cc, u->loc, e);
        os__handle_put(u->c, h);
        s->q.h = NULL;
        if (r == 0 && !s->q.etag[0])
            r = vs_err_set(e, EIO, "%s: the store accepted part %u without an ETag", u->loc, s->part);
        if (r == 0) {
            u->etags[s->part] = vs_xstrdup(s->q.etag);
            slot_free(s);
        } else if (r > 0 && vs_now_s() - s->t0 < u->c->deadline_s && !u->failed) {
            os__backoff(s->attempts++);
            slot_start(u, s);
        } else {
            if (r > 0)
                r = os__gave_up(u->c, e, s->t0, s->attempts + 1);
            slot_free(s);
            fail(u, r, e);
        }
    }
    if (u->failed) {
        if (e)
            *e = u->err;
        return u->err.code ? u->err.code : -EIO;
    }
    return 0;
}

static unsigned busy(const struct os_upload *u)
{
    unsigned n = 0;
    for (unsigned i = 0; i < INFLIGHT; i++)
        n += u->slots[i].busy;
    return n;
}

int os_upload_part(struct os_upload *u, unsigned part, void *buf, size_t len, vs_err *e)
{
    int r;
    if (u->failed) {
        free(buf);
        if (e)
            *e = u->err;
        return u->err.code ? u->err.code : -EIO;
    }
    if (part < 1 || part > OS_MAX_PARTS || (part <= u->maxpart && u->etags[part]) || (part == 1 && u->have_first)) {
        free(buf);
        return vs_err_set(e, EINVAL, "%s: part %u given twice or out of range", u->loc, part);
    }
    if (part > u->maxpart) {
        size_t from = u->etags ? u->maxpart + 1 : 0;
        u->etags = vs_xrealloc(u->etags, (part + 1) * sizeof *u->etags);
        memset(u->etags + from, 0, (part + 1 - from) * sizeof *u->etags);
        u->maxpart = part;
    }
    if (part == 1) {   /* kept: it goes last, or alone */
        u->first = buf;
        u->first_len = len;
        u->have_first = true;
        return 0;
    }
    while (busy(u) == INFLIGHT)
        if ((r = pump(u, true, e)) < 0) {
            free(buf);
            return r;
        }
    struct slot *s = u->slots;
    while (s->busy)
        s++;
    *s = (struct slot){ .busy = true, .part = part, .buf = buf, .len = len, .t0 = vs_now_s() };
    s->q = (struct os_req){ .method = "PUT", .has_body = true, .body = buf, .body_len = len };
    if (!(s->q.url = query_url(u, part, e))) {
        slot_free(s);
        return fail(u, e ? e->code : -EINVAL, e);
    }
    slot_start(u, s);
    return pump(u, false, e);
}

static int put_whole(struct os_upload *u, vs_err *e)
{
    struct os_req q = { .method = "PUT", .has_body = true, .body = u->first, .body_len = u->first_len };
    if (!(q.url = os__url(u->c, u->loc, "", e)))
        return e ? e->code : -EINVAL;
    int r = os__req_run(u->c, &q, u->loc, e);
    free(q.url);
    return r;
}

static int complete(struct os_upload *u, vs_err *e)
{
    size_t cap = 128 + (size_t)u->maxpart * 256, n = 0;
    VS_AUTOFREE char *x = vs_xmalloc(cap);
    n += (size_t)snprintf(x + n, cap - n, "<CompleteMultipartUpload>");
    for (unsigned p = 1; p <= u->maxpart; p++) {
        if (!u->etags[p])
            return vs_err_set(e, EIO, "%s: part %u of %u was never uploaded", u->loc, p, u->maxpart);
        n += (size_t)snprintf(x + n, cap - n, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", p,
                              u->etags[p]);
    }
    n += (size_t)snprintf(x + n, cap - n, "</CompleteMultipartUpload>");
    struct os_req q = { .method = "POST", .has_body = true, .body = x, .body_len = n };
    if (!(q.url = query_url(u, 0, e)))
        return e ? e->code : -EINVAL;
    int r = os__req_run(u->c, &q, u->loc, e);
    free(q.url);
    if (r < 0)
        return r;
    /* S3 may answer 200 and still fail: the error is then in the body */
    VS_AUTOFREE char *code = os_xml_text(q.small, q.small_len, "Code");
    if (code || !strstr(q.small, "CompleteMultipartUploadResult")) {
        VS_AUTOFREE char *msg = os_xml_text(q.small, q.small_len, "Message");
        VS_AUTOFREE char *ce = vs_text_escape(code ? code : "no CompleteMultipartUploadResult");
        VS_AUTOFREE char *me = msg ? vs_text_escape(msg) : NULL;
        return vs_err_set(e, EIO, "%s: the store did not complete the upload: %s%s%s", u->loc, ce, me ? ": " : "",
                          me ? me : "");
    }
    return 0;
}

int os_upload_finish(struct os_upload *u, vs_err *e)
{
    int r = 0;
    while (r == 0 && busy(u))
        r = pump(u, true, e);
    if (r == 0 && !u->have_first)
        r = vs_err_set(e, EINVAL, "%s: nothing to upload (no part 1)", u->loc);
    if (r == 0 && u->maxpart == 1) {
        r = put_whole(u, e);   /* the multipart upload is aborted below: a single PUT is simpler for the store */
    } else if (r == 0) {
        if (u->first_len < OS_MIN_PART)
            r = vs_err_set(e, EINVAL, "%s: part 1 is %zu bytes, S3 wants at least %u", u->loc, u->first_len,
                           OS_MIN_PART);
        struct os_req q = { .method = "PUT", .has_body = true, .body = u->first, .body_len = u->first_len };
        if (r == 0 && !(q.url = query_url(u, 1, e)))
            r = e ? e->code : -EINVAL;
        if (r == 0)
            r = os__req_run(u->c, &q, u->loc, e);
        free(q.url);
        if (r == 0 && !q.etag[0])
            r = vs_err_set(e, EIO, "%s: the store accepted part 1 without an ETag", u->loc);
        if (r == 0)
            u->etags[1] = vs_xstrdup(q.etag);
        if (r == 0 && (r = complete(u, e)) == 0) {
            free(u->upload_id);   /* completed: nothing to abort */
            u->upload_id = NULL;
        }
    }
    os_upload_abort(u);
    return r;
}

void os_upload_abort(struct os_upload *u)
{
    if (!u)
        return;
    for (unsigned i = 0; i < INFLIGHT; i++)
        if (u->slots[i].busy) {
            curl_multi_remove_handle(u->m, u->slots[i].q.h);
            os__handle_put(u->c, u->slots[i].q.h);
            slot_free(&u->slots[i]);
        }
    if (u->upload_id) {
        /* best effort, bounded by the deadline: a store that is gone keeps the parts until its lifecycle rule
         * removes them, but the object never appears */
        vs_err ignored;
        struct os_req q = { .method = "DELETE" };
        if ((q.url = query_url(u, 0, &ignored)))
            os__req_run(u->c, &q, u->loc, &ignored);
        free(q.url);
    }
    if (u->m)
        curl_multi_cleanup(u->m);
    for (unsigned p = 0; p <= u->maxpart && u->etags; p++)
        free(u->etags[p]);
    free(u->etags);
    free(u->first);
    free(u->upload_id);
    free(u->loc);
    os_client_free(u->c);
    free(u);
}

int os_delete(const char *loc, vs_err *e)
{
    struct os_client *c;
    int r = os_client_new(loc, &c, e);
    if (r < 0)
        return r;
    struct os_req q = { .method = "DELETE" };
    if (!(q.url = os__url(c, loc, "", e)))
        r = e ? e->code : -EINVAL;
    if (r == 0)
        r = os__req_run(c, &q, loc, e);
    free(q.url);
    os_client_free(c);
    return r == -ENOENT ? 0 : r;
}
