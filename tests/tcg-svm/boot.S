/*
 * Bare-metal entry for the SVM feature test: a multiboot (v1) image with
 * the "address" header fields, so QEMU's -kernel loads the flat binary;
 * it enters in 32-bit protected mode, maps the first 4 GiB with 2 MiB
 * pages and switches to 64-bit mode.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010000             /* load/entry addresses given */

        .section .multiboot, "a"
        .align 4
mb_header:
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        .long mb_header, image_start, image_data_end, image_end, entry32

        .section .text32, "ax"
        .code32
        .globl entry32
entry32:
        cli
        mov $boot_stack_top, %esp
        /* pd[i] = i * 2 MiB | PS | U | W | P for 4 GiB (4 tables) */
        xor %ecx, %ecx
1:      mov %ecx, %eax
        shl $21, %eax
        or $0x87, %eax
        mov %eax, pd(, %ecx, 8)
        movl $0, pd+4(, %ecx, 8)
        inc %ecx
        cmp $2048, %ecx
        jne 1b
        /* pdpt[0..3] -> pd, pd + 4K, ...; pml4[0] -> pdpt (U | W | P) */
        xor %ecx, %ecx
2:      mov %ecx, %eax
        shl $12, %eax
        add $pd + 7, %eax
        mov %eax, pdpt(, %ecx, 8)
        inc %ecx
        cmp $4, %ecx
        jne 2b
        movl $pdpt + 7, pml4
        mov $pml4, %eax
        mov %eax, %cr3
        mov %cr4, %eax
        or $0x20, %eax                  /* PAE */
        mov %eax, %cr4
        mov $0xc0000080, %ecx           /* EFER: LME, NXE */
        rdmsr
        or $0x900, %eax
        wrmsr
        mov %cr0, %eax
        or $0x80000001, %eax            /* PG, PE */
        mov %eax, %cr0
        lgdt gdt_desc
        ljmp $0x08, $entry64

        .code64
entry64:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %ax, %fs
        mov %ax, %gs
        mov $boot_stack_top, %rsp
        call test_main
3:      hlt
        jmp 3b

        .section .rodata
        .align 16
        .globl gdt
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code, DPL 0 */
        .quad 0x00cf92000000ffff        /* 0x10: data, DPL 0 */
gdt_end:
        .globl gdt_desc
gdt_desc:
        .word gdt_end - gdt - 1
        .quad gdt

        .section .bss
        .align 4096
        .globl pml4, pdpt, pd
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4 * 4096
        .skip 16384
boot_stack_top:
