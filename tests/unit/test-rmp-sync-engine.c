/*
 * Unit tests of the RMP-granularity stage-2 sync engine
 *
 * The engine talks to a fake IOAS that behaves as iommufd's does (a map
 * creates one area and fails over an existing one; an unmap removes the
 * areas inside its range and fails if it would cut one or finds none; a
 * failing map changes nothing, a failing unmap may have removed some of
 * its areas, as iopt_unmap_iova_range() does).
 * After every event the invariants are checked against the fake IOAS and
 * an independent model of the page states and the RMP, and the number of
 * operations per region against a brute-force optimum.
 *
 * With a private backing (TEE-IO over guest_memfd) the fake IOAS records
 * which backing each area maps, as IOMMU_IOAS_MAP (the shared backing's
 * address) and IOMMU_IOAS_MAP_FILE (the guest_memfd) would: the device
 * must reach the page the CPU reaches, in the state it is in now.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/vfio/rmp-sync-engine.h"

#define MAX_PAGES 4096

typedef struct FakeArea {
    uint64_t start, end;        /* pages */
    bool shared;                /* the backing: shared or private's own */
} FakeArea;

typedef struct World {
    /* the engine's view of the world is built from these alone */
    RmpSyncEnginePolicy policy;
    unsigned order;             /* pages per region: 1 << order */
    unsigned n_pages;
    bool in_range[MAX_PAGES];
    bool shared[MAX_PAGES];
    bool rmp_2m[MAX_PAGES];     /* per region, indexed by region */
    GArray *areas;              /* FakeArea, the fake IOAS */
    GArray *ops;                /* RmpSyncOp of the current event */
    unsigned fail_one_in;       /* inject an error every ~N ops, 0: never */
    /* unmaps: remove the first half of the areas, then fail (-EBUSY) */
    unsigned fail_partway_one_in;
    bool purges_fail;           /* purges fail as the other ops do */
    bool purges_refused;        /* every purge fails (-EIO) */
    bool fail_maps_only;        /* fail_one_in applies to maps only */
    /*
     * Pages that were unsafe after some operation: covered by an area
     * that spans a whole region whose RMP is 4K (a 2M IO page over 4K RMP
     * entries), or by an area smaller than its region whose RMP is 2M (IO
     * pages that the IOMMU checks at 4K against a 2M entry)
     */
    uint64_t unsafe_instants;
    /* the RMP the hardware checks, when the engine's source lags it */
    bool use_truth;
    bool truth_2m[MAX_PAGES];
    bool hitless;
    /* private pages come from a backing of their own (guest_memfd) */
    bool private_backing;
    /* the kernel refuses to map the private backing (MAP_FILE: EINVAL) */
    bool refuse_private;
    GRand *rnd;
    RmpSyncEngine *e;
} World;

#define PAGE_SHIFT 12
#define PAGE 4096ULL

static int fake_issue_one(void *opaque, const RmpSyncOp *op)
{
    World *w = opaque;
    uint64_t s = op->iova / PAGE, e = (op->iova + op->size) / PAGE;
    uint64_t unmapped = 0;
    bool found = false;

    g_assert_cmpuint(op->iova % PAGE, ==, 0);
    g_assert_cmpuint(op->size % PAGE, ==, 0);
    g_assert_cmpuint(op->size, >, 0);
    if (w->fail_one_in && (op->type != RMP_SYNC_OP_PURGE || w->purges_fail) &&
        (op->type == RMP_SYNC_OP_MAP || !w->fail_maps_only) &&
        !g_rand_int_range(w->rnd, 0, w->fail_one_in)) {
        return -ENOMEM;
    }
    if (op->type == RMP_SYNC_OP_PURGE && w->purges_refused) {
        return -EIO;
    }
    g_array_append_val(w->ops, *op);
    if (op->type == RMP_SYNC_OP_PURGE) {
        /* whatever lies inside; none is fine; never cuts an area */
        for (guint i = 0; i < w->areas->len;) {
            FakeArea *o = &g_array_index(w->areas, FakeArea, i);

            if (o->start < e && s < o->end) {
                g_assert_true(o->start >= s && o->end <= e);
                g_array_remove_index_fast(w->areas, i);
            } else {
                i++;
            }
        }
        return 0;
    }
    if (op->type == RMP_SYNC_OP_UNMAP && w->fail_partway_one_in &&
        !g_rand_int_range(w->rnd, 0, w->fail_partway_one_in)) {
        unsigned inside = 0, removed = 0;

        for (guint i = 0; i < w->areas->len; i++) {
            FakeArea *o = &g_array_index(w->areas, FakeArea, i);

            inside += o->start >= s && o->end <= e;
        }
        for (guint i = 0; i < w->areas->len && removed < inside / 2;) {
            FakeArea *o = &g_array_index(w->areas, FakeArea, i);

            if (o->start >= s && o->end <= e) {
                g_array_remove_index(w->areas, i);
                removed++;
            } else {
                i++;
            }
        }
        return -EBUSY;
    }
    if (op->type == RMP_SYNC_OP_MAP) {
        FakeArea a = { s, e, op->shared };

        if (w->private_backing) {
            /* one backing per map: the one the pages are in now */
            for (uint64_t p = s; p < e; p++) {
                g_assert_cmpint(w->shared[p], ==, op->shared);
            }
            if (w->refuse_private && !op->shared) {
                return -EINVAL;
            }
        }

        for (guint i = 0; i < w->areas->len; i++) {
            FakeArea *o = &g_array_index(w->areas, FakeArea, i);

            g_assert_false(o->start < e && s < o->end);   /* -EEXIST */
        }
        for (uint64_t p = s; p < e; p++) {
            g_assert_true(w->in_range[p]);
        }
        g_array_append_val(w->areas, a);
        return 0;
    }
    for (guint i = 0; i < w->areas->len; i++) {
        FakeArea *o = &g_array_index(w->areas, FakeArea, i);

        if (o->start < e && s < o->end) {
            /* IOMMU_IOAS_UNMAP cannot cut an area */
            g_assert_true(o->start >= s && o->end <= e);
            found = true;
        }
    }
    g_assert_true(found);                                 /* -ENOENT */
    for (guint i = 0; i < w->areas->len;) {
        FakeArea *o = &g_array_index(w->areas, FakeArea, i);

        if (o->start >= s && o->end <= e) {
            unmapped += (o->end - o->start) * PAGE;
            g_array_remove_index_fast(w->areas, i);
        } else {
            i++;
        }
    }
    /* what type1 reports unmapped is what the engine expects */
    g_assert_cmpuint(unmapped, ==, op->mapped);
    return 0;
}

static uint64_t unsafe_pages(World *w);

/* An IOAS call, then what a DMA would meet before the next one */
static int fake_issue(void *opaque, const RmpSyncOp *op)
{
    World *w = opaque;
    int ret = fake_issue_one(opaque, op);

    w->unsafe_instants += unsafe_pages(w);
    return ret;
}

/* The pages of the fake IOAS that are unsafe against the world's RMP */
static uint64_t unsafe_pages(World *w)
{
    unsigned P = 1u << w->order;
    uint64_t n = 0;

    for (guint i = 0; i < w->areas->len; i++) {
        FakeArea *o = &g_array_index(w->areas, FakeArea, i);

        for (uint64_t p = o->start; p < o->end; p++) {
            uint64_t r = p / P;
            bool whole = o->start <= r * P && o->end >= (r + 1) * P;

            bool rmp_2m = w->use_truth ? w->truth_2m[r] : w->rmp_2m[r];

            n += rmp_2m ? !whole : whole;
        }
    }
    return n;
}

