/*
 * SEV-SNP Reverse Map Table (RMP) model
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-table.h"

/*
 * Each 2M region has a 32-bit slot.  The two fresh states need no record;
 * any other state lives in records[slot - SLOT_FIRST_RECORD].
 */
enum {
    SLOT_FRESH_4K = 0,      /* 512 hypervisor-owned 4K entries */
    SLOT_FRESH_2M = 1,      /* one hypervisor-owned 2M entry */
    SLOT_FIRST_RECORD = 2,
};

typedef struct SnpRmpRecord {
    bool is_2m;
    SnpRmpAttrs e[];        /* one entry if is_2m, else 512 */
} SnpRmpRecord;

struct SnpRmpTable {
    SnpRmpRange *ram;
    unsigned n_ram;
    uint64_t n_regions;
    uint32_t *slots;
    SnpRmpRecord **records;
    uint32_t n_records;     /* used and free */
    uint32_t *free_records; /* stack of free record indexes */
    uint32_t n_free;
    size_t record_bytes;
};

static const SnpRmpAttrs fresh_attrs;

static bool attrs_fresh(const SnpRmpAttrs *a)
{
    return !a->assigned && !a->validated && !a->immutable && !a->asid &&
           !a->gpa;
}

SnpRmpTable *snp_rmp_table_new(const SnpRmpRange *ram, unsigned n)
{
    SnpRmpTable *t = g_new0(SnpRmpTable, 1);
    uint64_t top = 0;

    t->ram = g_memdup2(ram, n * sizeof(*ram));
    t->n_ram = n;
    for (unsigned i = 0; i < n; i++) {
        top = MAX(top, ram[i].start + ram[i].size);
    }
    t->n_regions = DIV_ROUND_UP(top, SNP_RMP_BYTES_2M);
    t->slots = g_new0(uint32_t, t->n_regions);
    return t;
}

static void record_free(SnpRmpTable *t, uint32_t slot)
{
    uint32_t i = slot - SLOT_FIRST_RECORD;
    SnpRmpRecord *r = t->records[i];

    t->record_bytes -= sizeof(*r) +
        (r->is_2m ? 1 : SNP_RMP_PAGES_PER_2M) * sizeof(SnpRmpAttrs);
    g_free(r);
    t->records[i] = NULL;
    t->free_records[t->n_free++] = i;
}

void snp_rmp_table_reset(SnpRmpTable *t)
{
    for (uint64_t i = 0; i < t->n_regions; i++) {
        if (t->slots[i] >= SLOT_FIRST_RECORD) {
            record_free(t, t->slots[i]);
        }
        t->slots[i] = SLOT_FRESH_4K;
    }
    g_clear_pointer(&t->records, g_free);
    g_clear_pointer(&t->free_records, g_free);
    t->n_records = t->n_free = 0;
}

void snp_rmp_table_free(SnpRmpTable *t)
{
    if (!t) {
        return;
    }
    snp_rmp_table_reset(t);
    g_free(t->slots);
    g_free(t->ram);
    g_free(t);
}

bool snp_rmp_table_is_ram(const SnpRmpTable *t, uint64_t spa)
{
    for (unsigned i = 0; i < t->n_ram; i++) {
        if (spa >= t->ram[i].start && spa - t->ram[i].start < t->ram[i].size) {
            return true;
        }
    }
    return false;
}

uint64_t snp_rmp_table_ram_top(const SnpRmpTable *t)
{
    uint64_t top = 0;

    for (unsigned i = 0; i < t->n_ram; i++) {
        top = MAX(top, t->ram[i].start + t->ram[i].size);
    }
    return top;
}

static bool range_is_ram(const SnpRmpTable *t, uint64_t spa, uint64_t len)
{
    for (unsigned i = 0; i < t->n_ram; i++) {
        if (spa >= t->ram[i].start &&
            spa - t->ram[i].start + len <= t->ram[i].size) {
            return true;
        }
    }
    return false;
}

