/* libFuzzer target: what objstore parses from outside — the AWS credentials file, the fields read from S3's XML
 * replies (UploadId, ETag, error Code/Message) and locations with their relative parent hints. The first byte
 * picks the parser; the rest is its input. */
#include "objstore/objstore.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void locations(const char *s, size_t len)
{
    /* "LOC\nHINT": split, resolve, split as s3, relative path back */
    const char *nl = memchr(s, '\n', len);
    VS_AUTOFREE char *loc = strndup(s, nl ? (size_t)(nl - s) : len);
    VS_AUTOFREE char *hint = nl ? strndup(nl + 1, len - (size_t)(nl + 1 - s)) : vs_xstrdup("");
    if (!loc || !hint)
        return;
    char *b = NULL, *k = NULL;
    vs_err e;
    if (os_s3_split(loc, &b, &k, &e) == 0) {
        free(b);
        free(k);
    }
    VS_AUTOFREE char *r = os_resolve(loc, hint);
    if (r) {
        VS_AUTOFREE char *back = os_relative(loc, r);
        if (back) {   /* what os_relative says leads back to the same place */
            VS_AUTOFREE char *again = os_resolve(loc, back);
            if (!again || strcmp(again, r))
                __builtin_trap();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    vs_err e;
    switch (data[0] % 3) {
    case 0: {
        struct os_creds c;
        if (os_parse_credentials(s, len, "default", "fuzz", &c, &e) == 0)
            os_creds_free(&c);
        if (os_parse_credentials(s, len, "p1", "fuzz", &c, &e) == 0)
            os_creds_free(&c);
        break;
    }
    case 1: {
        static const char *tags[] = { "UploadId", "ETag", "Code", "Message" };
        for (size_t i = 0; i < 4; i++)
            free(os_xml_text(s, len, tags[i]));
        break;
    }
    default:
        locations(s, len);
    }
    return 0;
}
