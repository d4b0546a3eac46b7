/*
 * Bare-metal test of the SVM features that Linux KVM needs before it
 * enables SEV, SEV-ES and SEV-SNP (NRIPS, DecodeAssists, FlushByASID,
 * LBRV), and of the #BP intercept for INT3, as QEMU's TCG emulates them.
 *
 * It runs as a multiboot kernel (boot.S) and reports through COM1 and
 * isa-debug-exit (iobase 0xf4): it writes 0 when every check passed, 1
 * otherwise (QEMU then exits with 1 or 3).
 *
 * Expected values come from the architecture, not from QEMU:
 *   [APM]  AMD64 Architecture Programmer's Manual vol. 2, chapter 15
 *          ("Secure Virtual Machine"): 15.7.1 nRIP, 15.8.1 CR/DR
 *          EXITINFO1, 15.13/15.14 INTn/INVLPG, 15.33 DecodeAssists,
 *          15.16 TLB control, 15.20 event injection, 15.23 LBR
 *          virtualization, appendix B (VMCB layout), appendix C (exit
 *          codes).  Quoted from memory (the PDF was not at hand) and
 *          cross-checked with how Linux KVM uses the fields:
 *   [KVM]  Linux 7.2.8 arch/x86/kvm/svm/svm.c, nested.c and
 *          arch/x86/include/asm/svm.h (vmcb_control_area offsets,
 *          SVM_EXIT_* codes, CR_VALID = bit 63, SVM_EXITINFO_REG_MASK,
 *          svm_update_soft_interrupt_rip(), svm_copy_lbrs()).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

/* VMCB control area offsets [APM appendix B, KVM asm/svm.h] */
#define C_INTERCEPT_CR      0x000   /* u16 read, u16 write */
#define C_INTERCEPT_DR      0x004   /* u16 read, u16 write */
#define C_INTERCEPT_EXC     0x008
#define C_INTERCEPT         0x00c   /* u64: bit n = exit code 0x60 + n */
#define C_IOPM_BASE         0x040
#define C_MSRPM_BASE        0x048
#define C_ASID              0x058
#define C_TLB_CTL           0x05c
#define C_EXIT_CODE         0x070
#define C_EXIT_INFO_1       0x078
#define C_EXIT_INFO_2       0x080
#define C_NESTED_CTL        0x090
#define C_EVENT_INJ         0x0a8
#define C_NESTED_CR3        0x0b0
#define C_LBR_CTL           0x0b8
#define C_NEXT_RIP          0x0c8
#define C_INSN_LEN          0x0d0
#define C_INSN_BYTES        0x0d1
/* save area (0x400 + ...) */
#define S_ES                0x400
#define S_CS                0x410
#define S_SS                0x420
#define S_DS                0x430
#define S_GDTR              0x460
#define S_IDTR              0x480
#define S_CPL               0x4cb
#define S_EFER              0x4d0
#define S_CR4               0x548
#define S_CR3               0x550
#define S_CR0               0x558
#define S_DR7               0x560
#define S_DR6               0x568
#define S_RFLAGS            0x570
#define S_RIP               0x578
#define S_RSP               0x5d8
#define S_RAX               0x5f8
#define S_G_PAT             0x668
#define S_DBGCTL            0x670
#define S_BR_FROM           0x678
#define S_BR_TO             0x680
#define S_LASTEXCP_FROM     0x688
#define S_LASTEXCP_TO       0x690

/* exit codes [APM appendix C, KVM uapi/asm/svm.h] */
#define EXIT_READ_CR3       0x003
#define EXIT_WRITE_CR0      0x010
#define EXIT_WRITE_DR0      0x030
#define EXIT_EXCP_BP        0x043
#define EXIT_EXCP_PF        0x04e
#define EXIT_CPUID          0x072
#define EXIT_SWINT          0x075
#define EXIT_INVLPG         0x079
#define EXIT_IOIO           0x07b
#define EXIT_MSR            0x07c
#define EXIT_VMMCALL        0x081
#define EXIT_NPF            0x400

