/*
 * SEV-SNP Reverse Map Table (RMP) model
 *
 * A hardware-agnostic model of the RMP: one entry per 4K page of system
 * RAM, grouped in 2M regions that are either one 2M entry or 512 4K
 * entries.  It knows the RMPUPDATE and PSMASH rules and nothing about QOM,
 * migration or the IOMMU, so it can be unit-tested on its own.
 *
 * Storage is sparse: a region in one of the two fresh states (512
 * hypervisor-owned 4K entries, or one hypervisor-owned 2M entry) costs one
 * 32-bit slot; only regions that hold other attributes own a record.
 *
 * Addresses.  Every function takes any SPA up to 2^64 - 1 and any length:
 * what is not RAM is an error (or, for a lookup, false) that changes
 * nothing; no sum of an SPA and a length may wrap.
 *
 * Locking.  A table has a lock of its own, so that it may be read from
 * any thread: an IOThread's DMA translates outside the BQL and looks the
 * RMP up while QMP (under the BQL) or a vCPU changes it.  It is a spin
 * lock: a lookup, on the DMA path, holds it for a few dozen instructions
 * and a mutex would cost more than the lookup; changes are rare.  The lock
 * protects the entries and their storage (slots, records, classes); the
 * RAM layout is fixed at creation and read without it.  Every function
 * below takes and releases the lock itself, except snp_rmp_table_new and
 * snp_rmp_table_free (no other thread may use the table then), and no
 * caller ever holds it.  Each call is atomic: a reader sees an update or
 * PSMASH whole or not at all (snp_rmp_table_shadow_convert is atomic per
 * 2M region).  Callbacks (SnpRmpTableVisitFn) run with the lock held:
 * they must be short and must not call the table.  A change is made
 * known to others (the snp-rmp object's change notifiers) only after the
 * call that made it has returned, hence with the lock released: a
 * notifier may read the table.
 *
 * Version.  A reader that caches a verdict outside the table (the IOMMU
 * caches its RMP check in its IOTLB) needs to know, without the lock,
 * that the table has not changed since.  The table's version is odd
 * while a change is in progress and grows by 2 with every change
 * (update, PSMASH, reset, replace, each region of a shadow conversion),
 * so a verdict computed between two reads of the same even version holds
 * for as long as snp_rmp_table_version() returns that version; unlike a
 * change notifier, it is never late.  It is 64 bits wide, so that it
 * never comes back to a value a cached verdict holds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_SNP_RMP_TABLE_H
#define HW_I386_SNP_RMP_TABLE_H

#define SNP_RMP_SHIFT_4K   12
#define SNP_RMP_SHIFT_2M   21
#define SNP_RMP_BYTES_4K    (1ULL << SNP_RMP_SHIFT_4K)
#define SNP_RMP_BYTES_2M    (1ULL << SNP_RMP_SHIFT_2M)
#define SNP_RMP_PAGES_PER_2M    (SNP_RMP_BYTES_2M / SNP_RMP_BYTES_4K)

typedef enum SnpRmpSize {
    SNP_RMP_SIZE_4K,
    SNP_RMP_SIZE_2M,
} SnpRmpSize;

/* The attributes of one RMP entry. */
typedef struct SnpRmpAttrs {
    uint64_t gpa;           /* guest physical address, 4K aligned */
    uint32_t asid;
    bool assigned;
    bool validated;
    bool immutable;
} SnpRmpAttrs;

/* What the RMP says of one 4K page of RAM. */
typedef struct SnpRmpPage {
    SnpRmpSize size;        /* size of the entry that covers the page */
    SnpRmpAttrs attrs;      /* gpa is the page's own GPA */
} SnpRmpPage;

/* A range of system RAM, in SPA. */
typedef struct SnpRmpRange {
    uint64_t start;
    uint64_t size;
} SnpRmpRange;

typedef enum SnpRmpStatus {
    SNP_RMP_OK,
    SNP_RMP_ERR_UNALIGNED,      /* SPA or GPA not aligned to the page size */
    SNP_RMP_ERR_NOT_RAM,        /* SPA (or part of its 2M) is not RAM */
    SNP_RMP_ERR_IS_2M,          /* 4K update inside a 2M entry */
    SNP_RMP_ERR_NOT_2M,         /* PSMASH of a region of 4K entries */
    SNP_RMP_ERR_OVERLAP,        /* 2M assign over an assigned 4K entry */
    SNP_RMP_ERR_IMMUTABLE,      /* the entry is immutable */
    SNP_RMP_ERR_BEYOND_RAM,     /* a range runs past the end of RAM */
} SnpRmpStatus;

typedef struct SnpRmpTable SnpRmpTable;

/*
 * Create the RMP of a machine whose RAM is @ram (@n ranges, sorted, not
 * overlapping, none ending beyond 2^64 - 1), in the state a freshly
 * initialised SNP host has it: every entry hypervisor-owned, 4K.
 */
SnpRmpTable *snp_rmp_table_new(const SnpRmpRange *ram, unsigned n);
void snp_rmp_table_free(SnpRmpTable *t);

/* A fresh table for the same RAM as @t. */
SnpRmpTable *snp_rmp_table_new_like(const SnpRmpTable *t);

/* Back to the freshly initialised state. */
void snp_rmp_table_reset(SnpRmpTable *t);

/*
 * @t takes the entries of @from, a table of the same RAM that no other
 * thread uses, in one step; @from is left fresh.  This is how a state
 * built aside (an incoming migration) replaces the live one only once it
 * is known to be whole and valid.
 */
void snp_rmp_table_replace(SnpRmpTable *t, SnpRmpTable *from);

