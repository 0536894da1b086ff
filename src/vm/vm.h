/* vm: what vmsnap knows about a virtual machine and how it drives QEMU.
 *
 *  - the VM config model (JSON <-> struct) recorded in archives;
 *  - QEMU's argv, built from a config (never a shell string);
 *  - the per-user run directory of a VM started by `vmsnap boot` (private QMP socket, NBD sockets, the boot
 *    host's control socket, state file) and how `snap` finds it from the user's QMP socket alone;
 *  - the accelerator choice (auto|kvm|tcg) with the host's verdict cached;
 *  - snapshot and resume orchestration (vm_snap_*, vm_resume_*).
 *
 * Prefix: vm_. The library never prints or exits; errors are a negative errno plus a vs_err. */
#ifndef VMSNAP_VM_H
#define VMSNAP_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "archive/archive.h"
#include "nbd/nbd.h"
#include "qmp/qmp.h"
#include "util/util.h"

#include <jansson.h>

/* ---- config model ------------------------------------------------------------------------------------------
 * Recorded in an archive's config stream as JSON (docs/FORMAT.md, "VM config"). Unknown JSON keys are ignored;
 * a config with a newer "version" than we know is refused. */
#define VM_CONFIG_VERSION 1
#define VM_MEM_BACKEND_ID "mem"   /* boot names main RAM with this backend id (memory as pages: ram/mem) */

struct vm_disk {
    char *format;        /* "raw" (what QEMU sees over NBD) */
    char *iface;         /* "virtio"; a foreign VM's captured disk: its device's driver ("virtio-blk-pci") */
    uint64_t size;       /* bytes, 0 if unknown */
    /* A disk captured from a foreign VM (snap --qmp of a QEMU vmsnap did not start), NULL otherwise: */
    char *name;          /* what snap --disks takes: qdev id, else drive name, else node name */
    char *stream;        /* the archive's disk stream holding it */
    char *device;        /* qdev id or QOM path of the device */
    char *node;          /* node-name the device's drive pointed to at capture */
    char *drive;         /* BlockBackend name (-drive id); NULL for a -blockdev device */
};

/* Files the VM needs to start, stored in thick archives as named blobs "file:<role>". */
enum vm_file_role { VM_FILE_KERNEL, VM_FILE_INITRD, VM_FILE_DTB, VM_FILE__COUNT };
const char *vm_file_role_name(enum vm_file_role r);   /* "kernel", "initrd", "dtb" */

/* Files named inside EXTRA-QEMU-ARGS that the VM needs to start and that are not part of the QEMU installation:
 * firmware (-bios, pflash code) and firmware variables (a writable pflash unit), -device loader images. Stored in
 * thick archives as named blobs "file:<name>"; boot hands QEMU copies in the run directory instead (a writable one
 * is a per-boot copy: the archive is never written). */
#define VM_XFILE_NAME_MAX 16
struct vm_xfile {
    char *name;          /* "bios", "pflash0", "pflash1", "loader0", ...: blob name, run-dir file "fw-<name>" */
    char *path;          /* absolute path as named on the command line */
    bool writable;       /* QEMU writes it (firmware variables): its content is stored as of the snapshot */
};

/* Where a file is named in an argument list: extra[arg][start, start+len) holds the path as written
 * (",," for a comma when escaped). */
struct vm_xfile_ref {
    char name[VM_XFILE_NAME_MAX];
    size_t arg, start, len;
    bool escaped;        /* QEMU option syntax (-drive, -device, -blockdev); -bios/-pflash take the raw path */
    bool writable;
    char *path;          /* unescaped */
};
/* Every file reference found in args: -bios, -pflash, -drive if=pflash, -blockdev nodes behind -machine
 * pflash0=/pflash1= (key=value form), -device loader,file=. Protocol URIs and JSON forms are not files here. */
int vm_xfile_refs(char *const *args, size_t n, struct vm_xfile_ref **out, size_t *nout);
void vm_xfile_refs_free(struct vm_xfile_ref *r, size_t n);
/* arg with r's path replaced by path (escaped as r says). Caller frees. */
char *vm_xfile_ref_replace(const char *arg, const struct vm_xfile_ref *r, const char *path);
/* A file of the QEMU installation (/usr/share/..., /usr/lib/..., a bare name QEMU finds in its data dirs): such
 * a read-only file is not stored; it comes with QEMU. */
bool vm_xfile_is_installed(const char *path);

struct vm_config {
    char *qemu;            /* binary the VM ran under, as chosen locally (informational: never run from a config) */
    char *qemu_version;    /* "7.2.22" as reported by query-version, NULL if unknown */
    char *machine;         /* machine type QEMU ran, versioned ("pc-i440fx-7.2"); older archives: as asked ("pc",
                            * "q35") or NULL (QEMU's default), see vm_machine_infer */
    uint64_t ram_bytes;    /* 0: QEMU's default */
    unsigned cpus;         /* 0: QEMU's default */
    char *accel;           /* accelerator the VM ran under ("kvm"/"tcg"); NULL if unknown */
    char *files[VM_FILE__COUNT];  /* -kernel/-initrd/-dtb paths as given at boot (absolute), NULL if none */
    char *append;          /* kernel command line */
    char *mem_backend;     /* id of the backend naming main RAM, NULL if none */
    bool vmgenid;          /* has vmsnap's vmgenid device: every boot/resume gets a fresh VM generation ID, so
                            * clones resumed from one snapshot can tell they are clones (reseed RNGs, new IDs) */
    size_t n_disks;
    struct vm_disk *disks;
    size_t n_extra;
    char **extra;          /* EXTRA-QEMU-ARGS, after -kernel/-initrd/-dtb/-append were lifted out */
    size_t n_xfiles;
    struct vm_xfile *xfiles;  /* files named in extra that a thick archive stores (set by vm_config_add_extra) */
    /* A VM vmsnap did not start (snap --memory-only): its command line and working directory, verbatim. */
    bool foreign;
    size_t n_cmdline;
    char **cmdline;
    char *cwd;
    size_t redacted;       /* secrets replaced in cmdline when it was read (vm_cmdline_redact); not stored */
};

