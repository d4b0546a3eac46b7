/*
 * Unit tests of the SEV-SNP RMP model
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-table.h"

#define MiB (1ULL << 20)
#define K4 SNP_RMP_BYTES_4K
#define M2 SNP_RMP_BYTES_2M

/* RAM with a hole and a last region that is only half RAM */
static const SnpRmpRange test_ram[] = {
    { 0, 6 * MiB },
    { 8 * MiB, 5 * MiB },
};
#define RAM_TOP (13 * MiB)
#define N_PAGES (RAM_TOP / K4)
#define N_REGIONS DIV_ROUND_UP(RAM_TOP, M2)

static SnpRmpTable *new_table(void)
{
    return snp_rmp_table_new(test_ram, G_N_ELEMENTS(test_ram));
}

static SnpRmpAttrs attrs(bool assigned, uint32_t asid, uint64_t gpa)
{
    return (SnpRmpAttrs) { .assigned = assigned, .asid = asid, .gpa = gpa };
}

static SnpRmpPage page_at(SnpRmpTable *t, uint64_t spa)
{
    SnpRmpPage p;

    g_assert_true(snp_rmp_table_lookup(t, spa, &p));
    return p;
}

static void test_fresh(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpPage p;
    uint64_t n4k, n2m;

    for (uint64_t spa = 0; spa < RAM_TOP; spa += K4) {
        bool ram = spa < 6 * MiB || spa >= 8 * MiB;

        g_assert_cmpint(snp_rmp_table_lookup(t, spa, &p), ==, ram);
        if (ram) {
            g_assert_cmpint(p.size, ==, SNP_RMP_SIZE_4K);
            g_assert_false(p.attrs.assigned);
            g_assert_cmpuint(p.attrs.asid, ==, 0);
            g_assert_cmpuint(p.attrs.gpa, ==, 0);
        }
    }
    g_assert_false(snp_rmp_table_lookup(t, RAM_TOP, &p));
    g_assert_false(snp_rmp_table_lookup(t, 1ULL << 40, &p));
    g_assert_cmpuint(snp_rmp_table_ram_top(t), ==, RAM_TOP);
    snp_rmp_table_count(t, &n4k, &n2m);
    g_assert_cmpuint(n4k, ==, 6);   /* 3 + 3 regions, the hole excluded */
    g_assert_cmpuint(n2m, ==, 0);
    snp_rmp_table_free(t);
}

static void test_update_2m(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs a = attrs(true, 5, 0x40000000);
    SnpRmpPage p;

    g_assert_cmpint(snp_rmp_table_update(t, 2 * MiB, SNP_RMP_SIZE_2M, &a), ==,
                    SNP_RMP_OK);
    for (unsigned i = 0; i < SNP_RMP_PAGES_PER_2M; i++) {
        p = page_at(t, 2 * MiB + i * K4);
        g_assert_cmpint(p.size, ==, SNP_RMP_SIZE_2M);
        g_assert_true(p.attrs.assigned);
        g_assert_cmpuint(p.attrs.asid, ==, 5);
        g_assert_cmpuint(p.attrs.gpa, ==, 0x40000000 + i * K4);
    }
    /* neighbours untouched */
    g_assert_cmpint(page_at(t, 2 * MiB - K4).size, ==, SNP_RMP_SIZE_4K);
    g_assert_cmpint(page_at(t, 4 * MiB).size, ==, SNP_RMP_SIZE_4K);

    /* errors, each leaving the RMP as it was */
    g_assert_cmpint(snp_rmp_table_update(t, 2 * MiB + K4, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_ERR_UNALIGNED);
    a.gpa = 0x40001000;
    g_assert_cmpint(snp_rmp_table_update(t, 0, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_ERR_UNALIGNED);
    a.gpa = 0;
    g_assert_cmpint(snp_rmp_table_update(t, 6 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_ERR_NOT_RAM);
    g_assert_cmpint(snp_rmp_table_update(t, 12 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_ERR_NOT_RAM);
    g_assert_cmpint(snp_rmp_table_update(t, 64 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_ERR_NOT_RAM);
    g_assert_cmpuint(page_at(t, 2 * MiB).attrs.gpa, ==, 0x40000000);
    snp_rmp_table_free(t);
}

static void test_update_4k(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs a = attrs(true, 1, 0x1000);
    SnpRmpAttrs h = attrs(false, 0, 0);

    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB + K4, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_OK);
    g_assert_true(page_at(t, 8 * MiB + K4).attrs.assigned);
    g_assert_false(page_at(t, 8 * MiB).attrs.assigned);
    /* the half-RAM region takes 4K updates below the RAM end only */
    g_assert_cmpint(snp_rmp_table_update(t, 13 * MiB - K4, SNP_RMP_SIZE_4K,
                                         &a), ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(t, 13 * MiB, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_ERR_NOT_RAM);
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB + 1, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_ERR_UNALIGNED);
    a.gpa = 0x1001;
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_ERR_UNALIGNED);

    /* a 4K update inside a 2M entry: psmash first */
    g_assert_cmpint(snp_rmp_table_update(t, 0, SNP_RMP_SIZE_2M, &h), ==,
                    SNP_RMP_OK);
    a.gpa = 0;
    g_assert_cmpint(snp_rmp_table_update(t, K4, SNP_RMP_SIZE_4K, &a), ==,
                    SNP_RMP_ERR_IS_2M);
    g_assert_cmpint(page_at(t, K4).size, ==, SNP_RMP_SIZE_2M);
    g_assert_false(page_at(t, K4).attrs.assigned);
    snp_rmp_table_free(t);
}

static void test_overlap_and_reclaim(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs a = attrs(true, 1, 0);
    SnpRmpAttrs h = attrs(false, 0, 0);

    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB + 5 * K4, SNP_RMP_SIZE_4K,
                                         &a), ==, SNP_RMP_OK);
    /* RMPUPDATE: a 2M assign over an assigned 4K entry fails */
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_ERR_OVERLAP);
    g_assert_cmpint(page_at(t, 8 * MiB).size, ==, SNP_RMP_SIZE_4K);
    g_assert_true(page_at(t, 8 * MiB + 5 * K4).attrs.assigned);
    /* the hypervisor reclaims the whole 2M: allowed over 4K entries */
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_2M, &h),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(page_at(t, 8 * MiB + 5 * K4).size, ==, SNP_RMP_SIZE_2M);
    g_assert_false(page_at(t, 8 * MiB + 5 * K4).attrs.assigned);
    /* and now a 2M assign works */
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_OK);
    /* a 2M assign over a 2M entry replaces it */
    a.asid = 7;
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_OK);
    g_assert_cmpuint(page_at(t, 9 * MiB).attrs.asid, ==, 7);
    snp_rmp_table_free(t);
}

