/*
 * SNP mode of the emulated AMD IOMMU (amd-iommu,snp=on)
 *
 * The rules themselves live in snp-rmp-check.c; this file connects them
 * to the device: which RMP, which devices are bound to a guest, the
 * RMP_PAGE_FAULT event layout, the QMP event and the QMP bind commands.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qapi/qapi-commands-snp.h"
#include "qapi/qapi-events-snp.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_bus.h"
#include "migration/vmstate.h"
#include "hw/i386/snp-rmp-check.h"
#include "amd_iommu.h"
#include "trace.h"

static int amdvi_snp_binding_index(AMDVISnp *snp, PCIDevice *dev);

/* Drop the binding of @dev, if any: true if there was one */
static bool amdvi_snp_unbind(AMDVIState *s, PCIDevice *dev)
{
    AMDVISnp *snp = &s->snp;
    int i;

    amdvi_lock(s);
    i = amdvi_snp_binding_index(snp, dev);
    if (i >= 0) {
        g_array_remove_index_fast(snp->bindings, i);
        snp->bind_gen += 2;
    }
    amdvi_unlock(s);
    if (i < 0) {
        return false;
    }
    object_unref(OBJECT(dev));
    return true;
}

/* A bound device goes away (hot unplug): so does its binding */
static void amdvi_snp_device_unrealize(DeviceListener *listener,
                                       DeviceState *dev)
{
    AMDVISnp *snp = container_of(listener, AMDVISnp, device_listener);
    AMDVIState *s = container_of(snp, AMDVIState, snp);
    PCIDevice *pdev = (PCIDevice *)object_dynamic_cast(OBJECT(dev),
                                                       TYPE_PCI_DEVICE);

    if (pdev && amdvi_snp_unbind(s, pdev)) {
        trace_amdvi_snp_bind(dev->id ? dev->id : "", SNP_RMP_ASID_NONE);
    }
}

bool amdvi_snp_realize(AMDVIState *s, AMDVISnp *snp, Error **errp)
{
    if (!snp->enabled) {
        if (snp->rmp) {
            error_setg(errp, "amd-iommu: 'rmp' needs snp=on");
            return false;
        }
        return true;
    }
    if (!s->dma_remap) {
        error_setg(errp, "amd-iommu: snp=on needs dma-remap=on "
                   "(SNP checks every DMA after translation)");
        return false;
    }
    if (!snp->rmp) {
        SnpRmp *rmp = snp_rmp_find(NULL, errp);

        if (!rmp) {
            error_prepend(errp, "amd-iommu: snp=on: ");
            return false;
        }
        object_property_set_link(OBJECT(s), "rmp", OBJECT(rmp), &error_abort);
    }
    snp->table = snp_rmp_get_table(snp->rmp);
    snp->rmp_version = snp_rmp_table_version_ptr(snp->table);
    snp->bindings = g_array_new(false, false, sizeof(AMDVISnpBinding));
    snp->bind_gen = 2;          /* IOTLB entries start at 0: unchecked */
    ratelimit_init(&snp->fault_events);
    ratelimit_set_speed(&snp->fault_events, snp->fault_event_rate,
                        NANOSECONDS_PER_SECOND);
    snp->device_listener.unrealize = amdvi_snp_device_unrealize;
    device_listener_register(&snp->device_listener);
    return true;
}

/*
 * May an SNP_RMP_FAULT go out now?  If so, @suppressed is how many were
 * held back since the last one.  Held back: the rest of the second in
 * which the rate was reached (recording them would only stretch it).
 */
static bool amdvi_snp_fault_event_allowed(AMDVISnp *snp,
                                          uint64_t *suppressed)
{
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t delay;

    if (now < snp->fault_events_held_until) {
        snp->fault_events_suppressed++;
        return false;
    }
    delay = ratelimit_calculate_delay(&snp->fault_events, 1);
    if (delay > 0) {
        snp->fault_events_held_until = now + delay;
        /* the one that reached the rate still goes out */
    }
    *suppressed = snp->fault_events_suppressed;
    snp->fault_events_suppressed = 0;
    return true;
}

