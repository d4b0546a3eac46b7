/*
 * The SEV firmware of the emulated AMD Secure Processor (PSP)
 *
 * Which commands, and what each does: the behaviour of AMD's SEV firmware
 * as its published source shows it (github.com/amd/AMD-ASPFW, API 1.55,
 * sev_uapp: the dispatcher, the platform state tables, snp_mcmd_init_common,
 * configure_rmp, the IOMMU HAL), with the buffer layouts of Linux's
 * include/linux/psp-sev.h.  research/psp-facts.md in this repository
 * gathers the facts and their sources.  Commands that a host kernel issues
 * only from user space (/dev/sev: GET_ID, PEK/PDH, SNP_CONFIG) and guest
 * launch commands are not implemented yet: they fail with INVALID_COMMAND,
 * as the firmware answers an ID it has no handler for.
 *
 * Emulator's choices, documented in docs/system/i386/amd-iommu-snp-host.rst:
 * caches are coherent, so the WBINVD that DF_FLUSH requires since the
 * ASIDs became dirty is always done; the IOMMU's firmware pages
 * (Firmware_IOMMU) are firmware pages without the state tag in their GPA.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "qemu/log.h"
#include "system/address-spaces.h"
#include "hw/i386/sev-firmware.h"
#include "hw/i386/snp-rmp.h"
#include "trace.h"

#define PAGE_4K                 SNP_RMP_BYTES_4K

/* Command buffer lengths (Linux sev_cmd_buffer_len) */
#define LEN_PLATFORM_STATUS     12
#define LEN_INIT                20
#define LEN_INIT_EX             36
#define LEN_SNP_ADDR            8
#define LEN_SNP_INIT_EX         64
#define LEN_SNP_SHUTDOWN_EX     8
#define LEN_SNP_FEATURE_INFO    16
#define LEN_SNP_STATUS_OUT      32

#define INIT_FLAGS_SEV_ES       (1u << 0)
#define SEV_TMR                 (1u << 20)
#define SEV_TMR_SNP             (2u << 20)
#define INIT_EX_NV_LEN          (32 * 1024)

#define SNP_INIT_EX_INIT_RMP    (1u << 0)
#define SNP_INIT_EX_LIST_EN     (1u << 1)
/* the range list is one page: up to 255 entries of 16 bytes after 8 */
#define SNP_RANGE_LIST_MAX      255

#define SNP_SHUTDOWN_EX_IOMMU   (1u << 0)

/* SNP_PLATFORM_STATUS flags: SNP_FEATURE_INFO is implemented */
#define SNP_STATUS_FEATURE_INFO (1u << 3)

/*
 * The TCB version, a stand-in: boot loader 9, TEE 0, SNP 25, microcode 0
 * (bytes 0, 1, 6 and 7 of the TCB_VERSION structure).
 */
#define SEV_FW_TCB_VERSION      (9ULL | (25ULL << 48))

