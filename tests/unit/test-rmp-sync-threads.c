/*
 * Concurrency stress test of the RMP-granularity sync engine
 *
 * Several threads convert random ranges of guest memory at once, as vCPU
 * threads do on an SNP host (KVM_HC_MAP_GPA_RANGE, KVM_EXIT_MEMORY_FAULT),
 * making the calls that hw/vfio/rmp-sync.c makes for them, in their order:
 * the shadow RMP's lock (the snp-rmp object's), rmp_sync_begin(), the
 * page states as the RAM-discard notifications give them (in two halves),
 * the shadow RMP change (snp_rmp_table_shadow_convert()), the RMP change
 * event, rmp_sync_commit().  Another thread reads the statistics and the
 * areas, as QMP does, and one more adds and removes memory, as the memory
 * listener does, without the RMP's lock: only the engine's own lock keeps
 * it apart from the others.  Afterwards the fake IOAS must hold exactly the
 * areas the engine believes it holds, every one safe against the final
 * RMP, and exactly the shared pages the RMP allows.  Run it under
 * ThreadSanitizer too: the fake IOAS has no lock of its own, so a call
 * made outside the engine's lock is a race.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "hw/i386/snp-rmp-table.h"
#include "hw/vfio/rmp-sync-engine.h"

#define MiB (1ULL << 20)
#define K4 SNP_RMP_BYTES_4K
#define M2 SNP_RMP_BYTES_2M
#define RAM_SIZE (32 * MiB)
/* memory that comes and goes (hotplug), in the main loop's thread */
#define HOTPLUG_START RAM_SIZE
#define HOTPLUG_SIZE (4 * MiB)
#define N_PAGES ((RAM_SIZE + HOTPLUG_SIZE) / K4)
#define N_REGIONS (RAM_SIZE / M2)
#define PAGES_PER_REGION (M2 / K4)

#define N_CONVERTERS 4
#define GUEST_ASID 5

/* How long the threads run; RMP_SYNC_STRESS_MS overrides it */
#define DEFAULT_MS 1500

typedef struct Stress {
    SnpRmpTable *t;
    RmpSyncEngine *e;
    QemuRecMutex rmp_lock;          /* the snp-rmp object's lock */
    /* the fake IOAS: touched only by the engine's callbacks */
    bool mapped[N_PAGES];
    bool area_start[N_PAGES];
    uint64_t ioctls;
    /* the guest's page states, changed under rmp_lock */
    bool shared[N_PAGES];
    gint64 deadline;
    gint conversions;
    gint reads;
    gint seeds;
} Stress;

static int fake_issue(void *opaque, const RmpSyncOp *op)
{
    Stress *s = opaque;
    uint64_t first = op->iova / K4, n = op->size / K4;

    s->ioctls++;
    g_assert_cmpuint(first + n, <=, N_PAGES);
    if (op->type == RMP_SYNC_OP_MAP) {
        for (uint64_t p = first; p < first + n; p++) {
            g_assert_false(s->mapped[p]);           /* -EEXIST */
            s->mapped[p] = true;
            s->area_start[p] = p == first;
        }
        return 0;
    }
    /* an unmap never cuts an area: it starts and ends at area bounds */
    g_assert_true(!s->mapped[first] || s->area_start[first]);
    g_assert_true(first + n == N_PAGES || !s->mapped[first + n] ||
                  s->area_start[first + n]);
    for (uint64_t p = first; p < first + n; p++) {
        s->mapped[p] = false;
        s->area_start[p] = false;
    }
    return 0;
}

static bool table_is_2m(void *opaque, uint64_t iova)
{
    Stress *s = opaque;

    return snp_rmp_table_is_2m(s->t, iova);
}

