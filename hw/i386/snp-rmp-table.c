/*
 * SEV-SNP Reverse Map Table (RMP) model
 *
 * Storage.  The attributes of an entry (assigned, ASID, validated,
 * immutable, and its GPA as an offset from its SPA) form a "class"; the
 * entries of a guest's contiguous memory all share one class, so a 2M entry
 * is a 32-bit slot naming its class and a smashed region is 512 32-bit
 * class ids.  Class 0 is the fresh, hypervisor-owned entry with GPA 0.
 *
 * Locking: see snp-rmp-table.h.  The public functions take t->lock; the
 * static helpers that touch entries expect it held.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/thread.h"
#include "hw/i386/snp-rmp-table.h"

/*
 * One slot per 2M region:
 *   0            512 fresh 4K entries (no record)
 *   odd          one 2M entry of class slot >> 1 (1: the fresh 2M entry)
 *   even, >= 2   512 4K entries in records[(slot >> 1) - 1]
 */
#define SLOT_FRESH_4K       0u
#define SLOT_IS_2M(s)       ((s) & 1)
#define SLOT_2M(cls)        ((uint32_t)(cls) << 1 | 1)
#define SLOT_CLASS(s)       ((s) >> 1)
#define SLOT_RECORD(i)      ((uint32_t)((i) + 1) << 1)
#define SLOT_RECORD_INDEX(s) (((s) >> 1) - 1)

#define CLASS_FRESH         0u

#define FLAG_ASSIGNED       1u
#define FLAG_VALIDATED      2u
#define FLAG_IMMUTABLE      4u
#define FLAG_GPA_ZERO       8u      /* the GPA is 0, whatever the SPA */

typedef struct SnpRmpClassKey {
    uint64_t gpa_delta;             /* GPA - SPA, modulo 2^64 */
    uint32_t asid;
    uint32_t flags;
} SnpRmpClassKey;

typedef struct SnpRmpClass {
    SnpRmpClassKey key;
    uint32_t refs;                  /* entries using it; free when 0 */
} SnpRmpClass;

typedef struct SnpRmpRecord {
    uint32_t nonfresh;              /* entries not of CLASS_FRESH */
    uint32_t cls[SNP_RMP_PAGES_PER_2M];
} SnpRmpRecord;

struct SnpRmpTable {
    /* fixed at creation, read without the lock */
    SnpRmpRange *ram;
    unsigned n_ram;
    uint64_t ram_top;
    uint64_t n_regions;

    /* the rest is protected by the lock */
    QemuSpin lock;
    uint64_t version;               /* also read without it, atomically */
    uint32_t *slots;

    SnpRmpRecord **records;
    uint32_t n_records;             /* used and free */
    GArray *free_records;           /* uint32_t indexes */

    SnpRmpClass *classes;
    uint32_t n_classes;             /* used and free */
    GArray *free_classes;           /* uint32_t ids */
    GHashTable *class_ids;          /* SnpRmpClassKey * -> id + 1 */
};

/*
 * A lookup does not change the table; the lock is not part of its value,
 * so functions that take a const table lock it all the same.
 */
static void table_lock(const SnpRmpTable *t)
{
    qemu_spin_lock((QemuSpin *)&t->lock);
}

static void table_unlock(const SnpRmpTable *t)
{
    qemu_spin_unlock((QemuSpin *)&t->lock);
}

/* A change: the version is odd while it is in progress (see the header) */
static void table_change_begin(SnpRmpTable *t)
{
    table_lock(t);
    qatomic_set(&t->version, t->version + 1);
    smp_wmb();      /* the odd version is seen before any change */
}

static void table_change_end(SnpRmpTable *t)
{
    smp_wmb();      /* the change is seen before the even version */
    qatomic_set(&t->version, t->version + 1);
    table_unlock(t);
}

void snp_rmp_table_touch(SnpRmpTable *t)
{
    table_change_begin(t);
    table_change_end(t);
}

uint64_t snp_rmp_table_version(const SnpRmpTable *t)
{
    return qatomic_load_acquire(&t->version);
}

const uint64_t *snp_rmp_table_version_ptr(const SnpRmpTable *t)
{
    return &t->version;
}