static const char *const command_names[256] = {
    [SEV_CMD_INIT] = "INIT",
    [SEV_CMD_SHUTDOWN] = "SHUTDOWN",
    [SEV_CMD_PLATFORM_STATUS] = "PLATFORM_STATUS",
    [SEV_CMD_DF_FLUSH] = "DF_FLUSH",
    [SEV_CMD_INIT_EX] = "INIT_EX",
    [SEV_CMD_SNP_INIT] = "SNP_INIT",
    [SEV_CMD_SNP_SHUTDOWN] = "SNP_SHUTDOWN",
    [SEV_CMD_SNP_PLATFORM_STATUS] = "SNP_PLATFORM_STATUS",
    [SEV_CMD_SNP_DF_FLUSH] = "SNP_DF_FLUSH",
    [SEV_CMD_SNP_INIT_EX] = "SNP_INIT_EX",
    [SEV_CMD_SNP_SHUTDOWN_EX] = "SNP_SHUTDOWN_EX",
    [SEV_CMD_SNP_PAGE_RECLAIM] = "SNP_PAGE_RECLAIM",
    [SEV_CMD_SNP_FEATURE_INFO] = "SNP_FEATURE_INFO",
    /* known to Linux, not implemented here */
    [0x03] = "FACTORY_RESET", [0x05] = "PEK_GEN", [0x06] = "PEK_CSR",
    [0x07] = "PEK_CERT_IMPORT", [0x08] = "PDH_CERT_EXPORT",
    [0x09] = "PDH_GEN", [0x0b] = "DOWNLOAD_FIRMWARE", [0x0c] = "GET_ID",
    [0x20] = "DECOMMISSION", [0x21] = "ACTIVATE", [0x22] = "DEACTIVATE",
    [0x23] = "GUEST_STATUS", [0x30] = "LAUNCH_START",
    [0x31] = "LAUNCH_UPDATE_DATA", [0x32] = "LAUNCH_UPDATE_VMSA",
    [0x33] = "LAUNCH_MEASURE", [0x34] = "LAUNCH_UPDATE_SECRET",
    [0x35] = "LAUNCH_FINISH", [0x36] = "ATTESTATION_REPORT",
    [0x90] = "SNP_DECOMMISSION", [0x91] = "SNP_ACTIVATE",
    [0x92] = "SNP_GUEST_STATUS", [0x93] = "SNP_GCTX_CREATE",
    [0x94] = "SNP_GUEST_REQUEST", [0x95] = "SNP_ACTIVATE_EX",
    [0xa0] = "SNP_LAUNCH_START", [0xa1] = "SNP_LAUNCH_UPDATE",
    [0xa2] = "SNP_LAUNCH_FINISH", [0xb0] = "SNP_DBG_DECRYPT",
    [0xb1] = "SNP_DBG_ENCRYPT", [0xc9] = "SNP_CONFIG",
    [0xca] = "SNP_DOWNLOAD_FIRMWARE_EX", [0xcb] = "SNP_COMMIT",
    [0xcd] = "SNP_VLEK_LOAD",
};

const char *sev_firmware_command_name(uint8_t cmd)
{
    return command_names[cmd];
}

void sev_firmware_reset(SevFirmware *fw)
{
    fw->sev_state = SEV_STATE_UNINIT;
    fw->sev_es = false;
    fw->snp_state = SEV_STATE_UNINIT;
    fw->rmp_initialized = false;
    fw->guest_count = 0;
    fw->n_iommu = 0;
}

static bool fw_read(SevFirmware *fw, uint64_t addr, void *buf, size_t len)
{
    return address_space_read(fw->as, addr, MEMTXATTRS_UNSPECIFIED, buf,
                              len) == MEMTX_OK;
}

static bool fw_write(SevFirmware *fw, uint64_t addr, const void *buf,
                     size_t len)
{
    return address_space_write(fw->as, addr, MEMTXATTRS_UNSPECIFIED, buf,
                               len) == MEMTX_OK;
}

static bool crosses_page(uint64_t addr, uint64_t len)
{
    return (addr & (PAGE_4K - 1)) + len > PAGE_4K;
}

static SnpRmpTable *fw_table(SevFirmware *fw)
{
    return snp_rmp_get_table(fw->rmp);
}

/* A page SNP_INIT gave the IOMMU (the firmware's Firmware_IOMMU state) */
static bool is_iommu_page(SevFirmware *fw, uint64_t spa)
{
    for (uint32_t i = 0; i < fw->n_iommu; i++) {
        if (spa >= fw->iommu[i].start &&
            spa - fw->iommu[i].start < fw->iommu[i].size) {
            return true;
        }
    }
    return false;
}

/* A page in the Firmware state: assigned to no guest, immutable */
static bool is_firmware_page(SevFirmware *fw, uint64_t spa,
                             const SnpRmpPage *p)
{
    return p->attrs.assigned && p->attrs.immutable && !p->attrs.asid &&
           !p->attrs.validated && !is_iommu_page(fw, spa);
}

/*
 * May the firmware write [addr, addr + len)?  Once the RMP is initialised
 * only into its own pages (ASPFW check_page_range_firmware_writable).
 */
static bool firmware_writable(SevFirmware *fw, uint64_t addr, uint64_t len)
{
    SnpRmpPage page;

    if (!fw->rmp || fw->snp_state != SEV_STATE_INIT || !len) {
        return true;
    }
    if (addr + len < addr) {
        return false;
    }
    for (uint64_t p = QEMU_ALIGN_DOWN(addr, PAGE_4K); p < addr + len;
         p += PAGE_4K) {
        if (!snp_rmp_table_lookup(fw_table(fw), p, &page) ||
            !is_firmware_page(fw, p, &page)) {
            return false;
        }
    }
    return true;
}

