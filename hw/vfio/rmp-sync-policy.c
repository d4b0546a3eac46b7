/*
 * VFIO: the rmp-sync policy property of a device (legacy containers)
 *
 * Built with VFIO, iommufd or not: without iommufd the property exists
 * and asking for rmp-sync is an error (rmp-sync-stubs.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/qapi-types-qom.h"
#include "hw/vfio/rmp-sync.h"
#include "hw/core/qdev-prop-internal.h"

const PropertyInfo qdev_prop_rmp_sync_policy = {
    .type = "RmpSyncPolicy",
    .description = "off/shared/all",
    .enum_table = &RmpSyncPolicy_lookup,
    .get = qdev_propinfo_get_enum,
    .set = qdev_propinfo_set_enum,
    .set_default_value = qdev_propinfo_set_default_value_enum,
};
