/*
 * SNP mode of the emulated AMD IOMMU (amd-iommu,snp=on)
 *
 * After each translation the IOMMU checks the DMA against the machine's
 * RMP (an snp-rmp object), as an SNP-enabled AMD IOMMU does; a failed
 * check aborts the DMA and logs an RMP_PAGE_FAULT event.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_AMD_IOMMU_SNP_H
#define HW_I386_AMD_IOMMU_SNP_H

#include "system/memory.h"
#include "qemu/ratelimit.h"
#include "hw/i386/snp-rmp.h"
#include "hw/i386/snp-rmp-check.h"

/* EFR bit 63: SNP supported */
#define AMDVI_FEATURE_SNP               (1ULL << 63)

/* MMIO Control Register (0x18) bit 13: PPRLogEn (AMD IOMMU spec 3.4.3) */
#define AMDVI_SNP_CONTROL_PPRLOGEN      (1ULL << 13)

#define AMDVI_EVENT_RMP_PAGE_FAULT      (0xDU << 12)
/* Event flags: same bit positions as IO_PAGE_FAULT's */
#define AMDVI_EVENT_FLAG_RW             0x020

typedef struct AMDVIState AMDVIState;
typedef struct PCIBus PCIBus;
typedef struct PCIDevice PCIDevice;

typedef struct AMDVISnpBinding {
    PCIDevice *dev;
    uint32_t asid;
} AMDVISnpBinding;

typedef struct AMDVISnp {
    bool enabled;               /* "snp" property */
    SnpRmp *rmp;                /* "rmp" link */
    SnpRmpTable *table;
    const uint64_t *rmp_version;    /* snp_rmp_table_version_ptr(table) */
    /*
     * AMDVISnpBinding: TEE-IO devices, set by QMP and kept over reset.
     * The bindings and @bind_gen are protected by the IOMMU's lock.
     */
    GArray *bindings;
    /* Grows by 2 with every change of the bindings; starts at 2 */
    uint64_t bind_gen;
    /* An unplugged device's binding goes with it */
    DeviceListener device_listener;
    /* migration: the bindings, as (ASID, QOM path) records */
    uint8_t *mig_buf;
    uint32_t mig_len;
    /*
     * SNP_RMP_FAULT is a QMP event a guest triggers at will: at most
     * "rmp-fault-event-rate" per second (0: no limit).  The events held
     * back are counted in the next one.  Under the IOMMU's lock.
     */
    uint32_t fault_event_rate;
    RateLimit fault_events;
    int64_t fault_events_held_until;    /* QEMU_CLOCK_REALTIME, ns */
    uint64_t fault_events_suppressed;
} AMDVISnp;

/*
 * The generation of the RMP check's inputs: the RMP table's version plus
 * the bindings' generation.  It changes with every change of either, and
 * is odd while the RMP is being changed.  An IOTLB entry whose check
 * passed in an even generation passes it again while the generation stays
 * the same.  Never 0, so that a fresh IOTLB entry counts as unchecked.
 */
static inline uint64_t amdvi_snp_gen(AMDVISnp *snp)
{
    return qatomic_load_acquire(snp->rmp_version) + snp->bind_gen;
}

bool amdvi_snp_realize(AMDVIState *s, AMDVISnp *snp, Error **errp);

/* A subsection of the amd-iommu's state: the bindings */
extern const VMStateDescription vmstate_amdvi_snp_bindings;

/*
 * Check the translation @ret of a DMA from @bus/@devfn to @iova against
 * the RMP.  On success @ret is narrowed to the RMP check size (R1) and
 * true is returned.  On failure @ret loses its permissions and, for an
 * access (@flag not IOMMU_NONE), @evt holds the RMP_PAGE_FAULT event to
 * log and false is returned.
 *
 * @report false: the same DMA faulted and was reported already (its first
 * access did); the check still runs, but sends no QMP event or trace.
 *
 * @verdict_gen, when not NULL, belongs to the IOTLB entry @ret came from:
 * the generation in which that entry last passed.  It saves the RMP
 * lookup on IOTLB hits while nothing changed, and is updated on success.
 */
