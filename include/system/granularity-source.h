/*
 * Granularity source: what decides the page size and the state of guest
 * memory pages that a DMA may reach
 *
 * On a confidential computing host a table checks every access of guest
 * memory: the SEV-SNP Reverse Map Table (RMP), or Arm CCA's granule
 * protection table.  Its entries cover pages of a size that the host
 * chooses (4K or 2M for the RMP), and they say whether a page is the
 * guest's private page or shared with the host.  Whoever keeps IO
 * mappings in step with such a table (the rmp-sync of VFIO containers)
 * asks this interface, and is told of every change, without knowing
 * which table it is.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_GRANULARITY_SOURCE_H
#define SYSTEM_GRANULARITY_SOURCE_H

#include "qom/object.h"
#include "qemu/notify.h"

#define TYPE_GRANULARITY_SOURCE "granularity-source"

typedef struct GranularitySourceClass GranularitySourceClass;
DECLARE_CLASS_CHECKERS(GranularitySourceClass, GRANULARITY_SOURCE,
                       TYPE_GRANULARITY_SOURCE)
#define GRANULARITY_SOURCE(obj) \
    INTERFACE_CHECK(GranularitySource, (obj), TYPE_GRANULARITY_SOURCE)

typedef struct GranularitySource GranularitySource;

/*
 * What a change notifier receives.  A conversion of guest memory (pages
 * that become private or shared) comes bracketed: CONVERSION_BEGIN, the
 * notifications the conversion causes (RAM discard, then CHANGED for the
 * new entries), CONVERSION_END, all on the converting thread, so that a
 * listener can take them as one event.
 */
typedef enum GranularityChangePhase {
    GRANULARITY_CHANGED,            /* the entries of [addr, addr + size) */
    GRANULARITY_CONVERSION_BEGIN,   /* [addr, addr + size) is converting */
    GRANULARITY_CONVERSION_END,
} GranularityChangePhase;

typedef struct GranularityChange {
    GranularityChangePhase phase;
    uint64_t addr;
    uint64_t size;
} GranularityChange;

struct GranularitySourceClass {
    InterfaceClass parent_class;

    /*
     * The size of the page whose entry covers @addr (a guest physical
     * address): a power of two of at least 4K.
     */
    uint64_t (*page_size)(GranularitySource *gs, uint64_t addr);
    /* Is the page at @addr shared with the host (or private)? */
    bool (*is_shared)(GranularitySource *gs, uint64_t addr);
    /*
     * Call @n with a GranularityChange on every change.  Notifiers run
     * under the source's lock: they may take their own locks, and must not
     * call back into the source other than through page_size and
     * is_shared, which never block once a notifier is registered.
     */
    void (*add_notifier)(GranularitySource *gs, Notifier *n);
    void (*remove_notifier)(GranularitySource *gs, Notifier *n);
    /*
     * Does the source bracket the conversions of guest memory whose
     * states a RamDiscardManager reports (CONVERSION_BEGIN/END)?
     */
    bool (*brackets_conversions)(GranularitySource *gs);
};

/*
 * The user-created object (-object) with id @id that is a granularity
 * source, or the only one when @id is NULL; NULL (and @errp set) if
 * there is no such object.
 */
GranularitySource *granularity_source_find(const char *id, Error **errp);

uint64_t granularity_source_page_size(GranularitySource *gs, uint64_t addr);
bool granularity_source_is_shared(GranularitySource *gs, uint64_t addr);
void granularity_source_add_notifier(GranularitySource *gs, Notifier *n);
void granularity_source_remove_notifier(GranularitySource *gs, Notifier *n);
bool granularity_source_brackets_conversions(GranularitySource *gs);

#endif
