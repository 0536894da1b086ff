/* objstore's pure parts: locations and parent hints, the credentials file (strict), S3 XML fields. The network
 * side is tested against a real Ceph RGW (tests/integration/objstore). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "objstore/objstore.h"

static void resolve_cases(void **state)
{
    (void)state;
    static const struct { const char *loc, *rel, *want; } c[] = {
        { "s3://bkt/vms/thin/b.vmsnap", "../a.vmsnap", "s3://bkt/vms/a.vmsnap" },
        { "s3://bkt/vms/b.vmsnap", "a.vmsnap", "s3://bkt/vms/a.vmsnap" },
        { "s3://bkt/vms/b.vmsnap", "./x/../a.vmsnap", "s3://bkt/vms/a.vmsnap" },
        { "s3://bkt/b.vmsnap", "../a.vmsnap", NULL },             /* above the bucket */
        { "s3://bkt/b.vmsnap", "/etc/passwd", NULL },             /* absolute: not in the store */
        { "s3://bkt/b.vmsnap", "d/", NULL },                      /* a "directory" */
        { "https://h.example/p/q.vmsnap?sig=1", "r.vmsnap", "https://h.example/p/r.vmsnap" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *got = os_resolve(c[i].loc, c[i].rel);
        if (c[i].want)
            assert_string_equal(got, c[i].want);
        else
            assert_null(got);
        free(got);
    }
}

static void relative_cases(void **state)
{
    (void)state;
    char *r = os_relative("s3://bkt/vms/thin/b.vmsnap", "s3://bkt/vms/a.vmsnap");
    assert_string_equal(r, "../a.vmsnap");
    free(r);
    r = os_relative("s3://bkt/b.vmsnap", "s3://bkt/x/a.vmsnap");
    assert_string_equal(r, "x/a.vmsnap");
    free(r);
    assert_null(os_relative("s3://bkt/b.vmsnap", "s3://other/a.vmsnap"));   /* another bucket: no hint */
    assert_null(os_relative("s3://bkt/b.vmsnap", "/local/a.vmsnap"));
}

static void split_cases(void **state)
{
    (void)state;
    char *b, *k;
    vs_err e;
    assert_int_equal(os_s3_split("s3://my-bkt/a/b.vmsnap", &b, &k, &e), 0);
    assert_string_equal(b, "my-bkt");
    assert_string_equal(k, "a/b.vmsnap");
    free(b);
    free(k);
    assert_true(os_s3_split("s3://my-bkt/", &b, &k, &e) < 0);
    assert_non_null(strstr(e.msg, "non-empty key"));
    assert_true(os_s3_split("s3://B/x", &b, &k, &e) < 0);
    assert_non_null(strstr(e.msg, "bucket name"));
    assert_int_equal(os_scheme_of("s3://a/b"), OS_S3);
    assert_int_equal(os_scheme_of("https://a/b"), OS_HTTP);
    assert_int_equal(os_scheme_of("./s3://a"), OS_LOCAL);
}

static void creds_cases(void **state)
{
    (void)state;
    const char *ok = "# comment\n[default]\naws_access_key_id = AK\naws_secret_access_key=SK \r\n"
                     "[other]\naws_access_key_id = OK\naws_secret_access_key = OS\naws_session_token = T\n"
                     "region = eu-west-1\n";
    struct os_creds c;
    vs_err e;
    assert_int_equal(os_parse_credentials(ok, strlen(ok), "default", "f", &c, &e), 0);
    assert_string_equal(c.access_key, "AK");
    assert_string_equal(c.secret_key, "SK");
    assert_null(c.session_token);
    os_creds_free(&c);
    assert_int_equal(os_parse_credentials(ok, strlen(ok), "other", "f", &c, &e), 0);
    assert_string_equal(c.session_token, "T");
    os_creds_free(&c);
    assert_int_equal(os_parse_credentials(ok, strlen(ok), "absent", "f", &c, &e), 0);
    assert_null(c.access_key);
    static const struct { const char *text, *words; } bad[] = {
        { "aws_access_key_id = AK\n", "f:1: a key before any [profile]" },
        { "[default]\njunk line\n", "f:2: expected 'key = value'" },
        { "[default]\n[default]\n", "f:2: profile [default] appears twice" },
        { "[default]\naws_access_key_id = A\naws_access_key_id = B\n", "f:3: aws_access_key_id appears twice" },
        { "[default\n", "f:1: expected a [profile] line" },
        { "[default]\naws_secret_access_key =\n", "f:2: aws_secret_access_key is empty" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_true(os_parse_credentials(bad[i].text, strlen(bad[i].text), "default", "f", &c, &e) < 0);
        assert_non_null(strstr(e.msg, bad[i].words));
    }
}

static void xml_cases(void **state)
{
    (void)state;
    const char *init = "<InitiateMultipartUploadResult><UploadId>2~a&amp;b</UploadId></InitiateMultipartUploadResult>";
    char *v = os_xml_text(init, strlen(init), "UploadId");
    assert_string_equal(v, "2~a&b");
    free(v);
    const char *etag = "<ETag>&quot;abc&quot;</ETag>";
    v = os_xml_text(etag, strlen(etag), "ETag");
    assert_string_equal(v, "\"abc\"");
    free(v);
    assert_null(os_xml_text(init, strlen(init) - 40, "UploadId"));           /* cut before the closing tag */
    const char *nested = "<Code><x>y</x></Code>";
    assert_null(os_xml_text(nested, strlen(nested), "Code"));
    assert_null(os_xml_text(init, strlen(init), "Code"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resolve_cases), cmocka_unit_test(relative_cases), cmocka_unit_test(split_cases),
        cmocka_unit_test(creds_cases),   cmocka_unit_test(xml_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
