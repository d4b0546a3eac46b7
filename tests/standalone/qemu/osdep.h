/*
 * The few parts of QEMU's qemu/osdep.h that snp-viommu's hardware-agnostic
 * files use, so that they build and are unit-tested without QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SNP_STANDALONE_OSDEP_H
#define SNP_STANDALONE_OSDEP_H

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

#ifndef DIV_ROUND_UP
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#endif
#ifndef ROUND_DOWN
#define ROUND_DOWN(n, d) ((n) & -(0 ? (n) : (d)))
#endif
#ifndef QEMU_IS_ALIGNED
#define QEMU_IS_ALIGNED(n, m) (((n) % (m)) == 0)
#endif

#endif
