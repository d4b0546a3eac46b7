/*
 * RMP-granularity stage-2 sync engine
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/thread.h"
#include "hw/vfio/rmp-sync-engine.h"

/*
 * A region of one range: bitmaps of its pages.  Pages of the region that
 * are outside the range are never valid, wanted or mapped.  The areas the
 * engine mapped are the runs of "mapped" pages, cut where "starts" is set.
 */
typedef struct Region {
    bool rmp_2m;
    bool private_backing;       /* its range's */
    bool conflict;
    bool small_backing;         /* no IO page as large as the region */
    bool unbacked;              /* RMP 2M over it: left unmapped */
    bool dirty;                 /* an operation failed: plan it again */
    bool lost;                  /* and the purge too: mappings unknown */
    bool pending;               /* changed in the open transaction */
    bool event_open;            /* an execution of the event ran */
    bool event_was_2m_area;     /* one 2M area when the event began */
    int64_t event_first_unmap;  /* g_get_monotonic_time(), 0: none yet */
    unsigned pending_lo, pending_hi;    /* the pages it changed */
    uint64_t bits[];            /* BM_COUNT bitmaps */
} Region;

/* A region to plan when the transaction commits */
typedef struct PendingRegion {
    uint64_t range_start;       /* Range pointers move: find it again */
    uint64_t index;
} PendingRegion;

typedef struct Range {
    uint64_t start, size;
    uint64_t page_size;         /* of the backing */
    bool private_backing;       /* private pages: a backing of their own */
    uint64_t first_region;      /* index of the region of @start */
    uint64_t n_regions;
    Region **regions;           /* NULL: all private, nothing mapped */
} Range;

typedef struct Area {
    unsigned start, end;        /* pages, end exclusive */
} Area;

/* IOVA space of removed memory that the kernel may still map */
typedef struct Orphan {
    uint64_t iova, size;
} Orphan;

#define MAX_ORDER 12            /* pages per region: 4096 at most */
#define MAX_WORDS ((1u << MAX_ORDER) / 64)

struct RmpSyncEngine {
    /* every entry point; held from rmp_sync_begin() to its commit */
    QemuRecMutex lock;
    RmpSyncEnginePolicy policy;
    bool hitless;               /* 4K-RMP regions: one area per page */
    unsigned page_shift;
    unsigned region_order;
    unsigned pages;             /* per region */
    unsigned words;             /* per bitmap */
    RmpSyncIssueFn *issue;
    RmpSyncRmpIs2MFn *rmp_is_2m;
    void *opaque;
    GArray *ranges;             /* Range, sorted by start */
    unsigned txn_depth;         /* rmp_sync_begin() nesting */
    GArray *pending;            /* PendingRegion, in the open transaction */
    /*
     * Orphan: where the purge of removed memory failed.  What the IOAS
     * holds there is unknown; every later event purges it again first,
     * so that memory that comes back there can be mapped.
     */
    GArray *orphans;
    RmpSyncOp failed_op;        /* the operation execute() stopped at */
    uint64_t n_region_records;
    RmpSyncStats stats;

    /* planning scratch, reused to keep events allocation-free */
    GArray *ops;                /* RmpSyncOp */
    GArray *scratch;            /* bytes */
    Area *areas;                /* the areas of one region */
};



/* Bitmaps */

/*
 * BM_SOURCE: the state (shared) each mapped page had when it was mapped,
 * i.e. which backing its area maps where private pages have their own.
 * BM_BEFORE and BM_UNMAPPED span one event, which may take several
 * executions (a transaction unmaps discarded pages at once and maps at
 * its commit): what was mapped when the event began, and what it unmapped
 */
enum { BM_VALID, BM_SHARED, BM_MAPPED, BM_STARTS, BM_SOURCE, BM_BEFORE,
       BM_UNMAPPED, BM_COUNT };

static uint64_t *bm(RmpSyncEngine *e, Region *r, int which)
{
    return r->bits + which * e->words;
}

static bool bit_get(const uint64_t *b, unsigned i)
{
    return b[i / 64] >> (i % 64) & 1;
}

static void bits_set(uint64_t *b, unsigned start, unsigned end, bool v)
{
    for (unsigned i = start; i < end; i++) {
        if (v) {
            b[i / 64] |= 1ULL << (i % 64);
        } else {
            b[i / 64] &= ~(1ULL << (i % 64));
        }
    }
}

/* Mask of the bits of word @w that are inside [a, b) */
static uint64_t word_mask(unsigned w, unsigned a, unsigned b)
{
    uint64_t m = ~0ULL;

    if (w == a / 64) {
        m &= ~0ULL << (a % 64);
    }
    if (w == (b - 1) / 64 && b % 64) {
        m &= ~0ULL >> (64 - b % 64);
    }
    return m;
}

static unsigned bits_count_range(const uint64_t *b, unsigned start,
                                 unsigned end)
{
    unsigned n = 0;

    for (unsigned w = start / 64; start < end && w <= (end - 1) / 64; w++) {
        n += __builtin_popcountll(b[w] & word_mask(w, start, end));
    }
    return n;
}

/* The first bit at or after @from that is @v, or @size */
static unsigned bits_find(const uint64_t *b, unsigned size, unsigned from,
                          bool v)
{
    for (unsigned w = from / 64; from < size && w <= (size - 1) / 64; w++) {
        uint64_t x = (v ? b[w] : ~b[w]) & word_mask(w, from, size);

        if (x) {
            return w * 64 + __builtin_ctzll(x);
        }
    }
    return size;
}

static unsigned bits_count(const uint64_t *b, unsigned words)
{
    unsigned n = 0;

    for (unsigned w = 0; w < words; w++) {
        n += __builtin_popcountll(b[w]);
    }
    return n;
}

/* Engine */

