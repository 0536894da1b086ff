/* objstore: locations — s3://BUCKET/KEY and http(s):// URLs, and relative hints between them. */
#include "objstore/objstore.h"

#include <errno.h>
#include <string.h>

enum os_scheme os_scheme_of(const char *loc)
{
    if (!strncmp(loc, "s3://", 5))
        return OS_S3;
    if (!strncmp(loc, "https://", 8) || !strncmp(loc, "http://", 7))
        return OS_HTTP;
    return OS_LOCAL;
}

static bool bucket_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' || b[i] == '-'))
            return false;
    return true;
}

int os_s3_split(const char *loc, char **bucket, char **key, vs_err *e)
{
    if (os_scheme_of(loc) != OS_S3)
        return vs_err_set(e, EINVAL, "'%s' is not an s3://BUCKET/KEY location", loc);
    const char *b = loc + 5, *slash = strchr(b, '/');
    if (!slash || !slash[1])
        return vs_err_set(e, EINVAL, "'%s': expected s3://BUCKET/KEY with a non-empty key", loc);
    if (!bucket_ok(b, (size_t)(slash - b)))
        return vs_err_set(e, EINVAL, "'%s': the bucket name must be 3 to 63 of a-z 0-9 . -", loc);
    if (strlen(slash + 1) > 1024 || !vs_text_ok(slash + 1, strlen(slash + 1)))
        return vs_err_set(e, EINVAL, "'%s': the key must be at most 1024 bytes of printable UTF-8", loc);
    *bucket = strndup(b, (size_t)(slash - b));
    *key = vs_xstrdup(slash + 1);
    if (!*bucket)
        abort();
    return 0;
}

/* Length of the part of loc that a hint never changes: "s3://bucket/" or "https://host/". */
static size_t root_len(const char *loc)
{
    const char *p = strstr(loc, "://");
    if (!p)
        return 0;
    const char *slash = strchr(p + 3, '/');
    size_t host = slash ? (size_t)(slash - (p + 3)) : 0;
    if (!slash || !host || strcspn(p + 3, "?#") < host)   /* no path, or a query before it */
        return 0;
    return (size_t)(slash - loc) + 1;
}

/* Where loc's path ends: before an http(s) URL's query or fragment (an S3 key may hold '?' and '#'). */
static size_t path_end(const char *loc)
{
    const char *q = os_scheme_of(loc) == OS_HTTP ? strpbrk(loc, "?#") : NULL;
    return q ? (size_t)(q - loc) : strlen(loc);
}

char *os_resolve(const char *loc, const char *rel)
{
    size_t root = root_len(loc);
    if (!root || !rel[0] || rel[0] == '/' || (os_scheme_of(loc) == OS_HTTP && strpbrk(rel, "?#")))
        return NULL;
    size_t end = path_end(loc);
    VS_AUTOFREE char *buf = vs_xmalloc(end + strlen(rel) + 2);
    memcpy(buf, loc, end);
    buf[end] = 0;
    char *last = strrchr(buf + root, '/');
    size_t n = last ? (size_t)(last - buf) + 1 : root;   /* keep the "directory", with its slash */
    buf[n] = 0;
    for (const char *p = rel; *p;) {
        size_t c = strcspn(p, "/");
        if (c == 1 && p[0] == '.') {
            /* nothing */
        } else if (c == 2 && p[0] == '.' && p[1] == '.') {
            if (n == root)
                return NULL;
            n--;   /* drop the slash, then back to the previous one */
            while (n > root && buf[n - 1] != '/')
                n--;
            buf[n] = 0;
        } else if (c) {
            memcpy(buf + n, p, c);
            n += c;
            buf[n] = 0;
            if (p[c] == '/')
                buf[n++] = '/', buf[n] = 0;
        }
        p += c + (p[c] == '/');
    }
    if (n == root || buf[n - 1] == '/')
        return NULL;
    return VS_STEAL(buf);
}

char *os_relative(const char *loc, const char *target)
{
    size_t root = root_len(loc);
    if (!root || root != root_len(target) || strncmp(loc, target, root))
        return NULL;
    VS_AUTOFREE char *pa = strndup(loc, path_end(loc)), *pb = strndup(target, path_end(target));
    if (!pa || !pb)
        abort();
    const char *a = pa + root, *b = pb + root;
    size_t common = 0;   /* length of the common directory prefix (through its slash) */
    for (size_t i = 0; a[i] && a[i] == b[i]; i++)
        if (a[i] == '/')
            common = i + 1;
    size_t ups = 0;
    for (const char *p = a + common; *p; p++)
        ups += *p == '/';
    char *out = vs_xmalloc(3 * ups + strlen(b + common) + 1);
    out[0] = 0;
    for (size_t k = 0; k < ups; k++)
        strcat(out, "../");
    strcat(out, b + common);
    return out;
}
