/* cli: vmsnap keygen — a new archive key, or a signing key pair. */
#include "cli/cli.h"
#include "crypt/crypt.h"

#include <getopt.h>

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = { { "output", required_argument, NULL, 'o' },
                                           { "sign", no_argument, NULL, 's' },
                                           { NULL, 0, NULL, 0 } };
    const char *out = NULL;
    bool sign = false;
    int c;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': sign = true; break;
        default: return cli_usage("keygen", "bad arguments");
        }
    }
    if (!out || optind != argc)
        return cli_usage("keygen", "expected -o KEYFILE and nothing else");
    vs_err e = { 0 };
    if (sign) {
        CR_SIGNKEY_AUTOWIPE struct cr_signkey k = { 0 };
        if (cr_signkey_generate(out, &k, &e) < 0)
            return cli_fail_err(&e);
        printf("%s: signing key %s (public key: %s.pub)\n", out, k.id, out);
    } else {
        CR_KEY_AUTOWIPE struct cr_key k = { 0 };
        if (cr_key_generate(out, &k, &e) < 0)
            return cli_fail_err(&e);
        printf("%s: archive key %s\n", out, k.id);
    }
    return CLI_OK;
}
