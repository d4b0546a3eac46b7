/*
 * Concurrency stress test of the SEV-SNP RMP model
 *
 * Readers (as an IOThread's DMA does, outside the BQL) look the RMP up,
 * read whole regions and run the IOMMU's check while writers (QMP, vCPUs)
 * RMPUPDATE, PSMASH, convert and reset it.  Every read must see a
 * consistent RMP: a 2M entry's 512 pages agree, each entry holds the
 * attributes that one write gave it.  Meant to be run under
 * ThreadSanitizer too (see the lock rule in snp-rmp-table.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-table.h"
#include "hw/i386/snp-rmp-check.h"

#define MiB (1ULL << 20)
#define K4 SNP_RMP_BYTES_4K
#define M2 SNP_RMP_BYTES_2M

/* A small RAM with a hole, so that writers meet often */
static const SnpRmpRange ram[] = {
    { 0, 8 * MiB },
    { 12 * MiB, 4 * MiB },
};
#define RAM_TOP (16 * MiB)

#define N_READERS 3
#define N_WRITERS 2

/* How long the threads run; SNP_RMP_STRESS_MS overrides it */
#define DEFAULT_MS 1500

static bool is_ram(uint64_t spa)
{
    return spa < 8 * MiB || (spa >= 12 * MiB && spa < RAM_TOP);
}

/*
 * Writers give every entry attributes that can be checked on their own:
 * the ASID is a function of the GPA (of its 2M for a 2M write, of its 4K
 * page for a 4K write), and validated is the ASID's low bit.
 */
static uint32_t asid_2m(uint64_t gpa)
{
    return (gpa >> SNP_RMP_SHIFT_2M) % 61 + 1;
}

static uint32_t asid_4k(uint64_t gpa)
{
    return (gpa >> SNP_RMP_SHIFT_4K) % 59 + 100;
}

typedef struct Stress {
    SnpRmpTable *t;
    gint64 deadline;
    gint stop;
    gint writes;            /* successful writes */
    gint reads;
} Stress;

/* One page as a single write left it */
static void check_page(uint64_t spa, const SnpRmpPage *p)
{
    const SnpRmpAttrs *a = &p->attrs;

    if (!a->assigned && !a->asid && !a->validated) {
        /*
         * Hypervisor-owned.  A 4K GPA-0 entry is fresh; a 2M one (or one
         * PSMASH made of it) counts its GPA up from 0 within its 2M.
         */
        g_assert_true(a->gpa == 0 || a->gpa < M2);
        g_assert_true(a->gpa == 0 || (a->gpa & (M2 - 1)) ==
                      (spa & (M2 - 1)));
        return;
    }
    g_assert_true(a->assigned);
    g_assert_false(a->immutable);
    g_assert_cmpint(a->validated, ==, a->asid & 1);
    if (p->size == SNP_RMP_SIZE_2M) {
        g_assert_cmpuint(a->asid, ==, asid_2m(a->gpa & ~(M2 - 1)));
        g_assert_cmphex(a->gpa & (M2 - 1), ==, spa & (M2 - 1));
    } else {
        /* a 4K write, or a PSMASHed 2M write */
        g_assert_true(a->asid == asid_4k(a->gpa) ||
                      (a->asid == asid_2m(a->gpa & ~(M2 - 1)) &&
                       (a->gpa & (M2 - 1)) == (spa & (M2 - 1))));
    }
}

typedef struct Region {
    uint64_t base;
    unsigned n;
    SnpRmpPage first;
    uint64_t first_spa;
} Region;

/* The pages of a region read at once: one 2M entry agrees with itself */
static void check_region_page(uint64_t spa, const SnpRmpPage *p,
                              void *opaque)
{
    Region *r = opaque;

    g_assert_cmphex(spa, ==, r->base + r->n * K4);
    check_page(spa, p);
    if (!r->n) {
        r->first = *p;
        r->first_spa = spa;
    } else {
        g_assert_cmpint(p->size, ==, r->first.size);
    }
    if (p->size == SNP_RMP_SIZE_2M) {
        g_assert_cmpint(p->attrs.assigned, ==, r->first.attrs.assigned);
        g_assert_cmpint(p->attrs.validated, ==, r->first.attrs.validated);
        g_assert_cmpint(p->attrs.immutable, ==, r->first.attrs.immutable);
        g_assert_cmpuint(p->attrs.asid, ==, r->first.attrs.asid);
        g_assert_cmphex(p->attrs.gpa, ==, r->first.attrs.gpa + r->n * K4);
    }
    r->n++;
}

static void count_visit(uint64_t spa, const SnpRmpPage *p, void *opaque)
{
    (*(uint64_t *)opaque)++;
}