static bool fake_rmp_is_2m(void *opaque, uint64_t iova)
{
    World *w = opaque;

    return w->rmp_2m[(iova / PAGE) >> w->order];
}

static World *world_new(RmpSyncEnginePolicy policy, unsigned order,
                        unsigned n_pages, guint32 seed)
{
    World *w = g_new0(World, 1);

    g_assert_cmpuint(n_pages, <=, MAX_PAGES);
    w->policy = policy;
    w->order = order;
    w->n_pages = n_pages;
    w->areas = g_array_new(false, false, sizeof(FakeArea));
    w->ops = g_array_new(false, false, sizeof(RmpSyncOp));
    w->rnd = g_rand_new_with_seed(seed);
    w->e = rmp_sync_engine_new_custom(policy, PAGE_SHIFT, order, fake_issue,
                                      fake_rmp_is_2m, w);
    return w;
}

static void world_free(World *w)
{
    rmp_sync_engine_free(w->e);
    g_array_free(w->areas, true);
    g_array_free(w->ops, true);
    g_rand_free(w->rnd);
    g_free(w);
}

/* Memory enters; its private pages have their own backing if the world's */
static int world_add(World *w, uint64_t iova, uint64_t size, bool shared)
{
    return rmp_sync_add_range_backed(w->e, iova, size, shared,
                                     PAGE << w->order, w->private_backing);
}

static bool wanted(World *w, uint64_t p)
{
    return w->in_range[p] &&
           (w->policy == RMP_SYNC_MAP_ALL || w->shared[p]);
}

static FakeArea *area_at(World *w, uint64_t p)
{
    for (guint i = 0; i < w->areas->len; i++) {
        FakeArea *o = &g_array_index(w->areas, FakeArea, i);

        if (p >= o->start && p < o->end) {
            return o;
        }
    }
    return NULL;
}

/* The layout a region must have, as the rules say, independently */
static void check_region(World *w, uint64_t r)
{
    unsigned P = 1u << w->order;
    uint64_t base = (uint64_t)r << w->order;
    unsigned n_want = 0, n_valid = 0, n_mapped = 0, n_shared = 0;

    for (unsigned i = 0; i < P && base + i < w->n_pages; i++) {
        n_want += wanted(w, base + i);
        n_valid += w->in_range[base + i];
        n_mapped += area_at(w, base + i) != NULL;
        n_shared += w->in_range[base + i] && w->shared[base + i];
    }
    for (unsigned i = 0; i < P && base + i < w->n_pages; i++) {
        FakeArea *a = area_at(w, base + i);

        if (!a) {
            continue;
        }
        /* the device reaches the backing the page is in now */
        if (w->private_backing) {
            g_assert_cmpint(a->shared, ==, w->shared[base + i]);
        }
        /* areas never leave their region */
        g_assert_cmpuint(a->start, >=, base);
        g_assert_cmpuint(a->end, <=, base + P);
        if (w->rmp_2m[r]) {
            /* safety: a 2M-RMP region is one 2M area */
            g_assert_cmpuint(a->start, ==, base);
            g_assert_cmpuint(a->end, ==, base + P);
        } else {
            /* safety: no area over a whole 4K-RMP region */
            g_assert_false(a->start == base && a->end == base + P);
        }
    }
    /*
     * policy, or a conflict (2M RMP over mixed pages) left unmapped; with
     * a private backing, one 2M area cannot map both backings
     */
    if (w->rmp_2m[r] &&
        (n_want != P ||
         (w->private_backing && n_shared != 0 && n_shared != P))) {
        g_assert_cmpuint(n_mapped, ==, 0);
        return;
    }
    for (unsigned i = 0; i < P && base + i < w->n_pages; i++) {
        g_assert_cmpint(area_at(w, base + i) != NULL, ==,
                        wanted(w, base + i));
    }
}

/* Can region @r be one area over both states, or over one? */
static bool region_one_backing(World *w, uint64_t r)
{
    unsigned P = 1u << w->order;

    for (unsigned i = 1; w->private_backing && i < P; i++) {
        if (w->shared[r * P + i] != w->shared[r * P]) {
            return false;
        }
    }
    return true;
}

/* The pages policy and safety want mapped */
static uint64_t expected_mapped(World *w)
{
    unsigned P = 1u << w->order;
    uint64_t mapped = 0;

    for (uint64_t r = 0; r * P < w->n_pages; r++) {
        unsigned n_want = 0;

        for (unsigned i = 0; i < P && r * P + i < w->n_pages; i++) {
            n_want += wanted(w, r * P + i);
        }
        if (w->rmp_2m[r]) {
            mapped += n_want == P && region_one_backing(w, r) ? P : 0;
        } else {
            mapped += n_want;
        }
    }
    return mapped;
}

static void check_all(World *w)
{
    RmpSyncStats st;
    uint64_t iotlb_min = 0;
    unsigned P = 1u << w->order;

    for (uint64_t r = 0; r * P < w->n_pages; r++) {
        unsigned n_want = 0;

        check_region(w, r);
        for (unsigned i = 0; i < P && r * P + i < w->n_pages; i++) {
            n_want += wanted(w, r * P + i);
        }
        if (w->rmp_2m[r]) {
            iotlb_min += n_want == P && region_one_backing(w, r);
        } else {
            iotlb_min += n_want;
        }
    }
    rmp_sync_get_stats(w->e, &st);
    /* economy: the fewest IOTLB entries safety and policy allow */
    g_assert_cmpuint(st.iotlb_entries, ==, iotlb_min);
    g_assert_cmpuint(st.mapped_pages, ==, expected_mapped(w));
    g_assert_cmpuint(st.areas, ==, w->areas->len);
}

/*
 * Brute force: the fewest operations that take the old areas of a region
 * to any valid layout.  A layout keeps some old areas; each run of removed
 * old areas (in IOVA order) costs one unmap, each new area one map.
 */
typedef struct Iv {
    unsigned s, e;
    bool shared;                /* its backing */
} Iv;

static unsigned bf_best;

/*
 * @state: each page's state where an area must map one backing (a
 * private backing), NULL otherwise
 */
static void bf_layouts(const bool *want, const bool *state, unsigned P,
                       bool forbid_full, unsigned p, Iv *cur, unsigned n,
                       const Iv *old, unsigned k)
{
    if (p >= P) {
        bool kept[64] = { false };
        unsigned cost = 0, maps = 0;

        for (unsigned i = 0; i < n; i++) {
            bool found = false;

            for (unsigned j = 0; j < k; j++) {
                if (old[j].s == cur[i].s && old[j].e == cur[i].e &&
                    (!state || old[j].shared == state[cur[i].s])) {
                    kept[j] = found = true;
                }
            }
            maps += !found;
        }
        for (unsigned j = 0; j < k; j++) {
            cost += !kept[j] && (j == 0 || kept[j - 1]);
        }
        cost += maps;
        bf_best = MIN(bf_best, cost);
        return;
    }
    if (!want[p]) {
        bf_layouts(want, state, P, forbid_full, p + 1, cur, n, old, k);
        return;
    }
    /* an area from p to each possible end inside the run (of one state) */
    for (unsigned end = p + 1;
         end <= P && want[end - 1] && (!state || state[end - 1] == state[p]);
         end++) {
        if (forbid_full && p == 0 && end == P) {
            continue;
        }
        cur[n] = (Iv) { p, end };
        bf_layouts(want, state, P, forbid_full, end, cur, n + 1, old, k);
    }
}

