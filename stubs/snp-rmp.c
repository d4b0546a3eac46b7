/*
 * Stubs of the snp-rmp commands (hw/i386/snp-rmp.c) for builds without
 * the x86 target
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-snp.h"

void qmp_snp_rmp_update(const char *id, uint64_t spa,
                        SnpRmpPageSize page_size, bool assigned,
                        bool has_asid, uint32_t asid, bool has_gpa,
                        uint64_t gpa, bool has_validated, bool validated,
                        bool has_immutable, bool immutable, Error **errp)
{
    error_setg(errp, "the SEV-SNP RMP is not available in this QEMU");
}

void qmp_snp_rmp_psmash(const char *id, uint64_t spa, Error **errp)
{
    error_setg(errp, "the SEV-SNP RMP is not available in this QEMU");
}

SnpRmpEntryList *qmp_query_snp_rmp(const char *id, uint64_t spa,
                                   bool has_count, uint32_t count,
                                   Error **errp)
{
    error_setg(errp, "the SEV-SNP RMP is not available in this QEMU");
    return NULL;
}