uint32_t amdvi_snp_bound_asid(AMDVISnp *snp, PCIBus *bus, uint8_t devfn)
{
    for (guint i = 0; i < snp->bindings->len; i++) {
        AMDVISnpBinding *b = &g_array_index(snp->bindings,
                                            AMDVISnpBinding, i);

        if (pci_get_bus(b->dev) == bus && b->dev->devfn == devfn) {
            return b->asid;
        }
    }
    return SNP_RMP_ASID_NONE;
}

static SnpRmpFaultReason reason_to_qapi(SnpRmpCheckResult r)
{
    switch (r) {
    case SNP_RMP_CHECK_PAGE_SIZE_MISMATCH:
        return SNP_RMP_FAULT_REASON_PAGE_SIZE_MISMATCH;
    case SNP_RMP_CHECK_ASSIGNED:
        return SNP_RMP_FAULT_REASON_ASSIGNED;
    case SNP_RMP_CHECK_ASID_MISMATCH:
        return SNP_RMP_FAULT_REASON_ASID_MISMATCH;
    case SNP_RMP_CHECK_GPA_MISMATCH:
        return SNP_RMP_FAULT_REASON_GPA_MISMATCH;
    case SNP_RMP_CHECK_NOT_VALIDATED:
        return SNP_RMP_FAULT_REASON_NOT_VALIDATED;
    default:
        g_assert_not_reached();
    }
}

/*
 * RMP_PAGE_FAULT, as Linux's amd_iommu_report_rmp_fault() decodes it:
 * DW0[15:0] DeviceID, DW0[23:16] flags_rmp, DW1[15:0] vmg_tag,
 * DW1[27:16] flags, DW1[31:28] event code, DW2-3 the GPA.
 * flags_rmp's meanings are not public: it is 0, and QMP and the trace
 * say why the check failed.
 */
static void amdvi_snp_encode_rmp_fault(uint64_t evt[2], uint16_t devid,
                                       hwaddr gpa, bool write)
{
    uint64_t flags = write ? AMDVI_EVENT_FLAG_RW : 0;

    evt[0] = cpu_to_le64(devid | (uint64_t)(AMDVI_EVENT_RMP_PAGE_FAULT |
                                             flags) << 48);
    evt[1] = cpu_to_le64(gpa);
}

static void amdvi_snp_report(AMDVISnp *snp, PCIBus *bus, uint8_t devfn,
                             uint16_t devid, hwaddr iova, hwaddr spa,
                             uint64_t io_page_size, SnpRmpSize check,
                             SnpRmpSize rmp, SnpRmpCheckResult result,
                             bool write)
{
    PCIDevice *dev = pci_find_device(bus, pci_bus_num(bus), devfn);
    g_autofree char *path = NULL;
    const char *name = "";
    uint64_t suppressed;

    if (dev) {
        name = DEVICE(dev)->id;
        if (!name) {
            path = object_get_canonical_path(OBJECT(dev));
            name = path;
        }
    }
    trace_amdvi_snp_rmp_fault(devid, iova, spa, io_page_size,
                              SnpRmpPageSize_str(snp_rmp_size_to_qapi(check)),
                              SnpRmpPageSize_str(snp_rmp_size_to_qapi(rmp)),
                              SnpRmpFaultReason_str(reason_to_qapi(result)),
                              write);
    if (!amdvi_snp_fault_event_allowed(snp, &suppressed)) {
        return;
    }
    qapi_event_send_snp_rmp_fault(name, devid, iova, spa, io_page_size,
                                  snp_rmp_size_to_qapi(check),
                                  snp_rmp_size_to_qapi(rmp),
                                  reason_to_qapi(result), write,
                                  suppressed != 0, suppressed);
}

/*
 * A failed check, apart from the check itself: keeps the check's own code
 * (on every page walk) free of what only a fault needs.
 */
static void amdvi_snp_fault(AMDVISnp *snp, PCIBus *bus, uint8_t devfn,
                            hwaddr iova, hwaddr spa, uint64_t io_page_size,
                            SnpRmpSize check, SnpRmpSize rmp_size,
                            SnpRmpCheckResult result, bool write,
                            bool report, uint64_t evt[2])
{
    uint16_t devid = PCI_BUILD_BDF(pci_bus_num(bus), devfn);

    if (report) {
        amdvi_snp_report(snp, bus, devfn, devid, iova, spa, io_page_size,
                         check, rmp_size, result, write);
    }
    amdvi_snp_encode_rmp_fault(evt, devid, iova, write);
}

