/* cli: the vmsnap command-line front end. One file per command (cmd_*.c), dispatched from
 * the table in main.c. The library components never print or exit; commands do. */
#ifndef VMSNAP_CLI_H
#define VMSNAP_CLI_H

#include <stdbool.h>
#include "util/util.h"

/* Exit statuses (../shared/CLI.md). */
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
/* Print the synopsis and help of a command to f. */
void cli_print_help(FILE *f, const struct cli_command *c);

/* Progress goes to stderr only when it is a terminal and not --quiet. */
bool cli_progress_enabled(bool quiet);

/* Commands. */
int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_qmp(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