/*
 * After a command that wrote its buffer, the firmware lets go of the page:
 * Firmware becomes Reclaim (immutable clear), which SNP_PAGE_RECLAIM then
 * finds done (ASPFW sev_dispatch_master).
 */
static void release_buffer_page(SevFirmware *fw, uint64_t addr)
{
    SnpRmpPage page;
    uint64_t p = QEMU_ALIGN_DOWN(addr, PAGE_4K);

    if (!fw->rmp || !fw->rmp_initialized ||
        !snp_rmp_table_lookup(fw_table(fw), p, &page) ||
        !is_firmware_page(fw, p, &page) || page.size != SNP_RMP_SIZE_4K) {
        return;
    }
    page.attrs.immutable = false;
    snp_rmp_firmware_update(fw->rmp, p, SNP_RMP_SIZE_4K, &page.attrs);
}

static uint16_t cmd_platform_status(SevFirmware *fw, uint64_t buf)
{
    uint8_t out[LEN_PLATFORM_STATUS] = { 0 };
    bool snp = fw->snp_state == SEV_STATE_INIT;

    /* once SNP is up, the buffer must be the firmware's page */
    if (snp && !firmware_writable(fw, buf, sizeof(out))) {
        return SEV_RET_INVALID_PAGE_STATE;
    }
    out[0] = SEV_FW_API_MAJOR;
    out[1] = SEV_FW_API_MINOR;
    out[2] = fw->sev_state;
    /* owner (byte 3 bit 0): self-owned, 0; config ES: byte 4 bit 0 */
    if (fw->sev_state != SEV_STATE_UNINIT) {
        out[4] = fw->sev_es;
        stl_le_p(out + 8, fw->guest_count);
    }
    out[7] = SEV_FW_BUILD;
    if (!fw_write(fw, buf, out, sizeof(out))) {
        return SEV_RET_INVALID_ADDRESS;
    }
    if (snp) {
        release_buffer_page(fw, buf);
    }
    return SEV_RET_SUCCESS;
}

/* INIT and INIT_EX: the legacy SEV platform */
static uint16_t cmd_init(SevFirmware *fw, uint64_t buf, bool ex)
{
    uint8_t in[LEN_INIT_EX];
    uint32_t flags, tmr_len;
    uint64_t tmr;
    unsigned off = ex ? 4 : 0;

    if (fw->sev_state != SEV_STATE_UNINIT) {
        return SEV_RET_INVALID_PLATFORM_STATE;
    }
    if (!fw_read(fw, buf, in, ex ? LEN_INIT_EX : LEN_INIT)) {
        return SEV_RET_INVALID_ADDRESS;
    }
    flags = ldl_le_p(in + off);
    tmr = ldq_le_p(in + off + 4 + (ex ? 0 : 4));
    tmr_len = ldl_le_p(in + off + 12 + (ex ? 0 : 4));
    /* reserved: the other flags, the word after them (INIT) */
    if ((flags & ~INIT_FLAGS_SEV_ES) || (!ex && ldl_le_p(in + 4))) {
        return SEV_RET_INVALID_CONFIG;
    }
    /* SNPEn everywhere but no RMP: SEV cannot trust the memory map */
    if (!fw->rmp_initialized && fw->ops->cpus_snp_enabled &&
        fw->ops->cpus_snp_enabled(fw->opaque)) {
        return SEV_RET_INVALID_PLATFORM_STATE;
    }
    if (ex) {
        uint64_t nv = ldq_le_p(in + 24);

        if (ldl_le_p(in) != LEN_INIT_EX) {
            return SEV_RET_INVALID_LEN;
        }
        if (nv & (PAGE_4K - 1)) {
            return SEV_RET_INVALID_ADDRESS;
        }
        if (ldl_le_p(in + 32) != INIT_EX_NV_LEN) {
            return SEV_RET_INVALID_LEN;
        }
        if (!firmware_writable(fw, nv, INIT_EX_NV_LEN)) {
            return SEV_RET_INVALID_PAGE_STATE;
        }
    }
    if (flags & INIT_FLAGS_SEV_ES) {
        /*
         * The SEV-ES Trusted Memory Region: 1M, or 2M once the RMP is
         * initialised, aligned to its size (ASPFW sev_es.c); Linux's
         * SEV_TMR_SIZE and SNP_TMR_SIZE are the same.
         */
        uint32_t want = fw->rmp_initialized ? SEV_TMR_SNP : SEV_TMR;

        if (tmr_len != want) {
            return SEV_RET_INVALID_LEN;
        }
        if (tmr & (want - 1)) {
            return SEV_RET_INVALID_ADDRESS;
        }
        if (!firmware_writable(fw, tmr, tmr_len)) {
            return SEV_RET_INVALID_PAGE_STATE;
        }
    }
    fw->sev_state = SEV_STATE_INIT;
    fw->sev_es = flags & INIT_FLAGS_SEV_ES;
    fw->guest_count = 0;
    return SEV_RET_SUCCESS;
}

