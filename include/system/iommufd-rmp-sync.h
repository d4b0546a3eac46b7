/*
 * iommufd backend: configuration of the RMP-granularity sync
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_IOMMUFD_RMP_SYNC_H
#define SYSTEM_IOMMUFD_RMP_SYNC_H

#include "qom/object.h"
#include "system/rmp-sync-config.h"

typedef struct IOMMUFDBackend IOMMUFDBackend;

void iommufd_backend_rmp_sync_class_init(ObjectClass *oc);
bool iommufd_backend_rmp_sync_complete(IOMMUFDBackend *be, Error **errp);
void iommufd_backend_rmp_sync_finalize(IOMMUFDBackend *be);

#endif
