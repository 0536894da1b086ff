/* cli: entry point and command dispatch. */
#include "cli/cli.h"
#include "qops/qops.h"

#include <stdarg.h>
#include <string.h>

/* Keep sorted by how users meet them: snapshot lifecycle first, tooling after. */
const struct cli_command cli_commands[] = {
    { "boot", cmd_boot,
      "boot ARCHIVE [--overlay FILE] [--ram SIZE] [--cpus N] [--qmp PATH] [--console PATH|stdio] [--accel auto|kvm|tcg] "
      "[--qemu PATH] [--trust-archive] [--trusted-keys DIR|FILE] [--detach] [--count N] [--keep-mac] [--json] [--eager] "
      "[--prefetch none|background|all] [--record-ws SECONDS] [--cache-size SIZE] [--key KEYFILE] [-- EXTRA-QEMU-ARGS]",
      "Boot a VM from ARCHIVE, or resume it where it was if the archive holds memory. Memory stored as pages is\n"
      "resumed lazily: the VM runs at once, its RAM read from the archive on first touch (FUSE; leave the archive in\n"
      "place and unchanged while the VM runs) and pulled in by a background prefetch once it runs (--prefetch none:\n"
      "on first touch only); --eager (or no FUSE) loads it all first. Its disks are served from the\n"
      "archive over NBD with a 4 KiB copy-on-write overlay (temporary unless --overlay). Stays in the foreground until\n"
      "QEMU exits (SIGINT/SIGTERM: clean shutdown); --detach returns once the VM runs and prints its sockets.\n"
      "Extra QEMU arguments become part of the VM's config (a later snap stores them and the files they name).\n"
      "The QEMU binary is --qemu, else $VMSNAP_QEMU, else qemu-system-x86_64 from PATH; never one an archive names.\n"
      "What an archive records is checked before anything starts: options, machine types and devices vmsnap itself\n"
      "writes, files only as copies stored in the archive; anything else is refused, each option with its reason.\n"
      "--trust-archive passes it to QEMU unchanged (and says what it let through). See docs/SECURITY.md.\n"
      "An archive read from far away (an object store) goes through the local block cache ($VMSNAP_CACHE_DIR, default\n"
      "~/.cache/vmsnap/blocks; bound --cache-size, else $VMSNAP_CACHE_SIZE, else 8G; VMSNAP_CACHE=on caches local files\n"
      "too, off never): boots of one archive share what any of them fetched. --prefetch all also fetches the whole\n"
      "archive chain into the cache once the VM runs, and keeps it there while the VM lives, so the VM no longer\n"
      "needs the source afterwards (run directory's prefetch.json says when). See docs/CACHE.md.\n"
      "A snapshot of a VM vmsnap did not start replays its command line, each captured disk served from the archive\n"
      "under the device it had; disks not captured (a cdrom) are emptied or dropped unless --trust-archive.\n"
      "An encrypted archive needs its key: --key KEYFILE, else $VMSNAP_KEY_FILE (so do every command that reads one);\n"
      "snapshots of the VM are sealed with that key too.\n"

      "--trusted-keys (or $VMSNAP_TRUSTED_KEYS): a public key file, or a directory of *.pub files; the archive\n"
      "and every parent must then carry a valid signature (ARCHIVE.sig) by one of them, or nothing starts; with a\n"
      "chunk table (ARCHIVE.sums) each chunk is checked as it is read, so a lazy boot stays lazy.\n"

      "Clones: every boot is a clone with an id of its own (clone-id), a fresh VM generation ID, its own overlay and\n"
      "sockets, and for every NIC its archive records a MAC derived from that id (locally administered, unicast;\n"
      "--keep-mac keeps the recorded ones). Lazily resumed clones of one archive share one page server: clean pages\n"
      "are read once, writes stay each clone's own (docs/LAZY-RESUME.md). --count N starts N detached clones at\n"
      "once (--qmp/--console/--overlay then need {n}, replaced by the clone's index; --json: {\"clones\": [...]}); if\n"
      "one fails, the others are stopped.\n"
      "Working set: --record-ws SECONDS (lazy resume only) records, in order, the RAM ranges the guest asks for until\n"
      "SECONDS after it runs, through a page server of this boot's own with no prefetch; then writes them to the run\n"
      "directory (working-set; ws.json and the log say how many pages) for `vmsnap ws save`. Booting an archive that\n"
      "has a working set prefetches it first (ws.json: bytes and seconds); --prefetch none turns that off too." },
    { "snap", cmd_snap,
      "snap --qmp PATH | --libvirt DOMAIN [-c URI] -o OUT.vmsnap [--thin [--parent PREV]] [--mode live|stop] [--compress CODEC] "
      "[--memory-only | --disks NAME,...] [--encrypt KEYFILE] [--cipher aes-256-gcm|xchacha20-poly1305] "
      "[--trusted-keys DIR|FILE] [--json] [--quiet]",
      "Snapshot a running VM. For a VM started by 'vmsnap boot': memory, device state and disks from one instant,\n"
      "the guest paused for milliseconds (--mode stop: paused until the archive is durable); --thin stores only what\n"
      "changed since the archive the VM runs on. For another QEMU (QEMU >= 7.1): RAM, device state, its command line\n"
      "and every writable disk, from one instant (each disk read through a copy-before-write filter that vmsnap puts\n"
      "in front of it for the snapshot and removes after; read-only disks are skipped); --disks vda,sdb chooses the\n"
      "disks (qdev ids, else drive names), --memory-only takes none. Each capture leaves a dirty bitmap named after\n"
      "its archive on the disks (vmsnap-UUID, persistent on qcow2); --thin --parent PREV reads only what PREV's marks\n"
      "(without it: everything, compared against PREV) and removes the older one.\n"
      "--libvirt DOMAIN (name or UUID; -c: libvirt URI) reaches a libvirt domain's QEMU through libvirt's API\n"
      "instead of a socket, and its writable disks (--disks by target dev: vda) through libvirt's backup API, from\n"
      "the same instant; --thin --parent PREV reads only what changed since PREV through libvirt checkpoints\n"
      "(docs/LIBVIRT.md). On any failure the VM keeps running and no file is left under OUT.\n"
      "Aliases: --socket, --output, --connect.\n"
      "The VM is left in the run state it had (checked with query-status): a paused VM stays paused. --json says\n"
      "who resumed it (resumed-by: qemu, vmsnap or left-paused-as-found) and how the pause was measured.\n"
      "--encrypt KEYFILE seals the archive with that key (vmsnap keygen); a VM booted from an encrypted archive is\n"
      "snapshotted with its key anyway, and a --thin snapshot always uses its parent's key. The cipher of an\n"
      "encrypted snapshot: the fastest here (as pack's), or --cipher's; each archive of a chain has its own.\n"
      "--trusted-keys (or $VMSNAP_TRUSTED_KEYS): --parent PREV's chain must be signed by a trusted key." },
    { "commit", cmd_commit, "commit BASE.vmsnap OVERLAY -o OUT.vmsnap [--memory STREAM] [--thin] [--keep-overlay] "
      "[--key KEYFILE] [--encrypt KEYFILE] [--cipher aes-256-gcm|xchacha20-poly1305] [--trusted-keys DIR|FILE]",
      "Merge an overlay (and optionally a raw QEMU migration stream) into a new archive over BASE, thick or thin.\n"
      "The overlay is removed after a successful commit unless --keep-overlay. An encrypted BASE needs --key (or\n"
      "$VMSNAP_KEY_FILE) and the new archive is sealed with it, or with --encrypt's key (thick only: a thin archive\n"
      "uses its parent's key). --cipher: as pack's, for an encrypted new archive (each archive of a chain has its\n"
      "own). --trusted-keys (or $VMSNAP_TRUSTED_KEYS): BASE's chain must be signed by a trusted key." },
    { "pack", cmd_pack,
      "pack DISK [DISK2 ...] [--format raw|qcow2] [--follow-backing[=DIR]] [--memory FILE] [--config FILE.json] -o OUT.vmsnap "
      "[--compress lz4|zstd[:LEVEL]|none] [--block-size SIZE] [--threads N] [--parent ARCHIVE] [--message TEXT] [--quiet] "
      "[--encrypt KEYFILE [--cipher aes-256-gcm|xchacha20-poly1305]] [--key KEYFILE]",
      "Pack disk images (and optionally a QEMU migration stream and a JSON config) into one compressed,\n"
      "checksummed, random-access archive. Disks are raw files, block devices or qcow2 images (v2/v3, compressed\n"
      "and zero clusters, subclusters, raw/qcow2 backing files; encrypted images and external data files are\n"
      "refused). A disk is read as qcow2 only when --format qcow2 says so or its name ends in .qcow2; anything\n"
      "else is packed as raw bytes, even if it starts with a qcow2 header (a guest can write one into its own\n"
      "disk). Backing files are not followed unless --follow-backing is given, and then only to regular files\n"
      "(never devices, FIFOs or sockets) whose real path, symbolic links and '..' resolved, lies inside DIR\n"
      "(default: the directory of the disk named on the command line); absolute names are followed under the\n"
      "same rule. A backing file without a recorded format is qcow2 only if named .qcow2. Holes and unallocated\n"
      "clusters cost nothing. With --parent, store only the blocks that differ from ARCHIVE (a thin archive that\n"
      "needs its parent to be read). --memory accepts a pipe. --encrypt KEYFILE seals the archive (its directory,\n"
      "index and every block) with a key from 'vmsnap keygen'; the header stays readable. The cipher: AES-256-GCM\n"
      "where the CPU has AES-NI, else XChaCha20-Poly1305, or --cipher's (docs/FORMAT.md; libsodium reads\n"
      "AES-256-GCM only on CPUs with AES-NI). An encrypted --parent needs --key (or $VMSNAP_KEY_FILE), and a thin\n"
      "child uses its key." },
    { "info", cmd_info, "info ARCHIVE [--json] [--key KEYFILE] [--trusted-keys DIR|FILE]",
      "Show an archive's streams (logical and stored sizes, ratio, block counts), UUID, dates, parent chain and config.\n"
      "An encrypted archive without its key (--key, $VMSNAP_KEY_FILE) shows its header: encrypted, and the key's id.\n"
      "With --trusted-keys (or $VMSNAP_TRUSTED_KEYS) the chain must be signed by trusted keys; their signers are\n"
      "shown." },
    { "verify", cmd_verify, "verify ARCHIVE [--quiet] [--key KEYFILE] [--trusted-keys DIR|FILE]",
      "Read and check every block, index page and the parent chain. Exit 0 when sound, 1 naming every problem.\n"
      "Signatures (ARCHIVE.sig, beside each archive of the chain) are checked and their signers' key ids shown;\n"
      "with --trusted-keys (or $VMSNAP_TRUSTED_KEYS) each archive must carry one by a trusted key. With a chunk\n"
      "table (ARCHIVE.sums) every chunk read is checked against it." },
    { "cp", cmd_cp, "cp SRC DST [--with-parents] [--json] [--quiet] [--key KEYFILE] [--encrypt KEYFILE "
      "[--cipher aes-256-gcm|xchacha20-poly1305]] [--trusted-keys DIR|FILE]",
      "Copy an archive between local files and object stores (s3://BUCKET/KEY; https:// as SRC), in either\n"
      "direction, byte for byte (never decompressed). The copy appears only when complete (a temp file renamed, or\n"
      "a multipart upload completed last) and is verified on arrival by reading it back from DST; a copy that\n"
      "fails verification is removed. --with-parents copies a thin archive's parents first, each to where its\n"
      "parent hint leads from DST (a parent already there with the right UUID is kept). An encrypted archive is\n"
      "copied sealed as it is; checking it needs its key (--key KEYFILE, else $VMSNAP_KEY_FILE). ARCHIVE.sig and\n"
      "ARCHIVE.sums come along. With --trusted-keys (or $VMSNAP_TRUSTED_KEYS) SRC's chain must be signed by a\n"
      "trusted key, and every byte copied is checked against its chunk table.\n"
      "--encrypt KEYFILE writes an encrypted copy instead: the same streams and content in a new archive (a new\n"
      "UUID) sealed with that key (as pack --encrypt), compared with its source by reading both back. A thin\n"
      "archive needs --with-parents: its parents are encrypted first, each to where its hint leads from DST\n"
      "(never over an existing file), and the child refers to them. An encrypted source needs its --key and is\n"
      "re-encrypted. Signatures do not carry over (sign the copy). On failure nothing written is left." },
    { "extract", cmd_extract, "extract ARCHIVE (--disk N | --memory | --config) -o FILE [--quiet] [--key KEYFILE] "
      "[--trusted-keys DIR|FILE]",
      "Write one stream out byte for byte; zero blocks become holes. Disks count from 0 in pack order.\n"
      "Memory is written mode 0600 (so are archives holding memory: snap, pack --memory, commit --memory).\n"
      "With --trusted-keys (or $VMSNAP_TRUSTED_KEYS) the chain must be signed by a trusted key (chunks checked)." },
    { "keygen", cmd_keygen, "keygen [--sign] -o KEYFILE",
      "Make a new key. Without --sign: an archive key (for --encrypt and --key), KEYFILE mode 0600. With --sign: an\n"
      "Ed25519 signing pair, the secret in KEYFILE (0600) and the public key in KEYFILE.pub (for --trusted-keys).\n"
      "An existing file is never overwritten. Prints the key's id, which archives and messages use to name it." },
    { "sign", cmd_sign, "sign ARCHIVE --key SIGNING.key [--chunk-size SIZE]",
      "Sign ARCHIVE with an Ed25519 key from 'keygen --sign': its header, its size and its chunk table, the\n"
      "BLAKE2b-256 of every 256 KiB chunk (--chunk-size: a power of two from 64K to 16M), written to ARCHIVE.sums\n"
      "(shared by every signer of the same bytes), so readers check each chunk as they read it.\n"
      "The signature is added to ARCHIVE.sig beside it (the archive is not touched; a file holds several\n"
      "signatures, one line each; signing again with the same key replaces that key's). A thin archive's parents\n"
      "are signed on their own. boot, serve and verify check signatures with --trusted-keys (docs/SECURITY.md).\n"
      "An encrypted archive is signed as stored (sealed); its archive key comes from $VMSNAP_KEY_FILE." },
    { "qmp", cmd_qmp, "qmp SOCKET COMMAND [JSON-ARGUMENTS] [--timeout SECONDS]",
      "Send one QMP command to the QEMU listening on SOCKET and print its \"return\" value as JSON.\n"
      "On an error reply, print QEMU's error class and description and exit 1.\n"
      "JSON-ARGUMENTS is a JSON object. --timeout bounds each wait (default 30 s).\n"
      "VMSNAP_QMP_DEBUG=1 logs the QMP traffic to stderr." },
    { "internal", cmd_internal,
      "internal save|load|delete --qmp PATH TAG [--vmstate NODE] [--devices NODE,...] [--hmp] [--json] | "
      "internal list --qmp PATH [--json]",
      "Drive QEMU's own internal (qcow2) snapshots: VM state and disks saved inside the qcow2 images.\n"
      "Uses the snapshot-save/-load/-delete jobs (QEMU 6.0+), else HMP savevm/loadvm/delvm (--hmp forces it).\n"
      "Without --devices every writable disk is snapshotted and must be qcow2; --devices NODE,... limits the\n"
      "snapshot to those nodes, --vmstate NODE picks where the VM state goes (default: the first device).\n"
      "Refused early, naming the node: a disk that cannot hold snapshots, a tag that exists (save) or is\n"
      "missing (load, delete). The VM runs afterwards if it ran before (checked with query-status); a paused\n"
      "VM stays paused. --json says who resumed it (resumed-by: qemu, vmsnap or left-paused-as-found) and\n"
      "the state-before and state-after. 'list' shows each device's snapshots: tag, date, VM state size and\n"
      "VM clock. --timeout SECONDS bounds the wait." },
    { "dump", cmd_dump,
      "dump --qmp PATH -o FILE [--format elf|kdump-zlib|kdump-lzo|kdump-snappy|win-dmp] [--paging] [--json]",
      "Write a crash-analysis dump of guest memory (dump-guest-memory) to FILE, passed to QEMU as an fd.\n"
      "The ELF format (default) is readable by readelf, gdb and crash. QEMU stops the VM while it dumps and\n"
      "resumes it afterwards if it ran (checked; --json: resumed-by, state-before, state-after). Formats this\n"
      "QEMU lacks are refused with the list it has. --paging follows the guest's page tables (ELF only).\n"
      "FILE is written under a temporary name, fsynced and renamed; mode 0600.\n"
      "Options: --quiet (no progress), --timeout SECONDS." },
    { "status", cmd_status, "status --qmp PATH [--watch] [--interval SECONDS] [--json]",
      "Show the VM's run state and, during a migration or snapshot, QEMU's MigrationInfo: status,\n"
      "transferred/remaining/total bytes, throughput, dirty pages rate, expected downtime, downtime, setup\n"
      "time. --watch refreshes (every --interval, default 1 s) until the migration ends or Ctrl-C, connecting\n"
      "for each poll only; with --json it prints one document at the end holding the samples." },
    { "dirty-rate", cmd_dirty_rate, "dirty-rate --qmp PATH [--seconds N] [--throughput RATE] [--json]",
      "Measure how fast the guest dirties memory (calc-dirty-rate, page sampling, over N seconds, default 1)\n"
      "and estimate how long a stop-mode and a live snapshot of this VM would take and pause it.\n"
      "RATE is bytes per second (e.g. 500M).\n" QOPS_ESTIMATE_MODEL_TEXT },
    { "serve", cmd_serve, "serve ARCHIVE --socket PATH [--disk N] [--overlay FILE] [--read-only] [--raw] "
      "[--control PATH] [--threads N] [--key KEYFILE] [--trusted-keys DIR|FILE]",
      "Serve disk N (default 0) of ARCHIVE over NBD on the Unix socket PATH (mode 0600), export name \"\" (any\n"
      "name is accepted). Reads come from the archive, writes go to a 4 KiB copy-on-write overlay: FILE (created\n"
      "if absent, kept) or a temporary one removed at exit. --read-only refuses writes. --raw serves a raw image\n"
      "file instead of an archive. --control PATH opens the control socket (docs/CONTROL.md: freeze, status,\n"
      "rebase). SIGTERM or SIGINT: finish requests in flight, flush the overlay and exit 0.\n"
      "--trusted-keys (or $VMSNAP_TRUSTED_KEYS): serve only an archive whose chain is signed by a trusted key (a\n"
      "rebase target too)." },
    { "mem", cmd_mem,
      "mem (split STREAM|- -o DIR [--split BLOCKS] [--json] | reassemble DIR -o STREAM | pack DIR -o OUT.vmsnap "
      "[--compress CODEC] | serve DIR|ARCHIVE MOUNTPOINT | load --qmp SOCKET STREAM|ARCHIVE [--json] [--key KEYFILE] "
      "[--trusted-keys DIR|FILE])",
      "Memory as pages (building blocks of lazy resume). split: parse a QEMU migration stream into a checksummed\n"
      "page image of the named RAM blocks (default \"mem\") plus a device stream without those pages; a stream it\n"
      "does not understand is refused as unsupported. reassemble: the inverse, a stream QEMU loads. serve: mount\n"
      "the image's blocks as FUSE files (for -object memory-backend-file,share=off) until SIGINT/SIGTERM; a page\n"
      "that fails its checksum fails the read. pack: the image as an archive (a RAM stream per block, zero pages\n"
      "free, plus the device stream); serve and load read such an archive too (blocks checked as read).\n"
      "load: feed a stream to a QEMU started with -incoming defer (getfd + pipe, migrate-incoming fd:).\n"
      "With --trusted-keys (load) or $VMSNAP_TRUSTED_KEYS (serve, load) an ARCHIVE's chain must be signed by a\n"
      "trusted key, and a stream file (which carries no signature) is refused." },
    { "ws", cmd_ws, "ws save (--qmp PATH | RUNDIR) -o OUT.vmsnap [--key KEYFILE] [--message TEXT] [--json]",
      "Working sets (docs/LAZY-RESUME.md, \"Working set\"). save: the working set a VM booted with --record-ws\n"
      "recorded (found from its QMP socket or run directory, while it runs) into OUT.vmsnap, a thin archive over the\n"
      "archive the VM was booted from: every stream of it by reference, no data copied, plus the stream\n"
      "\"working-set\" (sealed with the parent's key when that is encrypted; OUT may be s3://...). Booting OUT\n"
      "prefetches those pages first, in large reads, while the guest runs. --json: output, parent, ranges, pages,\n"
      "bytes." },
    { "help", cmd_help, "help [COMMAND]", "Show the list of commands, or the help of one command." },
    { "version", cmd_version, "version", "Print vmsnap's version." },
    { NULL, NULL, NULL, NULL },
};

