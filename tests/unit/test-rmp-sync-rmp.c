/*
 * Unit tests: the RMP-granularity sync engine fed by the RMP model
 *
 * The path the VFIO glue takes when the snp-rmp object changes, for RAM
 * whose page states come from the RMP's owner bits: every change goes
 * through rmp_sync_set_states_from() and rmp_sync_rmp_changed() on the
 * changed range, exactly as hw/vfio/rmp-sync.c's notifier does, with the
 * answers the snp-rmp object gives as a granularity source
 * (snp_rmp_table_is_2m() and snp_rmp_table_is_shared(), which
 * hw/i386/snp-rmp.c uses).  After
 * each RMPUPDATE or PSMASH the fake IOAS is checked against the RMP
 * itself: the page size rule (R1/R2 of the amd-iommu) and the policy.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-table.h"
#include "hw/vfio/rmp-sync-engine.h"

#define MiB (1ULL << 20)
#define K4 SNP_RMP_BYTES_4K
#define M2 SNP_RMP_BYTES_2M
#define RAM_SIZE (16 * MiB)

typedef struct Area {
    uint64_t start, end;        /* bytes */
} Area;

typedef struct Fixture {
    SnpRmpTable *t;
    RmpSyncEngine *e;
    RmpSyncEnginePolicy policy;
    GArray *areas;              /* the fake IOAS */
    GRand *rnd;
} Fixture;

/* The fake IOAS: iommufd's rules, and type1's reported unmap size */
static int fake_issue(void *opaque, const RmpSyncOp *op)
{
    Fixture *f = opaque;
    uint64_t s = op->iova, e = op->iova + op->size, unmapped = 0;

    for (guint i = 0; i < f->areas->len;) {
        Area *a = &g_array_index(f->areas, Area, i);
        bool overlaps = a->start < e && s < a->end;

        if (op->type == RMP_SYNC_OP_MAP) {
            g_assert_false(overlaps);
            i++;
        } else if (overlaps) {
            g_assert_true(a->start >= s && a->end <= e);    /* no cut */
            unmapped += a->end - a->start;
            g_array_remove_index_fast(f->areas, i);
        } else {
            i++;
        }
    }
    if (op->type == RMP_SYNC_OP_MAP) {
        Area a = { s, e };

        g_assert_cmpuint(e, <=, RAM_SIZE);
        g_array_append_val(f->areas, a);
    } else {
        g_assert_cmpuint(unmapped, >, 0);
        g_assert_cmpuint(unmapped, ==, op->mapped);
    }
    return 0;
}

static bool fixture_rmp_is_2m(void *opaque, uint64_t iova)
{
    Fixture *f = opaque;

    return snp_rmp_table_is_2m(f->t, iova);
}

static bool fixture_is_shared(void *opaque, uint64_t spa)
{
    Fixture *f = opaque;

    return snp_rmp_table_is_shared(f->t, spa);
}

/* What hw/vfio/rmp-sync.c does in the snp-rmp change notifier */
static void rmp_changed(Fixture *f, uint64_t spa, uint64_t size)
{
    g_assert_cmpint(rmp_sync_set_states_from(f->e, spa, size,
                                             fixture_is_shared, f), ==, 0);
    g_assert_cmpint(rmp_sync_rmp_changed(f->e, spa, size), ==, 0);
}

static Fixture *fixture_new(RmpSyncEnginePolicy policy, bool hitless,
                            guint32 seed)
{
    static const SnpRmpRange ram = { 0, RAM_SIZE };
    Fixture *f = g_new0(Fixture, 1);

    f->t = snp_rmp_table_new(&ram, 1);
    f->policy = policy;
    f->areas = g_array_new(false, false, sizeof(Area));
    f->rnd = g_rand_new_with_seed(seed);
    f->e = rmp_sync_engine_new(policy, fake_issue, fixture_rmp_is_2m, f);
    rmp_sync_engine_set_hitless(f->e, hitless);
    /* region_add: all private, then the states of the RMP */
    g_assert_cmpint(rmp_sync_add_range(f->e, 0, RAM_SIZE, false), ==, 0);
    g_assert_cmpint(rmp_sync_set_states_from(f->e, 0, RAM_SIZE,
                                             fixture_is_shared, f), ==, 0);
    return f;
}

static void fixture_free(Fixture *f)
{
    rmp_sync_engine_free(f->e);
    snp_rmp_table_free(f->t);
    g_array_free(f->areas, true);
    g_rand_free(f->rnd);
    g_free(f);
}

static const Area *area_at(Fixture *f, uint64_t spa)
{
    for (guint i = 0; i < f->areas->len; i++) {
        const Area *a = &g_array_index(f->areas, Area, i);

        if (spa >= a->start && spa < a->end) {
            return a;
        }
    }
    return NULL;
}

