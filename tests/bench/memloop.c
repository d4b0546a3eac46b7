/*
 * memloop: a memory-bound loop for the guest, to measure what the SNP
 * host's RMP check of host writes (done at TLB fill) costs TCG.
 *
 * It maps SIZE bytes, touches every page once, then runs PASSES passes
 * of each mode: write, or read, one byte per 64-byte line (a memory-bound
 * loop), and write one byte per 4K page (the TLB fill's worst case: a
 * pass that misses the TLB costs a hundred times one that hits it).  It
 * prints each mode's best and median pass in microseconds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define SIZE    (192UL << 20)
#define PASSES  15

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(void)
{
    volatile unsigned char *buf = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS |
                                       MAP_POPULATE, -1, 0);
    double t[PASSES];
    unsigned sum = 0;

    if (buf == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    static const char *const names[] = { "write", "read", "page" };

    for (int mode = 0; mode < 3; mode++) {
        unsigned long stride = mode == 2 ? 4096 : 64;

        for (int p = 0; p < PASSES; p++) {
            double t0 = now_us();

            for (unsigned long i = 0; i < SIZE; i += stride) {
                if (mode == 1) {
                    sum += buf[i];
                } else {
                    buf[i]++;
                }
            }
            t[p] = now_us() - t0;
        }
        qsort(t, PASSES, sizeof(t[0]), cmp);
        printf("memloop: %s best %.0f us median %.0f us\n", names[mode],
               t[0], t[PASSES / 2]);
    }
    return sum == 0xdeadbeef;
}
