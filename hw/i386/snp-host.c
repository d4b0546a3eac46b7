/*
 * The emulated SEV-SNP host platform (-object snp-rmp,host=on)
 *
 * The firmware's part: the RMP table is reserved at the top of the RAM
 * below 4G (e820-reserved, 2M-aligned at both ends, as Linux's
 * snp_fixup_e820_tables() wants it), RMP_BASE and RMP_END name it on
 * every CPU, and SYSCFG.MemEncryptionModEn and HWCR.SMMLOCK are set, as a
 * BIOS that enables SNP leaves them.
 *
 * The processor's part: SYSCFG's MFDM, SNPEn and VMPLEn; CPUID
 * Fn8000_001F; RMPUPDATE and PSMASH; the RMP check of host writes.
 *
 * The RMP: once a CPU sets SNPEn, the processor uses the table in RAM.
 * Then the snp-rmp model takes the table's contents, and from then on the
 * model is the RMP: every change (RMPUPDATE, PSMASH, the PSP, QMP) goes
 * through it and is written back to the table in the hardware layout,
 * where the kernel reads it.  Plain stores cannot change the table: its
 * own pages become firmware pages at SNPEn, so a CPU write faults (RMP #PF)
 * and a DMA is an RMP_PAGE_FAULT, through the same checks as any other
 * firmware page.  Real hardware leaves this to SNP_INIT, which puts the
 * RMP's pages in the Firmware state; Linux 6.12 sets SNPEn long before it
 * (and without a PSP never calls it), so the emulator protects the table
 * from SNPEn on: the emulator's choice, documented in
 * docs/system/i386/amd-iommu-snp.rst.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "exec/cputlb.h"
#include "hw/core/cpu.h"
#include "system/address-spaces.h"
#include "system/memory.h"
#include "system/tcg.h"
#include "system/system.h"
#include "system/reset.h"
#include "system/runstate.h"
#include "hw/qdev-core.h"
#include "hw/i386/snp-host.h"
#include "hw/i386/snp-rmp.h"
#include "hw/i386/snp-rmp-hw.h"
#include "hw/i386/snp-rmp-check.h"
#include "trace.h"

/*
 * CPUID Fn8000_001F of the emulated host.  EAX: SEV (1), SEV-ES (3),
 * SEV-SNP (4), VMPL (5); no SME, no RMPREAD (21, a Zen 5 feature), no
 * segmented RMP (23).  EBX: C-bit 51 as on Milan and Genoa, and no
 * reduction of the physical address width (Linux subtracts EBX[11:6]).
 * ECX: ASIDs 1-15, within the 16 that TCG's SVM offers (Fn8000_000A EBX);
 * EDX: SEV-ES and SNP guests use ASIDs 1-7, the others are for SEV.
 */
#define SNP_HOST_CPUID_EAX      ((1u << 1) | (1u << 3) | (1u << 4) | \
                                 (1u << 5))
#define SNP_HOST_CPUID_EBX      51
#define SNP_HOST_CPUID_ECX      15
#define SNP_HOST_CPUID_EDX      8

/* The firmware's reservation is 2M-aligned at both ends */
#define SNP_HOST_ALIGN          (2 * MiB)

typedef struct SnpHost {
    SnpRmp *rmp;
    uint64_t rmp_base;          /* RMP_BASE */
    uint64_t rmp_size;          /* RMP_END + 1 - RMP_BASE */
    bool snp_enabled;           /* some CPU has set SNPEn since reset */
    Notifier changed;           /* writes model changes to the table */
    Notifier machine_done;
} SnpHost;

static SnpHost snp_host;

bool snp_host_enabled(void)
{
    return snp_host.rmp != NULL;
}

uint64_t snp_host_reserve_ram(uint64_t below_4g, uint64_t ram_top)
{
    uint64_t size, base;

    if (!snp_host.rmp) {
        return 0;
    }
    size = ROUND_UP(snp_rmp_hw_table_size(ram_top), SNP_HOST_ALIGN);
    base = QEMU_ALIGN_DOWN(below_4g, SNP_HOST_ALIGN);
    if (base < size || base - size < below_4g / 2) {
        error_report("snp-rmp,host=on: the RMP table of 0x%" PRIx64
                     " bytes does not fit in the top half of the RAM "
                     "below 4G (0x%" PRIx64 " bytes)", size, below_4g);
        exit(EXIT_FAILURE);
    }
    snp_host.rmp_base = base - size;
    snp_host.rmp_size = size;
    trace_snp_host_reserve(snp_host.rmp_base, size);
    return below_4g - snp_host.rmp_base;
}

