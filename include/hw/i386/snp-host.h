/*
 * The emulated SEV-SNP host platform (-object snp-rmp,host=on)
 *
 * What the firmware and the processor of an SNP host provide, so that an
 * unmodified host kernel brings SNP up by itself under TCG: the RMP table
 * reserved in RAM and named by RMP_BASE/RMP_END, SYSCFG and HWCR as a
 * BIOS that enables SNP leaves them, CPUID Fn8000_001F, RMPUPDATE and
 * PSMASH, and the RMP check of host writes.  The snp-rmp object with
 * host=on is the RMP; this file is the platform around it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_SNP_HOST_H
#define HW_I386_SNP_HOST_H

#include "cpu.h"

/* SYSCFG (MSR 0xC0010010) bits an SNP host uses (APM vol. 2, Linux) */
#define SNP_SYSCFG_MFDM             (1ULL << 19)    /* MtrrFixDramModEn */
#define SNP_SYSCFG_MEM_ENCRYPT      (1ULL << 23)    /* MemEncryptionModEn */
#define SNP_SYSCFG_SNP_EN           (1ULL << 24)
#define SNP_SYSCFG_VMPL_EN          (1ULL << 25)
#define SNP_HWCR_SMMLOCK            (1ULL << 0)

#define SNP_MSR_SYSCFG              0xc0010010
#define SNP_MSR_HWCR                0xc0010015
#define SNP_MSR_RMP_BASE            0xc0010132
#define SNP_MSR_RMP_END             0xc0010133

/* The RMP #PF: error code bit 31 (Linux X86_PF_RMP) */
#define SNP_PF_ERROR_RMP            (1U << 31)

typedef struct SnpRmp SnpRmp;

/* snp-rmp,host=on: @rmp is the RMP of the machine, an SNP host */
bool snp_host_register(SnpRmp *rmp, Error **errp);

/* Is the machine an SNP host (an snp-rmp object with host=on)? */
bool snp_host_enabled(void);

/*
 * The board, while it lays out RAM: the bytes at the top of the RAM below
 * 4G that the firmware keeps for the RMP table (0 on other machines).
 * @below_4g and @ram_top are the RAM below 4G and the end of all RAM.
 */
uint64_t snp_host_reserve_ram(uint64_t below_4g, uint64_t ram_top);

/* The CPU's reset: SYSCFG, HWCR and the RMP MSRs as the firmware sets them */
void snp_host_cpu_reset(CPUX86State *env);

/*
 * RDMSR and WRMSR of the MSRs above: true if handled (*@val read, or the
 * write done), false for the CPU's default (not an SNP host, other MSR).
 * A write the MSR refuses sets *@gp.
 */
bool snp_host_rdmsr(CPUX86State *env, uint32_t index, uint64_t *val);
bool snp_host_wrmsr(CPUX86State *env, uint32_t index, uint64_t val,
                    bool *gp);

/* CPUID Fn8000_001F of an SNP host; false if not an SNP host */
bool snp_host_cpuid_8000001f(uint32_t *eax, uint32_t *ebx, uint32_t *ecx,
                             uint32_t *edx);

/*
 * A TLB fill by a CPU with SNPEn set, outside a guest: may this access to
 * @paddr, through a mapping of @page_size bytes, go on?  A read may, but
 * loses PAGE_WRITE in *@prot where a write would fault, so that the write
 * comes back here.  A write that the RMP forbids returns false.
 */
bool snp_host_check_access(CPUX86State *env, hwaddr paddr,
                           uint64_t page_size, MMUAccessType access,
                           int *prot);

/*
 * Outside the vCPUs, with the BQL and no other lock held: return once no
 * CPU holds a translation that an RMP change since forbids.  The PSP
 * completes a command only then.
 */
void snp_host_sync_tlbs(void);

/* Does the RMP check apply to this CPU's accesses now? */
static inline bool snp_host_cpu_checks(CPUX86State *env)
{
    return unlikely(env->msr_syscfg & SNP_SYSCFG_SNP_EN) &&
           !(env->hflags & HF_GUEST_MASK);
}

/*
 * RMPUPDATE and PSMASH, with the vCPU's operands: the status for EAX.
 * @state is RMPUPDATE's 16-byte new state, read by the caller.
 */
uint32_t snp_host_rmpupdate(CPUX86State *env, uint64_t spa,
                            const uint8_t *state);
uint32_t snp_host_psmash(CPUX86State *env, uint64_t spa);

#endif
