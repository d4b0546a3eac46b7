/*
 * Configuration of the RMP-granularity sync of VFIO IO mappings
 *
 * Set on the object a VFIO container comes from: the iommufd backend
 * object (-object iommufd,rmp-sync=,rmp=) or, for legacy type1
 * containers, the VFIO device that creates the container
 * (-device vfio-pci,rmp-sync=,rmp=).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_RMP_SYNC_CONFIG_H
#define SYSTEM_RMP_SYNC_CONFIG_H

typedef struct RmpSyncConfig {
    int policy;                 /* RmpSyncPolicy */
    char *rmp;                  /* id of the snp-rmp object, or NULL */
    bool hitless;               /* never unmap a page that stays mapped */
    /*
     * The object is complete: the VFIO containers decided how they map
     * from these (and undo it from them), so they no longer change
     */
    bool frozen;
} RmpSyncConfig;

#endif
