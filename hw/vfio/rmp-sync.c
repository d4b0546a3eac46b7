/*
 * VFIO: keep IO mappings in lockstep with the RMP
 *
 * With rmp-sync=shared|all, the RAM sections a VFIO container would map
 * whole go to an RmpSyncEngine (one per container: an iommufd IOAS or a
 * legacy type1 container) instead.  Page states come from the
 * RamDiscardManager of the section (guest_memfd RAM of a confidential
 * guest: populated means shared) or, for RAM without one, from the
 * granularity source (system/granularity-source.h: an snp-rmp object,
 * where not assigned means shared); page sizes come from the granularity
 * source, whose change notifier drives the engine too.
 *
 * Where it is configured: on the iommufd backend object for iommufd
 * containers; for a legacy container, which has no object of its own,
 * on the device whose group creates it, and every device that joins the
 * container must say the same.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include <linux/vfio.h>
#include "qemu/error-report.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-snp.h"
#include "qobject/qdict.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "hw/boards.h"
#include "migration/blocker.h"
#include "system/iommufd.h"
#include "system/memory.h"
#include "system/ramblock.h"
#include "hw/vfio/vfio-container.h"
#include "hw/vfio/vfio-container-legacy.h"
#include "hw/vfio/vfio-device.h"
#include "hw/vfio/rmp-sync.h"
#include "hw/vfio/rmp-sync-engine.h"
#include "system/granularity-source.h"
#include "vfio-iommufd.h"
#include "trace.h"

/* The engine's pages and regions: 4K pages, 2M regions */
#define VFIO_RMP_SYNC_4K    (1ULL << RMP_SYNC_PAGE_SHIFT)
/* after a failure, try again after this long, doubling up to the max */
#define VFIO_RMP_SYNC_RETRY_MS 1000
#define VFIO_RMP_SYNC_RETRY_MAX_MS 8000
#define VFIO_RMP_SYNC_2M    (1ULL << RMP_SYNC_REGION_SHIFT)

typedef struct VFIORmpSync VFIORmpSync;

typedef struct VFIORmpSyncSection {
    VFIORmpSync *sync;
    MemoryRegion *mr;
    hwaddr iova, size;
    void *vaddr;
    bool readonly;
    bool has_rdm;
    uint64_t page_size;         /* the largest IO page its backing gives */
    /* private pages: from this guest_memfd at this offset, or -1 */
    int gmem_fd;
    uint64_t gmem_offset;
    RamDiscardListener rdl;
    QLIST_ENTRY(VFIORmpSyncSection) next;
} VFIORmpSyncSection;

/*
 * Threads: the engine runs on vCPU threads without the BQL (conversions
 * of guest memory, their RAM-discard notifications) as well as in the
 * main loop (memory listener, QMP).  The engine's lock serializes them;
 * the sections are changed and walked inside engine transactions, under
 * the same lock.  Lock order: the granularity source's lock, then the
 * engine's; under the engine's lock, the source is only read (page_size,
 * is_shared), which never blocks once the notifier is registered.
 */
struct VFIORmpSync {
    VFIOContainer *bcontainer;
    IOMMUFDBackend *be;         /* iommufd: the backend and IOAS */
    uint32_t ioas_id;
    int type1_fd;               /* legacy: the container's fd */
    char *name;                 /* for traces and errors */
    RmpSyncPolicy policy;
    bool hitless;
    GranularitySource *rmp;     /* its page sizes and states */
    RmpSyncEngine *engine;      /* its lock guards @sections too */
    Notifier rmp_changed;
    bool listening;             /* rmp_changed is registered */
    bool failing;               /* a failure was reported, no recovery yet */
    unsigned failures;          /* reported, ever */
    QEMUTimer *retry_timer;     /* armed by a failure */
    unsigned retry_ms;          /* its next delay */
    int map_file_error;         /* of the last map from a guest_memfd */
    Error *cpr_blocker;
    QLIST_HEAD(, VFIORmpSyncSection) sections;
    QLIST_ENTRY(VFIORmpSync) next;
};

static QLIST_HEAD(, VFIORmpSync) vfio_rmp_syncs =
    QLIST_HEAD_INITIALIZER(vfio_rmp_syncs);

static VFIORmpSyncSection *section_of(VFIORmpSync *s, hwaddr iova)
{
    VFIORmpSyncSection *sec;

    QLIST_FOREACH(sec, &s->sections, next) {
        if (iova >= sec->iova && iova - sec->iova < sec->size) {
            return sec;
        }
    }
    return NULL;
}

