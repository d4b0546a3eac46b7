/*
 * RMP-granularity stage-2 sync engine
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/vfio/rmp-sync-engine.h"

/*
 * A region of one range: bitmaps of its pages.  Pages of the region that
 * are outside the range are never valid, wanted or mapped.  The areas the
 * engine mapped are the runs of "mapped" pages, cut where "starts" is set.
 */
typedef struct Region {
    bool rmp_2m;
    bool conflict;
    uint64_t bits[];            /* valid, shared, mapped, starts */
} Region;

typedef struct Range {
    uint64_t start, size;
    uint64_t first_region;      /* index of the region of @start */
    uint64_t n_regions;
    Region **regions;           /* NULL: all private, nothing mapped */
} Range;

struct RmpSyncEngine {
    RmpSyncPolicy policy;
    unsigned page_shift;
    unsigned region_order;
    unsigned pages;             /* per region */
    unsigned words;             /* per bitmap */
    RmpSyncIssueFn *issue;
    RmpSyncRmpIs2MFn *rmp_is_2m;
    void *opaque;
    GArray *ranges;             /* Range, sorted by start */
    uint64_t n_region_records;
    RmpSyncStats stats;

    /* planning scratch, reused to keep events allocation-free */
    GArray *ops;                /* RmpSyncOp */
};

typedef struct Area {
    unsigned start, end;        /* pages, end exclusive */
} Area;

/* Bitmaps */

enum { BM_VALID, BM_SHARED, BM_MAPPED, BM_STARTS, BM_COUNT };

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

static unsigned bits_count(const uint64_t *b, unsigned words)
{
    unsigned n = 0;

    for (unsigned w = 0; w < words; w++) {
        n += __builtin_popcountll(b[w]);
    }
    return n;
}

/* Engine */

RmpSyncEngine *rmp_sync_engine_new_custom(RmpSyncPolicy policy,
                                          unsigned page_shift,
                                          unsigned region_order,
                                          RmpSyncIssueFn *issue,
                                          RmpSyncRmpIs2MFn *rmp_is_2m,
                                          void *opaque)
{
    RmpSyncEngine *e = g_new0(RmpSyncEngine, 1);

    assert(region_order >= 1 && region_order <= 12);
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
    return e;
}

RmpSyncEngine *rmp_sync_engine_new(RmpSyncPolicy policy,
                                   RmpSyncIssueFn *issue,
                                   RmpSyncRmpIs2MFn *rmp_is_2m,
                                   void *opaque)
{
    return rmp_sync_engine_new_custom(policy, RMP_SYNC_PAGE_SHIFT,
                                      RMP_SYNC_REGION_SHIFT -
                                      RMP_SYNC_PAGE_SHIFT,
                                      issue, rmp_is_2m, opaque);
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
    e->n_region_records++;
    return r;
}

