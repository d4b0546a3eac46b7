/*
 * SEV-SNP RMP as the hardware keeps it in memory, and the operands of the
 * RMP instructions
 *
 * With -object snp-rmp,host=on the RMP lives in the machine's RAM, where
 * the host kernel reads it, in the layout of family 19h (Zen 3 and Zen 4)
 * processors.  This file knows that layout and the instructions' operand
 * structures and status codes; it knows nothing of QOM or the CPU, so it
 * can be unit-tested on its own.  research/cpu-snp-host-facts.md gives the
 * source of every field.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_SNP_RMP_HW_H
#define HW_I386_SNP_RMP_HW_H

#include "hw/i386/snp-rmp-table.h"

/*
 * The table: a 16 KiB area the processor keeps for itself, then one
 * 16-byte entry per 4K page, indexed by PFN from 0 (Linux:
 * RMPTABLE_CPU_BOOKKEEPING_SZ, struct rmpentry / rmpentry_raw).
 */
#define SNP_RMP_HW_BOOKKEEPING      0x4000ULL
#define SNP_RMP_HW_ENTRY_SIZE       16ULL

/* RMP_BASE and RMP_END hold an address in bits 51:13 (RMP_ADDR_MASK) */
#define SNP_RMP_HW_ADDR_MASK        0x000fffffffffe000ULL

/* The first quadword of a raw entry (Fam19h PPR; Linux rmpentry_raw) */
#define SNP_RMP_HW_ASSIGNED         (1ULL << 0)
#define SNP_RMP_HW_PAGESIZE_2M      (1ULL << 1)
#define SNP_RMP_HW_IMMUTABLE        (1ULL << 2)
#define SNP_RMP_HW_GPA_SHIFT        12          /* bits 50:12, the GFN */
#define SNP_RMP_HW_GPA_BITS         39
#define SNP_RMP_HW_ASID_SHIFT       51          /* bits 60:51 */
#define SNP_RMP_HW_ASID_BITS        10
#define SNP_RMP_HW_VMSA             (1ULL << 61)
#define SNP_RMP_HW_VALIDATED        (1ULL << 62)

/* The largest GPA and ASID an entry can hold */
#define SNP_RMP_HW_GPA_MAX \
    (((1ULL << SNP_RMP_HW_GPA_BITS) - 1) << SNP_RMP_HW_GPA_SHIFT)
#define SNP_RMP_HW_ASID_MAX         ((1U << SNP_RMP_HW_ASID_BITS) - 1)

/*
 * Bytes of a table that covers every 4K page below @top (an exclusive
 * SPA), bookkeeping included: what Linux's snp_rmptable_init() requires
 * of RMP_END - RMP_BASE + 1 when @top is the end of RAM.
 */
uint64_t snp_rmp_hw_table_size(uint64_t top);

/* Offset of the entry of the 4K page at @spa from the table's base. */
static inline uint64_t snp_rmp_hw_entry_offset(uint64_t spa)
{
    return SNP_RMP_HW_BOOKKEEPING +
           (spa >> SNP_RMP_SHIFT_4K) * SNP_RMP_HW_ENTRY_SIZE;
}

/*
 * The first quadword of the raw entry of a 4K page that the model sees
 * as @page.  A 2M entry is written in all 512 entries of its region, each
 * with the page size bit and its own page's GPA: Linux takes the page
 * size from the 2M-aligned entry and "assigned" from the page's own entry
 * (__snp_lookup_rmpentry), so both must say it.  The second quadword
 * (VMPL permissions) is 0: a host never sets them.
 */
uint64_t snp_rmp_hw_encode(const SnpRmpPage *page);

/*
 * The model's view of the raw entry @lo of a page.  The page size is not
 * decoded here: the 2M-aligned entry of the region decides it.
 */
void snp_rmp_hw_decode(uint64_t lo, SnpRmpAttrs *attrs);

/* Is the raw entry @lo, as the 2M-aligned entry of its region, 2M? */
static inline bool snp_rmp_hw_is_2m(uint64_t lo)
{
    return lo & SNP_RMP_HW_PAGESIZE_2M;
}

/*
 * RMPUPDATE's new state, at the address in RCX (Linux struct rmp_state,
 * packed, 16 bytes): GPA at 0, assigned at 8, page size at 9, immutable
 * at 10, reserved at 11, ASID at 12.
 */
#define SNP_RMPUPDATE_STATE_SIZE    16

typedef struct SnpRmpUpdateState {
    SnpRmpSize size;
    SnpRmpAttrs attrs;
} SnpRmpUpdateState;

/* The status RMPUPDATE, PSMASH and RMPREAD leave in EAX (APM vol. 3) */
typedef enum SnpRmpInsnStatus {
    SNP_RMP_INSN_SUCCESS = 0,
    SNP_RMP_INSN_FAIL_INPUT = 1,
    SNP_RMP_INSN_FAIL_PERMISSION = 2,
    SNP_RMP_INSN_FAIL_INUSE = 3,
    SNP_RMP_INSN_FAIL_OVERLAP = 4,
    SNP_RMP_INSN_FAIL_BADADDR = 7,      /* PSMASH: no 2M entry to split */
} SnpRmpInsnStatus;

/*
 * Decode RMPUPDATE's 16 bytes @buf (little endian).  Returns
 * SNP_RMP_INSN_FAIL_INPUT for a page size other than 0 or 1, a GPA or
 * ASID that an entry cannot hold, or a GPA that is not aligned to the
 * page size.
 */
SnpRmpInsnStatus snp_rmpupdate_state_decode(const uint8_t *buf,
                                            SnpRmpUpdateState *st);

/* The status RMPUPDATE leaves for a model status */
SnpRmpInsnStatus snp_rmpupdate_status(SnpRmpStatus st);

/* The status PSMASH leaves for a model status */
SnpRmpInsnStatus snp_psmash_status(SnpRmpStatus st);

#endif
