/*
 * SEV-SNP Reverse Map Table object (-object snp-rmp)
 *
 * QOM, QMP, HMP, reset and migration around the RMP model of
 * snp-rmp-table.c.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qapi/qapi-commands-snp.h"
#include "qom/object_interfaces.h"
#include "qobject/qdict.h"
#include "migration/vmstate.h"
#include "monitor/hmp.h"
#include "monitor/hmp-target.h"
#include "monitor/monitor.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
#include "hw/i386/x86.h"
#include "system/reset.h"
#include "system/kvm.h"
#include "hw/i386/snp-rmp.h"
#include "hw/i386/snp-host.h"
#include "trace.h"

#define SNP_RMP_QUERY_MAX 4096

SnpRmp *snp_rmp_find(const char *id, Error **errp)
{
    Object *obj;
    bool ambiguous = false;

    if (id) {
        obj = object_resolve_path_component(object_get_objects_root(), id);
        if (!obj || !object_dynamic_cast(obj, TYPE_SNP_RMP)) {
            error_setg(errp, "'%s' is not an snp-rmp object", id);
            return NULL;
        }
        return SNP_RMP(obj);
    }
    obj = object_resolve_path_type("", TYPE_SNP_RMP, &ambiguous);
    if (ambiguous) {
        error_setg(errp, "there is more than one snp-rmp object: "
                   "name one with 'rmp'");
        return NULL;
    }
    if (!obj) {
        error_setg(errp, "there is no snp-rmp object "
                   "(add one with -object snp-rmp,id=ID)");
        return NULL;
    }
    return SNP_RMP(obj);
}

/*
 * Created once, never replaced: once it exists, readers need no lock (the
 * table has its own), which lets the granularity source's page_size and
 * is_shared run under the locks of the object's notifiers.
 */
SnpRmpTable *snp_rmp_get_table(SnpRmp *rmp)
{
    SnpRmpTable *t = qatomic_read(&rmp->table);
    MachineState *ms;
    X86MachineState *x86ms;
    SnpRmpRange ram[2];
    unsigned n = 0;

    if (t) {
        smp_mb_acquire();       /* pairs with qatomic_store_release() */
        return t;
    }
    QEMU_LOCK_GUARD(&rmp->lock);
    if (rmp->table) {
        return rmp->table;
    }
    ms = MACHINE(qdev_get_machine());
    x86ms = (X86MachineState *)object_dynamic_cast(OBJECT(ms),
                                                   TYPE_X86_MACHINE);
    if (x86ms) {
        ram[n++] = (SnpRmpRange) { 0, x86ms->below_4g_mem_size };
        if (x86ms->above_4g_mem_size) {
            ram[n++] = (SnpRmpRange) { x86ms->above_4g_mem_start,
                                       x86ms->above_4g_mem_size };
        }
    } else {
        ram[n++] = (SnpRmpRange) { 0, ms->ram_size };
    }
    t = snp_rmp_table_new(ram, n);
    qatomic_store_release(&rmp->table, t);
    return t;
}

static bool snp_rmp_ready(Error **errp)
{
    if (!phase_check(PHASE_MACHINE_INITIALIZED)) {
        error_setg(errp, "the RMP exists once the machine is initialized");
        return false;
    }
    return true;
}

static void snp_rmp_notify(SnpRmp *rmp, GranularityChangePhase phase,
                           uint64_t spa, uint64_t size)
{
    GranularityChange change = { .phase = phase, .addr = spa, .size = size };

    notifier_list_notify(&rmp->change_notifiers, &change);
}

static void snp_rmp_changed(SnpRmp *rmp, uint64_t spa, uint64_t size)
{
    snp_rmp_notify(rmp, GRANULARITY_CHANGED, spa, size);
}