static gpointer reader(gpointer opaque)
{
    Stress *s = opaque;
    GRand *rnd = g_rand_new();
    unsigned n = 0;

    while (!g_atomic_int_get(&s->stop)) {
        uint64_t spa = g_rand_int_range(rnd, 0, RAM_TOP / K4 + 8) * K4;
        unsigned op = g_rand_int_range(rnd, 0, 16);
        SnpRmpSize rmp_size;
        SnpRmpPage p;

        if (op < 10) {
            bool found = snp_rmp_table_lookup(s->t, spa, &p);

            g_assert_cmpint(found, ==, is_ram(spa));
            if (found) {
                check_page(spa, &p);
            }
        } else if (op < 14) {
            Region r = { .base = spa & ~(M2 - 1) };
            SnpRmpStatus st;

            st = snp_rmp_table_query(s->t, r.base, SNP_RMP_PAGES_PER_2M,
                                     check_region_page, &r);
            g_assert_cmpint(st, ==, is_ram(r.base) ? SNP_RMP_OK :
                            r.base < RAM_TOP ? SNP_RMP_ERR_NOT_RAM :
                            SNP_RMP_ERR_BEYOND_RAM);
            g_assert_cmpuint(r.n, ==, is_ram(r.base) ? 512 : 0);
        } else if (op < 15) {
            /* the IOMMU's check: one lookup, sizes and owner */
            snp_rmp_check_dma(s->t, spa, spa, g_rand_boolean(rnd) ?
                              SNP_RMP_SIZE_2M : SNP_RMP_SIZE_4K,
                              SNP_RMP_ASID_NONE, &rmp_size);
        } else {
            uint64_t n4k, n2m, changed = 0;

            snp_rmp_table_count(s->t, &n4k, &n2m);
            g_assert_cmpuint(n4k + n2m, ==, 6);
            snp_rmp_table_foreach_changed(s->t, count_visit, &changed);
            g_assert_cmpuint(snp_rmp_table_memory(s->t), >, 0);
        }
        if (++n % 64 == 0 && g_get_monotonic_time() > s->deadline) {
            break;
        }
    }
    g_atomic_int_add(&s->reads, n);
    g_rand_free(rnd);
    return NULL;
}

static gpointer writer(gpointer opaque)
{
    Stress *s = opaque;
    GRand *rnd = g_rand_new();
    unsigned n = 0;

    while (!g_atomic_int_get(&s->stop)) {
        uint64_t spa = g_rand_int_range(rnd, 0, RAM_TOP / K4 + 8) * K4;
        uint64_t base = spa & ~(M2 - 1);
        unsigned op = g_rand_int_range(rnd, 0, 100);
        SnpRmpAttrs a = { 0 };
        SnpRmpStatus st;

        if (op < 30) {
            if (g_rand_boolean(rnd)) {
                a.gpa = g_rand_int_range(rnd, 0, 64) * M2;
                a.asid = asid_2m(a.gpa);
                a.assigned = true;
                a.validated = a.asid & 1;
            }
            st = snp_rmp_table_update(s->t, base, SNP_RMP_SIZE_2M, &a);
        } else if (op < 70) {
            if (g_rand_boolean(rnd)) {
                a.gpa = g_rand_int_range(rnd, 0, 4096) * K4;
                a.asid = asid_4k(a.gpa);
                a.assigned = true;
                a.validated = a.asid & 1;
            }
            st = snp_rmp_table_update(s->t, spa, SNP_RMP_SIZE_4K, &a);
        } else if (op < 95) {
            st = snp_rmp_table_psmash(s->t, base);
        } else if (op < 99) {
            /* shared again, with the 2M hint: whole regions become 2M */
            st = snp_rmp_table_shadow_convert(s->t, base, 2 * M2, false, 0,
                                              true);
        } else {
            snp_rmp_table_reset(s->t);
            st = SNP_RMP_OK;
        }
        if (st == SNP_RMP_OK) {
            g_atomic_int_inc(&s->writes);
        }
        if (++n % 64 == 0 && g_get_monotonic_time() > s->deadline) {
            break;
        }
    }
    g_rand_free(rnd);
    return NULL;
}

static void test_readers_and_writers(void)
{
    const char *env = g_getenv("SNP_RMP_STRESS_MS");
    gint64 ms = env ? g_ascii_strtoll(env, NULL, 10) : DEFAULT_MS;
    Stress s = {
        .t = snp_rmp_table_new(ram, G_N_ELEMENTS(ram)),
        .deadline = g_get_monotonic_time() + ms * 1000,
    };
    GThread *th[N_READERS + N_WRITERS];

    for (unsigned i = 0; i < N_READERS + N_WRITERS; i++) {
        th[i] = g_thread_new(i < N_READERS ? "reader" : "writer",
                             i < N_READERS ? reader : writer, &s);
    }
    for (unsigned i = 0; i < N_READERS + N_WRITERS; i++) {
        g_thread_join(th[i]);
    }
    g_test_message("%d reads, %d successful writes in %" PRId64 " ms",
                   g_atomic_int_get(&s.reads), g_atomic_int_get(&s.writes),
                   ms);
    g_assert_cmpint(g_atomic_int_get(&s.writes), >, 0);
    g_assert_cmpint(g_atomic_int_get(&s.reads), >, 0);
    snp_rmp_table_free(s.t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/snp-rmp-table/threads/readers-and-writers",
                    test_readers_and_writers);
    return g_test_run();
}