/* The failure half of amdvi_snp_check_dma(), out of its way */
bool amdvi_snp_check_failed(AMDVISnp *snp, PCIBus *bus, uint8_t devfn,
                            hwaddr iova, IOMMUAccessFlags flag,
                            IOMMUTLBEntry *ret, SnpRmpSize check,
                            SnpRmpSize rmp_size, SnpRmpCheckResult result,
                            bool report, uint64_t evt[2])
{
    uint64_t io_page_size = ret->addr_mask + 1;
    hwaddr spa = (ret->translated_addr & ~ret->addr_mask) |
                 (iova & ret->addr_mask);

    ret->perm = IOMMU_NONE;
    if (flag == IOMMU_NONE) {
        return true;            /* a lookup, not a DMA: nothing to log */
    }
    amdvi_snp_fault(snp, bus, devfn, iova, spa, io_page_size, check,
                    rmp_size, result, flag & IOMMU_WO, report, evt);
    return false;
}

/* QMP */

static AMDVIState *amdvi_snp_find(Error **errp)
{
    bool ambiguous = false;
    Object *obj = object_resolve_path_type("", TYPE_AMD_IOMMU_DEVICE,
                                           &ambiguous);

    if (!obj || !AMD_IOMMU_DEVICE(obj)->snp.enabled) {
        error_setg(errp, "there is no amd-iommu with snp=on");
        return NULL;
    }
    return AMD_IOMMU_DEVICE(obj);
}

static PCIDevice *amdvi_snp_find_device(const char *id, Error **errp)
{
    PCIDevice *pdev = NULL;
    Object *obj;

    if (pci_qdev_find_device(id, &pdev) == 0) {
        return pdev;
    }
    obj = object_resolve_path_type(id, TYPE_PCI_DEVICE, NULL);
    if (!obj) {
        error_setg(errp, "'%s' is not a PCI device", id);
        return NULL;
    }
    return PCI_DEVICE(obj);
}

static int amdvi_snp_binding_index(AMDVISnp *snp, PCIDevice *dev)
{
    for (guint i = 0; i < snp->bindings->len; i++) {
        if (g_array_index(snp->bindings, AMDVISnpBinding, i).dev == dev) {
            return i;
        }
    }
    return -1;
}

void qmp_snp_iommu_bind_device(const char *device, uint32_t asid,
                               Error **errp)
{
    AMDVIState *s = amdvi_snp_find(errp);
    AMDVISnp *snp = s ? &s->snp : NULL;
    AMDVISnpBinding b;
    int i;

    if (!snp) {
        return;
    }
    b.dev = amdvi_snp_find_device(device, errp);
    if (!b.dev) {
        return;
    }
    if (asid == SNP_RMP_ASID_NONE) {
        error_setg(errp, "ASID 0 is the hypervisor's: bind to a guest ASID");
        return;
    }
    b.asid = asid;
    amdvi_lock(s);
    i = amdvi_snp_binding_index(snp, b.dev);
    if (i >= 0) {
        g_array_index(snp->bindings, AMDVISnpBinding, i).asid = asid;
    } else {
        object_ref(OBJECT(b.dev));
        g_array_append_val(snp->bindings, b);
    }
    snp->bind_gen += 2;
    amdvi_unlock(s);
    trace_amdvi_snp_bind(device, asid);
}

void qmp_snp_iommu_unbind_device(const char *device, Error **errp)
{
    AMDVIState *s = amdvi_snp_find(errp);
    PCIDevice *dev;

    if (!s) {
        return;
    }
    dev = amdvi_snp_find_device(device, errp);
    if (!dev) {
        return;
    }
    if (!amdvi_snp_unbind(s, dev)) {
        error_setg(errp, "'%s' is not bound to a guest", device);
        return;
    }
    trace_amdvi_snp_bind(device, SNP_RMP_ASID_NONE);
}

