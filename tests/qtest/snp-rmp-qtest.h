/*
 * query-snp-rmp helpers shared by the qtests of the snp-rmp object and of
 * amd-iommu's SNP mode.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_QTEST_SNP_RMP_QTEST_H
#define TESTS_QTEST_SNP_RMP_QTEST_H

#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

/* The one entry query-snp-rmp returns for @spa (a new reference) */
static inline QDict *snp_rmp_query_one(QTestState *qts, uint64_t spa)
{
    QDict *r = qtest_qmp(qts, "{ 'execute': 'query-snp-rmp',"
                         " 'arguments': { 'spa': %" PRIu64 " } }", spa);
    QList *list = qdict_get_qlist(r, "return");
    QDict *e;

    g_assert_nonnull(list);
    g_assert_cmpuint(qlist_size(list), ==, 1);
    e = qobject_to(QDict, qlist_peek(list));
    qobject_ref(e);
    qobject_unref(r);
    return e;
}

static inline void snp_rmp_assert_entry(QTestState *qts, uint64_t spa,
                                        const char *size, bool assigned,
                                        uint32_t asid, uint64_t gpa)
{
    QDict *e = snp_rmp_query_one(qts, spa);

    g_assert_cmphex(qdict_get_uint(e, "spa"), ==, spa);
    g_assert_cmpstr(qdict_get_str(e, "page-size"), ==, size);
    g_assert_cmpint(qdict_get_bool(e, "assigned"), ==, assigned);
    g_assert_cmpuint(qdict_get_uint(e, "asid"), ==, asid);
    g_assert_cmphex(qdict_get_uint(e, "gpa"), ==, gpa);
    qobject_unref(e);
}

#endif