/* The end of the highest RAM range: SPAs at or above it are not RAM. */
uint64_t snp_rmp_table_ram_top(const SnpRmpTable *t);

/* Bytes of RAM (the sum of the ranges' sizes). */
uint64_t snp_rmp_table_ram_size(const SnpRmpTable *t);

/*
 * RMPUPDATE.  A 2M update sets all 512 entries (the GPA advances by 4K per
 * entry) and makes the region one 2M entry; a 2M update with assigned set
 * fails over a region holding an assigned 4K entry.  A 4K update fails in
 * a region that is one 2M entry.  On error nothing changes.
 */
SnpRmpStatus snp_rmp_table_update(SnpRmpTable *t, uint64_t spa,
                                  SnpRmpSize size, const SnpRmpAttrs *attrs);

/*
 * The same, by the SEV firmware, which may change immutable entries (its
 * own, and HV_FIXED ones): the other rules hold.
 */
SnpRmpStatus snp_rmp_table_firmware_update(SnpRmpTable *t, uint64_t spa,
                                           SnpRmpSize size,
                                           const SnpRmpAttrs *attrs);

/* PSMASH: the 2M entry at @spa becomes 512 4K entries, same attributes. */
SnpRmpStatus snp_rmp_table_psmash(SnpRmpTable *t, uint64_t spa);

/*
 * The RMP view of the 4K page at @spa.  Returns false if @spa is not RAM.
 * Fast: an uncontended lock, two array lookups, no allocation.
 */
bool snp_rmp_table_lookup(const SnpRmpTable *t, uint64_t spa,
                          SnpRmpPage *page);

/* Is the RMP entry over @spa a 2M entry (false outside RAM)? */
bool snp_rmp_table_is_2m(const SnpRmpTable *t, uint64_t spa);

/*
 * Is any 4K page assigned in the page of @size that holds @spa: the page
 * itself (4K), or any page of its 2M region (2M)?  False outside RAM.
 */
bool snp_rmp_table_any_assigned(const SnpRmpTable *t, uint64_t spa,
                                SnpRmpSize size);

/*
 * Is the page at @spa shared with the hypervisor: not assigned to a guest
 * (APM vol. 2, 15.36.3), or not RAM at all?
 */
bool snp_rmp_table_is_shared(const SnpRmpTable *t, uint64_t spa);

/*
 * A guest's page-state change, applied as SEV-SNP KVM applies it to the
 * RMP of a guest_memfd guest, for a VMM's shadow of the RMP (indexed by
 * GPA, the SPA standing for it).  Per 2M region of [@gpa, @gpa + @size):
 * a region the change covers whole, with the guest's 2M page-size hint
 * (@hint_2m), becomes one 2M entry (KVM makes 2M entries only where the
 * folio is 2M and the whole 2M converts); any other region touched is
 * PSMASHed if it was 2M, and the pages update at 4K.  Private pages are
 * assigned to @asid at their own GPA, not validated (the guest validates
 * them later); shared pages go back to the hypervisor.  Assumes 2M
 * guest_memfd folios wherever the hint asks for 2M.  Pages that are not
 * RAM are skipped; a range that wraps around 2^64 is SNP_RMP_ERR_NOT_RAM
 * and changes nothing.
 */
SnpRmpStatus snp_rmp_table_shadow_convert(SnpRmpTable *t, uint64_t gpa,
                                          uint64_t size, bool to_private,
                                          uint32_t asid, bool hint_2m);

/* Bytes the model allocates (table, records), for the memory benchmark. */
size_t snp_rmp_table_memory(const SnpRmpTable *t);

/* Regions currently held as 4K entries / as one 2M entry. */
void snp_rmp_table_count(const SnpRmpTable *t, uint64_t *regions_4k,
                         uint64_t *regions_2m);

const char *snp_rmp_status_str(SnpRmpStatus status);

/* The version (see "Version" above): any thread, no lock, acquire order */
uint64_t snp_rmp_table_version(const SnpRmpTable *t);
/*
 * A new version without a change of the entries: what readers derived
 * from the table with other inputs (whether the RMP is enforced at all)
 * must be derived again.
 */
void snp_rmp_table_touch(SnpRmpTable *t);
/* Where it is, for a hot path that reads it inline (qatomic_load_acquire) */
const uint64_t *snp_rmp_table_version_ptr(const SnpRmpTable *t);

/* Called with the table's lock held: short, and no calls to the table. */
typedef void SnpRmpTableVisitFn(uint64_t spa, const SnpRmpPage *page,
                                void *opaque);

/*
 * Walk the regions that differ from the fresh state (for migration):
 * @fn is called once per 4K page whose entry is not the fresh one, or
 * once per 2M entry (with the 2M entry's attributes), in SPA order.
 */
void snp_rmp_table_foreach_changed(const SnpRmpTable *t,
                                   SnpRmpTableVisitFn *fn, void *opaque);

/*
 * Read the @count 4K pages from @spa at once (consistent with each other):
 * @fn is called for each page of RAM among them, in SPA order; pages in
 * holes between RAM ranges are skipped.  @spa must be 4K aligned
 * (SNP_RMP_ERR_UNALIGNED) and a page of RAM (SNP_RMP_ERR_BEYOND_RAM if at
 * or above the end of RAM, else SNP_RMP_ERR_NOT_RAM), and the range must
 * end at or below the end of RAM (SNP_RMP_ERR_BEYOND_RAM); on error @fn
 * is not called.  A @count of 0 reads nothing.
 */
SnpRmpStatus snp_rmp_table_query(const SnpRmpTable *t, uint64_t spa,
                                 uint64_t count, SnpRmpTableVisitFn *fn,
                                 void *opaque);

#endif
