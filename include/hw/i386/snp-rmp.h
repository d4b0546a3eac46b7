/*
 * SEV-SNP Reverse Map Table object (-object snp-rmp)
 *
 * The RMP of the emulated machine, indexed by SPA (this QEMU's guest
 * physical addresses).  The SNP-mode amd-iommu checks DMA against it; QMP
 * (and, later, the emulated CPU) changes it.  It is a granularity source
 * (system/granularity-source.h): users of the RMP, such as rmp-sync,
 * learn of every change through it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_SNP_RMP_H
#define HW_I386_SNP_RMP_H

#include "qom/object.h"
#include "qemu/notify.h"
#include "qemu/thread.h"
#include "qapi/qapi-types-snp.h"
#include "hw/i386/snp-rmp-table.h"
#include "system/granularity-source.h"

#define TYPE_SNP_RMP "snp-rmp"
OBJECT_DECLARE_SIMPLE_TYPE(SnpRmp, SNP_RMP)

struct SnpRmp {
    Object parent_obj;

    /*
     * Serializes the changes of the RMP and their notifications, and
     * guards the notifier list.  Readers of the table (the IOMMU) need
     * not take it: the table has its own lock.  Taken before the locks
     * of the listeners, never after.
     */
    QemuRecMutex lock;
    SnpRmpTable *table;         /* created when first used: RAM is known */
    bool complete;              /* created: shadow and asid are fixed */
    bool shadow;                /* mirrors KVM's RMP of this guest */
    bool host;                  /* the RMP of an emulated SNP host */
    /*
     * Does the RMP check DMA now?  Always, but on an SNP host (host=on)
     * only once the host kernel has enabled SNP.  Readers cache verdicts
     * by the table's version, which changes after it does.
     */
    bool enforced;
    uint32_t asid;              /* shadow: ASID of private pages */
    NotifierList change_notifiers;
    Notifier conversion;        /* shadow: KVM's memory conversions */

    /* migration: the entries that differ from the fresh state */
    uint8_t *mig_buf;
    uint32_t mig_len;
};

/* The RMP of the machine; NULL (and @errp set) if @id names none. */
SnpRmp *snp_rmp_find(const char *id, Error **errp);

/* The model, created on first use from the machine's RAM layout. */
SnpRmpTable *snp_rmp_get_table(SnpRmp *rmp);

bool snp_rmp_update(SnpRmp *rmp, uint64_t spa, SnpRmpSize size,
                    const SnpRmpAttrs *attrs, Error **errp);
bool snp_rmp_psmash(SnpRmp *rmp, uint64_t spa, Error **errp);

/* The same, for an instruction: the model's status, no error message */
SnpRmpStatus snp_rmp_update_status(SnpRmp *rmp, uint64_t spa,
                                   SnpRmpSize size,
                                   const SnpRmpAttrs *attrs);
SnpRmpStatus snp_rmp_psmash_status(SnpRmp *rmp, uint64_t spa);

/* A change by the SEV firmware (the PSP): immutable entries may change */
SnpRmpStatus snp_rmp_firmware_update(SnpRmp *rmp, uint64_t spa,
                                     SnpRmpSize size,
                                     const SnpRmpAttrs *attrs);

/* The RMP becomes the entries of @from (a table like the RMP's own) */
void snp_rmp_load(SnpRmp *rmp, SnpRmpTable *from);

/* See 'enforced' above */
void snp_rmp_set_enforced(SnpRmp *rmp, bool enforced);

SnpRmpPageSize snp_rmp_size_to_qapi(SnpRmpSize size);

/*
 * KVM converted [@gpa, @gpa + @size) to private or shared, with a page
 * size hint of 2M or more (@hint_2m): every snp-rmp object with
 * shadow=on follows, as KVM updates the RMP (snp_rmp_table_shadow_convert).
 */
void snp_rmp_shadow_convert(uint64_t gpa, uint64_t size, bool to_private,
                            bool hint_2m);

#endif
