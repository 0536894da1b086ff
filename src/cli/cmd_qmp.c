/* cli: "vmsnap qmp" — placeholder until the QMP client lands (issue 3). */
#include "cli/cli.h"

int cmd_qmp(int argc, char **argv)
{
    (void)argc; (void)argv;
    return cli_fail("qmp: not built yet");
}
