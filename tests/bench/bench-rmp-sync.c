/*
 * Trace-driven comparison of stage-2 mapping strategies for SNP guests
 *
 * Synthetic page-state traces of an SNP guest drive the RMP-granularity
 * sync engine and three baselines; the RMP follows KVM's policy (2M only
 * where a 2M-aligned 2M range converts as a whole, a partial conversion
 * smashes the region to 4K).  For each strategy: ioctls, IOAS areas,
 * IOTLB entries needed for the mapped memory (a 2M IO page is one, a page
 * in a 4K-checked region one each), share of mapped memory at 2M, pages
 * that would take an RMP #PF, planning time per event and memory.
 *
 * The engines are driven as hw/vfio/rmp-sync.c drives them on a host, in
 * the real order: for each conversion, one transaction holding the page
 * states (RAM-discard notifications, made while the shadow RMP still has
 * the old entries), then the shadow RMP's change.  A fake IOAS behind
 * each engine counts the unsafe instants: after every ioctl, the pages
 * of the region it changed whose IO mapping does not match KVM's RMP
 * (an RMP #PF for a DMA at that instant).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/vfio/rmp-sync-engine.h"

#define PAGE        4096ULL
#define P           512u                    /* pages per 2M region */
#define GUEST       (16ULL << 30)
#define N_REGIONS   (GUEST / (P * PAGE))
#define N_PAGES     (GUEST / PAGE)

typedef enum Strategy {
    S_ENGINE,
    S_ENGINE_HITLESS,       /* rmp-sync-hitless=on */
    S_QEMU_4K_CHUNKS,       /* QEMU today: one area per 4K chunk */
    S_HUGE_PAGES_OFF,       /* IOMMU_OPTION_HUGE_PAGES=0, maximal areas */
    S_NAIVE_LARGEST,        /* maximal areas, largest IO pages */
    S_COUNT,
} Strategy;

static const char *const strategy_names[] = {
    "engine", "engine-hitless", "qemu-4k-chunks", "huge-pages=0",
    "naive-largest",
};

/* The world: page states and the RMP, as KVM keeps them */
typedef struct World {
    RmpSyncEnginePolicy policy;
    uint8_t *shared;            /* per page */
    bool *rmp_2m;               /* per region, KVM's RMP */
    bool *shadow_2m;            /* per region, the shadow the engine reads */
} World;

/* A baseline's layout of a region: area starts and mapped pages */
typedef struct Layout {
    uint64_t mapped[P / 64];
    uint64_t starts[P / 64];
} Layout;

typedef struct Result {
    uint64_t ioctls;
    double plan_ns;
    uint64_t events;
    uint64_t unsafe_instants;   /* engines: see above */
    uint64_t max_ioctls;        /* engines: most ioctls of one event */
    uint64_t max_ioctls_4k;     /* of a 4K one that resized no RMP entry */
    uint64_t hinted_2m, hinted_2m_ioctls;   /* 2M-hinted conversions */
} Result;

static World world;
static Layout *layouts[S_COUNT];
static Result results[S_COUNT];
/* the engine, by default and hitless (S_ENGINE, S_ENGINE_HITLESS) */
static RmpSyncEngine *engines[2];
static uint64_t engine_ioctl_base[2];
/* the fake IOAS behind each engine, and its ioctls in the current event */
static Layout *ioas[2];
static uint64_t event_ioctls[2];

static bool bget(const uint64_t *b, unsigned i)
{
    return b[i / 64] >> (i % 64) & 1;
}

static void bset(uint64_t *b, unsigned i, bool v)
{
    if (v) {
        b[i / 64] |= 1ULL << (i % 64);
    } else {
        b[i / 64] &= ~(1ULL << (i % 64));
    }
}

static bool wanted(uint64_t page)
{
    return world.policy == RMP_SYNC_MAP_ALL || world.shared[page];
}

/* Pages of region @r that a DMA would find unsafe against KVM's RMP */
static unsigned layout_unsafe(const Layout *l, uint64_t r)
{
    unsigned n = 0, starts = 0;

    for (unsigned w = 0; w < P / 64; w++) {
        n += __builtin_popcountll(l->mapped[w]);
        starts += __builtin_popcountll(l->mapped[w] & l->starts[w]);
    }
    if (world.rmp_2m[r]) {
        return n == P && starts == 1 ? 0 : n;   /* 4K IO pages on 2M */
    }
    return n == P && starts == 1 ? P : 0;       /* a 2M IO page on 4K */
}

