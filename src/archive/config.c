/* archive: the config stream's keys that come with an incompatible feature bit (docs/FORMAT.md, "Feature bits").
 * The writer derives the bits from the config it is given, so every writer path (snap, pack --config, commit)
 * sets them; the reader checks that bits and config agree before anyone acts on the config. */
#include "archive/reader_priv.h"

#include <errno.h>
#include <jansson.h>

uint64_t arc__config_features(const void *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    uint64_t f = json_is_true(json_object_get(j, "vmgenid")) ? ARC_INCOMPAT_VMGENID : 0;
    json_decref(j);
    return f;
}

int arc_read_config(struct arc *a, char **out, size_t *len, vs_err *e)
{
    *out = NULL;
    if (len)
        *len = 0;
    int s = arc_find_stream(a, ARC_KIND_CONFIG, NULL);
    bool vmgenid_bit = a->info.incompat & ARC_INCOMPAT_VMGENID;
    if (s == ARC_STREAM_NONE) {
        if (vmgenid_bit)
            return vs_err_set(e, EIO, "%s: feature bit 'vmgenid' is set but the archive has no config stream",
                              a->src->name);
        return 0;
    }
    char *text = NULL;
    size_t n = 0;
    int r = arc_read_stream(a, (unsigned)s, ARC_MAX_CONFIG, &text, &n, e);
    if (r < 0)
        return r;
    if (vmgenid_bit && !(arc__config_features(text, n) & ARC_INCOMPAT_VMGENID)) {
        free(text);
        return vs_err_set(e, EIO, "%s: feature bit 'vmgenid' is set but the config does not say \"vmgenid\": true",
                          a->src->name);
    }
    *out = text;
    if (len)
        *len = n;
    return 1;
}