static void test_psmash(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs a = attrs(true, 3, 0x200000);
    SnpRmpPage p;

    g_assert_cmpint(snp_rmp_table_psmash(t, 2 * MiB), ==, SNP_RMP_ERR_NOT_2M);
    g_assert_cmpint(snp_rmp_table_psmash(t, 2 * MiB + K4), ==,
                    SNP_RMP_ERR_UNALIGNED);
    g_assert_cmpint(snp_rmp_table_psmash(t, 6 * MiB), ==, SNP_RMP_ERR_NOT_RAM);
    a.validated = true;
    g_assert_cmpint(snp_rmp_table_update(t, 2 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_psmash(t, 2 * MiB), ==, SNP_RMP_OK);
    for (unsigned i = 0; i < SNP_RMP_PAGES_PER_2M; i++) {
        p = page_at(t, 2 * MiB + i * K4);
        g_assert_cmpint(p.size, ==, SNP_RMP_SIZE_4K);
        g_assert_true(p.attrs.assigned && p.attrs.validated);
        g_assert_cmpuint(p.attrs.asid, ==, 3);
        g_assert_cmpuint(p.attrs.gpa, ==, 0x200000 + i * K4);
    }
    /* now 4K updates work: share one page */
    a = attrs(false, 0, 0);
    g_assert_cmpint(snp_rmp_table_update(t, 3 * MiB, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_OK);
    g_assert_false(page_at(t, 3 * MiB).attrs.assigned);
    g_assert_true(page_at(t, 3 * MiB + K4).attrs.assigned);
    snp_rmp_table_free(t);
}

static void test_immutable(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs a = attrs(true, 0, 0);
    SnpRmpAttrs h = attrs(false, 0, 0);

    a.immutable = true;
    g_assert_cmpint(snp_rmp_table_update(t, 4 * MiB, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(t, 4 * MiB, SNP_RMP_SIZE_4K, &h),
                    ==, SNP_RMP_ERR_IMMUTABLE);
    g_assert_cmpint(snp_rmp_table_update(t, 4 * MiB, SNP_RMP_SIZE_2M, &h),
                    ==, SNP_RMP_ERR_IMMUTABLE);
    g_assert_true(page_at(t, 4 * MiB).attrs.immutable);
    snp_rmp_table_reset(t);
    g_assert_false(page_at(t, 4 * MiB).attrs.immutable);
    snp_rmp_table_free(t);
}

/*
 * The SEV firmware changes immutable entries: Firmware to Reclaim
 * (SNP_PAGE_RECLAIM), HV_FIXED at SNP_INIT (AMD-ASPFW sev_rmp.c); the
 * other rules still hold for it: a 4K entry inside a 2M entry is an
 * overlap for the firmware too.
 */
static void test_firmware_update(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs fw = attrs(true, 0, 0);
    SnpRmpAttrs reclaim = attrs(true, 0, 0);

    fw.immutable = true;
    g_assert_cmpint(snp_rmp_table_update(t, 4 * MiB, SNP_RMP_SIZE_4K, &fw),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(t, 4 * MiB, SNP_RMP_SIZE_4K,
                                         &reclaim),
                    ==, SNP_RMP_ERR_IMMUTABLE);
    g_assert_cmpint(snp_rmp_table_firmware_update(t, 4 * MiB,
                                                  SNP_RMP_SIZE_4K, &reclaim),
                    ==, SNP_RMP_OK);
    g_assert_false(page_at(t, 4 * MiB).attrs.immutable);
    g_assert_true(page_at(t, 4 * MiB).attrs.assigned);
    /* 2M immutable entry: the firmware may not update 4K inside it */
    g_assert_cmpint(snp_rmp_table_update(t, 2 * MiB, SNP_RMP_SIZE_2M, &fw),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_firmware_update(t, 2 * MiB,
                                                  SNP_RMP_SIZE_4K, &reclaim),
                    ==, SNP_RMP_ERR_IS_2M);
    g_assert_cmpint(snp_rmp_table_firmware_update(t, 2 * MiB,
                                                  SNP_RMP_SIZE_2M, &reclaim),
                    ==, SNP_RMP_OK);
    g_assert_false(page_at(t, 2 * MiB + K4).attrs.immutable);
    snp_rmp_table_free(t);
}

static void test_memory(void)
{
    /* 1 GiB of RAM */
    SnpRmpRange gib = { 0, 1ULL << 30 };
    SnpRmpTable *t = snp_rmp_table_new(&gib, 1);
    SnpRmpAttrs a = attrs(true, 1, 0);
    size_t fresh = snp_rmp_table_memory(t);

    g_assert_cmpuint(fresh, <, 4096);
    /* a guest's contiguous private memory, all 2M entries */
    for (uint64_t spa = 0; spa < gib.size; spa += M2) {
        a.gpa = spa + (1ULL << 32);
        g_assert_cmpint(snp_rmp_table_update(t, spa, SNP_RMP_SIZE_2M, &a),
                        ==, SNP_RMP_OK);
    }
    g_assert_cmpuint(snp_rmp_table_memory(t), <, 4096);
    /* smashed: one 32-bit class id per 4K entry */
    for (uint64_t spa = 0; spa < gib.size; spa += M2) {
        g_assert_cmpint(snp_rmp_table_psmash(t, spa), ==, SNP_RMP_OK);
    }
    g_assert_cmpuint(snp_rmp_table_memory(t), >=, 512 * 512 * 4);
    g_assert_cmpuint(snp_rmp_table_memory(t), <, 512 * 512 * 4 + 64 * 1024);
    g_assert_cmphex(page_at(t, 5 * M2 + 3 * K4).attrs.gpa, ==,
                    (1ULL << 32) + 5 * M2 + 3 * K4);
    snp_rmp_table_reset(t);
    g_assert_cmpuint(snp_rmp_table_memory(t), ==, fresh);
    /* GPAs in no order: a class per region, still small */
    for (uint64_t spa = 0; spa < gib.size; spa += M2) {
        a.gpa = ((spa / M2) * 7919 % 512) * M2;
        a.asid = spa / M2;
        g_assert_cmpint(snp_rmp_table_update(t, spa, SNP_RMP_SIZE_2M, &a),
                        ==, SNP_RMP_OK);
    }
    g_assert_cmpuint(snp_rmp_table_memory(t), <, 64 * 1024);
    g_assert_cmpuint(page_at(t, 7 * M2).attrs.asid, ==, 7);
    g_assert_cmphex(page_at(t, 7 * M2 + K4).attrs.gpa, ==,
                    (7 * 7919 % 512) * M2 + K4);
    snp_rmp_table_free(t);
}

/* A plain reference: every 4K entry stored, plus a 2M flag per region. */
typedef struct RefRmp {
    SnpRmpAttrs e[N_PAGES];
    bool is_2m[N_REGIONS];
} RefRmp;

static bool ref_range_ram(uint64_t spa, uint64_t len)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(test_ram); i++) {
        if (spa >= test_ram[i].start &&
            spa + len <= test_ram[i].start + test_ram[i].size) {
            return true;
        }
    }
    return false;
}

static SnpRmpStatus ref_update(RefRmp *r, uint64_t spa, SnpRmpSize size,
                               const SnpRmpAttrs *a)
{
    uint64_t len = size == SNP_RMP_SIZE_2M ? M2 : K4;
    uint64_t first = spa / K4;

    if (spa % len || a->gpa % len) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!ref_range_ram(spa, len)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (size == SNP_RMP_SIZE_4K) {
        if (r->is_2m[spa / M2]) {
            return SNP_RMP_ERR_IS_2M;
        }
        if (r->e[first].immutable) {
            return SNP_RMP_ERR_IMMUTABLE;
        }
        r->e[first] = *a;
        return SNP_RMP_OK;
    }
    for (unsigned i = 0; i < 512; i++) {
        if (r->e[first + i].immutable) {
            return SNP_RMP_ERR_IMMUTABLE;
        }
    }
    for (unsigned i = 0; i < 512; i++) {
        if (a->assigned && !r->is_2m[spa / M2] && r->e[first + i].assigned) {
            return SNP_RMP_ERR_OVERLAP;
        }
    }
    for (unsigned i = 0; i < 512; i++) {
        r->e[first + i] = *a;
        r->e[first + i].gpa = a->gpa + i * K4;
    }
    r->is_2m[spa / M2] = true;
    return SNP_RMP_OK;
}

static SnpRmpStatus ref_psmash(RefRmp *r, uint64_t spa)
{
    if (spa % M2) {
        return SNP_RMP_ERR_UNALIGNED;
    }
    if (!ref_range_ram(spa, M2)) {
        return SNP_RMP_ERR_NOT_RAM;
    }
    if (!r->is_2m[spa / M2]) {
        return SNP_RMP_ERR_NOT_2M;
    }
    r->is_2m[spa / M2] = false;
    return SNP_RMP_OK;
}

static void ref_compare(RefRmp *r, SnpRmpTable *t, uint64_t spa)
{
    SnpRmpPage p;
    bool ram = ref_range_ram(spa, K4);

    g_assert_cmpint(snp_rmp_table_lookup(t, spa, &p), ==, ram);
    if (ram) {
        SnpRmpAttrs *e = &r->e[spa / K4];

        g_assert_cmpint(p.size, ==,
                        r->is_2m[spa / M2] ? SNP_RMP_SIZE_2M : SNP_RMP_SIZE_4K);
        g_assert_cmpint(p.attrs.assigned, ==, e->assigned);
        g_assert_cmpint(p.attrs.validated, ==, e->validated);
        g_assert_cmpint(p.attrs.immutable, ==, e->immutable);
        g_assert_cmpuint(p.attrs.asid, ==, e->asid);
        g_assert_cmpuint(p.attrs.gpa, ==, e->gpa);
    }
}

static void test_random_vs_reference(void)
{
    g_autofree RefRmp *ref = g_new0(RefRmp, 1);
    SnpRmpTable *t = new_table();
    GRand *rnd = g_rand_new_with_seed(0x5eed);

    for (unsigned step = 0; step < 40000; step++) {
        uint64_t spa = g_rand_int_range(rnd, 0, RAM_TOP / K4 + 16) * K4;
        unsigned op = g_rand_int_range(rnd, 0, 10);
        SnpRmpAttrs a = {
            .assigned = g_rand_boolean(rnd),
            .asid = g_rand_int_range(rnd, 0, 3),
            .validated = g_rand_boolean(rnd),
            /* rare, or the whole RMP freezes */
            .immutable = g_rand_int_range(rnd, 0, 200) == 0,
        };

        if (g_rand_int_range(rnd, 0, 3)) {
            a = (SnpRmpAttrs) { 0 };    /* mostly: hypervisor reclaims */
            a.assigned = g_rand_boolean(rnd);
        }
        if (op < 4) {
            spa &= ~(M2 - 1);
            if (!g_rand_int_range(rnd, 0, 20)) {
                spa += K4;
            }
            a.gpa = g_rand_int_range(rnd, 0, 8) * M2;
            g_assert_cmpint(snp_rmp_table_update(t, spa, SNP_RMP_SIZE_2M, &a),
                            ==, ref_update(ref, spa, SNP_RMP_SIZE_2M, &a));
        } else if (op < 8) {
            a.gpa = g_rand_int_range(rnd, 0, 1024) * K4;
            g_assert_cmpint(snp_rmp_table_update(t, spa, SNP_RMP_SIZE_4K, &a),
                            ==, ref_update(ref, spa, SNP_RMP_SIZE_4K, &a));
        } else {
            spa &= ~(M2 - 1);
            g_assert_cmpint(snp_rmp_table_psmash(t, spa), ==,
                            ref_psmash(ref, spa));
        }
        ref_compare(ref, t, spa & ~(K4 - 1));
        if (step % 500 == 0) {
            for (uint64_t s = 0; s < RAM_TOP + M2; s += K4) {
                ref_compare(ref, t, s);
            }
        }
        if (step % 10000 == 9999) {
            snp_rmp_table_reset(t);
            memset(ref, 0, sizeof(*ref));
        }
    }
    g_rand_free(rnd);
    snp_rmp_table_free(t);
}

static void count_changed(uint64_t spa, const SnpRmpPage *page, void *opaque)
{
    GArray *seen = opaque;

    g_array_append_val(seen, spa);
    g_assert_true(page->size == SNP_RMP_SIZE_2M || page->attrs.assigned ||
                  page->attrs.gpa || page->attrs.asid);
}

static void test_foreach_changed(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpAttrs a = attrs(true, 1, 0);
    SnpRmpAttrs h = attrs(false, 0, 0);
    g_autoptr(GArray) seen = g_array_new(false, false, sizeof(uint64_t));

    snp_rmp_table_update(t, 0, SNP_RMP_SIZE_2M, &h);
    snp_rmp_table_update(t, 2 * MiB, SNP_RMP_SIZE_2M, &a);
    snp_rmp_table_update(t, 8 * MiB + K4, SNP_RMP_SIZE_4K, &a);
    snp_rmp_table_foreach_changed(t, count_changed, seen);
    g_assert_cmpuint(seen->len, ==, 3);
    g_assert_cmpuint(g_array_index(seen, uint64_t, 0), ==, 0);
    g_assert_cmpuint(g_array_index(seen, uint64_t, 1), ==, 2 * MiB);
    g_assert_cmpuint(g_array_index(seen, uint64_t, 2), ==, 8 * MiB + K4);
    snp_rmp_table_free(t);
}

/* The shadow follows KVM's policy */
static void test_shadow_convert(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpPage p;

    /* a 2M-aligned 2M private conversion with the hint: one 2M entry */
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 2 * MiB, 2 * MiB, true,
                                                 5, true), ==, SNP_RMP_OK);
    p = page_at(t, 3 * MiB);
    g_assert_cmpint(p.size, ==, SNP_RMP_SIZE_2M);
    g_assert_true(p.attrs.assigned);
    g_assert_cmpuint(p.attrs.asid, ==, 5);
    g_assert_cmphex(p.attrs.gpa, ==, 3 * MiB);
    g_assert_false(p.attrs.validated);
    /* without the hint: 4K entries */
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 8 * MiB, 2 * MiB, true,
                                                 5, false), ==, SNP_RMP_OK);
    g_assert_cmpint(page_at(t, 8 * MiB).size, ==, SNP_RMP_SIZE_4K);
    g_assert_true(page_at(t, 9 * MiB).attrs.assigned);
    /* one 4K page of the 2M goes shared: smashed */
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 3 * MiB, K4, false, 5,
                                                 false), ==, SNP_RMP_OK);
    g_assert_cmpint(page_at(t, 2 * MiB).size, ==, SNP_RMP_SIZE_4K);
    g_assert_false(page_at(t, 3 * MiB).attrs.assigned);
    g_assert_true(page_at(t, 3 * MiB + K4).attrs.assigned);
    g_assert_cmphex(page_at(t, 3 * MiB + K4).attrs.gpa, ==, 3 * MiB + K4);
    /* the whole 2M shared again with the hint: a 2M hypervisor entry */
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 2 * MiB, 2 * MiB, false,
                                                 0, true), ==, SNP_RMP_OK);
    p = page_at(t, 3 * MiB + K4);
    g_assert_cmpint(p.size, ==, SNP_RMP_SIZE_2M);
    g_assert_false(p.attrs.assigned);
    /* a conversion spanning regions and the RAM hole: hint, partial ends */
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 4 * MiB - K4,
                                                 6 * MiB + 2 * K4, true, 7,
                                                 true), ==, SNP_RMP_OK);
    g_assert_cmpint(page_at(t, 4 * MiB - K4).size, ==, SNP_RMP_SIZE_4K);
    g_assert_true(page_at(t, 4 * MiB - K4).attrs.assigned);
    g_assert_cmpint(page_at(t, 4 * MiB).size, ==, SNP_RMP_SIZE_2M);
    g_assert_cmpuint(page_at(t, 5 * MiB).attrs.asid, ==, 7);
    g_assert_cmpint(page_at(t, 8 * MiB).size, ==, SNP_RMP_SIZE_2M);
    g_assert_cmpint(page_at(t, 10 * MiB).size, ==, SNP_RMP_SIZE_4K);
    g_assert_true(page_at(t, 10 * MiB).attrs.assigned);
    g_assert_false(page_at(t, 10 * MiB + K4).attrs.assigned);
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 1, K4, true, 7, false),
                    ==, SNP_RMP_ERR_UNALIGNED);
    snp_rmp_table_free(t);
}