SnpRmpStatus snp_rmp_update_status(SnpRmp *rmp, uint64_t spa,
                                   SnpRmpSize size, const SnpRmpAttrs *attrs)
{
    SnpRmpStatus st;

    QEMU_LOCK_GUARD(&rmp->lock);
    st = snp_rmp_table_update(snp_rmp_get_table(rmp), spa, size, attrs);
    trace_snp_rmp_update(spa, size == SNP_RMP_SIZE_2M ? "2m" : "4k",
                         attrs->assigned, attrs->asid, attrs->gpa,
                         attrs->validated, attrs->immutable,
                         snp_rmp_status_str(st));
    if (st == SNP_RMP_OK) {
        snp_rmp_changed(rmp, spa, size == SNP_RMP_SIZE_2M ? SNP_RMP_BYTES_2M
                                                          : SNP_RMP_BYTES_4K);
    }
    return st;
}

SnpRmpStatus snp_rmp_firmware_update(SnpRmp *rmp, uint64_t spa,
                                     SnpRmpSize size,
                                     const SnpRmpAttrs *attrs)
{
    SnpRmpStatus st;

    QEMU_LOCK_GUARD(&rmp->lock);
    st = snp_rmp_table_firmware_update(snp_rmp_get_table(rmp), spa, size,
                                       attrs);
    trace_snp_rmp_firmware_update(spa, size == SNP_RMP_SIZE_2M ? "2m" : "4k",
                                  attrs->assigned, attrs->immutable,
                                  snp_rmp_status_str(st));
    if (st == SNP_RMP_OK) {
        snp_rmp_changed(rmp, spa, size == SNP_RMP_SIZE_2M ? SNP_RMP_BYTES_2M
                                                          : SNP_RMP_BYTES_4K);
    }
    return st;
}

bool snp_rmp_update(SnpRmp *rmp, uint64_t spa, SnpRmpSize size,
                    const SnpRmpAttrs *attrs, Error **errp)
{
    SnpRmpStatus st;

    if (!snp_rmp_ready(errp)) {
        return false;
    }
    st = snp_rmp_update_status(rmp, spa, size, attrs);
    if (st != SNP_RMP_OK) {
        error_setg(errp, "RMPUPDATE of SPA 0x%" PRIx64 " at %s failed: %s",
                   spa, size == SNP_RMP_SIZE_2M ? "2M" : "4K",
                   snp_rmp_status_str(st));
        return false;
    }
    return true;
}

SnpRmpStatus snp_rmp_psmash_status(SnpRmp *rmp, uint64_t spa)
{
    SnpRmpStatus st;

    QEMU_LOCK_GUARD(&rmp->lock);
    st = snp_rmp_table_psmash(snp_rmp_get_table(rmp), spa);
    trace_snp_rmp_psmash(spa, snp_rmp_status_str(st));
    if (st == SNP_RMP_OK) {
        snp_rmp_changed(rmp, spa, SNP_RMP_BYTES_2M);
    }
    return st;
}

bool snp_rmp_psmash(SnpRmp *rmp, uint64_t spa, Error **errp)
{
    SnpRmpStatus st;

    if (!snp_rmp_ready(errp)) {
        return false;
    }
    st = snp_rmp_psmash_status(rmp, spa);
    if (st != SNP_RMP_OK) {
        error_setg(errp, "PSMASH of SPA 0x%" PRIx64 " failed: %s", spa,
                   snp_rmp_status_str(st));
        return false;
    }
    return true;
}

void snp_rmp_load(SnpRmp *rmp, SnpRmpTable *from)
{
    SnpRmpTable *t = snp_rmp_get_table(rmp);

    QEMU_LOCK_GUARD(&rmp->lock);
    snp_rmp_table_replace(t, from);
    snp_rmp_changed(rmp, 0, snp_rmp_table_ram_top(t));
}

void snp_rmp_set_enforced(SnpRmp *rmp, bool enforced)
{
    QEMU_LOCK_GUARD(&rmp->lock);
    qatomic_set(&rmp->enforced, enforced);
    if (rmp->table) {
        /* verdicts cached while it was the other way go stale */
        snp_rmp_table_touch(rmp->table);
    }
}

