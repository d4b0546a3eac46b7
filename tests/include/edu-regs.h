/*
 * The edu device's registers (docs/specs/edu.rst), for the programs
 * that drive it: the qtests and the whole-system tests' guest tool.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_EDU_REGS_H
#define TESTS_EDU_REGS_H

#define EDU_FACT        0x08        /* n in, n! (modulo 2^32) out */
#define EDU_STATUS      0x20
#define EDU_STATUS_COMPUTING 1      /* in EDU_STATUS: factorial running */
#define EDU_DMA_SRC     0x80
#define EDU_DMA_DST     0x88
#define EDU_DMA_CNT     0x90
#define EDU_DMA_CMD     0x98
#define EDU_DMA_START   1           /* in EDU_DMA_CMD: start, busy */
#define EDU_DMA_TO_RAM  2           /* in EDU_DMA_CMD: edu buffer to RAM */
#define EDU_BUF         0x40000     /* DMA address of edu's buffer */

#endif
