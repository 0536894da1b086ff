/* vm: QEMU's option syntax, in one place. An option value is a comma-separated list of fields, each "key=value"
 * or a bare value (the option's implied key when it comes first); a comma inside a value is written ",,". */
#include "vm/vm.h"

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