/* intercept vector bits: exit code - 0x60 */
#define I_CPUID             (1ULL << (0x72 - 0x60))
#define I_SWINT             (1ULL << (0x75 - 0x60))
#define I_INVLPG            (1ULL << (0x79 - 0x60))
#define I_IOIO              (1ULL << (0x7b - 0x60))
#define I_MSR               (1ULL << (0x7c - 0x60))
#define I_VMRUN             (1ULL << (0x80 - 0x60))
#define I_VMMCALL           (1ULL << (0x81 - 0x60))

#define EVTINJ_VALID        (1U << 31)
#define EVTINJ_TYPE_EXEPT   (3U << 8)
#define EVTINJ_TYPE_SOFT    (4U << 8)

#define CR_VALID            (1ULL << 63)      /* [KVM] CR_VALID */

/* CPUID Fn8000_000A EDX [APM, KVM cpufeatures.h word 15] */
#define SVM_LBRV            (1U << 1)
#define SVM_NRIPS           (1U << 3)
#define SVM_FLUSHBYASID     (1U << 6)
#define SVM_DECODEASSISTS   (1U << 7)

#define MSR_EFER            0xc0000080
#define MSR_VM_HSAVE_PA     0xc0010117
#define MSR_DEBUGCTL        0x1d9
#define MSR_BR_FROM         0x1db
#define MSR_LASTINT_TO      0x1de

/* addresses the tests use (all identity mapped below 4 GiB) */
#define UNMAPPED_VA         0x200000000ULL    /* above the 4 GiB map */
#define NPT_HOLE_GPA        0x2000000ULL      /* 32 MiB: absent in the NPT */
#define TLB_VA              0x8000000000ULL   /* PML4 slot 1, guest only */
#define TLB_PAGE1           0x1000000ULL      /* 16 MiB */
#define TLB_PAGE2           0x1200000ULL      /* 18 MiB */

extern uint64_t pml4[512], pdpt[512], pd[4 * 512];


static uint8_t vmcb[4096] __attribute__((aligned(4096)));
static uint8_t hsave[4096] __attribute__((aligned(4096)));
static uint8_t msrpm[2 * 4096 * 2] __attribute__((aligned(4096)));
static uint8_t msrpm_none[2 * 4096 * 2] __attribute__((aligned(4096)));
static uint8_t iopm[3 * 4096 * 2] __attribute__((aligned(4096)));
static uint64_t npt_pml4[512] __attribute__((aligned(4096)));
static uint64_t npt_pdpt[512] __attribute__((aligned(4096)));
static uint64_t npt_pd0[512] __attribute__((aligned(4096)));
static uint64_t gpt_pml4[512] __attribute__((aligned(4096)));
static uint64_t gpt_pdpt1[512] __attribute__((aligned(4096)));
static uint64_t gpt_pd1[512] __attribute__((aligned(4096)));
static uint64_t idt[256 * 2] __attribute__((aligned(16)));
static uint8_t guest_stack[16384] __attribute__((aligned(16)));

/* guest GPRs after #VMEXIT (VMRUN does not switch them), see vmrun_guest */
struct gregs {
    uint64_t rbx, rcx, rdx, rsi, rdi, r8, r9, r10;
} gregs;

void test_main(void);
void vmrun_guest(uint64_t vmcb_pa);
void unexpected_handler(void);
void guest_vector_handler(void);

/* guest code: each snippet exits with VMMCALL if not intercepted */
extern char g_cpuid[], g_cpuid_end[];
extern char g_rdmsr_pre[], g_rdmsr[], g_rdmsr_end[];
extern char g_io[], g_io_end[];
extern char g_int3[], g_int3_end[];
extern char g_intn[], g_intn_end[];
extern char g_cr3[], g_cr3_end[];
extern char g_cr0_pre[], g_cr0[], g_cr0_end[];
extern char g_dr_pre[], g_dr[], g_dr_end[];
extern char g_invlpg_pre[], g_invlpg[], g_invlpg_end[];
extern char g_pf_pre[], g_pf[];
extern char g_pffetch_pre[];
extern char g_npf_pre[], g_npf[];
extern char g_soft[], g_soft_ret[];
extern char g_lbr_read[], g_lbr_write[];
extern char g_tlb[];

