/*
 * Granularity source interface
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "system/granularity-source.h"

static int granularity_source_collect(Object *obj, void *opaque)
{
    GPtrArray *found = opaque;

    if (object_dynamic_cast(obj, TYPE_GRANULARITY_SOURCE)) {
        g_ptr_array_add(found, obj);
    }
    return 0;
}

GranularitySource *granularity_source_find(const char *id, Error **errp)
{
    g_autoptr(GPtrArray) found = g_ptr_array_new();
    Object *obj;

    if (id) {
        obj = object_resolve_path_component(object_get_objects_root(), id);
        if (!obj || !object_dynamic_cast(obj, TYPE_GRANULARITY_SOURCE)) {
            error_setg(errp, "'%s' is not an object that gives page "
                       "granularity", id);
            return NULL;
        }
        return GRANULARITY_SOURCE(obj);
    }
    object_child_foreach(object_get_objects_root(),
                         granularity_source_collect, found);
    if (found->len > 1) {
        error_setg(errp, "there is more than one object that gives page "
                   "granularity: name one with 'rmp'");
        return NULL;
    }
    if (!found->len) {
        error_setg(errp, "there is no object that gives page granularity");
        error_append_hint(errp, "On x86, add -object snp-rmp,id=ID.\n");
        return NULL;
    }
    return GRANULARITY_SOURCE(g_ptr_array_index(found, 0));
}

uint64_t granularity_source_page_size(GranularitySource *gs, uint64_t addr)
{
    return GRANULARITY_SOURCE_GET_CLASS(gs)->page_size(gs, addr);
}

bool granularity_source_is_shared(GranularitySource *gs, uint64_t addr)
{
    return GRANULARITY_SOURCE_GET_CLASS(gs)->is_shared(gs, addr);
}

void granularity_source_add_notifier(GranularitySource *gs, Notifier *n)
{
    GRANULARITY_SOURCE_GET_CLASS(gs)->add_notifier(gs, n);
}

void granularity_source_remove_notifier(GranularitySource *gs, Notifier *n)
{
    GRANULARITY_SOURCE_GET_CLASS(gs)->remove_notifier(gs, n);
}

bool granularity_source_brackets_conversions(GranularitySource *gs)
{
    GranularitySourceClass *gsc = GRANULARITY_SOURCE_GET_CLASS(gs);

    return gsc->brackets_conversions && gsc->brackets_conversions(gs);
}

static const TypeInfo granularity_source_info = {
    .name = TYPE_GRANULARITY_SOURCE,
    .parent = TYPE_INTERFACE,
    .class_size = sizeof(GranularitySourceClass),
};

static void granularity_source_register_types(void)
{
    type_register_static(&granularity_source_info);
}

type_init(granularity_source_register_types)
