/*
 * VFIO: keep iommufd IO mappings in lockstep with the RMP
 *
 * Hooks for hw/vfio/listener.c: with rmp-sync on for the container's
 * iommufd backend, RAM sections are mapped by the RMP-granularity sync
 * engine rather than whole.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VFIO_RMP_SYNC_H
#define HW_VFIO_RMP_SYNC_H

#include "system/memory.h"

typedef struct VFIOContainer VFIOContainer;

/*
 * Take a RAM section being added to @bcontainer.  Returns false if the
 * container does not sync with an RMP (map it as usual); true if the
 * section is the engine's, with @errp set if mapping it failed.
 */
bool vfio_rmp_sync_region_add(VFIOContainer *bcontainer,
                              MemoryRegionSection *section, Error **errp);

/* Returns true if the section was the engine's and is gone now */
bool vfio_rmp_sync_region_del(VFIOContainer *bcontainer,
                              MemoryRegionSection *section);

#endif