/*
 * VFIO_IOMMU_UNMAP_DMA of type1 reports how much it unmapped: the engine
 * knows what it holds in the range, so anything else is divergence
 * (@expect UINT64_MAX: a purge, any size is fine).
 */
static int vfio_rmp_sync_type1_unmap(int fd, hwaddr iova, uint64_t size,
                                     uint64_t expect)
{
    struct vfio_iommu_type1_dma_unmap unmap = {
        .argsz = sizeof(unmap),
        .iova = iova,
        .size = size,
    };

    if (ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap)) {
        /* iommufd's type1 compat: -ENOENT where nothing is mapped */
        return expect == UINT64_MAX && errno == ENOENT ? 0 : -errno;
    }
    return expect == UINT64_MAX || unmap.size == expect ? 0 : -ENOENT;
}

/* The same for iommufd, whose unmap reports the length too */
static int vfio_rmp_sync_iommufd_unmap(VFIORmpSync *s, hwaddr iova,
                                       uint64_t size, uint64_t expect)
{
    uint64_t unmapped;
    int ret = iommufd_backend_unmap_dma_strict(s->be, s->ioas_id, iova, size,
                                               &unmapped);

    return ret ?: (unmapped == expect ? 0 : -ENOENT);
}

/* No retry on EBUSY (as vfio_legacy_dma_map has): an overlap is a bug */
static int vfio_rmp_sync_type1_map(int fd, hwaddr iova, uint64_t size,
                                   void *vaddr, bool readonly)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = VFIO_DMA_MAP_FLAG_READ |
                 (readonly ? 0 : VFIO_DMA_MAP_FLAG_WRITE),
        .vaddr = (uintptr_t)vaddr,
        .iova = iova,
        .size = size,
    };

    return ioctl(fd, VFIO_IOMMU_MAP_DMA, &map) ? -errno : 0;
}

/* The engine's backend: map and unmap as asked, no error masked */
static int vfio_rmp_sync_issue(void *opaque, const RmpSyncOp *op)
{
    VFIORmpSync *s = opaque;
    VFIORmpSyncSection *sec;
    void *vaddr;
    int ret;

    if (op->type == RMP_SYNC_OP_UNMAP) {
        ret = s->be ? vfio_rmp_sync_iommufd_unmap(s, op->iova, op->size,
                                                  op->mapped)
                    : vfio_rmp_sync_type1_unmap(s->type1_fd, op->iova,
                                                op->size, op->mapped);
        trace_vfio_rmp_sync_unmap(s->name, op->iova, op->size, ret);
        return ret;
    }
    if (op->type == RMP_SYNC_OP_PURGE) {
        /* whatever is there: nothing (ENOENT) is fine, any size is */
        ret = s->be ? iommufd_backend_unmap_dma(s->be, s->ioas_id, op->iova,
                                                op->size)
                    : vfio_rmp_sync_type1_unmap(s->type1_fd, op->iova,
                                                op->size, UINT64_MAX);
        trace_vfio_rmp_sync_purge(s->name, op->iova, op->size, ret);
        return ret;
    }
    sec = section_of(s, op->iova);
    assert(sec && op->iova + op->size <= sec->iova + sec->size);
    if (!op->shared && sec->gmem_fd >= 0) {
        /* the engine maps one state per area here: private, from the file */
        ret = iommufd_backend_map_file_dma(s->be, s->ioas_id, op->iova,
                                           op->size, sec->gmem_fd,
                                           sec->gmem_offset +
                                           (op->iova - sec->iova),
                                           sec->readonly);
        trace_vfio_rmp_sync_map_file(s->name, op->iova, op->size, ret);
        if (ret && !s->map_file_error) {
            qatomic_set(&s->map_file_error, ret);
        }
        return ret;
    }
    vaddr = sec->vaddr + (op->iova - sec->iova);
    ret = s->be ? iommufd_backend_map_dma(s->be, s->ioas_id, op->iova,
                                          op->size, vaddr, sec->readonly)
                : vfio_rmp_sync_type1_map(s->type1_fd, op->iova, op->size,
                                          vaddr, sec->readonly);
    trace_vfio_rmp_sync_map(s->name, op->iova, op->size, ret);
    return ret;
}

static bool vfio_rmp_sync_rmp_is_2m(void *opaque, uint64_t iova)
{
    VFIORmpSync *s = opaque;

    return granularity_source_page_size(s->rmp, iova) >= VFIO_RMP_SYNC_2M;
}