static unsigned brute_force_ops(World *w, uint64_t r, const Iv *old,
                                unsigned k)
{
    unsigned P = 1u << w->order;
    bool want[64], state[64];
    Iv cur[64];
    unsigned n_want = 0;

    for (unsigned i = 0; i < P; i++) {
        uint64_t p = ((uint64_t)r << w->order) + i;

        want[i] = p < w->n_pages && wanted(w, p);
        state[i] = p < w->n_pages && w->shared[p];
        n_want += want[i];
    }
    if (w->rmp_2m[r]) {
        bool have_full = k == 1 && old[0].s == 0 && old[0].e == P &&
                         (!w->private_backing || old[0].shared == state[0]);

        if (n_want == P && region_one_backing(w, r)) {
            return have_full ? 0 : (k ? 1 : 0) + 1;
        }
        return k ? 1 : 0;
    }
    bf_best = UINT_MAX;
    bf_layouts(want, w->private_backing ? state : NULL, P, true, 0, cur, 0,
               old, k);
    return bf_best;
}

/*
 * Hitless: every area of a 4K-RMP region is one page, so the fewest
 * operations are one unmap per run of old areas that go (not all wanted,
 * or a whole region) and one map per wanted page no kept area covers.
 */
static unsigned hitless_ops(World *w, uint64_t r, const Iv *old, unsigned k)
{
    unsigned P = 1u << w->order;
    bool covered[64] = { false };
    unsigned ops = 0;
    bool prev_removed = false;

    if (w->rmp_2m[r]) {
        return brute_force_ops(w, r, old, k);
    }
    for (unsigned j = 0; j < k; j++) {
        bool keep = !(old[j].s == 0 && old[j].e == P);

        for (unsigned p = old[j].s; p < old[j].e; p++) {
            uint64_t g = ((uint64_t)r << w->order) + p;

            keep &= wanted(w, g) &&
                    (!w->private_backing || w->shared[g] == old[j].shared);
        }
        ops += !keep && !prev_removed;
        prev_removed = !keep;
        for (unsigned p = old[j].s; keep && p < old[j].e; p++) {
            covered[p] = true;
        }
    }
    for (unsigned p = 0; p < P; p++) {
        uint64_t g = ((uint64_t)r << w->order) + p;

        ops += g < w->n_pages && wanted(w, g) && !covered[p];
    }
    return ops;
}

/* Old areas of each region before an event, for the optimality check */
typedef struct Snapshot {
    Iv old[64][64];
    unsigned k[64];
} Snapshot;

static void snapshot(World *w, Snapshot *s)
{
    unsigned P = 1u << w->order;

    memset(s->k, 0, sizeof(s->k));
    for (guint i = 0; i < w->areas->len; i++) {
        FakeArea *a = &g_array_index(w->areas, FakeArea, i);
        uint64_t r = a->start / P;

        s->old[r][s->k[r]++] = (Iv) { a->start % P, a->start % P +
                                      (a->end - a->start), a->shared };
    }
    for (unsigned r = 0; r < 64; r++) {
        /* sort by start */
        for (unsigned i = 1; i < s->k[r]; i++) {
            for (unsigned j = i; j > 0 &&
                 s->old[r][j].s < s->old[r][j - 1].s; j--) {
                Iv t = s->old[r][j];

                s->old[r][j] = s->old[r][j - 1];
                s->old[r][j - 1] = t;
            }
        }
    }
}

static void check_optimal(World *w, Snapshot *before)
{
    unsigned P = 1u << w->order;
    unsigned per_region[64] = { 0 };

    for (guint i = 0; i < w->ops->len; i++) {
        RmpSyncOp *op = &g_array_index(w->ops, RmpSyncOp, i);
        uint64_t r = op->iova / PAGE / P;

        /* no operation crosses a region */
        g_assert_cmpuint((op->iova + op->size - 1) / PAGE / P, ==, r);
        per_region[r]++;
    }
    for (unsigned r = 0; r * P < w->n_pages && r < 64; r++) {
        g_assert_cmpuint(per_region[r], ==,
                         w->hitless ?
                         hitless_ops(w, r, before->old[r], before->k[r]) :
                         brute_force_ops(w, r, before->old[r],
                                         before->k[r]));
    }
}

/* A fixed layout: two ranges, the second one not region-aligned */
static void world_add_ranges(World *w, bool shared)
{
    unsigned P = 1u << w->order;
    uint64_t a_end = 10 * P, b_start = 12 * P + 2, b_end = 20 * P - 1;

    for (uint64_t p = 0; p < a_end; p++) {
        w->in_range[p] = true;
        w->shared[p] = shared;
    }
    for (uint64_t p = b_start; p < b_end; p++) {
        w->in_range[p] = true;
        w->shared[p] = shared;
    }
    w->n_pages = 20 * P;
    g_assert_cmpint(world_add(w, 0, a_end * PAGE, shared), ==, 0);
    g_assert_cmpint(world_add(w, b_start * PAGE,
                                       (b_end - b_start) * PAGE, shared),
                    ==, 0);
}

static void random_event(World *w)
{
    unsigned P = 1u << w->order;
    unsigned kind = g_rand_int_range(w->rnd, 0, 10);
    uint64_t r = g_rand_int_range(w->rnd, 0, w->n_pages / P);

    if (kind < 6) {
        /* a conversion: mostly small, sometimes spanning regions */
        uint64_t start = g_rand_int_range(w->rnd, 0, w->n_pages + P);
        uint64_t len = kind < 4 ? g_rand_int_range(w->rnd, 1, 3)
                                : g_rand_int_range(w->rnd, 1, 3 * P);
        bool shared = g_rand_boolean(w->rnd);

        for (uint64_t p = start; p < start + len && p < w->n_pages; p++) {
            w->shared[p] = shared;
        }
        g_assert_cmpint(rmp_sync_set_shared(w->e, start * PAGE, len * PAGE,
                                            shared), ==, 0);
    } else if (kind < 8) {
        /* KVM smashes a region */
        w->rmp_2m[r] = false;
        g_assert_cmpint(rmp_sync_rmp_changed(w->e, r * P * PAGE, P * PAGE),
                        ==, 0);
    } else {
        /* KVM re-forms a 2M entry, usually over a uniform region */
        bool uniform = true;

        for (unsigned i = 1; i < P; i++) {
            uniform &= w->shared[r * P + i] == w->shared[r * P];
        }
        if (uniform || !g_rand_int_range(w->rnd, 0, 4)) {
            w->rmp_2m[r] = true;
        }
        g_assert_cmpint(rmp_sync_rmp_changed(w->e, r * P * PAGE, P * PAGE),
                        ==, 0);
    }
}