/* The engine's backend: a fake IOAS that counts the unsafe instants */
static int count_issue(void *opaque, const RmpSyncOp *op)
{
    int i = (uintptr_t)opaque;
    uint64_t first = op->iova / PAGE, n = op->size / PAGE;
    uint64_t r = first / P;
    Layout *l = &ioas[i][r];

    for (uint64_t p = first; p < first + n; p++) {
        bset(l->mapped, p % P, op->type == RMP_SYNC_OP_MAP);
        bset(l->starts, p % P, op->type == RMP_SYNC_OP_MAP && p == first);
    }
    event_ioctls[i]++;
    results[S_ENGINE + i].unsafe_instants += layout_unsafe(l, r);
    return 0;
}

static bool world_rmp_is_2m(void *opaque, uint64_t iova)
{
    return world.shadow_2m[iova / (P * PAGE)];
}

/* A baseline's target layout for region @r */
static void baseline_target(Strategy s, uint64_t r, Layout *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < P; i++) {
        bool w = wanted(r * P + i);

        bset(t->mapped, i, w);
        if (w && (s == S_QEMU_4K_CHUNKS || i == 0 || !wanted(r * P + i - 1))) {
            bset(t->starts, i, true);
        }
    }
}

/* ioctls from @old to @new: an unmap per run of removed areas, a map each */
static uint64_t layout_cost(Strategy s, const Layout *old, const Layout *new)
{
    uint64_t cost = 0;
    bool in_removed_run = false;

    for (unsigned i = 0; i < P; i++) {
        bool old_start = bget(old->mapped, i) && bget(old->starts, i);
        bool new_start = bget(new->mapped, i) && bget(new->starts, i);
        bool same = old_start && new_start;
        unsigned e1 = i + 1, e2 = i + 1;

        if (old_start) {
            while (e1 < P && bget(old->mapped, e1) && !bget(old->starts, e1)) {
                e1++;
            }
        }
        if (new_start) {
            while (e2 < P && bget(new->mapped, e2) && !bget(new->starts, e2)) {
                e2++;
            }
        }
        same = same && e1 == e2;
        if (old_start && !same) {
            /* QEMU today discards chunk by chunk: one ioctl each */
            cost += s == S_QEMU_4K_CHUNKS ? 1 : !in_removed_run;
            in_removed_run = true;
        } else if (old_start) {
            in_removed_run = false;
        }
        if (new_start && !same) {
            cost++;
        }
    }
    return cost;
}

static void baselines_sync(uint64_t r)
{
    for (Strategy s = S_QEMU_4K_CHUNKS; s < S_COUNT; s++) {
        Layout t;

        baseline_target(s, r, &t);
        results[s].ioctls += layout_cost(s, &layouts[s][r], &t);
        layouts[s][r] = t;
    }
}

static double now_ns(void)
{
    return g_get_monotonic_time() * 1000.0;
}

/*
 * The guest converts [page, page + n); KVM updates its RMP, then QEMU's
 * conversion reaches the engines as the glue delivers it
 */
