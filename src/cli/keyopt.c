/* cli: archive keys from the command line: --key FILE (else $VMSNAP_KEY_FILE) to read, --encrypt FILE to write. */
#include "cli/cli.h"
#include "crypt/crypt.h"

#include <stdlib.h>

int cli_key(const char *path, const char *env, struct cr_key *k, const struct cr_key **out, vs_err *e)
{
    *out = NULL;
    if (!path && env)
        path = getenv(env);
    if (!path || !*path)
        return 0;
    int r = cr_init(e);
    if (r >= 0)
        r = cr_key_load(path, k, e);
    if (r >= 0)
        *out = k;
    return r;
}

int cli_cipher_opt(const char *cmd, const char *name)
{
    vs_err e = { 0 };
    return cr_cipher_parse(name, &(enum cr_cipher){ 0 }, &e) < 0 ? cli_usage(cmd, "%s", e.msg) : 0;
}