static SnpRmpRecord *record_alloc(SnpRmpTable *t, uint64_t region, bool is_2m)
{
    size_t n = is_2m ? 1 : SNP_RMP_PAGES_PER_2M;
    size_t bytes = sizeof(SnpRmpRecord) + n * sizeof(SnpRmpAttrs);
    SnpRmpRecord *r = g_malloc0(bytes);
    uint32_t i;

    r->is_2m = is_2m;
    if (t->n_free) {
        i = t->free_records[--t->n_free];
    } else {
        i = t->n_records++;
        t->records = g_renew(SnpRmpRecord *, t->records, t->n_records);
        t->free_records = g_renew(uint32_t, t->free_records, t->n_records);
    }
    t->records[i] = r;
    t->record_bytes += bytes;
    assert(!t->slots[region] || t->slots[region] == SLOT_FRESH_2M);
    t->slots[region] = i + SLOT_FIRST_RECORD;
    return r;
}

static SnpRmpRecord *region_record(const SnpRmpTable *t, uint64_t region)
{
    uint32_t slot = t->slots[region];

    return slot >= SLOT_FIRST_RECORD ? t->records[slot - SLOT_FIRST_RECORD]
                                     : NULL;
}

static bool region_is_2m(const SnpRmpTable *t, uint64_t region)
{
    SnpRmpRecord *r = region_record(t, region);

    return r ? r->is_2m : t->slots[region] == SLOT_FRESH_2M;
}

/* Drop the record of a region whose entries are all fresh again. */
static void region_canonicalize(SnpRmpTable *t, uint64_t region)
{
    SnpRmpRecord *r = region_record(t, region);
    bool is_2m;

    if (!r) {
        return;
    }
    is_2m = r->is_2m;
    for (size_t i = 0; i < (is_2m ? 1 : SNP_RMP_PAGES_PER_2M); i++) {
        if (!attrs_fresh(&r->e[i])) {
            return;
        }
    }
    record_free(t, t->slots[region]);
    t->slots[region] = is_2m ? SLOT_FRESH_2M : SLOT_FRESH_4K;
}

bool snp_rmp_table_lookup(const SnpRmpTable *t, uint64_t spa,
                          SnpRmpPage *page)
{
    uint64_t region = spa >> SNP_RMP_SHIFT_2M;
    SnpRmpRecord *r;

    if (region >= t->n_regions || !snp_rmp_table_is_ram(t, spa)) {
        return false;
    }
    r = region_record(t, region);
    if (!r) {
        page->attrs = fresh_attrs;
        page->size = SNP_RMP_SIZE_4K;
        if (t->slots[region] == SLOT_FRESH_2M) {
            page->size = SNP_RMP_SIZE_2M;
            page->attrs.gpa = spa & (SNP_RMP_BYTES_2M -
                                     SNP_RMP_BYTES_4K);
        }
    } else if (r->is_2m) {
        page->size = SNP_RMP_SIZE_2M;
        page->attrs = r->e[0];
        page->attrs.gpa += spa & (SNP_RMP_BYTES_2M - SNP_RMP_BYTES_4K);
    } else {
        page->size = SNP_RMP_SIZE_4K;
        page->attrs = r->e[(spa >> SNP_RMP_SHIFT_4K) %
                           SNP_RMP_PAGES_PER_2M];
    }
    return true;
}

