/* objstore: the AWS shared credentials file (~/.aws/credentials), parsed strictly. */
#include "objstore/objstore.h"

#include <errno.h>
#include <string.h>

static void trim(const char **s, const char **t)
{
    while (*s < *t && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*t > *s && ((*t)[-1] == ' ' || (*t)[-1] == '\t' || (*t)[-1] == '\r'))
        (*t)--;
}

static bool name_ok(const char *s, const char *t)
{
    if (s == t)
        return false;
    for (const char *p = s; p < t; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.' || *p == ' ' || *p == '@' || *p == '+'))
            return false;
    return true;
}

void os_creds_free(struct os_creds *c)
{
    if (!c)
        return;
    if (c->secret_key)
        memset(c->secret_key, 0, strlen(c->secret_key));
    free(c->access_key);
    free(c->secret_key);
    free(c->session_token);
    *c = (struct os_creds){ 0 };
}

/* Sections seen so far, to refuse duplicates: names joined by '\n'. */
static bool seen_add(char **seen, const char *s, size_t n)
{
    size_t have = *seen ? strlen(*seen) : 0;
    for (const char *p = *seen; p && *p;) {
        size_t l = strcspn(p, "\n");
        if (l == n && !memcmp(p, s, n))
            return false;
        p += l + (p[l] == '\n');
    }
    *seen = vs_xrealloc(*seen, have + n + 2);
    memcpy(*seen + have, s, n);
    (*seen)[have + n] = '\n';
    (*seen)[have + n + 1] = 0;
    return true;
}

static int parse(const char *text, size_t len, const char *profile, const char *name, struct os_creds *out,
                 vs_err *e)
{
    VS_AUTOFREE char *seen = NULL;
    bool in_section = false, ours = false;
    unsigned line = 0;
    int r = 0;
    if (memchr(text, 0, len))
        return vs_err_set(e, EINVAL, "%s: not a text file (NUL byte)", name);
    for (const char *p = text, *end = text + len; p < end && r == 0;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *t = nl ? nl : end;
        p = nl ? nl + 1 : end;
        line++;
        trim(&s, &t);
        if (s == t || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            const char *a = s + 1, *b = t - 1;
            if (t - s < 3 || *b != ']')
                return vs_err_set(e, EINVAL, "%s:%u: expected a [profile] line", name, line);
            trim(&a, &b);
            if (!name_ok(a, b))
                return vs_err_set(e, EINVAL, "%s:%u: bad profile name", name, line);
            if (!seen_add(&seen, a, (size_t)(b - a)))
                return vs_err_set(e, EINVAL, "%s:%u: profile [%.*s] appears twice", name, line, (int)(b - a), a);
            in_section = true;
            ours = strlen(profile) == (size_t)(b - a) && !memcmp(a, profile, (size_t)(b - a));
            continue;
        }
        const char *eq = memchr(s, '=', (size_t)(t - s));
        if (!eq)
            return vs_err_set(e, EINVAL, "%s:%u: expected 'key = value', a [profile] line or a comment", name, line);
        if (!in_section)
            return vs_err_set(e, EINVAL, "%s:%u: a key before any [profile] line", name, line);
        const char *ks = s, *kt = eq, *vs = eq + 1, *vt = t;
        trim(&ks, &kt);
        trim(&vs, &vt);
        if (!name_ok(ks, kt))
            return vs_err_set(e, EINVAL, "%s:%u: bad key name", name, line);
        for (const char *c = vs; c < vt; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return vs_err_set(e, EINVAL, "%s:%u: control character in a value", name, line);
        if (!ours)
            continue;
        char **dst = NULL;
        size_t kl = (size_t)(kt - ks);
        if (kl == 17 && !memcmp(ks, "aws_access_key_id", kl))
            dst = &out->access_key;
        else if (kl == 21 && !memcmp(ks, "aws_secret_access_key", kl))
            dst = &out->secret_key;
        else if (kl == 17 && !memcmp(ks, "aws_session_token", kl))
            dst = &out->session_token;
        if (!dst)
            continue;   /* other keys (region, output, ...) are the CLI's business */
        if (*dst) {
            r = vs_err_set(e, EINVAL, "%s:%u: %.*s appears twice in [%s]", name, line, (int)kl, ks, profile);
            break;
        }
        if (vs == vt) {
            r = vs_err_set(e, EINVAL, "%s:%u: %.*s is empty", name, line, (int)kl, ks);
            break;
        }
        *dst = strndup(vs, (size_t)(vt - vs));
        if (!*dst)
            abort();
    }
    return r;
}

int os_parse_credentials(const char *text, size_t len, const char *profile, const char *name, struct os_creds *out,
                         vs_err *e)
{
    *out = (struct os_creds){ 0 };
    int r = parse(text, len, profile, name, out, e);
    if (r < 0)
        os_creds_free(out);   /* keys found before the bad line */
    return r;
}