/* The areas of a region, in order */
static unsigned region_areas(RmpSyncEngine *e, Region *r, Area *areas)
{
    const uint64_t *mapped = bm(e, r, BM_MAPPED);
    const uint64_t *starts = bm(e, r, BM_STARTS);
    unsigned n = 0;

    for (unsigned p = 0; p < e->pages; p++) {
        if (!bit_get(mapped, p)) {
            continue;
        }
        if (bit_get(starts, p) || !n || areas[n - 1].end != p) {
            areas[n++] = (Area) { p, p + 1 };
        } else {
            areas[n - 1].end = p + 1;
        }
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
                  (e->policy == RMP_SYNC_POLICY_ALL ? ~0ULL : shared[w]);
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

/*
 * The fewest operations from the areas @old to a valid layout of @want in
 * a region whose RMP is 4K: choose which old areas to keep (an old area
 * may stay only if all its pages are wanted and it is not the whole
 * region), unmap the others (one operation per run of consecutive removed
 * areas: a kept area between them would go too), and map each run of
 * wanted pages the kept areas leave uncovered.  Dynamic programming over
 * the old areas, keyed by the last kept one: O(k^2) for k old areas.
 */
static void plan_4k(RmpSyncEngine *e, uint64_t base, const uint64_t *want,
                    const Area *old, unsigned k)
{
    unsigned P = e->pages;
    g_autofree unsigned *run_starts = g_new0(unsigned, P + 1);
    g_autofree bool *may_keep = g_new0(bool, k + 1);
    /* cost[j][f]: best so far with last kept area j - 1 (0: none) and the
     * previous area removed (f = 1) or kept (f = 0) */
    g_autofree unsigned *cost = g_new(unsigned, 2 * (k + 1));
    g_autofree uint8_t *choice = g_new0(uint8_t, (size_t)(k + 1) * (k + 1) * 2);
    g_autofree bool *keep = g_new0(bool, k + 1);
    const unsigned INF = UINT_MAX / 2;
    bool full = bits_count(want, e->words) == P;
    unsigned best = INF, best_j = 0, best_f = 0, j, f;

    /* run_starts[x]: runs of wanted pages that start before page x */
    for (unsigned p = 0; p < P; p++) {
        bool start = bit_get(want, p) && (p == 0 || !bit_get(want, p - 1));

        run_starts[p + 1] = run_starts[p] + start;
    }
    for (unsigned i = 0; i < k; i++) {
        may_keep[i] = !(old[i].start == 0 && old[i].end == P);
        for (unsigned p = old[i].start; may_keep[i] && p < old[i].end; p++) {
            may_keep[i] = bit_get(want, p);
        }
    }

#define RUNS(a, b) ((a) >= (b) ? 0 : \
    run_starts[b] - run_starts[(a) + 1] + bit_get(want, a))
#define COST(j, f) cost[(j) * 2 + (f)]
#define CHOICE(i, j, f) choice[((size_t)(i) * (k + 1) + (j)) * 2 + (f)]

    for (j = 0; j <= k; j++) {
        COST(j, 0) = COST(j, 1) = INF;
    }
    COST(0, 0) = 0;
    for (unsigned i = 0; i < k; i++) {
        g_autofree unsigned *next = g_new(unsigned, 2 * (k + 1));

        for (j = 0; j < 2 * (k + 1); j++) {
            next[j] = INF;
        }
        for (j = 0; j <= i; j++) {
            for (f = 0; f < 2; f++) {
                unsigned c = COST(j, f), from_end;

                if (c >= INF) {
                    continue;
                }
                /* remove area i: a new unmap unless i - 1 went too */
                if (c + !f < next[j * 2 + 1]) {
                    next[j * 2 + 1] = c + !f;
                    CHOICE(i, j, 1) = j * 2 + f;
                }
                if (!may_keep[i]) {
                    continue;
                }
                /* keep area i: map the wanted runs since the last kept */
                from_end = j ? old[j - 1].end : 0;
                if (c + RUNS(from_end, old[i].start) <
                    next[(i + 1) * 2 + 0]) {
                    next[(i + 1) * 2 + 0] = c + RUNS(from_end, old[i].start);
                    CHOICE(i, i + 1, 0) = j * 2 + f;
                }
            }
        }
        memcpy(cost, next, sizeof(unsigned) * 2 * (k + 1));
    }
    for (j = 0; j <= k; j++) {
        for (f = 0; f < 2; f++) {
            unsigned from_end = j ? old[j - 1].end : 0;
            unsigned c = COST(j, f);

            if (c >= INF) {
                continue;
            }
            /* the whole region wanted, nothing kept: it takes two areas */
            c += (j == 0 && full) ? 2 : RUNS(from_end, P);
            if (c < best) {
                best = c;
                best_j = j;
                best_f = f;
            }
        }
    }
    /* walk the choices back */
    j = best_j;
    f = best_f;
    for (int i = k - 1; i >= 0; i--) {
        uint8_t prev = CHOICE(i, j, f);

        keep[i] = f == 0 && j == (unsigned)i + 1;
        j = prev / 2;
        f = prev % 2;
    }
#undef RUNS
#undef COST
#undef CHOICE

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
    for (unsigned p = 0, i = 0; p < P;) {
        unsigned end;

        while (i < k && (!keep[i] || old[i].end <= p)) {
            i++;
        }
        if (i < k && old[i].start <= p) {
            p = old[i].end;
            continue;
        }
        if (!bit_get(want, p)) {
            p++;
            continue;
        }
        end = p;
        while (end < P && bit_get(want, end) && !(i < k && old[i].start == end)) {
            end++;
        }
        if (p == 0 && end == P) {
            /* never one area over a whole 4K-RMP region */
            push_op(e, RMP_SYNC_OP_MAP, base, 0, P / 2);
            push_op(e, RMP_SYNC_OP_MAP, base, P / 2, P);
        } else {
            push_op(e, RMP_SYNC_OP_MAP, base, p, end);
        }
        p = end;
    }
}

static void plan_region(RmpSyncEngine *e, Region *r, uint64_t base)
{
    uint64_t want[e->words];
    Area old[e->pages];
    unsigned k = region_areas(e, r, old);
    unsigned n_want;

    region_wanted(e, r, want);
    n_want = bits_count(want, e->words);
    r->conflict = false;
    if (!r->rmp_2m) {
        plan_4k(e, base, want, old, k);
        return;
    }
    /* RMP 2M: one area over the whole region, or nothing */
    if (n_want == e->pages) {
        if (k == 1 && old[0].start == 0 && old[0].end == e->pages) {
            return;
        }
        if (k) {
            push_op(e, RMP_SYNC_OP_UNMAP, base, old[0].start, old[k - 1].end);
        }
        push_op(e, RMP_SYNC_OP_MAP, base, 0, e->pages);
        return;
    }
    r->conflict = n_want != 0;
    if (k) {
        push_op(e, RMP_SYNC_OP_UNMAP, base, old[0].start, old[k - 1].end);
    }
}

/* Issue the planned operations, keeping the bitmaps as the kernel has it */
static int execute(RmpSyncEngine *e, Region *r, uint64_t base)
{
    uint64_t before[e->words];
    bool was_2m_area;
    int ret = 0;

    memcpy(before, bm(e, r, BM_MAPPED), sizeof(before));
    was_2m_area = bits_count(before, e->words) == e->pages &&
                  bits_count(bm(e, r, BM_STARTS), e->words) == 1;
    for (guint i = 0; i < e->ops->len; i++) {
        RmpSyncOp *op = &g_array_index(e->ops, RmpSyncOp, i);
        unsigned start = (op->iova - base) >> e->page_shift;
        unsigned end = start + (op->size >> e->page_shift);

        e->stats.ioctls++;
        ret = e->issue(e->opaque, op);
        if (ret) {
            e->stats.errors++;
            e->stats.last_error = ret;
            break;
        }
        if (op->type == RMP_SYNC_OP_UNMAP) {
            e->stats.unmaps++;
            bits_set(bm(e, r, BM_MAPPED), start, end, false);
            bits_set(bm(e, r, BM_STARTS), start, end, false);
        } else {
            e->stats.maps++;
            bits_set(bm(e, r, BM_MAPPED), start, end, true);
            bits_set(bm(e, r, BM_STARTS), start, end, false);
            bits_set(bm(e, r, BM_STARTS), start, start + 1, true);
        }
    }
    /* a resize: the region went between one 2M area and smaller ones */
    if (e->ops->len && !ret) {
        bool is_2m_area = bits_count(bm(e, r, BM_MAPPED), e->words) ==
                          e->pages &&
                          bits_count(bm(e, r, BM_STARTS), e->words) == 1;
        uint64_t both = 0;

        for (unsigned w = 0; w < e->words; w++) {
            both |= before[w] & bm(e, r, BM_MAPPED)[w];
        }
        if (both && was_2m_area != is_2m_area) {
            e->stats.resizes++;
        }
    }
    g_array_set_size(e->ops, 0);
    return ret;
}

static bool region_idle(RmpSyncEngine *e, Region *r)
{
    return !bits_count(bm(e, r, BM_MAPPED), e->words) &&
           !bits_count(bm(e, r, BM_SHARED), e->words) && !r->conflict;
}

static int sync_region(RmpSyncEngine *e, Range *rg, uint64_t i)
{
    Region *r = rg->regions[i];
    uint64_t base = region_iova(e, rg, i);
    int ret;

    plan_region(e, r, base);
    ret = execute(e, r, base);
    if (e->policy == RMP_SYNC_POLICY_SHARED && region_idle(e, r)) {
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

int rmp_sync_add_range(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                       bool shared)
{
    uint64_t page_mask = (1ULL << e->page_shift) - 1;
    unsigned shift = e->page_shift + e->region_order;
    Range rg = { .start = iova, .size = size };
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
    rg.first_region = iova >> shift;
    rg.n_regions = ((iova + size - 1) >> shift) - rg.first_region + 1;
    rg.regions = g_new0(Region *, rg.n_regions);
    g_array_insert_val(e->ranges, pos, rg);
    e->stats.events++;
    return shared || e->policy == RMP_SYNC_POLICY_ALL ?
           rmp_sync_set_shared(e, iova, size, shared) : ret;
}

int rmp_sync_del_range(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    int ret = 0;

    for (guint pos = 0; pos < e->ranges->len; pos++) {
        Range *rg = &g_array_index(e->ranges, Range, pos);

        if (rg->start != iova || rg->size != size) {
            continue;
        }
        for (uint64_t i = 0; i < rg->n_regions; i++) {
            Region *r = rg->regions[i];
            Area old[e->pages];
            unsigned k;

            if (!r) {
                continue;
            }
            k = region_areas(e, r, old);
            if (k) {
                push_op(e, RMP_SYNC_OP_UNMAP, region_iova(e, rg, i),
                        old[0].start, old[k - 1].end);
                ret = execute(e, r, region_iova(e, rg, i)) ?: ret;
            }
        }
        e->stats.events++;
        range_free(e, rg);
        g_array_remove_index(e->ranges, pos);
        return ret;
    }
    return -ENOENT;
}

/* Apply @fn to the pages of [@iova, @iova + @size) region by region */
typedef void RegionUpdateFn(RmpSyncEngine *e, Region *r, unsigned start,
                            unsigned end, bool v);

static int update(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                  RegionUpdateFn *fn, bool v)
{
    uint64_t end = iova + size;
    unsigned shift = e->page_shift + e->region_order;
    int ret = 0;

    e->stats.events++;
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

            if (!rg->regions[i]) {
                if (e->policy == RMP_SYNC_POLICY_SHARED && !(fn && v)) {
                    /* nothing shared, nothing mapped: nothing to do */
                    iova = chunk_end;
                    continue;
                }
                rg->regions[i] = region_new(e, rg, i);
            }
            if (fn) {
                fn(e, rg->regions[i], (iova - base) >> e->page_shift,
                   (chunk_end - base) >> e->page_shift, v);
            } else {
                rg->regions[i]->rmp_2m = e->rmp_is_2m(e->opaque, base);
            }
            ret = sync_region(e, rg, i) ?: ret;
            iova = chunk_end;
        }
    }
    return ret;
}

static void set_shared_fn(RmpSyncEngine *e, Region *r, unsigned start,
                          unsigned end, bool v)
{
    bits_set(bm(e, r, BM_SHARED), start, end, v);
}

int rmp_sync_set_shared(RmpSyncEngine *e, uint64_t iova, uint64_t size,
                        bool shared)
{
    uint64_t page_mask = (1ULL << e->page_shift) - 1;

    if ((iova | size) & page_mask) {
        return -EINVAL;
    }
    return update(e, iova, size, set_shared_fn, shared);
}

int rmp_sync_rmp_changed(RmpSyncEngine *e, uint64_t iova, uint64_t size)
{
    uint64_t mask = region_bytes(e) - 1;
    uint64_t start = iova & ~mask;

    return update(e, start, ((iova + size + mask) & ~mask) - start, NULL,
                  false);
}

void rmp_sync_get_stats(RmpSyncEngine *e, RmpSyncStats *s)
{
    *s = e->stats;
    s->regions = s->regions_2m = s->regions_4k = s->conflicts = 0;
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
            Area old[e->pages];
            unsigned k, n;

            if (!r) {
                continue;
            }
            k = region_areas(e, r, old);
            n = bits_count(bm(e, r, BM_MAPPED), e->words);
            s->areas += k;
            s->mapped_pages += n;
            s->conflicts += r->conflict;
            if (k == 1 && n == e->pages) {
                s->regions_2m++;
                s->iotlb_entries++;
            } else if (n) {
                s->regions_4k++;
                s->iotlb_entries += n;
            }
        }
    }
}

void rmp_sync_foreach_area(RmpSyncEngine *e, RmpSyncAreaFn *fn, void *opaque)
{
    for (guint g = 0; g < e->ranges->len; g++) {
        Range *rg = &g_array_index(e->ranges, Range, g);

        for (uint64_t i = 0; i < rg->n_regions; i++) {
            Area old[e->pages];
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
}
