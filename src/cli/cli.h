/* cli: the vmsnap command-line front end. One file per command (cmd_*.c), dispatched from
 * the table in main.c. The library components never print or exit; commands do. */
#ifndef VMSNAP_CLI_H
#define VMSNAP_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include "util/util.h"

/* Exit statuses (docs/CLI.md). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);  /* argv[0] is the command name */
    const char *synopsis;               /* one line, after "vmsnap " */
    const char *help;                   /* longer text for "vmsnap help NAME" */
};

/* The command table (main.c). */
const struct cli_command *cli_find(const char *name);
extern const struct cli_command cli_commands[];

/* "vmsnap: <msg>" on stderr; return CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a vs_err as one line; return CLI_FAIL. */
int cli_fail_err(const vs_err *e);
/* "vmsnap: <msg>" plus a hint to "vmsnap help CMD"; return CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string of s (a path, a name from an archive), escaped with vs_text_escape when it is not UTF-8 text:
 * json_pack refuses invalid UTF-8 and returns NULL for the whole document. NULL s gives null. */
json_t *cli_json_text(const char *s);
static inline void cli_json_decrefp(json_t **j) { json_decref(*j); }
#define CLI_JSON_AUTODECREF __attribute__((cleanup(cli_json_decrefp)))
/* Print the synopsis and help of a command to f. */
void cli_print_help(FILE *f, const struct cli_command *c);

/* Progress goes to stderr only when it is a terminal and not --quiet. */
bool cli_progress_enabled(bool quiet);

/* Progress line on stderr (progress.c); does nothing when not enabled. total 0/UINT64_MAX: unknown. */
struct cli_progress { bool on; const char *what; uint64_t total; double start, last; };
void cli_progress_init(struct cli_progress *p, bool enabled, const char *what, uint64_t total);
void cli_progress_update(struct cli_progress *p, uint64_t done);
void cli_progress_done(struct cli_progress *p);

/* Archive keys (keyopt.c): the key file at path, else at $env (env may be NULL), loaded into *k with *out = k;
 * neither given: 0 and *out = NULL. For --key (env "VMSNAP_KEY_FILE") and --encrypt (no env). */
struct cr_key;
#define CLI_KEY_ENV "VMSNAP_KEY_FILE"
int cli_key(const char *path, const char *env, struct cr_key *k, const struct cr_key **out, vs_err *e);
/* --cipher NAME, checked as given (keyopt.c): 0, or cli_usage's status with a line naming the ciphers there are.
 * It applies only if the archive is encrypted (by --encrypt, or by an encrypted parent or base). */
int cli_cipher_opt(const char *cmd, const char *name);
/* Signatures (trust.c): --trusted-keys DIR-or-FILE, else VMSNAP_TRUSTED_KEYS, else off. */
#define CLI_OPT_TRUSTED_KEYS 0x100   /* getopt value of --trusted-keys (long only: no short letter to collide) */
struct arc;
struct arc_source;
struct cr_keyring;
struct cr_sigfile;
struct cli_trust {
    struct cr_keyring *kr;   /* NULL: no trusted keys given, nothing is required */
    bool any;                /* without kr: check the signatures there are, by any key, and report them */
    /* Told of each archive of a chain that passed: its name, the signer's key id and trusted key file (NULL when
     * kr is NULL; both NULL: not signed, with any). May be NULL. */
    void (*signed_by)(void *opaque, const char *archive, const char *key_id, const char *key_file);
    /* With any: told (one line) of a .sig file that is not one (another tool's signature), which is then skipped. */
    void (*note)(void *opaque, const char *msg);
    void *opaque;
};
/* Load the trusted keys named by flag (may be NULL) or VMSNAP_TRUSTED_KEYS; none: t->kr stays NULL. */
int cli_trust_load(const char *flag, struct cli_trust *t, vs_err *e);
void cli_trust_clear(struct cli_trust *t);
#define CLI_TRUST_AUTOCLEAR __attribute__((cleanup(cli_trust_clear)))
/* The check of an opened archive: itself and every parent carry a valid signature by a trusted key, and none
 * changed since it was opened. Does nothing without trusted keys. opaque is a struct cli_trust. */
int cli_trust_check(void *opaque, struct arc *a, vs_err *e);
/* arc_open_opts.wrap with a struct cli_trust as opaque: an archive (and each parent) carrying a version-2 signature
 * by a trusted key (by any key without trusted keys but with any) is read through its signed chunk table
 * (arc_source_verified); one without any signature is refused here when keys are required, before a byte of it is
 * parsed. Others are left to cli_trust_check. */
int cli_trust_wrap(void *opaque, struct arc_source **src, vs_err *e);
/* Open an archive and its chain with the checks of t: cli_trust_wrap on every source, then cli_trust_check. What
 * every command that reads archives uses (o: the caller's options; its wrap is set here). */
struct arc_open_opts;
int cli_open_trusted(const char *path, struct arc_open_opts *o, struct cli_trust *t, struct arc **out, vs_err *e);
/* The signature file of an archive location: ARCHIVE.sig beside it, a file or an object (malloc'd). */
char *cli_sig_path(const char *archive);
/* The .sig of an archive (a local path, s3:// or http(s)://), strictly parsed; -ENOENT when there is none. */
int cli_sig_load(const char *archive, struct cr_sigfile *out, vs_err *e);
/* The chunk table of an archive location: ARCHIVE.sums beside it (malloc'd). */
char *cli_sums_path(const char *archive);
/* The .sums of an archive that version-2 signature by binds: exactly as long as by says, its digest by's. */
struct cr_sig;
struct cr_sums;
int cli_sums_load(const char *archive, const struct cr_sig *by, struct cr_sums *out, vs_err *e);
/* A small file beside an archive (.sig, .sums), a local file or an object: at most cap bytes, else an error naming
 * it; *buf (malloc'd) gets *len bytes. -ENOENT (with a message) when there is none. */
int cli_side_load(const char *loc, const char *what, size_t cap, char **buf, size_t *len, vs_err *e);
/* Replace a small file beside an archive (loc: a local path, or s3://): a local file atomically (temp, fsync,
 * rename), an object in one PUT. what names it in messages. */
int cli_side_store(const char *loc, const char *what, const void *buf, size_t len, vs_err *e);
/* Write f as the .sig of an archive: a local file replaced atomically, or an object that appears only whole. */
int cli_sig_store(const char *archive, const struct cr_sigfile *f, vs_err *e);
/* cr_pread_fn over an archive's byte-range source (opaque is a struct arc_source). */
int cli_source_pread(void *opaque, void *buf, size_t len, uint64_t off, vs_err *e);

/* Commands. */
int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_qmp(int argc, char **argv);
int cmd_boot(int argc, char **argv);
int cmd_snap(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_internal(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_dirty_rate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_mem(int argc, char **argv);
int cmd_ws(int argc, char **argv);
int cmd_cp(int argc, char **argv);

#endif