/* What the table says of every page up to one region past RAM */
typedef struct Snapshot {
    bool ram[N_REGIONS * 512 + 512];
    SnpRmpPage page[N_REGIONS * 512 + 512];
    size_t memory;
} Snapshot;

static void snapshot(SnpRmpTable *t, Snapshot *s)
{
    memset(s, 0, sizeof(*s));
    for (uint64_t i = 0; i < G_N_ELEMENTS(s->page); i++) {
        s->ram[i] = snp_rmp_table_lookup(t, i * K4, &s->page[i]);
    }
    s->memory = snp_rmp_table_memory(t);
}

static void assert_unchanged(SnpRmpTable *t, const Snapshot *before)
{
    g_autofree Snapshot *now = g_new(Snapshot, 1);

    snapshot(t, now);
    for (uint64_t i = 0; i < G_N_ELEMENTS(now->page); i++) {
        const SnpRmpPage *p = &now->page[i], *q = &before->page[i];

        g_assert_cmpint(now->ram[i], ==, before->ram[i]);
        if (now->ram[i]) {
            g_assert_cmpint(p->size, ==, q->size);
            g_assert_cmpint(p->attrs.assigned, ==, q->attrs.assigned);
            g_assert_cmpint(p->attrs.validated, ==, q->attrs.validated);
            g_assert_cmpint(p->attrs.immutable, ==, q->attrs.immutable);
            g_assert_cmpuint(p->attrs.asid, ==, q->attrs.asid);
            g_assert_cmphex(p->attrs.gpa, ==, q->attrs.gpa);
        }
    }
    g_assert_cmpuint(now->memory, ==, before->memory);
}