void snp_host_cpu_reset(CPUX86State *env)
{
    /* a CPU is reset at realize too, before the board has laid out RAM */
    if (!snp_host.rmp || !snp_host.rmp_size) {
        return;
    }
    env->msr_syscfg = SNP_SYSCFG_MEM_ENCRYPT;
    env->msr_hwcr |= SNP_HWCR_SMMLOCK;
    env->msr_rmp_base = snp_host.rmp_base;
    env->msr_rmp_end = snp_host.rmp_base + snp_host.rmp_size - 1;
}

/* Flush every CPU's TLB: a write it allowed may fault now */
static void snp_host_flush_tlbs(void)
{
    CPUState *cs;

    if (!tcg_enabled()) {
        return;
    }
    if (current_cpu) {
        /* done before the source CPU's next TB: RMPUPDATE ends its TB */
        tlb_flush_all_cpus_synced(current_cpu);
        return;
    }
    CPU_FOREACH(cs) {
        tlb_flush(cs);
    }
}

static void snp_host_tlbs_flushed(CPUState *cs, run_on_cpu_data data)
{
}

void snp_host_sync_tlbs(void)
{
    CPUState *cs;

    if (!tcg_enabled() || current_cpu) {
        return;
    }
    CPU_FOREACH(cs) {
        tlb_flush(cs);
    }
    /* a CPU's work runs in order: when this is done, so is its flush */
    CPU_FOREACH(cs) {
        run_on_cpu(cs, snp_host_tlbs_flushed, RUN_ON_CPU_NULL);
    }
}

/* Runs under the table's lock: fills the buffer only */
static void snp_host_encode_page(uint64_t spa, const SnpRmpPage *page,
                                 void *opaque)
{
    uint8_t *buf = opaque;
    uint64_t index = (spa >> SNP_RMP_SHIFT_4K) % SNP_RMP_PAGES_PER_2M;

    stq_le_p(buf + index * SNP_RMP_HW_ENTRY_SIZE, snp_rmp_hw_encode(page));
}

/*
 * A change of the RMP (with its lock held): write the entries of
 * [change->addr, + size) to the table in RAM, one 2M region at a time.
 */
static void snp_host_rmp_changed(Notifier *n, void *data)
{
    GranularityChange *change = data;
    SnpRmpTable *t = snp_rmp_get_table(snp_host.rmp);
    uint64_t top = snp_rmp_table_ram_top(t);
    uint64_t start, end;
    g_autofree uint8_t *buf = NULL;

    if (change->phase != GRANULARITY_CHANGED || !snp_host.snp_enabled ||
        !change->size || change->addr >= top) {
        return;
    }
    start = QEMU_ALIGN_DOWN(change->addr, SNP_RMP_BYTES_2M);
    end = change->addr + MIN(change->size, top - change->addr);
    buf = g_malloc(SNP_RMP_PAGES_PER_2M * SNP_RMP_HW_ENTRY_SIZE);
    for (uint64_t r = start; r < end; r += SNP_RMP_BYTES_2M) {
        uint64_t count = MIN(SNP_RMP_PAGES_PER_2M,
                             (top - r) >> SNP_RMP_SHIFT_4K);

        /* holes between RAM ranges read as zero (fresh) entries */
        memset(buf, 0, SNP_RMP_PAGES_PER_2M * SNP_RMP_HW_ENTRY_SIZE);
        snp_rmp_table_query(t, r, count, snp_host_encode_page, buf);
        address_space_write(&address_space_memory,
                            snp_host.rmp_base + snp_rmp_hw_entry_offset(r),
                            MEMTXATTRS_UNSPECIFIED, buf,
                            count * SNP_RMP_HW_ENTRY_SIZE);
    }
    snp_host_flush_tlbs();
}

/*
 * The first SNPEn: the processor takes the table in RAM as the RMP (the
 * kernel has cleared it; what it holds is what counts), and its own pages
 * become firmware pages.
 */