typedef struct SnpRmpConversion {
    uint64_t gpa, size;
    bool to_private, hint_2m;
} SnpRmpConversion;

/* Called with rmp->lock held */
static void snp_rmp_shadow_apply(SnpRmp *rmp, const SnpRmpConversion *c)
{
    SnpRmpStatus st;
    SnpRmpTable *t;
    uint64_t top;

    t = snp_rmp_get_table(rmp);
    st = snp_rmp_table_shadow_convert(t, c->gpa, c->size, c->to_private,
                                      rmp->asid, c->hint_2m);
    trace_snp_rmp_shadow_convert(c->gpa, c->size, c->to_private, c->hint_2m,
                                 snp_rmp_status_str(st));
    /*
     * The range comes from the guest (KVM_HC_MAP_GPA_RANGE): tell the
     * notifiers of its part below the end of RAM only, which has no sum
     * that wraps.  Part of it may have changed before an error.
     */
    top = snp_rmp_table_ram_top(t);
    if (c->size && c->gpa < top && c->size - 1 <= UINT64_MAX - c->gpa) {
        snp_rmp_changed(rmp, c->gpa, MIN(c->size, top - c->gpa));
    }
}

static int snp_rmp_shadow_one(Object *obj, void *opaque)
{
    SnpRmp *rmp = (SnpRmp *)object_dynamic_cast(obj, TYPE_SNP_RMP);

    if (rmp && rmp->shadow) {
        QEMU_LOCK_GUARD(&rmp->lock);
        snp_rmp_shadow_apply(rmp, opaque);
    }
    return 0;
}

/*
 * A conversion of guest memory, on the converting thread: the shadow
 * holds its lock from before the conversion to after it, so that its
 * listeners see the RAM-discard notifications and the RMP change as one
 * event, and no other change of the RMP comes in between.
 */
static void snp_rmp_shadow_conversion(Notifier *n, void *data)
{
    SnpRmp *rmp = container_of(n, SnpRmp, conversion);
    KVMMemoryConversion *kc = data;
    SnpRmpConversion c = {
        .gpa = kc->start,
        .size = kc->size,
        .to_private = kc->to_private,
        .hint_2m = kc->page_size >= 2 * MiB,
    };

    if (!kc->done) {
        qemu_rec_mutex_lock(&rmp->lock);
        snp_rmp_notify(rmp, GRANULARITY_CONVERSION_BEGIN, c.gpa, c.size);
        return;
    }
    if (!kc->ret && phase_check(PHASE_MACHINE_INITIALIZED)) {
        snp_rmp_shadow_apply(rmp, &c);
    }
    snp_rmp_notify(rmp, GRANULARITY_CONVERSION_END, c.gpa, c.size);
    qemu_rec_mutex_unlock(&rmp->lock);
}

/* SNP_LAUNCH_UPDATE, with the BQL */
void snp_rmp_shadow_convert(uint64_t gpa, uint64_t size, bool to_private,
                            bool hint_2m)
{
    SnpRmpConversion c = { gpa, size, to_private, hint_2m };

    if (phase_check(PHASE_MACHINE_INITIALIZED)) {
        object_child_foreach(object_get_objects_root(), snp_rmp_shadow_one,
                             &c);
    }
}

/* The granularity source: RMP page sizes, and page states from the owner */

static uint64_t snp_rmp_page_size(GranularitySource *gs, uint64_t addr)
{
    return snp_rmp_table_is_2m(snp_rmp_get_table(SNP_RMP(gs)), addr) ?
           SNP_RMP_BYTES_2M : SNP_RMP_BYTES_4K;
}

static bool snp_rmp_is_shared(GranularitySource *gs, uint64_t addr)
{
    return snp_rmp_table_is_shared(snp_rmp_get_table(SNP_RMP(gs)), addr);
}

