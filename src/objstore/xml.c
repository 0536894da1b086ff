/* objstore: the few fields vmsnap reads from S3's XML replies (UploadId, ETag, Code, Message). Not an XML parser:
 * S3 replies are flat and their elements of interest hold text only; anything else yields NULL. */
#include "objstore/objstore.h"

#include <string.h>

static const char *find(const char *h, size_t hl, const char *n, size_t nl)
{
    if (nl > hl)
        return NULL;
    for (size_t i = 0; i + nl <= hl; i++)
        if (!memcmp(h + i, n, nl))
            return h + i;
    return NULL;
}

static const struct { const char *ent; char c; } entities[] = {
    { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' },
};

char *os_xml_text(const char *body, size_t len, const char *tag)
{
    if (!body || !tag || strlen(tag) > 64)
        return NULL;
    char open[70], close[72];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *s = find(body, len, open, strlen(open));
    if (!s)
        return NULL;
    s += strlen(open);
    const char *t = find(s, len - (size_t)(s - body), close, strlen(close));
    if (!t)
        return NULL;
    char *out = vs_xmalloc((size_t)(t - s) + 1), *o = out;
    for (const char *p = s; p < t;) {
        if (*p == '<') {   /* nested elements: not a text element */
            free(out);
            return NULL;
        }
        if (*p != '&') {
            *o++ = *p++;
            continue;
        }
        size_t k = 0;
        for (; k < VS_ARRAY_SIZE(entities); k++) {
            size_t el = strlen(entities[k].ent);
            if ((size_t)(t - p) >= el && !memcmp(p, entities[k].ent, el)) {
                *o++ = entities[k].c;
                p += el;
                break;
            }
        }
        if (k == VS_ARRAY_SIZE(entities)) {   /* numeric or unknown entity: kept as written */
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}