static bool vfio_rmp_sync_is_shared(void *opaque, uint64_t iova)
{
    VFIORmpSync *s = opaque;

    return granularity_source_is_shared(s->rmp, iova);
}

/* Page states of RAM without a RamDiscardManager: the source's */
static void vfio_rmp_sync_states_from_rmp(VFIORmpSync *s,
                                          VFIORmpSyncSection *sec,
                                          hwaddr start, hwaddr end)
{
    start = MAX(start, sec->iova);
    end = MIN(end, sec->iova + sec->size);
    if (start < end) {
        rmp_sync_set_states_from(s->engine, start, end - start,
                                 vfio_rmp_sync_is_shared, s);
    }
}

/*
 * A kernel that fails once tends to fail every event after, and guest
 * conversions make the events.  So a failure starts an episode, reported
 * once; the engine is retried (backing off from 1 s to 8 s) until
 * nothing it holds is out of plan and no failure came meanwhile, which
 * ends the episode, reported too.
 * Events that succeed meanwhile end nothing: other regions may still be
 * wrong.  query-rmp-sync counts every failure.
 */
static void vfio_rmp_sync_arm_retry(VFIORmpSync *s)
{
    timer_mod_anticipate(s->retry_timer,
                         qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                         qatomic_read(&s->retry_ms));
}

static void vfio_rmp_sync_report(VFIORmpSync *s, const char *what, int ret)
{
    if (!ret) {
        return;
    }
    qatomic_inc(&s->failures);
    if (!qatomic_xchg(&s->failing, true)) {
        error_report("vfio %s: rmp-sync: %s: %s (retried until it works; "
                     "query-rmp-sync counts the failures)", s->name, what,
                     strerror(-ret));
        if (qatomic_read(&s->map_file_error) == -EINVAL ||
            qatomic_read(&s->map_file_error) == -EOPNOTSUPP) {
            error_printf("A map from the guest_memfd failed: this kernel may "
                         "not map a guest_memfd into an IOAS (see "
                         "rmp-sync=all in the documentation).\n");
        }
    }
    vfio_rmp_sync_arm_retry(s);
}

static void vfio_rmp_sync_retry(void *opaque)
{
    VFIORmpSync *s = opaque;
    unsigned failures = qatomic_read(&s->failures);
    unsigned left = rmp_sync_retry(s->engine);

    if (!left && qatomic_read(&s->failures) != failures) {
        /* a failure meanwhile, maybe where the retry already went */
        qatomic_set(&s->retry_ms, VFIO_RMP_SYNC_RETRY_MS);
        vfio_rmp_sync_arm_retry(s);
        return;
    }
    if (!left) {
        qatomic_set(&s->retry_ms, VFIO_RMP_SYNC_RETRY_MS);
        if (qatomic_xchg(&s->failing, false)) {
            info_report("vfio %s: rmp-sync: works again", s->name);
        }
        return;
    }
    qatomic_set(&s->retry_ms, MIN(qatomic_read(&s->retry_ms) * 2,
                                  VFIO_RMP_SYNC_RETRY_MAX_MS));
    if (!qatomic_xchg(&s->failing, true)) {
        /* a failure raced with the end of the last episode */
        RmpSyncStats st;

        rmp_sync_get_stats(s->engine, &st);
        error_report("vfio %s: rmp-sync: retry: %s", s->name,
                     strerror(-(st.last_error ?: -EIO)));
    }
    vfio_rmp_sync_arm_retry(s);
}

/*
 * A conversion (CONVERSION_BEGIN .. END) is one engine transaction: its
 * RAM-discard notifications and the RMP change in between are planned
 * once, at the end, and no other event of the engine comes in between.
 */
static void vfio_rmp_sync_rmp_changed(Notifier *n, void *data)
{
    VFIORmpSync *s = container_of(n, VFIORmpSync, rmp_changed);
    GranularityChange *c = data;
    VFIORmpSyncSection *sec;

    switch (c->phase) {
    case GRANULARITY_CONVERSION_BEGIN:
        rmp_sync_begin(s->engine);
        return;
    case GRANULARITY_CONVERSION_END:
        vfio_rmp_sync_report(s, "conversion",
                             rmp_sync_commit(s->engine));
        return;
    case GRANULARITY_CHANGED:
        break;
    }
    rmp_sync_begin(s->engine);
    QLIST_FOREACH(sec, &s->sections, next) {
        if (!sec->has_rdm && c->addr < sec->iova + sec->size &&
            sec->iova < c->addr + c->size) {
            vfio_rmp_sync_states_from_rmp(s, sec, c->addr,
                                          c->addr + c->size);
        }
    }
    rmp_sync_rmp_changed(s->engine, c->addr, c->size);
    vfio_rmp_sync_report(s, "RMP change", rmp_sync_commit(s->engine));
}