/*
 * SPAs that are not RAM, up to 2^64 - 1: every operation fails (or, for
 * a lookup, finds nothing) and changes nothing.  (Issue 8, defect 1: the
 * RAM test wrapped around 2^64 and the region slots were indexed without
 * a bound.)
 */
static const uint64_t hostile_spa[] = {
    0xffffffffffe00000ULL,      /* the last 2M below 2^64 */
    0xfffffffffffff000ULL,      /* the last 4K */
    0xffffffffffc00000ULL,
    0x8000000000000000ULL,
    0x7fffffffffe00000ULL,
    1ULL << 40,
    RAM_TOP,                    /* just past the end of RAM */
    12 * MiB,                   /* a 2M region only half RAM */
    14 * MiB,                   /* the first region past RAM */
    6 * MiB,                    /* the hole */
    7 * MiB,
    8 * MiB - K4,
};

/* Ranges without a byte of RAM */
static const SnpRmpRange no_ram[] = {
    { 0xffffffffffe00000ULL, M2 },          /* ends at 2^64 exactly */
    { 0xffffffffffe00000ULL, K4 },
    { 0xfffffffffffff000ULL, K4 },
    { 0x8000000000000000ULL, 1ULL << 62 },
    { RAM_TOP, K4 },
    { RAM_TOP, 1ULL << 62 },                /* 2^50 pages: must not loop */
    { 14 * MiB, M2 },
    { 6 * MiB, M2 },                        /* the hole */
    { 6 * MiB + K4, 3 * K4 },
};

