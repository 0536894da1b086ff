/* vm: the NICs a recorded command line creates, and fresh MAC addresses for each clone of a snapshot. */
#include "vm/vm.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

/* NIC device models (a recorded -device of another model is no NIC and keeps its properties). */
static const char nic_models[] =
    " virtio-net-pci virtio-net-device virtio-net-pci-transitional virtio-net-pci-non-transitional e1000 e1000e "
    "e1000-82544gc e1000-82545em rtl8139 ne2k_pci ne2k_isa pcnet vmxnet3 igb i82550 i82551 i82557a i82557b "
    "i82557c i82558a i82558b i82559a i82559b i82559c i82559er i82562 i82801 usb-net ";

static bool is_nic_model(const char *m)
{
    if (!m || !m[0] || strchr(m, ' '))
        return false;
    VS_AUTOFREE char *w = vs_xasprintf(" %s ", m);
    return strstr(nic_models, w) != NULL;
}

bool vm_mac_parse(const char *s, uint8_t out[6])
{
    for (int i = 0; i < 6; i++) {
        const char *p = s + 3 * i;
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = p[k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
                return false;
            v = v << 4 | (unsigned)d;
        }
        if (p[2] != (i < 5 ? ':' : 0))
            return false;
        out[i] = (uint8_t)v;
    }
    return true;
}

void vm_mac_for_clone(const uint8_t id[16], unsigned index, uint8_t out[6])
{
    uint8_t in[20];
    memcpy(in, id, 16);
    vs_put_le32(in + 16, index);
    XXH128_hash_t h = XXH3_128bits(in, sizeof in);
    for (int i = 0; i < 6; i++)
        out[i] = (uint8_t)(h.low64 >> (8 * i));
    out[0] = (uint8_t)((out[0] & 0xfc) | 0x02);   /* unicast, locally administered */
}

/* The MAC key of option `name`'s value v when it creates a NIC, else NULL. */
static const char *mac_key(const char *name, const char *v)
{
    if (!strcmp(name, "nic"))
        return "mac";
    if (!strcmp(name, "net")) {
        VS_AUTOFREE char *t = vm_qopt_get_implied(v, "type");
        return t && !strcmp(t, "nic") ? "macaddr" : NULL;
    }
    if (!strcmp(name, "device")) {
        VS_AUTOFREE char *d = vm_opt_get(v, "driver", true);
        return is_nic_model(d) ? "mac" : NULL;
    }
    return NULL;
}

struct mac_field {
    const char *key;
    bool found;
    char *value;   /* NULL when found: not text (a JSON null, object, ...) */
};

static int find_mac(void *opaque, const struct vm_opt_kv *f)
{
    struct mac_field *q = opaque;
    if (!f->key || strcmp(f->key, q->key))
        return 0;
    q->found = true;
    q->value = f->value ? vs_xstrdup(f->value) : NULL;
    return 1;
}

int vm_nics_remac(char **args, size_t from, size_t n, const uint8_t id[16], vs_err *e)
{
    unsigned count = 0;
    for (size_t i = from; i < n; i++) {
        const char *name = vm_qopt_name(args[i]);
        if (!name || !vm_qopt_takes_arg(name) || i + 1 >= n)
            continue;
        const char *v = args[++i];
        uint8_t b[6];
        vm_mac_for_clone(id, count, b);
        char mac[18];
        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
        const char *key = mac_key(name, v);
        if (!key)
            continue;
        struct mac_field old = { key, false, NULL };
        vm_opt_fields(v, find_mac, &old);
        VS_AUTOFREE char *was = old.value;
        if (old.found && (!was || !vm_mac_parse(was, b)))
            return vs_err_set(e, EINVAL, "-%s %.200s: %s: expected six hex bytes like 52:54:00:12:34:56, got "
                              "'%.40s'", name, v, key, was ? was : "");
        char *nv = vm_opt_set(v, key, mac);
        if (!nv)
            continue;
        free(args[i]);
        args[i] = nv;
        count++;
    }
    return (int)count;
}
