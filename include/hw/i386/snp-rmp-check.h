/*
 * SEV-SNP RMP check of an IOMMU-translated DMA
 *
 * The rules an SNP-enabled AMD IOMMU applies after a page walk, kept in
 * one place and free of device plumbing.  docs/system/i386/amd-iommu-snp.rst
 * gives the source of each rule (or says it is the emulator's choice).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_SNP_RMP_CHECK_H
#define HW_I386_SNP_RMP_CHECK_H

#include "hw/i386/snp-rmp-table.h"

typedef enum SnpRmpCheckResult {
    SNP_RMP_CHECK_OK,
    SNP_RMP_CHECK_NOT_RAM,              /* not RAM: no RMP check (R5) */
    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH,   /* R2 */
    SNP_RMP_CHECK_ASSIGNED,             /* R3 */
    SNP_RMP_CHECK_ASID_MISMATCH,        /* R4 */
    SNP_RMP_CHECK_GPA_MISMATCH,         /* R4 */
    SNP_RMP_CHECK_NOT_VALIDATED,        /* R4 */
} SnpRmpCheckResult;

/* A device that is not bound to a guest (R3 applies in full). */
#define SNP_RMP_ASID_NONE 0

/*
 * R1: the size the RMP is checked at, for an IO page walk that ended at
 * @io_page_size: 2M for pages of 2M and more, else 4K.
 */
static inline SnpRmpSize snp_rmp_check_size(uint64_t io_page_size)
{
    return io_page_size >= SNP_RMP_BYTES_2M ? SNP_RMP_SIZE_2M
                                                : SNP_RMP_SIZE_4K;
}

static inline uint64_t snp_rmp_size_bytes(SnpRmpSize size)
{
    return size == SNP_RMP_SIZE_2M ? SNP_RMP_BYTES_2M
                                   : SNP_RMP_BYTES_4K;
}

/*
 * Check a DMA from a device bound to @bound_asid (SNP_RMP_ASID_NONE for
 * an ordinary device) to @spa, translated from @iova at check size @size.
 * On return *@rmp_size is the RMP page size of @spa's region (when RAM).
 */
SnpRmpCheckResult snp_rmp_check_dma(const SnpRmpTable *t, uint64_t spa,
                                    uint64_t iova, SnpRmpSize size,
                                    uint32_t bound_asid,
                                    SnpRmpSize *rmp_size);

/*
 * Check a write by the host (a CPU outside any SNP guest) to @spa through
 * a mapping of @mapping_size bytes.  Host writes to assigned pages fault
 * (an RMP #PF); a mapping of 2M or more is checked as 2M and faults if
 * any 4K page of the 2M region is assigned: Linux's adjust_direct_map()
 * splits its direct map for this reason ("even accesses from 1GB mappings
 * will be treated as 2MB accesses").  Host reads are not checked, nor
 * are addresses that are not RAM.
 */
SnpRmpCheckResult snp_rmp_check_host_write(const SnpRmpTable *t,
                                           uint64_t spa,
                                           uint64_t mapping_size);

#endif