static void run_random_mode(RmpSyncEnginePolicy policy, unsigned order,
                            guint32 seed, unsigned steps, bool hitless,
                            bool private_backing)
{
    World *w = world_new(policy, order, 0, seed);
    Snapshot *before = g_new0(Snapshot, 1);
    unsigned P = 1u << order;

    w->hitless = hitless;
    rmp_sync_engine_set_hitless(w->e, hitless);
    w->private_backing = private_backing;
    world_add_ranges(w, false);
    check_all(w);
    for (unsigned step = 0; step < steps; step++) {
        bool rmp_2m[64];
        bool shared[MAX_PAGES];
        unsigned converted = 0;
        RmpSyncStats st0, st1;

        memcpy(rmp_2m, w->rmp_2m, sizeof(rmp_2m));
        memcpy(shared, w->shared, sizeof(shared));
        rmp_sync_get_stats(w->e, &st0);
        snapshot(w, before);
        g_array_set_size(w->ops, 0);
        random_event(w);
        check_all(w);
        check_optimal(w, before);
        /* safety holds after every operation, not only after the event */
        g_assert_cmpuint(w->unsafe_instants, ==, 0);
        if (!hitless) {
            continue;
        }
        /*
         * No page stays unmapped for a moment unless its RMP size changed
         * or, with a private backing, its backing did (it converted)
         */
        rmp_sync_get_stats(w->e, &st1);
        for (unsigned p = 0; p < w->n_pages; p++) {
            converted += w->in_range[p] && shared[p] != w->shared[p];
        }
        if (!memcmp(rmp_2m, w->rmp_2m, sizeof(rmp_2m))) {
            g_assert_cmpuint(st1.window_pages - st0.window_pages, <=,
                             private_backing ? converted : 0);
        }
        for (guint i = 0; i < w->areas->len; i++) {
            FakeArea *a = &g_array_index(w->areas, FakeArea, i);

            if (!w->rmp_2m[a->start / P]) {
                g_assert_cmpuint(a->end - a->start, ==, 1);
            }
        }
    }
    g_free(before);
    world_free(w);
}

static void run_random(RmpSyncEnginePolicy policy, unsigned order,
                       guint32 seed, unsigned steps)
{
    run_random_mode(policy, order, seed, steps, false, false);
}

static void test_random_hitless(void)
{
    for (guint32 seed = 1; seed <= 4; seed++) {
        run_random_mode(RMP_SYNC_MAP_SHARED, 3, seed, 1500, true, false);
        run_random_mode(RMP_SYNC_MAP_ALL, 3, seed, 1500, true, false);
    }
}

static void test_random_shared(void)
{
    for (guint32 seed = 1; seed <= 8; seed++) {
        run_random(RMP_SYNC_MAP_SHARED, 3, seed, 1500);
    }
    run_random(RMP_SYNC_MAP_SHARED, 4, 99, 1500);
}

static void test_random_all(void)
{
    for (guint32 seed = 1; seed <= 4; seed++) {
        run_random(RMP_SYNC_MAP_ALL, 3, seed, 1500);
    }
}

/*
 * Issue 9 defect 4: policy "all" over guest_memfd, private pages mapped
 * from the guest_memfd (IOMMU_IOAS_MAP_FILE), shared ones from the shared
 * backing's address.  The invariants (the device reaches the backing
 * each page is in now; an area maps one backing) and the optimum, for
 * random events, hitless or not.
 */
static void test_random_private_backing(void)
{
    for (guint32 seed = 1; seed <= 4; seed++) {
        run_random_mode(RMP_SYNC_MAP_ALL, 3, seed, 1500, false, true);
        run_random_mode(RMP_SYNC_MAP_ALL, 3, seed, 1500, true, true);
    }
}

/*
 * A private-to-shared round trip of one page: each conversion discards
 * the backing the page leaves (kvm_convert_memory() punches the
 * guest_memfd, or discards the shared backing).  Without a private
 * backing the engine issues nothing and the device keeps the page it
 * mapped at first: after the round trip the CPU and the device see
 * different pages.
 */
static void test_private_backing_round_trip(void)
{
    World *w = world_new(RMP_SYNC_MAP_ALL, 3, 0, 1);
    unsigned P = 8;
    RmpSyncStats st;

    w->private_backing = true;
    w->n_pages = 2 * P;
    for (unsigned p = 0; p < 2 * P; p++) {
        w->in_range[p] = true;
    }
    w->rmp_2m[1] = true;
    g_assert_cmpint(world_add(w, 0, 2 * P * PAGE, false), ==, 0);
    check_all(w);
    g_assert_false(area_at(w, 3)->shared);

    /* page 3 to shared: its private area goes, a shared one comes */
    for (int round = 0; round < 2; round++) {
        bool to_shared = round == 0;

        g_array_set_size(w->ops, 0);
        w->shared[3] = to_shared;
        g_assert_cmpint(rmp_sync_set_shared(w->e, 3 * PAGE, PAGE, to_shared),
                        ==, 0);
        check_all(w);
        g_assert_cmpint(area_at(w, 3)->shared, ==, to_shared);
        /*
         * To shared: unmap [0, 4) (IOMMU_IOAS_UNMAP cannot cut an area),
         * map [0, 3) private and [3, 4) shared.  Back: unmap [0, 4)'s two
         * areas in one go, map [0, 4) private.
         */
        g_assert_cmpuint(w->ops->len, ==, to_shared ? 3 : 2);
    }

    /*
     * In a transaction (a conversion bracketed by the shadow RMP) the
     * page is unmapped at the notification, before its backing is
     * discarded, and mapped from the new one at the commit
     */
    rmp_sync_begin(w->e);
    g_array_set_size(w->ops, 0);
    w->shared[5] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 5 * PAGE, PAGE, true), ==, 0);
    g_assert_null(area_at(w, 5));
    g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
    check_all(w);
    g_assert_true(area_at(w, 5)->shared);

    /* a whole 2M region converts with its 2M RMP entry: one area again */
    rmp_sync_begin(w->e);
    for (unsigned p = P; p < 2 * P; p++) {
        w->shared[p] = true;
    }
    g_assert_cmpint(rmp_sync_set_shared(w->e, P * PAGE, P * PAGE, true),
                    ==, 0);
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, P * PAGE, P * PAGE), ==, 0);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
    check_all(w);
    g_assert_true(area_at(w, P)->shared);
    g_assert_cmpuint(area_at(w, P)->end - area_at(w, P)->start, ==, P);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.errors, ==, 0);
    world_free(w);
}

/*
 * Where the kernel refuses to map the private backing (IOMMU_IOAS_MAP_FILE
 * of a guest_memfd: EINVAL), the engine says so, and a page that becomes
 * private is never left mapped from the shared backing it leaves
 */
static void test_private_backing_refused(void)
{
    World *w = world_new(RMP_SYNC_MAP_ALL, 3, 0, 1);
    unsigned P = 8;
    RmpSyncStats st;

    w->private_backing = true;
    w->refuse_private = true;
    w->n_pages = 2 * P;
    for (unsigned p = 0; p < 2 * P; p++) {
        w->in_range[p] = true;
        w->shared[p] = true;
    }
    g_assert_cmpint(world_add(w, 0, 2 * P * PAGE, true), ==, 0);
    check_all(w);
    g_assert_cmpuint(w->areas->len, >, 0);

    /* pages 2-4 and 12 become private: they cannot be mapped */
    rmp_sync_begin(w->e);
    for (unsigned p = 2; p < 5; p++) {
        w->shared[p] = false;
    }
    w->shared[12] = false;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 2 * PAGE, 3 * PAGE, false),
                    ==, 0);
    g_assert_cmpint(rmp_sync_set_shared(w->e, 12 * PAGE, PAGE, false),
                    ==, 0);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, -EINVAL);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpint(st.last_error, ==, -EINVAL);
    for (unsigned p = 0; p < 2 * P; p++) {
        FakeArea *a = area_at(w, p);

        /* nothing maps a private page, from either backing */
        g_assert_true(!a || (a->shared && w->shared[p]));
    }
    g_assert_cmpuint(w->areas->len, >, 0);
    world_free(w);
}