static int vfio_rmp_sync_populate(RamDiscardListener *rdl,
                                  MemoryRegionSection *section)
{
    VFIORmpSyncSection *sec = container_of(rdl, VFIORmpSyncSection, rdl);
    int ret = rmp_sync_set_shared(sec->sync->engine,
                                  section->offset_within_address_space,
                                  int128_get64(section->size), true);

    /*
     * An error: the IOAS may still map the private pages from the
     * guest_memfd, which the conversion punches next; failing stops it
     */
    vfio_rmp_sync_report(sec->sync, "unmapping converted memory", ret);
    return ret;
}

static void vfio_rmp_sync_discard(RamDiscardListener *rdl,
                                  MemoryRegionSection *section)
{
    VFIORmpSyncSection *sec = container_of(rdl, VFIORmpSyncSection, rdl);
    VFIORmpSync *s = sec->sync;
    hwaddr iova = section->offset_within_address_space;

    vfio_rmp_sync_report(s, "unmapping discarded memory",
                         rmp_sync_set_shared(s->engine, iova,
                                             int128_get64(section->size),
                                             false));
}

static VFIORmpSync *vfio_rmp_sync_find(VFIOContainer *bcontainer)
{
    VFIORmpSync *s;

    QLIST_FOREACH(s, &vfio_rmp_syncs, next) {
        if (s->bcontainer == bcontainer) {
            return s;
        }
    }
    return NULL;
}

static void vfio_rmp_sync_free(VFIORmpSync *s)
{
    assert(QLIST_EMPTY(&s->sections));
    migrate_del_blocker(&s->cpr_blocker);
    /* waits for a conversion in progress: it holds the RMP's lock */
    if (s->listening) {
        granularity_source_remove_notifier(s->rmp, &s->rmp_changed);
    }
    object_unref(OBJECT(s->rmp));
    timer_free(s->retry_timer);
    rmp_sync_engine_free(s->engine);
    QLIST_REMOVE(s, next);
    g_free(s->name);
    g_free(s);
}

/*
 * CPR would have the container's mappings redone as vaddr updates
 * through the dma_map of the container class, which the engine bypasses.
 */
static VFIORmpSync *vfio_rmp_sync_new(VFIOContainer *bcontainer,
                                      const RmpSyncConfig *cfg,
                                      GranularitySource *rmp, Error **errp)
{
    VFIORmpSync *s = g_new0(VFIORmpSync, 1);

    s->bcontainer = bcontainer;
    s->type1_fd = -1;
    s->policy = cfg->policy;
    s->hitless = cfg->hitless;
    s->rmp = rmp;
    object_ref(OBJECT(rmp));
    s->engine = rmp_sync_engine_new(s->policy == RMP_SYNC_POLICY_ALL ?
                                    RMP_SYNC_MAP_ALL : RMP_SYNC_MAP_SHARED,
                                    vfio_rmp_sync_issue,
                                    vfio_rmp_sync_rmp_is_2m, s);
    rmp_sync_engine_set_hitless(s->engine, s->hitless);
    s->retry_timer = timer_new_ms(QEMU_CLOCK_REALTIME, vfio_rmp_sync_retry, s);
    s->retry_ms = VFIO_RMP_SYNC_RETRY_MS;
    s->rmp_changed.notify = vfio_rmp_sync_rmp_changed;
    QLIST_INIT(&s->sections);
    QLIST_INSERT_HEAD(&vfio_rmp_syncs, s, next);
    error_setg(&s->cpr_blocker, "vfio: a container with rmp-sync does not "
               "support CPR");
    if (migrate_add_blocker_modes(&s->cpr_blocker,
                                  BIT(MIG_MODE_CPR_TRANSFER) |
                                  BIT(MIG_MODE_CPR_EXEC), errp) < 0) {
        vfio_rmp_sync_free(s);
        return NULL;
    }
    return s;
}

/* Once it is complete, let the RMP's changes reach it */
static void vfio_rmp_sync_listen(VFIORmpSync *s)
{
    granularity_source_add_notifier(s->rmp, &s->rmp_changed);
    s->listening = true;
}

/*
 * The sync of @bcontainer: NULL if it has none, with @errp set if it
 * should have one but cannot.  Iommufd containers get theirs with their
 * first RAM section, from the backend's settings.
 */
