/* vm: secrets out of a recorded command line. `snap --memory-only` stores a foreign VM's command line in the
 * archive, and archives travel: passwords and secret objects' data are replaced before it is stored. */
#include "vm/vm.h"

#include <jansson.h>
#include <string.h>

static bool is_bool_word(const char *v, size_t n)
{
    static const char *const words[] = { "on", "off", "yes", "no", "true", "false" };
    for (size_t i = 0; i < VS_ARRAY_SIZE(words); i++)
        if (strlen(words[i]) == n && !strncmp(v, words[i], n))
            return true;
    return false;
}

/* A key whose value is a secret: password, *password (not *-secret: those name a secret object by id). */
static bool secret_key(const char *k, size_t n, bool secret_object)
{
    static const char pw[] = "password";
    if (n >= sizeof pw - 1 && !strncmp(k + n - (sizeof pw - 1), pw, sizeof pw - 1))
        return true;
    return secret_object && n == 4 && !strncmp(k, "data", 4);
}

/* "scheme://user:password@host": the password's span in s[0, n), if any. */
static bool url_password(const char *s, size_t n, size_t *start, size_t *end)
{
    const char *sep = memmem(s, n, "://", 3);
    if (!sep)
        return false;
    size_t i = (size_t)(sep - s) + 3, auth_end = i;
    while (auth_end < n && s[auth_end] != '/' && s[auth_end] != '@')
        auth_end++;
    if (auth_end >= n || s[auth_end] != '@')
        return false;
    const char *colon = memchr(s + i, ':', auth_end - i);
    if (!colon)
        return false;
    *start = (size_t)(colon - s) + 1;
    *end = auth_end;
    return true;
}

/* key=value form: each secret value (or URL password inside a value) replaced. */
static char *redact_opts(const char *v, size_t *count)
{
    size_t n = strlen(v), pos = 0;
    struct vm_qopt_field f;
    VS_AUTOFREE char *type = vm_qopt_get_implied(v, "qom-type");
    bool secret_object = type && !strncmp(type, "secret", 6);
    char *out = vs_xstrdup("");
    size_t before = *count;
    for (bool first = true; vm_qopt_next(v, n, &pos, &f); first = false) {
        const char *val = v + f.vstart;
        size_t vlen = f.vend - f.vstart, ps, pe;
        char *piece;
        size_t head = f.key ? f.klen + 1 : 0;
        if (f.key && secret_key(f.key, f.klen, secret_object) && !is_bool_word(val, vlen)) {
            piece = vs_xasprintf("%.*s" VM_REDACTED, (int)head, f.key);
            (*count)++;
        } else if (url_password(val, vlen, &ps, &pe)) {
            piece = vs_xasprintf("%.*s%.*s" VM_REDACTED "%.*s", (int)head, v + f.vstart - head, (int)ps, val,
                                 (int)(vlen - pe), val + pe);
            (*count)++;
        } else {
            piece = vs_xasprintf("%.*s", (int)(head + vlen), v + f.vstart - head);
        }
        char *next = vs_xasprintf("%s%s%s", out, first ? "" : ",", piece);
        free(piece);
        free(out);
        out = next;
    }
    if (*count == before) {
        free(out);
        return NULL;
    }
    return out;
}

static void redact_json(json_t *j, size_t *count)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *x;
        json_array_foreach(j, i, x)
            redact_json(x, count);
        return;
    }
    if (!json_is_object(j))
        return;
    const char *type = json_string_value(json_object_get(j, "qom-type"));
    bool secret_object = type && !strncmp(type, "secret", 6);
    const char *k;
    json_t *x;
    json_object_foreach(j, k, x) {
        if (json_is_string(x) && secret_key(k, strlen(k), secret_object)) {
            json_string_set(x, VM_REDACTED);
            (*count)++;
        } else {
            redact_json(x, count);
        }
    }
}

size_t vm_cmdline_redact(char **argv, size_t argc)
{
    size_t count = 0;
    for (size_t i = 1; i < argc; i++) {
        char *a = argv[i], *out = NULL;
        size_t before = count, ps, pe;
        if (a[0] == '{') {
            json_t *j = json_loads(a, JSON_DECODE_ANY, NULL);
            if (j) {
                redact_json(j, &count);
                if (count > before)
                    out = json_dumps(j, JSON_COMPACT);
                json_decref(j);
            } else if (strstr(a, "password") || strstr(a, "secret")) {   /* unreadable: all of it */
                out = vs_xstrdup(VM_REDACTED);
                count++;
            }
        } else if (a[0] != '-' && strchr(a, '=')) {
            out = redact_opts(a, &count);
        } else if (a[0] != '-' && url_password(a, strlen(a), &ps, &pe)) {
            out = vs_xasprintf("%.*s" VM_REDACTED "%s", (int)ps, a, a + pe);
            count++;
        }
        if (out) {
            free(argv[i]);
            argv[i] = out;
        }
    }
    return count;
}
