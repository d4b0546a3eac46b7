/*
 * RMP-granularity stage-2 sync engine
 *
 * Keeps the IO mappings of a confidential guest's memory in one IO address
 * space (an iommufd IOAS or a type1 container) in lockstep with the RMP:
 * never an IO page larger than its RMP page, and the largest IO pages that
 * are still safe.  It knows nothing of QEMU devices or of the kernel: it
 * turns events (pages became shared or private, the RMP of a region became
 * 4K or 2M, memory came or went) into the fewest map and unmap operations,
 * which it issues through callbacks.
 *
 * Units: IOVA is the guest's physical address.  Memory is cut into regions
 * of RMP_SYNC_REGION_PAGES pages of RMP_SYNC_PAGE_SIZE (2M regions of 4K
 * pages); the unit tests use smaller regions through
 * rmp_sync_engine_new_custom().
 *
 * Invariants after every event (docs/system/i386/amd-iommu-snp.rst):
 *  - safety: an area never covers a whole region whose RMP is 4K, and a
 *    region whose RMP is 2M is mapped as one area or not at all;
 *  - policy: exactly the pages the policy asks for are mapped (a region
 *    whose RMP is 2M but whose pages are mixed is left unmapped: counted
 *    as a conflict);
 *  - economy: a region that is 2M in the RMP and wanted in full is one
 *    area; a region an event does not change is not touched; each event
 *    costs the fewest ioctls (in hitless mode: the fewest that never
 *    unmap a page that stays mapped while its RMP page size stays).
 *
 * Threads: every entry point takes the engine's lock (recursive), and
 * rmp_sync_begin() holds it until the matching rmp_sync_commit(), so a
 * transaction's events come from one thread and no other event comes in
 * between.  The callbacks run with the lock held.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VFIO_RMP_SYNC_ENGINE_H
#define HW_VFIO_RMP_SYNC_ENGINE_H

#define RMP_SYNC_PAGE_SHIFT     12
#define RMP_SYNC_REGION_SHIFT   21

typedef enum RmpSyncEnginePolicy {
    RMP_SYNC_MAP_SHARED,        /* map shared pages: ordinary devices */
    RMP_SYNC_MAP_ALL,           /* map private and shared: TEE-IO */
} RmpSyncEnginePolicy;

typedef enum RmpSyncOpType {
    RMP_SYNC_OP_UNMAP,          /* remove every area inside the range */
    RMP_SYNC_OP_MAP,            /* create one area over the range */
    /*
     * After a failure: remove every area inside the range, whatever the
     * engine believes is there; finding none is not an error
     */
    RMP_SYNC_OP_PURGE,
} RmpSyncOpType;

typedef struct RmpSyncOp {
    RmpSyncOpType type;
    uint64_t iova;
    uint64_t size;
    /*
     * Unmap: the bytes of the areas inside the range, which is what the
     * kernel must report unmapped (the range may span holes between them)
     */
    uint64_t mapped;
    /*
     * Map: the state of the pages, which is the same for all of them
     * where private pages have a backing of their own
     * (rmp_sync_add_range_backed()): map from that backing
     */
    bool shared;
} RmpSyncOp;

/*
 * The backend: issue one operation and return 0 or a negative errno.  A
 * failed map must leave the IOAS as it was (IOMMU_IOAS_MAP and
 * VFIO_IOMMU_MAP_DMA undo what they did); a failed unmap may have removed
 * some of the areas in its range (IOMMU_IOAS_UNMAP removes them one by one
 * and does not say how far it got).  After any failure the engine no
 * longer trusts what it believes of the region: it purges it
 * (RMP_SYNC_OP_PURGE) and plans it again from nothing; if the purge fails
 * too, the region stays "lost" and every later event, or
 * rmp_sync_retry(), retries.  A future
 * in-kernel split/merge ("cut") op would be a new op type here.
 */
typedef int RmpSyncIssueFn(void *opaque, const RmpSyncOp *op);

/* Is the RMP of the region at @iova 2M (true) or 4K entries (false)? */
typedef bool RmpSyncRmpIs2MFn(void *opaque, uint64_t iova);

typedef struct RmpSyncStats {
    uint64_t regions;           /* regions of memory in the engine */
    uint64_t regions_2m;        /* mapped as one 2M area */
    uint64_t regions_4k;        /* with mapped pages, RMP 4K */
    uint64_t conflicts;         /* RMP 2M but mixed: left unmapped */
    uint64_t unbacked;          /* RMP 2M, backing < 2M: left unmapped */
    uint64_t areas;             /* IOAS areas the engine holds */
    uint64_t mapped_pages;
    uint64_t iotlb_entries;     /* 2M area: 1, each page otherwise: 1 */
    uint64_t ioctls;            /* operations issued */
    uint64_t maps, unmaps;
    uint64_t resizes;           /* a mapped page's IO page size changed */
    /*
     * Unmap-then-map windows: events in which pages that stay mapped were
     * briefly unmapped (IOMMU_IOAS_UNMAP cannot cut an area), how many
     * pages, and how long (first unmap to last map, microseconds).
     */
    uint64_t windows;
    uint64_t window_pages;
    uint64_t window_us_max;
    uint64_t window_us_total;
    uint64_t errors;            /* operations that failed */
    uint64_t purges;            /* regions purged after a failure */
    /*
     * Regions whose IO mappings are unknown (a purge failed), including
     * those of removed memory, which every event purges again
     */
    uint64_t lost_regions;
    int last_error;             /* its errno (negative), 0 if none */
    uint64_t events;
    uint64_t memory;            /* bytes the engine holds */
} RmpSyncStats;