void vm_disk_free(struct vm_disk *d);       /* frees members, zeroes d */
void vm_config_init(struct vm_config *c);
void vm_config_free(struct vm_config *c);   /* frees members; c may be reused after vm_config_init */
int vm_config_copy(struct vm_config *dst, const struct vm_config *src);
void vm_config_add_xfile(struct vm_config *c, const char *name, const char *path, bool writable);
void vm_config_clear_xfiles(struct vm_config *c);
/* JSON text (NUL-terminated, caller frees). */
char *vm_config_to_json(const struct vm_config *c);
/* A foreign VM's captured disks are checked when read: node and drive are QEMU ids (node also QEMU's generated
 * "#blockN"), device an id or a QOM path, name printable ASCII; stream and node are required. */
int vm_config_from_json(const char *text, size_t len, struct vm_config *out, vs_err *e);
/* Append EXTRA-QEMU-ARGS to c->extra, lifting -kernel/-initrd/-dtb/-append (and their `-opt=value` forms) into
 * their fields; file paths are made absolute against cwd, also those inside the extra args (vm_xfile_refs), and
 * c->xfiles is recomputed: every writable file, and every read-only one outside the QEMU installation. */
int vm_config_add_extra(struct vm_config *c, char *const *args, size_t n, vs_err *e);
/* Parse a foreign QEMU's command line (argv[0] is the binary) into c: foreign=true, cmdline (secrets redacted) and
 * cwd recorded, and what can be read from it (machine, -m, -smp, accel, files) filled in for `info` and the RAM check. */
int vm_config_from_cmdline(struct vm_config *c, char *const *argv, size_t argc, const char *cwd, vs_err *e);