/*
 * The firmware's new RMP (ASPFW configure_rmp): RAM is the hypervisor's,
 * the ranges the kernel lists are HV_FIXED, the RMP's own pages are
 * firmware pages, and so are the IOMMUs' logs and completion-wait pages.
 */
static void mark_range(SnpRmpTable *t, uint64_t base, uint64_t len,
                       const SnpRmpAttrs *attrs, uint64_t skip_base,
                       uint64_t skip_end)
{
    uint64_t top = snp_rmp_table_ram_top(t);
    uint64_t end;

    /* what is not RAM has no entry: at most RAM's pages, no wrap */
    if (base >= top) {
        return;
    }
    end = base + MIN(len, top - base);
    for (uint64_t p = QEMU_ALIGN_DOWN(base, PAGE_4K); p < end;
         p += PAGE_4K) {
        if (p >= skip_base && p < skip_end) {
            continue;
        }
        if (snp_rmp_table_is_2m(t, p)) {
            snp_rmp_table_psmash(t, QEMU_ALIGN_DOWN(p, SNP_RMP_BYTES_2M));
        }
        /* what is not RAM has no entry to change */
        snp_rmp_table_firmware_update(t, p, SNP_RMP_SIZE_4K, attrs);
    }
}

static int range_cmp(const void *a, const void *b)
{
    const SnpRmpRange *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/*
 * Mark @n ranges (sorted and merged first, so that overlapping ranges
 * cost nothing: at most RAM's pages in all, whatever the guest lists).
 * @r becomes the merged ranges; returns how many.
 */
static unsigned mark_ranges(SnpRmpTable *t, SnpRmpRange *r, unsigned n,
                        const SnpRmpAttrs *attrs, uint64_t skip_base,
                        uint64_t skip_end)
{
    uint64_t top = snp_rmp_table_ram_top(t);
    unsigned m = 0;

    for (unsigned i = 0; i < n; i++) {
        /* page-aligned, clipped to RAM: no sum below can wrap */
        uint64_t start = QEMU_ALIGN_DOWN(r[i].start, PAGE_4K);

        if (start >= top || !r[i].size) {
            continue;
        }
        r[m].size = MIN(r[i].size + (r[i].start - start), top - start);
        r[m++].start = start;
    }
    qsort(r, m, sizeof(*r), range_cmp);
    n = 0;
    for (unsigned i = 0; i < m;) {
        uint64_t start = r[i].start, end = start + r[i].size;

        for (i++; i < m && r[i].start <= end; i++) {
            end = MAX(end, r[i].start + r[i].size);
        }
        mark_range(t, start, end - start, attrs, skip_base, skip_end);
        r[n++] = (SnpRmpRange) { start, end - start };
    }
    return n;
}

static uint16_t cmd_snp_init(SevFirmware *fw, uint64_t buf, bool ex)
{
    static const SnpRmpAttrs hv_fixed = { .immutable = true };
    static const SnpRmpAttrs firmware = { .assigned = true,
                                          .immutable = true };
    uint8_t in[LEN_SNP_INIT_EX] = { 0 };
    uint8_t list[PAGE_4K];
    SnpRmpRange ranges[SNP_RANGE_LIST_MAX];
    uint32_t bits = SNP_INIT_EX_INIT_RMP, n = 0;
    uint64_t list_pa = 0, rmp_base, rmp_end;
    SnpRmpTable *fresh;

    if (!fw->rmp) {
        return SEV_RET_INVALID_CONFIG;
    }
    if (ex) {
        if (!fw_read(fw, buf, in, sizeof(in))) {
            return SEV_RET_INVALID_ADDRESS;
        }
        bits = ldl_le_p(in);
        list_pa = ldq_le_p(in + 8);
        /* reserved fields: everything but init_rmp and list_paddr_en */
        if (bits & ~(SNP_INIT_EX_INIT_RMP | SNP_INIT_EX_LIST_EN) ||
            ldl_le_p(in + 4) || !buffer_is_zero(in + 16, sizeof(in) - 16)) {
            return SEV_RET_INVALID_PARAM;
        }
    }
    if (fw->snp_state != SEV_STATE_UNINIT ||
        fw->sev_state != SEV_STATE_UNINIT) {
        return SEV_RET_INVALID_PLATFORM_STATE;
    }
    if (!(bits & SNP_INIT_EX_INIT_RMP)) {
        if (!fw->rmp_initialized) {
            return SEV_RET_RMP_INIT_REQUIRED;
        }
        if (bits & SNP_INIT_EX_LIST_EN) {
            return SEV_RET_INVALID_PARAM;
        }
    }
    if (!fw->ops->cpus_ready(fw->opaque, bits & SNP_INIT_EX_INIT_RMP,
                             &rmp_base, &rmp_end)) {
        return SEV_RET_INVALID_CONFIG;
    }
    if (bits & SNP_INIT_EX_LIST_EN) {
        if (crosses_page(list_pa, 8) || !fw_read(fw, list_pa, list, 8)) {
            return SEV_RET_INVALID_ADDRESS;
        }
        n = ldl_le_p(list);
        if (n > SNP_RANGE_LIST_MAX || ldl_le_p(list + 4) ||
            crosses_page(list_pa, 8 + 16ULL * n)) {
            return SEV_RET_INVALID_PARAM;
        }
        if (!fw_read(fw, list_pa + 8, list + 8, 16 * n)) {
            return SEV_RET_INVALID_ADDRESS;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *e = list + 8 + 16 * i;

            if ((ldq_le_p(e) & (PAGE_4K - 1)) || ldl_le_p(e + 12)) {
                return SEV_RET_INVALID_PARAM;
            }
        }
    }
    if (!(bits & SNP_INIT_EX_INIT_RMP)) {
        fw->snp_state = SEV_STATE_INIT;
        return SEV_RET_SUCCESS;
    }

    fresh = snp_rmp_table_new_like(fw_table(fw));
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = list + 8 + 16 * i;

        ranges[i].start = ldq_le_p(e);
        ranges[i].size = (uint64_t)ldl_le_p(e + 8) * PAGE_4K;
    }
    mark_ranges(fresh, ranges, n, &hv_fixed, rmp_base, rmp_end + 1);
    mark_range(fresh, rmp_base, rmp_end + 1 - rmp_base, &firmware, 0, 0);
    fw->n_iommu = fw->ops->iommu_buffers ?
                  fw->ops->iommu_buffers(fw->opaque, fw->iommu,
                                         SEV_FW_MAX_IOMMU_RANGES) : 0;
    /* recorded merged, for SNP_SHUTDOWN_EX: at most RAM's pages */
    fw->n_iommu = mark_ranges(fresh, fw->iommu, fw->n_iommu, &firmware, 0,
                              0);
    snp_rmp_load(fw->rmp, fresh);
    snp_rmp_table_free(fresh);
    fw->rmp_initialized = true;
    fw->snp_state = SEV_STATE_INIT;
    fw->guest_count = 0;
    trace_sev_firmware_snp_init(n, fw->n_iommu, rmp_base, rmp_end);
    return SEV_RET_SUCCESS;
}