RmpSyncEngine *rmp_sync_engine_new_custom(RmpSyncEnginePolicy policy,
                                          unsigned page_shift,
                                          unsigned region_order,
                                          RmpSyncIssueFn *issue,
                                          RmpSyncRmpIs2MFn *rmp_is_2m,
                                          void *opaque)
{
    RmpSyncEngine *e = g_new0(RmpSyncEngine, 1);

    assert(region_order >= 1 && region_order <= MAX_ORDER);
    qemu_rec_mutex_init(&e->lock);
    e->policy = policy;
    e->page_shift = page_shift;
    e->region_order = region_order;
    e->pages = 1u << region_order;
    e->words = DIV_ROUND_UP(e->pages, 64);
    e->issue = issue;
    e->rmp_is_2m = rmp_is_2m;
    e->opaque = opaque;
    e->ranges = g_array_new(false, true, sizeof(Range));
    e->ops = g_array_new(false, false, sizeof(RmpSyncOp));
    e->pending = g_array_new(false, false, sizeof(PendingRegion));
    e->orphans = g_array_new(false, false, sizeof(Orphan));
    e->scratch = g_array_new(false, false, 1);
    e->areas = g_new(Area, e->pages);
    return e;
}

RmpSyncEngine *rmp_sync_engine_new(RmpSyncEnginePolicy policy,
                                   RmpSyncIssueFn *issue,
                                   RmpSyncRmpIs2MFn *rmp_is_2m,
                                   void *opaque)
{
    return rmp_sync_engine_new_custom(policy, RMP_SYNC_PAGE_SHIFT,
                                      RMP_SYNC_REGION_SHIFT -
                                      RMP_SYNC_PAGE_SHIFT,
                                      issue, rmp_is_2m, opaque);
}

void rmp_sync_engine_set_hitless(RmpSyncEngine *e, bool hitless)
{
    qemu_rec_mutex_lock(&e->lock);
    assert(!e->ranges->len);
    e->hitless = hitless;
    qemu_rec_mutex_unlock(&e->lock);
}

static void range_free(RmpSyncEngine *e, Range *rg)
{
    for (uint64_t i = 0; i < rg->n_regions; i++) {
        if (rg->regions[i]) {
            e->n_region_records--;
        }
        g_free(rg->regions[i]);
    }
    g_free(rg->regions);
}

void rmp_sync_engine_free(RmpSyncEngine *e)
{
    if (!e) {
        return;
    }
    for (guint i = 0; i < e->ranges->len; i++) {
        range_free(e, &g_array_index(e->ranges, Range, i));
    }
    g_array_free(e->ranges, true);
    g_array_free(e->ops, true);
    g_array_free(e->pending, true);
    g_array_free(e->orphans, true);
    qemu_rec_mutex_destroy(&e->lock);
    g_array_free(e->scratch, true);
    g_free(e->areas);
    g_free(e);
}

static uint64_t region_bytes(RmpSyncEngine *e)
{
    return 1ULL << (e->page_shift + e->region_order);
}

static uint64_t region_iova(RmpSyncEngine *e, Range *rg, uint64_t i)
{
    return (rg->first_region + i) << (e->page_shift + e->region_order);
}

static Region *region_new(RmpSyncEngine *e, Range *rg, uint64_t i)
{
    Region *r = g_malloc0(sizeof(Region) +
                          BM_COUNT * e->words * sizeof(uint64_t));
    uint64_t base = region_iova(e, rg, i);
    uint64_t lo = MAX(base, rg->start);
    uint64_t hi = MIN(base + region_bytes(e), rg->start + rg->size);

    bits_set(bm(e, r, BM_VALID), (lo - base) >> e->page_shift,
             (hi - base) >> e->page_shift, true);
    r->rmp_2m = e->rmp_is_2m(e->opaque, base);
    r->small_backing = rg->page_size < region_bytes(e);
    r->private_backing = rg->private_backing;
    e->n_region_records++;
    return r;
}

/* The areas of a region, in order */
static unsigned region_areas(RmpSyncEngine *e, Region *r, Area *areas)
{
    const uint64_t *mapped = bm(e, r, BM_MAPPED);
    const uint64_t *starts = bm(e, r, BM_STARTS);
    unsigned n = 0, p = 0;

    while ((p = bits_find(mapped, e->pages, p, true)) < e->pages) {
        unsigned end = bits_find(mapped, e->pages, p + 1, false);
        unsigned next_start = bits_find(starts, e->pages, p + 1, true);

        end = MIN(end, next_start);
        areas[n++] = (Area) { p, end };
        p = end;
    }
    return n;
}

/* The pages the policy wants mapped */
static void region_wanted(RmpSyncEngine *e, Region *r, uint64_t *want)
{
    const uint64_t *valid = bm(e, r, BM_VALID);
    const uint64_t *shared = bm(e, r, BM_SHARED);

    for (unsigned w = 0; w < e->words; w++) {
        want[w] = valid[w] &
                  (e->policy == RMP_SYNC_MAP_ALL ? ~0ULL : shared[w]);
    }
}

static void push_op(RmpSyncEngine *e, RmpSyncOpType type, uint64_t base,
                    unsigned start, unsigned end)
{
    RmpSyncOp op = {
        .type = type,
        .iova = base + ((uint64_t)start << e->page_shift),
        .size = (uint64_t)(end - start) << e->page_shift,
    };

    g_array_append_val(e->ops, op);
}

/* A map of pages [@start, @end), which have one state */
static void push_map(RmpSyncEngine *e, Region *r, uint64_t base,
                     unsigned start, unsigned end)
{
    push_op(e, RMP_SYNC_OP_MAP, base, start, end);
    g_array_index(e->ops, RmpSyncOp, e->ops->len - 1).shared =
        bit_get(bm(e, r, BM_SHARED), start);
}

/*
 * Where private pages have a backing of their own, an area maps one
 * backing: it never spans both states, and it stays only while its pages
 * keep the state they were mapped in.
 */
static bool area_source_ok(RmpSyncEngine *e, Region *r, const Area *a)
{
    const uint64_t *src = bm(e, r, BM_SOURCE), *shared = bm(e, r, BM_SHARED);

    if (!r->private_backing) {
        return true;
    }
    for (unsigned p = a->start; p < a->end; p++) {
        if (bit_get(src, p) != bit_get(shared, p)) {
            return false;
        }
    }
    return true;
}