SnpIommuBindingList *qmp_query_snp_iommu_bindings(Error **errp)
{
    AMDVIState *s = amdvi_snp_find(errp);
    SnpIommuBindingList *head = NULL, **tail = &head;

    if (!s) {
        return NULL;
    }
    amdvi_lock(s);
    for (guint i = 0; i < s->snp.bindings->len; i++) {
        AMDVISnpBinding *b = &g_array_index(s->snp.bindings,
                                            AMDVISnpBinding, i);
        SnpIommuBinding *info = g_new0(SnpIommuBinding, 1);
        DeviceState *d = DEVICE(b->dev);

        info->device = d->id ? g_strdup(d->id)
                             : object_get_canonical_path(OBJECT(d));
        info->devid = PCI_BUILD_BDF(pci_bus_num(pci_get_bus(b->dev)),
                                    b->dev->devfn);
        info->asid = b->asid;
        QAPI_LIST_APPEND(tail, info);
    }
    amdvi_unlock(s);
    return head;
}

/*
 * Migration of the bindings.  Bus numbers are the guest's, and the PCI
 * devices' state loads after the IOMMU's: a bound device travels as its
 * QOM path, and as its qdev path (the slot and function path from the
 * root bus, which migration matches device sections with).  On load the
 * QOM path must name a PCI device whose qdev path is the same: a device
 * without an id has a QOM path that depends on the order of creation, and
 * a binding must never land on another device.  Each record: the ASID
 * (le32), the lengths of the two paths (le16 each), the two paths.  The
 * subsection is sent whenever SNP is on, empty or not: the destination's
 * bindings become the source's.
 */
#define AMDVI_SNP_MIG_HDR   8
#define AMDVI_SNP_MIG_PATH  1024    /* the longest path that migrates */

static bool amdvi_snp_bindings_needed(void *opaque)
{
    AMDVIState *s = opaque;

    return s->snp.enabled;
}

static bool amdvi_snp_bindings_pre_save(void *opaque, Error **errp)
{
    AMDVIState *s = opaque;
    AMDVISnp *snp = &s->snp;
    g_autoptr(GByteArray) buf = g_byte_array_new();
    bool ok = true;

    amdvi_lock(s);
    for (guint i = 0; i < snp->bindings->len; i++) {
        AMDVISnpBinding *b = &g_array_index(snp->bindings,
                                            AMDVISnpBinding, i);
        g_autofree char *path = object_get_canonical_path(OBJECT(b->dev));
        g_autofree char *dev_path = qdev_get_dev_path(DEVICE(b->dev));
        size_t len = strlen(path), dev_len = dev_path ? strlen(dev_path) : 0;
        uint8_t hdr[AMDVI_SNP_MIG_HDR];

        if (len > AMDVI_SNP_MIG_PATH || dev_len > AMDVI_SNP_MIG_PATH) {
            error_setg(errp, "amd-iommu: the path of the device bound to "
                       "ASID %" PRIu32 " is too long to migrate", b->asid);
            ok = false;
            break;
        }
        stl_le_p(hdr, b->asid);
        stw_le_p(hdr + 4, len);
        stw_le_p(hdr + 6, dev_len);
        g_byte_array_append(buf, hdr, sizeof(hdr));
        g_byte_array_append(buf, (const uint8_t *)path, len);
        g_byte_array_append(buf, (const uint8_t *)dev_path, dev_len);
    }
    amdvi_unlock(s);
    if (!ok) {
        return false;
    }
    g_free(snp->mig_buf);
    snp->mig_len = buf->len;
    snp->mig_buf = g_byte_array_free(g_steal_pointer(&buf), false);
    return true;
}

static int amdvi_snp_bindings_post_save(void *opaque)
{
    AMDVISnp *snp = &((AMDVIState *)opaque)->snp;

    g_clear_pointer(&snp->mig_buf, g_free);
    snp->mig_len = 0;
    return 0;
}

/* A buffer that a failed load left behind */
static bool amdvi_snp_bindings_pre_load(void *opaque, Error **errp)
{
    return amdvi_snp_bindings_post_save(opaque) == 0;
}