static VFIORmpSync *vfio_rmp_sync_get(VFIOContainer *bcontainer,
                                      Error **errp)
{
    VFIOIOMMUFDContainer *c;
    VFIORmpSync *s = vfio_rmp_sync_find(bcontainer);
    GranularitySource *rmp;

    if (s || !object_dynamic_cast(OBJECT(bcontainer),
                                  TYPE_VFIO_IOMMU_IOMMUFD)) {
        return s;
    }
    c = VFIO_IOMMU_IOMMUFD(bcontainer);
    if (c->be->rmp_sync.policy == RMP_SYNC_POLICY_OFF) {
        return NULL;
    }
    rmp = granularity_source_find(c->be->rmp_sync.rmp, errp);
    if (!rmp) {
        return NULL;
    }
    s = vfio_rmp_sync_new(bcontainer, &c->be->rmp_sync, rmp, errp);
    if (!s) {
        return NULL;
    }
    s->be = c->be;
    s->ioas_id = c->ioas_id;
    s->name = g_strdup_printf("iommufd %s IOAS %u",
                              object_get_canonical_path_component(
                                  OBJECT(c->be)), c->ioas_id);
    vfio_rmp_sync_listen(s);
    return s;
}

void vfio_rmp_sync_container_finalize(VFIOContainer *bcontainer)
{
    VFIORmpSync *s = vfio_rmp_sync_find(bcontainer);

    if (s) {
        vfio_rmp_sync_free(s);
    }
}

/* Legacy containers */

static bool vfio_rmp_sync_is_legacy(VFIOContainer *bcontainer)
{
    return object_dynamic_cast(OBJECT(bcontainer), TYPE_VFIO_IOMMU_LEGACY);
}

bool vfio_rmp_sync_device_check(VFIODevice *vbasedev, Error **errp)
{
    const RmpSyncConfig *cfg = &vbasedev->rmp_sync;

    if (cfg->policy == RMP_SYNC_POLICY_OFF && !cfg->rmp && !cfg->hitless) {
        return true;
    }
    if (vbasedev->iommufd) {
        error_setg(errp, "with iommufd, set rmp-sync, rmp and "
                   "rmp-sync-hitless on the iommufd object");
        return false;
    }
    if (cfg->policy == RMP_SYNC_POLICY_OFF) {
        error_setg(errp, "'%s' needs rmp-sync=shared or all",
                   cfg->rmp ? "rmp" : "rmp-sync-hitless");
        return false;
    }
    if (!granularity_source_find(cfg->rmp, errp)) {
        error_prepend(errp, "rmp-sync: ");
        return false;
    }
    return true;
}

bool vfio_rmp_sync_legacy_init(VFIOContainer *bcontainer,
                               VFIODevice *vbasedev, Error **errp)
{
    const RmpSyncConfig *cfg = &vbasedev->rmp_sync;
    VFIORmpSync *s;
    GranularitySource *rmp;

    if (cfg->policy == RMP_SYNC_POLICY_OFF) {
        return true;
    }
    rmp = granularity_source_find(cfg->rmp, errp);
    if (!rmp) {
        return false;
    }
    /* type1 v1 unmaps whole mappings a range touches: no strict unmap */
    if (VFIO_IOMMU_LEGACY(bcontainer)->iommu_type != VFIO_TYPE1v2_IOMMU) {
        error_setg(errp, "rmp-sync needs the type1v2 IOMMU of a legacy "
                   "container");
        return false;
    }
    s = vfio_rmp_sync_new(bcontainer, cfg, rmp, errp);
    if (!s) {
        return false;
    }
    s->type1_fd = VFIO_IOMMU_LEGACY(bcontainer)->fd;
    s->name = g_strdup_printf("type1 container of %s", vbasedev->name);
    vfio_rmp_sync_listen(s);
    /* hitless: a mapping per page of a 4K-RMP region, at worst all RAM */
    if (s->hitless && current_machine &&
        current_machine->ram_size / VFIO_RMP_SYNC_4K >
        bcontainer->dma_max_mappings) {
        warn_report("vfio %s: rmp-sync-hitless may need up to %" PRIu64
                    " mappings; the type1 container allows %u",
                    vbasedev->name,
                    (uint64_t)(current_machine->ram_size / VFIO_RMP_SYNC_4K),
                    bcontainer->dma_max_mappings);
        error_printf("Raise vfio_iommu_type1.dma_entry_limit, or use iommufd "
                     "or rmp-sync-hitless=off.\n");
    }
    return true;
}