/*
 * In a transaction the engine unmaps a converting page before the caller
 * discards its old backing.  If the IOAS may still hold it (the unmap and
 * the purge failed), the event must fail so the conversion stops before
 * the discard; a region whose mappings are unknown is purged first.
 */
static void test_private_backing_unmap_fails(void)
{
    World *w = world_new(RMP_SYNC_MAP_ALL, 3, 0, 1);
    unsigned P = 8;

    w->private_backing = true;
    w->n_pages = 2 * P;
    for (unsigned p = 0; p < 2 * P; p++) {
        w->in_range[p] = true;
    }
    g_assert_cmpint(world_add(w, 0, 2 * P * PAGE, false), ==, 0);
    w->fail_one_in = 1;
    w->purges_fail = true;
    rmp_sync_begin(w->e);
    w->shared[3] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 3 * PAGE, PAGE, true), ==,
                    -ENOMEM);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, -ENOMEM);
    world_free(w);

    /*
     * An unmap removes one of its two areas and fails, the purge fails:
     * the region is lost, its bitmaps no longer what the IOAS holds.  The
     * next conversions must purge it, not unmap the areas it believed in.
     */
    w = world_new(RMP_SYNC_MAP_ALL, 3, 0, 1);
    w->private_backing = true;
    w->n_pages = P;
    for (unsigned p = 0; p < P; p++) {
        w->in_range[p] = true;
    }
    g_assert_cmpint(world_add(w, 0, P * PAGE, false), ==, 0);
    g_assert_cmpuint(w->areas->len, ==, 2);
    w->fail_partway_one_in = 1;
    w->purges_refused = true;
    rmp_sync_begin(w->e);
    w->shared[3] = w->shared[4] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 3 * PAGE, 2 * PAGE, true),
                    ==, -EIO);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, -EIO);
    g_assert_cmpuint(w->areas->len, ==, 1);
    w->fail_partway_one_in = 0;
    w->purges_refused = false;
    rmp_sync_begin(w->e);
    w->shared[1] = w->shared[6] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 1 * PAGE, PAGE, true), ==, 0);
    g_assert_cmpint(rmp_sync_set_shared(w->e, 6 * PAGE, PAGE, true), ==, 0);
    g_assert_cmpuint(w->areas->len, ==, 0);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
    check_all(w);
    world_free(w);
}

/*
 * The private backing is the range's: in one 2M region, guest_memfd RAM
 * [0, 4) and RAM without one [4, 8).  A conversion remaps a page of the
 * first (its backing changes), not of the second (the same address).
 */
static void test_private_backing_per_range(void)
{
    World *w = world_new(RMP_SYNC_MAP_ALL, 3, 0, 1);

    w->n_pages = 8;
    for (unsigned p = 0; p < 8; p++) {
        w->in_range[p] = true;
    }
    g_assert_cmpint(rmp_sync_add_range_backed(w->e, 0, 4 * PAGE, false,
                                              PAGE, true), ==, 0);
    g_assert_cmpint(rmp_sync_add_range_backed(w->e, 4 * PAGE, 4 * PAGE,
                                              false, PAGE, false), ==, 0);
    g_array_set_size(w->ops, 0);
    w->shared[5] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 5 * PAGE, PAGE, true), ==, 0);
    g_assert_cmpuint(w->ops->len, ==, 0);
    g_assert_false(area_at(w, 5)->shared);      /* mapped by address */
    w->shared[1] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 1 * PAGE, PAGE, true), ==, 0);
    g_assert_cmpuint(w->ops->len, >, 0);
    g_assert_true(area_at(w, 1)->shared);
    g_assert_false(area_at(w, 0)->shared);
    world_free(w);
}

/*
 * Random conversions in transactions, over regions of 128 pages (two
 * bitmap words): after each notification, before the commit, no area
 * maps a page from the backing it left (the caller discards it next)
 */
static void test_random_private_backing_txn(void)
{
    for (guint32 seed = 1; seed <= 6; seed++) {
        World *w = world_new(RMP_SYNC_MAP_ALL, 7, 0, seed);
        unsigned P = 128;

        w->private_backing = true;
        w->hitless = seed & 1;
        rmp_sync_engine_set_hitless(w->e, w->hitless);
        w->n_pages = 8 * P;
        for (unsigned p = 3; p < w->n_pages - 5; p++) {
            w->in_range[p] = true;
        }
        g_assert_cmpint(world_add(w, 3 * PAGE, (w->n_pages - 8) * PAGE,
                                  false), ==, 0);
        for (unsigned step = 0; step < 600; step++) {
            unsigned n = g_rand_int_range(w->rnd, 1, 4);

            rmp_sync_begin(w->e);
            for (unsigned c = 0; c < n; c++) {
                uint64_t start = g_rand_int_range(w->rnd, 0, w->n_pages);
                uint64_t len = g_rand_boolean(w->rnd) ?
                               g_rand_int_range(w->rnd, 1, 4) :
                               g_rand_int_range(w->rnd, 1, 2 * P);
                bool shared = g_rand_boolean(w->rnd);

                for (uint64_t p = start; p < start + len &&
                     p < w->n_pages; p++) {
                    w->shared[p] = shared;
                }
                g_assert_cmpint(rmp_sync_set_shared(w->e, start * PAGE,
                                                    len * PAGE, shared),
                                ==, 0);
                for (guint i = 0; i < w->areas->len; i++) {
                    FakeArea *a = &g_array_index(w->areas, FakeArea, i);

                    for (uint64_t p = a->start; p < a->end; p++) {
                        g_assert_cmpint(a->shared, ==, w->shared[p]);
                    }
                }
            }
            /* KVM's RMP follows: 2M where a region is uniform, sometimes */
            for (unsigned r = 0; r < 8; r++) {
                bool uniform = true;

                for (unsigned i = 1; i < P; i++) {
                    uniform &= w->shared[r * P + i] == w->shared[r * P];
                }
                w->rmp_2m[r] = uniform && g_rand_int_range(w->rnd, 0, 3);
            }
            g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, w->n_pages * PAGE),
                            ==, 0);
            g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
            check_all(w);
        }
        world_free(w);
    }
}

/* Full-size regions (2M of 4K pages): the invariants, without brute force */
static void test_random_2m_regions(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 9, 0, 7);
    unsigned P = 512;

    w->n_pages = 6 * P;
    for (unsigned p = 0; p < w->n_pages; p++) {
        w->in_range[p] = true;
    }
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, w->n_pages * PAGE, false),
                    ==, 0);
    for (unsigned step = 0; step < 3000; step++) {
        random_event(w);
        check_all(w);
    }
    world_free(w);
}

