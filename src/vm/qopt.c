/* vm: QEMU's option syntax, in one place. An option value is a comma-separated list of fields, each "key=value"
 * or a bare value (the option's implied key when it comes first); a comma inside a value is written ",,". Some
 * options also take JSON ("{...}", as libvirt writes them): the vm_opt_* functions read and rewrite either. */
#include "vm/vm.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

char *vm_qemu_escape(const char *s)
{
    size_t n = strlen(s), commas = 0;
    for (size_t i = 0; i < n; i++)
        commas += s[i] == ',';
    char *out = vs_xmalloc(n + commas + 1), *p = out;
    for (size_t i = 0; i < n; i++) {
        *p++ = s[i];
        if (s[i] == ',')
            *p++ = ',';
    }
    *p = 0;
    return out;
}

char *vm_qopt_unescape(const char *s, size_t start, size_t end)
{
    char *out = vs_xmalloc(end - start + 1), *p = out;
    for (size_t i = start; i < end; i++) {
        *p++ = s[i];
        if (s[i] == ',' && i + 1 < end && s[i + 1] == ',')
            i++;
    }
    *p = 0;
    return out;
}

bool vm_qopt_next(const char *s, size_t n, size_t *pos, struct vm_qopt_field *f)
{
    size_t i = *pos, start = i;
    if (i > n)
        return false;
    while (i < n && !(s[i] == ',' && s[i + 1] != ','))
        i += s[i] == ',' ? 2 : 1;
    if (i > n)
        i = n;
    *pos = i + 1;
    /* As QemuOpts reads it: the key ends at the first '=' or ','; a ',' first makes the whole field a value. */
    size_t klen = strcspn(s + start, "=,");
    const char *eq = start + klen < i && s[start + klen] == '=' ? s + start + klen : NULL;
    f->key = eq ? s + start : NULL;
    f->klen = eq ? (size_t)(eq - (s + start)) : 0;
    f->vstart = eq ? (size_t)(eq - s) + 1 : start;
    f->vend = i;
    return true;
}

bool vm_qopt_key_is(const struct vm_qopt_field *f, const char *key)
{
    return f->key && f->klen == strlen(key) && !strncmp(f->key, key, f->klen);
}

char *vm_qopt_get(const char *s, const char *key, struct vm_qopt_field *f)
{
    size_t n = strlen(s), pos = 0;
    struct vm_qopt_field x;
    while (vm_qopt_next(s, n, &pos, &x))
        if (vm_qopt_key_is(&x, key)) {
            if (f)
                *f = x;
            return vm_qopt_unescape(s, x.vstart, x.vend);
        }
    return NULL;
}

char *vm_qopt_get_implied(const char *s, const char *key)
{
    size_t n = strlen(s), pos = 0;
    struct vm_qopt_field x;
    if (vm_qopt_next(s, n, &pos, &x) && !x.key && x.vend > x.vstart)
        return vm_qopt_unescape(s, x.vstart, x.vend);
    return vm_qopt_get(s, key, NULL);
}

char *vm_qopt_filter(const char *s, const char *keys, bool keep)
{
    size_t n = strlen(s), pos = 0;
    struct vm_qopt_field f;
    char *out = vs_xstrdup("");
    while (vm_qopt_next(s, n, &pos, &f)) {
        char k[64] = "";
        if (f.key && f.klen + 3 <= sizeof k)
            snprintf(k, sizeof k, " %.*s ", (int)f.klen, f.key);
        bool listed = f.key && k[0] && strstr(keys, k);
        if (listed != keep && (f.key || keep))
            continue;
        size_t start = f.key ? (size_t)(f.key - s) : f.vstart;
        char *prev = out;
        out = vs_xasprintf("%s%s%.*s", prev, prev[0] ? "," : "", (int)(f.vend - start), s + start);
        free(prev);
    }
    return out;
}

const char *vm_qopt_name(const char *arg)
{
    if (arg[0] != '-' || arg[1] == 0)
        return NULL;
    return arg[1] == '-' ? arg + 2 : arg + 1;
}

/* QEMU options that take no argument (qemu-options.hx); every other "-opt" takes one. */
static const char *const no_arg_opts[] = {
    "daemonize", "nographic", "enable-kvm", "S", "s", "no-reboot", "no-shutdown", "nodefaults", "no-user-config",
    "snapshot", "no-hpet", "no-acpi", "full-screen", "no-fd-bootchk", "usb", "win2k-hack", "rtc-td-hack",
    "only-migratable", "enable-sync-profile", "preconfig", "no-frame", "alt-grab", "ctrl-grab", "no-quit", "sdl",
    "curses", "portrait", "version", "help", "h", "old-param", "semihosting", "enable-fips", "xen-attach",
    "no-kvm", "no-kvm-irqchip", "no-kvm-pit", "no-kvm-pit-reinjection", "no-kvm-pit-reinject",
};

bool vm_qopt_takes_arg(const char *name)
{
    for (size_t i = 0; i < VS_ARRAY_SIZE(no_arg_opts); i++)
        if (!strcmp(name, no_arg_opts[i]))
            return false;
    return true;
}

char *vm_qopt_set(const char *s, const char *key, const char *value)
{
    VS_AUTOFREE char *v = vm_qemu_escape(value);
    struct vm_qopt_field f;
    VS_AUTOFREE char *old = vm_qopt_get(s, key, &f);
    if (!old)
        return vs_xasprintf("%s%s%s=%s", s, s[0] ? "," : "", key, v);
    return vs_xasprintf("%.*s%s%s", (int)f.vstart, s, v, s + f.vend);
}

