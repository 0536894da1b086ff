/* archive: the S3 upload sink. The writer appends and rewrites only its header at offset 0 when it finishes, so
 * the first part (8 MiB, above S3's 5 MiB minimum) stays in memory and goes last as part 1; the rest streams out
 * as parts 2.. with a few in flight (bounded memory, no local copy), and the object appears only when the
 * multipart upload completes. Abort (failure, SIGTERM) aborts the upload: nothing is left under the key. */
#include "archive/archive.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define FIRST_PART (8u << 20)
#define PART (8u << 20)

struct s3_sink {
    struct arc_sink s;
    struct os_upload *u;
    uint8_t *first;            /* bytes [0, first_len) */
    size_t first_len;
    uint8_t *cur;              /* bytes [cur_off, cur_off + cur_len), the part being filled */
    size_t cur_len, cur_cap;
    uint64_t cur_off;
    unsigned next_part;
};

/* Parts grow with their number so that OS_MAX_PARTS of them reach ~500 GB. */
static size_t part_size(unsigned n) { return (size_t)PART << VS_MIN(n / 2000, 4u); }

static int flush_cur(struct s3_sink *k, vs_err *e)
{
    if (!k->cur_len)
        return 0;
    int r = os_upload_part(k->u, k->next_part++, VS_STEAL(k->cur), k->cur_len, e);   /* takes the buffer */
    k->cur_off += k->cur_len;
    k->cur_len = 0;
    return r;
}

static int s3_pwrite(struct arc_sink *s, const void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct s3_sink *k = (struct s3_sink *)s;
    const uint8_t *p = buf;
    uint64_t end = k->cur_off + k->cur_len;
    if (off + len <= k->first_len) {   /* a rewrite inside the first part: the header */
        memcpy(k->first + off, p, len);
        return 0;
    }
    if (off != (k->first_len < FIRST_PART ? k->first_len : end))
        return vs_err_set(e, EINVAL, "%s: an upload can only append (write at %" PRIu64 ", end %" PRIu64 ")", s->name,
                          off, k->first_len < FIRST_PART ? (uint64_t)k->first_len : end);
    while (len) {
        if (k->first_len < FIRST_PART) {
            size_t n = VS_MIN(len, FIRST_PART - k->first_len);
            memcpy(k->first + k->first_len, p, n);
            k->first_len += n;
            k->cur_off = k->first_len;
            p += n, len -= n;
            continue;
        }
        if (!k->cur) {
            k->cur_cap = part_size(k->next_part);
            k->cur = vs_xmalloc(k->cur_cap);
        }
        size_t n = VS_MIN(len, k->cur_cap - k->cur_len);
        memcpy(k->cur + k->cur_len, p, n);
        k->cur_len += n;
        p += n, len -= n;
        int r;
        if (k->cur_len == k->cur_cap && (r = flush_cur(k, e)) < 0)
            return r;
    }
    return 0;
}

static int s3_pread(struct arc_sink *s, void *buf, size_t len, uint64_t off, vs_err *e)
{
    struct s3_sink *k = (struct s3_sink *)s;
    if (off + len <= k->first_len) {
        memcpy(buf, k->first + off, len);
        return 0;
    }
    if (k->cur && off >= k->cur_off && off + len <= k->cur_off + k->cur_len) {
        memcpy(buf, k->cur + (off - k->cur_off), len);
        return 0;
    }
    return vs_err_set(e, ENOTSUP, "%s: bytes at %" PRIu64 " were already uploaded and cannot be read back", s->name,
                      off);
}

static void s3_free(struct s3_sink *k)
{
    os_upload_abort(k->u);
    free(k->first);
    free(k->cur);
    free(k->s.name);
    free(k);
}

static void s3_abort(struct arc_sink *s) { s3_free((struct s3_sink *)s); }

/* Object stores have no file mode: who may read the object is the bucket's policy (docs/OBJECT-STORE.md). */
static int s3_finish(struct arc_sink *s, bool private_mode, vs_err *e)
{
    (void)private_mode;
    struct s3_sink *k = (struct s3_sink *)s;
    int r = flush_cur(k, e);
    if (r >= 0)
        r = os_upload_part(k->u, 1, VS_STEAL(k->first), k->first_len, e);
    if (r >= 0)
        r = os_upload_finish(VS_STEAL(k->u), e);
    s3_free(k);
    return r;
}

int arc_sink_open_s3(const char *loc, struct arc_sink **out, vs_err *e)
{
    struct s3_sink *k = vs_xcalloc(1, sizeof *k);
    int r = os_upload_begin(loc, &k->u, e);   /* early: wrong credentials fail before any work */
    if (r < 0) {
        free(k);
        return r;
    }
    k->first = vs_xmalloc(FIRST_PART);
    k->next_part = 2;
    k->s.pwrite = s3_pwrite;
    k->s.pread = s3_pread;
    k->s.finish = s3_finish;
    k->s.abort = s3_abort;
    k->s.name = vs_xstrdup(loc);
    *out = &k->s;
    return 0;
}
