/*
 * VFIO: keep iommufd IO mappings in lockstep with the RMP
 *
 * With -object iommufd,rmp-sync=shared|all, the RAM sections a VFIO
 * container of that backend would map whole go to an RmpSyncEngine (one
 * per IOAS) instead.  Page states come from the RamDiscardManager of the
 * section (guest_memfd RAM of a confidential guest: populated means
 * shared) or, for RAM without one, from the snp-rmp object itself (not
 * assigned means shared); RMP page sizes come from the snp-rmp object,
 * whose change notifier drives the engine too.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-snp.h"
#include "qobject/qdict.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "system/iommufd.h"
#include "system/memory.h"
#include "hw/vfio/vfio-container.h"
#include "hw/vfio/rmp-sync.h"
#include "hw/vfio/rmp-sync-engine.h"
#include "hw/i386/snp-rmp.h"
#include "vfio-iommufd.h"
#include "trace.h"

typedef struct VFIORmpSync VFIORmpSync;

typedef struct VFIORmpSyncSection {
    VFIORmpSync *sync;
    MemoryRegion *mr;
    hwaddr iova, size;
    void *vaddr;
    bool readonly;
    bool has_rdm;
    RamDiscardListener rdl;
    QLIST_ENTRY(VFIORmpSyncSection) next;
} VFIORmpSyncSection;

struct VFIORmpSync {
    VFIOContainer *bcontainer;
    IOMMUFDBackend *be;
    uint32_t ioas_id;
    RmpSyncPolicy policy;
    SnpRmp *rmp;
    RmpSyncEngine *engine;
    Notifier rmp_changed;
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

/* The engine's backend: IOMMU_IOAS_MAP and IOMMU_IOAS_UNMAP, no masking */
static int vfio_rmp_sync_issue(void *opaque, const RmpSyncOp *op)
{
    VFIORmpSync *s = opaque;
    VFIORmpSyncSection *sec;
    int ret;

    if (op->type == RMP_SYNC_OP_UNMAP) {
        ret = iommufd_backend_unmap_dma_strict(s->be, s->ioas_id, op->iova,
                                               op->size);
        trace_vfio_rmp_sync_unmap(s->ioas_id, op->iova, op->size, ret);
        return ret;
    }
    sec = section_of(s, op->iova);
    assert(sec && op->iova + op->size <= sec->iova + sec->size);
    ret = iommufd_backend_map_dma(s->be, s->ioas_id, op->iova, op->size,
                                  sec->vaddr + (op->iova - sec->iova),
                                  sec->readonly);
    trace_vfio_rmp_sync_map(s->ioas_id, op->iova, op->size, ret);
    return ret;
}

static bool vfio_rmp_sync_rmp_is_2m(void *opaque, uint64_t iova)
{
    VFIORmpSync *s = opaque;
    SnpRmpPage page;

    return snp_rmp_table_lookup(snp_rmp_get_table(s->rmp), iova, &page) &&
           page.size == SNP_RMP_SIZE_2M;
}

/* Page states of RAM without a RamDiscardManager: the RMP's owner bits */
static void vfio_rmp_sync_states_from_rmp(VFIORmpSync *s,
                                          VFIORmpSyncSection *sec,
                                          hwaddr start, hwaddr end)
{
    SnpRmpTable *t = snp_rmp_get_table(s->rmp);
    hwaddr run = start;
    bool run_shared = false;

    start = MAX(start, sec->iova);
    end = MIN(end, sec->iova + sec->size);
    for (hwaddr a = start; a <= end; a += SNP_RMP_BYTES_4K) {
        SnpRmpPage page;
        bool shared = a < end &&
                      (!snp_rmp_table_lookup(t, a, &page) ||
                       !page.attrs.assigned);

        if (a == start) {
            run = a;
            run_shared = shared;
        } else if (a == end || shared != run_shared) {
            rmp_sync_set_shared(s->engine, run, a - run, run_shared);
            run = a;
            run_shared = shared;
        }
    }
}

static void vfio_rmp_sync_rmp_changed(Notifier *n, void *data)
{
    VFIORmpSync *s = container_of(n, VFIORmpSync, rmp_changed);
    SnpRmpChange *c = data;
    VFIORmpSyncSection *sec;

    QLIST_FOREACH(sec, &s->sections, next) {
        if (!sec->has_rdm && c->spa < sec->iova + sec->size &&
            sec->iova < c->spa + c->size) {
            vfio_rmp_sync_states_from_rmp(s, sec, c->spa, c->spa + c->size);
        }
    }
    rmp_sync_rmp_changed(s->engine, c->spa, c->size);
}

static int vfio_rmp_sync_populate(RamDiscardListener *rdl,
                                  MemoryRegionSection *section)
{
    VFIORmpSyncSection *sec = container_of(rdl, VFIORmpSyncSection, rdl);

    return rmp_sync_set_shared(sec->sync->engine,
                               section->offset_within_address_space,
                               int128_get64(section->size), true);
}

static void vfio_rmp_sync_discard(RamDiscardListener *rdl,
                                  MemoryRegionSection *section)
{
    VFIORmpSyncSection *sec = container_of(rdl, VFIORmpSyncSection, rdl);
    int ret = rmp_sync_set_shared(sec->sync->engine,
                                  section->offset_within_address_space,
                                  int128_get64(section->size), false);

    if (ret) {
        error_report("vfio: rmp-sync: unmapping discarded memory failed: %s",
                     strerror(-ret));
    }
}