asm(
    ".text\n"
    ".globl vmrun_guest\n"
    "vmrun_guest:\n"
    "   push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n"
    "   push %r15\n"
    "   mov %rdi, %rax\n"
    "   vmrun\n"
    "   mov %rbx, gregs+0(%rip)\n"
    "   mov %rcx, gregs+8(%rip)\n"
    "   mov %rdx, gregs+16(%rip)\n"
    "   mov %rsi, gregs+24(%rip)\n"
    "   mov %rdi, gregs+32(%rip)\n"
    "   mov %r8, gregs+40(%rip)\n"
    "   mov %r9, gregs+48(%rip)\n"
    "   mov %r10, gregs+56(%rip)\n"
    "   pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
    "   ret\n"
    /* an exception nobody expected, in the host or in the guest */
    ".globl unexpected_handler\n"
    "unexpected_handler:\n"
    "   mov $0xf4, %dx\n mov $1, %eax\n out %eax, %dx\n"
    "1: hlt\n jmp 1b\n"
    /* guest handler of injected events: return address to RBX, exit */
    ".globl guest_vector_handler\n"
    "guest_vector_handler:\n"
    "   mov (%rsp), %rbx\n vmmcall\n ud2\n"
    "g_cpuid: cpuid\n"
    "g_cpuid_end: vmmcall\n ud2\n"
    "g_rdmsr_pre: mov $0xc0000080, %ecx\n"
    "g_rdmsr: rdmsr\n"
    "g_rdmsr_end: vmmcall\n ud2\n"
    "g_io: inb $0x80, %al\n"
    "g_io_end: vmmcall\n ud2\n"
    "g_int3: int3\n"
    "g_int3_end: vmmcall\n ud2\n"
    "g_intn: int $0x21\n"
    "g_intn_end: vmmcall\n ud2\n"
    "g_cr3: mov %cr3, %r13\n"
    "g_cr3_end: vmmcall\n ud2\n"
    "g_cr0_pre: mov %cr0, %rdx\n"
    "g_cr0: mov %rdx, %cr0\n"
    "g_cr0_end: vmmcall\n ud2\n"
    "g_dr_pre: xor %r9d, %r9d\n"
    "g_dr: mov %r9, %dr0\n"
    "g_dr_end: vmmcall\n ud2\n"
    "g_invlpg_pre: mov $0x12345678, %eax\n"
    "g_invlpg: invlpg (%rax)\n"
    "g_invlpg_end: vmmcall\n ud2\n"
    "g_pf_pre: movabs $0x200000000, %rcx\n"
    "g_pf: mov (%rcx), %eax\n"
    "   vmmcall\n ud2\n"
    "g_pffetch_pre: movabs $0x200000000, %rcx\n"
    "   jmp *%rcx\n"
    "g_npf_pre: mov $0x2000000, %ecx\n"
    "g_npf: mov (%rcx), %eax\n"
    "   vmmcall\n ud2\n"
    "g_soft: int $0x30\n nop\n nop\n nop\n"
    "g_soft_ret: vmmcall\n ud2\n"
    "g_lbr_read: mov $0x1d9, %ecx\n rdmsr\n mov %rax, %r8\n"
    "   mov $0x1db, %ecx\n rdmsr\n mov %rax, %r9\n"
    "   mov $0x1de, %ecx\n rdmsr\n mov %rax, %r10\n"
    "   vmmcall\n ud2\n"
    "g_lbr_write: mov $0x1d9, %ecx\n mov $1, %eax\n xor %edx, %edx\n"
    "   wrmsr\n vmmcall\n ud2\n"
    "g_tlb: movabs $0x8000000000, %rcx\n mov (%rcx), %r8\n"
    "   vmmcall\n ud2\n"
);