static void convert(uint64_t page, uint64_t n, bool shared)
{
    uint64_t r0 = page / P, r1 = (page + n - 1) / P;
    bool hinted = !(page % P) && !(n % P);
    bool resized = false;
    double t[2];

    for (uint64_t p = page; p < page + n; p++) {
        world.shared[p] = shared;
    }
    for (uint64_t r = r0; r <= r1; r++) {
        bool whole = page <= r * P && page + n >= (r + 1) * P;

        /* a 2M-aligned 2M conversion keeps (or makes) a 2M entry */
        resized |= world.rmp_2m[r] != whole;
        world.rmp_2m[r] = whole;
    }
    /* CONVERSION_BEGIN, then kvm_convert_memory()'s RAM-discard events */
    for (int i = 0; i < 2; i++) {
        event_ioctls[i] = 0;
        t[i] = now_ns();
        rmp_sync_begin(engines[i]);
        rmp_sync_set_shared(engines[i], page * PAGE, n * PAGE, shared);
        t[i] = now_ns() - t[i];
    }
    /* the shadow RMP follows, CONVERSION_END */
    for (uint64_t r = r0; r <= r1; r++) {
        world.shadow_2m[r] = world.rmp_2m[r];
    }
    for (int i = 0; i < 2; i++) {
        Result *res = &results[S_ENGINE + i];
        double t0 = now_ns();

        rmp_sync_rmp_changed(engines[i], page * PAGE, n * PAGE);
        rmp_sync_commit(engines[i]);
        res->plan_ns += t[i] + now_ns() - t0;
        res->max_ioctls = MAX(res->max_ioctls, event_ioctls[i]);
        if (n == 1 && !resized) {
            res->max_ioctls_4k = MAX(res->max_ioctls_4k, event_ioctls[i]);
        }
        if (hinted) {
            res->hinted_2m++;
            res->hinted_2m_ioctls += event_ioctls[i];
        }
    }
    for (Strategy s = 0; s < S_COUNT; s++) {
        results[s].events++;
    }
    for (uint64_t r = r0; r <= r1; r++) {
        baselines_sync(r);
    }
}

typedef struct Metrics {
    uint64_t areas, iotlb, mapped, mapped_2m, unsafe;
    uint64_t iotlb_on_2m_rmp;   /* IOTLB entries for memory whose RMP is 2M */
} Metrics;

static void engine_area(uint64_t iova, uint64_t size, void *opaque)
{
    Metrics *m = opaque;
    uint64_t r = iova / (P * PAGE);
    bool full = size == P * PAGE;

    m->areas++;
    m->mapped += size / PAGE;
    if (full) {
        m->iotlb++;
        m->mapped_2m += P;
    } else {
        m->iotlb += size / PAGE;
    }
    m->iotlb_on_2m_rmp += world.rmp_2m[r] ? (full ? 1 : size / PAGE) : 0;
    /* an RMP #PF: check size and RMP size differ */
    if (full != world.rmp_2m[r]) {
        m->unsafe += size / PAGE;
    }
}

static void baseline_metrics(Strategy s, Metrics *m)
{
    memset(m, 0, sizeof(*m));
    for (uint64_t r = 0; r < N_REGIONS; r++) {
        Layout *l = &layouts[s][r];
        unsigned n = 0, starts = 0;

        for (unsigned w = 0; w < P / 64; w++) {
            n += __builtin_popcountll(l->mapped[w]);
            starts += __builtin_popcountll(l->mapped[w] & l->starts[w]);
        }
        m->areas += starts;
        m->mapped += n;
        if (s == S_NAIVE_LARGEST && n == P && starts == 1) {
            /* one 2M IO page: safe only over a 2M RMP entry */
            m->iotlb++;
            m->mapped_2m += P;
            m->unsafe += world.rmp_2m[r] ? 0 : P;
            m->iotlb_on_2m_rmp += world.rmp_2m[r];
        } else {
            /* 4K IO pages: safe only over 4K RMP entries */
            m->iotlb += n;
            m->unsafe += world.rmp_2m[r] ? n : 0;
            m->iotlb_on_2m_rmp += world.rmp_2m[r] ? n : 0;
        }
    }
}