bool vfio_rmp_sync_legacy_check(VFIOContainer *bcontainer,
                                VFIODevice *vbasedev, Error **errp)
{
    VFIORmpSync *s = vfio_rmp_sync_find(bcontainer);
    const RmpSyncConfig *cfg = &vbasedev->rmp_sync;

    assert(vfio_rmp_sync_is_legacy(bcontainer));
    if (!s && cfg->policy == RMP_SYNC_POLICY_OFF) {
        return true;
    }
    if (s && cfg->policy == s->policy && cfg->hitless == s->hitless &&
        granularity_source_find(cfg->rmp, NULL) == s->rmp) {
        return true;
    }
    error_setg(errp, "the container it shares with other devices has "
               "rmp-sync=%s%s%s%s",
               RmpSyncPolicy_str(s ? s->policy : RMP_SYNC_POLICY_OFF),
               s ? ",rmp=" : "",
               s ? object_get_canonical_path_component(OBJECT(s->rmp)) : "",
               s && s->hitless ? ",rmp-sync-hitless=on" : "");
    error_append_hint(errp, "Give every device of one container the same "
                      "rmp-sync, rmp and rmp-sync-hitless.\n");
    return false;
}

/*
 * The kernel builds a 2M IO page only over 2M-contiguous memory whose
 * offset matches the IOVA's: a hugetlbfs (or guest_memfd with 2M folios)
 * RAM block, 2M-aligned with the IOVA.  THP may give one, but nothing
 * says it will: count on 4K.
 */
static uint64_t vfio_rmp_sync_backing_page_size(VFIORmpSyncSection *sec)
{
    uint64_t page_size = qemu_ram_pagesize(sec->mr->ram_block);

    if (page_size >= VFIO_RMP_SYNC_2M &&
        !(((uintptr_t)sec->vaddr - sec->iova) % VFIO_RMP_SYNC_2M)) {
        return VFIO_RMP_SYNC_2M;
    }
    return VFIO_RMP_SYNC_4K;
}

/*
 * Policy "all" over guest_memfd RAM: private pages live in the
 * guest_memfd, not behind the shared backing's address (which a
 * conversion discards), so they are mapped from the file
 * (IOMMU_IOAS_MAP_FILE).  Whether the kernel can is not assumed: the
 * first map from the file asks it.
 */
static void vfio_rmp_sync_map_file_error(VFIORmpSync *s,
                                         VFIORmpSyncSection *sec, int err,
                                         Error **errp)
{
    error_setg_errno(errp, -err, "vfio %s: rmp-sync=all cannot map the "
                     "private pages of guest_memfd RAM at 0x%" HWADDR_PRIx
                     "+0x%" HWADDR_PRIx " from the guest_memfd (IOMMU_IOAS_"
                     "MAP_FILE)", s->name, sec->iova, sec->size);
    if (err == -EINVAL || err == -EOPNOTSUPP) {
        error_append_hint(errp, "This kernel cannot map a guest_memfd into "
                          "an IOAS: IOMMU_IOAS_MAP_FILE pins memfd (shmem) "
                          "and hugetlbfs files only (memfd_pin_folios()). "
                          "Use rmp-sync=shared.\n");
    }
}

