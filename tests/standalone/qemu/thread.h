/*
 * The few parts of QEMU's qemu/thread.h that snp-viommu's hardware-agnostic
 * files use (QemuMutex, QemuSpin), on pthreads and atomics, so that they
 * build and are unit-tested without QEMU.
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

/* QemuRecMutex: a recursive mutex */
typedef struct QemuRecMutex {
    pthread_mutex_t lock;
} QemuRecMutex;

static inline void qemu_rec_mutex_init(QemuRecMutex *mutex)
{
    pthread_mutexattr_t attr;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    if (pthread_mutex_init(&mutex->lock, &attr)) {
        abort();
    }
    pthread_mutexattr_destroy(&attr);
}

static inline void qemu_rec_mutex_destroy(QemuRecMutex *mutex)
{
    if (pthread_mutex_destroy(&mutex->lock)) {
        abort();
    }
}

static inline void qemu_rec_mutex_lock(QemuRecMutex *mutex)
{
    if (pthread_mutex_lock(&mutex->lock)) {
        abort();
    }
}

static inline void qemu_rec_mutex_unlock(QemuRecMutex *mutex)
{
    if (pthread_mutex_unlock(&mutex->lock)) {
        abort();
    }
}

/* QemuSpin: a test-and-set lock, as QEMU's */
typedef struct QemuSpin {
    int value;
} QemuSpin;

static inline void qemu_spin_init(QemuSpin *spin)
{
    __atomic_store_n(&spin->value, 0, __ATOMIC_RELAXED);
}

static inline void qemu_spin_destroy(QemuSpin *spin)
{
}

static inline void qemu_spin_lock(QemuSpin *spin)
{
    while (__atomic_exchange_n(&spin->value, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&spin->value, __ATOMIC_RELAXED)) {
            /* spin */
        }
    }
}

static inline void qemu_spin_unlock(QemuSpin *spin)
{
    __atomic_store_n(&spin->value, 0, __ATOMIC_RELEASE);
}

#endif