static void snp_rmp_add_notifier(GranularitySource *gs, Notifier *n)
{
    SnpRmp *rmp = SNP_RMP(gs);

    snp_rmp_get_table(rmp);     /* from now on, readers never block */
    QEMU_LOCK_GUARD(&rmp->lock);
    notifier_list_add(&rmp->change_notifiers, n);
}

static void snp_rmp_remove_notifier(GranularitySource *gs, Notifier *n)
{
    QEMU_LOCK_GUARD(&SNP_RMP(gs)->lock);
    notifier_remove(n);
}

/* Only a shadow follows KVM's conversions, and brackets them */
static bool snp_rmp_brackets_conversions(GranularitySource *gs)
{
    return SNP_RMP(gs)->shadow;
}

/* QMP */

static SnpRmpSize size_from_qapi(SnpRmpPageSize size)
{
    return size == SNP_RMP_PAGE_SIZE_2M ? SNP_RMP_SIZE_2M : SNP_RMP_SIZE_4K;
}

SnpRmpPageSize snp_rmp_size_to_qapi(SnpRmpSize size)
{
    return size == SNP_RMP_SIZE_2M ? SNP_RMP_PAGE_SIZE_2M
                                   : SNP_RMP_PAGE_SIZE_4K;
}

void qmp_snp_rmp_update(const char *id, uint64_t spa,
                        SnpRmpPageSize page_size, bool assigned,
                        bool has_asid, uint32_t asid, bool has_gpa,
                        uint64_t gpa, bool has_validated, bool validated,
                        bool has_immutable, bool immutable, Error **errp)
{
    SnpRmp *rmp = snp_rmp_find(id, errp);
    SnpRmpAttrs attrs = {
        .assigned = assigned,
        .asid = has_asid ? asid : 0,
        .gpa = has_gpa ? gpa : 0,
        .validated = has_validated && validated,
        .immutable = has_immutable && immutable,
    };

    if (rmp) {
        snp_rmp_update(rmp, spa, size_from_qapi(page_size), &attrs, errp);
    }
}

void qmp_snp_rmp_psmash(const char *id, uint64_t spa, Error **errp)
{
    SnpRmp *rmp = snp_rmp_find(id, errp);

    if (rmp) {
        snp_rmp_psmash(rmp, spa, errp);
    }
}

/* Runs under the table's lock: no calls to the table */
static void snp_rmp_query_add(uint64_t spa, const SnpRmpPage *page,
                              void *opaque)
{
    SnpRmpEntryList ***tail = opaque;
    SnpRmpEntry *e = g_new0(SnpRmpEntry, 1);

    e->spa = spa;
    e->page_size = snp_rmp_size_to_qapi(page->size);
    e->assigned = page->attrs.assigned;
    e->asid = page->attrs.asid;
    e->gpa = page->attrs.gpa;
    e->validated = page->attrs.validated;
    e->immutable = page->attrs.immutable;
    QAPI_LIST_APPEND(*tail, e);
}

SnpRmpEntryList *qmp_query_snp_rmp(const char *id, uint64_t spa,
                                   bool has_count, uint32_t count,
                                   Error **errp)
{
    SnpRmp *rmp = snp_rmp_find(id, errp);
    SnpRmpEntryList *head = NULL, **tail = &head;
    SnpRmpStatus st;
    SnpRmpTable *t;
    uint64_t top;

    if (!rmp || !snp_rmp_ready(errp)) {
        return NULL;
    }
    t = snp_rmp_get_table(rmp);
    top = snp_rmp_table_ram_top(t);
    count = has_count ? MIN(count, SNP_RMP_QUERY_MAX) : 1;
    st = snp_rmp_table_query(t, spa, count, snp_rmp_query_add, &tail);
    switch (st) {
    case SNP_RMP_OK:
        return head;
    case SNP_RMP_ERR_UNALIGNED:
        error_setg(errp, "SPA 0x%" PRIx64 " is not 4K aligned", spa);
        break;
    case SNP_RMP_ERR_BEYOND_RAM:
        if (spa >= top) {
            error_setg(errp, "SPA 0x%" PRIx64 " is beyond RAM (which ends at "
                       "0x%" PRIx64 ")", spa, top);
        } else {
            error_setg(errp, "the %" PRIu32 " pages from SPA 0x%" PRIx64
                       " run beyond RAM (which ends at 0x%" PRIx64 ")",
                       count, spa, top);
        }
        break;
    case SNP_RMP_ERR_NOT_RAM:
        error_setg(errp, "SPA 0x%" PRIx64 " is not system RAM", spa);
        break;
    default:
        error_setg(errp, "SPA 0x%" PRIx64 ": %s", spa,
                   snp_rmp_status_str(st));
        break;
    }
    qapi_free_SnpRmpEntryList(head);
    return NULL;
}