bool vfio_rmp_sync_region_add(VFIOContainer *bcontainer,
                              MemoryRegionSection *section, Error **errp)
{
    VFIORmpSync *s;
    VFIORmpSyncSection *sec;
    Error *err = NULL;
    int ret;

    if (memory_region_is_ram_device(section->mr)) {
        return false;           /* device memory: mapped as usual */
    }
    s = vfio_rmp_sync_get(bcontainer, &err);
    if (!s) {
        if (err) {
            error_propagate(errp, err);
            return true;
        }
        return false;
    }
    if (memory_region_has_ram_discard_manager(section->mr) &&
        !granularity_source_brackets_conversions(s->rmp)) {
        /*
         * Its page states change on vCPU threads (conversions), which
         * only a source that brackets them (a shadow RMP) makes one
         * event for the engine
         */
        error_setg(errp, "vfio %s: rmp-sync over RAM whose pages convert "
                   "(guest_memfd) needs '-object snp-rmp,shadow=on'",
                   s->name);
        return true;
    }
    sec = g_new0(VFIORmpSyncSection, 1);
    sec->sync = s;
    sec->mr = section->mr;
    sec->iova = section->offset_within_address_space;
    sec->size = int128_get64(section->size);
    sec->vaddr = memory_region_get_ram_ptr(section->mr) +
                 section->offset_within_region;
    sec->readonly = section->readonly;
    sec->has_rdm = memory_region_has_ram_discard_manager(section->mr);
    sec->page_size = vfio_rmp_sync_backing_page_size(sec);
    sec->gmem_fd = -1;
    if (memory_region_has_guest_memfd(section->mr) &&
        s->policy == RMP_SYNC_POLICY_ALL) {
        if (!s->be) {
            error_setg(errp, "vfio %s: rmp-sync=all over guest_memfd RAM "
                       "needs an iommufd backend", s->name);
            error_append_hint(errp, "Private pages are mapped from the "
                              "guest_memfd (IOMMU_IOAS_MAP_FILE); a type1 "
                              "container maps by address only.\n");
            g_free(sec);
            return true;
        }
        sec->gmem_fd = sec->mr->ram_block->guest_memfd;
        /* KVM's guest_memfd_offset: the offset in the RAM block */
        sec->gmem_offset = qemu_ram_block_host_offset(sec->mr->ram_block,
                                                      sec->vaddr);
    }

    /*
     * All private at first: the shared pages are reported next.  One
     * transaction: the first layout is planned once.
     */
    rmp_sync_begin(s->engine);
    QLIST_INSERT_HEAD(&s->sections, sec, next);
    qatomic_set(&s->map_file_error, 0);
    ret = rmp_sync_add_range_backed(s->engine, sec->iova, sec->size, false,
                                    sec->page_size, sec->gmem_fd >= 0);
    if (sec->has_rdm) {
        RamDiscardManager *rdm =
            memory_region_get_ram_discard_manager(section->mr);

        ram_discard_listener_init(&sec->rdl, vfio_rmp_sync_populate,
                                  vfio_rmp_sync_discard, true);
        ram_discard_manager_register_listener(rdm, &sec->rdl, section);
    } else {
        vfio_rmp_sync_states_from_rmp(s, sec, sec->iova,
                                      sec->iova + sec->size);
    }
    ret = ret ?: rmp_sync_commit(s->engine);
    /*
     * The section stays registered on failure: the container is torn
     * down (or, at runtime, QEMU stops) and region_del() undoes it
     */
    if (ret && ret == s->map_file_error) {
        vfio_rmp_sync_map_file_error(s, sec, s->map_file_error, errp);
    } else if (ret) {
        error_setg_errno(errp, -ret, "vfio: rmp-sync: cannot map 0x%"
                         HWADDR_PRIx "+0x%" HWADDR_PRIx, sec->iova,
                         sec->size);
    }
    return true;
}

bool vfio_rmp_sync_region_del(VFIOContainer *bcontainer,
                              MemoryRegionSection *section)
{
    hwaddr iova = section->offset_within_address_space;
    VFIORmpSyncSection *sec;
    VFIORmpSync *s;

    if (memory_region_is_iommu(section->mr) ||
        memory_region_is_ram_device(section->mr)) {
        return false;
    }
    s = vfio_rmp_sync_find(bcontainer);
    if (!s) {
        /*
         * With rmp-sync on, region_add() took every RAM section, even
         * those it refused because the sync could not start: none of
         * them was mapped, nor a RAM-discard listener registered
         */
        return object_dynamic_cast(OBJECT(bcontainer),
                                   TYPE_VFIO_IOMMU_IOMMUFD) &&
               VFIO_IOMMU_IOMMUFD(bcontainer)->be->rmp_sync.policy !=
               RMP_SYNC_POLICY_OFF;
    }
    rmp_sync_begin(s->engine);
    QLIST_FOREACH(sec, &s->sections, next) {
        if (sec->mr == section->mr && sec->iova == iova) {
            break;
        }
    }
    if (sec) {
        if (sec->has_rdm) {
            ram_discard_manager_unregister_listener(
                memory_region_get_ram_discard_manager(section->mr),
                &sec->rdl);
        }
        vfio_rmp_sync_report(s, "unmapping removed memory",
                             rmp_sync_del_range(s->engine, sec->iova,
                                                sec->size));
        QLIST_REMOVE(sec, next);
        g_free(sec);
    }
    rmp_sync_commit(s->engine);
    /* not found: region_add() refused it, nothing to undo; it is ours */
    return true;
}

/* Monitor */

