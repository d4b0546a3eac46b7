/*
 * Memory and lookup cost of the SNP RMP model
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-table.h"

#define GiB (1ULL << 30)

int main(void)
{
    SnpRmpRange ram = { 0, 16 * GiB };
    SnpRmpTable *t = snp_rmp_table_new(&ram, 1);
    SnpRmpAttrs a = { .assigned = true, .asid = 1 };
    size_t fresh, all_2m, smashed;
    SnpRmpPage page;
    uint64_t sum = 0, n = 0;
    gint64 t0;

    fresh = snp_rmp_table_memory(t);
    for (uint64_t spa = 0; spa < ram.size; spa += SNP_RMP_BYTES_2M) {
        a.gpa = spa;
        snp_rmp_table_update(t, spa, SNP_RMP_SIZE_2M, &a);
    }
    all_2m = snp_rmp_table_memory(t);
    for (uint64_t spa = 0; spa < ram.size; spa += SNP_RMP_BYTES_2M) {
        snp_rmp_table_psmash(t, spa);
    }
    smashed = snp_rmp_table_memory(t);

    t0 = g_get_monotonic_time();
    for (unsigned rep = 0; rep < 4; rep++) {
        for (uint64_t spa = 0; spa < ram.size; spa += 4096 * 7) {
            sum += snp_rmp_table_lookup(t, spa, &page) && page.attrs.assigned;
            n++;
        }
    }
    printf("RMP model memory per GiB of RAM (16 GiB machine):\n");
    printf("  fresh (never touched):                 %9.0f bytes\n",
           (double)fresh / 16);
    printf("  unsmashed: every region a private 2M:  %9.0f bytes\n",
           (double)all_2m / 16);
    printf("  fully smashed: 4K entries everywhere:  %9.0f bytes\n",
           (double)smashed / 16);
    printf("RMP lookup (smashed table): %.1f ns per lookup (%" PRIu64
           " lookups, %" PRIu64 " assigned)\n",
           (g_get_monotonic_time() - t0) * 1000.0 / n, n, sum);
    snp_rmp_table_free(t);
    return 0;
}
