/*
 * Stub of query-rmp-sync (hw/vfio/rmp-sync.c) for builds without VFIO
 * and iommufd
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-snp.h"

RmpSyncInfoList *qmp_query_rmp_sync(Error **errp)
{
    error_setg(errp, "rmp-sync is not available in this QEMU (it needs "
               "VFIO and iommufd)");
    return NULL;
}