RmpSyncInfoList *qmp_query_rmp_sync(Error **errp)
{
    RmpSyncInfoList *head = NULL, **tail = &head;
    VFIORmpSync *s;

    QLIST_FOREACH(s, &vfio_rmp_syncs, next) {
        RmpSyncInfo *info = g_new0(RmpSyncInfo, 1);
        VFIORmpSyncSection *sec;
        VFIODevice *vbasedev;
        RmpSyncStats st;

        rmp_sync_get_stats(s->engine, &st);
        if (s->be) {
            info->container_type = RMP_SYNC_CONTAINER_TYPE_IOMMUFD;
            info->iommufd = g_strdup(
                object_get_canonical_path_component(OBJECT(s->be)));
            info->has_ioas_id = true;
            info->ioas_id = s->ioas_id;
        } else {
            info->container_type = RMP_SYNC_CONTAINER_TYPE_LEGACY;
        }
        QLIST_FOREACH(vbasedev, &s->bcontainer->device_list, container_next) {
            QAPI_LIST_PREPEND(info->devices, vbasedev->dev->id ?
                              g_strdup(vbasedev->dev->id) :
                              object_get_canonical_path(
                                  OBJECT(vbasedev->dev)));
        }
        rmp_sync_begin(s->engine);      /* the sections are stable */
        QLIST_FOREACH(sec, &s->sections, next) {
            RmpSyncMemory *mem = g_new0(RmpSyncMemory, 1);

            mem->iova = sec->iova;
            mem->size = sec->size;
            mem->io_page_size = sec->page_size;
            mem->private_from_guest_memfd = sec->gmem_fd >= 0;
            QAPI_LIST_PREPEND(info->memory, mem);
        }
        rmp_sync_commit(s->engine);
        info->policy = s->policy;
        info->hitless = s->hitless;
        info->regions_2m = st.regions_2m;
        info->regions_4k = st.regions_4k;
        info->conflicts = st.conflicts;
        info->unbacked = st.unbacked;
        info->areas = st.areas;
        info->mapped_bytes = st.mapped_pages * VFIO_RMP_SYNC_4K;
        info->iotlb_entries = st.iotlb_entries;
        info->ioctls = st.ioctls;
        info->resizes = st.resizes;
        info->windows = st.windows;
        info->window_pages = st.window_pages;
        info->window_us_max = st.window_us_max;
        info->errors = st.errors;
        info->purges = st.purges;
        info->lost_regions = st.lost_regions;
        if (st.last_error) {
            info->has_last_errno = true;
            info->last_errno = -st.last_error;
        }
        QAPI_LIST_APPEND(tail, info);
    }
    return head;
}

void hmp_info_rmp_sync(Monitor *mon, const QDict *qdict)
{
    RmpSyncInfoList *list = qmp_query_rmp_sync(NULL), *l;

    if (!list) {
        monitor_printf(mon, "no VFIO container follows an RMP\n");
    }
    for (l = list; l; l = l->next) {
        RmpSyncInfo *i = l->value;
        strList *d;

        if (i->iommufd) {
            monitor_printf(mon, "iommufd %s IOAS %u", i->iommufd, i->ioas_id);
        } else {
            monitor_printf(mon, "legacy container");
        }
        monitor_printf(mon, " (%s%s) of", RmpSyncPolicy_str(i->policy),
                       i->hitless ? ", hitless" : "");
        for (d = i->devices; d; d = d->next) {
            monitor_printf(mon, " %s", d->value);
        }
        monitor_printf(mon, ": %" PRIu64 " regions "
                       "at 2M, %" PRIu64 " at 4K, %" PRIu64 " conflicts, %"
                       PRIu64 " unbacked, %"
                       PRIu64 " areas, %" PRIu64 " bytes, %" PRIu64
                       " IOTLB entries; %" PRIu64 " ioctls, %" PRIu64
                       " resizes, %" PRIu64 " unmap-then-map windows "
                       "(longest %" PRIu64 " us), %" PRIu64 " errors, %"
                       PRIu64 " purges, %" PRIu64 " lost regions\n",
                       i->regions_2m, i->regions_4k, i->conflicts,
                       i->unbacked, i->areas,
                       i->mapped_bytes, i->iotlb_entries, i->ioctls,
                       i->resizes, i->windows, i->window_us_max, i->errors,
                       i->purges, i->lost_regions);
        for (RmpSyncMemoryList *m = i->memory; m; m = m->next) {
            monitor_printf(mon, "  memory 0x%" PRIx64 "+0x%" PRIx64
                           ": IO pages up to %" PRIu64 " KiB%s\n",
                           m->value->iova, m->value->size,
                           m->value->io_page_size / KiB,
                           m->value->private_from_guest_memfd ?
                           ", private pages from its guest_memfd" : "");
        }
    }
    qapi_free_RmpSyncInfoList(list);
}
