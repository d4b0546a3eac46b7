/*
 * VFIO: keep IO mappings in lockstep with the RMP
 *
 * Hooks for hw/vfio: with rmp-sync on for a container (set on its
 * iommufd backend object, or on the device that creates a legacy type1
 * container), RAM sections are mapped by the RMP-granularity sync engine
 * rather than whole.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VFIO_RMP_SYNC_H
#define HW_VFIO_RMP_SYNC_H

#include "system/memory.h"
#include "hw/qdev-properties.h"

typedef struct VFIOContainer VFIOContainer;
typedef struct VFIODevice VFIODevice;

extern const PropertyInfo qdev_prop_rmp_sync_policy;

#define DEFINE_PROP_RMP_SYNC_POLICY(_n, _s, _f) \
    DEFINE_PROP_SIGNED(_n, _s, _f, 0, qdev_prop_rmp_sync_policy, int)

/*
 * The device's own settings, checked before it attaches: they configure
 * legacy containers only.
 */
bool vfio_rmp_sync_device_check(VFIODevice *vbasedev, Error **errp);

/*
 * A legacy container created for @vbasedev's group takes its settings;
 * called before the container's listener is registered.
 */
bool vfio_rmp_sync_legacy_init(VFIOContainer *bcontainer,
                               VFIODevice *vbasedev, Error **errp);

/* Every device of a legacy container must have the container's settings */
bool vfio_rmp_sync_legacy_check(VFIOContainer *bcontainer,
                                VFIODevice *vbasedev, Error **errp);

void vfio_rmp_sync_container_finalize(VFIOContainer *bcontainer);

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
