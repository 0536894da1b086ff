/* vm_snap_remote with an output path or message that is not UTF-8: the control protocol is JSON, which cannot
 * carry them. json_pack gave NULL and the request crashed on it; now it is a clear error, before anything is sent. */
#include "vm/vm.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_not_utf8(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmsnap-client-XXXXXX";
    assert_non_null(mkdtemp(dir));
    VS_AUTOFREE char *sock = vs_xasprintf("%s/ctl.sock", dir);
    int lfd;
    vs_err e = { 0 };
    assert_int_equal(vs_listen_unix(sock, &lfd, &e), 0);   /* connect succeeds; nobody answers */
    json_t *res = NULL;
    struct vm_snap_request rq = { .output = "/tmp/bad\xff.vmsnap" };
    assert_int_equal(vm_snap_remote(sock, &rq, NULL, NULL, NULL, &res, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "is not UTF-8"));
    rq = (struct vm_snap_request){ .output = "/tmp/ok.vmsnap", .message = "bad\xc0" };
    assert_int_equal(vm_snap_remote(sock, &rq, NULL, NULL, NULL, &res, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "--message is not UTF-8"));
    assert_null(res);
    close(lfd);
    unlink(sock);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_not_utf8) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
