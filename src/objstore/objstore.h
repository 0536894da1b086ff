/* objstore: objects on S3-compatible stores (and plain http(s) URLs, read-only) over libcurl. Prefix: os_.
 *
 * Requests are signed by libcurl itself (CURLOPT_AWS_SIGV4), never by hand. Credentials and endpoint follow the
 * AWS CLI/SDK conventions (docs/OBJECT-STORE.md). Transient failures (no connection, 5xx, 429, timeouts) are
 * retried with backoff until a deadline (VMSNAP_S3_DEADLINE seconds, default 30), then reported; a refusal by the
 * store (403, 404, ...) is reported at once with the store's own code and message.
 * The component knows nothing about archives: the archive component builds its byte-range source and its upload
 * sink on these calls. */
#ifndef VMSNAP_OBJSTORE_H
#define VMSNAP_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

/* ---- locations --------------------------------------------------------------------------------------------- */
enum os_scheme { OS_LOCAL = 0, OS_S3, OS_HTTP };
/* s3://BUCKET/KEY -> OS_S3, http:// or https:// -> OS_HTTP (read-only), anything else a local path. */
enum os_scheme os_scheme_of(const char *loc);
static inline bool os_is_remote(const char *loc) { return os_scheme_of(loc) != OS_LOCAL; }
/* Split s3://BUCKET/KEY (both non-empty; a bucket name as S3 allows: 3..63 of [a-z0-9.-]). */
int os_s3_split(const char *loc, char **bucket, char **key, vs_err *e);
/* The location of rel (a relative path hint such as "../base.vmsnap") next to loc: its last '/'-component
 * replaced, "." and ".." applied inside the key. NULL when rel climbs above the bucket (or the host). */
char *os_resolve(const char *loc, const char *rel);
/* A relative path from loc's "directory" to target, both remote and in the same bucket/host; else NULL. */
char *os_relative(const char *loc, const char *target);

/* ---- credentials and endpoint ------------------------------------------------------------------------------ */
struct os_creds {
    char *access_key, *secret_key, *session_token;   /* NULL when not found */
};
/* Parse an AWS credentials file (INI: [profile] sections, key = value lines, '#'/';' comments). Strict: a line
 * that is none of these, a key outside a section, or a duplicated section or key is refused naming the line.
 * Finds profile's aws_access_key_id, aws_secret_access_key, aws_session_token; a missing profile is not an error
 * (out stays empty). name is for messages. */
int os_parse_credentials(const char *text, size_t len, const char *profile, const char *name, struct os_creds *out,
                         vs_err *e);
void os_creds_free(struct os_creds *c);

/* ---- XML replies ------------------------------------------------------------------------------------------- */
/* The text of the first <tag>...</tag> element in body (entities &amp; &lt; &gt; &quot; &apos; decoded), malloc'd,
 * or NULL when absent or malformed. Bounded: reads at most len bytes, never past them. */
char *os_xml_text(const char *body, size_t len, const char *tag);

/* ---- the client ---------------------------------------------------------------------------------------------- */
struct os_client;
/* For loc (s3:// or http(s)://): endpoint, region and credentials from the environment and ~/.aws. Missing S3
 * credentials are an error naming the variables. */
int os_client_new(const char *loc, struct os_client **out, vs_err *e);
void os_client_free(struct os_client *c);

/* A readable object: its size and ETag from a HEAD at open. Reads are thread-safe, each on a kept-alive
 * connection from a pool, conditional on that ETag (If-Match), so a replaced object is an error, never mixed
 * bytes. */
struct os_object;
int os_object_open(const char *loc, struct os_object **out, vs_err *e);
uint64_t os_object_size(const struct os_object *o);
/* The ETag seen at open ("" when the server sent none). */
const char *os_object_etag(const struct os_object *o);
/* Exactly len bytes at off (a short or longer answer is an error naming the object). */
int os_object_pread(struct os_object *o, void *buf, size_t len, uint64_t off, vs_err *e);
/* 0 while the object still has the ETag and size seen at open, else -ESTALE (latched). */
int os_object_check(struct os_object *o, vs_err *e);
void os_object_close(struct os_object *o);

/* An upload to s3://BUCKET/KEY that creates the object only at os_upload_finish. Parts are numbered from 1, at
 * least 5 MiB each except the last; part 1 may be sent last. Up to a few parts are in flight at once (curl's multi
 * interface), so os_upload_part returns once the part is queued and memory stays bounded: the caller's buffer is
 * taken over (it must be malloc'd). An upload of part 1 alone becomes a single PUT. Any failure, and
 * os_upload_abort, aborts the multipart upload: nothing appears under the key. */
struct os_upload;
int os_upload_begin(const char *loc, struct os_upload **out, vs_err *e);
int os_upload_part(struct os_upload *u, unsigned part, void *buf, size_t len, vs_err *e);
int os_upload_finish(struct os_upload *u, vs_err *e);   /* frees u whatever the outcome */
void os_upload_abort(struct os_upload *u);              /* NULL is fine */
/* Delete the object at an s3:// location (a missing one is no error). */
int os_delete(const char *loc, vs_err *e);
#define OS_MIN_PART (5u << 20)
#define OS_MAX_PARTS 10000u

#endif