/* ---- argv ---------------------------------------------------------------------------------------------------- */
struct vm_argv {
    size_t n, cap;
    char **v;   /* NULL-terminated */
};
void vm_argv_init(struct vm_argv *a);
void vm_argv_free(struct vm_argv *a);
void vm_argv_add(struct vm_argv *a, const char *s);
void vm_argv_addf(struct vm_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* How this particular QEMU process is wired: everything that is not part of the VM's identity. */
struct vm_launch {
    const char *qemu;              /* QEMU binary to run (vm_qemu_binary); never the one a config records */
    const char *accel;             /* "kvm"/"tcg" (already resolved) */
    const char *private_qmp;       /* vmsnap's own -qmp socket path (required) */
    const char *user_qmp;          /* the user's -qmp socket path, NULL for none */
    const char *console;           /* unix socket path for ttyS0, "stdio", or NULL (socket-less null chardev) */
    const char *const *disk_sockets;  /* n_disks NBD unix socket paths (vmsnap VMs, a foreign VM's captured disks) */
    bool keep_uncaptured;          /* foreign: disks that were not captured stay as recorded (vm_foreign_disks) */
    char **disk_note;              /* foreign: gets vm_foreign_disks's note (caller frees); may be NULL */
    char **replay_note;            /* foreign: gets vm_foreign_unmanaged's note (caller frees); may be NULL */
    const char *files[VM_FILE__COUNT]; /* paths overriding c->files (extracted from the archive), may be NULL */
    size_t n_xfiles;
    const struct vm_xfile *xfiles; /* {name, path}: the extra args' file of that name is replaced by path */
    bool incoming;                 /* -incoming defer */
    const char *mem_path;          /* main RAM as a private mapping of this file (lazy resume), NULL: as recorded
                                    * (a foreign VM: vm_foreign_ram_file) */
};
/* Build QEMU's argv for c. A foreign config replays its recorded command line with -daemonize/-pidfile and its
 * monitors dropped, our QMP sockets added and ttyS0 replaced by the console. */
int vm_build_argv(const struct vm_config *c, const struct vm_launch *l, struct vm_argv *out, vs_err *e);
/* The QEMU binary vmsnap runs is a local choice: flag (may be NULL), else $VMSNAP_QEMU, else qemu-system-x86_64
 * from PATH. What an archive records is informational and never run. */
const char *vm_qemu_binary(const char *flag);

/* ---- QEMU option syntax (qopt.c) -----------------------------------------------------------------------------
 * An option value is comma-separated fields, "key=value" or a bare value (the implied key when first); "," inside
 * a value is written ",,". */
char *vm_qemu_escape(const char *s);   /* caller frees */
struct vm_qopt_field {
    const char *key;   /* NULL for a bare field (no '=') */
    size_t klen, vstart, vend;   /* the value (still escaped) is s[vstart, vend) */
};
/* The field at *pos of s[0, n) (n = strlen(s)); *pos moves past it. False at the end. */
bool vm_qopt_next(const char *s, size_t n, size_t *pos, struct vm_qopt_field *f);
bool vm_qopt_key_is(const struct vm_qopt_field *f, const char *key);
char *vm_qopt_unescape(const char *s, size_t start, size_t end);   /* caller frees */
/* Unescaped value of the first field named key, or NULL; *f (may be NULL) gets that field. */
char *vm_qopt_get(const char *s, const char *key, struct vm_qopt_field *f);
/* The first field when bare (QEMU's implied key, e.g. -machine's type), else key=...; NULL if neither. */
char *vm_qopt_get_implied(const char *s, const char *key);
/* s with only the fields whose key is (keep) or is not (!keep) in keys, a space-separated list with a space at
 * each end (" id size "); a bare field stays only when !keep. Fields stay escaped. Caller frees. */
char *vm_qopt_filter(const char *s, const char *keys, bool keep);
/* s with the first field named key set to value (escaped here), or with key=value appended. Caller frees. */
char *vm_qopt_set(const char *s, const char *key, const char *value);
/* "-opt"/"--opt" -> "opt", else NULL. */
const char *vm_qopt_name(const char *arg);

/* Either form of an option value: key=value (above) or JSON ("{...}", as libvirt writes -device, -object,
 * -blockdev, -netdev, -audiodev). JSON that is not one object, or repeats a key, is no value (QEMU refuses it). */
bool vm_opt_is_json(const char *v);   /* v[0] == '{' */
struct vm_opt_kv {
    const char *key;     /* NULL: a bare key=value field; JSON: nested members as dotted keys ("file.filename") */
    const char *value;   /* unescaped; a JSON integer in decimal, a boolean "on"/"off"; NULL: any other JSON */
    size_t vstart;       /* key=value: where the escaped value starts in v; JSON: SIZE_MAX */
};
typedef int (*vm_opt_fn)(void *opaque, const struct vm_opt_kv *f);
/* fn for each field of v in order, until it returns nonzero (returned). -EINVAL: v is not valid JSON. */
int vm_opt_fields(const char *v, vm_opt_fn fn, void *opaque);
/* Value of the first field named key, or NULL; implied: a bare first key=value field too (the option's implied key,
 * which JSON names). Caller frees. */
char *vm_opt_get(const char *v, const char *key, bool implied);
/* v with field key set to value (key=value: escaped; JSON: a string), NULL value: removed; in v's own form. The
 * _bool one writes on/off or true/false. NULL for bad JSON. Caller frees. */
char *vm_opt_set(const char *v, const char *key, const char *value);
char *vm_opt_set_bool(const char *v, const char *key, bool on);
/* vm_qopt_filter for either form (JSON: top-level members). NULL for bad JSON. Caller frees. */
char *vm_opt_filter(const char *v, const char *keys, bool keep);

/* ---- NICs of a command line (nic.c) --------------------------------------------------------------------------- */
/* "52:54:00:12:34:56" (hex digits, either case) -> out. */
bool vm_mac_parse(const char *s, uint8_t out[6]);
/* The MAC of NIC `index` of the clone `id`: locally administered, unicast, from a hash of both. */
void vm_mac_for_clone(const uint8_t id[16], unsigned index, uint8_t out[6]);
/* Give every NIC that args[from, n) creates (-device of a NIC model, in QEMU's option syntax or JSON; -nic; -net nic)
 * the MAC of the clone id, in order; a MAC already there must be well formed. Returns how many, or -EINVAL naming
 * the argument. */
int vm_nics_remac(char **args, size_t from, size_t n, const uint8_t id[16], vs_err *e);
/* Whether QEMU's option (name without dashes) takes a value. */
bool vm_qopt_takes_arg(const char *name);

/* A foreign config's recorded options that are replayed, in order (argv[0], -daemonize, -pidfile, -S, monitors and
 * the chardevs only they used, -incoming dropped; -nographic as -display none; with accel_override -enable-kvm and
 * -accel too). *console_at: index where vmsnap's console goes as the first serial port (SIZE_MAX: none). */
int vm_foreign_replayed(const struct vm_config *c, bool accel_override, struct vm_argv *out, size_t *console_at,
                        vs_err *e);

/* What only a managing process (libvirt) gave the recorded QEMU, rewritten in args (fmanaged.c): -chardev with fd=
 * becomes -chardev null of the same id, -netdev with fd=/fds= becomes -netdev user of the same id, libvirt's master
 * key -object secret (file .../master-key.aes) that no other argument names is dropped. *note (caller frees) gets
 * one clause per rewrite, "; "-separated; unchanged when there is none. *console_at follows its argument. */
void vm_foreign_unmanaged(struct vm_argv *args, size_t *console_at, char **note);

/* A captured foreign VM's disks (config "disks" with their nodes) served by vmsnap (fdisks.c): in args, the replayed
 * command line of vm_foreign_replayed, each captured disk becomes vmsnap's NBD export while its device and the
 * device's properties stay: a -blockdev node the device's drive named becomes a raw node of the same node-name
 * over NBD (the -blockdev nodes only its chain used are dropped); a -drive (or -hda..-hdd) keeps id, if, index,
 * bus, unit, media, serial, ... and gets the export instead of its file, format and driver. Disks that were not
 * captured (read-only ones: a cdrom) name host files of the recorded VM: they stay as recorded with
 * keep_uncaptured, else a cdrom is emptied (no medium) and any other disk dropped with its device; *note (may be
 * NULL; caller frees) then names them. Without keep_uncaptured a -L outside the QEMU installation (the recorded
 * QEMU's data directories, a local matter like its binary) is dropped too. *console_at follows its argument. */
struct vm_fdisk_opts {
    const char *const *sockets;   /* NBD socket per c->disks[i]; NULL: the view the allow-list checks (the
                                   * replaced -blockdev nodes are vmsnap's own and left out) */
    bool keep_uncaptured;
};
int vm_foreign_disks(const struct vm_config *c, const struct vm_fdisk_opts *o, struct vm_argv *args,
                     size_t *console_at, char **note, vs_err *e);

/* A foreign VM's main RAM as a private mapping of a page file, for a lazy resume (fmem.c): its backend (-object
 * memory-backend-* named by -machine memory-backend=, or QEMU's own "pc.ram" of plain -m on pc/q35) becomes a
 * memory-backend-file of the same id and size on mem_path, share=off. vm_foreign_ram_check: 0 if the archive's
 * RAM stream of block `block` and size bytes is that backend's, else -ENOTSUP and why (one line). */
int vm_foreign_ram_check(const struct vm_config *c, const char *block, uint64_t size, char *why, size_t len);
/* Rewrites args (the replayed command line) that way. */
void vm_foreign_ram_file(const struct vm_config *c, struct vm_argv *args, const char *mem_path);

/* ---- what an archive may put on QEMU's command line (allow.c) ----------------------------------------------
 * Every recorded value is checked against what vmsnap itself writes: options, machine types, device models and
 * properties from an allow-list, values without host paths, files only as copies stored in the archive (or read-only
 * files of the QEMU installation). docs/SECURITY.md. */
struct vm_check {
    bool (*stored)(void *opaque, const char *name);   /* a "file:<name>" blob is in the archive chain; may be NULL */
    void *opaque;
    size_t user_extra_from;            /* c->extra[i >= this] are the user's own (boot -- ARGS): not checked */
    bool user_files[VM_FILE__COUNT];   /* -kernel/-initrd/-dtb given by the user */
    bool keep_uncaptured;              /* a foreign VM's disks that were not captured stay (vm_foreign_disks) */
};
/* 0: everything c puts on QEMU's command line is allowed. -EPERM: *refused (caller frees) lists each refused option
 * and why, "'-opt value' (reason); ...", printable ASCII. Other errors: e. */
int vm_config_check(const struct vm_config *c, const struct vm_check *k, char **refused, vs_err *e);
bool vm_qemu_id_ok(const char *s);        /* QEMU's id rule: a letter, then letters, digits, '_', '.', '-' */
bool vm_disk_iface_ok(const char *s);     /* virtio, ide, scsi, sd */

/* The machine type the last -machine/-M in args asks for ("q35" of "-M q35", "pc" of "-machine type=pc,..."),
 * NULL if none does. Caller frees. */
char *vm_args_machine_type(char *const *args, size_t n);

/* ---- machine types (machine.c) -------------------------------------------------------------------------------
 * A migration stream loads only into the machine type it was saved from ("pc-i440fx-7.2"); the aliases "pc" and
 * "q35" stand for the newest type of each QEMU release. Boot records the versioned type QEMU ran (qom-get
 * /machine type), a resume pins it, and a resume the local QEMU has no such type for is refused before it starts. */
#define VM_MACHINE_NAME_MAX 64
/* A machine type name: 1-63 of [A-Za-z0-9._-], not starting with '-' (nothing QEMU's option syntax reads). */
bool vm_machine_name_ok(const char *s);
/* The versioned type a recorded config ran: its machine if versioned, else the alias (the config's, or the last
 * -machine/-M of its extra args, or "pc", QEMU's default) resolved for the recorded QEMU version ("pc" of 7.2.22
 * is "pc-i440fx-7.2", "q35" is "pc-q35-7.2"); NULL when that cannot be known (an alias, no version). */
char *vm_machine_infer(const char *machine, const char *qemu_version, char *const *extra, size_t n_extra);
/* The machine types a QEMU binary offers, and its version. Asked once per binary (a QEMU start with -machine
 * none) and cached in cache_dir (NULL: vm_cache_dir's default), keyed by the binary's path, size and mtime. */
struct vm_machines {
    char *version;        /* "10.0.2" */
    size_t n;
    char **names;         /* as QEMU lists them, aliases not included */
};
int vm_machines_get(const char *qemu, const char *cache_dir, struct vm_machines *out, vs_err *e);
void vm_machines_free(struct vm_machines *m);
void vm_machines_freep(struct vm_machines *m);
#define VM_MACHINES_AUTOFREE __attribute__((cleanup(vm_machines_freep)))
bool vm_machines_has(const struct vm_machines *m, const char *type);
/* 0 if m offers type; else -ENOTSUP and a message naming type and rec_version (the QEMU that saved it), qemu and
 * its version, and the types it has of that family. */
int vm_machine_check(const struct vm_machines *m, const char *qemu, const char *type, const char *rec_version,
                     vs_err *e);
/* The versioned machine type a running QEMU has (qom-get /machine type, without the "-machine" suffix). */
int vm_machine_current(struct qmp *q, char **out, vs_err *e);

/* ---- caches of facts that cost a QEMU start (cache.c) ---------------------------------------------------------
 * One JSON file per entry {"key", "value"} in a private directory: cache_dir if given (used only when it is ours,
 * not a symlink and without group/other access), else $XDG_CACHE_HOME/vmsnap or ~/.cache/vmsnap (created 0700),
 * never a shared fallback. Written to a fresh temp file, renamed into place. A cache that cannot be used costs
 * only the probe again. */
char *vm_cache_dir(const char *cache_dir);   /* NULL: no usable cache */
char *vm_cache_name(const char *what, const char *binary);   /* "what-<hash of binary>.json" */
json_t *vm_cache_binary_key(const char *path);   /* {binary, size, mtime}; NULL if it cannot be read */
json_t *vm_cache_get(const char *dir, const char *name, const json_t *key);   /* the value if key matches */
void vm_cache_put(const char *dir, const char *name, const json_t *key, const json_t *value);
/* A binary name resolved as execvp would (through PATH), NULL if not found. Caller frees. */
char *vm_which(const char *name);

/* ---- secrets on a recorded command line (redact.c) ----------------------------------------------------------
 * snap --memory-only stores a foreign command line: secrets are replaced by VM_REDACTED first (-object secret's
 * data, password=, URL passwords, JSON password/data members). Returns how many values were redacted. */
#define VM_REDACTED "REDACTED"
size_t vm_cmdline_redact(char **argv, size_t argc);

/* ---- accelerator ----------------------------------------------------------------------------------------------
 * "auto" uses KVM when it works on this host, else TCG. Whether it works is probed once (a QEMU start) and the
 * verdict cached (vm_cache_*), keyed by the QEMU binary, its size and mtime and the kernel release, so a boot
 * never pays for the probe again. */
int vm_accel_resolve(const char *want, const char *qemu, const char *cache_dir, char out[8], vs_err *e);

/* ---- run directory and state --------------------------------------------------------------------------------
 * Base: $XDG_RUNTIME_DIR/vmsnap, else /run/user/UID/vmsnap, else /tmp/vmsnap-UID (all 0700, owner checked).
 * One subdirectory per VM: vm-<uuid>/ with vmsnap-qmp.sock (vmsnap's private QMP), qmp.sock (the user's QMP when
 * boot got no --qmp), console.sock, nbd0.sock..., ctl.sock, state.json. The state file tells `snap` everything
 * it needs. */
struct vm_state {
    char *dir;             /* run directory of this VM */
    pid_t boot_pid;        /* the vmsnap boot process serving its disks */
    pid_t qemu_pid;
    char *private_qmp;
    char *user_qmp;        /* the user's --qmp (absolute), or the default in dir */
    char *console;
    char *control;         /* the boot host's control socket (snapshot requests), not docs/CONTROL.md's */
    char *overlay;         /* overlay file */
    char *archive;         /* archive the VM was booted from (absolute) */
    char *parent;          /* archive a --thin snap is relative to: the last snapshot, else `archive` */
    uint64_t parent_gen;   /* overlay layers up to this generation are already in `parent` */
    struct vm_config config;
};
void vm_state_free(struct vm_state *s);
#define VM_STATE_AUTOFREE __attribute__((cleanup(vm_state_free)))
int vm_rundir_base(char **out, vs_err *e);
int vm_rundir_create(char **out, vs_err *e);
int vm_state_save(const struct vm_state *s, vs_err *e);        /* dir/state.json, atomically, 0600 */
/* dir/name holding text, written to a temp name and renamed (0600). */
int vm_rundir_write(const char *dir, const char *name, const char *text, vs_err *e);
/* The same for bytes; durable: fsync'd before the rename, and the directory after it. */
int vm_rundir_write_bytes(const char *dir, const char *name, const void *buf, size_t len, bool durable, vs_err *e);
int vm_state_load(const char *dir, struct vm_state *s, vs_err *e);
/* Find the VM whose user or private QMP socket is qmp_path. 0 found, -ENOENT not a vmsnap VM. */
int vm_state_find(const char *qmp_path, struct vm_state *s, vs_err *e);
/* Peer pid of a connected unix socket (SO_PEERCRED). */
int vm_peer_pid(int fd, pid_t *pid, vs_err *e);
/* /proc/PID/cmdline and cwd. */
int vm_proc_cmdline(pid_t pid, char ***argv, size_t *argc, char **cwd, vs_err *e);

/* ---- running QEMU ------------------------------------------------------------------------------------------- */
/* fork + execvp(argv) with cwd (may be NULL); stdin/stdout/stderr inherited unless quiet (then /dev/null,
 * stderr to errlog_fd if >= 0). The child dies with the parent (PR_SET_PDEATHSIG). new_pgrp: its own process
 * group, so a terminal's Ctrl-C reaches only vmsnap (not with a console on the terminal: it must read it). */
int vm_spawn(const struct vm_argv *argv, const char *cwd, int errlog_fd, bool quiet_stdio, bool new_pgrp, pid_t *pid,
             vs_err *e);
/* Wait until a unix socket accepts connections, or the pid exits, or timeout. */
int vm_wait_socket(const char *path, pid_t pid, double timeout_s, vs_err *e);

/* ---- snapshot orchestration (snap.c) -------------------------------------------------------------------------
 * Drives QEMU's migration into w's "memory" stream and calls the hooks for the rest. On failure: migration
 * cancelled, VM resumed if vmsnap paused it, caps/params put back; the caller aborts w unless writer_consumed. */
enum vm_snap_method { VM_SNAP_BACKGROUND, VM_SNAP_PRECOPY, VM_SNAP_STOP };
const char *vm_snap_method_name(enum vm_snap_method m);   /* "background-snapshot", "precopy", "stop" */

struct vm_snap_progress {
    const char *phase;        /* "memory", "disks", "finish" */
    double elapsed_s;
    uint64_t transferred, remaining;
    double mbps;
};

struct vm_snap_opts {
    bool mode_live;           /* false: --mode stop, the VM stays paused until the archive is durable */
    double precopy_bound_s;   /* precopy fallback: stop the guest after this long without converging */
    /* Once the method is chosen, before the VM is paused (may be NULL); why: the fallback reason, "" if none. A
     * failure ends the snapshot there, the VM as it was. */
    int (*prepare)(void *opaque, enum vm_snap_method method, const char *why, vs_err *e);
    /* Freeze the disks at the snapshot instant (VM stopped, its disks flushed). NULL: memory only. */
    int (*freeze)(void *opaque, vs_err *e);
    /* After the memory stream: write the disks as of the freeze, then config/files (each may be NULL). */
    int (*write_disks)(void *opaque, struct arc_writer *w, vs_err *e);
    int (*write_rest)(void *opaque, struct arc_writer *w, vs_err *e);
    /* The frozen disks hold a block job that QEMU cannot inactivate (libvirt's backup), which fails the end of any
     * migration but a background snapshot: then the disks are written first, the VM stopped, and write_disks must
     * end the job; the memory follows with the VM still stopped (write_disks required). */
    bool disks_in_pause;
    bool (*cancelled)(void *opaque);   /* polled while waiting: true aborts the snapshot */
    /* Store memory as pages (mst_capture_fd: ram/<block> + memory-device; thin against the base's RAM) instead of
     * the opaque "memory" stream. Falls back to opaque, with res->memory_note, when QEMU has a capability the
     * splitter does not read or the splitter refuses the stream before storing a page; what it does not understand
     * after that stays in the device stream as QEMU sent it (paged, with res->memory_note); a malformed stream
     * fails the snapshot (VM resumed, no archive). tmpdir: where the device stream is spilled (NULL: /var/tmp). */
    bool paged;
    const char *tmpdir;
    void (*progress)(void *opaque, const struct vm_snap_progress *p);
    void *opaque;
};

struct vm_snap_result {
    enum vm_snap_method method;
    enum qmp_resumed_by resumed_by;   /* qmp.h */
    char state_before[32];       /* query-status before vmsnap touched the VM ("running", "paused", ...) */
    char state_after[32];        /* query-status once vmsnap let go of it */
    const char *pause_measured_by;   /* "qemu-events" (STOP/RESUME timestamps), "vmsnap-clock", NULL: no pause */
    char fallback_reason[256];   /* why background-snapshot was not used, "" if it was */
    double pause_start;          /* monotonic time the VM was stopped */
    double frozen_at;            /* seconds from the stop to the disks frozen */
    double resumed_at;           /* seconds from the stop to the VM running again: the pause vmsnap saw; NAN when
                                  * vmsnap did not pause the VM (it was paused already) */
    /* Where the pause goes, seconds from pause_start (-1: did not happen / not seen): our `stop` returned
     * (QEMU's stop flushes every disk: an NBD FLUSH to our server), `migrate` returned, and QEMU's STOP and
     * RESUME events (their timestamps, wall clock, against the wall clock read at pause_start). NAN: not seen. */
    double stop_ret_at, migrate_ret_at, stop_event_at, resume_event_at;
    double qemu_setup_s;         /* query-migrate's setup-time (background-snapshot: populating and write-protecting
                                  * RAM, before QEMU resumes the VM), NAN if not reported */
    double pause_start_wall;     /* CLOCK_REALTIME at pause_start */
    double qemu_downtime_s;      /* as QEMU reports it, -1 if not */
    double writing_s, total_s;
    uint64_t memory_bytes;
    bool stopped_to_converge;    /* precopy did not converge in time: stop-and-copy */
    bool frozen;                 /* the freeze hook ran (the overlay has a new frozen layer) */
    bool writer_consumed;        /* arc_writer_finish was called: do not abort w */
    bool memory_paged;           /* memory stored as pages */
    char memory_note[512];       /* why it was not, when paged was asked; when paged, the part of the migration
                                  * stream kept as QEMU sent it ("" otherwise) */
};

int vm_snap_run(struct qmp *q, struct arc_writer *w, const struct vm_snap_opts *o, struct vm_snap_result *res,
                vs_err *e);
/* arc_writer_opts.worker_nice for a live snapshot's writer: on a busy host the guest's vCPU, blocked on
 * write-protect faults that QEMU's snapshot thread resolves, otherwise shares the CPU with our compression
 * (measured with bench/pause/run: docs/BENCHMARKS.md). */
#define VM_SNAP_WORKER_NICE 10
/* The report of `snap --json` for res (output: the archive's path, thin: a --thin snapshot). */
json_t *vm_snap_result_json(const struct vm_snap_result *res, const char *output, bool thin);
/* res's pause phases as a JSON object {stop, freeze, migrate, stop-event, resume-event,
 * qemu-setup-time} (seconds from the start
 * of the pause, null when not seen), for `snap --json`. */
json_t *vm_snap_phases_json(const struct vm_snap_result *res);

/* ---- resume (resume.c) -------------------------------------------------------------------------------------
 * Feed stream `stream` of a (QEMU started with -incoming defer) through a pipe passed with getfd and
 * `migrate-incoming fd:`, decompressed by a thread straight from the archive; wait until the migration
 * completes, then cont if the VM is paused. No temporary file, no shell. */
int vm_resume_memory(struct qmp *q, struct arc *a, unsigned stream, double timeout_s, vs_err *e);
/* Memory stored as pages (mst_capture_fd): lazy, QEMU's RAM already maps the RAM streams (FUSE) and only the
 * device stream is fed; eager, the full stream is reassembled on the fly (ms_reassemble) and fed. */
int vm_resume_paged(struct qmp *q, struct arc *a, bool lazy, double timeout_s, vs_err *e);
/* The feeder both use, also for a stream in a file: a NULL feeds fd (read until EOF; the caller closes it),
 * else stream of a (reassembled from its RAM streams if reassemble). info (may be NULL) says what was fed. */
struct vm_load_src { struct arc *a; unsigned stream; bool reassemble; int fd; };
struct vm_load_info {
    uint64_t stream_bytes;         /* bytes fed (a reassembly's are not counted: 0) */
    double fed_s;                  /* seconds from the call until the whole stream was in the pipe */
    char was[32];                  /* QEMU's run state once loaded, before the cont */
};
int vm_resume_load(struct qmp *q, const struct vm_load_src *src, double timeout_s, struct vm_load_info *info,
                   vs_err *e);

/* ---- disks of archives (disk.c) ----------------------------------------------------------------------------- */
/* Write disk stream `name` (size bytes) into w: the blocks changed in overlay layers (after_seq, upto_seq], read
 * as of upto_seq; everything else is left to w's base (copied in a thick archive, referenced in a thin one).
 * upto_seq VM_SEQ_LIVE: every layer after after_seq, the live one included, read as the disk is now. */
#define VM_SEQ_LIVE UINT32_MAX
int vm_disk_write_changes(struct nbd_overlay *o, uint32_t after_seq, uint32_t upto_seq, struct arc_writer *w,
                          const char *name, uint64_t size, vs_err *e);

/* ---- the boot host (host.c) ----------------------------------------------------------------------------------
 * Everything `vmsnap boot` does once its options are parsed: serve the archive's disks over NBD on overlays,
 * start QEMU (resuming the memory stream if there is one), and serve snapshot requests from `vmsnap snap` on the
 * run directory's control socket until QEMU exits. */
struct vm_host_info {
    const char *rundir, *qmp, *console, *overlay, *control;
    pid_t qemu_pid, boot_pid;
    bool resumed;
    double start_to_running_s;
    bool lazy;                /* RAM served on demand from the archive (FUSE) */
    pid_t page_server_pid;    /* lazy: the page server shared by the clones of this archive (0: unknown) */
    const char *memory_file;  /* lazy: the FUSE file QEMU maps privately as the VM's RAM */
    const char *clone_id;     /* this boot's id (a UUID), from which its NICs' MACs derive */
    const char *const *macs;  /* the MACs the recorded NICs got, in order (n_macs; none with keep_mac) */
    size_t n_macs;
    const char *memory_note;  /* why a paged memory snapshot was resumed eagerly, or NULL */
    const char *generation_id;   /* the VM generation ID this boot got (vmgenid), or NULL */
    const char *trusted;      /* what --trust-archive let through unchecked (one line), or NULL */
    const struct arc_cache_stats *cache;   /* the block cache until the VM ran (the archive's own handle: memory,
                                              config, files; its disks read the same entries), or NULL */
    const char *disks_note;   /* a foreign VM's disks that were not captured and were emptied or dropped, or NULL */
    const char *replay_notes; /* what of a foreign command line only its managing process could provide, or NULL */
    double record_ws_s;       /* --record-ws: seconds recorded once the VM runs (0: not recording) */
    const char *ws_file;      /* recording: where the working set will be written (VM_WS_FILE in the run dir) */
    uint64_t ws_ranges, ws_pages;   /* the archive's own working set, fetched first by the prefetch (0: none) */
    const char *ws_note;      /* why the archive's working set is not used, or NULL */
};
struct vm_host_opts {
    const char *archive;
    const char *overlay;      /* NULL: temporary, removed when the VM ends */
    uint64_t ram;             /* 0: recorded / default */
    unsigned cpus;            /* 0: recorded / default */
    const char *accel;        /* NULL or "auto": recorded for a memory snapshot, else auto */
    const char *qemu;         /* --qemu; NULL: vm_qemu_binary's default */
    const char *qmp;          /* user's QMP socket path; NULL: rundir/qmp.sock */
    const char *console;      /* path, "stdio" or NULL: rundir/console.sock */
    char *const *extra;
    size_t n_extra;
    int errlog_fd;            /* QEMU's stderr goes here (-1: inherited) */
    bool quiet_stdio;         /* QEMU's stdin/stdout to /dev/null (detached) */
    bool eager;               /* paged memory: stream it all into QEMU instead of mapping it lazily */
    bool no_prefetch;         /* lazy memory: pages come on first touch only (no background prefetch) */
    bool prefetch_all;        /* once the VM runs, the whole archive chain into the block cache (arc_prefetch_all);
                               * the outcome goes to the run directory's prefetch.json */
    double record_ws_s;       /* lazy memory: record the working set the guest asks for in its first seconds (0: no) */
    bool keep_mac;            /* the recorded NICs keep their MACs (else each gets one derived from the clone id) */
    bool trust_archive;       /* pass what the archive records to QEMU unchecked (vm_config_check), and a foreign
                               * VM's recorded working directory */
    const struct cr_key *key; /* the key of an encrypted archive (copied), or NULL */
    /* Called once the VM runs (or failed to: info NULL). */
    void (*ready)(void *opaque, const struct vm_host_info *info);
    /* Optional: told (one line) of trouble while the VM runs, e.g. guest memory that could not be served. */
    void (*log)(void *opaque, const char *msg);
    /* Optional: the whole one-line refusal when the archive records options vmsnap does not allow (the error's
     * message has the same text, cut to its size). */
    void (*refused)(void *opaque, const char *msg);
    /* Optional: run on the opened archive (and its chain) before anything of it is used, e.g. its signatures. */
    int (*check_archive)(void *opaque, struct arc *a, vs_err *e);
    /* Optional: arc_open_opts.wrap for every open of the archive (the boot's, each disk's, the page server's),
     * e.g. reads checked against a signed chunk table. */
    int (*wrap_source)(void *opaque, struct arc_source **src, vs_err *e);
    void *opaque;
};
/* The run directory's working set: the binary record (docs/FORMAT.md, "Working set") written when --record-ws is
 * over, and the report (JSON) of the recording and of the working-set prefetch, updated as they happen. */
#define VM_WS_FILE "working-set"
#define VM_WS_REPORT "ws.json"
/* Returns when QEMU has exited (0 if it exited normally) or after SIGINT/SIGTERM made it quit. */
int vm_host_run(const struct vm_host_opts *o, vs_err *e);

/* ---- the boot host's control protocol (control.c, client.c; docs/CONTROL.md, "vmsnap boot") ----------------- */
/* The conventions of every vmsnap control socket: one JSON object per line, lines of at most VS_CTL_MAX_LINE bytes,
 * a request line complete within VS_CTL_TIMEOUT_S s, and a reply {"ok": true, ...} or {"ok": false, "error": "..."}
 * (snap also sends {"progress": {...}} lines before its reply). */
#define VM_CTL_CMD "cmd"
#define VM_CTL_OK "ok"
#define VM_CTL_ERROR "error"
#define VM_CTL_RESULT "result"
#define VM_CTL_PROGRESS "progress"
#define VM_CTL_CANCEL "cancel"
/* Keys of the snap result beyond vm_snap_result's: why the overlay did not move onto the new archive (absent when
 * it did; the archive is good either way). */
#define VM_CTL_REBASE_ERROR "rebase-error"

struct vm_snap_request {
    const char *output;       /* absolute path */
    bool thin, live;
    const char *codec;        /* "lz4", "zstd:3", ... or NULL */
    const char *message;
    const char *encrypt;      /* key file (absolute path) to seal the archive with, or NULL: the key of the archive
                                 the VM runs on, if it is encrypted */
    const char *cipher;       /* "aes-256-gcm", "xchacha20-poly1305", or NULL: the fastest here */
};
/* The request line's object (new reference), or NULL and *e when a string is not UTF-8 (JSON cannot carry it). */
json_t *vm_ctl_request_json(const struct vm_snap_request *rq, vs_err *e);
/* A request line's object into *rq (strings borrowed from j); a clear error for anything but a valid snap. */
int vm_ctl_request_parse(json_t *j, struct vm_snap_request *rq, vs_err *e);
/* Takes the snapshot; the result object (new reference) or NULL and *e. */
typedef json_t *(*vm_ctl_snap_fn)(void *opaque, const struct vm_snap_request *rq, vs_err *e);
/* Serve one client on fd: read its request line, call snap, send the reply. Gives up (with an error line) when
 * the line is not complete within VS_CTL_TIMEOUT_S s or when watch_fd (the caller's signals) becomes readable, so
 * the caller's own loop is never held up by a client. */
void vm_ctl_serve(int fd, int watch_fd, vm_ctl_snap_fn snap, void *opaque);
/* During snap: one progress line to the client (never blocks), and whether it asked to cancel or hung up. */
void vm_ctl_progress(int fd, const struct vm_snap_progress *p);
bool vm_ctl_cancel_requested(int fd);

/* Send the request to the host's control socket and wait for its result (a JSON object, new reference, with the
 * fields of vm_snap_result). progress (may be NULL) gets each progress object. *cancel (may be NULL) is polled:
 * when it becomes true the host is told to cancel and the call waits for it to clean up. */
int vm_snap_remote(const char *control, const struct vm_snap_request *rq, volatile int *cancel,
                   void (*progress)(void *opaque, json_t *p), void *opaque, json_t **result, vs_err *e);

#endif