static uint16_t cmd_snp_platform_status(SevFirmware *fw, uint64_t buf)
{
    uint8_t in[LEN_SNP_ADDR], out[LEN_SNP_STATUS_OUT] = { 0 };
    uint64_t addr;

    if (!fw_read(fw, buf, in, sizeof(in))) {
        return SEV_RET_INVALID_ADDRESS;
    }
    addr = ldq_le_p(in);
    if (crosses_page(addr, sizeof(out))) {
        return SEV_RET_INVALID_PARAM;
    }
    if (fw->snp_state == SEV_STATE_INIT &&
        !firmware_writable(fw, addr, sizeof(out))) {
        return SEV_RET_INVALID_PAGE_STATE;
    }
    out[0] = SEV_FW_API_MAJOR;
    out[1] = SEV_FW_API_MINOR;
    out[2] = fw->snp_state;
    out[3] = fw->rmp_initialized;
    stl_le_p(out + 4, SEV_FW_BUILD);
    stl_le_p(out + 8, SNP_STATUS_FEATURE_INFO);
    stl_le_p(out + 12, fw->guest_count);
    stq_le_p(out + 16, SEV_FW_TCB_VERSION);
    stq_le_p(out + 24, SEV_FW_TCB_VERSION);
    return fw_write(fw, addr, out, sizeof(out)) ? SEV_RET_SUCCESS
                                                : SEV_RET_INVALID_ADDRESS;
}