/* HMP */

void hmp_info_snp_rmp(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    SnpRmp *rmp = snp_rmp_find(NULL, &err);
    SnpRmpEntryList *list, *l;
    uint64_t n4k, n2m;
    SnpRmpTable *t;

    if (!rmp || !snp_rmp_ready(&err)) {
        hmp_handle_error(mon, err);
        return;
    }
    t = snp_rmp_get_table(rmp);
    if (!qdict_haskey(qdict, "spa")) {
        snp_rmp_table_count(t, &n4k, &n2m);
        monitor_printf(mon, "RMP %s: RAM up to 0x%" PRIx64 "\n",
                       object_get_canonical_path_component(OBJECT(rmp)),
                       snp_rmp_table_ram_top(t));
        monitor_printf(mon, "  2M regions as 512 4K entries: %" PRIu64 "\n",
                       n4k);
        monitor_printf(mon, "  2M regions as one 2M entry:   %" PRIu64 "\n",
                       n2m);
        monitor_printf(mon, "  model memory: %zu bytes\n",
                       snp_rmp_table_memory(t));
        return;
    }
    list = qmp_query_snp_rmp(NULL, qdict_get_int(qdict, "spa"),
                             true, qdict_get_try_int(qdict, "count", 1), &err);
    if (err) {
        hmp_handle_error(mon, err);
        return;
    }
    monitor_printf(mon, "%-18s %-4s %-8s %-6s %-18s %-9s %s\n", "SPA", "size",
                   "assigned", "ASID", "GPA", "validated", "immutable");
    for (l = list; l; l = l->next) {
        SnpRmpEntry *e = l->value;

        monitor_printf(mon, "0x%016" PRIx64 " %-4s %-8s %-6u 0x%016" PRIx64
                       " %-9s %s\n", e->spa, SnpRmpPageSize_str(e->page_size),
                       e->assigned ? "yes" : "no", e->asid, e->gpa,
                       e->validated ? "yes" : "no",
                       e->immutable ? "yes" : "no");
    }
    qapi_free_SnpRmpEntryList(list);
}

/* Reset and migration */

static void snp_rmp_reset(void *opaque)
{
    SnpRmp *rmp = opaque;

    QEMU_LOCK_GUARD(&rmp->lock);
    if (rmp->table) {
        snp_rmp_table_reset(rmp->table);
        snp_rmp_changed(rmp, 0, snp_rmp_table_ram_top(rmp->table));
    }
}

/*
 * Each changed entry migrates as 24 bytes: SPA with the flags in its low
 * bits (a 4K-aligned address leaves them free), GPA, ASID and padding.
 */
#define MIG_ENTRY_SIZE      24
#define MIG_FLAG_2M         1
#define MIG_FLAG_ASSIGNED   2
#define MIG_FLAG_VALIDATED  4
#define MIG_FLAG_IMMUTABLE  8
#define MIG_FLAGS           (MIG_FLAG_2M | MIG_FLAG_ASSIGNED | \
                             MIG_FLAG_VALIDATED | MIG_FLAG_IMMUTABLE)