/* ---- either form: key=value or JSON ("{...}", libvirt's -device, -object, -blockdev, -netdev, -audiodev) ---- */

bool vm_opt_is_json(const char *v)
{
    return v[0] == '{';
}

/* QEMU's JSON parser refuses duplicate keys, and so does this one. */
static json_t *opt_json(const char *v)
{
    json_t *j = json_loads(v, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A JSON scalar as QEMU's key=value form spells it; NULL for null, a real number or a container. */
static char *json_text(json_t *x)
{
    if (json_is_string(x))
        return vs_xstrdup(json_string_value(x));
    if (json_is_integer(x))
        return vs_xasprintf("%lld", (long long)json_integer_value(x));
    if (json_is_boolean(x))
        return vs_xstrdup(json_is_true(x) ? "on" : "off");
    return NULL;
}

/* Each member of x under path (NULL at the top): objects and arrays flattened as QEMU's key=value form writes
 * them ("file.filename", "a.0"); an empty one is reported as its own key, without a value. */
static int json_fields(json_t *x, const char *path, vm_opt_fn fn, void *opaque)
{
    bool obj = json_is_object(x), arr = json_is_array(x);
    if (path && (!(obj || arr) || (obj ? json_object_size(x) : json_array_size(x)) == 0)) {
        VS_AUTOFREE char *val = json_text(x);
        struct vm_opt_kv f = { path, val, SIZE_MAX };
        return fn(opaque, &f);
    }
    const char *k;
    json_t *m;
    size_t i;
    int r = 0;
    if (obj) {
        json_object_foreach(x, k, m) {
            VS_AUTOFREE char *sub = path ? vs_xasprintf("%s.%s", path, k) : vs_xstrdup(k);
            if ((r = json_fields(m, sub, fn, opaque)) != 0)
                return r;
        }
    } else if (arr) {
        json_array_foreach(x, i, m) {
            VS_AUTOFREE char *sub = vs_xasprintf("%s.%zu", path, i);
            if ((r = json_fields(m, sub, fn, opaque)) != 0)
                return r;
        }
    }
    return r;
}

int vm_opt_fields(const char *v, vm_opt_fn fn, void *opaque)
{
    if (vm_opt_is_json(v)) {
        json_t *j = opt_json(v);
        if (!j)
            return -EINVAL;
        int r = json_fields(j, NULL, fn, opaque);
        json_decref(j);
        return r;
    }
    size_t n = strlen(v), pos = 0;
    struct vm_qopt_field f;
    while (vm_qopt_next(v, n, &pos, &f)) {
        VS_AUTOFREE char *key = f.key ? vs_xasprintf("%.*s", (int)f.klen, f.key) : NULL;
        VS_AUTOFREE char *val = vm_qopt_unescape(v, f.vstart, f.vend);
        struct vm_opt_kv kv = { key, val, f.vstart };
        int r = fn(opaque, &kv);
        if (r)
            return r;
    }
    return 0;
}

struct find {
    const char *key;
    char *value;
};

static int find_field(void *opaque, const struct vm_opt_kv *f)
{
    struct find *q = opaque;
    if (!f->key || strcmp(f->key, q->key))
        return 0;
    q->value = f->value ? vs_xstrdup(f->value) : NULL;
    return 1;
}

char *vm_opt_get(const char *v, const char *key, bool implied)
{
    if (!vm_opt_is_json(v))
        return implied ? vm_qopt_get_implied(v, key) : vm_qopt_get(v, key, NULL);
    struct find q = { key, NULL };
    vm_opt_fields(v, find_field, &q);
    return q.value;
}

/* v (JSON) with member key set to x (stolen; NULL: removed). NULL if v is not one JSON object. */
static char *json_set(const char *v, const char *key, json_t *x)
{
    json_t *j = opt_json(v);
    if (!j) {
        json_decref(x);
        return NULL;
    }
    if (x)
        json_object_set_new(j, key, x);
    else
        json_object_del(j, key);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

char *vm_opt_set(const char *v, const char *key, const char *value)
{
    if (vm_opt_is_json(v))
        return json_set(v, key, value ? json_string(value) : NULL);
    if (!value) {
        VS_AUTOFREE char *k = vs_xasprintf(" %s ", key);
        return vm_qopt_filter(v, k, false);
    }
    return vm_qopt_set(v, key, value);
}

char *vm_opt_set_bool(const char *v, const char *key, bool on)
{
    if (vm_opt_is_json(v))
        return json_set(v, key, json_boolean(on));
    return vm_qopt_set(v, key, on ? "on" : "off");
}

char *vm_opt_filter(const char *v, const char *keys, bool keep)
{
    if (!vm_opt_is_json(v))
        return vm_qopt_filter(v, keys, keep);
    json_t *j = opt_json(v);
    if (!j)
        return NULL;
    json_t *out = json_object();
    const char *k;
    json_t *m;
    json_object_foreach(j, k, m) {
        char w[72] = "";
        if (strlen(k) + 3 <= sizeof w)
            snprintf(w, sizeof w, " %s ", k);
        if ((w[0] && strstr(keys, w)) == keep)
            json_object_set(out, k, m);
    }
    char *s = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(out);
    json_decref(j);
    return s;
}