/*
 * The first page of each run of wanted pages, where a run is what one
 * area may cover: consecutive wanted pages, of one state where private
 * pages have a backing of their own
 */
static void region_run_starts(RmpSyncEngine *e, Region *r,
                              const uint64_t *want, uint64_t *run_start)
{
    const uint64_t *shared = bm(e, r, BM_SHARED);
    uint64_t carry = 0, scarry = 0;

    for (unsigned w = 0; w < e->words; w++) {
        run_start[w] = want[w] & ~(want[w] << 1 | carry);
        if (r->private_backing) {
            run_start[w] |= want[w] & (shared[w] ^ (shared[w] << 1 | scarry));
        }
        carry = want[w] >> 63;
        scarry = shared[w] >> 63;
    }
}

/*
 * Wanted pages of [a, b): runs, whether the first and last are wanted,
 * and whether the first continues a run that began before @a
 */
typedef struct Seg {
    unsigned runs;
    bool first, last, cont, empty;
} Seg;

static Seg seg_info(RmpSyncEngine *e, const uint64_t *want,
                    const uint64_t *run_start, unsigned a, unsigned b)
{
    Seg s = { .empty = a >= b };

    if (s.empty) {
        return s;
    }
    s.runs = bits_count_range(run_start, a, b);
    s.first = bit_get(want, a);
    s.last = bit_get(want, b - 1);
    /* a run that began before @a is a run of this segment too */
    s.cont = s.first && !bit_get(run_start, a);
    s.runs += s.cont;
    return s;
}

/*
 * DP state: bit 0: an area is kept so far; bit 1: the uncovered pages so
 * far end in a wanted page (a run the next uncovered page continues);
 * bit 2: the previous old area was removed (the next removal joins its
 * unmap).
 */
#define ST_KEPT 1
#define ST_OPEN 2
#define ST_REMOVED 4
#define N_ST 8

/* Uncovered pages @s follow: the runs they add, and the new state */
static unsigned seg_cost(const Seg *s, unsigned *st)
{
    unsigned cost;

    if (s->empty) {
        return 0;
    }
    cost = s->runs - ((*st & ST_OPEN) && s->cont);
    *st = (*st & ~ST_OPEN) | (s->last ? ST_OPEN : 0);
    return cost;
}

/*
 * The fewest operations from the areas @old to a valid layout of @want in
 * a region whose RMP is 4K: choose which old areas to keep (an old area
 * may stay only if all its pages are wanted and it is not the whole
 * region), unmap the others (one operation per run of consecutive removed
 * areas: holes between them do not matter, a kept area would go too), and
 * map each run of wanted pages the kept areas leave uncovered, never one
 * area over the whole region.  Dynamic programming over the old areas
 * with eight states: O(k) for k old areas.
 */
static void plan_4k(RmpSyncEngine *e, Region *r, uint64_t base,
                    const uint64_t *want, const Area *old, unsigned k,
                    unsigned lo, unsigned hi, bool kept_outside)
{
    const unsigned INF = UINT_MAX / 2, P = e->pages;
    uint64_t run_start[MAX_WORDS];
    unsigned cost[N_ST], next[N_ST];
    uint8_t *back;              /* per area and state: previous state, kept */
    bool *keep;
    bool full;                  /* one run over the whole region */
    unsigned best = INF, best_st = 0, st;

    g_array_set_size(e->scratch, k * N_ST + k);
    back = (uint8_t *)e->scratch->data;
    keep = (bool *)(back + k * N_ST);
    region_run_starts(e, r, want, run_start);
    full = bits_count(want, e->words) == P &&
           bits_count(run_start, e->words) == 1;
    for (st = 0; st < N_ST; st++) {
        cost[st] = INF;
    }
    cost[kept_outside ? ST_KEPT : 0] = 0;
    for (unsigned i = 0; i < k; i++) {
        unsigned gap_start = i ? old[i - 1].end : lo;
        Seg gap = seg_info(e, want, run_start, gap_start, old[i].start);
        Seg area = seg_info(e, want, run_start, old[i].start, old[i].end);
        /* an area may stay if all its pages are wanted: one run, no gap */
        bool may_keep = !(old[i].start == 0 && old[i].end == P) &&
                        area.runs == 1 && area.first && area.last &&
                        bits_count_range(want, old[i].start, old[i].end) ==
                        old[i].end - old[i].start &&
                        area_source_ok(e, r, &old[i]);
        for (st = 0; st < N_ST; st++) {
            next[st] = INF;
        }
        for (st = 0; st < N_ST; st++) {
            unsigned c, s2;

            if (cost[st] >= INF) {
                continue;
            }
            s2 = st;
            c = cost[st] + seg_cost(&gap, &s2);
            /* remove area i */
            {
                unsigned s3 = s2 | ST_REMOVED;
                unsigned c3 = c + !(s2 & ST_REMOVED) + seg_cost(&area, &s3);

                if (c3 < next[s3]) {
                    next[s3] = c3;
                    back[i * N_ST + s3] = st << 1;
                }
            }
            /* keep area i */
            if (may_keep) {
                unsigned s3 = (s2 | ST_KEPT) & ~(ST_OPEN | ST_REMOVED);

                if (c < next[s3]) {
                    next[s3] = c;
                    back[i * N_ST + s3] = st << 1 | 1;
                }
            }
        }
        memcpy(cost, next, sizeof(cost));
    }
    {
        Seg tail = seg_info(e, want, run_start, k ? old[k - 1].end : lo, hi);

        for (st = 0; st < N_ST; st++) {
            unsigned c, s2 = st;

            if (cost[st] >= INF) {
                continue;
            }
            c = cost[st] + seg_cost(&tail, &s2);
            /* the whole region wanted, nothing kept: it takes two areas */
            c += full && !(st & ST_KEPT);
            if (c < best) {
                best = c;
                best_st = st;
            }
        }
    }
    st = best_st;
    for (int i = k - 1; i >= 0; i--) {
        keep[i] = back[i * N_ST + st] & 1;
        st = back[i * N_ST + st] >> 1;
    }

    /* unmaps: runs of consecutive removed areas */
    for (unsigned i = 0; i < k;) {
        unsigned g = i;

        if (keep[i]) {
            i++;
            continue;
        }
        while (g + 1 < k && !keep[g + 1]) {
            g++;
        }
        push_op(e, RMP_SYNC_OP_UNMAP, base, old[i].start, old[g].end);
        i = g + 1;
    }
    /* maps: the wanted runs that kept areas leave uncovered */
    for (unsigned p = lo, i = 0; p < hi;) {
        unsigned end, limit;

        while (i < k && (!keep[i] || old[i].end <= p)) {
            i++;
        }
        if (i < k && old[i].start <= p) {
            p = old[i].end;
            continue;
        }
        limit = i < k ? old[i].start : hi;
        p = bits_find(want, limit, p, true);
        if (p >= limit) {
            p = limit;
            continue;
        }
        end = MIN(bits_find(want, limit, p, false),
                  bits_find(run_start, limit, p + 1, true));
        if (p == 0 && end == P) {
            /* never one area over a whole 4K-RMP region */
            push_map(e, r, base, 0, P / 2);
            push_map(e, r, base, P / 2, P);
        } else {
            push_map(e, r, base, p, end);
        }
        p = end;
    }
}