static inline void outb(uint16_t port, uint8_t v)
{
    asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;

    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return lo | ((uint64_t)hi << 32);
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    asm volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
                 "d"((uint32_t)(v >> 32)) : "memory");
}

static void putc_serial(char c)
{
    outb(0x3f8, c);
}

static void puts_serial(const char *s)
{
    while (*s) {
        putc_serial(*s++);
    }
}

static void puthex(uint64_t v)
{
    puts_serial("0x");
    for (int i = 60; i >= 0; i -= 4) {
        putc_serial("0123456789abcdef"[(v >> i) & 0xf]);
    }
}

static int failures, checks;

static void check(const char *what, uint64_t got, uint64_t want)
{
    checks++;
    if (got == want) {
        puts_serial("PASS ");
    } else {
        failures++;
        puts_serial("FAIL ");
    }
    puts_serial(what);
    puts_serial(": got ");
    puthex(got);
    puts_serial(" want ");
    puthex(want);
    puts_serial("\n");
}

#define V8(off)  (*(volatile uint8_t *)(vmcb + (off)))
#define V16(off) (*(volatile uint16_t *)(vmcb + (off)))
#define V32(off) (*(volatile uint32_t *)(vmcb + (off)))
#define V64(off) (*(volatile uint64_t *)(vmcb + (off)))

static void *memset8(void *d, int c, size_t n)
{
    volatile uint8_t *p = d;

    while (n--) {
        *p++ = c;
    }
    return d;
}

static void set_seg(unsigned off, uint16_t sel, uint16_t attrib)
{
    V16(off) = sel;
    V16(off + 2) = attrib;
    V32(off + 4) = 0xffffffff;
    V64(off + 8) = 0;
}

/* a fresh VMCB: the guest runs in the host's 64-bit environment at CPL 0 */
static void vmcb_init(char *rip)
{
    uint64_t cr0, cr3, cr4;
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } dt;

    memset8(vmcb, 0, sizeof(vmcb));
    V64(C_INTERCEPT) = I_VMRUN | I_VMMCALL;
    V64(C_IOPM_BASE) = (uintptr_t)iopm;
    V64(C_MSRPM_BASE) = (uintptr_t)msrpm;
    V32(C_ASID) = 1;
    set_seg(S_ES, 0x10, 0xc93);
    set_seg(S_CS, 0x08, 0xa9b);
    set_seg(S_SS, 0x10, 0xc93);
    set_seg(S_DS, 0x10, 0xc93);
    asm volatile("sgdt %0" : "=m"(dt));
    V32(S_GDTR + 4) = dt.limit;
    V64(S_GDTR + 8) = dt.base;
    asm volatile("sidt %0" : "=m"(dt));
    V32(S_IDTR + 4) = dt.limit;
    V64(S_IDTR + 8) = dt.base;
    asm volatile("mov %%cr0, %0" : "=r"(cr0));
    asm volatile("mov %%cr3, %0" : "=r"(cr3));
    asm volatile("mov %%cr4, %0" : "=r"(cr4));
    V64(S_CR0) = cr0;
    V64(S_CR3) = cr3;
    V64(S_CR4) = cr4;
    V64(S_EFER) = rdmsr(MSR_EFER);
    V64(S_DR7) = 0x400;
    V64(S_DR6) = 0xffff0ff0;
    V64(S_RFLAGS) = 2;
    V64(S_RIP) = (uintptr_t)rip;
    V64(S_RSP) = (uintptr_t)(guest_stack + sizeof(guest_stack));
    V64(S_G_PAT) = 0x0007040600070406ULL;
    /* fields the CPU must (re)write on #VMEXIT get a poison value */
    V64(C_NEXT_RIP) = 0xdeadbeefdeadbeefULL;
    V8(C_INSN_LEN) = 0x0a;         /* neither 0 nor 15 */
}

static void run(void)
{
    vmrun_guest((uintptr_t)vmcb);
}

static void set_idt(int vec, void (*fn)(void))
{
    uint64_t a = (uintptr_t)fn;

    idt[vec * 2] = (a & 0xffff) | (0x08ULL << 16) | (0x8eULL << 40) |
                   ((a >> 16) & 0xffff) << 48;
    idt[vec * 2 + 1] = a >> 32;
}

