/*
 * SEV-SNP RMP check of an IOMMU-translated DMA
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-check.h"

SnpRmpCheckResult snp_rmp_check_dma(const SnpRmpTable *t, uint64_t spa,
                                    uint64_t iova, SnpRmpSize size,
                                    uint32_t bound_asid,
                                    SnpRmpSize *rmp_size)
{
    uint64_t mask = snp_rmp_size_bytes(size) - 1;
    SnpRmpPage page;

    /* The entry that covers the check-sized page: its first 4K */
    if (!snp_rmp_table_lookup(t, spa & ~mask, &page)) {
        return SNP_RMP_CHECK_NOT_RAM;
    }
    *rmp_size = page.size;

    /* R2: sizes must match both ways; a failed 2M check is not retried */
    if (page.size != size) {
        return SNP_RMP_CHECK_PAGE_SIZE_MISMATCH;
    }
    /* R3: hypervisor-owned pages are open to every device */
    if (!page.attrs.assigned) {
        return SNP_RMP_CHECK_OK;
    }
    if (bound_asid == SNP_RMP_ASID_NONE) {
        return SNP_RMP_CHECK_ASSIGNED;
    }
    /* R4: a TEE-IO device reaches its own guest's validated pages */
    if (page.attrs.asid != bound_asid) {
        return SNP_RMP_CHECK_ASID_MISMATCH;
    }
    if (page.attrs.gpa != (iova & ~mask)) {
        return SNP_RMP_CHECK_GPA_MISMATCH;
    }
    if (!page.attrs.validated) {
        return SNP_RMP_CHECK_NOT_VALIDATED;
    }
    return SNP_RMP_CHECK_OK;
}

SnpRmpCheckResult snp_rmp_check_host_write(const SnpRmpTable *t,
                                           uint64_t spa,
                                           uint64_t mapping_size)
{
    SnpRmpSize size = snp_rmp_check_size(mapping_size);

    return snp_rmp_table_any_assigned(t, spa, size) ? SNP_RMP_CHECK_ASSIGNED
                                                    : SNP_RMP_CHECK_OK;
}