/*
 * Hitless: every page of a 4K-RMP region is an area of its own, so no
 * page that stays wanted is ever unmapped.  An old area stays if all its
 * pages are wanted and it is not the whole region (old areas are single
 * pages, except what a region at 2M left); one unmap per run of removed
 * areas, one map per wanted page left uncovered.
 */
static bool hitless_keeps(RmpSyncEngine *e, Region *r, const uint64_t *want,
                          const Area *a)
{
    return !(a->start == 0 && a->end == e->pages) &&
           bits_count_range(want, a->start, a->end) == a->end - a->start &&
           area_source_ok(e, r, a);
}

static void plan_4k_hitless(RmpSyncEngine *e, Region *r, uint64_t base,
                            const uint64_t *want, const Area *old,
                            unsigned k, unsigned lo, unsigned hi)
{
    unsigned i = 0, p;

    while (i < k) {
        unsigned g = i;

        if (hitless_keeps(e, r, want, &old[i])) {
            i++;
            continue;
        }
        while (g + 1 < k && !hitless_keeps(e, r, want, &old[g + 1])) {
            g++;
        }
        push_op(e, RMP_SYNC_OP_UNMAP, base, old[i].start, old[g].end);
        i = g + 1;
    }
    for (p = lo, i = 0; p < hi; p++) {
        while (i < k && old[i].end <= p) {
            i++;
        }
        if (i < k && old[i].start <= p &&
            hitless_keeps(e, r, want, &old[i])) {
            p = old[i].end - 1;         /* kept */
            continue;
        }
        if (bit_get(want, p)) {
            push_map(e, r, base, p, p + 1);
        }
    }
}

/*
 * Plan region @r.  If the event changed only the pages [@lo, @hi) of a
 * region whose layout was complete (every wanted page mapped, every area
 * wanted), the areas away from them stay in any optimal plan: removing
 * one costs a map and saves at most the unmap it would join.  So only
 * the areas that touch [@lo - 1, @hi + 1) are planned.
 */
static void plan_region(RmpSyncEngine *e, Region *r, uint64_t base,
                        unsigned lo, unsigned hi)
{
    uint64_t want[MAX_WORDS];
    Area *old = e->areas;
    unsigned k = region_areas(e, r, old);
    unsigned n_want;
    bool whole;

    region_wanted(e, r, want);
    n_want = bits_count(want, e->words);
    r->conflict = false;
    r->unbacked = false;
    if (!r->rmp_2m) {
        unsigned c0 = 0, c1 = k;

        if (lo > 0 || hi < e->pages) {
            while (c0 < k && old[c0].end + 1 < lo) {
                c0++;
            }
            c1 = c0;
            while (c1 < k && old[c1].start <= hi) {
                c1++;
            }
        }
        if (e->hitless) {
            plan_4k_hitless(e, r, base, want, old + c0, c1 - c0,
                            c0 ? old[c0 - 1].end : 0,
                            c1 < k ? old[c1].start : e->pages);
        } else {
            plan_4k(e, r, base, want, old + c0, c1 - c0,
                    c0 ? old[c0 - 1].end : 0,
                    c1 < k ? old[c1].start : e->pages, c1 - c0 < k);
        }
        return;
    }
    /*
     * RMP 2M: one area over the whole region, or nothing.  Where private
     * pages have a backing of their own, the area needs pages of one
     * state (an RMP entry has one anyway: mixed is a conflict).
     */
    if (r->private_backing && n_want == e->pages) {
        unsigned n_shared = bits_count(bm(e, r, BM_SHARED), e->words);

        whole = n_shared == 0 || n_shared == e->pages;
    } else {
        whole = n_want == e->pages;
    }
    if (whole && !r->small_backing) {
        if (k == 1 && old[0].start == 0 && old[0].end == e->pages &&
            area_source_ok(e, r, &old[0])) {
            return;
        }
        if (k) {
            push_op(e, RMP_SYNC_OP_UNMAP, base, old[0].start, old[k - 1].end);
        }
        push_map(e, r, base, 0, e->pages);
        return;
    }
    r->unbacked = whole;
    r->conflict = n_want != 0 && !r->unbacked;
    if (k) {
        push_op(e, RMP_SYNC_OP_UNMAP, base, old[0].start, old[k - 1].end);
    }
}

