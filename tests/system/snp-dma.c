/*
 * snp-dma: the whole-system tests' tool inside the guest (the SNP host)
 *
 * Drives edu through vfio-pci and iommufd the way a VMM would: binds the
 * VFIO cdev to /dev/iommu, attaches it to an IOAS, maps a hugetlb buffer
 * with IOMMU_IOAS_MAP in the areas a scenario asks for, and starts edu
 * DMA through the mmapped BAR.  Commands come one per line on stdin, each
 * answered by one line starting with "ok" or "error", so a harness on the
 * other side of the serial console can interleave them with QMP commands
 * to the emulator:
 *
 *   setup DEV            bind /dev/vfio/devices/DEV, one IOAS
 *   map IOVA OFF LEN     IOMMU_IOAS_MAP of buffer[OFF, OFF+LEN) at IOVA
 *   unmap IOVA LEN       IOMMU_IOAS_UNMAP
 *   pa OFF               physical address of buffer[OFF]
 *   pa-file PATH OFF     physical address of byte OFF of file PATH (the
 *                        hugetlbfs file behind the inner VMM's RAM)
 *   fill OFF SEED        write 64 pattern bytes at buffer[OFF]
 *   check OFF SEED       are the 64 bytes at buffer[OFF] the pattern?
 *   dma-read IOVA        edu reads 64 bytes at IOVA into its buffer
 *   dma-write IOVA       edu writes 64 bytes of its buffer to IOVA
 *   read-dev PATH        read a block device whole (O_DIRECT, 1M at a
 *                        time): bytes, seconds and a checksum
 *   stress-dev PATH SECS SEED
 *                        for SECS seconds, STRESS_WORKERS processes write
 *                        random extents of their slice of a block device
 *                        (O_DIRECT) with patterns that name block and
 *                        generation, and read random extents back, each
 *                        verified; then every block is verified once more:
 *                        writes, reads, MiB written, MiB read, mismatches
 *   sh COMMAND...        run COMMAND with /bin/sh, each line of its output
 *                        (stdout and stderr) prefixed with "| ": its exit
 *                        status ("ok exit N")
 *
 * The buffer is 128M of 2M hugetlb pages: each physically contiguous, so
 * the IO page size the kernel picks follows from the areas (the harness
 * finds pairs of adjacent pages with "pa" for larger IO pages).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include "../include/edu-regs.h"

#define BUF_SIZE        (128ULL << 20)
#define DMA_LEN         64

static int iommufd = -1, devfd = -1;
static uint32_t ioas_id;
static volatile uint8_t *bar;      /* MMIO: every access is the device's */
static uint8_t *buf;

static int fail(const char *what)
{
    printf("error %s: %s\n", what, strerror(errno));
    return -1;
}

static int setup(const char *dev)
{
    char path[96];
    struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
    struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
    struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
    struct vfio_region_info reg = { .argsz = sizeof(reg),
                                    .index = VFIO_PCI_BAR0_REGION_INDEX };

    snprintf(path, sizeof(path), "/dev/vfio/devices/%s", dev);
    iommufd = open("/dev/iommu", O_RDWR);
    devfd = open(path, O_RDWR);
    if (iommufd < 0 || devfd < 0) {
        return fail("open");
    }
    bind.iommufd = iommufd;
    if (ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind)) {
        return fail("VFIO_DEVICE_BIND_IOMMUFD");
    }
    if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc)) {
        return fail("IOMMU_IOAS_ALLOC");
    }
    ioas_id = alloc.out_ioas_id;
    attach.pt_id = ioas_id;
    if (ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)) {
        return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    }
    if (ioctl(devfd, VFIO_DEVICE_GET_REGION_INFO, &reg)) {
        return fail("VFIO_DEVICE_GET_REGION_INFO");
    }
    bar = mmap(NULL, reg.size, PROT_READ | PROT_WRITE, MAP_SHARED, devfd,
               reg.offset);
    if (bar == MAP_FAILED) {
        return fail("mmap BAR0");
    }
    /* bus master on: the PCI command register */
    {
        struct vfio_region_info cfg = { .argsz = sizeof(cfg),
                                        .index = VFIO_PCI_CONFIG_REGION_INDEX };
        uint16_t cmd;

        if (ioctl(devfd, VFIO_DEVICE_GET_REGION_INFO, &cfg) ||
            pread(devfd, &cmd, 2, cfg.offset + 4) != 2) {
            return fail("config");
        }
        cmd |= 0x6;
        if (pwrite(devfd, &cmd, 2, cfg.offset + 4) != 2) {
            return fail("config write");
        }
    }
    buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE,
               -1, 0);
    if (buf == MAP_FAILED) {
        return fail("mmap 2M hugetlb pages");
    }
    memset(buf, 0, 4096);
    printf("ok ioas %u\n", ioas_id);
    return 0;
}

