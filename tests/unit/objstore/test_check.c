/* os_object_check against a minimal HTTP server on loopback that answers every request with 200, a size and an
 * ETag: a store that does not answer is no proof that the object changed (a lazily resumed VM's page read must go
 * on from the block cache, not fail and stop the VM), while a store that answers with another ETag still is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "objstore/objstore.h"

struct server {
    int ls;
    unsigned short port;
    const char *etag;
    pthread_t th;
};

static void *serve(void *arg)
{
    struct server *s = arg;
    int c;
    while ((c = accept(s->ls, NULL, NULL)) >= 0) {
        char req[4096];
        size_t n = 0;
        ssize_t k;
        while (n < sizeof req - 1 && (k = read(c, req + n, sizeof req - 1 - n)) > 0) {
            req[n += (size_t)k] = 0;
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        char rep[256];
        int len = snprintf(rep, sizeof rep, "HTTP/1.1 200 OK\r\nContent-Length: 8192\r\nETag: \"%s\"\r\n"
                           "Connection: close\r\n\r\n", s->etag);
        assert_int_equal(write(c, rep, (size_t)len), len);
        close(c);
    }
    return NULL;
}

/* Listen on port (0: any) and serve until server_stop. */
static void server_start(struct server *s, unsigned short port, const char *etag)
{
    s->ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->ls >= 0);
    int one = 1;
    setsockopt(s->ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(s->ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->ls, 16), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->ls, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    s->etag = etag;
    assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

/* Gone: connections to the port are refused from now on. */
static void server_stop(struct server *s)
{
    shutdown(s->ls, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->ls);
}

static void past_check_interval(void)
{
    struct timespec ts = { 1, 200 * 1000 * 1000 };   /* the check asks the store at most once a second */
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void check_of_a_store_away(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 0, "e1");
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u", s.port);
    setenv("AWS_ENDPOINT_URL", ep, 1);
    setenv("AWS_ACCESS_KEY_ID", "TESTACCESS", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "testsecret", 1);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("VMSNAP_S3_DEADLINE", "1", 1);
    unsetenv("AWS_ENDPOINT_URL_S3");
    vs_err e = { 0 };
    struct os_object *o = NULL;
    if (os_object_open("s3://bkt/k.vmsnap", &o, &e) < 0)
        fail_msg("open: %s", e.msg);
    assert_int_equal(os_object_size(o), 8192);

    server_stop(&s);   /* the store away: no answer, which says nothing about the object */
    past_check_interval();
    int r = os_object_check(o, &e);
    if (r)
        fail_msg("check with the store away: %d: %s", r, e.msg);
    assert_int_equal(e.code, 0);

    server_start(&s, s.port, "e1");   /* back, unchanged */
    past_check_interval();
    assert_int_equal(os_object_check(o, &e), 0);
    server_stop(&s);

    server_start(&s, s.port, "e2");   /* back with the object replaced: refused, and latched */
    past_check_interval();
    assert_int_equal(os_object_check(o, &e), -ESTALE);
    assert_non_null(strstr(e.msg, "s3://bkt/k.vmsnap"));
    server_stop(&s);
    assert_int_equal(os_object_check(o, &e), -ESTALE);
    os_object_close(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(check_of_a_store_away) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
