/*
 * SEV-SNP RMP as the hardware keeps it in memory, and the operands of the
 * RMP instructions
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "hw/i386/snp-rmp-hw.h"

uint64_t snp_rmp_hw_table_size(uint64_t top)
{
    uint64_t pages = DIV_ROUND_UP(top, SNP_RMP_BYTES_4K);

    return SNP_RMP_HW_BOOKKEEPING + pages * SNP_RMP_HW_ENTRY_SIZE;
}

uint64_t snp_rmp_hw_encode(const SnpRmpPage *page)
{
    const SnpRmpAttrs *a = &page->attrs;
    uint64_t lo = 0;

    lo |= a->assigned ? SNP_RMP_HW_ASSIGNED : 0;
    lo |= page->size == SNP_RMP_SIZE_2M ? SNP_RMP_HW_PAGESIZE_2M : 0;
    lo |= a->immutable ? SNP_RMP_HW_IMMUTABLE : 0;
    lo |= a->gpa & SNP_RMP_HW_GPA_MAX;
    lo |= (uint64_t)(a->asid & SNP_RMP_HW_ASID_MAX) << SNP_RMP_HW_ASID_SHIFT;
    lo |= a->validated ? SNP_RMP_HW_VALIDATED : 0;
    return lo;
}

void snp_rmp_hw_decode(uint64_t lo, SnpRmpAttrs *attrs)
{
    attrs->assigned = lo & SNP_RMP_HW_ASSIGNED;
    attrs->immutable = lo & SNP_RMP_HW_IMMUTABLE;
    attrs->gpa = lo & SNP_RMP_HW_GPA_MAX;
    attrs->asid = (lo >> SNP_RMP_HW_ASID_SHIFT) & SNP_RMP_HW_ASID_MAX;
    attrs->validated = lo & SNP_RMP_HW_VALIDATED;
}

SnpRmpInsnStatus snp_rmpupdate_state_decode(const uint8_t *buf,
                                            SnpRmpUpdateState *st)
{
    uint64_t gpa = ldq_le_p(buf);
    uint8_t size = buf[9];
    uint32_t asid = ldl_le_p(buf + 12);

    if (size > 1 || gpa > SNP_RMP_HW_GPA_MAX || asid > SNP_RMP_HW_ASID_MAX) {
        return SNP_RMP_INSN_FAIL_INPUT;
    }
    st->size = size ? SNP_RMP_SIZE_2M : SNP_RMP_SIZE_4K;
    if (gpa & ((size ? SNP_RMP_BYTES_2M : SNP_RMP_BYTES_4K) - 1)) {
        return SNP_RMP_INSN_FAIL_INPUT;
    }
    st->attrs = (SnpRmpAttrs) {
        .gpa = gpa,
        .asid = asid,
        .assigned = buf[8] & 1,
        .immutable = buf[10] & 1,
        /* a host cannot validate a page: PVALIDATE is the guest's */
        .validated = false,
    };
    return SNP_RMP_INSN_SUCCESS;
}

SnpRmpInsnStatus snp_rmpupdate_status(SnpRmpStatus st)
{
    switch (st) {
    case SNP_RMP_OK:
        return SNP_RMP_INSN_SUCCESS;
    case SNP_RMP_ERR_IMMUTABLE:
        return SNP_RMP_INSN_FAIL_PERMISSION;
    case SNP_RMP_ERR_OVERLAP:
    case SNP_RMP_ERR_IS_2M:
        /* 2M over assigned 4K entries, or 4K inside a 2M entry */
        return SNP_RMP_INSN_FAIL_OVERLAP;
    default:
        return SNP_RMP_INSN_FAIL_INPUT;
    }
}

SnpRmpInsnStatus snp_psmash_status(SnpRmpStatus st)
{
    switch (st) {
    case SNP_RMP_OK:
        return SNP_RMP_INSN_SUCCESS;
    case SNP_RMP_ERR_NOT_2M:
        return SNP_RMP_INSN_FAIL_BADADDR;
    case SNP_RMP_ERR_IMMUTABLE:
        return SNP_RMP_INSN_FAIL_PERMISSION;
    default:
        return SNP_RMP_INSN_FAIL_INPUT;
    }
}