static guint class_key_hash(gconstpointer p)
{
    const SnpRmpClassKey *k = p;

    return g_int64_hash(&k->gpa_delta) ^ (k->asid * 0x9e3779b1u) ^ k->flags;
}

static gboolean class_key_equal(gconstpointer a, gconstpointer b)
{
    return !memcmp(a, b, sizeof(SnpRmpClassKey));
}

static SnpRmpClassKey class_key(const SnpRmpAttrs *a, uint64_t spa)
{
    SnpRmpClassKey k = {
        .asid = a->asid,
        .flags = (a->assigned ? FLAG_ASSIGNED : 0) |
                 (a->validated ? FLAG_VALIDATED : 0) |
                 (a->immutable ? FLAG_IMMUTABLE : 0),
    };

    if (a->gpa) {
        k.gpa_delta = a->gpa - spa;
    } else {
        k.flags |= FLAG_GPA_ZERO;
    }
    return k;
}

/* A reference to the class of @k, created if needed */
static uint32_t class_ref(SnpRmpTable *t, const SnpRmpClassKey *k,
                          uint32_t refs)
{
    gpointer v = g_hash_table_lookup(t->class_ids, k);
    uint32_t id;

    if (v) {
        id = GPOINTER_TO_UINT(v) - 1;
    } else {
        if (t->free_classes->len) {
            id = g_array_index(t->free_classes, uint32_t,
                               t->free_classes->len - 1);
            g_array_set_size(t->free_classes, t->free_classes->len - 1);
        } else {
            id = t->n_classes++;
            t->classes = g_renew(SnpRmpClass, t->classes, t->n_classes);
        }
        t->classes[id] = (SnpRmpClass) { .key = *k };
        g_hash_table_insert(t->class_ids, g_memdup2(k, sizeof(*k)),
                            GUINT_TO_POINTER(id + 1));
    }
    if (id != CLASS_FRESH) {
        t->classes[id].refs += refs;
    }
    return id;
}

static void class_unref(SnpRmpTable *t, uint32_t id, uint32_t refs)
{
    if (id == CLASS_FRESH) {
        return;
    }
    assert(t->classes[id].refs >= refs);
    t->classes[id].refs -= refs;
    if (!t->classes[id].refs) {
        g_hash_table_remove(t->class_ids, &t->classes[id].key);
        g_array_append_val(t->free_classes, id);
    }
}

static void class_attrs(const SnpRmpTable *t, uint32_t id, uint64_t spa,
                        SnpRmpAttrs *a)
{
    const SnpRmpClassKey *k = &t->classes[id].key;

    a->assigned = k->flags & FLAG_ASSIGNED;
    a->validated = k->flags & FLAG_VALIDATED;
    a->immutable = k->flags & FLAG_IMMUTABLE;
    a->asid = k->asid;
    a->gpa = k->flags & FLAG_GPA_ZERO ? 0 : spa + k->gpa_delta;
}

static void classes_init(SnpRmpTable *t)
{
    SnpRmpAttrs fresh = { 0 };
    SnpRmpClassKey k = class_key(&fresh, 0);

    t->n_classes = 0;
    g_free(t->classes);
    t->classes = NULL;
    g_array_set_size(t->free_classes, 0);
    g_hash_table_remove_all(t->class_ids);
    if (class_ref(t, &k, 0) != CLASS_FRESH) {
        g_assert_not_reached();
    }
}

SnpRmpTable *snp_rmp_table_new(const SnpRmpRange *ram, unsigned n)
{
    SnpRmpTable *t = g_new0(SnpRmpTable, 1);
    uint64_t top = 0;

    t->ram = g_memdup2(ram, n * sizeof(*ram));
    t->n_ram = n;
    for (unsigned i = 0; i < n; i++) {
        /* the end of every range is an address: no wrap below */
        assert(ram[i].size <= UINT64_MAX - ram[i].start);
        top = MAX(top, ram[i].start + ram[i].size);
    }
    t->ram_top = top;
    t->n_regions = (top >> SNP_RMP_SHIFT_2M) +
                   !!(top & (SNP_RMP_BYTES_2M - 1));
    t->slots = g_new0(uint32_t, t->n_regions);
    qemu_spin_init(&t->lock);
    t->free_records = g_array_new(false, false, sizeof(uint32_t));
    t->free_classes = g_array_new(false, false, sizeof(uint32_t));
    t->class_ids = g_hash_table_new_full(class_key_hash, class_key_equal,
                                         g_free, NULL);
    classes_init(t);
    return t;
}