/* The 2023 bug's sequence, as the engine must handle it */
static void test_smash_and_reform(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 9, 0, 1);
    RmpSyncStats st;
    unsigned P = 512;

    w->n_pages = 2 * P;
    for (unsigned p = 0; p < 2 * P; p++) {
        w->in_range[p] = true;
        w->shared[p] = true;
    }
    w->rmp_2m[0] = w->rmp_2m[1] = true;
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, 2 * P * PAGE, true), ==, 0);
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.regions_2m, ==, 2);
    g_assert_cmpuint(st.iotlb_entries, ==, 2);
    g_assert_cmpuint(st.ioctls, ==, 2);

    /* the guest makes page 7 private: KVM smashes region 0 */
    w->shared[7] = false;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 7 * PAGE, PAGE, false), ==, 0);
    /* the 2M RMP entry still stands: region 0 cannot stay mapped */
    check_all(w);
    w->rmp_2m[0] = false;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, 2 * P * PAGE), ==, 0);
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.regions_2m, ==, 1);
    g_assert_cmpuint(st.regions_4k, ==, 1);
    g_assert_cmpuint(st.iotlb_entries, ==, 1 + P - 1);
    /* region 1 was never touched: its 2M area is the first one mapped */
    g_assert_cmpuint(st.areas, ==, 1 + 2);
    /* the conflict unmapped region 0 before the smash: no window */
    g_assert_cmpuint(st.windows, ==, 0);

    /* shared again, re-formed: one 2M area again */
    w->shared[7] = true;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 7 * PAGE, PAGE, true), ==, 0);
    check_all(w);
    w->rmp_2m[0] = true;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, P * PAGE), ==, 0);
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.regions_2m, ==, 2);
    g_assert_cmpuint(st.areas, ==, 2);
    g_assert_cmpuint(st.errors, ==, 0);
    world_free(w);
}

/* A smash under mapped pages: unmap, then map, a window for all of them */
static void test_resize_window(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 9, 0, 1);
    RmpSyncStats st;
    unsigned P = 512;

    w->n_pages = P;
    for (unsigned p = 0; p < P; p++) {
        w->in_range[p] = true;
        w->shared[p] = true;
    }
    w->rmp_2m[0] = true;
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, P * PAGE, true), ==, 0);
    w->rmp_2m[0] = false;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, P * PAGE), ==, 0);
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.resizes, ==, 1);
    g_assert_cmpuint(st.windows, ==, 1);
    g_assert_cmpuint(st.window_pages, ==, P);
    g_assert_cmpuint(st.ioctls, ==, 1 + 1 + 2);
    world_free(w);
}

/*
 * Issue 9 defect 2: a to-shared conversion of a 2M-hinted range reached
 * the engine as two page-state events (the RAM-discard notifications of
 * its halves) and then the RMP change: 4 ioctls (map 1M, map 1M, unmap
 * 2M, map 2M), and 4K-checked areas over the 2M RMP entry in between.
 * As one transaction it is planned once: one 2M map, never unsafe.
 */
static void do_to_shared_2m(bool txn, unsigned want_ioctls,
                            uint64_t want_unsafe)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 9, 0, 1);
    RmpSyncStats st;
    unsigned P = 512;

    w->n_pages = P;
    for (unsigned p = 0; p < P; p++) {
        w->in_range[p] = true;
    }
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, P * PAGE, false), ==, 0);
    /*
     * KVM made the whole region a 2M hypervisor entry (the hint); the
     * shadow RMP learns it after the page states (kvm_convert_memory()
     * notifies them first)
     */
    w->use_truth = true;
    w->truth_2m[0] = true;
    if (txn) {
        rmp_sync_begin(w->e);
    }
    for (unsigned half = 0; half < 2; half++) {
        for (unsigned p = half * P / 2; p < (half + 1) * P / 2; p++) {
            w->shared[p] = true;
        }
        g_assert_cmpint(rmp_sync_set_shared(w->e, half * P / 2 * PAGE,
                                            P / 2 * PAGE, true), ==, 0);
    }
    w->rmp_2m[0] = true;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, P * PAGE), ==, 0);
    if (txn) {
        g_assert_cmpuint(w->ops->len, ==, 0);    /* nothing before commit */
        g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
    }
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.ioctls, ==, want_ioctls);
    g_assert_cmpuint(st.regions_2m, ==, 1);
    g_assert_cmpuint(w->unsafe_instants, ==, want_unsafe);
    world_free(w);
}

static void test_txn_to_shared_2m(void)
{
    /* before: map 1M (unsafe: 256 pages), map 1M (512), unmap, map 2M */
    do_to_shared_2m(false, 4, 256 + 512);
    do_to_shared_2m(true, 1, 0);
}

/*
 * A to-private conversion of one 4K page of a shared 2M region, with the
 * smash KVM does for it, as one transaction: the region's 2M area goes,
 * the 511 shared pages come back as two areas; no layout in between is
 * unsafe.  The unmap happens at the discard, the maps at the commit.
 */
static void test_txn_to_private_smash(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 9, 0, 1);
    RmpSyncStats st, st0;
    unsigned P = 512;

    w->n_pages = P;
    for (unsigned p = 0; p < P; p++) {
        w->in_range[p] = true;
        w->shared[p] = true;
    }
    w->rmp_2m[0] = true;
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, P * PAGE, true), ==, 0);
    rmp_sync_get_stats(w->e, &st0);
    g_array_set_size(w->ops, 0);

    rmp_sync_begin(w->e);
    w->shared[7] = false;
    g_assert_cmpint(rmp_sync_set_shared(w->e, 7 * PAGE, PAGE, false), ==, 0);
    /*
     * The discarded page is unmapped before the discard notification
     * returns (RamDiscardListener's contract): the 2M area goes at once
     */
    g_assert_cmpuint(w->ops->len, ==, 1);
    g_assert_cmpint(g_array_index(w->ops, RmpSyncOp, 0).type, ==,
                    RMP_SYNC_OP_UNMAP);
    w->rmp_2m[0] = false;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, P * PAGE), ==, 0);
    /* nested: the inner commit plans nothing */
    rmp_sync_begin(w->e);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
    g_assert_cmpuint(w->ops->len, ==, 1);
    g_assert_cmpint(rmp_sync_commit(w->e), ==, 0);
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.ioctls - st0.ioctls, ==, 3);   /* unmap, 2 maps */
    g_assert_cmpuint(st.events - st0.events, ==, 1);
    /* the 511 pages that stay were unmapped in between: one window */
    g_assert_cmpuint(st.windows - st0.windows, ==, 1);
    g_assert_cmpuint(st.window_pages - st0.window_pages, ==, P - 1);
    g_assert_cmpuint(st.resizes - st0.resizes, ==, 1);
    g_assert_cmpuint(st.areas, ==, 2);
    /* the 2M area over the new 4K entries before the engine knew: none */
    g_assert_cmpuint(w->unsafe_instants, ==, 0);
    world_free(w);
}

/*
 * Issue 9 defect 5: over 4K backing the kernel builds 4K IO pages only,
 * and a 4K IO page over a 2M RMP entry faults (the IO page size, rounded
 * down to 4K or 2M, must match the RMP page size: DESIGN.md R1).  So a
 * 2M-RMP region over 4K backing stays unmapped (unbacked), a 4K-RMP one
 * is mapped as usual; over 2M backing the same region is one 2M area.
 */