static void test_hostile_spa(void)
{
    SnpRmpTable *t = new_table();
    g_autofree Snapshot *before = g_new(Snapshot, 1);
    SnpRmpAttrs a = attrs(true, 3, 0);
    SnpRmpAttrs h = attrs(false, 0, 0);
    SnpRmpPage p;

    /* some state to keep */
    g_assert_cmpint(snp_rmp_table_update(t, 2 * MiB, SNP_RMP_SIZE_2M, &a),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB + K4, SNP_RMP_SIZE_4K,
                                         &a), ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(t, 10 * MiB, SNP_RMP_SIZE_2M, &h),
                    ==, SNP_RMP_OK);
    snapshot(t, before);

    for (unsigned i = 0; i < G_N_ELEMENTS(hostile_spa); i++) {
        uint64_t spa = hostile_spa[i];
        bool aligned_2m = !(spa & (M2 - 1));

        g_test_message("SPA 0x%" PRIx64, spa);
        for (unsigned j = 0; j < 2; j++) {
            const SnpRmpAttrs *x = j ? &a : &h;

            g_assert_cmpint(snp_rmp_table_update(t, spa, SNP_RMP_SIZE_2M, x),
                            ==, aligned_2m ? SNP_RMP_ERR_NOT_RAM
                                           : SNP_RMP_ERR_UNALIGNED);
            if (spa != 12 * MiB) {  /* 12M..13M is RAM */
                g_assert_cmpint(snp_rmp_table_update(t, spa, SNP_RMP_SIZE_4K,
                                                     x), ==,
                                SNP_RMP_ERR_NOT_RAM);
            }
        }
        g_assert_cmpint(snp_rmp_table_psmash(t, spa), ==,
                        aligned_2m ? SNP_RMP_ERR_NOT_RAM
                                   : SNP_RMP_ERR_UNALIGNED);
        if (spa != 12 * MiB) {
            g_assert_false(snp_rmp_table_lookup(t, spa, &p));
            g_assert_false(snp_rmp_table_lookup(t, spa + K4 - 1, &p));
        }
        assert_unchanged(t, before);
    }
    g_assert_false(snp_rmp_table_lookup(t, UINT64_MAX, &p));

    /* shadow conversions of ranges with no RAM change nothing */
    for (unsigned i = 0; i < G_N_ELEMENTS(no_ram); i++) {
        g_test_message("shadow 0x%" PRIx64 " + 0x%" PRIx64,
                       no_ram[i].start, no_ram[i].size);
        for (unsigned j = 0; j < 4; j++) {
            g_assert_cmpint(snp_rmp_table_shadow_convert(t, no_ram[i].start,
                                                         no_ram[i].size,
                                                         j & 1, 1, j & 2),
                            ==, SNP_RMP_OK);
            assert_unchanged(t, before);
        }
    }
    /* a range that wraps around 2^64 is refused whole */
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 0xffffffffffe00000ULL,
                                                 4 * M2, true, 1, true), !=,
                    SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, 2 * M2,
                                                 0xfffffffffffff000ULL, true,
                                                 1, false), !=, SNP_RMP_OK);
    assert_unchanged(t, before);
    snp_rmp_table_free(t);
}

