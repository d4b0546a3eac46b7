/*
 * RMP-granularity sync: an RMP model as the engine's source
 *
 * What the VFIO glue does when the snp-rmp object changes, without the
 * plumbing: RMP page sizes for the engine and, for memory that has no
 * other source of page states (RAM without a RamDiscardManager), page
 * states from the RMP's owner bits: an entry that is not assigned is
 * shared.  Plain C and GLib, so it is unit-tested with the RMP model.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VFIO_RMP_SYNC_RMP_H
#define HW_VFIO_RMP_SYNC_RMP_H

#include "hw/i386/snp-rmp-table.h"
#include "hw/vfio/rmp-sync-engine.h"

/* Is the RMP of the region at @iova one 2M entry? */
bool rmp_sync_rmp_is_2m(const SnpRmpTable *t, uint64_t iova);

/*
 * Give the pages of [@start, @end) the states the RMP's owner bits say,
 * in as few engine events as there are runs.  Returns 0 or the first
 * error of the operations the engine issued.
 */
int rmp_sync_states_from_rmp(RmpSyncEngine *e, const SnpRmpTable *t,
                             uint64_t start, uint64_t end);

#endif
