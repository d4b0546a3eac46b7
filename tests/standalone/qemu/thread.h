/*
 * The few parts of QEMU's qemu/thread.h that snp-viommu's hardware-agnostic
 * files use (QemuMutex), on pthreads, so that they build and are
 * unit-tested without QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SNP_STANDALONE_THREAD_H
#define SNP_STANDALONE_THREAD_H

#include <pthread.h>

typedef struct QemuMutex {
    pthread_mutex_t lock;
} QemuMutex;

static inline void qemu_mutex_init(QemuMutex *mutex)
{
    if (pthread_mutex_init(&mutex->lock, NULL)) {
        abort();
    }
}

static inline void qemu_mutex_destroy(QemuMutex *mutex)
{
    if (pthread_mutex_destroy(&mutex->lock)) {
        abort();
    }
}

static inline void qemu_mutex_lock(QemuMutex *mutex)
{
    if (pthread_mutex_lock(&mutex->lock)) {
        abort();
    }
}

static inline void qemu_mutex_unlock(QemuMutex *mutex)
{
    if (pthread_mutex_unlock(&mutex->lock)) {
        abort();
    }
}

#endif