static void count_query(uint64_t spa, const SnpRmpPage *page, void *opaque)
{
    GArray *seen = opaque;

    g_array_append_val(seen, spa);
}

static SnpRmpStatus query(SnpRmpTable *t, uint64_t spa, uint64_t count,
                          GArray *seen)
{
    g_array_set_size(seen, 0);
    return snp_rmp_table_query(t, spa, count, count_query, seen);
}

/* query: the first page must be RAM, the range must end in RAM's span */
static void test_query(void)
{
    SnpRmpTable *t = new_table();
    g_autoptr(GArray) seen = g_array_new(false, false, sizeof(uint64_t));
    SnpRmpAttrs a = attrs(true, 2, 0);

    g_assert_cmpint(snp_rmp_table_update(t, 5 * MiB, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(query(t, 5 * MiB - K4, 3, seen), ==, SNP_RMP_OK);
    g_assert_cmpuint(seen->len, ==, 3);
    g_assert_cmphex(g_array_index(seen, uint64_t, 1), ==, 5 * MiB);
    /* the hole is skipped */
    g_assert_cmpint(query(t, 6 * MiB - K4, 2 * MiB / K4 + 2, seen), ==,
                    SNP_RMP_OK);
    g_assert_cmpuint(seen->len, ==, 2);
    g_assert_cmphex(g_array_index(seen, uint64_t, 1), ==, 8 * MiB);
    /* up to the last page of RAM, and not one page further */
    g_assert_cmpint(query(t, RAM_TOP - 4 * K4, 4, seen), ==, SNP_RMP_OK);
    g_assert_cmpuint(seen->len, ==, 4);
    g_assert_cmpint(query(t, RAM_TOP - 4 * K4, 5, seen), ==,
                    SNP_RMP_ERR_BEYOND_RAM);
    g_assert_cmpint(query(t, 0, RAM_TOP / K4, seen), ==, SNP_RMP_OK);
    g_assert_cmpuint(seen->len, ==, 11 * MiB / K4);
    g_assert_cmpint(query(t, 0, RAM_TOP / K4 + 1, seen), ==,
                    SNP_RMP_ERR_BEYOND_RAM);
    g_assert_cmpint(query(t, 0, 0, seen), ==, SNP_RMP_OK);
    g_assert_cmpint(query(t, 0, UINT64_MAX, seen), ==,
                    SNP_RMP_ERR_BEYOND_RAM);
    /* counts whose byte size wraps around 2^64 */
    g_assert_cmpint(query(t, 2 * MiB, (1ULL << 52) + 1, seen), ==,
                    SNP_RMP_ERR_BEYOND_RAM);
    g_assert_cmpint(query(t, 2 * MiB, 1ULL << 63, seen), ==,
                    SNP_RMP_ERR_BEYOND_RAM);
    /* the first page */
    g_assert_cmpint(query(t, 6 * MiB, 1, seen), ==, SNP_RMP_ERR_NOT_RAM);
    g_assert_cmpint(query(t, 5 * MiB + 8, 1, seen), ==,
                    SNP_RMP_ERR_UNALIGNED);
    for (unsigned i = 0; i < G_N_ELEMENTS(hostile_spa); i++) {
        uint64_t spa = hostile_spa[i];
        SnpRmpStatus want = spa >= RAM_TOP ? SNP_RMP_ERR_BEYOND_RAM
                                           : SNP_RMP_ERR_NOT_RAM;

        if (spa == 12 * MiB) {
            continue;
        }
        g_assert_cmpint(query(t, spa, 1, seen), ==, want);
        g_assert_cmpint(query(t, spa, 4096, seen), ==, want);
        g_assert_cmpint(query(t, spa, UINT64_MAX, seen), ==, want);
        g_assert_cmpuint(seen->len, ==, 0);
    }
    snp_rmp_table_free(t);
}

/* replace: the live table takes a state built aside, in one step */
static void test_replace(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpTable *aside = snp_rmp_table_new_like(t);
    SnpRmpAttrs a = attrs(true, 4, 0x600000);
    g_autofree Snapshot *fresh = g_new(Snapshot, 1);

    snapshot(aside, fresh);
    g_assert_cmpuint(snp_rmp_table_ram_top(aside), ==, RAM_TOP);
    g_assert_cmpuint(snp_rmp_table_ram_size(aside), ==, 11 * MiB);
    g_assert_cmpint(snp_rmp_table_update(t, 0, SNP_RMP_SIZE_4K, &a),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(aside, 2 * MiB, SNP_RMP_SIZE_2M,
                                         &a), ==, SNP_RMP_OK);
    snp_rmp_table_replace(t, aside);
    g_assert_false(page_at(t, 0).attrs.assigned);
    g_assert_cmpint(page_at(t, 3 * MiB).size, ==, SNP_RMP_SIZE_2M);
    g_assert_cmphex(page_at(t, 3 * MiB).attrs.gpa, ==, 0x700000);
    assert_unchanged(aside, fresh);
    /* both stay usable */
    g_assert_cmpint(snp_rmp_table_psmash(t, 2 * MiB), ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_table_update(aside, 2 * MiB, SNP_RMP_SIZE_2M,
                                         &a), ==, SNP_RMP_OK);
    snp_rmp_table_free(aside);
    g_assert_cmpint(page_at(t, 3 * MiB).size, ==, SNP_RMP_SIZE_4K);
    snp_rmp_table_free(t);
}

/*
 * The version that lets a cache outside the table (the IOMMU's verdicts)
 * know the table did not change: even at rest, changed by every change,
 * never by a lookup.
 */
static void test_version(void)
{
    SnpRmpTable *t = new_table();
    SnpRmpTable *from = snp_rmp_table_new_like(t);
    SnpRmpAttrs hv = attrs(false, 0, 0);
    SnpRmpAttrs priv = attrs(true, 1, 0x1000);
    uint64_t v = snp_rmp_table_version(t), next;
    SnpRmpPage p;

    g_assert_cmpuint(v % 2, ==, 0);
#define CHANGED() do {                                       \
        next = snp_rmp_table_version(t);                     \
        g_assert_cmpuint(next % 2, ==, 0);                   \
        g_assert_cmpuint(next, >, v);                        \
        v = next;                                            \
    } while (0)
    g_assert_cmpint(snp_rmp_table_update(t, 0, SNP_RMP_SIZE_2M, &hv), ==,
                    SNP_RMP_OK);
    CHANGED();
    g_assert_cmpint(snp_rmp_table_psmash(t, 0), ==, SNP_RMP_OK);
    CHANGED();
    g_assert_cmpint(snp_rmp_table_update(t, 0x1000, SNP_RMP_SIZE_4K, &priv),
                    ==, SNP_RMP_OK);
    CHANGED();
    g_assert_cmpint(snp_rmp_table_shadow_convert(t, M2, M2, true, 1, true),
                    ==, SNP_RMP_OK);
    CHANGED();
    snp_rmp_table_replace(t, from);
    CHANGED();
    snp_rmp_table_reset(t);
    CHANGED();
#undef CHANGED
    g_assert_true(snp_rmp_table_lookup(t, 0x1000, &p));
    g_assert_cmpuint(snp_rmp_table_version(t), ==, v);
    snp_rmp_table_free(from);
    snp_rmp_table_free(t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/snp-rmp-table/fresh", test_fresh);
    g_test_add_func("/snp-rmp-table/update-2m", test_update_2m);
    g_test_add_func("/snp-rmp-table/update-4k", test_update_4k);
    g_test_add_func("/snp-rmp-table/overlap-and-reclaim",
                    test_overlap_and_reclaim);
    g_test_add_func("/snp-rmp-table/psmash", test_psmash);
    g_test_add_func("/snp-rmp-table/immutable", test_immutable);
    g_test_add_func("/snp-rmp-table/firmware-update", test_firmware_update);
    g_test_add_func("/snp-rmp-table/memory", test_memory);
    g_test_add_func("/snp-rmp-table/shadow-convert", test_shadow_convert);
    g_test_add_func("/snp-rmp-table/foreach-changed", test_foreach_changed);
    g_test_add_func("/snp-rmp-table/random-vs-reference",
                    test_random_vs_reference);
    g_test_add_func("/snp-rmp-table/hostile-spa", test_hostile_spa);
    g_test_add_func("/snp-rmp-table/query", test_query);
    g_test_add_func("/snp-rmp-table/replace", test_replace);
    g_test_add_func("/snp-rmp-table/version", test_version);
    return g_test_run();
}
