/*
 * Stubs of the SNP-mode amd-iommu commands (hw/i386/amd_iommu-snp.c) for
 * builds without the amd-iommu
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-snp.h"

void qmp_snp_iommu_bind_device(const char *device, uint32_t asid,
                               Error **errp)
{
    error_setg(errp, "the SNP-mode amd-iommu is not available in this QEMU");
}

void qmp_snp_iommu_unbind_device(const char *device, Error **errp)
{
    error_setg(errp, "the SNP-mode amd-iommu is not available in this QEMU");
}

SnpIommuBindingList *qmp_query_snp_iommu_bindings(Error **errp)
{
    error_setg(errp, "the SNP-mode amd-iommu is not available in this QEMU");
    return NULL;
}
