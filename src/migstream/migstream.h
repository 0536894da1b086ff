/* migstream: a streaming parser of QEMU's migration stream that splits it into RAM pages and the rest.
 * Prefix: ms_. docs/MIGRATION-STREAM.md says which parts of the format (per QEMU version) this relies on.
 *
 * Bytes are pushed in as they arrive (from a pipe QEMU writes); pages come out through a callback with the RAM
 * block and offset, everything else is re-emitted as a valid migration stream without those pages (the "device
 * stream": header, configuration, the ram block list, device state, EOF and the JSON description). Memory is
 * bounded (one record plus the device-state tail, capped); RAM is never held.
 *
 * Anything the parser does not understand (unknown flags, compressed or XBZRLE pages, multifd, an unknown section
 * or version) fails with -ENOTSUP and a message naming it: the caller then stores the opaque stream instead. A
 * stream that contradicts itself (a page beyond its block, a footer for the wrong section, truncation) fails with
 * -EBADMSG. Neither ever yields a wrong split. Before ms_committed() is true no page has been delivered, so a
 * caller that kept the bytes pushed so far can still fall back. Past it, with ms_opts.keep_unknown_rest, an
 * unsupported part after the ram setup no longer fails: from there on the input is passed to the device stream as
 * it came (after a replay of the last split page record, so that QEMU's loader reads it as it would have read the
 * input), and the result still loads to exactly the source's state (ms_summary.opaque_from says where). */
#ifndef VMSNAP_MIGSTREAM_H
#define VMSNAP_MIGSTREAM_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

#define MS_PAGE_SIZE 4096u          /* x86 target page; other sizes are refused */
#define MS_MAX_BLOCKS 256u          /* RAM blocks per stream */
#define MS_DEFAULT_TAIL_MAX (64u << 20)

struct ms_block {
    unsigned index;                 /* order in the block list */
    char name[256];                 /* QEMU's idstr, e.g. "mem", "pc.ram", "/rom@etc/acpi/tables" */
    uint64_t size;                  /* used_length in bytes */
    bool split;                     /* its pages go to ops.page (else they stay in the device stream) */
};

struct ms_ops {
    /* The block list was read (once). Set b[i].split to choose which blocks are split out (default: all). */
    int (*blocks)(void *opaque, struct ms_block *b, unsigned n, vs_err *e);
    /* A page of a split block at byte offset off; data NULL means all zero. A later record for the same page
     * replaces an earlier one (precopy resends dirty pages). */
    int (*page)(void *opaque, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e);
    /* Bytes of the device stream, in order. */
    int (*device)(void *opaque, const void *buf, size_t len, vs_err *e);
    /* The device stream has just passed the end of the ram setup section: a reassembler inserts pages here
     * (ms_emit_*). May be NULL. */
    int (*ram_setup_done)(void *opaque, vs_err *e);
    void *opaque;
};

struct ms_opts {
    size_t tail_max;                /* cap on the device-state tail kept for checking; 0 = MS_DEFAULT_TAIL_MAX */
    bool keep_unknown_rest;         /* past the ram setup, keep what is not understood opaque instead of failing */
};

struct ms_summary {
    uint64_t bytes_in;              /* stream bytes consumed */
    uint64_t device_bytes;          /* bytes of the device stream emitted */
    uint64_t pages, zero_pages;     /* page records delivered to ops.page (zero ones included in pages) */
    uint64_t kept_pages;            /* page records of unsplit blocks left in the device stream */
    uint64_t ram_total;             /* sum of block sizes */
    unsigned nblocks;
    uint32_t ram_section_id;
    char machine[64];               /* from the configuration section, e.g. "pc-i440fx-7.2" */
    unsigned devices;               /* device sections listed in the JSON description */
    uint64_t opaque_from;           /* keep_unknown_rest: input offset from which the rest was kept opaque, else 0 */
    char opaque_why[512];             /* what was not understood there */
};

struct ms_parser;

int ms_parser_new(const struct ms_ops *ops, const struct ms_opts *o, struct ms_parser **out, vs_err *e);
void ms_parser_free(struct ms_parser *p);
void ms_parser_freep(struct ms_parser **p);
#define MS_PARSER_AUTOFREE __attribute__((cleanup(ms_parser_freep)))