/* Issue the planned operations, keeping the bitmaps as the kernel has it */
static bool region_is_2m_area(RmpSyncEngine *e, Region *r)
{
    return bits_count(bm(e, r, BM_MAPPED), e->words) == e->pages &&
           bits_count(bm(e, r, BM_STARTS), e->words) == 1;
}

/*
 * Issue the planned operations, keeping the bitmaps as the kernel has it.
 * @last: the event's last execution for the region, which accounts its
 * resize and its unmap-then-map window.
 */
static int execute_part(RmpSyncEngine *e, Region *r, uint64_t base,
                        bool last)
{
    uint64_t *before = bm(e, r, BM_BEFORE), *unmapped = bm(e, r, BM_UNMAPPED);
    int ret = 0;

    if (!r->event_open) {
        memcpy(before, bm(e, r, BM_MAPPED), e->words * sizeof(uint64_t));
        memset(unmapped, 0, e->words * sizeof(uint64_t));
        r->event_was_2m_area = region_is_2m_area(e, r);
        r->event_first_unmap = 0;
        r->event_open = true;
    }
    for (guint i = 0; i < e->ops->len; i++) {
        RmpSyncOp *op = &g_array_index(e->ops, RmpSyncOp, i);
        unsigned start = (op->iova - base) >> e->page_shift;
        unsigned end = start + (op->size >> e->page_shift);

        e->stats.ioctls++;
        if (op->type == RMP_SYNC_OP_UNMAP) {
            op->mapped = (uint64_t)bits_count_range(bm(e, r, BM_MAPPED),
                                                    start, end)
                         << e->page_shift;
            if (!r->event_first_unmap) {
                r->event_first_unmap = g_get_monotonic_time();
            }
        }
        ret = e->issue(e->opaque, op);
        if (ret) {
            e->stats.errors++;
            e->stats.last_error = ret;
            e->failed_op = *op;
            break;
        }
        if (op->type == RMP_SYNC_OP_UNMAP) {
            e->stats.unmaps++;
            bits_set(unmapped, start, end, true);
            bits_set(bm(e, r, BM_MAPPED), start, end, false);
            bits_set(bm(e, r, BM_STARTS), start, end, false);
        } else {
            e->stats.maps++;
            bits_set(bm(e, r, BM_MAPPED), start, end, true);
            bits_set(bm(e, r, BM_SOURCE), start, end, op->shared);
            bits_set(bm(e, r, BM_STARTS), start, end, false);
            bits_set(bm(e, r, BM_STARTS), start, start + 1, true);
        }
    }
    g_array_set_size(e->ops, 0);
    if (!last) {
        return ret;
    }
    r->event_open = false;
    if (!ret) {
        /* a resize: the region went between one 2M area and smaller ones */
        uint64_t both = 0, gap = 0;

        for (unsigned w = 0; w < e->words; w++) {
            both |= before[w] & bm(e, r, BM_MAPPED)[w];
            /* mapped before and after, but not in between */
            gap += __builtin_popcountll(before[w] & bm(e, r, BM_MAPPED)[w] &
                                        unmapped[w]);
        }
        if (both && r->event_was_2m_area != region_is_2m_area(e, r)) {
            e->stats.resizes++;
        }
        if (gap) {
            uint64_t us = g_get_monotonic_time() - r->event_first_unmap;

            e->stats.windows++;
            e->stats.window_pages += gap;
            e->stats.window_us_max = MAX(e->stats.window_us_max, us);
            e->stats.window_us_total += us;
        }
    }
    return ret;
}

static int execute(RmpSyncEngine *e, Region *r, uint64_t base)
{
    return execute_part(e, r, base, true);
}

/* The region's areas are what its plan asks for: a replan issues nothing */
static bool region_done(RmpSyncEngine *e, Region *r)
{
    bool conflict = r->conflict, unbacked = r->unbacked;
    bool done;

    plan_region(e, r, 0, 0, e->pages);
    done = !e->ops->len;
    g_array_set_size(e->ops, 0);
    r->conflict = conflict;
    r->unbacked = unbacked;
    return done;
}

static bool region_idle(RmpSyncEngine *e, Region *r)
{
    return !bits_count(bm(e, r, BM_MAPPED), e->words) &&
           !bits_count(bm(e, r, BM_SHARED), e->words) && !r->conflict &&
           !r->unbacked && !r->lost;
}

/* Issue a purge of [@iova, @iova + @size), counted */
static int issue_purge(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    RmpSyncOp op = { .type = RMP_SYNC_OP_PURGE, .iova = iova, .size = size };
    int ret;

    e->stats.ioctls++;
    e->stats.purges++;
    ret = e->issue(e->opaque, &op);
    if (ret) {
        e->stats.errors++;
        e->stats.last_error = ret;
    }
    return ret;
}

/*
 * Remove whatever the IOAS holds in [@lo, @hi) of region @i of @rg: the
 * engine cannot know which of its areas a failed unmap removed.  On
 * success the range is known to be empty; on failure the region is lost.
 */
static int purge_range(RmpSyncEngine *e, Range *rg, uint64_t i,
                       uint64_t lo, uint64_t hi)
{
    Region *r = rg->regions[i];
    uint64_t base = region_iova(e, rg, i);
    unsigned start = (lo - base) >> e->page_shift;
    unsigned end = (hi - base) >> e->page_shift;
    int ret = issue_purge(e, lo, hi - lo);

    if (ret) {
        r->lost = true;
        return ret;
    }
    bits_set(bm(e, r, BM_MAPPED), start, end, false);
    bits_set(bm(e, r, BM_STARTS), start, end, false);
    r->lost = false;
    return 0;
}

/* The same over the whole region: what a lost region needs */
static int purge_region(RmpSyncEngine *e, Range *rg, uint64_t i)
{
    uint64_t base = region_iova(e, rg, i);

    return purge_range(e, rg, i, MAX(base, rg->start),
                       MIN(base + region_bytes(e), rg->start + rg->size));
}