const struct cli_command *cli_find(const char *name)
{
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("vmsnap: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

json_t *cli_json_text(const char *s)
{
    if (!s)
        return json_null();
    if (vs_text_ok(s, strlen(s)))
        return json_string(s);
    VS_AUTOFREE char *x = vs_text_escape(s);
    return json_string(x);
}

int cli_fail_err(const vs_err *e)
{
    return cli_fail("%s", e->msg[0] ? e->msg : "unknown error");
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("vmsnap: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, " (see 'vmsnap help %s')\n", cmd);
    else
        fputs(" (see 'vmsnap help')\n", stderr);
    return CLI_USAGE;
}

bool cli_progress_enabled(bool quiet)
{
    return !quiet && isatty(STDERR_FILENO);
}

void cli_print_help(FILE *f, const struct cli_command *c)
{
    fprintf(f, "usage: vmsnap %s\n\n%s\n", c->synopsis, c->help);
}

static void print_overview(FILE *f)
{
    fputs("usage: vmsnap [--version] [--help] COMMAND [ARGS]\n\n"
          "Live snapshots of running QEMU virtual machines.\n\ncommands:\n", f);
    for (const struct cli_command *c = cli_commands; c->name; c++)
        fprintf(f, "  vmsnap %s\n", c->synopsis);
    fputs("\nAn ARCHIVE (and -o, --parent) is a local path, s3://BUCKET/KEY, or (read-only) an http(s):// URL\n"
          "(docs/OBJECT-STORE.md).\n\nenvironment:\n"
          "  VMSNAP_QEMU            the QEMU binary (after --qemu)\n"
          "  VMSNAP_CACHE_DIR, VMSNAP_CACHE_SIZE, VMSNAP_CACHE   the local block cache (docs/CACHE.md)\n"
          "  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   S3 credentials, else the profile\n"
          "                         AWS_PROFILE (default 'default') of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE)\n"
          "  AWS_REGION, AWS_DEFAULT_REGION   the region signed for (default us-east-1)\n"
          "  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL   an S3-compatible endpoint (path-style), e.g. Ceph RGW\n"
          "  VMSNAP_S3_DEADLINE     seconds of retries before a store request fails (default 30)\n"
          "  VMSNAP_S3_MAX_RATE     bytes/s per upload transfer (default unlimited)\n", f);
}

int cmd_help(int argc, char **argv)
{
    if (argc > 2)
        return cli_usage("help", "help takes at most one command name");
    if (argc == 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h")) {
        const struct cli_command *c = cli_find(argv[1]);
        if (!c)
            return cli_usage(NULL, "unknown command '%s'", argv[1]);
        cli_print_help(stdout, c);
        return CLI_OK;
    }
    print_overview(stdout);
    return CLI_OK;
}

int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage("version", "version takes no arguments");
    printf("vmsnap %s\n", VMSNAP_VERSION);
    return CLI_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_overview(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--version") || !strcmp(name, "-V"))
        return cmd_version(1, argv + 1);
    if (!strcmp(name, "--help") || !strcmp(name, "-h"))
        return cmd_help(1, argv + 1);
    if (name[0] == '-')
        return cli_usage(NULL, "unknown option '%s'", name);
    const struct cli_command *c = cli_find(name);
    if (!c)
        return cli_usage(NULL, "unknown command '%s'", name);
    /* "vmsnap CMD --help" is handled uniformly here. */
    for (int i = 2; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_print_help(stdout, c);
            return CLI_OK;
        }
    }
    return c->run(argc - 1, argv + 1);
}
