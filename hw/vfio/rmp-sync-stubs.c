/*
 * VFIO rmp-sync hooks for builds without iommufd: asking for rmp-sync is
 * a clear error
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-types-qom.h"
#include "hw/vfio/rmp-sync.h"
#include "hw/vfio/vfio-device.h"

bool vfio_rmp_sync_device_check(VFIODevice *vbasedev, Error **errp)
{
    const RmpSyncConfig *cfg = &vbasedev->rmp_sync;

    if (cfg->policy == RMP_SYNC_POLICY_OFF && !cfg->rmp && !cfg->hitless) {
        return true;
    }
    error_setg(errp, "rmp-sync is not available in this QEMU (it needs "
               "iommufd support)");
    return false;
}

bool vfio_rmp_sync_legacy_init(VFIOContainer *bcontainer,
                               VFIODevice *vbasedev, Error **errp)
{
    return vfio_rmp_sync_device_check(vbasedev, errp);
}

bool vfio_rmp_sync_legacy_check(VFIOContainer *bcontainer,
                                VFIODevice *vbasedev, Error **errp)
{
    return vfio_rmp_sync_device_check(vbasedev, errp);
}

void vfio_rmp_sync_container_finalize(VFIOContainer *bcontainer)
{
}

bool vfio_rmp_sync_region_add(VFIOContainer *bcontainer,
                              MemoryRegionSection *section, Error **errp)
{
    return false;
}

bool vfio_rmp_sync_region_del(VFIOContainer *bcontainer,
                              MemoryRegionSection *section)
{
    return false;
}