static int sync_region(RmpSyncEngine *e, Range *rg, uint64_t i,
                       unsigned lo, unsigned hi)
{
    Region *r = rg->regions[i];
    uint64_t base = region_iova(e, rg, i);
    int ret = 0;

    if (r->lost && purge_region(e, rg, i)) {
        r->dirty = true;
        return e->stats.last_error;
    }
    plan_region(e, r, base, r->dirty ? 0 : lo, r->dirty ? e->pages : hi);
    ret = execute(e, r, base);
    /*
     * A failed map left the IOAS as it was: the bitmaps are right, try
     * again at the next event.  A failed unmap may have removed some of
     * the areas of its range (the plan was removing them all): remove the
     * rest, then plan the region again.
     */
    if (ret && e->failed_op.type == RMP_SYNC_OP_UNMAP &&
        !purge_range(e, rg, i, e->failed_op.iova,
                     e->failed_op.iova + e->failed_op.size)) {
        plan_region(e, r, base, 0, e->pages);
        execute(e, r, base);
    }
    /* still not as planned: try again at the region's next event */
    r->dirty = ret && (r->lost || !region_done(e, r));
    ret = r->dirty ? ret : 0;
    if (e->policy == RMP_SYNC_MAP_SHARED && region_idle(e, r)) {
        g_free(r);
        rg->regions[i] = NULL;
        e->n_region_records--;
    }
    return ret;
}

/* Ranges */

static Range *range_find(RmpSyncEngine *e, uint64_t iova)
{
    guint lo = 0, hi = e->ranges->len;

    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        Range *rg = &g_array_index(e->ranges, Range, mid);

        if (iova < rg->start) {
            hi = mid;
        } else if (iova - rg->start >= rg->size) {
            lo = mid + 1;
        } else {
            return rg;
        }
    }
    return NULL;
}

static int set_shared(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                      bool shared);

/* Purge the orphans again; those whose purge works are gone for good */
static void purge_orphans(RmpSyncEngine *e)
{
    for (guint i = 0; i < e->orphans->len;) {
        Orphan *o = &g_array_index(e->orphans, Orphan, i);

        if (issue_purge(e, o->iova, o->size)) {
            i++;
        } else {
            g_array_remove_index_fast(e->orphans, i);
        }
    }
}

static void add_orphan(RmpSyncEngine *e, Range *rg, uint64_t i)
{
    uint64_t base = region_iova(e, rg, i);
    uint64_t lo = MAX(base, rg->start);
    uint64_t hi = MIN(base + region_bytes(e), rg->start + rg->size);

    g_array_append_val(e->orphans, ((Orphan) { lo, hi - lo }));
}

static int add_range(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                     bool shared, uint64_t page_size, bool private_backing)
{
    uint64_t page_mask = (1ULL << e->page_shift) - 1;
    unsigned shift = e->page_shift + e->region_order;
    Range rg = { .start = iova, .size = size, .page_size = page_size,
                 .private_backing = private_backing };
    guint pos;
    int ret = 0;

    if (!size || (iova | size) & page_mask || iova + size < iova) {
        return -EINVAL;
    }
    for (pos = 0; pos < e->ranges->len; pos++) {
        Range *o = &g_array_index(e->ranges, Range, pos);

        if (iova < o->start + o->size && o->start < iova + size) {
            return -EEXIST;
        }
        if (o->start > iova) {
            break;
        }
    }
    purge_orphans(e);
    rg.first_region = iova >> shift;
    rg.n_regions = ((iova + size - 1) >> shift) - rg.first_region + 1;
    rg.regions = g_new0(Region *, rg.n_regions);
    g_array_insert_val(e->ranges, pos, rg);
    e->stats.events++;
    return shared || e->policy == RMP_SYNC_MAP_ALL ?
           set_shared(e, iova, size, shared) : ret;
}

static int del_range(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    int ret = 0;

    purge_orphans(e);
    for (guint pos = 0; pos < e->ranges->len; pos++) {
        Range *rg = &g_array_index(e->ranges, Range, pos);

        if (rg->start != iova || rg->size != size) {
            continue;
        }
        for (uint64_t i = 0; i < rg->n_regions; i++) {
            Region *r = rg->regions[i];
            Area *old = e->areas;
            unsigned k;

            if (!r) {
                continue;
            }
            k = region_areas(e, r, old);
            if (!r->lost && k) {
                push_op(e, RMP_SYNC_OP_UNMAP, region_iova(e, rg, i),
                        old[0].start, old[k - 1].end);
                if (execute(e, r, region_iova(e, rg, i))) {
                    r->lost = true;
                }
            }
            /* the memory goes: leave none of it mapped */
            if (r->lost && purge_region(e, rg, i)) {
                ret = ret ?: e->stats.last_error;
                add_orphan(e, rg, i);
            }
        }
        e->stats.events++;
        range_free(e, rg);
        g_array_remove_index(e->ranges, pos);
        return ret;
    }
    return -ENOENT;
}

static bool set_shared_fn(RmpSyncEngine *e, Region *r, uint64_t base,
                          unsigned start, unsigned end, bool v)
{
    uint64_t *shared = bm(e, r, BM_SHARED);
    unsigned n = bits_count_range(shared, start, end);

    if (n == (v ? end - start : 0)) {
        return false;
    }
    bits_set(shared, start, end, v);
    /*
     * Policy "all" maps the pages either way, from the same address,
     * unless private pages have a backing of their own
     */
    return e->policy == RMP_SYNC_MAP_SHARED || r->private_backing;
}

static bool rmp_changed_fn(RmpSyncEngine *e, Region *r, uint64_t base,
                           unsigned start, unsigned end, bool v)
{
    bool rmp_2m = e->rmp_is_2m(e->opaque, base);

    if (rmp_2m == r->rmp_2m) {
        return false;
    }
    r->rmp_2m = rmp_2m;
    return true;
}

/*
 * Apply @fn to the pages of [@iova, @iova + @size) region by region; it
 * returns whether the region changed.  Unchanged regions are not planned
 * again: their layout is right already (unless an operation failed).
 */