static void report(const char *trace)
{
    RmpSyncStats st[2];
    Metrics m;

    rmp_sync_get_stats(engines[0], &st[0]);
    rmp_sync_get_stats(engines[1], &st[1]);
    printf("\n%s\n", trace);
    printf("  %-15s %9s %9s %8s %8s %9s %7s %8s %9s %8s %7s %7s %7s\n",
           "strategy", "ioctls", "ioctl/ev", "areas", "iotlb", "iotlb@2M",
           "at-2M", "rmp-#pf", "ns/event", "unsafe-", "max", "max", "ioctl/");
    printf("  %-15s %9s %9s %8s %8s %9s %7s %8s %9s %8s %7s %7s %7s\n", "",
           "", "", "", "", "", "", "", "", "instants", "ioctl", "4K-ev",
           "2M-ev");
    for (Strategy s = 0; s < S_COUNT; s++) {
        if (s <= S_ENGINE_HITLESS) {
            memset(&m, 0, sizeof(m));
            rmp_sync_foreach_area(engines[s], engine_area, &m);
            results[s].ioctls = st[s].ioctls - engine_ioctl_base[s];
        } else {
            baseline_metrics(s, &m);
        }
        printf("  %-15s %9" PRIu64 " %9.2f %8" PRIu64 " %8" PRIu64
               " %9" PRIu64 " %6.1f%% %8" PRIu64, strategy_names[s],
               results[s].ioctls,
               (double)results[s].ioctls / MAX(results[s].events, 1),
               m.areas, m.iotlb, m.iotlb_on_2m_rmp,
               m.mapped ? 100.0 * m.mapped_2m / m.mapped : 0.0, m.unsafe);
        if (s <= S_ENGINE_HITLESS) {
            printf(" %9.0f %8" PRIu64 " %7" PRIu64 " %7" PRIu64,
                   results[s].plan_ns / MAX(results[s].events, 1),
                   results[s].unsafe_instants, results[s].max_ioctls,
                   results[s].max_ioctls_4k);
            if (results[s].hinted_2m) {
                printf(" %7.2f", (double)results[s].hinted_2m_ioctls /
                       results[s].hinted_2m);
            } else {
                printf(" %7s", "-");
            }
        }
        printf("\n");
    }
    for (int i = 0; i < 2; i++) {
        printf("  %s: %" PRIu64 " regions at 2M, %" PRIu64 " at 4K, %"
               PRIu64 " conflicts, %" PRIu64 " resizes, %" PRIu64
               " unmap-then-map windows (%" PRIu64 " pages), memory %"
               PRIu64 " bytes\n", strategy_names[S_ENGINE + i],
               st[i].regions_2m, st[i].regions_4k, st[i].conflicts,
               st[i].resizes, st[i].windows, st[i].window_pages,
               st[i].memory);
    }
}

/*
 * @private_backing: private pages have a backing of their own (TEE-IO
 * over guest_memfd), for the engines; the baselines map by address
 */
static void start(RmpSyncEnginePolicy policy, bool private_backing)
{
    world.policy = policy;
    world.shared = g_new0(uint8_t, N_PAGES);
    world.rmp_2m = g_new0(bool, N_REGIONS);
    world.shadow_2m = g_new0(bool, N_REGIONS);
    /* KVM backs private memory with 2M folios: 2M RMP entries */
    for (uint64_t r = 0; r < N_REGIONS; r++) {
        world.rmp_2m[r] = true;
        world.shadow_2m[r] = true;
    }
    for (Strategy s = 0; s < S_COUNT; s++) {
        layouts[s] = g_new0(Layout, N_REGIONS);
        results[s] = (Result) { 0 };
    }
    for (int i = 0; i < 2; i++) {
        ioas[i] = g_new0(Layout, N_REGIONS);
        engines[i] = rmp_sync_engine_new(policy, count_issue, world_rmp_is_2m,
                                         (void *)(uintptr_t)i);
        rmp_sync_engine_set_hitless(engines[i], i);
        engine_ioctl_base[i] = 0;
        rmp_sync_add_range_backed(engines[i], 0, GUEST, false, 2 << 20,
                                  private_backing);
    }
    for (uint64_t r = 0; r < N_REGIONS; r++) {
        baselines_sync(r);
    }
}

static void finish(void)
{
    rmp_sync_engine_free(engines[0]);
    rmp_sync_engine_free(engines[1]);
    g_free(ioas[0]);
    g_free(ioas[1]);
    g_free(world.shadow_2m);
    for (Strategy s = 0; s < S_COUNT; s++) {
        g_free(layouts[s]);
    }
    g_free(world.shared);
    g_free(world.rmp_2m);
}

/* Boot: a 64M swiotlb bounce buffer shared in 2M steps, then virtqueues */
static void trace_boot(GRand *rnd)
{
    for (uint64_t p = 0; p < (64ULL << 20) / PAGE; p += P) {
        convert((1ULL << 30) / PAGE + p, P, true);
    }
    for (unsigned i = 0; i < 64; i++) {
        convert(g_rand_int_range(rnd, 0, N_PAGES), 1, true);
    }
}