/* One conversion, made as the glue makes it */
static void convert(Stress *s, GRand *rnd)
{
    bool to_private = g_rand_boolean(rnd);
    bool hint_2m = g_rand_int_range(rnd, 0, 3) == 0;
    uint64_t start, pages;

    if (hint_2m) {
        start = g_rand_int_range(rnd, 0, N_REGIONS) * PAGES_PER_REGION;
        pages = PAGES_PER_REGION * g_rand_int_range(rnd, 1, 3);
    } else {
        start = g_rand_int_range(rnd, 0, N_PAGES);
        pages = g_rand_int_range(rnd, 1, 40);
    }
    pages = MIN(pages, N_PAGES - start);

    qemu_rec_mutex_lock(&s->rmp_lock);          /* CONVERSION_BEGIN */
    rmp_sync_begin(s->e);
    /* kvm_convert_memory(): the RAM-discard notifications, in halves */
    for (uint64_t p = start; p < start + pages; p++) {
        s->shared[p] = !to_private;
    }
    g_assert_cmpint(rmp_sync_set_shared(s->e, start * K4, pages / 2 * K4,
                                        !to_private), ==, 0);
    g_assert_cmpint(rmp_sync_set_shared(s->e, (start + pages / 2) * K4,
                                        (pages - pages / 2) * K4,
                                        !to_private), ==, 0);
    /* then the shadow RMP follows (CONVERSION_END) */
    g_assert_cmpint(snp_rmp_table_shadow_convert(s->t, start * K4,
                                                 pages * K4, to_private,
                                                 GUEST_ASID, hint_2m),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(rmp_sync_rmp_changed(s->e, start * K4, pages * K4),
                    ==, 0);
    g_assert_cmpint(rmp_sync_commit(s->e), ==, 0);
    qemu_rec_mutex_unlock(&s->rmp_lock);
    g_atomic_int_inc(&s->conversions);
}

static void *converter(void *opaque)
{
    Stress *s = opaque;
    GRand *rnd = g_rand_new_with_seed(g_atomic_int_add(&s->seeds, 1));

    while (g_get_monotonic_time() < s->deadline) {
        convert(s, rnd);
    }
    g_rand_free(rnd);
    return NULL;
}

static void count_area(uint64_t iova, uint64_t size, void *opaque)
{
    (*(uint64_t *)opaque) += size;
}

/* The memory listener: region_add and region_del, with the BQL only */
static void *hotplug(void *opaque)
{
    Stress *s = opaque;

    while (g_get_monotonic_time() < s->deadline) {
        rmp_sync_begin(s->e);
        g_assert_cmpint(rmp_sync_add_range_backed(s->e, HOTPLUG_START,
                                                  HOTPLUG_SIZE, true, K4,
                                                  false), ==, 0);
        g_assert_cmpint(rmp_sync_commit(s->e), ==, 0);
        g_assert_cmpint(rmp_sync_del_range(s->e, HOTPLUG_START,
                                           HOTPLUG_SIZE), ==, 0);
    }
    return NULL;
}

/* QMP: query-rmp-sync and a dump of the areas */
static void *reader(void *opaque)
{
    Stress *s = opaque;

    while (g_get_monotonic_time() < s->deadline) {
        RmpSyncStats st;
        uint64_t bytes = 0;

        rmp_sync_get_stats(s->e, &st);
        g_assert_cmpuint(st.errors, ==, 0);
        rmp_sync_foreach_area(s->e, count_area, &bytes);
        g_assert_cmpuint(bytes % K4, ==, 0);
        g_atomic_int_inc(&s->reads);
    }
    return NULL;
}

static void check_area(uint64_t iova, uint64_t size, void *opaque)
{
    Stress *s = opaque;
    uint64_t first = iova / K4;

    g_assert_true(s->area_start[first]);
    for (uint64_t p = first; p < first + size / K4; p++) {
        g_assert_true(s->mapped[p]);
        g_assert_true(p == first || !s->area_start[p]);
    }
}

static void check_final(Stress *s)
{
    RmpSyncStats st;
    uint64_t mapped = 0;

    /* the hotplugged memory is gone: nothing of it stays mapped */
    for (uint64_t p = HOTPLUG_START / K4; p < N_PAGES; p++) {
        g_assert_false(s->mapped[p]);
    }
    for (uint64_t r = 0; r < N_REGIONS; r++) {
        uint64_t base = r * PAGES_PER_REGION;
        bool rmp_2m = table_is_2m(s, base * K4);
        bool all_shared = true;

        for (uint64_t i = 0; i < PAGES_PER_REGION; i++) {
            all_shared &= s->shared[base + i];
        }
        for (uint64_t i = 0; i < PAGES_PER_REGION; i++) {
            uint64_t p = base + i;
            /* policy shared: shared pages, and under a 2M entry all */
            bool want = rmp_2m ? all_shared : s->shared[p];

            g_assert_cmpint(s->mapped[p], ==, want);
            mapped += s->mapped[p];
        }
        /*
         * Safety: one area over the whole region where the RMP is 2M,
         * and no area covers the whole region where it is 4K
         */
        if (rmp_2m && all_shared) {
            g_assert_true(s->area_start[base]);
            for (uint64_t i = 1; i < PAGES_PER_REGION; i++) {
                g_assert_false(s->area_start[base + i]);
            }
        } else if (!rmp_2m && all_shared) {
            bool cut = false;

            /* areas never cross a region: a cut inside is needed */
            for (uint64_t i = 1; i < PAGES_PER_REGION; i++) {
                cut |= s->area_start[base + i];
            }
            g_assert_true(cut);
        }
    }
    rmp_sync_foreach_area(s->e, check_area, s);
    rmp_sync_get_stats(s->e, &st);
    g_assert_cmpuint(st.mapped_pages, ==, mapped);
    g_assert_cmpuint(st.ioctls, ==, s->ioctls);
    g_assert_cmpuint(st.errors, ==, 0);
}

static void test_concurrent_conversions(void)
{
    Stress *s = g_new0(Stress, 1);
    const SnpRmpRange ram = { 0, RAM_SIZE };
    const char *ms = g_getenv("RMP_SYNC_STRESS_MS");
    GThread *threads[N_CONVERTERS + 2];

    s->t = snp_rmp_table_new(&ram, 1);
    qemu_rec_mutex_init(&s->rmp_lock);
    s->e = rmp_sync_engine_new(RMP_SYNC_MAP_SHARED, fake_issue, table_is_2m,
                               s);
    /* an SNP guest starts private; its pages are assigned to it at 4K */
    g_assert_cmpint(snp_rmp_table_shadow_convert(s->t, 0, RAM_SIZE, true,
                                                 GUEST_ASID, false),
                    ==, SNP_RMP_OK);
    g_assert_cmpint(rmp_sync_add_range(s->e, 0, RAM_SIZE, false), ==, 0);

    s->deadline = g_get_monotonic_time() +
                  (ms ? g_ascii_strtoull(ms, NULL, 10) : DEFAULT_MS) * 1000;
    for (int i = 0; i < N_CONVERTERS; i++) {
        threads[i] = g_thread_new("converter", converter, s);
    }
    threads[N_CONVERTERS] = g_thread_new("reader", reader, s);
    threads[N_CONVERTERS + 1] = g_thread_new("hotplug", hotplug, s);
    for (int i = 0; i <= N_CONVERTERS + 1; i++) {
        g_thread_join(threads[i]);
    }
    g_test_message("%d conversions, %d reads, %" PRIu64 " ioctls",
                   s->conversions, s->reads, s->ioctls);
    g_assert_cmpint(s->conversions, >, 100);
    check_final(s);

    rmp_sync_engine_free(s->e);
    snp_rmp_table_free(s->t);
    qemu_rec_mutex_destroy(&s->rmp_lock);
    g_free(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rmp-sync/threads/concurrent-conversions",
                    test_concurrent_conversions);
    return g_test_run();
}