/* A path of the record at @off, as a string without NUL bytes */
static char *amdvi_snp_mig_path(AMDVISnp *snp, uint32_t off, uint16_t len)
{
    char *path = g_strndup((const char *)snp->mig_buf + off, len);

    if (strlen(path) != len) {
        g_free(path);
        return NULL;
    }
    return path;
}

/* Every device of the stream, or an error and nothing changed */
static bool amdvi_snp_bindings_parse(AMDVISnp *snp, GArray *out,
                                     Error **errp)
{
    uint32_t off = 0;

    while (off < snp->mig_len) {
        AMDVISnpBinding b;
        g_autofree char *path = NULL;
        g_autofree char *dev_path = NULL;
        g_autofree char *here = NULL;
        uint16_t len, dev_len;
        Object *obj;

        if (snp->mig_len - off < AMDVI_SNP_MIG_HDR) {
            error_setg(errp, "truncated record at byte %" PRIu32, off);
            return false;
        }
        b.asid = ldl_le_p(snp->mig_buf + off);
        len = lduw_le_p(snp->mig_buf + off + 4);
        dev_len = lduw_le_p(snp->mig_buf + off + 6);
        off += AMDVI_SNP_MIG_HDR;
        if (snp->mig_len - off < (uint32_t)len + dev_len) {
            error_setg(errp, "truncated paths at byte %" PRIu32, off);
            return false;
        }
        path = amdvi_snp_mig_path(snp, off, len);
        dev_path = amdvi_snp_mig_path(snp, off + len, dev_len);
        off += len + dev_len;
        if (!path || !dev_path || path[0] != '/' ||
            len > AMDVI_SNP_MIG_PATH || dev_len > AMDVI_SNP_MIG_PATH) {
            error_setg(errp, "invalid device path");
            return false;
        }
        if (b.asid == SNP_RMP_ASID_NONE) {
            error_setg(errp, "a device bound to ASID 0");
            return false;
        }
        obj = object_resolve_path_type(path, TYPE_PCI_DEVICE, NULL);
        here = obj ? qdev_get_dev_path(DEVICE(obj)) : NULL;
        if (!obj || g_strcmp0(here ?: "", dev_path)) {
            error_setg(errp, "the device bound to ASID %" PRIu32 " is not "
                       "here: no PCI device at QOM path '%s' with slot "
                       "path '%s'", b.asid, path, dev_path);
            return false;
        }
        b.dev = PCI_DEVICE(obj);
        for (guint i = 0; i < out->len; i++) {
            if (g_array_index(out, AMDVISnpBinding, i).dev == b.dev) {
                error_setg(errp, "a device bound twice");
                return false;
            }
        }
        g_array_append_val(out, b);
    }
    return true;
}

static bool amdvi_snp_bindings_post_load(void *opaque, int version_id,
                                         Error **errp)
{
    AMDVIState *s = opaque;
    AMDVISnp *snp = &s->snp;
    g_autoptr(GArray) loaded = g_array_new(false, false,
                                           sizeof(AMDVISnpBinding));
    GArray *old;
    bool ok = amdvi_snp_bindings_parse(snp, loaded, errp);

    amdvi_snp_bindings_post_save(s);
    if (!ok) {
        error_prepend(errp, "amd-iommu: SNP bindings in the migration "
                      "stream: ");
        return false;
    }
    for (guint i = 0; i < loaded->len; i++) {
        object_ref(OBJECT(g_array_index(loaded, AMDVISnpBinding, i).dev));
    }
    amdvi_lock(s);
    old = snp->bindings;
    snp->bindings = g_steal_pointer(&loaded);
    snp->bind_gen += 2;
    amdvi_unlock(s);
    for (guint i = 0; i < old->len; i++) {
        object_unref(OBJECT(g_array_index(old, AMDVISnpBinding, i).dev));
    }
    g_array_free(old, true);
    return true;
}

/*
 * Checked before the buffer is allocated: an IOMMU in SNP mode here, and
 * no more than a record of two paths of the longest length per PCI
 * function (137 MB: it fits the 32-bit length).
 */