static void test_cpuid(void)
{
    uint32_t eax, ebx, ecx, edx;

    asm volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx)
                 : "a"(0x8000000a), "c"(0));
    check("CPUID 8000000A EDX[3] NRIPS", !!(edx & SVM_NRIPS), 1);
    check("CPUID 8000000A EDX[7] DecodeAssists",
          !!(edx & SVM_DECODEASSISTS), 1);
    check("CPUID 8000000A EDX[6] FlushByASID", !!(edx & SVM_FLUSHBYASID), 1);
    check("CPUID 8000000A EDX[1] LBRV", !!(edx & SVM_LBRV), 1);
}

/* NRIPS [APM 15.7.1]: nRIP = next instruction for instruction intercepts */
static void test_nrip(void)
{
    vmcb_init(g_cpuid);
    V64(C_INTERCEPT) |= I_CPUID;
    run();
    check("CPUID: exit code", V64(C_EXIT_CODE), EXIT_CPUID);
    check("CPUID: save.rip", V64(S_RIP), (uintptr_t)g_cpuid);
    check("CPUID: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_cpuid_end);
    /* [APM 15.33] only #PF/#NPF report instruction bytes */
    check("CPUID: insn byte count 0", V8(C_INSN_LEN) & 0xf, 0);

    vmcb_init(g_rdmsr_pre);
    V64(C_INTERCEPT) |= I_MSR;
    run();
    check("RDMSR: exit code", V64(C_EXIT_CODE), EXIT_MSR);
    check("RDMSR: EXITINFO1 (0 = read)", V64(C_EXIT_INFO_1), 0);
    check("RDMSR: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_rdmsr_end);

    vmcb_init(g_io);
    V64(C_INTERCEPT) |= I_IOIO;
    run();
    check("IN: exit code", V64(C_EXIT_CODE), EXIT_IOIO);
    check("IN: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_io_end);
    /* [APM 15.10.2] EXITINFO2 of IOIO is the next RIP as well */
    check("IN: EXITINFO2", V64(C_EXIT_INFO_2), (uintptr_t)g_io_end);
}

/*
 * INT3 is intercepted as #BP (exception intercept, exit 0x43), not as
 * INTn (0x75) [APM 15.12 "INTn" vs the exception intercepts]; nRIP is
 * written for #BP from INT3 [APM 15.7.1].  INTn: EXITINFO1 = vector with
 * DecodeAssists [APM 15.33.2].
 */
static void test_int3_intn(void)
{
    vmcb_init(g_int3);
    V64(C_INTERCEPT) |= I_SWINT;
    V32(C_INTERCEPT_EXC) = 1 << 3;
    run();
    check("INT3: exit code (#BP 0x43)", V64(C_EXIT_CODE), EXIT_EXCP_BP);
    check("INT3: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_int3_end);

    vmcb_init(g_intn);
    V64(C_INTERCEPT) |= I_SWINT;
    run();
    check("INT 0x21: exit code", V64(C_EXIT_CODE), EXIT_SWINT);
    check("INT 0x21: EXITINFO1 vector", V64(C_EXIT_INFO_1), 0x21);
    check("INT 0x21: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_intn_end);
}

/* DecodeAssists for MOV CR/DR: EXITINFO1 = bit 63 (CR) | GPR [APM 15.8.1] */
static void test_mov_crdr(void)
{
    vmcb_init(g_cr3);
    V16(C_INTERCEPT_CR) = 1 << 3;
    run();
    check("MOV r13,CR3: exit code", V64(C_EXIT_CODE), EXIT_READ_CR3);
    check("MOV r13,CR3: EXITINFO1", V64(C_EXIT_INFO_1), CR_VALID | 13);
    check("MOV r13,CR3: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_cr3_end);

    vmcb_init(g_cr0_pre);
    V16(C_INTERCEPT_CR + 2) = 1 << 0;
    run();
    check("MOV CR0,rdx: exit code", V64(C_EXIT_CODE), EXIT_WRITE_CR0);
    check("MOV CR0,rdx: EXITINFO1", V64(C_EXIT_INFO_1), CR_VALID | 2);
    check("MOV CR0,rdx: save.rip", V64(S_RIP), (uintptr_t)g_cr0);
    check("MOV CR0,rdx: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_cr0_end);

    vmcb_init(g_dr_pre);
    V16(C_INTERCEPT_DR + 2) = 1 << 0;
    run();
    check("MOV DR0,r9: exit code", V64(C_EXIT_CODE), EXIT_WRITE_DR0);
    /* [KVM] dr_interception reads EXITINFO1 & SVM_EXITINFO_REG_MASK */
    check("MOV DR0,r9: EXITINFO1", V64(C_EXIT_INFO_1), 9);
    check("MOV DR0,r9: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_dr_end);
}

/* DecodeAssists: INVLPG EXITINFO1 = linear address [APM 15.33.2] */
static void test_invlpg(void)
{
    vmcb_init(g_invlpg_pre);
    V64(C_INTERCEPT) |= I_INVLPG;
    run();
    check("INVLPG: exit code", V64(C_EXIT_CODE), EXIT_INVLPG);
    check("INVLPG: EXITINFO1 address", V64(C_EXIT_INFO_1), 0x12345678);
    check("INVLPG: nRIP", V64(C_NEXT_RIP), (uintptr_t)g_invlpg_end);
}

static void check_bytes(const char *what, const char *insn)
{
    int n = V8(C_INSN_LEN) & 0xf;
    int same = 0;

    check(what, n, 15);
    for (int i = 0; i < 15; i++) {
        same += V8(C_INSN_BYTES + i) == (uint8_t)insn[i];
    }
    check("  ...and they are the instruction's bytes", same, 15);
}

/*
 * DecodeAssists: #PF intercept and #NPF report up to 15 instruction
 * bytes at CS:RIP, none if the fault was the fetch itself [APM 15.33.3;
 * KVM svm_check_emulate_instruction() comment on the empty buffer].
 * nRIP is 0 for these exits [APM 15.7.1].
 */
static void test_pf_npf(void)
{
    vmcb_init(g_pf_pre);
    V32(C_INTERCEPT_EXC) = 1 << 14;
    run();
    check("#PF read: exit code", V64(C_EXIT_CODE), EXIT_EXCP_PF);
    check("#PF read: EXITINFO1 error code", V64(C_EXIT_INFO_1), 0);
    check("#PF read: EXITINFO2 address", V64(C_EXIT_INFO_2), UNMAPPED_VA);
    check("#PF read: nRIP 0", V64(C_NEXT_RIP), 0);
    check_bytes("#PF read: insn byte count", g_pf);

    vmcb_init(g_pffetch_pre);
    V32(C_INTERCEPT_EXC) = 1 << 14;
    run();
    check("#PF fetch: exit code", V64(C_EXIT_CODE), EXIT_EXCP_PF);
    check("#PF fetch: EXITINFO1 error code (I/D)", V64(C_EXIT_INFO_1), 0x10);
    check("#PF fetch: insn byte count 0", V8(C_INSN_LEN) & 0xf, 0);

    /* NPT: the host's identity map, without the 2 MiB at NPT_HOLE_GPA */
    for (int i = 0; i < 512; i++) {
        npt_pd0[i] = pd[i];
        npt_pdpt[i] = pdpt[i];
    }
    npt_pd0[NPT_HOLE_GPA >> 21] = 0;
    npt_pdpt[0] = (uintptr_t)npt_pd0 | 7;
    npt_pml4[0] = (uintptr_t)npt_pdpt | 7;
    vmcb_init(g_npf_pre);
    V64(C_NESTED_CTL) = 1;
    V64(C_NESTED_CR3) = (uintptr_t)npt_pml4;
    run();
    check("#NPF: exit code", V64(C_EXIT_CODE), EXIT_NPF);
    check("#NPF: EXITINFO2 GPA", V64(C_EXIT_INFO_2), NPT_HOLE_GPA);
    check("#NPF: nRIP 0", V64(C_NEXT_RIP), 0);
    check_bytes("#NPF: insn byte count", g_npf);
}

/*
 * Event injection with NRIPS: a software interrupt (type 4) and a
 * software exception (#BP, type 3) push NextRIP as the return address,
 * save.rip staying at the instruction [KVM svm_update_soft_interrupt_rip()
 * and the nested.c comment "next_rip is consumed on VMRUN as the return
 * address pushed on the stack for injected soft exceptions/interrupts"].
 */
static void test_inject(void)
{
    vmcb_init(g_soft);
    V32(C_EVENT_INJ) = EVTINJ_VALID | EVTINJ_TYPE_SOFT | 0x30;
    V64(C_NEXT_RIP) = (uintptr_t)g_soft_ret;
    gregs.rbx = 0;
    run();
    check("inject INTn 0x30: exit code", V64(C_EXIT_CODE), EXIT_VMMCALL);
    check("inject INTn 0x30: return address = NextRIP", gregs.rbx,
          (uintptr_t)g_soft_ret);

    vmcb_init(g_soft);
    V32(C_EVENT_INJ) = EVTINJ_VALID | EVTINJ_TYPE_EXEPT | 3;
    V64(C_NEXT_RIP) = (uintptr_t)g_soft_ret;
    gregs.rbx = 0;
    run();
    check("inject #BP: exit code", V64(C_EXIT_CODE), EXIT_VMMCALL);
    check("inject #BP: return address = NextRIP", gregs.rbx,
          (uintptr_t)g_soft_ret);
}

/*
 * An exit while the CPU delivers an injected #BP (type 3, vector 3) or
 * INTn (type 4) with NRIPS: RIP is still the instruction's (save.rip
 * unchanged); NextRIP is only the return address of a delivery that
 * completes.  KVM depends on it: svm_complete_soft_interrupt() restores
 * NextRIP only while RIP is the old one (Linux 7.2 arch/x86/kvm/svm/svm.c).
 */
static void test_inject_npf(void)
{
    vmcb_init(g_soft);
    V64(C_NESTED_CTL) = 1;
    V64(C_NESTED_CR3) = (uintptr_t)npt_pml4;
    V64(S_RSP) = NPT_HOLE_GPA + 0x1000;
    V32(C_EVENT_INJ) = EVTINJ_VALID | EVTINJ_TYPE_EXEPT | 3;
    V64(C_NEXT_RIP) = (uintptr_t)g_soft_ret;
    run();
    check("inject #BP + NPF: exit code", V64(C_EXIT_CODE), EXIT_NPF);
    check("inject #BP + NPF: save.rip unchanged", V64(S_RIP),
          (uintptr_t)g_soft);

    vmcb_init(g_soft);
    V64(C_NESTED_CTL) = 1;
    V64(C_NESTED_CR3) = (uintptr_t)npt_pml4;
    V64(S_RSP) = NPT_HOLE_GPA + 0x1000;
    V32(C_EVENT_INJ) = EVTINJ_VALID | EVTINJ_TYPE_SOFT | 0x30;
    V64(C_NEXT_RIP) = (uintptr_t)g_soft_ret;
    run();
    check("inject INTn + NPF: exit code", V64(C_EXIT_CODE), EXIT_NPF);
    check("inject INTn + NPF: save.rip unchanged", V64(S_RIP),
          (uintptr_t)g_soft);
}

/*
 * LBR virtualization [APM 15.23; KVM svm_copy_lbrs()]: with lbr_ctl bit 0,
 * VMRUN loads DebugCtl and the LBR MSRs from the VMCB save area
 * (0x270-0x290), #VMEXIT stores them back and restores the host's.
 */
static void test_lbrv(void)
{
    wrmsr(MSR_DEBUGCTL, 1);
    vmcb_init(g_lbr_read);
    V64(C_MSRPM_BASE) = (uintptr_t)msrpm_none;
    V64(C_LBR_CTL) = 1;
    V64(S_DBGCTL) = 0;
    V64(S_BR_FROM) = 0x1111;
    V64(S_BR_TO) = 0x2222;
    V64(S_LASTEXCP_FROM) = 0x3333;
    V64(S_LASTEXCP_TO) = 0x4444;
    run();
    check("LBRV: exit code", V64(C_EXIT_CODE), EXIT_VMMCALL);
    check("LBRV: guest DebugCtl", gregs.r8, 0);
    check("LBRV: guest LastBranchFromIP", gregs.r9, 0x1111);
    check("LBRV: guest LastIntToIP", gregs.r10, 0x4444);
    check("LBRV: host DebugCtl restored", rdmsr(MSR_DEBUGCTL), 1);
    check("LBRV: host LastBranchFromIP restored", rdmsr(MSR_BR_FROM), 0);
    check("LBRV: VMCB BR_TO kept", V64(S_BR_TO), 0x2222);

    wrmsr(MSR_DEBUGCTL, 0);
    vmcb_init(g_lbr_write);
    V64(C_MSRPM_BASE) = (uintptr_t)msrpm_none;
    V64(C_LBR_CTL) = 1;
    run();
    check("LBRV: guest DebugCtl write: exit code", V64(C_EXIT_CODE),
          EXIT_VMMCALL);
    check("LBRV: guest DebugCtl saved to VMCB", V64(S_DBGCTL), 1);
    check("LBRV: host DebugCtl restored (2)", rdmsr(MSR_DEBUGCTL), 0);
}

/*
 * TLB_CONTROL 3 (flush this guest's ASID, FlushByASID) [APM 15.16.1]:
 * a guest PTE the host changed is seen at the next VMRUN.
 */
static void test_tlb_control(void)
{
    *(volatile uint64_t *)TLB_PAGE1 = 0x1111111111111111ULL;
    *(volatile uint64_t *)TLB_PAGE2 = 0x2222222222222222ULL;
    gpt_pml4[0] = pml4[0];
    gpt_pml4[1] = (uintptr_t)gpt_pdpt1 | 7;
    gpt_pdpt1[0] = (uintptr_t)gpt_pd1 | 7;
    gpt_pd1[0] = TLB_PAGE1 | 0x87;

    vmcb_init(g_tlb);
    V64(S_CR3) = (uintptr_t)gpt_pml4;
    run();
    check("TLB: first read through the guest PTE", gregs.r8,
          0x1111111111111111ULL);

    gpt_pd1[0] = TLB_PAGE2 | 0x87;
    vmcb_init(g_tlb);
    V64(S_CR3) = (uintptr_t)gpt_pml4;
    V8(C_TLB_CTL) = 3;
    run();
    check("TLB: TLB_CONTROL=3 exit code", V64(C_EXIT_CODE), EXIT_VMMCALL);
    check("TLB: changed PTE seen after TLB_CONTROL=3", gregs.r8,
          0x2222222222222222ULL);
}

void test_main(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;

    for (int i = 0; i < 256; i++) {
        set_idt(i, unexpected_handler);
    }
    set_idt(3, guest_vector_handler);
    set_idt(0x30, guest_vector_handler);
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (uintptr_t)idt;
    asm volatile("lidt %0" : : "m"(idtr));

    memset8(msrpm, 0xff, sizeof(msrpm));
    memset8(iopm, 0xff, sizeof(iopm));
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | (1 << 12));       /* SVME */
    wrmsr(MSR_VM_HSAVE_PA, (uintptr_t)hsave);

    puts_serial("svm-test: start\n");
    test_cpuid();
    test_nrip();
    test_int3_intn();
    test_mov_crdr();
    test_invlpg();
    test_pf_npf();
    test_inject();
    test_inject_npf();
    test_lbrv();
    test_tlb_control();

    puts_serial("svm-test: ");
    puthex(checks - failures);
    puts_serial(" of ");
    puthex(checks);
    puts_serial(failures ? " passed: FAIL\n" : " passed: PASS\n");
    outl(0xf4, failures ? 1 : 0);
}