static void test_backing_page_size(void)
{
    unsigned P = 512;

    for (int huge = 0; huge < 2; huge++) {
        World *w = world_new(RMP_SYNC_MAP_SHARED, 9, 0, 1);
        RmpSyncStats st;

        w->n_pages = 2 * P;
        for (unsigned p = 0; p < 2 * P; p++) {
            w->in_range[p] = true;
            w->shared[p] = true;
        }
        w->rmp_2m[0] = true;
        g_assert_cmpint(rmp_sync_add_range_backed(w->e, 0, 2 * P * PAGE,
                                                  true,
                                                  huge ? 2 * P * PAGE : PAGE,
                                                  false), ==, 0);
        rmp_sync_get_stats(w->e, &st);
        g_assert_cmpuint(st.unbacked, ==, !huge);
        g_assert_cmpuint(st.regions_2m, ==, huge);
        g_assert_cmpuint(st.mapped_pages, ==, huge ? 2 * P : P);
        g_assert_true(huge ? area_at(w, 0) != NULL : area_at(w, 0) == NULL);
        g_assert_cmpuint(unsafe_pages(w), ==, 0);

        /* KVM smashes region 0: its pages can be mapped at 4K now */
        w->rmp_2m[0] = false;
        g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, P * PAGE), ==, 0);
        rmp_sync_get_stats(w->e, &st);
        g_assert_cmpuint(st.unbacked, ==, 0);
        g_assert_cmpuint(st.mapped_pages, ==, 2 * P);
        g_assert_cmpuint(unsafe_pages(w), ==, 0);
        world_free(w);
    }
}

/* Events for memory the engine does not hold, and redundant events */
static void test_outside_and_redundant(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 3, 0, 3);
    RmpSyncStats a, b;

    world_add_ranges(w, false);
    g_assert_cmpint(rmp_sync_set_shared(w->e, 100 * 8 * PAGE, 64 * PAGE,
                                        true), ==, 0);
    g_assert_cmpint(rmp_sync_set_shared(w->e, 10 * 8 * PAGE, 16 * PAGE,
                                        true), ==, 0);   /* the hole */
    rmp_sync_get_stats(w->e, &a);
    g_assert_cmpuint(a.ioctls, ==, 0);
    for (unsigned p = 3; p < 30; p++) {
        w->shared[p] = true;
    }
    g_assert_cmpint(rmp_sync_set_shared(w->e, 3 * PAGE, 27 * PAGE, true), ==,
                    0);
    check_all(w);
    rmp_sync_get_stats(w->e, &a);
    g_assert_cmpint(rmp_sync_set_shared(w->e, 3 * PAGE, 27 * PAGE, true), ==,
                    0);
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, 20 * 8 * PAGE), ==, 0);
    rmp_sync_get_stats(w->e, &b);
    g_assert_cmpuint(b.ioctls, ==, a.ioctls);
    /* bad input */
    g_assert_cmpint(rmp_sync_set_shared(w->e, 3, PAGE, true), ==, -EINVAL);
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, 8 * PAGE, false), ==,
                    -EEXIST);
    g_assert_cmpint(rmp_sync_del_range(w->e, 0, 8 * PAGE), ==, -ENOENT);
    /* removing a range unmaps what it held */
    g_assert_cmpint(rmp_sync_del_range(w->e, 0, 10 * 8 * PAGE), ==, 0);
    for (unsigned p = 0; p < 80; p++) {
        w->in_range[p] = false;
    }
    check_all(w);
    g_assert_cmpuint(w->areas->len, ==, 0);
    world_free(w);
}

static void check_view_matches_ioas(World *w);

/* A random conversion of up to 19 pages: the world, then the engine */
static int random_set_shared(World *w)
{
    unsigned start = g_rand_int_range(w->rnd, 0, w->n_pages);
    unsigned len = g_rand_int_range(w->rnd, 1, 20);
    bool shared = g_rand_boolean(w->rnd);

    for (unsigned p = start; p < start + len && p < w->n_pages; p++) {
        w->shared[p] = shared;
    }
    return rmp_sync_set_shared(w->e, (uint64_t)start * PAGE,
                               (uint64_t)len * PAGE, shared);
}

/* An ioctl fails: the engine's view stays the kernel's, a later event heals */
static void test_errors_keep_state(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 3, 0, 11);
    RmpSyncStats st;

    world_add_ranges(w, false);
    w->fail_one_in = 4;
    for (unsigned step = 0; step < 2000; step++) {
        int ret = random_set_shared(w);
        g_assert_true(ret == 0 || ret == -ENOMEM);
        check_view_matches_ioas(w);
        if (step % 97 == 0) {
            w->rmp_2m[g_rand_int_range(w->rnd, 0, 20)] ^= 1;
        }
    }
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.errors, >, 100);
    g_assert_cmpint(st.last_error, ==, -ENOMEM);
    /* the failures stop: one pass over everything restores the invariants */
    w->fail_one_in = 0;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, w->n_pages * PAGE), ==, 0);
    g_assert_cmpint(rmp_sync_set_shared(w->e, 0, 0, true), ==, 0);
    for (unsigned p = 0; p < w->n_pages; p++) {
        if (w->in_range[p]) {
            g_assert_cmpint(rmp_sync_set_shared(w->e, (uint64_t)p * PAGE,
                                                PAGE, w->shared[p]), ==, 0);
        }
    }
    check_all(w);
    world_free(w);
}

/*
 * A failed operation leaves its region as the kernel has it (pages
 * unmapped that the policy wants): rmp_sync_retry() restores the
 * invariants once the failures stop, without waiting for the guest's
 * next event, purged orphans and lost regions included
 */
static void test_errors_retry(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 3, 0, 5);
    RmpSyncStats st;
    unsigned left;

    world_add_ranges(w, false);
    w->fail_one_in = 3;
    w->fail_partway_one_in = 3;
    w->purges_fail = true;
    /* until a failure leaves wanted pages unmapped */
    for (unsigned step = 0; ; step++) {
        g_assert_cmpuint(step, <, 10000);
        if (random_set_shared(w) && expected_mapped(w) !=
            (rmp_sync_get_stats(w->e, &st), st.mapped_pages)) {
            break;
        }
    }
    /* while purges fail, the regions lost stay out of plan, and it says so */
    w->fail_one_in = 0;
    w->purges_refused = true;
    w->fail_partway_one_in = 1;
    rmp_sync_begin(w->e);
    for (unsigned step = 0; step < 40; step++) {
        random_set_shared(w);
    }
    rmp_sync_commit(w->e);
    w->fail_partway_one_in = 0;
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.lost_regions, >, 0);
    g_assert_cmpuint(rmp_sync_retry(w->e), >=, st.lost_regions);
    w->purges_refused = false;
    left = rmp_sync_retry(w->e);
    g_assert_cmpuint(left, ==, 0);
    check_all(w);
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.lost_regions, ==, 0);
    g_assert_cmpuint(rmp_sync_retry(w->e), ==, 0);
    world_free(w);
}

static void collect_area(uint64_t iova, uint64_t size, void *opaque)
{
    GArray *a = opaque;
    FakeArea fa = { iova / PAGE, (iova + size) / PAGE };

    g_array_append_val(a, fa);
}