static int map(uint64_t iova, uint64_t off, uint64_t len)
{
    struct iommu_ioas_map m = {
        .size = sizeof(m),
        .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
                 IOMMU_IOAS_MAP_WRITEABLE,
        .ioas_id = ioas_id,
        .user_va = (uintptr_t)buf + off,
        .length = len,
        .iova = iova,
    };

    if (ioctl(iommufd, IOMMU_IOAS_MAP, &m)) {
        return fail("IOMMU_IOAS_MAP");
    }
    printf("ok\n");
    return 0;
}

static int unmap(uint64_t iova, uint64_t len)
{
    struct iommu_ioas_unmap u = {
        .size = sizeof(u),
        .ioas_id = ioas_id,
        .iova = iova,
        .length = len,
    };

    if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &u)) {
        return fail("IOMMU_IOAS_UNMAP");
    }
    printf("ok\n");
    return 0;
}

static int pa(uint64_t off)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint64_t va = (uintptr_t)buf + off, ent;

    if (fd < 0 || pread(fd, &ent, 8, va / 4096 * 8) != 8) {
        return fail("pagemap");
    }
    close(fd);
    if (!(ent >> 63)) {
        errno = EFAULT;
        return fail("page not present");
    }
    printf("ok 0x%" PRIx64 "\n",
           (uint64_t)((ent & ((1ULL << 55) - 1)) * 4096 + va % 4096));
    return 0;
}

static int pa_file(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    uint64_t page = off & ~((2ULL << 20) - 1), va, ent;
    uint8_t *m;
    int pm;

    if (fd < 0) {
        return fail("open");
    }
    m = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, page);
    close(fd);
    if (m == MAP_FAILED) {
        return fail("mmap");
    }
    va = (uintptr_t)m + (off - page);
    (void)*(volatile uint8_t *)va;  /* fault the page in: must not go */
    pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0 || pread(pm, &ent, 8, va / 4096 * 8) != 8 || !(ent >> 63)) {
        return fail("pagemap");
    }
    close(pm);
    munmap(m, 2 << 20);
    printf("ok 0x%" PRIx64 "\n",
           (uint64_t)((ent & ((1ULL << 55) - 1)) * 4096 + va % 4096));
    return 0;
}

static void pattern(uint8_t *p, unsigned seed)
{
    for (int i = 0; i < DMA_LEN; i++) {
        p[i] = seed + i * 7;
    }
}

static void reg_write(unsigned off, uint64_t v)
{
    *(volatile uint64_t *)(bar + off) = v;  /* MMIO */
}

static uint64_t reg_read(unsigned off)
{
    return *(volatile uint64_t *)(bar + off);  /* MMIO */
}

static int dma(uint64_t src, uint64_t dst, uint64_t cmd)
{
    struct timespec ts = { 0, 1000000 };

    reg_write(EDU_DMA_SRC, src);
    reg_write(EDU_DMA_DST, dst);
    reg_write(EDU_DMA_CNT, DMA_LEN);
    reg_write(EDU_DMA_CMD, cmd | EDU_DMA_START);
    for (int i = 0; i < 10000 && (reg_read(EDU_DMA_CMD) & EDU_DMA_START);
         i++) {
        nanosleep(&ts, NULL);
    }
    if (reg_read(EDU_DMA_CMD) & EDU_DMA_START) {
        errno = ETIMEDOUT;
        return fail("edu DMA");
    }
    printf("ok\n");
    return 0;
}

static int read_dev(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT);
    struct timespec t0, t1;
    uint64_t total = 0, sum = 0;
    uint8_t *chunk;
    ssize_t n;

    if (fd < 0) {
        return fail("open");
    }
    chunk = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((n = read(fd, chunk, 1 << 20)) > 0) {
        total += n;
        for (ssize_t i = 0; i < n; i += 4096) {
            sum = sum * 31 + chunk[i];
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);
    munmap(chunk, 1 << 20);
    if (n < 0) {
        return fail("read");
    }
    printf("ok %" PRIu64 " %.3f %016" PRIx64 "\n", total,
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, sum);
    return 0;
}

/* stress-dev: verified O_DIRECT writes and reads from several processes */
#define STRESS_WORKERS  4
#define STRESS_BLK      4096
#define STRESS_MAX      (256 * 1024)    /* largest extent */

