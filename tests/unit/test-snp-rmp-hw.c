/*
 * Unit tests of the RMP's hardware layout, RMPUPDATE's operand and the
 * host-write check
 *
 * Expected values come from Linux (arch/x86/virt/svm/sev.c: struct
 * rmpentry_raw / struct rmpentry in 6.12, RMPTABLE_CPU_BOOKKEEPING_SZ,
 * snp_rmptable_init()'s size check, struct rmp_state,
 * RMPUPDATE_FAIL_OVERLAP; arch/x86/include/asm/sev.h) and from the APM's
 * RMPUPDATE/PSMASH return codes; research/cpu-snp-host-facts.md cites
 * each.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "hw/i386/snp-rmp-hw.h"
#include "hw/i386/snp-rmp-check.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/*
 * Linux 6.12 snp_rmptable_init(): the RMP must be at least
 * (max_rmp_pfn << 4) + RMPTABLE_CPU_BOOKKEEPING_SZ (0x4000) bytes.
 */
static void test_table_size(void)
{
    g_assert_cmphex(snp_rmp_hw_table_size(GiB), ==, (0x40000ULL << 4) + 0x4000);
    g_assert_cmphex(snp_rmp_hw_table_size(6 * GiB), ==,
                    (0x180000ULL << 4) + 0x4000);
    /* a partial last page still has its entry */
    g_assert_cmphex(snp_rmp_hw_table_size(4096 + 1), ==, 2 * 16 + 0x4000);
    /* entry of PFN n at base + 0x4000 + 16 * n (get_rmpentry) */
    g_assert_cmphex(snp_rmp_hw_entry_offset(0x12345000), ==,
                    0x4000 + 0x12345 * 16);
}

/*
 * struct rmpentry (6.12): assigned bit 0, pagesize bit 1, immutable bit 2,
 * gpa bits 50:12, asid bits 60:51, vmsa bit 61, validated bit 62.
 */
static void test_encode(void)
{
    SnpRmpPage p = {
        .size = SNP_RMP_SIZE_4K,
        .attrs = { .assigned = true, .immutable = true, .asid = 0x3ff,
                   .gpa = 0x7ffffffff000ULL, .validated = true },
    };
    SnpRmpAttrs a;

    g_assert_cmphex(snp_rmp_hw_encode(&p), ==,
                    1ULL | 4ULL | 0x7ffffffff000ULL | (0x3ffULL << 51) |
                    (1ULL << 62));
    p.size = SNP_RMP_SIZE_2M;
    p.attrs = (SnpRmpAttrs) { .gpa = 0x200000, .asid = 5 };
    g_assert_cmphex(snp_rmp_hw_encode(&p), ==,
                    2ULL | 0x200000ULL | (5ULL << 51));
    /* a fresh entry is all zero: what snp_rmptable_init() writes */
    p = (SnpRmpPage) { .size = SNP_RMP_SIZE_4K };
    g_assert_cmphex(snp_rmp_hw_encode(&p), ==, 0);

    /* a firmware page, as rmp_mark_pages_firmware() makes it */
    snp_rmp_hw_decode(1ULL | 4ULL, &a);
    g_assert_true(a.assigned && a.immutable && !a.validated);
    g_assert_cmphex(a.gpa, ==, 0);
    g_assert_cmpuint(a.asid, ==, 0);
    snp_rmp_hw_decode(1ULL | 0x123456000ULL | (7ULL << 51) | (1ULL << 62),
                      &a);
    g_assert_true(a.assigned && !a.immutable && a.validated);
    g_assert_cmphex(a.gpa, ==, 0x123456000ULL);
    g_assert_cmpuint(a.asid, ==, 7);
    g_assert_true(snp_rmp_hw_is_2m(2));
    g_assert_false(snp_rmp_hw_is_2m(1 | 4));
}

/*
 * struct rmp_state: u64 gpa; u8 assigned, pagesize, immutable, rsvd;
 * u32 asid
 */
static void state(uint8_t *buf, uint64_t gpa, uint8_t assigned,
                  uint8_t pagesize, uint8_t immutable, uint32_t asid)
{
    memset(buf, 0, SNP_RMPUPDATE_STATE_SIZE);
    stq_le_p(buf, gpa);
    buf[8] = assigned;
    buf[9] = pagesize;
    buf[10] = immutable;
    stl_le_p(buf + 12, asid);
}

static void test_rmpupdate_state(void)
{
    uint8_t buf[SNP_RMPUPDATE_STATE_SIZE];
    SnpRmpUpdateState st;

    /* rmp_make_private(pfn, gpa, PG_LEVEL_2M, asid 3, false) */
    state(buf, 0x40000000, 1, 1, 0, 3);
    g_assert_cmpint(snp_rmpupdate_state_decode(buf, &st), ==, 0);
    g_assert_cmpint(st.size, ==, SNP_RMP_SIZE_2M);
    g_assert_true(st.attrs.assigned && !st.attrs.immutable &&
                  !st.attrs.validated);
    g_assert_cmphex(st.attrs.gpa, ==, 0x40000000);
    g_assert_cmpuint(st.attrs.asid, ==, 3);
    /* rmp_mark_pages_firmware(): assigned, immutable, 4K, asid 0, gpa 0 */
    state(buf, 0, 1, 0, 1, 0);
    g_assert_cmpint(snp_rmpupdate_state_decode(buf, &st), ==, 0);
    g_assert_cmpint(st.size, ==, SNP_RMP_SIZE_4K);
    g_assert_true(st.attrs.assigned && st.attrs.immutable);
    /* invalid input (APM: FAIL_INPUT = 1) */
    state(buf, 0, 1, 2, 0, 0);
    g_assert_cmpint(snp_rmpupdate_state_decode(buf, &st), ==, 1);
    state(buf, 0, 1, 0, 0, 0x400);         /* ASID beyond bits 60:51 */
    g_assert_cmpint(snp_rmpupdate_state_decode(buf, &st), ==, 1);
    state(buf, 1ULL << 51, 1, 0, 0, 1);    /* GPA beyond bits 50:12 */
    g_assert_cmpint(snp_rmpupdate_state_decode(buf, &st), ==, 1);
    state(buf, 0x1000, 1, 1, 0, 1);        /* 2M page, 4K-aligned GPA */
    g_assert_cmpint(snp_rmpupdate_state_decode(buf, &st), ==, 1);
}

