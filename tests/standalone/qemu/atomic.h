/*
 * The few parts of QEMU's qemu/atomic.h that snp-viommu's
 * hardware-agnostic files use, on the compiler's __atomic builtins, so
 * that they build and are unit-tested without QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SNP_STANDALONE_ATOMIC_H
#define SNP_STANDALONE_ATOMIC_H

#define qatomic_read(ptr)       __atomic_load_n(ptr, __ATOMIC_RELAXED)
#define qatomic_set(ptr, i)     __atomic_store_n(ptr, i, __ATOMIC_RELAXED)
#define qatomic_load_acquire(ptr) __atomic_load_n(ptr, __ATOMIC_ACQUIRE)
/* earlier stores before later stores */
#define smp_wmb()   __atomic_thread_fence(__ATOMIC_RELEASE)
/* earlier loads before later loads */
#define smp_rmb()   __atomic_thread_fence(__ATOMIC_ACQUIRE)

#endif