/* Steady state: virtqueue and bounce pages shared and unshared */
static void trace_churn(GRand *rnd, unsigned events)
{
    static uint64_t pool[4096];

    for (unsigned i = 0; i < G_N_ELEMENTS(pool); i++) {
        pool[i] = (2ULL << 30) / PAGE + g_rand_int_range(rnd, 0, 64 * P);
    }
    for (unsigned i = 0; i < events; i++) {
        uint64_t p = pool[g_rand_int_range(rnd, 0, G_N_ELEMENTS(pool))];

        convert(p, 1, !world.shared[p]);
    }
}

/*
 * Buffers: runs of 4..64 pages shared at once (one area for the engine),
 * then given back page by page, which cuts the area in the default mode
 */
static void trace_buffers(GRand *rnd, unsigned buffers)
{
    for (unsigned i = 0; i < buffers; i++) {
        uint64_t n = g_rand_int_range(rnd, 4, 65);
        uint64_t p = (3ULL << 30) / PAGE + g_rand_int_range(rnd, 0, 64 * P);

        convert(p, n, true);
        for (uint64_t j = 0; j < n; j++) {
            convert(p + (j * 7) % n, 1, false);
        }
    }
}

int main(int argc, char **argv)
{
    GRand *rnd = g_rand_new_with_seed(2026);

    printf("Stage-2 IO mappings of a 16 GiB SNP guest (RMP per KVM's "
           "policy)\n");
    printf("iotlb: IOTLB entries to cover the mapped memory (2M IO page: "
           "1, page in a 4K-checked region: 1 each);\n"
           "iotlb@2M: those for memory whose RMP entry is 2M; at-2M: share "
           "of mapped memory in 2M IO pages;\n"
           "rmp-#pf: mapped pages whose IO page size does not match their "
           "RMP page size;\n"
           "unsafe-instants: after each ioctl, pages of the region it "
           "changed that a DMA would find unsafe, summed;\n"
           "max ioctl: most ioctls of one conversion; max 4K-ev: of a 4K "
           "conversion that resizes no RMP entry;\n"
           "ioctl/2M-ev: ioctls per 2M-aligned 2M conversion\n");

    start(RMP_SYNC_MAP_SHARED, false);
    trace_boot(rnd);
    report("policy shared: boot (64 MiB bounce buffer in 2M steps, "
           "64 scattered 4K shares)");
    for (Strategy s = 0; s < S_COUNT; s++) {
        results[s] = (Result) { 0 };
    }
    for (int i = 0; i < 2; i++) {
        RmpSyncStats st;

        rmp_sync_get_stats(engines[i], &st);
        engine_ioctl_base[i] = st.ioctls;
    }
    {
        trace_churn(rnd, 200000);
        report("policy shared: steady-state churn (200000 4K conversions "
               "over 4096 pages)");
    }
    finish();

    start(RMP_SYNC_MAP_SHARED, false);
    trace_boot(rnd);
    for (int i = 0; i < 2; i++) {
        RmpSyncStats st;

        rmp_sync_get_stats(engines[i], &st);
        engine_ioctl_base[i] = st.ioctls;
    }
    for (Strategy s = 0; s < S_COUNT; s++) {
        results[s] = (Result) { 0 };
    }
    trace_buffers(rnd, 2000);
    report("policy shared: 2000 buffers of 4-64 pages shared at once, "
           "then unshared page by page");
    finish();

    start(RMP_SYNC_MAP_ALL, false);
    trace_boot(rnd);
    trace_churn(rnd, 50000);
    report("policy all (TEE-IO): boot, then 50000 4K conversions");
    finish();

    /*
     * Over guest_memfd each conversion changes the page's backing: the
     * engines remap it (the baselines, which map by address, would leave
     * the device on the discarded page)
     */
    start(RMP_SYNC_MAP_ALL, true);
    trace_boot(rnd);
    trace_churn(rnd, 50000);
    report("policy all over guest_memfd (private pages from the file): "
           "boot, then 50000 4K conversions");
    finish();
    g_rand_free(rnd);
    return 0;
}
