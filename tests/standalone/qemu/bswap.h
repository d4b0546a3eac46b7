/*
 * The little-endian load/store helpers of QEMU's qemu/bswap.h that the
 * standalone core uses, for building it without QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef STANDALONE_QEMU_BSWAP_H
#define STANDALONE_QEMU_BSWAP_H

static inline uint64_t ldq_le_p(const void *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_LE(v);
}

static inline uint32_t ldl_le_p(const void *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

static inline void stq_le_p(void *p, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void stl_le_p(void *p, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

#endif