/* Feed bytes. 0, or -ENOTSUP (unsupported), -EBADMSG (malformed) or a callback's error. After an error the
 * parser refuses further input. */
int ms_push(struct ms_parser *p, const void *buf, size_t len, vs_err *e);
/* End of input: checks the stream ended cleanly (EOF and a parsable JSON description after the devices). */
int ms_finish(struct ms_parser *p, struct ms_summary *sum, vs_err *e);
/* True once the stream's setup was understood and page delivery may have started. */
bool ms_committed(const struct ms_parser *p);
/* Once the rest of the input goes to the device stream unparsed (keep_unknown_rest): what was not understood;
 * else NULL. */
const char *ms_opaque_rest(const struct ms_parser *p);
/* Blocks known so far (after the ram setup section); NULL before. */
const struct ms_block *ms_blocks(const struct ms_parser *p, unsigned *n);
/* The ram section's id (valid once the ram setup section started). */
uint32_t ms_ram_section_id(const struct ms_parser *p);

/* Read everything from fd through a parser (a pipe from QEMU, a file). */
int ms_push_fd(struct ms_parser *p, int fd, vs_err *e);

/* ---- writing page records (reassembly: device stream + pages -> a stream QEMU loads) -------------------- */
/* A ram PART section with page records, written through a device-style callback. */
struct ms_emitter {
    int (*write)(void *opaque, const void *buf, size_t len, vs_err *e);
    void *opaque;
    uint32_t section_id;
    bool open;                      /* inside a PART section */
    const struct ms_block *last;    /* for the CONTINUE flag */
    uint64_t in_section;            /* records in the open section */
};
void ms_emitter_init(struct ms_emitter *m, uint32_t ram_section_id,
                     int (*write)(void *opaque, const void *buf, size_t len, vs_err *e), void *opaque);
/* A page (data NULL: zero page). Sections are opened and closed as needed. */
int ms_emit_page(struct ms_emitter *m, const struct ms_block *b, uint64_t off, const uint8_t *data, vs_err *e);
/* Close the open PART section, if any. */
int ms_emit_flush(struct ms_emitter *m, vs_err *e);

/* Reassemble: read a device stream from dev_fd, write a complete stream to out_fd with every page that fill()
 * reports non-zero inserted after the ram setup section. fill() reads page off of block b into buf and sets
 * *zero when it is all zero (it may skip the copy then); its errors abort. want(b) says which blocks were split
 * (NULL: all); the others are not asked. Page records left in the device stream (unsplit blocks, and pages of
 * split blocks in a rest kept opaque) are passed on in place: they come later in the stream than the inserted
 * pages, as in the source's stream. */
struct ms_page_reader {
    int (*fill)(void *opaque, const struct ms_block *b, uint64_t off, uint8_t *buf, bool *zero, vs_err *e);
    /* Optional, preferred over fill (which may then be NULL): a run of pages from off, at most len bytes (whole
     * pages, len <= 1 MiB): set *got (> 0, whole pages) and either *zero (all zero, buf untouched) or the data in
     * buf (its all-zero pages are skipped too). Lets a reader fetch storage blocks whole and skip holes. */
    int (*fill_run)(void *opaque, const struct ms_block *b, uint64_t off, size_t len, uint8_t *buf, size_t *got,
                    bool *zero, vs_err *e);
    bool (*want)(void *opaque, const struct ms_block *b);
    void *opaque;
};
/* Output is written in writes of up to 1 MiB; memory: that buffer plus one run. */
int ms_reassemble(int dev_fd, int out_fd, const struct ms_page_reader *r, struct ms_summary *sum, vs_err *e);
/* The same with the device stream from push_device, which gives the parser all of it (ms_push) and returns. */
int ms_reassemble_from(int (*push_device)(void *opaque, struct ms_parser *p, vs_err *e), void *opaque, int out_fd,
                       const struct ms_page_reader *r, struct ms_summary *sum, vs_err *e);

#endif