typedef bool RegionUpdateFn(RmpSyncEngine *e, Region *r, uint64_t base,
                            unsigned start, unsigned end, bool v);

/*
 * Unmap at once the areas of region @i of @rg over pages [@lo, @hi).
 * The caller is about to discard their backing: an error means the IOAS
 * may still hold a page of it.
 */
static int unmap_now(RmpSyncEngine *e, Range *rg, uint64_t i, unsigned lo,
                     unsigned hi)
{
    Region *r = rg->regions[i];
    uint64_t base = region_iova(e, rg, i);
    Area *areas = e->areas;
    unsigned k = region_areas(e, r, areas), a0 = 0, a1;

    if (r->lost) {
        /* what the IOAS holds there is unknown: remove all of it */
        if (purge_region(e, rg, i)) {
            r->dirty = true;
            return e->stats.last_error;
        }
        return 0;
    }
    while (a0 < k && areas[a0].end <= lo) {
        a0++;
    }
    for (a1 = a0; a1 < k && areas[a1].start < hi; a1++) {
        /* the areas that overlap the pages: a run */
    }
    if (a0 == a1) {
        return 0;
    }
    push_op(e, RMP_SYNC_OP_UNMAP, base, areas[a0].start, areas[a1 - 1].end);
    if (execute_part(e, r, base, false)) {
        /* it may have removed some: remove the rest whatever they are */
        r->dirty = true;
        if (purge_range(e, rg, i, e->failed_op.iova,
                        e->failed_op.iova + e->failed_op.size)) {
            return e->stats.last_error;
        }
    }
    return 0;
}

/* In a transaction: plan region @i of @rg at commit, pages [@lo, @hi) */
static void defer_region(RmpSyncEngine *e, Range *rg, uint64_t i,
                         unsigned lo, unsigned hi)
{
    Region *r = rg->regions[i];

    if (r->pending) {
        r->pending_lo = MIN(r->pending_lo, lo);
        r->pending_hi = MAX(r->pending_hi, hi);
        return;
    }
    r->pending = true;
    r->pending_lo = lo;
    r->pending_hi = hi;
    g_array_append_val(e->pending, ((PendingRegion) { rg->start, i }));
}

static int update(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                  RegionUpdateFn *fn, bool v)
{
    uint64_t end = iova + size;
    unsigned shift = e->page_shift + e->region_order;
    int ret = 0, r_ret;

    if (!e->txn_depth) {
        e->stats.events++;
        purge_orphans(e);
    }
    while (iova < end) {
        Range *rg = range_find(e, iova);
        uint64_t stop;

        if (!rg) {
            /* skip to the next range, if any starts before @end */
            uint64_t next = end;

            for (guint i = 0; i < e->ranges->len; i++) {
                Range *o = &g_array_index(e->ranges, Range, i);

                if (o->start > iova && o->start < next) {
                    next = o->start;
                }
            }
            iova = next;
            continue;
        }
        stop = MIN(end, rg->start + rg->size);
        while (iova < stop) {
            uint64_t i = (iova >> shift) - rg->first_region;
            uint64_t base = region_iova(e, rg, i);
            uint64_t chunk_end = MIN(stop, base + region_bytes(e));

            bool created = false;

            if (!rg->regions[i]) {
                if (e->policy == RMP_SYNC_MAP_SHARED &&
                    !(fn == set_shared_fn && v)) {
                    /* nothing shared, nothing mapped: nothing to do */
                    iova = chunk_end;
                    continue;
                }
                rg->regions[i] = region_new(e, rg, i);
                created = true;
            }
            unsigned lo = (iova - base) >> e->page_shift;
            unsigned hi = (chunk_end - base) >> e->page_shift;
            bool partial = fn == set_shared_fn && !created &&
                           !rg->regions[i]->dirty;

            if (fn(e, rg->regions[i], base, lo, hi, v) ||
                rg->regions[i]->dirty || created) {
                if (e->txn_depth && fn == set_shared_fn &&
                    (rg->private_backing ||
                     (!v && e->policy == RMP_SYNC_MAP_SHARED))) {
                    /*
                     * Memory being discarded must be unmapped before the
                     * discard returns (RamDiscardListener's contract):
                     * unmap now, remap the rest of the areas at commit.
                     * Where private pages have a backing of their own,
                     * a conversion discards the backing the pages leave.
                     */
                    r_ret = unmap_now(e, rg, i, lo, hi);
                    ret = ret ?: r_ret;
                    partial = false;
                }
                if (e->txn_depth) {
                    defer_region(e, rg, i, partial ? lo : 0,
                                 partial ? hi : e->pages);
                } else {
                    r_ret = sync_region(e, rg, i, partial ? lo : 0,
                                        partial ? hi : e->pages);
                    ret = ret ?: r_ret;
                }
            }
            iova = chunk_end;
        }
    }
    return ret;
}

void rmp_sync_begin(RmpSyncEngine *e)
{
    qemu_rec_mutex_lock(&e->lock);
    e->txn_depth++;
}

/*
 * Plan every region the transaction changed, once, from its final page
 * states and RMP page size.
 */
static int flush_pending(RmpSyncEngine *e)
{
    int ret = 0;

    for (guint p = 0; p < e->pending->len; p++) {
        PendingRegion *pr = &g_array_index(e->pending, PendingRegion, p);
        Range *rg = range_find(e, pr->range_start);
        Region *r = rg ? rg->regions[pr->index] : NULL;
        int r_ret;

        if (!r) {
            continue;
        }
        r->pending = false;
        r_ret = sync_region(e, rg, pr->index, r->pending_lo, r->pending_hi);
        ret = ret ?: r_ret;     /* the first error */
    }
    g_array_set_size(e->pending, 0);
    return ret;
}

int rmp_sync_commit(RmpSyncEngine *e)
{
    int ret = 0;

    assert(e->txn_depth);
    if (!--e->txn_depth) {
        e->stats.events++;
        purge_orphans(e);
        ret = flush_pending(e);
    }
    qemu_rec_mutex_unlock(&e->lock);
    return ret;
}