/*
 * SNP_FEATURE_INFO: like CPUID, EAX of leaf 0 is the highest leaf.  No
 * optional feature (VLEK, x86 SNP shutdown, ciphertext hiding, ...).
 */
static uint16_t cmd_snp_feature_info(SevFirmware *fw, uint64_t buf)
{
    uint8_t in[LEN_SNP_FEATURE_INFO], out[16] = { 0 };
    uint32_t ecx_in;
    uint64_t addr;

    if (!fw_read(fw, buf, in, sizeof(in))) {
        return SEV_RET_INVALID_ADDRESS;
    }
    ecx_in = ldl_le_p(in + 4);
    addr = ldq_le_p(in + 8);
    if (ldl_le_p(in) != LEN_SNP_FEATURE_INFO || ecx_in > 1 || (addr & 3) ||
        crosses_page(addr, sizeof(out))) {
        return SEV_RET_INVALID_PARAM;
    }
    if (ecx_in == 0) {
        stl_le_p(out, 1);
    }
    return fw_write(fw, addr, out, sizeof(out)) ? SEV_RET_SUCCESS
                                                : SEV_RET_INVALID_ADDRESS;
}

static uint16_t cmd_snp_shutdown(SevFirmware *fw, uint64_t buf, bool ex)
{
    static const SnpRmpAttrs reclaim = { .assigned = true };
    uint8_t in[LEN_SNP_SHUTDOWN_EX];
    uint32_t bits = 0;

    if (fw->sev_state != SEV_STATE_UNINIT) {
        return SEV_RET_INVALID_PLATFORM_STATE;
    }
    if (fw->snp_state == SEV_STATE_UNINIT) {
        return SEV_RET_SUCCESS;
    }
    if (ex) {
        if (!fw_read(fw, buf, in, sizeof(in))) {
            return SEV_RET_INVALID_ADDRESS;
        }
        bits = ldl_le_p(in + 4);
        /* x86_snp_shutdown needs SNP_FEATURE_INFO's X86_SNP_SHUTDOWN */
        if (ldl_le_p(in) != LEN_SNP_SHUTDOWN_EX ||
            (bits & ~SNP_SHUTDOWN_EX_IOMMU)) {
            return SEV_RET_INVALID_PARAM;
        }
    }
    if (bits & SNP_SHUTDOWN_EX_IOMMU) {
        /*
         * The IOMMU leaves SNP mode: its pages are the kernel's to take,
         * and the RMP must be initialised again (ASPFW
         * snp_mcmd_shutdown_common).
         */
        uint64_t top = snp_rmp_table_ram_top(fw_table(fw));

        for (uint32_t i = 0; i < fw->n_iommu; i++) {
            uint64_t start = fw->iommu[i].start, end;

            if (start >= top) {
                continue;
            }
            end = start + MIN(fw->iommu[i].size, top - start);
            for (uint64_t p = start; p < end; p += PAGE_4K) {
                snp_rmp_firmware_update(fw->rmp, p, SNP_RMP_SIZE_4K,
                                        &reclaim);
            }
        }
        fw->n_iommu = 0;
        fw->rmp_initialized = false;
    }
    fw->snp_state = SEV_STATE_UNINIT;
    fw->guest_count = 0;
    return SEV_RET_SUCCESS;
}