static void snp_host_enable(void)
{
    SnpRmpTable *t = snp_rmp_get_table(snp_host.rmp);
    SnpRmpTable *from = snp_rmp_table_new_like(t);
    uint64_t top = snp_rmp_table_ram_top(t);
    uint64_t bytes = SNP_RMP_PAGES_PER_2M * SNP_RMP_HW_ENTRY_SIZE;
    g_autofree uint8_t *buf = g_malloc(bytes);
    SnpRmpAttrs firmware = { .assigned = true, .immutable = true };
    unsigned bad = 0;

    for (uint64_t r = 0; r < top; r += SNP_RMP_BYTES_2M) {
        uint64_t head;
        SnpRmpAttrs attrs;

        if (address_space_read(&address_space_memory,
                               snp_host.rmp_base + snp_rmp_hw_entry_offset(r),
                               MEMTXATTRS_UNSPECIFIED, buf, bytes)) {
            bad++;
            continue;
        }
        head = ldq_le_p(buf);
        if (snp_rmp_hw_is_2m(head)) {
            snp_rmp_hw_decode(head, &attrs);
            bad += snp_rmp_table_update(from, r, SNP_RMP_SIZE_2M, &attrs) !=
                   SNP_RMP_OK;
            continue;
        }
        for (unsigned i = 0; i < SNP_RMP_PAGES_PER_2M; i++) {
            uint64_t lo = ldq_le_p(buf + i * SNP_RMP_HW_ENTRY_SIZE);
            uint64_t spa = r + i * SNP_RMP_BYTES_4K;

            if (!lo) {
                continue;           /* the fresh entry, or not RAM */
            }
            snp_rmp_hw_decode(lo, &attrs);
            bad += snp_rmp_table_update(from, spa, SNP_RMP_SIZE_4K,
                                        &attrs) != SNP_RMP_OK;
        }
    }
    if (bad) {
        qemu_log_mask(LOG_GUEST_ERROR, "snp-rmp: %u RMP entries in the "
                      "table at 0x%" PRIx64 " are not valid, taken as "
                      "fresh\n", bad, snp_host.rmp_base);
    }
    for (uint64_t p = 0; p < snp_host.rmp_size; p += SNP_RMP_BYTES_4K) {
        uint64_t spa = snp_host.rmp_base + p;

        if (!(spa & (SNP_RMP_BYTES_2M - 1))) {
            snp_rmp_table_psmash(from, spa);    /* a 2M entry: 4K now */
        }
        if (snp_rmp_table_update(from, spa, SNP_RMP_SIZE_4K, &firmware) !=
            SNP_RMP_OK) {
            error_report("snp-rmp: the RMP table's page 0x%" PRIx64
                         " cannot become a firmware page", spa);
        }
    }
    snp_host.snp_enabled = true;
    snp_rmp_load(snp_host.rmp, from);
    snp_rmp_table_free(from);
    snp_rmp_set_enforced(snp_host.rmp, true);
    trace_snp_host_enable(snp_host.rmp_base, snp_host.rmp_size, bad);
}

static void snp_host_reset(void *opaque)
{
    snp_host.snp_enabled = false;
    snp_rmp_set_enforced(snp_host.rmp, false);
}

bool snp_host_rdmsr(CPUX86State *env, uint32_t index, uint64_t *val)
{
    if (!snp_host.rmp) {
        return false;
    }
    switch (index) {
    case SNP_MSR_SYSCFG:
        *val = env->msr_syscfg;
        return true;
    case SNP_MSR_HWCR:
        *val = env->msr_hwcr;
        return true;
    case SNP_MSR_RMP_BASE:
        *val = env->msr_rmp_base;
        return true;
    case SNP_MSR_RMP_END:
        *val = env->msr_rmp_end;
        return true;
    }
    return false;
}

bool snp_host_wrmsr(CPUX86State *env, uint32_t index, uint64_t val,
                    bool *gp)
{
    uint64_t sticky = SNP_SYSCFG_SNP_EN | SNP_SYSCFG_VMPL_EN;

    if (!snp_host.rmp) {
        return false;
    }
    switch (index) {
    case SNP_MSR_SYSCFG:
        /*
         * MemEncryptionModEn is the firmware's; SNPEn and VMPLEn stay set
         * until reset (only the SEV firmware could clear them).
         */
        val = (val & ~SNP_SYSCFG_MEM_ENCRYPT) | SNP_SYSCFG_MEM_ENCRYPT;
        val |= env->msr_syscfg & sticky;
        if ((val & SNP_SYSCFG_SNP_EN) && !(env->msr_syscfg &
                                          SNP_SYSCFG_SNP_EN)) {
            bql_lock();
            if (!snp_host.snp_enabled) {
                snp_host_enable();
            }
            bql_unlock();
            /* what it filled while its checks were off must go */
            tlb_flush(env_cpu(env));
        }
        trace_snp_host_syscfg(env_cpu(env)->cpu_index, env->msr_syscfg, val);
        env->msr_syscfg = val;
        return true;
    case SNP_MSR_HWCR:
        env->msr_hwcr = val | (env->msr_hwcr & SNP_HWCR_SMMLOCK);
        return true;
    case SNP_MSR_RMP_BASE:
    case SNP_MSR_RMP_END:
        /* the firmware set them and locked them */
        *gp = true;
        return true;
    }
    return false;
}