static VFIORmpSync *vfio_rmp_sync_get(VFIOContainer *bcontainer,
                                      Error **errp)
{
    VFIOIOMMUFDContainer *c;
    VFIORmpSync *s;
    SnpRmp *rmp;

    if (!object_dynamic_cast(OBJECT(bcontainer), TYPE_VFIO_IOMMU_IOMMUFD)) {
        return NULL;
    }
    c = VFIO_IOMMU_IOMMUFD(bcontainer);
    if (c->be->rmp_sync.policy == RMP_SYNC_POLICY_OFF) {
        return NULL;
    }
    QLIST_FOREACH(s, &vfio_rmp_syncs, next) {
        if (s->bcontainer == bcontainer) {
            return s;
        }
    }
    rmp = snp_rmp_find(c->be->rmp_sync.rmp, errp);
    if (!rmp) {
        return NULL;
    }
    s = g_new0(VFIORmpSync, 1);
    s->bcontainer = bcontainer;
    s->be = c->be;
    s->ioas_id = c->ioas_id;
    s->policy = c->be->rmp_sync.policy;
    s->rmp = rmp;
    s->engine = rmp_sync_engine_new(s->policy == RMP_SYNC_POLICY_ALL ?
                                    RMP_SYNC_MAP_ALL : RMP_SYNC_MAP_SHARED,
                                    vfio_rmp_sync_issue,
                                    vfio_rmp_sync_rmp_is_2m, s);
    s->rmp_changed.notify = vfio_rmp_sync_rmp_changed;
    snp_rmp_add_change_notifier(rmp, &s->rmp_changed);
    QLIST_INIT(&s->sections);
    QLIST_INSERT_HEAD(&vfio_rmp_syncs, s, next);
    return s;
}

static void vfio_rmp_sync_free(VFIORmpSync *s)
{
    snp_rmp_remove_change_notifier(&s->rmp_changed);
    rmp_sync_engine_free(s->engine);
    QLIST_REMOVE(s, next);
    g_free(s);
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
    sec = g_new0(VFIORmpSyncSection, 1);
    sec->sync = s;
    sec->mr = section->mr;
    sec->iova = section->offset_within_address_space;
    sec->size = int128_get64(section->size);
    sec->vaddr = memory_region_get_ram_ptr(section->mr) +
                 section->offset_within_region;
    sec->readonly = section->readonly;
    sec->has_rdm = memory_region_has_ram_discard_manager(section->mr);
    QLIST_INSERT_HEAD(&s->sections, sec, next);

    /* all private at first: shared pages are reported next */
    ret = rmp_sync_add_range(s->engine, sec->iova, sec->size, false);
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
    if (ret) {
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

    QLIST_FOREACH(s, &vfio_rmp_syncs, next) {
        if (s->bcontainer == bcontainer) {
            break;
        }
    }
    if (!s) {
        return false;
    }
    QLIST_FOREACH(sec, &s->sections, next) {
        if (sec->mr == section->mr && sec->iova == iova) {
            break;
        }
    }
    if (!sec) {
        return false;
    }
    if (sec->has_rdm) {
        ram_discard_manager_unregister_listener(
            memory_region_get_ram_discard_manager(section->mr), &sec->rdl);
    }
    rmp_sync_del_range(s->engine, sec->iova, sec->size);
    QLIST_REMOVE(sec, next);
    g_free(sec);
    if (QLIST_EMPTY(&s->sections)) {
        vfio_rmp_sync_free(s);
    }
    return true;
}

/* Monitor */

RmpSyncInfoList *qmp_query_rmp_sync(Error **errp)
{
    RmpSyncInfoList *head = NULL, **tail = &head;
    VFIORmpSync *s;

    QLIST_FOREACH(s, &vfio_rmp_syncs, next) {
        RmpSyncInfo *info = g_new0(RmpSyncInfo, 1);
        RmpSyncStats st;

        rmp_sync_get_stats(s->engine, &st);
        info->iommufd =
            g_strdup(object_get_canonical_path_component(OBJECT(s->be)));
        info->ioas_id = s->ioas_id;
        info->policy = s->policy;
        info->regions_2m = st.regions_2m;
        info->regions_4k = st.regions_4k;
        info->conflicts = st.conflicts;
        info->areas = st.areas;
        info->mapped_bytes = st.mapped_pages * SNP_RMP_BYTES_4K;
        info->iotlb_entries = st.iotlb_entries;
        info->ioctls = st.ioctls;
        info->resizes = st.resizes;
        info->windows = st.windows;
        info->window_pages = st.window_pages;
        info->window_us_max = st.window_us_max;
        info->errors = st.errors;
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
        monitor_printf(mon, "no IO address space follows an RMP\n");
    }
    for (l = list; l; l = l->next) {
        RmpSyncInfo *i = l->value;

        monitor_printf(mon, "iommufd %s IOAS %u (%s): %" PRIu64 " regions "
                       "at 2M, %" PRIu64 " at 4K, %" PRIu64 " conflicts, %"
                       PRIu64 " areas, %" PRIu64 " bytes, %" PRIu64
                       " IOTLB entries; %" PRIu64 " ioctls, %" PRIu64
                       " resizes, %" PRIu64 " unmap-then-map windows "
                       "(longest %" PRIu64 " us), %" PRIu64 " errors\n",
                       i->iommufd, i->ioas_id, RmpSyncPolicy_str(i->policy),
                       i->regions_2m, i->regions_4k, i->conflicts, i->areas,
                       i->mapped_bytes, i->iotlb_entries, i->ioctls,
                       i->resizes, i->windows, i->window_us_max, i->errors);
    }
    qapi_free_RmpSyncInfoList(list);
}