typedef struct SnpRmpMigSave {
    GByteArray *buf;
    uint64_t entries;               /* all of them, also those left out */
} SnpRmpMigSave;

/* Runs under the table's lock: no calls to the table */
static void snp_rmp_mig_add(uint64_t spa, const SnpRmpPage *page,
                            void *opaque)
{
    SnpRmpMigSave *save = opaque;
    uint8_t e[MIG_ENTRY_SIZE] = { 0 };
    uint64_t flags = (page->size == SNP_RMP_SIZE_2M ? MIG_FLAG_2M : 0) |
                     (page->attrs.assigned ? MIG_FLAG_ASSIGNED : 0) |
                     (page->attrs.validated ? MIG_FLAG_VALIDATED : 0) |
                     (page->attrs.immutable ? MIG_FLAG_IMMUTABLE : 0);

    stq_le_p(e, spa | flags);
    stq_le_p(e + 8, page->attrs.gpa);
    stl_le_p(e + 16, page->attrs.asid);
    /* mig_len is 32 bits: no more than that (the save then fails) */
    if (++save->entries <= UINT32_MAX / MIG_ENTRY_SIZE) {
        g_byte_array_append(save->buf, e, sizeof(e));
    }
}

static int snp_rmp_pre_save(void *opaque)
{
    SnpRmp *rmp = opaque;
    SnpRmpMigSave save = { .buf = g_byte_array_new() };

    snp_rmp_table_foreach_changed(snp_rmp_get_table(rmp), snp_rmp_mig_add,
                                  &save);
    if (save.entries > UINT32_MAX / MIG_ENTRY_SIZE) {
        error_report("snp-rmp: %" PRIu64 " changed RMP entries do not fit "
                     "in the migration stream", save.entries);
        g_byte_array_free(save.buf, true);
        return -EFBIG;
    }
    g_free(rmp->mig_buf);
    rmp->mig_len = save.buf->len;
    rmp->mig_buf = g_byte_array_free(save.buf, false);
    return 0;
}

static int snp_rmp_post_save(void *opaque)
{
    SnpRmp *rmp = opaque;

    g_clear_pointer(&rmp->mig_buf, g_free);
    rmp->mig_len = 0;
    return 0;
}

/*
 * Checked before the buffer is allocated: whole records, at most one per
 * 4K page of RAM.
 */
static bool snp_rmp_mig_len_valid(void *opaque, int version_id)
{
    SnpRmp *rmp = opaque;
    uint64_t pages = snp_rmp_table_ram_size(snp_rmp_get_table(rmp)) >>
                     SNP_RMP_SHIFT_4K;

    if (rmp->mig_len % MIG_ENTRY_SIZE ||
        rmp->mig_len / MIG_ENTRY_SIZE > pages) {
        error_report("snp-rmp: invalid RMP state length %" PRIu32
                     " in the migration stream", rmp->mig_len);
        return false;
    }
    return true;
}

/*
 * Apply the record at @e to @t, the state being rebuilt.  Records come in
 * SPA order, once each: @next is the lowest SPA the record may have.
 * False (and the reason in @why) if the record is invalid.
 */
static bool snp_rmp_mig_load_one(SnpRmpTable *t, const uint8_t *e,
                                 uint64_t *next, GString *why)
{
    uint64_t word = ldq_le_p(e);
    SnpRmpAttrs attrs = {
        .gpa = ldq_le_p(e + 8),
        .asid = ldl_le_p(e + 16),
        .assigned = word & MIG_FLAG_ASSIGNED,
        .validated = word & MIG_FLAG_VALIDATED,
        .immutable = word & MIG_FLAG_IMMUTABLE,
    };
    uint64_t spa = word & ~(SNP_RMP_BYTES_4K - 1);
    bool is_2m = word & MIG_FLAG_2M;
    SnpRmpStatus st;

    g_string_printf(why, "SPA 0x%" PRIx64 ", %s: ", spa, is_2m ? "2M" : "4K");
    if (word & (SNP_RMP_BYTES_4K - 1) & ~MIG_FLAGS) {
        g_string_append_printf(why, "unknown flags 0x%" PRIx64,
                               word & ~spa & ~MIG_FLAGS);
        return false;
    }
    if (spa < *next) {
        g_string_append(why, "out of order");
        return false;
    }
    st = snp_rmp_table_update(t, spa, is_2m ? SNP_RMP_SIZE_2M
                                            : SNP_RMP_SIZE_4K, &attrs);
    if (st != SNP_RMP_OK) {
        g_string_append(why, snp_rmp_status_str(st));
        return false;
    }
    /* the record is RAM: the sum does not wrap */
    *next = spa + (is_2m ? SNP_RMP_BYTES_2M : SNP_RMP_BYTES_4K);
    return true;
}

