/*
 * Unit tests of the SNP RMP check rules (R1-R4)
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/snp-rmp-check.h"

#define MiB (1ULL << 20)
#define K4 SNP_RMP_BYTES_4K
#define M2 SNP_RMP_BYTES_2M

static SnpRmpTable *t;

static const SnpRmpRange ram = { 0, 64 * MiB };

static SnpRmpCheckResult check(uint64_t spa, uint64_t iova,
                               uint64_t io_page_size, uint32_t asid)
{
    SnpRmpSize rmp_size;

    return snp_rmp_check_dma(t, spa, iova, snp_rmp_check_size(io_page_size),
                             asid, &rmp_size);
}

static void setup(void)
{
    snp_rmp_table_reset(t);
}

static void test_rounding(void)
{
    g_assert_cmpint(snp_rmp_check_size(4 * 1024), ==, SNP_RMP_SIZE_4K);
    g_assert_cmpint(snp_rmp_check_size(64 * 1024), ==, SNP_RMP_SIZE_4K);
    g_assert_cmpint(snp_rmp_check_size(1 * MiB), ==, SNP_RMP_SIZE_4K);
    g_assert_cmpint(snp_rmp_check_size(2 * MiB), ==, SNP_RMP_SIZE_2M);
    g_assert_cmpint(snp_rmp_check_size(4 * MiB), ==, SNP_RMP_SIZE_2M);
    g_assert_cmpint(snp_rmp_check_size(1ULL << 30), ==, SNP_RMP_SIZE_2M);
}

static void test_size_match(void)
{
    SnpRmpAttrs h = { 0 };
    SnpRmpSize rmp_size;

    setup();
    /* fresh RMP is 4K: small IO pages fine, 2M IO pages fault */
    g_assert_cmpint(check(4 * MiB, 4 * MiB, 4096, 0), ==, SNP_RMP_CHECK_OK);
    g_assert_cmpint(check(4 * MiB, 4 * MiB, MiB, 0), ==, SNP_RMP_CHECK_OK);
    g_assert_cmpint(check(4 * MiB + 5, 0, 2 * MiB, 0), ==,
                    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH);
    /* a 2M RMP entry: 4K IO pages fault, 2M and larger work */
    g_assert_cmpint(snp_rmp_table_update(t, 4 * MiB, SNP_RMP_SIZE_2M, &h), ==,
                    SNP_RMP_OK);
    g_assert_cmpint(check(4 * MiB + K4, 0, 4096, 0), ==,
                    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH);
    g_assert_cmpint(check(4 * MiB + K4, 0, 64 * 1024, 0), ==,
                    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH);
    g_assert_cmpint(check(5 * MiB, 0, 2 * MiB, 0), ==, SNP_RMP_CHECK_OK);
    g_assert_cmpint(check(5 * MiB, 0, 4 * MiB, 0), ==, SNP_RMP_CHECK_OK);
    g_assert_cmpint(check(5 * MiB, 0, 1ULL << 30, 0), ==, SNP_RMP_CHECK_OK);
    /* smashed: every 2M IO page over it faults */
    g_assert_cmpint(snp_rmp_table_psmash(t, 4 * MiB), ==, SNP_RMP_OK);
    g_assert_cmpint(check(5 * MiB, 0, 2 * MiB, 0), ==,
                    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH);
    g_assert_cmpint(snp_rmp_check_dma(t, 5 * MiB, 0, SNP_RMP_SIZE_2M, 0,
                                      &rmp_size), ==,
                    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH);
    g_assert_cmpint(rmp_size, ==, SNP_RMP_SIZE_4K);
    g_assert_cmpint(check(5 * MiB, 0, 4096, 0), ==, SNP_RMP_CHECK_OK);
    /* not RAM: not checked */
    g_assert_cmpint(check(64 * MiB, 0, 2 * MiB, 0), ==, SNP_RMP_CHECK_NOT_RAM);
}

static void test_ownership(void)
{
    SnpRmpAttrs a = { .assigned = true, .asid = 3, .gpa = 0x10000,
                      .validated = true };

    setup();
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_4K, &a), ==,
                    SNP_RMP_OK);
    /* R3: ordinary devices never touch assigned pages */
    g_assert_cmpint(check(8 * MiB, 0x10000, 4096, 0), ==,
                    SNP_RMP_CHECK_ASSIGNED);
    /* R4: the bound device of ASID 3 at the right GPA does */
    g_assert_cmpint(check(8 * MiB + 8, 0x10008, 4096, 3), ==,
                    SNP_RMP_CHECK_OK);
    g_assert_cmpint(check(8 * MiB, 0x10000, 4096, 4), ==,
                    SNP_RMP_CHECK_ASID_MISMATCH);
    g_assert_cmpint(check(8 * MiB, 0x20000, 4096, 3), ==,
                    SNP_RMP_CHECK_GPA_MISMATCH);
    a.validated = false;
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB, SNP_RMP_SIZE_4K, &a), ==,
                    SNP_RMP_OK);
    g_assert_cmpint(check(8 * MiB, 0x10000, 4096, 3), ==,
                    SNP_RMP_CHECK_NOT_VALIDATED);
    /* bound devices still reach hypervisor-owned pages */
    g_assert_cmpint(check(8 * MiB + K4, 0x99000, 4096, 3), ==,
                    SNP_RMP_CHECK_OK);
    /* a 2M private page: the GPA is compared at 2M */
    a = (SnpRmpAttrs) { .assigned = true, .asid = 3, .gpa = 0x200000,
                        .validated = true };
    g_assert_cmpint(snp_rmp_table_update(t, 10 * MiB, SNP_RMP_SIZE_2M, &a), ==,
                    SNP_RMP_OK);
    g_assert_cmpint(check(11 * MiB, 0x300000, 2 * MiB, 3), ==,
                    SNP_RMP_CHECK_OK);
    g_assert_cmpint(check(11 * MiB, 0x500000, 2 * MiB, 3), ==,
                    SNP_RMP_CHECK_GPA_MISMATCH);
    /* the size check comes first */
    g_assert_cmpint(check(11 * MiB, 0x300000, 4096, 3), ==,
                    SNP_RMP_CHECK_PAGE_SIZE_MISMATCH);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    t = snp_rmp_table_new(&ram, 1);
    g_test_add_func("/snp-rmp-check/rounding", test_rounding);
    g_test_add_func("/snp-rmp-check/size-match", test_size_match);
    g_test_add_func("/snp-rmp-check/ownership", test_ownership);
    ret = g_test_run();
    snp_rmp_table_free(t);
    return ret;
}