/* R1: a translation covers the RMP check size, not the whole IO page */
static inline void amdvi_snp_narrow(IOMMUTLBEntry *ret, hwaddr iova)
{
    hwaddr mask = ret->addr_mask >= SNP_RMP_BYTES_2M - 1 ?
                  SNP_RMP_BYTES_2M - 1 : SNP_RMP_BYTES_4K - 1;

    if (ret->addr_mask > mask) {
        hwaddr spa = ret->translated_addr | (iova & ret->addr_mask);

        ret->addr_mask = mask;
        ret->iova = iova & ~mask;
        ret->translated_addr = spa & ~mask;
    }
}

uint32_t amdvi_snp_bound_asid(AMDVISnp *snp, PCIBus *bus, uint8_t devfn);
bool amdvi_snp_check_failed(AMDVISnp *snp, PCIBus *bus, uint8_t devfn,
                            hwaddr iova, IOMMUAccessFlags flag,
                            IOMMUTLBEntry *ret, SnpRmpSize check,
                            SnpRmpSize rmp_size, SnpRmpCheckResult result,
                            bool report, uint64_t evt[2]);

/* Inline: it runs on every translation, and calls cost what it does */
static inline bool amdvi_snp_check_dma(AMDVISnp *snp, PCIBus *bus,
                                       uint8_t devfn, hwaddr iova,
                                       IOMMUAccessFlags flag,
                                       IOMMUTLBEntry *ret,
                                       uint64_t *verdict_gen,
                                       bool report, uint64_t evt[2])
{
    SnpRmpSize check, rmp_size;
    SnpRmpCheckResult result;
    uint32_t asid = SNP_RMP_ASID_NONE;
    uint64_t gen;
    hwaddr spa;

    /* The IOTLB hit path: nothing changed since this entry passed */
    if (likely(verdict_gen && *verdict_gen == amdvi_snp_gen(snp))) {
        amdvi_snp_narrow(ret, iova);
        return true;
    }
    if (ret->perm == IOMMU_NONE) {
        return true;            /* the walk failed already */
    }

    gen = amdvi_snp_gen(snp);
    check = snp_rmp_check_size(ret->addr_mask + 1);
    rmp_size = check;
    spa = (ret->translated_addr & ~ret->addr_mask) | (iova & ret->addr_mask);
    if (snp->bindings->len) {
        asid = amdvi_snp_bound_asid(snp, bus, devfn);
    }
    /* an SNP host checks DMA only once its kernel has enabled SNP */
    result = likely(qatomic_read(&snp->rmp->enforced)) ?
             snp_rmp_check_dma(snp->table, spa, iova, check, asid,
                               &rmp_size) : SNP_RMP_CHECK_OK;
    if (likely(result == SNP_RMP_CHECK_OK ||
               result == SNP_RMP_CHECK_NOT_RAM)) {
        amdvi_snp_narrow(ret, iova);
        if (verdict_gen) {
            /*
             * Cache the verdict only if no change of the RMP was in
             * progress or made during the check: 1 never matches.
             */
            *verdict_gen = !(gen & 1) && gen == amdvi_snp_gen(snp) ? gen : 1;
        }
        return true;
    }
    return amdvi_snp_check_failed(snp, bus, devfn, iova, flag, ret, check,
                                  rmp_size, result, report, evt);
}

/*
 * The buffers that the SEV firmware makes the IOMMUs' own at SNP_INIT:
 * the enabled event and PPR logs and the completion-wait page of every
 * SNP-mode amd-iommu on @rmp.  Returns how many it put in @ranges.
 */
unsigned amdvi_snp_firmware_buffers(SnpRmp *rmp, SnpRmpRange *ranges,
                                    unsigned max);

#endif