static SnpRmpRecord *region_record(const SnpRmpTable *t, uint64_t region)
{
    uint32_t slot = t->slots[region];

    return slot != SLOT_FRESH_4K && !SLOT_IS_2M(slot) ?
           t->records[SLOT_RECORD_INDEX(slot)] : NULL;
}

/* Drop what region @region holds, leaving its slot to the caller */
static void region_release(SnpRmpTable *t, uint64_t region)
{
    uint32_t slot = t->slots[region];
    uint32_t i;
    SnpRmpRecord *r;

    if (SLOT_IS_2M(slot)) {
        class_unref(t, SLOT_CLASS(slot), 1);
    } else if (slot != SLOT_FRESH_4K) {
        i = SLOT_RECORD_INDEX(slot);
        r = t->records[i];
        for (unsigned j = 0; j < SNP_RMP_PAGES_PER_2M && r->nonfresh; j++) {
            if (r->cls[j] != CLASS_FRESH) {
                class_unref(t, r->cls[j], 1);
            }
        }
        g_free(r);
        t->records[i] = NULL;
        g_array_append_val(t->free_records, i);
    }
    t->slots[region] = SLOT_FRESH_4K;
}

SnpRmpTable *snp_rmp_table_new_like(const SnpRmpTable *t)
{
    return snp_rmp_table_new(t->ram, t->n_ram);
}

static void reset_entries(SnpRmpTable *t)
{
    for (uint64_t i = 0; i < t->n_regions; i++) {
        g_free(region_record(t, i));
        t->slots[i] = SLOT_FRESH_4K;
    }
    g_clear_pointer(&t->records, g_free);
    t->n_records = 0;
    g_array_set_size(t->free_records, 0);
    classes_init(t);
}

void snp_rmp_table_reset(SnpRmpTable *t)
{
    table_change_begin(t);
    reset_entries(t);
    table_change_end(t);
}

void snp_rmp_table_free(SnpRmpTable *t)
{
    if (!t) {
        return;
    }
    reset_entries(t);
    qemu_spin_destroy(&t->lock);
    g_hash_table_destroy(t->class_ids);
    g_array_free(t->free_classes, true);
    g_array_free(t->free_records, true);
    g_free(t->classes);
    g_free(t->slots);
    g_free(t->ram);
    g_free(t);
}

#define SWAP_FIELD(a, b, f) do {            \
        typeof((a)->f) tmp_ = (a)->f;       \
        (a)->f = (b)->f;                    \
        (b)->f = tmp_;                      \
    } while (0)

void snp_rmp_table_replace(SnpRmpTable *t, SnpRmpTable *from)
{
    assert(t != from && t->n_ram == from->n_ram &&
           !memcmp(t->ram, from->ram, t->n_ram * sizeof(*t->ram)));
    table_lock(from);
    table_change_begin(t);
    SWAP_FIELD(t, from, slots);
    SWAP_FIELD(t, from, records);
    SWAP_FIELD(t, from, n_records);
    SWAP_FIELD(t, from, free_records);
    SWAP_FIELD(t, from, classes);
    SWAP_FIELD(t, from, n_classes);
    SWAP_FIELD(t, from, free_classes);
    SWAP_FIELD(t, from, class_ids);
    table_change_end(t);
    reset_entries(from);
    table_unlock(from);
}

/*
 * Whether [@spa, @spa + @len) lies in one RAM range, for any @spa and
 * @len: no sum is formed that could wrap around 2^64.
 */
static bool range_is_ram(const SnpRmpTable *t, uint64_t spa, uint64_t len)
{
    for (unsigned i = 0; i < t->n_ram; i++) {
        const SnpRmpRange *r = &t->ram[i];

        if (spa >= r->start && len <= r->size &&
            spa - r->start <= r->size - len) {
            return true;
        }
    }
    return false;
}

/*
 * The region of [@spa, @spa + @len) (@len at most 2M, not crossing a 2M
 * boundary), or false if the range is not RAM.
 */
