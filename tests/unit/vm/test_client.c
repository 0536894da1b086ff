/* The boot host's control protocol: the request both sides build and parse (control.c), vm_ctl_serve's replies,
 * and vm_snap_remote with an output path or message that is not UTF-8: the control protocol is JSON, which cannot
 * carry them. json_pack gave NULL and the request crashed on it; now it is a clear error, before anything is sent. */
#include "vm/vm.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static json_t *parse_text(const char *text, struct vm_snap_request *rq, int *r, vs_err *e)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    *r = vm_ctl_request_parse(j, rq, e);
    return j;
}

static void test_request(void **state)
{
    (void)state;
    struct vm_snap_request in = { .output = "/x/a.vmsnap", .thin = true, .live = false, .codec = "zstd:3",
                                  .message = "m", .cipher = "xchacha20-poly1305" }, out;
    vs_err e = { 0 };
    json_t *j = vm_ctl_request_json(&in, &e);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, VM_CTL_CMD)), "snap");
    assert_int_equal(vm_ctl_request_parse(j, &out, &e), 0);
    assert_string_equal(out.output, in.output);
    assert_string_equal(out.codec, in.codec);
    assert_string_equal(out.message, in.message);
    assert_string_equal(out.cipher, in.cipher);
    assert_true(out.thin && !out.live);
    json_decref(j);
    int r;
    /* What vmsnap's client sent before: still a snap, live by default. */
    j = parse_text("{\"execute\": \"snap\", \"output\": \"/x/b\"}", &out, &r, &e);
    assert_int_equal(r, 0);
    assert_true(out.live && !out.thin && !out.codec && !out.cipher);
    json_decref(j);
    static const struct { const char *text, *words; } bad[] = {
        { "{\"cmd\": \"status\"}", "unknown command \"status\"" },
        { "{\"cmd\": \"snap\", \"output\": \"rel.vmsnap\"}", "absolute path" },
        { "{\"cmd\": \"snap\", \"output\": \"/x\", \"thin\": \"yes\"}", "\"thin\" must be true or false" },
        { "{\"cmd\": \"snap\", \"output\": 7}", "\"output\" must be a string" },
        { "{\"cmd\": \"snap\", \"output\": \"/x\", \"cipher\": 1}", "\"cipher\" must be a string" },
        { "[1]", "expected a request" },
    };
    for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
        j = parse_text(bad[i].text, &out, &r, &e);
        assert_int_equal(r, -EINVAL);
        if (!strstr(e.msg, bad[i].words))
            fail_msg("%s: %s", bad[i].text, e.msg);
        json_decref(j);
    }
}

static json_t *fake_snap(void *opaque, const struct vm_snap_request *rq, vs_err *e)
{
    (void)e;
    *(int *)opaque += 1;
    return json_pack("{s:s}", "output", rq->output);
}

/* One request line to vm_ctl_serve over a socketpair: its one reply, parsed. */
static json_t *serve(const char *request, size_t len, int *calls)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vs_write_full(sv[0], request, len), 0);
    shutdown(sv[0], SHUT_WR);
    vm_ctl_serve(sv[1], -1, fake_snap, calls);
    /* Read before the server side closes: closing with unread request bytes resets the connection. */
    char buf[4096];
    ssize_t n = recv(sv[0], buf, sizeof buf - 1, MSG_DONTWAIT);
    close(sv[1]);
    close(sv[0]);
    if (n <= 0 || buf[n - 1] != '\n')
        fail_msg("reply: %zd bytes", n);
    buf[n] = 0;
    json_t *j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_serve(void **state)
{
    (void)state;
    int calls = 0;
    const char *ok = "{\"cmd\": \"snap\", \"output\": \"/x/a\"}\n";
    json_t *j = serve(ok, strlen(ok), &calls);
    assert_int_equal(calls, 1);
    assert_true(json_is_true(json_object_get(j, VM_CTL_OK)));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, VM_CTL_RESULT), "output")), "/x/a");
    json_decref(j);
    const char *bad = "{\"cmd\": \"freeze\"}\n";
    j = serve(bad, strlen(bad), &calls);
    assert_true(json_is_false(json_object_get(j, VM_CTL_OK)));
    assert_non_null(strstr(json_string_value(json_object_get(j, VM_CTL_ERROR)), "unknown command"));
    json_decref(j);
    /* CONTROL.md's line limit: a longer line is refused, never read on. Under the socket buffer, so it is all sent. */
    size_t len = VS_CTL_MAX_LINE + 10;
    VS_AUTOFREE char *big = vs_xmalloc(len);
    memset(big, ' ', len);
    j = serve(big, len, &calls);
    assert_true(json_is_false(json_object_get(j, VM_CTL_OK)));
    assert_non_null(strstr(json_string_value(json_object_get(j, VM_CTL_ERROR)), "longer than 65536 bytes"));
    json_decref(j);
    assert_int_equal(calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_not_utf8), cmocka_unit_test(test_request),
                                        cmocka_unit_test(test_serve) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
