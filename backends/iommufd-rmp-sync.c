/*
 * iommufd backend: configuration of the RMP-granularity sync
 *
 * With rmp-sync on, the VFIO containers of this backend map guest memory
 * through hw/vfio/rmp-sync.c, which keeps the IO page sizes in lockstep
 * with the RMP, or another granularity source, named by "rmp" (an
 * snp-rmp object on x86).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-types-qom.h"
#include "system/iommufd.h"
#include "system/granularity-source.h"

static bool rmp_sync_may_set(Object *obj, const char *name, Error **errp)
{
    if (IOMMUFD_BACKEND(obj)->rmp_sync.frozen) {
        error_setg(errp, "iommufd: '%s' cannot change once the object "
                   "exists", name);
        return false;
    }
    return true;
}

static int rmp_sync_get_policy(Object *obj, Error **errp)
{
    return IOMMUFD_BACKEND(obj)->rmp_sync.policy;
}

static void rmp_sync_set_policy(Object *obj, int value, Error **errp)
{
    if (!rmp_sync_may_set(obj, "rmp-sync", errp)) {
        return;
    }
    IOMMUFD_BACKEND(obj)->rmp_sync.policy = value;
}

static char *rmp_sync_get_rmp(Object *obj, Error **errp)
{
    return g_strdup(IOMMUFD_BACKEND(obj)->rmp_sync.rmp);
}

static void rmp_sync_set_rmp(Object *obj, const char *value, Error **errp)
{
    IOMMUFDBackend *be = IOMMUFD_BACKEND(obj);

    if (!rmp_sync_may_set(obj, "rmp", errp)) {
        return;
    }
    g_free(be->rmp_sync.rmp);
    be->rmp_sync.rmp = g_strdup(value);
}

static bool rmp_sync_get_hitless(Object *obj, Error **errp)
{
    return IOMMUFD_BACKEND(obj)->rmp_sync.hitless;
}

static void rmp_sync_set_hitless(Object *obj, bool value, Error **errp)
{
    if (!rmp_sync_may_set(obj, "rmp-sync-hitless", errp)) {
        return;
    }
    IOMMUFD_BACKEND(obj)->rmp_sync.hitless = value;
}

void iommufd_backend_rmp_sync_class_init(ObjectClass *oc)
{
    object_class_property_add_enum(oc, "rmp-sync", "RmpSyncPolicy",
                                   &RmpSyncPolicy_lookup,
                                   rmp_sync_get_policy, rmp_sync_set_policy);
    object_class_property_set_description(oc, "rmp-sync",
        "keep IO page sizes in lockstep with the RMP: off, shared or all");
    object_class_property_add_str(oc, "rmp", rmp_sync_get_rmp,
                                  rmp_sync_set_rmp);
    object_class_property_set_description(oc, "rmp",
        "the RMP (snp-rmp object) rmp-sync follows (optional when there "
        "is one)");
    object_class_property_add_bool(oc, "rmp-sync-hitless",
                                   rmp_sync_get_hitless,
                                   rmp_sync_set_hitless);
    object_class_property_set_description(oc, "rmp-sync-hitless",
        "never unmap a page whose RMP page size stays, even for a moment "
        "(one area per page where the RMP is 4K)");
}

bool iommufd_backend_rmp_sync_complete(IOMMUFDBackend *be, Error **errp)
{
    if (be->rmp_sync.policy == RMP_SYNC_POLICY_OFF) {
        if (be->rmp_sync.rmp || be->rmp_sync.hitless) {
            error_setg(errp, "iommufd: '%s' needs rmp-sync=shared or all",
                       be->rmp_sync.rmp ? "rmp" : "rmp-sync-hitless");
            return false;
        }
        be->rmp_sync.frozen = true;
        return true;
    }
    /* the granularity source must exist already: create it first */
    if (!granularity_source_find(be->rmp_sync.rmp, errp)) {
        error_prepend(errp, "iommufd: rmp-sync: ");
        return false;
    }
    be->rmp_sync.frozen = true;
    return true;
}

void iommufd_backend_rmp_sync_finalize(IOMMUFDBackend *be)
{
    g_free(be->rmp_sync.rmp);
}