/*
 * APM return codes: FAIL_INPUT 1, FAIL_PERMISSION 2 (immutable),
 * FAIL_OVERLAP 4 (Linux RMPUPDATE_FAIL_OVERLAP: 4K and 2M entries
 * overlap); PSMASH's 7 for a page that cannot be expanded.
 */
static void test_status(void)
{
    g_assert_cmpint(snp_rmpupdate_status(SNP_RMP_OK), ==, 0);
    g_assert_cmpint(snp_rmpupdate_status(SNP_RMP_ERR_UNALIGNED), ==, 1);
    g_assert_cmpint(snp_rmpupdate_status(SNP_RMP_ERR_NOT_RAM), ==, 1);
    g_assert_cmpint(snp_rmpupdate_status(SNP_RMP_ERR_IMMUTABLE), ==, 2);
    g_assert_cmpint(snp_rmpupdate_status(SNP_RMP_ERR_OVERLAP), ==, 4);
    g_assert_cmpint(snp_rmpupdate_status(SNP_RMP_ERR_IS_2M), ==, 4);
    g_assert_cmpint(snp_psmash_status(SNP_RMP_OK), ==, 0);
    g_assert_cmpint(snp_psmash_status(SNP_RMP_ERR_UNALIGNED), ==, 1);
    g_assert_cmpint(snp_psmash_status(SNP_RMP_ERR_NOT_2M), ==, 7);
}

/*
 * Host writes: an assigned page faults; a mapping of 2M or more is
 * checked as 2M ("even accesses from 1GB mappings will be treated as 2MB
 * accesses", Linux adjust_direct_map()) and faults if any 4K page of the
 * region is assigned.
 */
static void test_host_write(void)
{
    SnpRmpRange ram = { 0, 64 * MiB };
    SnpRmpTable *t = snp_rmp_table_new(&ram, 1);
    SnpRmpAttrs fw = { .assigned = true, .immutable = true };
    SnpRmpAttrs guest = { .assigned = true, .asid = 1, .gpa = 0 };

    g_assert_cmpint(snp_rmp_check_host_write(t, 8 * MiB, 4096), ==,
                    SNP_RMP_CHECK_OK);
    g_assert_cmpint(snp_rmp_check_host_write(t, 8 * MiB, GiB), ==,
                    SNP_RMP_CHECK_OK);
    g_assert_cmpint(snp_rmp_table_update(t, 8 * MiB + 0x5000,
                                         SNP_RMP_SIZE_4K, &fw), ==,
                    SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_check_host_write(t, 8 * MiB + 0x5000, 4096), ==,
                    SNP_RMP_CHECK_ASSIGNED);
    g_assert_cmpint(snp_rmp_check_host_write(t, 8 * MiB + 0x6000, 4096), ==,
                    SNP_RMP_CHECK_OK);
    g_assert_cmpint(snp_rmp_check_host_write(t, 8 * MiB + 0x6000, 2 * MiB),
                    ==, SNP_RMP_CHECK_ASSIGNED);
    g_assert_cmpint(snp_rmp_check_host_write(t, 9 * MiB, GiB), ==,
                    SNP_RMP_CHECK_ASSIGNED);
    g_assert_cmpint(snp_rmp_check_host_write(t, 10 * MiB, 2 * MiB), ==,
                    SNP_RMP_CHECK_OK);
    /* a 2M guest page: every 4K page of it is assigned */
    g_assert_cmpint(snp_rmp_table_update(t, 12 * MiB, SNP_RMP_SIZE_2M,
                                         &guest), ==, SNP_RMP_OK);
    g_assert_cmpint(snp_rmp_check_host_write(t, 13 * MiB + 0x3000, 4096), ==,
                    SNP_RMP_CHECK_ASSIGNED);
    /* not RAM: not checked */
    g_assert_cmpint(snp_rmp_check_host_write(t, 128 * MiB, 4096), ==,
                    SNP_RMP_CHECK_OK);
    snp_rmp_table_free(t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/snp-rmp-hw/table-size", test_table_size);
    g_test_add_func("/snp-rmp-hw/encode", test_encode);
    g_test_add_func("/snp-rmp-hw/rmpupdate-state", test_rmpupdate_state);
    g_test_add_func("/snp-rmp-hw/status", test_status);
    g_test_add_func("/snp-rmp-hw/host-write", test_host_write);
    return g_test_run();
}