/*
 * Rebuild the RMP from the records aside and let the live table take it
 * only when every record is valid: a corrupt stream fails the load and
 * leaves the RMP as it was.
 */
static int snp_rmp_post_load(void *opaque, int version_id)
{
    SnpRmp *rmp = opaque;
    g_autoptr(GString) why = g_string_new(NULL);
    SnpRmpTable *t, *aside;
    uint64_t next = 0;
    uint32_t off = 0;
    int ret = 0;

    QEMU_LOCK_GUARD(&rmp->lock);
    t = snp_rmp_get_table(rmp);
    aside = snp_rmp_table_new_like(t);

    if (rmp->mig_len % MIG_ENTRY_SIZE) {
        error_report("snp-rmp: invalid RMP state length %" PRIu32
                     " in the migration stream", rmp->mig_len);
        ret = -EINVAL;
    }
    for (; !ret && off < rmp->mig_len; off += MIG_ENTRY_SIZE) {
        if (!snp_rmp_mig_load_one(aside, rmp->mig_buf + off, &next, why)) {
            error_report("snp-rmp: invalid RMP entry %" PRIu32 " in the "
                         "migration stream (%s)", off / MIG_ENTRY_SIZE,
                         why->str);
            ret = -EINVAL;
        }
    }
    if (!ret) {
        snp_rmp_table_replace(t, aside);
    }
    snp_rmp_table_free(aside);
    g_clear_pointer(&rmp->mig_buf, g_free);
    rmp->mig_len = 0;
    if (!ret) {
        snp_rmp_changed(rmp, 0, snp_rmp_table_ram_top(t));
    }
    return ret;
}

static const VMStateDescription vmstate_snp_rmp = {
    .name = "snp-rmp",
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = snp_rmp_pre_save,
    .post_save = snp_rmp_post_save,
    .post_load = snp_rmp_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(mig_len, SnpRmp),
        VMSTATE_VALIDATE("snp-rmp state length", snp_rmp_mig_len_valid),
        VMSTATE_VBUFFER_ALLOC_UINT32(mig_buf, SnpRmp, 0, NULL, mig_len),
        VMSTATE_END_OF_LIST()
    }
};

/* QOM */

static void snp_rmp_complete(UserCreatable *uc, Error **errp)
{
    SnpRmp *rmp = SNP_RMP(uc);

    if (rmp->host && !snp_host_register(rmp, errp)) {
        return;
    }
    qemu_register_reset(snp_rmp_reset, rmp);
    vmstate_register_any(NULL, &vmstate_snp_rmp, rmp);
    if (rmp->shadow) {
        rmp->conversion.notify = snp_rmp_shadow_conversion;
        kvm_memory_conversion_notifier_add(&rmp->conversion);
    }
    rmp->complete = true;
}

static void snp_rmp_instance_init(Object *obj)
{
    SnpRmp *rmp = SNP_RMP(obj);

    qemu_rec_mutex_init(&rmp->lock);
    notifier_list_init(&rmp->change_notifiers);
    rmp->enforced = true;
}