#define AMDVI_SNP_MIG_MAX   (PCI_BUS_MAX * PCI_SLOT_MAX * PCI_FUNC_MAX * \
                             (AMDVI_SNP_MIG_HDR + 2 * AMDVI_SNP_MIG_PATH))

static bool amdvi_snp_bindings_len_valid(void *opaque, int version_id)
{
    AMDVIState *s = opaque;

    if (!s->snp.enabled) {
        error_report("amd-iommu: the migration stream has SNP bindings, "
                     "and this amd-iommu has snp=off");
        return false;
    }
    if (s->snp.mig_len > AMDVI_SNP_MIG_MAX) {
        error_report("amd-iommu: invalid SNP bindings length %" PRIu32
                     " in the migration stream", s->snp.mig_len);
        return false;
    }
    return true;
}

const VMStateDescription vmstate_amdvi_snp_bindings = {
    .name = "amd-iommu/snp-bindings",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = amdvi_snp_bindings_needed,
    .pre_save_errp = amdvi_snp_bindings_pre_save,
    .post_save = amdvi_snp_bindings_post_save,
    .pre_load_errp = amdvi_snp_bindings_pre_load,
    .post_load_errp = amdvi_snp_bindings_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(snp.mig_len, AMDVIState),
        VMSTATE_VALIDATE("snp-bindings length", amdvi_snp_bindings_len_valid),
        VMSTATE_VBUFFER_ALLOC_UINT32(snp.mig_buf, AMDVIState, 0, NULL,
                                     snp.mig_len),
        VMSTATE_END_OF_LIST()
    },
};

typedef struct AMDVISnpBuffers {
    SnpRmp *rmp;
    SnpRmpRange *ranges;
    unsigned n, max;
} AMDVISnpBuffers;

static void amdvi_snp_add_buffer(AMDVISnpBuffers *b, uint64_t start,
                                 uint64_t size)
{
    if (size && b->n < b->max) {
        b->ranges[b->n++] = (SnpRmpRange) { start, size };
    }
}

static int amdvi_snp_collect_buffers(Object *obj, void *opaque)
{
    AMDVISnpBuffers *b = opaque;
    AMDVIState *s;
    uint64_t control, excl_base, excl_limit;

    if (!object_dynamic_cast(obj, TYPE_AMD_IOMMU_DEVICE)) {
        return 0;
    }
    s = AMD_IOMMU_DEVICE(obj);
    if (!s->snp.enabled || s->snp.rmp != b->rmp) {
        return 0;
    }
    control = ldq_le_p(s->mmior + AMDVI_MMIO_CONTROL);
    if (control & AMDVI_MMIO_CONTROL_EVENTLOGEN) {
        amdvi_snp_add_buffer(b, s->evtlog,
                             (uint64_t)s->evtlog_len * AMDVI_EVENT_LEN);
    }
    if (control & AMDVI_SNP_CONTROL_PPRLOGEN) {
        amdvi_snp_add_buffer(b, s->ppr_log,
                             (uint64_t)s->pprlog_len * AMDVI_EVENT_LEN);
    }
    /*
     * With SNP, Linux's iommu_set_cwwb_range() puts the completion-wait
     * page in the exclusion base and limit registers, which then name it.
     */
    excl_base = ldq_le_p(s->mmior + AMDVI_MMIO_EXCL_BASE) &
                AMDVI_MMIO_EXCL_LIMIT_MASK;
    excl_limit = ldq_le_p(s->mmior + AMDVI_MMIO_EXCL_LIMIT) &
                 AMDVI_MMIO_EXCL_LIMIT_MASK;
    if (excl_base && excl_limit >= excl_base) {
        amdvi_snp_add_buffer(b, excl_base,
                             excl_limit - excl_base + SNP_RMP_BYTES_4K);
    }
    return 0;
}

unsigned amdvi_snp_firmware_buffers(SnpRmp *rmp, SnpRmpRange *ranges,
                                    unsigned max)
{
    AMDVISnpBuffers b = { .rmp = rmp, .ranges = ranges, .max = max };

    object_child_foreach_recursive(object_get_root(),
                                   amdvi_snp_collect_buffers, &b);
    return b.n;
}