bool snp_host_cpuid_8000001f(uint32_t *eax, uint32_t *ebx, uint32_t *ecx,
                             uint32_t *edx)
{
    if (!snp_host.rmp) {
        return false;
    }
    *eax = SNP_HOST_CPUID_EAX;
    *ebx = SNP_HOST_CPUID_EBX;
    *ecx = SNP_HOST_CPUID_ECX;
    *edx = SNP_HOST_CPUID_EDX;
    return true;
}

bool snp_host_check_access(CPUX86State *env, hwaddr paddr,
                           uint64_t page_size, MMUAccessType access,
                           int *prot)
{
    SnpRmpTable *t = snp_rmp_get_table(snp_host.rmp);

    if (!(*prot & PAGE_WRITE) ||
        snp_rmp_check_host_write(t, paddr, page_size) == SNP_RMP_CHECK_OK) {
        return true;
    }
    if (access == MMU_DATA_STORE) {
        trace_snp_host_rmp_pf(env_cpu(env)->cpu_index, paddr, page_size);
        return false;
    }
    *prot &= ~PAGE_WRITE;
    return true;
}

uint32_t snp_host_rmpupdate(CPUX86State *env, uint64_t spa,
                            const uint8_t *state)
{
    SnpRmpUpdateState st = { 0 };
    SnpRmpInsnStatus ret;
    SnpRmpStatus s = SNP_RMP_ERR_NOT_RAM;

    ret = snp_rmpupdate_state_decode(state, &st);
    if (ret == SNP_RMP_INSN_SUCCESS) {
        bql_lock();
        s = snp_rmp_update_status(snp_host.rmp, spa, st.size, &st.attrs);
        bql_unlock();
        ret = snp_rmpupdate_status(s);
    }
    trace_snp_host_rmpupdate(env_cpu(env)->cpu_index, spa,
                             st.size == SNP_RMP_SIZE_2M, st.attrs.assigned,
                             st.attrs.asid, st.attrs.gpa,
                             st.attrs.immutable, ret);
    return ret;
}

uint32_t snp_host_psmash(CPUX86State *env, uint64_t spa)
{
    SnpRmpInsnStatus ret;

    bql_lock();
    ret = snp_psmash_status(snp_rmp_psmash_status(snp_host.rmp, spa));
    bql_unlock();
    trace_snp_host_psmash(env_cpu(env)->cpu_index, spa, ret);
    return ret;
}

/*
 * After an incoming migration or loadvm, the CPUs' SYSCFG says whether
 * SNP is enabled (the RMP and RAM came with them): take it up again.
 */
static void snp_host_vm_state_change(void *opaque, bool running,
                                     RunState state)
{
    CPUState *cs;
    bool on = false;

    if (!running || snp_host.snp_enabled) {
        return;
    }
    CPU_FOREACH(cs) {
        on |= X86_CPU(cs)->env.msr_syscfg & SNP_SYSCFG_SNP_EN;
    }
    if (on) {
        snp_host.snp_enabled = true;
        snp_rmp_set_enforced(snp_host.rmp, true);
        snp_host_flush_tlbs();
    }
}

/* The RMP's layout is known once the board has laid out RAM */
static void snp_host_machine_done(Notifier *n, void *data)
{
    if (!tcg_enabled()) {
        error_report("snp-rmp,host=on needs TCG (-accel tcg): the emulated "
                     "CPU is the SNP host's");
        exit(EXIT_FAILURE);
    }
    snp_host.changed.notify = snp_host_rmp_changed;
    granularity_source_add_notifier(GRANULARITY_SOURCE(snp_host.rmp),
                                    &snp_host.changed);
    if (!snp_host.rmp_size) {
        error_report("snp-rmp,host=on: this machine has no SNP host "
                     "firmware (use a PC machine: q35 or pc)");
        exit(EXIT_FAILURE);
    }
}

/* snp-rmp,host=on, when the object is complete */
bool snp_host_register(SnpRmp *rmp, Error **errp)
{
    if (snp_host.rmp) {
        error_setg(errp, "snp-rmp: there is an SNP host RMP already "
                   "(host=on): a machine has one");
        return false;
    }
    if (phase_check(PHASE_MACHINE_INITIALIZED)) {
        error_setg(errp, "snp-rmp: host=on is the machine's firmware: give "
                   "it on the command line");
        return false;
    }
    /* CPUs and the board use it until QEMU exits */
    object_ref(OBJECT(rmp));
    snp_host.rmp = rmp;
    snp_host.machine_done.notify = snp_host_machine_done;
    qemu_add_machine_init_done_notifier(&snp_host.machine_done);
    qemu_register_reset(snp_host_reset, NULL);
    qemu_add_vm_change_state_handler(snp_host_vm_state_change, NULL);
    snp_rmp_set_enforced(rmp, false);
    return true;
}