static SnpRmpStatus update_2m(SnpRmpTable *t, uint64_t spa,
                              const SnpRmpAttrs *attrs)
{
    uint64_t region = spa >> SNP_RMP_SHIFT_2M;
    SnpRmpRecord *r;

    if ((spa | attrs->gpa) & (SNP_RMP_BYTES_2M - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!range_is_ram(t, spa, SNP_RMP_BYTES_2M)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    r = region_record(t, region);
    if (r) {
        size_t n = r->is_2m ? 1 : SNP_RMP_PAGES_PER_2M;

        for (size_t i = 0; i < n; i++) {
            if (r->e[i].immutable) {
                return SNP_RMP_ERR_IMMUTABLE;
            }
        }
        /* RMPUPDATE: a 2M assign may not overlap assigned 4K pages */
        for (size_t i = 0; attrs->assigned && !r->is_2m && i < n; i++) {
            if (r->e[i].assigned) {
                return SNP_RMP_ERR_OVERLAP;
            }
        }
        record_free(t, t->slots[region]);
    }
    t->slots[region] = SLOT_FRESH_2M;
    if (!attrs_fresh(attrs)) {
        r = record_alloc(t, region, true);
        r->e[0] = *attrs;
    }
    return SNP_RMP_OK;
}

static SnpRmpStatus update_4k(SnpRmpTable *t, uint64_t spa,
                              const SnpRmpAttrs *attrs)
{
    uint64_t region = spa >> SNP_RMP_SHIFT_2M;
    SnpRmpRecord *r;
    SnpRmpAttrs *e;

    if ((spa | attrs->gpa) & (SNP_RMP_BYTES_4K - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!range_is_ram(t, spa, SNP_RMP_BYTES_4K)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (region_is_2m(t, region)) {
        return SNP_RMP_ERR_IS_2M;
    }
    r = region_record(t, region);
    if (!r) {
        if (attrs_fresh(attrs)) {
            return SNP_RMP_OK;
        }
        r = record_alloc(t, region, false);
    }
    e = &r->e[(spa >> SNP_RMP_SHIFT_4K) % SNP_RMP_PAGES_PER_2M];
    if (e->immutable) {
        return SNP_RMP_ERR_IMMUTABLE;
    }
    *e = *attrs;
    region_canonicalize(t, region);
    return SNP_RMP_OK;
}

SnpRmpStatus snp_rmp_table_update(SnpRmpTable *t, uint64_t spa,
                                  SnpRmpSize size, const SnpRmpAttrs *attrs)
{
    return size == SNP_RMP_SIZE_2M ? update_2m(t, spa, attrs)
                                   : update_4k(t, spa, attrs);
}

SnpRmpStatus snp_rmp_table_psmash(SnpRmpTable *t, uint64_t spa)
{
    uint64_t region = spa >> SNP_RMP_SHIFT_2M;
    SnpRmpRecord *r2m, *r4k;
    SnpRmpAttrs attrs;

    if (spa & (SNP_RMP_BYTES_2M - 1)) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!range_is_ram(t, spa, SNP_RMP_BYTES_2M)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (!region_is_2m(t, region)) {
        return SNP_RMP_ERR_NOT_2M;
    }
    r2m = region_record(t, region);
    attrs = r2m ? r2m->e[0] : fresh_attrs;
    if (r2m) {
        record_free(t, t->slots[region]);
    }
    t->slots[region] = SLOT_FRESH_4K;
    /* Each 4K entry gets its own GPA, so even a fresh 2M needs a record */
    r4k = record_alloc(t, region, false);
    for (unsigned i = 0; i < SNP_RMP_PAGES_PER_2M; i++) {
        r4k->e[i] = attrs;
        r4k->e[i].gpa = attrs.gpa + i * SNP_RMP_BYTES_4K;
    }
    return SNP_RMP_OK;
}

size_t snp_rmp_table_memory(const SnpRmpTable *t)
{
    return sizeof(*t) + t->n_ram * sizeof(*t->ram) +
           t->n_regions * sizeof(*t->slots) +
           t->n_records * (sizeof(*t->records) + sizeof(*t->free_records)) +
           t->record_bytes;
}

void snp_rmp_table_count(const SnpRmpTable *t, uint64_t *regions_4k,
                         uint64_t *regions_2m)
{
    *regions_4k = *regions_2m = 0;
    for (uint64_t i = 0; i < t->n_regions; i++) {
        if (!range_is_ram(t, i << SNP_RMP_SHIFT_2M, 1)) {
            continue;
        }
        if (region_is_2m(t, i)) {
            (*regions_2m)++;
        } else {
            (*regions_4k)++;
        }
    }
}

void snp_rmp_table_foreach_changed(const SnpRmpTable *t,
                                   SnpRmpTableVisitFn *fn, void *opaque)
{
    for (uint64_t i = 0; i < t->n_regions; i++) {
        uint64_t base = i << SNP_RMP_SHIFT_2M;
        SnpRmpRecord *r = region_record(t, i);
        SnpRmpPage page;

        if (!r) {
            if (t->slots[i] == SLOT_FRESH_2M) {
                page.size = SNP_RMP_SIZE_2M;
                page.attrs = fresh_attrs;
                fn(base, &page, opaque);
            }
            continue;
        }
        if (r->is_2m) {
            page.size = SNP_RMP_SIZE_2M;
            page.attrs = r->e[0];
            fn(base, &page, opaque);
            continue;
        }
        page.size = SNP_RMP_SIZE_4K;
        for (unsigned j = 0; j < SNP_RMP_PAGES_PER_2M; j++) {
            if (!attrs_fresh(&r->e[j])) {
                page.attrs = r->e[j];
                fn(base + j * SNP_RMP_BYTES_4K, &page, opaque);
            }
        }
    }
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
    }
    g_assert_not_reached();
}