static void snp_rmp_instance_finalize(Object *obj)
{
    SnpRmp *rmp = SNP_RMP(obj);

    qemu_unregister_reset(snp_rmp_reset, rmp);
    vmstate_unregister(NULL, &vmstate_snp_rmp, rmp);
    if (rmp->conversion.notify) {
        kvm_memory_conversion_notifier_remove(&rmp->conversion);
    }
    snp_rmp_table_free(rmp->table);
    g_free(rmp->mig_buf);
    qemu_rec_mutex_destroy(&rmp->lock);
}

static bool snp_rmp_can_be_deleted(UserCreatable *uc)
{
    /* amd-iommu holds a link to it; unlinked, it may go */
    return OBJECT(uc)->ref <= 1;
}

static bool snp_rmp_get_shadow(Object *obj, Error **errp)
{
    return SNP_RMP(obj)->shadow;
}

static void snp_rmp_set_shadow(Object *obj, bool value, Error **errp)
{
    SnpRmp *rmp = SNP_RMP(obj);

    if (rmp->complete) {
        error_setg(errp, "'shadow' cannot change once the object exists");
        return;
    }
    rmp->shadow = value;
}

static bool snp_rmp_get_host(Object *obj, Error **errp)
{
    return SNP_RMP(obj)->host;
}

static void snp_rmp_set_host(Object *obj, bool value, Error **errp)
{
    SnpRmp *rmp = SNP_RMP(obj);

    if (rmp->complete) {
        error_setg(errp, "'host' cannot change once the object exists");
        return;
    }
    rmp->host = value;
}

static void snp_rmp_get_asid(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    uint32_t value = SNP_RMP(obj)->asid;

    visit_type_uint32(v, name, &value, errp);
}

static void snp_rmp_set_asid(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    SnpRmp *rmp = SNP_RMP(obj);
    uint32_t value;

    if (rmp->complete) {
        error_setg(errp, "'asid' cannot change once the object exists");
        return;
    }
    if (visit_type_uint32(v, name, &value, errp)) {
        rmp->asid = value;
    }
}

static void snp_rmp_class_init(ObjectClass *oc, const void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);
    GranularitySourceClass *gsc = GRANULARITY_SOURCE_CLASS(oc);

    gsc->page_size = snp_rmp_page_size;
    gsc->is_shared = snp_rmp_is_shared;
    gsc->add_notifier = snp_rmp_add_notifier;
    gsc->remove_notifier = snp_rmp_remove_notifier;
    gsc->brackets_conversions = snp_rmp_brackets_conversions;
    ucc->complete = snp_rmp_complete;
    ucc->can_be_deleted = snp_rmp_can_be_deleted;
    object_class_property_add_bool(oc, "shadow", snp_rmp_get_shadow,
                                   snp_rmp_set_shadow);
    object_class_property_set_description(oc, "shadow",
        "mirror the RMP that KVM keeps for this SEV-SNP guest");
    object_class_property_add_bool(oc, "host", snp_rmp_get_host,
                                   snp_rmp_set_host);
    object_class_property_set_description(oc, "host",
        "the machine is an SEV-SNP host: the RMP table is in its RAM, the "
        "CPUs and the firmware set up SNP as on hardware (TCG)");
    object_class_property_add(oc, "asid", "uint32", snp_rmp_get_asid,
                              snp_rmp_set_asid, NULL, NULL);
    object_class_property_set_description(oc, "asid",
        "shadow: the ASID private pages are assigned to");
}

static const TypeInfo snp_rmp_info = {
    .name = TYPE_SNP_RMP,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(SnpRmp),
    .instance_init = snp_rmp_instance_init,
    .instance_finalize = snp_rmp_instance_finalize,
    .class_init = snp_rmp_class_init,
    .interfaces = (const InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { TYPE_GRANULARITY_SOURCE },
        { }
    },
};

static void snp_rmp_register_types(void)
{
    type_register_static(&snp_rmp_info);
}

type_init(snp_rmp_register_types);