struct stress_result {
    uint64_t writes, reads, wbytes, rbytes, mismatches;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* the content of block @blk at generation @gen: every word names both */
static void stress_fill(uint64_t *p, uint64_t blk, uint32_t gen)
{
    uint64_t h = mix64(blk * 0x9e3779b97f4a7c15ULL + gen);

    for (unsigned i = 0; i < STRESS_BLK / 8; i++) {
        p[i] = h + i * 0x100000001b3ULL;
    }
    p[0] = blk;
    p[1] = gen;
}

static uint64_t stress_mismatch(const uint64_t *p, uint64_t blk, uint32_t gen,
                                const char *when)
{
    uint64_t want[STRESS_BLK / 8];

    stress_fill(want, blk, gen);
    if (!memcmp(p, want, STRESS_BLK)) {
        return 0;
    }
    for (unsigned i = 0; i < STRESS_BLK / 8; i++) {
        if (p[i] != want[i]) {
            printf("# mismatch (%s) block %" PRIu64 " gen %u word %u: "
                   "%016" PRIx64 ", expected %016" PRIx64 " (block %" PRIu64
                   " gen %" PRIu64 " in the data)\n", when, blk, gen, i,
                   p[i], want[i], p[0], p[1]);
            break;
        }
    }
    return 1;
}

static void stress_worker(int fd, uint64_t first, uint64_t nblk, int secs,
                          uint64_t seed, struct stress_result *r)
{
    uint32_t *gen = calloc(nblk, sizeof(*gen));
    uint8_t *wbuf = mmap(NULL, STRESS_MAX, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *rbuf = mmap(NULL, STRESS_MAX, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t x = mix64(seed) | 1;
    struct timespec t0, t;

    memset(r, 0, sizeof(*r));
    /* generation 1 everywhere: known contents before the random phase */
    for (uint64_t b = 0; b < nblk; b += STRESS_MAX / STRESS_BLK) {
        uint64_t n = nblk - b < STRESS_MAX / STRESS_BLK ?
                     nblk - b : STRESS_MAX / STRESS_BLK;

        for (uint64_t i = 0; i < n; i++) {
            gen[b + i] = 1;
            stress_fill((uint64_t *)(wbuf + i * STRESS_BLK), first + b + i, 1);
        }
        if (pwrite(fd, wbuf, n * STRESS_BLK, (first + b) * STRESS_BLK) !=
            (ssize_t)(n * STRESS_BLK)) {
            printf("# write error at block %" PRIu64 ": %s\n", first + b,
                   strerror(errno));
            r->mismatches++;
            return;
        }
        r->writes++;
        r->wbytes += n * STRESS_BLK;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        uint64_t b, n;
        bool wr;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n = 1 + (x >> 8) % (STRESS_MAX / STRESS_BLK);
        if (n > nblk) {
            n = nblk;
        }
        b = (x >> 24) % (nblk - n + 1);
        wr = x & 1;
        if (wr) {
            for (uint64_t i = 0; i < n; i++) {
                gen[b + i]++;
                stress_fill((uint64_t *)(wbuf + i * STRESS_BLK),
                            first + b + i, gen[b + i]);
            }
            if (pwrite(fd, wbuf, n * STRESS_BLK, (first + b) * STRESS_BLK) !=
                (ssize_t)(n * STRESS_BLK)) {
                printf("# write error at block %" PRIu64 ": %s\n", first + b,
                       strerror(errno));
                r->mismatches++;
                break;
            }
            r->writes++;
            r->wbytes += n * STRESS_BLK;
        }
        /* read back what was just written, or a random extent */
        memset(rbuf, 0xa5, n * STRESS_BLK);
        if (pread(fd, rbuf, n * STRESS_BLK, (first + b) * STRESS_BLK) !=
            (ssize_t)(n * STRESS_BLK)) {
            printf("# read error at block %" PRIu64 ": %s\n", first + b,
                   strerror(errno));
            r->mismatches++;
            break;
        }
        r->reads++;
        r->rbytes += n * STRESS_BLK;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t *p = (uint64_t *)(rbuf + i * STRESS_BLK);

            r->mismatches += stress_mismatch(p, first + b + i, gen[b + i],
                                             wr ? "read back" : "read");
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < secs && r->mismatches < 16);
    /* every block once more */
    for (uint64_t b = 0; b < nblk && r->mismatches < 16;
         b += STRESS_MAX / STRESS_BLK) {
        uint64_t n = nblk - b < STRESS_MAX / STRESS_BLK ?
                     nblk - b : STRESS_MAX / STRESS_BLK;

        if (pread(fd, rbuf, n * STRESS_BLK, (first + b) * STRESS_BLK) !=
            (ssize_t)(n * STRESS_BLK)) {
            printf("# read error at block %" PRIu64 ": %s\n", first + b,
                   strerror(errno));
            r->mismatches++;
            break;
        }
        r->reads++;
        r->rbytes += n * STRESS_BLK;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t *p = (uint64_t *)(rbuf + i * STRESS_BLK);

            r->mismatches += stress_mismatch(p, first + b + i, gen[b + i],
                                             "final");
        }
    }
}

static int stress_dev(const char *path, int secs, uint64_t seed)
{
    int fd = open(path, O_RDWR | O_DIRECT);
    struct stress_result *res, sum = { 0 };
    uint64_t nblk, slice;
    pid_t pid[STRESS_WORKERS];
    int bad = 0;

    if (fd < 0) {
        return fail("open");
    }
    nblk = lseek(fd, 0, SEEK_END) / STRESS_BLK;
    slice = nblk / STRESS_WORKERS;
    if (slice < STRESS_MAX / STRESS_BLK) {
        errno = ENOSPC;
        return fail("device too small");
    }
    res = mmap(NULL, sizeof(*res) * STRESS_WORKERS, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fflush(stdout);
    for (int w = 0; w < STRESS_WORKERS; w++) {
        pid[w] = fork();
        if (pid[w] == 0) {
            stress_worker(fd, w * slice, slice, secs, seed + w, &res[w]);
            fflush(stdout);
            _exit(0);
        }
    }
    for (int w = 0; w < STRESS_WORKERS; w++) {
        int status;

        if (pid[w] < 0 || waitpid(pid[w], &status, 0) < 0 ||
            !WIFEXITED(status) || WEXITSTATUS(status)) {
            bad++;
            continue;
        }
        sum.writes += res[w].writes;
        sum.reads += res[w].reads;
        sum.wbytes += res[w].wbytes;
        sum.rbytes += res[w].rbytes;
        sum.mismatches += res[w].mismatches;
    }
    close(fd);
    munmap(res, sizeof(*res) * STRESS_WORKERS);
    if (bad) {
        errno = ECHILD;
        return fail("stress worker");
    }
    printf("ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
           sum.writes, sum.reads, sum.wbytes >> 20, sum.rbytes >> 20,
           sum.mismatches);
    return 0;
}

static int run_sh(const char *command)
{
    char cmdline[4200], out[1024];
    FILE *p;
    int status;

    snprintf(cmdline, sizeof(cmdline), "(%s) 2>&1 </dev/null", command);
    fflush(stdout);
    p = popen(cmdline, "r");
    if (!p) {
        return fail("popen");
    }
    while (fgets(out, sizeof(out), p)) {
        out[strcspn(out, "\n")] = 0;
        printf("| %s\n", out);
    }
    status = pclose(p);
    if (status < 0) {
        return fail("pclose");
    }
    printf("ok exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status)
                                             : 128 + WTERMSIG(status));
    return 0;
}

int main(void)
{
    char line[4096], cmd[32], arg[64];
    uint64_t a, b, c;

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("snp-dma ready\n");
    while (fgets(line, sizeof(line), stdin)) {
        int n = sscanf(line, "%31s %" SCNi64 " %" SCNi64 " %" SCNi64, cmd, &a,
                       &b, &c);

        if (n < 1) {
            continue;
        }
        if (!strcmp(cmd, "setup") && sscanf(line, "%*s %63s", arg) == 1) {
            setup(arg);
        } else if (!strcmp(cmd, "map") && n == 4) {
            map(a, b, c);
        } else if (!strcmp(cmd, "unmap") && n == 3) {
            unmap(a, b);
        } else if (!strcmp(cmd, "pa-file") &&
                   sscanf(line, "%*s %63s %" SCNi64, arg, &a) == 2) {
            pa_file(arg, a);
        } else if (!strcmp(cmd, "pa") && n == 2) {
            pa(a);
        } else if (!strcmp(cmd, "fill") && n == 3) {
            pattern(buf + a, b);
            printf("ok\n");
        } else if (!strcmp(cmd, "check") && n == 3) {
            uint8_t want[DMA_LEN];

            pattern(want, b);
            printf("ok %s\n", memcmp(buf + a, want, DMA_LEN) ? "differs"
                                                             : "matches");
        } else if (!strcmp(cmd, "dma-read") && n == 2) {
            dma(a, EDU_BUF, 0);
        } else if (!strcmp(cmd, "dma-write") && n == 2) {
            dma(EDU_BUF, a, EDU_DMA_TO_RAM);
        } else if (!strcmp(cmd, "read-dev") &&
                   sscanf(line, "%*s %63s", arg) == 1) {
            read_dev(arg);
        } else if (!strcmp(cmd, "stress-dev") &&
                   sscanf(line, "%*s %63s %" SCNi64 " %" SCNi64, arg, &a,
                          &b) == 3) {
            stress_dev(arg, a, b);
        } else if (!strcmp(cmd, "sh") && strlen(line) > 3) {
            line[strcspn(line, "\n")] = 0;
            run_sh(line + 3);
        } else if (!strcmp(cmd, "quit")) {
            printf("ok\n");
            return 0;
        } else {
            printf("error unknown command: %s", line);
        }
    }
    return 0;
}