static uint16_t cmd_snp_page_reclaim(SevFirmware *fw, uint64_t buf)
{
    uint8_t in[LEN_SNP_ADDR];
    uint64_t paddr, spa;
    SnpRmpSize size;
    SnpRmpPage page;

    if (!fw_read(fw, buf, in, sizeof(in))) {
        return SEV_RET_INVALID_ADDRESS;
    }
    paddr = ldq_le_p(in);
    if (paddr & 0xffe) {
        return SEV_RET_INVALID_PARAM;
    }
    if (fw->snp_state != SEV_STATE_INIT) {
        return SEV_RET_INVALID_PLATFORM_STATE;
    }
    size = paddr & 1 ? SNP_RMP_SIZE_2M : SNP_RMP_SIZE_4K;
    spa = paddr & ~(PAGE_4K - 1);
    if (!snp_rmp_table_lookup(fw_table(fw), spa, &page)) {
        return SEV_RET_INVALID_ADDRESS;
    }
    if (page.size != size) {
        return SEV_RET_INVALID_PAGE_SIZE;
    }
    if (size == SNP_RMP_SIZE_2M && (spa & (SNP_RMP_BYTES_2M - 1))) {
        return SEV_RET_INVALID_ADDRESS;
    }
    if (!page.attrs.immutable) {
        return SEV_RET_SUCCESS;
    }
    if (!is_firmware_page(fw, spa, &page)) {
        return SEV_RET_INVALID_PAGE_STATE;
    }
    /* Firmware becomes Reclaim: only immutable changes */
    page.attrs.immutable = false;
    page.attrs.gpa = QEMU_ALIGN_DOWN(page.attrs.gpa, size == SNP_RMP_SIZE_2M ?
                                     SNP_RMP_BYTES_2M : PAGE_4K);
    snp_rmp_firmware_update(fw->rmp, spa, size, &page.attrs);
    return SEV_RET_SUCCESS;
}

static uint16_t dispatch(SevFirmware *fw, uint8_t cmd, uint64_t buf)
{
    switch (cmd) {
    case SEV_CMD_PLATFORM_STATUS:
        return cmd_platform_status(fw, buf);
    case SEV_CMD_INIT:
        return cmd_init(fw, buf, false);
    case SEV_CMD_INIT_EX:
        return cmd_init(fw, buf, true);
    case SEV_CMD_SHUTDOWN:
        fw->sev_state = SEV_STATE_UNINIT;
        fw->sev_es = false;
        fw->guest_count = 0;
        return SEV_RET_SUCCESS;
    case SEV_CMD_DF_FLUSH:
        return fw->sev_state == SEV_STATE_UNINIT ?
               SEV_RET_INVALID_PLATFORM_STATE : SEV_RET_SUCCESS;
    case SEV_CMD_SNP_INIT:
        return cmd_snp_init(fw, buf, false);
    case SEV_CMD_SNP_INIT_EX:
        return cmd_snp_init(fw, buf, true);
    case SEV_CMD_SNP_DF_FLUSH:
        return fw->snp_state == SEV_STATE_UNINIT ?
               SEV_RET_INVALID_PLATFORM_STATE : SEV_RET_SUCCESS;
    case SEV_CMD_SNP_PLATFORM_STATUS:
        return cmd_snp_platform_status(fw, buf);
    case SEV_CMD_SNP_FEATURE_INFO:
        return cmd_snp_feature_info(fw, buf);
    case SEV_CMD_SNP_SHUTDOWN:
        return cmd_snp_shutdown(fw, buf, false);
    case SEV_CMD_SNP_SHUTDOWN_EX:
        return cmd_snp_shutdown(fw, buf, true);
    case SEV_CMD_SNP_PAGE_RECLAIM:
        return cmd_snp_page_reclaim(fw, buf);
    }
    return SEV_RET_INVALID_COMMAND;
}

uint16_t sev_firmware_command(SevFirmware *fw, uint8_t cmd, uint64_t buf)
{
    uint16_t status;
    uint64_t version = fw->rmp ? snp_rmp_table_version(fw_table(fw)) : 0;

    /* without an RMP, SNP never initialises (cmd_snp_init) */
    status = dispatch(fw, cmd, buf);
    if (fw->rmp && fw->ops->rmp_changed &&
        snp_rmp_table_version(fw_table(fw)) != version) {
        fw->ops->rmp_changed(fw->opaque);
    }
    trace_sev_firmware_command(cmd, command_names[cmd] ?: "?", buf, status,
                               fw->sev_state, fw->snp_state);
    return status;
}