static bool ram_region(const SnpRmpTable *t, uint64_t spa, uint64_t len,
                       uint64_t *region)
{
    *region = spa >> SNP_RMP_SHIFT_2M;
    return range_is_ram(t, spa, len) && *region < t->n_regions;
}

uint64_t snp_rmp_table_ram_top(const SnpRmpTable *t)
{
    return t->ram_top;
}

uint64_t snp_rmp_table_ram_size(const SnpRmpTable *t)
{
    uint64_t size = 0;

    for (unsigned i = 0; i < t->n_ram; i++) {
        size += t->ram[i].size;
    }
    return size;
}

/* A record of 512 fresh 4K entries for @region */
static SnpRmpRecord *record_alloc(SnpRmpTable *t, uint64_t region)
{
    uint32_t i;

    if (t->free_records->len) {
        i = g_array_index(t->free_records, uint32_t,
                          t->free_records->len - 1);
        g_array_set_size(t->free_records, t->free_records->len - 1);
    } else {
        i = t->n_records++;
        t->records = g_renew(SnpRmpRecord *, t->records, t->n_records);
    }
    t->records[i] = g_new0(SnpRmpRecord, 1);
    t->slots[region] = SLOT_RECORD(i);
    return t->records[i];
}

/* The page at @spa, which is RAM in region @region */
static void lookup_page(const SnpRmpTable *t, uint64_t region,
                          uint64_t spa, SnpRmpPage *page)
{
    uint64_t base = region << SNP_RMP_SHIFT_2M;
    uint32_t slot = t->slots[region];

    spa &= ~(SNP_RMP_BYTES_4K - 1);
    if (SLOT_IS_2M(slot)) {
        page->size = SNP_RMP_SIZE_2M;
        class_attrs(t, SLOT_CLASS(slot), base, &page->attrs);
        page->attrs.gpa += spa - base;
    } else {
        SnpRmpRecord *r = region_record(t, region);

        page->size = SNP_RMP_SIZE_4K;
        class_attrs(t, r ? r->cls[(spa - base) >> SNP_RMP_SHIFT_4K]
                         : CLASS_FRESH, spa, &page->attrs);
    }
}

bool snp_rmp_table_lookup(const SnpRmpTable *t, uint64_t spa,
                          SnpRmpPage *page)
{
    uint64_t region;

    if (!ram_region(t, spa, 1, &region)) {
        return false;
    }
    table_lock(t);
    lookup_page(t, region, spa, page);
    table_unlock(t);
    return true;
}

