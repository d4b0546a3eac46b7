/*
 * RMP-granularity sync: an RMP model as the engine's source
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/vfio/rmp-sync-rmp.h"

bool rmp_sync_rmp_is_2m(const SnpRmpTable *t, uint64_t iova)
{
    SnpRmpPage page;

    return snp_rmp_table_lookup(t, iova, &page) &&
           page.size == SNP_RMP_SIZE_2M;
}

static bool rmp_page_is_shared(const SnpRmpTable *t, uint64_t spa)
{
    SnpRmpPage page;

    return !snp_rmp_table_lookup(t, spa, &page) || !page.attrs.assigned;
}

int rmp_sync_states_from_rmp(RmpSyncEngine *e, const SnpRmpTable *t,
                             uint64_t start, uint64_t end)
{
    int ret = 0;

    while (start < end) {
        bool shared = rmp_page_is_shared(t, start);
        uint64_t run = start + SNP_RMP_BYTES_4K;
        int r;

        while (run < end && rmp_page_is_shared(t, run) == shared) {
            run += SNP_RMP_BYTES_4K;
        }
        r = rmp_sync_set_shared(e, start, run - start, shared);
        ret = ret ? ret : r;
        start = run;
    }
    return ret;
}