static gint cmp_area(gconstpointer a, gconstpointer b)
{
    const FakeArea *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/*
 * Issue 9 defect 3: an unmap fails after removing some of its areas (as
 * IOMMU_IOAS_UNMAP can, without saying how far it got).  The engine must
 * learn what the kernel holds: after every event its view is the fake
 * IOAS's, and once the failures stop one pass restores the invariants.
 * Then purges fail too: the regions are lost, counted, and healed by the
 * next event once the kernel lets them go.
 */
static void test_errors_partial_unmap(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 3, 0, 12);
    uint64_t lost_seen = 0;
    RmpSyncStats st;

    world_add_ranges(w, false);
    w->fail_partway_one_in = 3;
    w->fail_one_in = 9;
    for (unsigned phase = 0; phase < 2; phase++) {
        w->purges_fail = phase == 1;
        for (unsigned step = 0; step < 2000; step++) {
            int ret = random_set_shared(w);
            g_assert_true(ret == 0 || ret == -ENOMEM || ret == -EBUSY);
            rmp_sync_get_stats(w->e, &st);
            lost_seen += st.lost_regions;
            if (!st.lost_regions) {
                check_view_matches_ioas(w);
            }
            if (step % 97 == 0) {
                w->rmp_2m[g_rand_int_range(w->rnd, 0, 20)] ^= 1;
            }
        }
        rmp_sync_get_stats(w->e, &st);
        g_assert_cmpuint(st.purges, >, 100);
        g_assert_cmpuint(!!lost_seen, ==, phase == 1);
    }
    /* the failures stop: one pass over everything restores the invariants */
    w->fail_partway_one_in = 0;
    w->fail_one_in = 0;
    g_assert_cmpint(rmp_sync_rmp_changed(w->e, 0, w->n_pages * PAGE), ==, 0);
    for (unsigned p = 0; p < w->n_pages; p++) {
        if (w->in_range[p]) {
            g_assert_cmpint(rmp_sync_set_shared(w->e, (uint64_t)p * PAGE,
                                                PAGE, w->shared[p]), ==, 0);
        }
    }
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.lost_regions, ==, 0);
    check_view_matches_ioas(w);
    check_all(w);
    world_free(w);
}

/*
 * Removed memory whose unmap and purge both fail: the kernel may still
 * map it (and pin its pages), and memory that later comes back at the
 * same IOVA could not be mapped over it (IOMMU_IOAS_MAP fails with EEXIST
 * over an existing area).  The engine must not forget it: it is counted
 * as lost and purged again at the next event, once the kernel lets go.
 */
static void test_errors_removed_memory(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 3, 0, 13);
    unsigned P = 1u << w->order;
    RmpSyncStats st;

    world_add_ranges(w, true);
    g_assert_cmpuint(w->areas->len, >, 0);
    /* every operation fails, purges included: range A goes */
    w->fail_one_in = 1;
    w->purges_fail = true;
    g_assert_cmpint(rmp_sync_del_range(w->e, 0, 10 * P * PAGE), ==,
                    -ENOMEM);
    for (uint64_t p = 0; p < 10 * P; p++) {
        w->in_range[p] = false;
    }
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.lost_regions, ==, 10);
    g_assert_nonnull(area_at(w, 0));        /* still in the kernel */

    /* the kernel lets go: the next event, anywhere, purges them */
    w->fail_one_in = 0;
    g_assert_cmpint(rmp_sync_set_shared(w->e, (12 * P + 2) * PAGE, PAGE,
                                        false), ==, 0);
    w->shared[12 * P + 2] = false;
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.lost_regions, ==, 0);
    for (uint64_t p = 0; p < 10 * P; p++) {
        g_assert_null(area_at(w, p));
    }
    /* and memory that comes back there is mapped */
    for (uint64_t p = 0; p < 10 * P; p++) {
        w->in_range[p] = true;
        w->shared[p] = true;
    }
    g_assert_cmpint(rmp_sync_add_range(w->e, 0, 10 * P * PAGE, true), ==, 0);
    check_view_matches_ioas(w);
    check_all(w);
    world_free(w);
}

/*
 * A failed map leaves the IOAS as it was (IOMMU_IOAS_MAP and
 * VFIO_IOMMU_MAP_DMA undo their work): nothing to purge, and in hitless
 * mode no page that stays mapped is ever unmapped, failures or not.
 */
static void test_errors_map_hitless(void)
{
    World *w = world_new(RMP_SYNC_MAP_SHARED, 3, 0, 13);
    RmpSyncStats st;

    w->hitless = true;
    rmp_sync_engine_set_hitless(w->e, true);
    world_add_ranges(w, false);
    w->fail_one_in = 3;
    w->fail_maps_only = true;
    for (unsigned step = 0; step < 2000; step++) {
        int ret = random_set_shared(w);
        g_assert_true(ret == 0 || ret == -ENOMEM);
        check_view_matches_ioas(w);
    }
    rmp_sync_get_stats(w->e, &st);
    g_assert_cmpuint(st.errors, >, 100);
    g_assert_cmpuint(st.purges, ==, 0);
    g_assert_cmpuint(st.windows, ==, 0);
    world_free(w);
}

static void check_view_matches_ioas(World *w)
{
    g_autoptr(GArray) view = g_array_new(false, false, sizeof(FakeArea));
    g_autoptr(GArray) ioas = g_array_copy(w->areas);

    rmp_sync_foreach_area(w->e, collect_area, view);
    g_array_sort(ioas, cmp_area);
    g_assert_cmpuint(view->len, ==, ioas->len);
    for (guint i = 0; i < view->len; i++) {
        g_assert_cmpuint(g_array_index(view, FakeArea, i).start, ==,
                         g_array_index(ioas, FakeArea, i).start);
        g_assert_cmpuint(g_array_index(view, FakeArea, i).end, ==,
                         g_array_index(ioas, FakeArea, i).end);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rmp-sync/smash-and-reform", test_smash_and_reform);
    g_test_add_func("/rmp-sync/txn/to-shared-2m", test_txn_to_shared_2m);
    g_test_add_func("/rmp-sync/backing-page-size", test_backing_page_size);
    g_test_add_func("/rmp-sync/txn/to-private-smash",
                    test_txn_to_private_smash);
    g_test_add_func("/rmp-sync/resize-window", test_resize_window);
    g_test_add_func("/rmp-sync/outside-and-redundant",
                    test_outside_and_redundant);
    g_test_add_func("/rmp-sync/random/shared", test_random_shared);
    g_test_add_func("/rmp-sync/random/all", test_random_all);
    g_test_add_func("/rmp-sync/random/hitless", test_random_hitless);
    g_test_add_func("/rmp-sync/random/2m-regions", test_random_2m_regions);
    g_test_add_func("/rmp-sync/random/private-backing",
                    test_random_private_backing);
    g_test_add_func("/rmp-sync/private-backing/round-trip",
                    test_private_backing_round_trip);
    g_test_add_func("/rmp-sync/private-backing/refused",
                    test_private_backing_refused);
    g_test_add_func("/rmp-sync/private-backing/per-range",
                    test_private_backing_per_range);
    g_test_add_func("/rmp-sync/private-backing/unmap-fails",
                    test_private_backing_unmap_fails);
    g_test_add_func("/rmp-sync/random/private-backing-txn",
                    test_random_private_backing_txn);
    g_test_add_func("/rmp-sync/errors-keep-state", test_errors_keep_state);
    g_test_add_func("/rmp-sync/errors-partial-unmap",
                    test_errors_partial_unmap);
    g_test_add_func("/rmp-sync/errors-map-hitless", test_errors_map_hitless);
    g_test_add_func("/rmp-sync/errors-retry", test_errors_retry);
    g_test_add_func("/rmp-sync/errors-removed-memory",
                    test_errors_removed_memory);
    return g_test_run();
}