SnpRmpStatus snp_rmp_table_query(const SnpRmpTable *t, uint64_t spa,
                                 uint64_t count, SnpRmpTableVisitFn *fn,
                                 void *opaque)
{
    uint64_t region, last;
    SnpRmpPage page;

    if (spa & (SNP_RMP_BYTES_4K - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (spa >= t->ram_top) {
        return SNP_RMP_ERR_BEYOND_RAM;
    }
    if (!ram_region(t, spa, SNP_RMP_BYTES_4K, &region)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (!count) {
        return SNP_RMP_OK;
    }
    /* the last page, without forming count * 4K or a sum that wraps */
    if (count - 1 > (t->ram_top - SNP_RMP_BYTES_4K - spa) >>
                    SNP_RMP_SHIFT_4K) {
        return SNP_RMP_ERR_BEYOND_RAM;
    }
    last = spa + ((count - 1) << SNP_RMP_SHIFT_4K);
    table_lock(t);
    for (uint64_t p = spa; p <= last; p += SNP_RMP_BYTES_4K) {
        if (ram_region(t, p, SNP_RMP_BYTES_4K, &region)) {
            lookup_page(t, region, p, &page);
            fn(p, &page, opaque);
        }
    }
    table_unlock(t);
    return SNP_RMP_OK;
}

static bool region_has(const SnpRmpTable *t, uint64_t region,
                       uint32_t flag)
{
    uint32_t slot = t->slots[region];
    SnpRmpRecord *r = region_record(t, region);

    if (SLOT_IS_2M(slot)) {
        return t->classes[SLOT_CLASS(slot)].key.flags & flag;
    }
    for (unsigned i = 0; r && r->nonfresh && i < SNP_RMP_PAGES_PER_2M; i++) {
        if (t->classes[r->cls[i]].key.flags & flag) {
            return true;
        }
    }
    return false;
}

bool snp_rmp_table_any_assigned(const SnpRmpTable *t, uint64_t spa,
                                SnpRmpSize size)
{
    uint64_t region;
    SnpRmpPage page;
    bool ret;

    if (!ram_region(t, spa, 1, &region)) {
        return false;
    }
    table_lock(t);
    if (size == SNP_RMP_SIZE_2M) {
        ret = region_has(t, region, FLAG_ASSIGNED);
    } else {
        lookup_page(t, region, spa, &page);
        ret = page.attrs.assigned;
    }
    table_unlock(t);
    return ret;
}

static SnpRmpStatus update_2m(SnpRmpTable *t, uint64_t spa,
                              const SnpRmpAttrs *attrs, bool firmware)
{
    uint64_t region;
    SnpRmpClassKey k;
    uint32_t id;

    if ((spa | attrs->gpa) & (SNP_RMP_BYTES_2M - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!ram_region(t, spa, SNP_RMP_BYTES_2M, &region)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (!firmware && region_has(t, region, FLAG_IMMUTABLE)) {
        return SNP_RMP_ERR_IMMUTABLE;
    }
    /* RMPUPDATE: a 2M assign may not overlap assigned 4K pages */
    if (attrs->assigned && !SLOT_IS_2M(t->slots[region]) &&
        region_has(t, region, FLAG_ASSIGNED)) {
        return SNP_RMP_ERR_OVERLAP;
    }
    k = class_key(attrs, spa);
    id = class_ref(t, &k, 1);   /* before the release: it may be shared */
    region_release(t, region);
    t->slots[region] = SLOT_2M(id);
    return SNP_RMP_OK;
}

static SnpRmpStatus update_4k(SnpRmpTable *t, uint64_t spa,
                              const SnpRmpAttrs *attrs, bool firmware)
{
    unsigned idx = (spa >> SNP_RMP_SHIFT_4K) % SNP_RMP_PAGES_PER_2M;
    uint64_t region;
    SnpRmpClassKey k;
    SnpRmpRecord *r;
    uint32_t old, id;

    if ((spa | attrs->gpa) & (SNP_RMP_BYTES_4K - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!ram_region(t, spa, SNP_RMP_BYTES_4K, &region)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (SLOT_IS_2M(t->slots[region])) {
        return SNP_RMP_ERR_IS_2M;
    }
    r = region_record(t, region);
    old = r ? r->cls[idx] : CLASS_FRESH;
    if (!firmware && (t->classes[old].key.flags & FLAG_IMMUTABLE)) {
        return SNP_RMP_ERR_IMMUTABLE;
    }
    k = class_key(attrs, spa);
    id = class_ref(t, &k, 1);
    if (id == old) {
        class_unref(t, id, 1);
        return SNP_RMP_OK;
    }
    if (!r) {
        r = record_alloc(t, region);
    }
    r->cls[idx] = id;
    r->nonfresh += (id != CLASS_FRESH) - (old != CLASS_FRESH);
    class_unref(t, old, 1);
    if (!r->nonfresh) {
        region_release(t, region);      /* all fresh again: no record */
    }
    return SNP_RMP_OK;
}

static SnpRmpStatus table_update(SnpRmpTable *t, uint64_t spa,
                                 SnpRmpSize size, const SnpRmpAttrs *attrs,
                                 bool firmware)
{
    SnpRmpStatus st;

    table_change_begin(t);
    st = size == SNP_RMP_SIZE_2M ? update_2m(t, spa, attrs, firmware)
                                 : update_4k(t, spa, attrs, firmware);
    table_change_end(t);
    return st;
}

SnpRmpStatus snp_rmp_table_update(SnpRmpTable *t, uint64_t spa,
                                  SnpRmpSize size, const SnpRmpAttrs *attrs)
{
    return table_update(t, spa, size, attrs, false);
}

SnpRmpStatus snp_rmp_table_firmware_update(SnpRmpTable *t, uint64_t spa,
                                           SnpRmpSize size,
                                           const SnpRmpAttrs *attrs)
{
    return table_update(t, spa, size, attrs, true);
}

static SnpRmpStatus psmash_region(SnpRmpTable *t, uint64_t spa)
{
    uint64_t region;
    SnpRmpClassKey k;
    SnpRmpRecord *r;
    uint32_t slot, id;

    if (spa & (SNP_RMP_BYTES_2M - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!ram_region(t, spa, SNP_RMP_BYTES_2M, &region)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    slot = t->slots[region];
    if (!SLOT_IS_2M(slot)) {
        return SNP_RMP_ERR_NOT_2M;
    }
    /* 4K entry i gets GPA + i * 4K: a GPA of 0 becomes an offset */
    k = t->classes[SLOT_CLASS(slot)].key;
    if (k.flags & FLAG_GPA_ZERO) {
        k.flags &= ~FLAG_GPA_ZERO;
        k.gpa_delta = -spa;
    }
    id = class_ref(t, &k, SNP_RMP_PAGES_PER_2M);
    region_release(t, region);
    r = record_alloc(t, region);
    for (unsigned i = 0; i < SNP_RMP_PAGES_PER_2M; i++) {
        r->cls[i] = id;
    }
    r->nonfresh = SNP_RMP_PAGES_PER_2M;
    return SNP_RMP_OK;
}

SnpRmpStatus snp_rmp_table_psmash(SnpRmpTable *t, uint64_t spa)
{
    SnpRmpStatus st;

    table_change_begin(t);
    st = psmash_region(t, spa);
    table_change_end(t);
    return st;
}

/* The pages [@lo, @hi] (inclusive) of the 2M region at @r */
static SnpRmpStatus shadow_convert_region(SnpRmpTable *t, uint64_t r,
                                          uint64_t lo, uint64_t hi,
                                          bool to_private, uint32_t asid,
                                          bool hint_2m)
{
    const SnpRmpAttrs shared = { 0 };
    SnpRmpAttrs a = { .assigned = to_private, .asid = asid, .gpa = r };
    SnpRmpStatus st = SNP_RMP_OK;

    if (!range_is_ram(t, r, SNP_RMP_BYTES_2M)) {
        for (uint64_t p = lo; st == SNP_RMP_OK && p <= hi;
             p += SNP_RMP_BYTES_4K) {
            a.gpa = p;
            if (range_is_ram(t, p, SNP_RMP_BYTES_4K)) {
                st = update_4k(t, p, to_private ? &a : &shared, false);
            }
        }
        return st;
    }
    if (hint_2m && lo == r && hi == r + SNP_RMP_BYTES_2M - 1) {
        /* the hypervisor reclaims the 2M, then assigns it whole */
        st = update_2m(t, r, &shared, false);
        if (st == SNP_RMP_OK && to_private) {
            st = update_2m(t, r, &a, false);
        }
        return st;
    }
    if (SLOT_IS_2M(t->slots[r >> SNP_RMP_SHIFT_2M])) {
        st = psmash_region(t, r);
    }
    for (uint64_t p = lo; st == SNP_RMP_OK && p <= hi;
         p += SNP_RMP_BYTES_4K) {
        a.gpa = p;
        st = update_4k(t, p, to_private ? &a : &shared, false);
    }
    return st;
}

SnpRmpStatus snp_rmp_table_shadow_convert(SnpRmpTable *t, uint64_t gpa,
                                          uint64_t size, bool to_private,
                                          uint32_t asid, bool hint_2m)
{
    uint64_t last;

    if ((gpa | size) & (SNP_RMP_BYTES_4K - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!size) {
        return SNP_RMP_OK;
    }
    if (size - 1 > UINT64_MAX - gpa) {
        return SNP_RMP_ERR_NOT_RAM;     /* wraps around 2^64 */
    }
    if (gpa >= t->ram_top) {
        return SNP_RMP_OK;              /* no page of it is RAM */
    }
    /* the last page that may be RAM: the loop is bounded by RAM's end */
    last = MIN(gpa + (size - 1), t->ram_top - 1);
    for (uint64_t region = gpa >> SNP_RMP_SHIFT_2M;
         region <= last >> SNP_RMP_SHIFT_2M; region++) {
        uint64_t r = region << SNP_RMP_SHIFT_2M;
        SnpRmpStatus st;

        /* atomic per region: a reader never sees a region half done */
        table_change_begin(t);
        st = shadow_convert_region(t, r, MAX(r, gpa),
                                   MIN(r + SNP_RMP_BYTES_2M - 1, last),
                                   to_private, asid, hint_2m);
        table_change_end(t);
        if (st != SNP_RMP_OK) {
            return st;
        }
    }
    return SNP_RMP_OK;
}

size_t snp_rmp_table_memory(const SnpRmpTable *t)
{
    /* a GLib hash table entry: key, value, hash and the key's copy */
    const size_t hash_entry = 2 * sizeof(gpointer) + sizeof(guint) +
                              sizeof(SnpRmpClassKey);
    size_t size;

    table_lock(t);
    size = sizeof(*t) + t->n_ram * sizeof(*t->ram) +
           t->n_regions * sizeof(*t->slots) +
           t->n_records * sizeof(*t->records) +
           (t->n_records - t->free_records->len) * sizeof(SnpRmpRecord) +
           t->free_records->len * sizeof(uint32_t) +
           t->n_classes * sizeof(SnpRmpClass) +
           t->free_classes->len * sizeof(uint32_t) +
           g_hash_table_size(t->class_ids) * hash_entry;
    table_unlock(t);
    return size;
}

void snp_rmp_table_count(const SnpRmpTable *t, uint64_t *regions_4k,
                         uint64_t *regions_2m)
{
    *regions_4k = *regions_2m = 0;
    table_lock(t);
    for (uint64_t i = 0; i < t->n_regions; i++) {
        if (!range_is_ram(t, i << SNP_RMP_SHIFT_2M, 1)) {
            continue;
        }
        if (SLOT_IS_2M(t->slots[i])) {
            (*regions_2m)++;
        } else {
            (*regions_4k)++;
        }
    }
    table_unlock(t);
}

void snp_rmp_table_foreach_changed(const SnpRmpTable *t,
                                   SnpRmpTableVisitFn *fn, void *opaque)
{
    table_lock(t);
    for (uint64_t i = 0; i < t->n_regions; i++) {
        uint64_t base = i << SNP_RMP_SHIFT_2M;
        uint32_t slot = t->slots[i];
        SnpRmpRecord *r = region_record(t, i);
        SnpRmpPage page;

        if (SLOT_IS_2M(slot)) {
            page.size = SNP_RMP_SIZE_2M;
            class_attrs(t, SLOT_CLASS(slot), base, &page.attrs);
            fn(base, &page, opaque);
            continue;
        }
        page.size = SNP_RMP_SIZE_4K;
        for (unsigned j = 0; r && j < SNP_RMP_PAGES_PER_2M; j++) {
            uint64_t spa = base + j * SNP_RMP_BYTES_4K;

            if (r->cls[j] != CLASS_FRESH) {
                class_attrs(t, r->cls[j], spa, &page.attrs);
                fn(spa, &page, opaque);
            }
        }
    }
    table_unlock(t);
}

const char *snp_rmp_status_str(SnpRmpStatus status)
{
    switch (status) {
    case SNP_RMP_OK:
        return "success";
    case SNP_RMP_ERR_UNALIGNED:
        return "address not aligned to the page size";
    case SNP_RMP_ERR_NOT_RAM:
        return "address is not system RAM";
    case SNP_RMP_ERR_IS_2M:
        return "the region is a 2M RMP entry: psmash it first";
    case SNP_RMP_ERR_NOT_2M:
        return "the region is not a 2M RMP entry";
    case SNP_RMP_ERR_OVERLAP:
        return "the 2M range overlaps an assigned 4K entry";
    case SNP_RMP_ERR_IMMUTABLE:
        return "the RMP entry is immutable";
    case SNP_RMP_ERR_BEYOND_RAM:
        return "the range runs beyond the end of RAM";
    }
    g_assert_not_reached();
}

bool snp_rmp_table_is_2m(const SnpRmpTable *t, uint64_t spa)
{
    SnpRmpPage page;

    return snp_rmp_table_lookup(t, spa, &page) &&
           page.size == SNP_RMP_SIZE_2M;
}

bool snp_rmp_table_is_shared(const SnpRmpTable *t, uint64_t spa)
{
    SnpRmpPage page;

    return !snp_rmp_table_lookup(t, spa, &page) || !page.attrs.assigned;
}