static int set_shared(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                      bool shared)
{
    uint64_t page_mask = (1ULL << e->page_shift) - 1;

    if ((iova | size) & page_mask) {
        return -EINVAL;
    }
    return update(e, iova, size, set_shared_fn, shared);
}

static int rmp_changed(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    uint64_t mask = region_bytes(e) - 1;
    uint64_t start = iova & ~mask;

    return update(e, start, ((iova + size + mask) & ~mask) - start,
                  rmp_changed_fn, false);
}

/* The entry points: each takes the engine's lock */

int rmp_sync_add_range(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                       bool shared)
{
    return rmp_sync_add_range_backed(e, iova, size, shared, region_bytes(e),
                                     false);
}

int rmp_sync_add_range_backed(RmpSyncEngine *e, uint64_t iova,
                              uint64_t size, bool shared,
                              uint64_t page_size, bool private_backing)
{
    int ret;

    qemu_rec_mutex_lock(&e->lock);
    ret = add_range(e, iova, size, shared, page_size, private_backing);
    qemu_rec_mutex_unlock(&e->lock);
    return ret;
}

int rmp_sync_del_range(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    int ret;

    qemu_rec_mutex_lock(&e->lock);
    ret = del_range(e, iova, size);
    qemu_rec_mutex_unlock(&e->lock);
    return ret;
}

int rmp_sync_set_shared(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                        bool shared)
{
    int ret;

    qemu_rec_mutex_lock(&e->lock);
    ret = set_shared(e, iova, size, shared);
    qemu_rec_mutex_unlock(&e->lock);
    return ret;
}

int rmp_sync_set_states_from(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                             RmpSyncIsSharedFn *is_shared, void *opaque)
{
    uint64_t page = 1ULL << e->page_shift;
    uint64_t end = iova + size;
    int ret = 0;

    qemu_rec_mutex_lock(&e->lock);
    while (iova < end) {
        bool shared = is_shared(opaque, iova);
        uint64_t run = iova + page;
        int r;

        while (run < end && is_shared(opaque, run) == shared) {
            run += page;
        }
        r = set_shared(e, iova, run - iova, shared);
        ret = ret ? ret : r;
        iova = run;
    }
    qemu_rec_mutex_unlock(&e->lock);
    return ret;
}

int rmp_sync_rmp_changed(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    int ret;

    qemu_rec_mutex_lock(&e->lock);
    ret = rmp_changed(e, iova, size);
    qemu_rec_mutex_unlock(&e->lock);
    return ret;
}

unsigned rmp_sync_retry(RmpSyncEngine *e)
{
    unsigned left;

    qemu_rec_mutex_lock(&e->lock);
    if (e->txn_depth) {
        /* called inside the caller's own transaction: its commit plans */
        qemu_rec_mutex_unlock(&e->lock);
        return 1;
    }
    purge_orphans(e);
    left = e->orphans->len;
    for (guint g = 0; g < e->ranges->len; g++) {
        Range *rg = &g_array_index(e->ranges, Range, g);

        for (uint64_t i = 0; i < rg->n_regions; i++) {
            Region *r = rg->regions[i];

            if (!r || !(r->dirty || r->lost)) {
                continue;
            }
            sync_region(e, rg, i, 0, e->pages);
            r = rg->regions[i];         /* sync_region() may free it */
            left += r && (r->dirty || r->lost);
        }
    }
    qemu_rec_mutex_unlock(&e->lock);
    return left;
}

void rmp_sync_get_stats(RmpSyncEngine *e, RmpSyncStats *s)
{
    qemu_rec_mutex_lock(&e->lock);
    *s = e->stats;
    s->regions = s->regions_2m = s->regions_4k = s->conflicts = 0;
    s->unbacked = 0;
    s->lost_regions = e->orphans->len;     /* removed, purge failed */
    s->areas = s->mapped_pages = s->iotlb_entries = 0;
    s->memory = sizeof(*e) + e->ranges->len * sizeof(Range) +
                e->n_region_records *
                (sizeof(Region) + BM_COUNT * e->words * sizeof(uint64_t));
    for (guint g = 0; g < e->ranges->len; g++) {
        Range *rg = &g_array_index(e->ranges, Range, g);

        s->regions += rg->n_regions;
        s->memory += rg->n_regions * sizeof(Region *);
        for (uint64_t i = 0; i < rg->n_regions; i++) {
            Region *r = rg->regions[i];
            Area *old = e->areas;
            unsigned k, n;

            if (!r) {
                continue;
            }
            k = region_areas(e, r, old);
            n = bits_count(bm(e, r, BM_MAPPED), e->words);
            s->areas += k;
            s->mapped_pages += n;
            s->conflicts += r->conflict;
            s->unbacked += r->unbacked;
            s->lost_regions += r->lost;
            if (k == 1 && n == e->pages) {
                s->regions_2m++;
                s->iotlb_entries++;
            } else if (n) {
                s->regions_4k++;
                s->iotlb_entries += n;
            }
        }
    }
    qemu_rec_mutex_unlock(&e->lock);
}

void rmp_sync_foreach_area(RmpSyncEngine *e, RmpSyncAreaFn *fn, void *opaque)
{
    qemu_rec_mutex_lock(&e->lock);
    for (guint g = 0; g < e->ranges->len; g++) {
        Range *rg = &g_array_index(e->ranges, Range, g);

        for (uint64_t i = 0; i < rg->n_regions; i++) {
            Area *old = e->areas;
            unsigned k;

            if (!rg->regions[i]) {
                continue;
            }
            k = region_areas(e, rg->regions[i], old);
            for (unsigned a = 0; a < k; a++) {
                fn(region_iova(e, rg, i) +
                   ((uint64_t)old[a].start << e->page_shift),
                   (uint64_t)(old[a].end - old[a].start) << e->page_shift,
                   opaque);
            }
        }
    }
    qemu_rec_mutex_unlock(&e->lock);
}