typedef struct RmpSyncEngine RmpSyncEngine;

RmpSyncEngine *rmp_sync_engine_new(RmpSyncEnginePolicy policy,
                                   RmpSyncIssueFn *issue,
                                   RmpSyncRmpIs2MFn *rmp_is_2m,
                                   void *opaque);
/* For tests: regions of 2^@region_order pages of 2^@page_shift bytes */
RmpSyncEngine *rmp_sync_engine_new_custom(RmpSyncEnginePolicy policy,
                                          unsigned page_shift,
                                          unsigned region_order,
                                          RmpSyncIssueFn *issue,
                                          RmpSyncRmpIs2MFn *rmp_is_2m,
                                          void *opaque);
/* Unmaps nothing: the caller tears the IOAS down */
void rmp_sync_engine_free(RmpSyncEngine *e);

/*
 * Hitless: a page whose region's RMP page size does not change is never
 * unmapped, even for a moment.  Areas cannot be cut, so every page of a
 * region whose RMP is 4K becomes an area of its own: more map ioctls and
 * areas, the same IOTLB entries.  A change of the RMP page size itself
 * still remaps the region: the old IO pages fault from the moment the
 * RMP changed, whatever the IO side does.  Set before memory is added.
 */
void rmp_sync_engine_set_hitless(RmpSyncEngine *e, bool hitless);

/*
 * Guest memory [@iova, @iova + @size) enters the IO address space, all of
 * it private (an SNP guest starts with private memory) unless @shared.
 * Returns 0, or the first error of the operations it issued.
 */
int rmp_sync_add_range(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                       bool shared);
/*
 * The same, over backing whose pages are @page_size bytes (the RAM
 * block's: 4K pages, or 2M hugetlbfs pages, 2M-aligned with the IOVA).
 * The kernel builds an IO page no larger than a backing page: over 4K
 * backing a "2M" area becomes 512 4K IO pages, each of which faults
 * against a 2M RMP entry.  So where the backing is smaller than a region,
 * a region whose RMP is 2M is never mapped (counted as unbacked).
 * rmp_sync_add_range() assumes backing of at least a region.
 *
 * @private_backing: private pages have a backing of their own (TEE-IO
 * over guest_memfd: private pages live in the guest_memfd, shared ones
 * behind the shared backing's address, and a conversion discards the
 * backing the pages leave).  Then an area maps pages of one state only
 * (RmpSyncOp.shared says which backing), and a page that converts is
 * unmapped at once (in a transaction: before the caller discards its old
 * backing; rmp_sync_set_shared() returns an error if the IOAS may still
 * hold it) and mapped again from its new backing, so the device never
 * keeps a page that the CPU no longer sees.
 */
int rmp_sync_add_range_backed(RmpSyncEngine *e, uint64_t iova,
                              uint64_t size, bool shared,
                              uint64_t page_size, bool private_backing);
/*
 * The memory leaves: its areas are unmapped.  Where that fails and so
 * does the purge, the range is kept aside and purged again at every later
 * event (counted in lost_regions until that works).
 */
int rmp_sync_del_range(RmpSyncEngine *e, uint64_t iova, uint64_t size);

/* Pages became shared (@shared) or private; outside memory is ignored */
int rmp_sync_set_shared(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                        bool shared);

/*
 * Give the pages of [@iova, @iova + @size) the states @is_shared says
 * (e.g. from the RMP's owner bits, for memory that has no other source
 * of page states), in as many events as there are runs of one state.
 * Returns 0 or the first error of the operations issued.
 */
typedef bool RmpSyncIsSharedFn(void *opaque, uint64_t iova);
int rmp_sync_set_states_from(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                             RmpSyncIsSharedFn *is_shared, void *opaque);

/* The RMP of the regions over [@iova, @iova + @size) may have changed */
int rmp_sync_rmp_changed(RmpSyncEngine *e, uint64_t iova, uint64_t size);

/*
 * A transaction: the events between rmp_sync_begin() and
 * rmp_sync_commit() only record what changed; the commit plans every
 * region they touched once, from its final page states and RMP page size,
 * and issues the operations.  One conversion of guest memory (its page
 * states and the RMP entries KVM made for it) is one transaction: no
 * intermediate layout ever reaches the IOAS.  Transactions nest; the
 * outermost commit plans.  Returns 0 or the first error of the
 * operations the commit issued.
 */
void rmp_sync_begin(RmpSyncEngine *e);
int rmp_sync_commit(RmpSyncEngine *e);

/*
 * Plan again, now, every region in which an operation failed, and purge
 * the orphans again: what the next event would do, for a caller that
 * does not want to wait for one (a timer after a failure).  Returns how
 * many regions (and orphans) are still not as planned.
 */
unsigned rmp_sync_retry(RmpSyncEngine *e);

void rmp_sync_get_stats(RmpSyncEngine *e, RmpSyncStats *stats);

/*
 * Walk the areas the engine believes are mapped, in IOVA order, for
 * checks and for "info"-style dumps.
 */
typedef void RmpSyncAreaFn(uint64_t iova, uint64_t size, void *opaque);
void rmp_sync_foreach_area(RmpSyncEngine *e, RmpSyncAreaFn *fn,
                           void *opaque);

#endif