/* The IOAS against the RMP, page by page */
static void check(Fixture *f)
{
    static const Area *owner[RAM_SIZE / K4];

    memset(owner, 0, sizeof(owner));
    for (guint i = 0; i < f->areas->len; i++) {
        const Area *a = &g_array_index(f->areas, Area, i);

        for (uint64_t p = a->start; p < a->end; p += K4) {
            owner[p / K4] = a;
        }
    }
    for (uint64_t r = 0; r < RAM_SIZE; r += M2) {
        SnpRmpPage page;
        unsigned wanted = 0;

        for (uint64_t p = r; p < r + M2; p += K4) {
            g_assert_true(snp_rmp_table_lookup(f->t, p, &page));
            wanted += f->policy == RMP_SYNC_MAP_ALL || !page.attrs.assigned;
        }
        for (uint64_t p = r; p < r + M2; p += K4) {
            const Area *a = owner[p / K4];
            bool want;

            snp_rmp_table_lookup(f->t, p, &page);
            want = f->policy == RMP_SYNC_MAP_ALL || !page.attrs.assigned;
            if (page.size == SNP_RMP_SIZE_2M) {
                /* a 2M IO page over the 2M entry, or nothing if mixed */
                g_assert_cmpint(a != NULL, ==, wanted == M2 / K4);
                if (a) {
                    g_assert_cmpuint(a->start, ==, r);
                    g_assert_cmpuint(a->end, ==, r + M2);
                }
            } else {
                /* checked at 4K: never an area over the whole region */
                g_assert_cmpint(a != NULL, ==, want);
                if (a) {
                    g_assert_false(a->start <= r && a->end >= r + M2);
                }
            }
        }
    }
}

static void update(Fixture *f, uint64_t spa, SnpRmpSize size, bool assigned,
                   uint32_t asid)
{
    SnpRmpAttrs attrs = { .gpa = spa, .asid = asid, .assigned = assigned };

    g_assert_cmpint(snp_rmp_table_update(f->t, spa, size, &attrs), ==,
                    SNP_RMP_OK);
    rmp_changed(f, spa, size == SNP_RMP_SIZE_2M ? M2 : K4);
    check(f);
}

static void psmash(Fixture *f, uint64_t spa)
{
    g_assert_cmpint(snp_rmp_table_psmash(f->t, spa), ==, SNP_RMP_OK);
    rmp_changed(f, spa, M2);
    check(f);
}

/* The 2023 bug's sequence, through the RMP */
static void run_sequence(RmpSyncEnginePolicy policy, bool hitless)
{
    Fixture *f = fixture_new(policy, hitless, 1);
    RmpSyncStats st;

    check(f);                                   /* fresh: 4K, shared */
    update(f, 1 * M2, SNP_RMP_SIZE_2M, false, 0);   /* 2M entry */
    g_assert_cmpuint(area_at(f, M2)->end - area_at(f, M2)->start, ==, M2);
    psmash(f, 1 * M2);                          /* the guest shares 4K... */
    update(f, 1 * M2 + 5 * K4, SNP_RMP_SIZE_4K, true, 1);
    update(f, 1 * M2 + 5 * K4, SNP_RMP_SIZE_4K, false, 0);
    update(f, 1 * M2, SNP_RMP_SIZE_2M, false, 0);   /* re-formed */
    update(f, 2 * M2, SNP_RMP_SIZE_2M, false, 0);   /* private 2M */
    update(f, 2 * M2, SNP_RMP_SIZE_2M, true, 1);
    rmp_sync_get_stats(f->e, &st);
    g_assert_cmpuint(st.errors, ==, 0);
    g_assert_cmpuint(st.regions_2m, ==, policy == RMP_SYNC_MAP_ALL ? 2 : 1);
    fixture_free(f);
}

static void test_sequence(void)
{
    run_sequence(RMP_SYNC_MAP_SHARED, false);
    run_sequence(RMP_SYNC_MAP_ALL, false);
    run_sequence(RMP_SYNC_MAP_SHARED, true);
}

/* Random RMPUPDATE and PSMASH, as a hypervisor and KVM would issue them */
static void run_random(RmpSyncEnginePolicy policy, bool hitless, guint32 seed)
{
    Fixture *f = fixture_new(policy, hitless, seed);

    for (unsigned step = 0; step < 3000; step++) {
        uint64_t r = g_rand_int_range(f->rnd, 0, RAM_SIZE / M2) * M2;
        uint64_t p = r + g_rand_int_range(f->rnd, 0, M2 / K4) * K4;
        SnpRmpPage page;

        snp_rmp_table_lookup(f->t, r, &page);
        switch (g_rand_int_range(f->rnd, 0, 8)) {
        case 0:                         /* reclaim the 2M */
            update(f, r, SNP_RMP_SIZE_2M, false, 0);
            break;
        case 1:                         /* assign the 2M, if it may */
            if (page.size == SNP_RMP_SIZE_2M && !page.attrs.assigned) {
                update(f, r, SNP_RMP_SIZE_2M, true, 1);
            }
            break;
        case 2:
            if (page.size == SNP_RMP_SIZE_2M) {
                psmash(f, r);
            }
            break;
        default:                        /* a 4K page changes owner */
            if (page.size == SNP_RMP_SIZE_4K) {
                snp_rmp_table_lookup(f->t, p, &page);
                update(f, p, SNP_RMP_SIZE_4K, !page.attrs.assigned, 1);
            }
            break;
        }
    }
    fixture_free(f);
}

static void test_random(void)
{
    for (guint32 seed = 1; seed <= 3; seed++) {
        run_random(RMP_SYNC_MAP_SHARED, false, seed);
        run_random(RMP_SYNC_MAP_ALL, false, seed);
        run_random(RMP_SYNC_MAP_SHARED, true, seed);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rmp-sync-rmp/sequence", test_sequence);
    g_test_add_func("/rmp-sync-rmp/random", test_random);
    return g_test_run();
}
