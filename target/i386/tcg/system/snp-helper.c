/*
 * x86 SEV-SNP host instructions: RMPUPDATE and PSMASH
 *
 * The instructions' operands and exceptions; the RMP they change is the
 * machine's (hw/i386/snp-host.c).  research/cpu-snp-host-facts.md gives
 * the sources: APM vol. 3 and Linux's rmpupdate()/psmash().
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "cpu.h"
#include "exec/helper-proto.h"
#include "accel/tcg/cpu-ldst.h"
#include "tcg/helper-tcg.h"
#include "hw/i386/snp-host.h"
#include "hw/i386/snp-rmp-hw.h"

/*
 * Only an SNP host whose CPU has SNPEn set knows these instructions (#UD),
 * and only at CPL 0 (#GP)
 */
static void snp_insn_check(CPUX86State *env, uintptr_t ra)
{
    if (!snp_host_enabled() || !(env->msr_syscfg & SNP_SYSCFG_SNP_EN)) {
        raise_exception_ra(env, EXCP06_ILLOP, ra);
    }
    if (env->hflags & HF_CPL_MASK) {
        raise_exception_err_ra(env, EXCP0D_GPF, 0, ra);
    }
}

void helper_rmpupdate(CPUX86State *env)
{
    uintptr_t ra = GETPC();
    uint8_t state[SNP_RMPUPDATE_STATE_SIZE];
    uint32_t ret;

    snp_insn_check(env, ra);
    if (env->hflags & HF_GUEST_MASK) {
        /* a guest's ASID is not 0 */
        ret = SNP_RMP_INSN_FAIL_PERMISSION;
    } else {
        stq_le_p(state, cpu_ldq_data_ra(env, env->regs[R_ECX], ra));
        stq_le_p(state + 8, cpu_ldq_data_ra(env, env->regs[R_ECX] + 8, ra));
        ret = snp_host_rmpupdate(env, env->regs[R_EAX], state);
    }
    env->regs[R_EAX] = ret;
}

void helper_psmash(CPUX86State *env)
{
    uintptr_t ra = GETPC();

    snp_insn_check(env, ra);
    if (env->hflags & HF_GUEST_MASK) {
        env->regs[R_EAX] = SNP_RMP_INSN_FAIL_PERMISSION;
        return;
    }
    env->regs[R_EAX] = snp_host_psmash(env, env->regs[R_EAX]);
}
