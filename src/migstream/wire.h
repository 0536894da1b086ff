/* migstream: the wire constants of QEMU's migration stream this component relies on (docs/MIGRATION-STREAM.md).
 * Private to src/migstream. */
#ifndef VMSNAP_MIGSTREAM_WIRE_H
#define VMSNAP_MIGSTREAM_WIRE_H

#define MS_FILE_MAGIC 0x5145564du   /* "QEVM" */
#define MS_FILE_VERSION 3u

/* Section types (savevm.c QEMU_VM_*). */
#define MS_SEC_EOF 0x00
#define MS_SEC_START 0x01
#define MS_SEC_PART 0x02
#define MS_SEC_END 0x03
#define MS_SEC_FULL 0x04
#define MS_SEC_SUBSECTION 0x05
#define MS_SEC_VMDESC 0x06
#define MS_SEC_CONFIGURATION 0x07
#define MS_SEC_COMMAND 0x08
#define MS_SEC_FOOTER 0x7e

/* Command sections (savevm.c MIG_CMD_*): 0x08, be16 command, be16 length, that many bytes. */
#define MS_CMD_SWITCHOVER_START 11u /* QEMU 10.0+ precopy, before the END sections; no data */

/* RAM record flags, in the low bits of the be64 that also holds the page offset (ram.c RAM_SAVE_FLAG_*). */
#define MS_RAM_FULL 0x01u          /* obsolete */
#define MS_RAM_ZERO 0x02u          /* + 1 fill byte */
#define MS_RAM_MEM_SIZE 0x04u      /* START: block list follows */
#define MS_RAM_PAGE 0x08u          /* + MS_PAGE_SIZE bytes */
#define MS_RAM_EOS 0x10u
#define MS_RAM_CONTINUE 0x20u      /* same block as the previous record: no name follows */
#define MS_RAM_XBZRLE 0x40u
#define MS_RAM_HOOK 0x80u          /* RDMA */
#define MS_RAM_COMPRESS 0x100u
#define MS_RAM_MULTIFD_FLUSH 0x200u
#define MS_RAM_FLAG_MASK 0xfffu    /* below the 4 KiB target page */

#define MS_RAM_VERSION 4u

#endif
