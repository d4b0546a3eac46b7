/*
 * QTest for the SNP mode of the AMD IOMMU (amd-iommu,snp=on)
 *
 * The test plays the SNP host kernel: it programs the IOMMU only through
 * its MMIO registers and guest memory (device table, AMDv1 IO page tables,
 * command buffer, event log, MSI), changes the RMP through QMP as KVM
 * would, and makes the edu device DMA through the IOMMU.  Every case
 * asserts whether the bytes arrived, the exact event-log entry, EVENT_TAIL,
 * the MSI and the SNP_RMP_FAULT event.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/bswap.h"
#include "libqtest.h"
#include "snp-rmp-qtest.h"
#include "libqos/pci-pc.h"
#include "libqos/fw_cfg.h"
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"
#include "../include/edu-regs.h"

/* AMD IOMMU MMIO (AMD IOMMU spec, "MMIO Registers") */
#define IOMMU_BASE          0xfed80000ULL
#define MMIO_DEVTAB         0x0000
#define MMIO_CMDBUF         0x0008
#define MMIO_EVTLOG         0x0010
#define MMIO_CONTROL        0x0018
#define MMIO_EFR            0x0030
#define MMIO_CMD_HEAD       0x2000
#define MMIO_CMD_TAIL       0x2008
#define MMIO_EVT_HEAD       0x2010
#define MMIO_EVT_TAIL       0x2018
#define MMIO_STATUS         0x2020

#define CTRL_IOMMU_EN       (1ULL << 0)
#define CTRL_EVTLOG_EN      (1ULL << 2)
#define CTRL_EVTINT_EN      (1ULL << 3)
#define CTRL_CMDBUF_EN      (1ULL << 12)
#define STATUS_EVT_OVF      (1ULL << 0)
#define STATUS_EVT_INT      (1ULL << 1)
#define STATUS_EVT_RUN      (1ULL << 3)

#define EFR_SNP_SUP         (1ULL << 63)

/* snp=on, and every SNP_RMP_FAULT the tests provoke comes out */
#define SNP_ON ",snp=on,rmp-fault-event-rate=0"

/* Device table entry, page table entry */
#define DTE_V               (1ULL << 0)
#define DTE_TV              (1ULL << 1)
#define DTE_MODE(m)         ((uint64_t)(m) << 9)
#define PTE_PR              (1ULL << 0)
#define PTE_NL(l)           ((uint64_t)(l) << 9)
#define PTE_IR              (1ULL << 61)
#define PTE_IW              (1ULL << 62)

#define CMD_COMPLETION_WAIT     1ULL
#define CMD_INVAL_DEVTAB_ENTRY  2ULL
#define CMD_INVAL_IOMMU_PAGES   3ULL
#define CMD_INVAL_IOMMU_ALL     8ULL
#define EFR_IA_SUP              (1ULL << 6)

#define EVT_RMP_PAGE_FAULT      0xdULL
#define EVT_ILLEGAL_DEV_TABLE   0x1ULL
#define EVT_IO_PAGE_FAULT       0x2ULL
/*
 * IO_PAGE_FAULT flags, DW1[27:16] (AMD IOMMU specification, "Event Log",
 * IO_PAGE_FAULT event; Linux's EVENT_FLAG_* in amd_iommu_types.h): I is an
 * interrupt request (never a DMA), PR a fault on a present page (a
 * permission failure), RW a write.
 */
#define EVT_FLAG_I              0x008ULL
#define EVT_FLAG_PR             0x010ULL
#define EVT_FLAG_RW             0x020ULL

/* edu */
#define EDU_DEVFN           QPCI_DEVFN(4, 0)
#define EDU_DEVID           EDU_DEVFN       /* bus 0 */

/* Guest memory layout: IOMMU structures and scratch in the low 4M */
#define DEVTAB_ADDR         0x180000ULL     /* up to 16 pages */
#define CMDBUF_ADDR         0x101000ULL
#define EVTLOG_ADDR         0x102000ULL     /* 256 entries */
#define COMPLETION_ADDR     0x103000ULL
#define MSI_ADDR            0x103800ULL
#define MSI_DATA            0x4a5b
#define PT_POOL             0x110000ULL
#define SCRATCH_SPA         0x300000ULL
#define SCRATCH_IOVA        0x7000000000ULL
#define IOVA_OFFSET         (64 * GiB)      /* IOVA = SPA + 64G */
#define DOMID               1
#define EVTLOG_ENTRIES      256
#define DMA_LEN             64

#define RMP_ASID            1
#define OTHER_ASID          2

#define K4 (4 * KiB)
#define M2 (2 * MiB)

typedef struct TestState {
    QTestState *qts;
    QPCIBus *pcibus;
    QPCIDevice *edu;
    QPCIBar edu_bar;
    uint64_t pt_next;
    uint64_t root;
    uint64_t cmd_tail;
    uint32_t evt_tail;
    uint32_t msi_count;
} TestState;

static const uint64_t io_page_sizes[] = {
    4 * KiB, 64 * KiB, 1 * MiB, 2 * MiB, 4 * MiB, 1 * GiB,
};

/* Where each IO page size maps: SPA, aligned to the page */
static uint64_t page_spa(uint64_t size)
{
    switch (size) {
    case 4 * KiB:
        return 0x10000000;
    case 64 * KiB:
        return 0x10200000;
    case 1 * MiB:
        return 0x10400000;
    case 2 * MiB:
        return 0x10600000;
    case 4 * MiB:
        return 0x10800000;
    case 1 * GiB:
        return 0x40000000;
    }
    g_assert_not_reached();
}

/* The DMA lands past the first 4K of large pages: sizing matters */
static uint64_t dma_offset(uint64_t size)
{
    return size == K4 ? 0x100 : size / 2 + 0x140;
}

static void mmio_writeq(TestState *s, uint64_t reg, uint64_t val)
{
    qtest_writeq(s->qts, IOMMU_BASE + reg, val);
}

static uint64_t mmio_readq(TestState *s, uint64_t reg)
{
    return qtest_readq(s->qts, IOMMU_BASE + reg);
}

static uint64_t pt_alloc(TestState *s)
{
    uint64_t page = s->pt_next;

    s->pt_next += K4;
    g_assert_cmpuint(s->pt_next, <=, DEVTAB_ADDR);
    qtest_memset(s->qts, page, 0, K4);
    return page;
}

/* The next-level table of the entry at @pte_addr, created on demand */
static uint64_t pt_next_table(TestState *s, uint64_t pte_addr, int level)
{
    uint64_t pte = qtest_readq(s->qts, pte_addr);

    if (!(pte & PTE_PR)) {
        uint64_t table = pt_alloc(s);

        pte = table | PTE_NL(level) | PTE_PR | PTE_IR | PTE_IW;
        qtest_writeq(s->qts, pte_addr, pte);
    }
    return pte & 0x000ffffffffff000ULL;
}

/*
 * Map @size at @iova to @spa in the 3-level AMDv1 table: 4K, 2M and 1G
 * pages as NextLevel=0 leaves (as Linux writes them), 64K, 1M and 4M as
 * NextLevel=7 runs of identical PTEs encoding the size in address bits.
 */
static void map_page(TestState *s, uint64_t iova, uint64_t spa,
                     uint64_t size)
{
    uint64_t perm = PTE_PR | PTE_IR | PTE_IW;
    uint64_t l3e = s->root + ((iova >> 30) & 0x1ff) * 8;
    uint64_t l2, l1 = 0;
    unsigned n, level_shift;
    uint64_t leaf;

    if (size == GiB) {
        qtest_writeq(s->qts, l3e, spa | perm);
        return;
    }
    l2 = pt_next_table(s, l3e, 2);
    if (size >= M2) {
        level_shift = 21;
    } else {
        l1 = pt_next_table(s, l2 + ((iova >> 21) & 0x1ff) * 8, 1);
        level_shift = 12;
    }
    if (size == M2 || size == K4) {
        leaf = spa | perm;
        n = 1;
    } else {
        /* NextLevel=7: bits 12..log2(size)-2 set encode the size */
        leaf = spa | ((size / 2 - 1) & ~0xfffULL) | PTE_NL(7) | perm;
        n = size >> level_shift;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t idx = ((iova >> level_shift) & 0x1ff) + i;

        qtest_writeq(s->qts, (level_shift == 21 ? l2 : l1) + idx * 8, leaf);
    }
}

static void cmd_submit(TestState *s, uint64_t c0, uint64_t c1)
{
    qtest_writeq(s->qts, CMDBUF_ADDR + s->cmd_tail, c0);
    qtest_writeq(s->qts, CMDBUF_ADDR + s->cmd_tail + 8, c1);
    s->cmd_tail = (s->cmd_tail + 16) % K4;
    mmio_writeq(s, MMIO_CMD_TAIL, s->cmd_tail);
    g_assert_cmpuint(mmio_readq(s, MMIO_CMD_HEAD), ==, s->cmd_tail);
}

static void completion_wait(TestState *s)
{
    static uint64_t seq = 0x1000;

    seq++;
    cmd_submit(s, COMPLETION_ADDR | 1 | CMD_COMPLETION_WAIT << 60, seq);
    g_assert_cmpuint(qtest_readq(s->qts, COMPLETION_ADDR), ==, seq);
}

static void inval_devtab_entry(TestState *s, uint16_t devid)
{
    cmd_submit(s, devid | CMD_INVAL_DEVTAB_ENTRY << 60, 0);
    completion_wait(s);
}

static void inval_all_pages(TestState *s)
{
    cmd_submit(s, (uint64_t)DOMID << 32 | CMD_INVAL_IOMMU_PAGES << 60,
               0x7ffffffffffff000ULL | 1);
    completion_wait(s);
}

static void set_dte(TestState *s, uint16_t devid, uint64_t q0)
{
    qtest_writeq(s->qts, DEVTAB_ADDR + devid * 32, q0);
    qtest_writeq(s->qts, DEVTAB_ADDR + devid * 32 + 8, DOMID);
    inval_devtab_entry(s, devid);
}

static void setup_msi(TestState *s)
{
    QPCIDevice *dev = NULL;
    uint8_t cap;

    for (int slot = 0; slot < 32 && !dev; slot++) {
        QPCIDevice *d = qpci_device_find(s->pcibus, QPCI_DEVFN(slot, 0));

        if (d && qpci_config_readw(d, PCI_VENDOR_ID) == 0x1022 &&
            qpci_config_readw(d, PCI_DEVICE_ID) == 0x1419) {
            dev = d;
        } else {
            g_free(d);
        }
    }
    g_assert_nonnull(dev);
    cap = qpci_find_capability(dev, PCI_CAP_ID_MSI, 0);
    g_assert_cmpint(cap, !=, 0);
    qpci_config_writel(dev, cap + PCI_MSI_ADDRESS_LO, MSI_ADDR);
    qpci_config_writel(dev, cap + PCI_MSI_ADDRESS_HI, 0);
    qpci_config_writew(dev, cap + PCI_MSI_DATA_64, MSI_DATA);
    qpci_config_writew(dev, cap + PCI_MSI_FLAGS,
                       qpci_config_readw(dev, cap + PCI_MSI_FLAGS) |
                       PCI_MSI_FLAGS_ENABLE);
    g_free(dev);
    qtest_writel(s->qts, MSI_ADDR, 0);
}

/*
 * Enable edu (at @devfn, bus number in bits 8-15) and the IOMMU as a host
 * kernel would: a device table of @devtab_pages pages, a 256-entry command
 * buffer and event log, event interrupts through MSI.
 */
static void iommu_setup(TestState *s, int devfn, unsigned devtab_pages)
{
    s->edu = qpci_device_find(s->pcibus, devfn);
    g_assert_nonnull(s->edu);
    qpci_device_enable(s->edu);
    s->edu_bar = qpci_iomap(s->edu, 0, NULL);
    setup_msi(s);

    s->pt_next = PT_POOL;
    s->root = pt_alloc(s);
    qtest_memset(s->qts, DEVTAB_ADDR, 0, devtab_pages * K4);
    qtest_memset(s->qts, EVTLOG_ADDR, 0, K4);
    mmio_writeq(s, MMIO_DEVTAB, DEVTAB_ADDR | (devtab_pages - 1));
    mmio_writeq(s, MMIO_CMDBUF, CMDBUF_ADDR | 8ULL << 56);  /* 256 */
    mmio_writeq(s, MMIO_EVTLOG, EVTLOG_ADDR | 8ULL << 56);  /* 256 */
    mmio_writeq(s, MMIO_CONTROL, CTRL_IOMMU_EN | CTRL_EVTLOG_EN |
                CTRL_EVTINT_EN | CTRL_CMDBUF_EN);
}

/* @iommu_opts: more amd-iommu properties, after dma-remap=on */
static TestState *test_start_opts(const char *iommu_opts, const char *extra)
{
    TestState *s = g_new0(TestState, 1);

    s->qts = qtest_initf("-M q35 -m 2G "
                         "-object snp-rmp,id=rmp0 "
                         "-device amd-iommu,dma-remap=on%s "
                         "-device edu,id=edu0,addr=04.0,dma_mask=%" PRIu64
                         " %s", iommu_opts,
                         (uint64_t)(1ULL << 39) - 1, extra ? extra : "");
    s->pcibus = qpci_new_pc(s->qts, NULL);
    iommu_setup(s, EDU_DEVFN, 1);

    map_page(s, SCRATCH_IOVA, SCRATCH_SPA, K4);
    for (unsigned i = 0; i < G_N_ELEMENTS(io_page_sizes); i++) {
        uint64_t spa = page_spa(io_page_sizes[i]);

        map_page(s, spa + IOVA_OFFSET, spa, io_page_sizes[i]);
    }
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(3) | s->root |
            PTE_IR | PTE_IW);
    return s;
}

static TestState *test_start(bool snp, const char *extra)
{
    return test_start_opts(snp ? SNP_ON : "", extra);
}

static void test_end(TestState *s)
{
    g_free(s->edu);
    qpci_free_pc(s->pcibus);
    qtest_quit(s->qts);
    g_free(s);
}

static void edu_dma(TestState *s, uint64_t src, uint64_t dst, uint64_t cmd)
{
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_SRC, src);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_DST, dst);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CNT, DMA_LEN);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CMD, cmd | EDU_DMA_START);
    qtest_clock_step(s->qts, 200 * 1000 * 1000);    /* edu waits 100 ms */
    g_assert_cmpuint(qpci_io_readq(s->edu, s->edu_bar, EDU_DMA_CMD) &
                     EDU_DMA_START, ==, 0);
}

/* DMA from RAM at @iova into edu's buffer */
static void dma_read(TestState *s, uint64_t iova)
{
    edu_dma(s, iova, EDU_BUF, 0);
}

/* DMA from edu's buffer to RAM at @iova */
static void dma_write(TestState *s, uint64_t iova)
{
    edu_dma(s, EDU_BUF, iova, EDU_DMA_TO_RAM);
}

static void fill(TestState *s, uint64_t spa, uint8_t seed)
{
    uint8_t buf[DMA_LEN];

    for (int i = 0; i < DMA_LEN; i++) {
        buf[i] = seed + i * 7;
    }
    qtest_memwrite(s->qts, spa, buf, sizeof(buf));
}

static bool holds(TestState *s, uint64_t spa, uint8_t seed)
{
    uint8_t buf[DMA_LEN];

    qtest_memread(s->qts, spa, buf, sizeof(buf));
    for (int i = 0; i < DMA_LEN; i++) {
        if (buf[i] != (uint8_t)(seed + i * 7)) {
            return false;
        }
    }
    return true;
}

/* The event-log entry a fault of @devid at @iova must produce */
static void expect_event(TestState *s, uint64_t code, uint16_t devid,
                         uint64_t flags, uint64_t addr)
{
    uint32_t tail = mmio_readq(s, MMIO_EVT_TAIL);
    uint64_t q0 = qtest_readq(s->qts, EVTLOG_ADDR + s->evt_tail);
    uint64_t q1 = qtest_readq(s->qts, EVTLOG_ADDR + s->evt_tail + 8);
    /* IO_PAGE_FAULT: DW1[15:0] is the DomainID of the DTE (set_dte) */
    uint64_t domid = code == EVT_IO_PAGE_FAULT ? (uint64_t)DOMID << 32 : 0;

    g_assert_cmphex(tail, ==, (s->evt_tail + 16) % (EVTLOG_ENTRIES * 16));
    g_assert_cmphex(q0, ==, devid | domid | (code << 60) | (flags << 48));
    g_assert_cmphex(q1, ==, addr);
    s->evt_tail = tail;
    /* one MSI per event */
    s->msi_count++;
    g_assert_cmphex(qtest_readl(s->qts, MSI_ADDR), ==, MSI_DATA);
    qtest_writel(s->qts, MSI_ADDR, 0);
    g_assert_true(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_INT);
    mmio_writeq(s, MMIO_STATUS, STATUS_EVT_INT);     /* W1C */
    mmio_writeq(s, MMIO_EVT_HEAD, tail);
}

static void expect_no_event(TestState *s)
{
    g_assert_cmphex(mmio_readq(s, MMIO_EVT_TAIL), ==, s->evt_tail);
    g_assert_cmphex(qtest_readl(s->qts, MSI_ADDR), ==, 0);
}

/* The SNP_RMP_FAULT of the last DMA, or NULL if there was none */
static QDict *take_rmp_fault(TestState *s)
{
    /* a round trip delivers the events the DMA sent before it */
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'query-status' }");
    return qtest_qmp_event_ref(s->qts, "SNP_RMP_FAULT");
}

static void rmp_update(TestState *s, uint64_t spa, const char *size,
                       bool assigned, uint32_t asid, uint64_t gpa,
                       bool validated)
{
    qtest_qmp_assert_success(s->qts,
        "{ 'execute': 'snp-rmp-update', 'arguments': { 'spa': %" PRIu64 ","
        " 'page-size': %s, 'assigned': %i, 'asid': %u, 'gpa': %" PRIu64 ","
        " 'validated': %i } }", spa, size, assigned, asid, gpa, validated);
}

static void rmp_psmash(TestState *s, uint64_t spa)
{
    qtest_qmp_assert_success(s->qts,
        "{ 'execute': 'snp-rmp-psmash', 'arguments': { 'spa': %" PRIu64
        " } }", spa);
}

/* The matrix */

typedef enum Owner {
    OWNER_HYPERVISOR,
    OWNER_ASSIGNED,             /* guest-private, device not bound */
    OWNER_BOUND_MATCH,          /* bound device, right ASID, GPA, validated */
    OWNER_BOUND_OTHER_ASID,
    OWNER_BOUND_OTHER_GPA,
    OWNER_BOUND_NOT_VALIDATED,
    OWNER_MAX,
} Owner;

static const char *const owner_names[] = {
    "hypervisor", "assigned", "bound-match", "bound-other-asid",
    "bound-other-gpa", "bound-not-validated",
};

typedef struct MatrixCase {
    uint64_t io_page_size;
    bool rmp_2m;
    Owner owner;
    bool write;
} MatrixCase;

/*
 * The hardware rules, stated independently of the emulator: NULL if the
 * DMA must go through, else the SnpRmpFaultReason it must fail with.
 */
static const char *expected_fault(const MatrixCase *c)
{
    bool check_2m = c->io_page_size >= M2;

    if (check_2m != c->rmp_2m) {
        return "page-size-mismatch";
    }
    switch (c->owner) {
    case OWNER_HYPERVISOR:
    case OWNER_BOUND_MATCH:
        return NULL;
    case OWNER_ASSIGNED:
        return "assigned";
    case OWNER_BOUND_OTHER_ASID:
        return "asid-mismatch";
    case OWNER_BOUND_OTHER_GPA:
        return "gpa-mismatch";
    case OWNER_BOUND_NOT_VALIDATED:
        return "not-validated";
    default:
        g_assert_not_reached();
    }
}

/* Program the RMP of @spa's 2M region as the case asks */
static void rmp_setup(TestState *s, const MatrixCase *c, uint64_t spa,
                      uint64_t iova)
{
    uint64_t region = spa & ~(M2 - 1);
    bool assigned = c->owner != OWNER_HYPERVISOR;
    uint32_t asid = c->owner == OWNER_BOUND_OTHER_ASID ? OTHER_ASID
                                                       : RMP_ASID;
    bool validated = c->owner != OWNER_BOUND_NOT_VALIDATED;
    uint64_t gpa_mask = c->rmp_2m ? ~(M2 - 1) : ~(K4 - 1);
    uint64_t gpa = iova & gpa_mask;

    if (c->owner == OWNER_BOUND_OTHER_GPA) {
        gpa += 8 * M2;
    }
    if (!assigned) {
        asid = 0;
        gpa = 0;
        validated = false;
    }
    /* the hypervisor reclaims the 2M region: one hypervisor 2M entry */
    rmp_update(s, region, "2m", false, 0, 0, false);
    if (c->rmp_2m) {
        rmp_update(s, region, "2m", assigned, asid, gpa, validated);
    } else {
        rmp_psmash(s, region);
        rmp_update(s, spa & ~(K4 - 1), "4k", assigned, asid, gpa, validated);
    }
    if (c->owner >= OWNER_BOUND_MATCH) {
        qtest_qmp_assert_success(s->qts,
            "{ 'execute': 'snp-iommu-bind-device',"
            "  'arguments': { 'device': 'edu0', 'asid': %u } }", RMP_ASID);
    } else {
        /* fails harmlessly when the device is not bound */
        qobject_unref(qtest_qmp(s->qts,
                                "{ 'execute': 'snp-iommu-unbind-device',"
                                "  'arguments': { 'device': 'edu0' } }"));
    }
}

static void check_fault_event(QDict *ev, const MatrixCase *c, uint64_t iova,
                              uint64_t spa, const char *reason)
{
    QDict *data = qdict_get_qdict(ev, "data");

    g_assert_cmpstr(qdict_get_str(data, "device"), ==, "edu0");
    g_assert_cmpint(qdict_get_int(data, "devid"), ==, EDU_DEVID);
    g_assert_cmphex(qdict_get_uint(data, "iova"), ==, iova);
    g_assert_cmphex(qdict_get_uint(data, "spa"), ==, spa);
    g_assert_cmphex(qdict_get_uint(data, "io-page-size"), ==,
                    c->io_page_size);
    g_assert_cmpstr(qdict_get_str(data, "check-size"), ==,
                    c->io_page_size >= M2 ? "2m" : "4k");
    g_assert_cmpstr(qdict_get_str(data, "rmp-page-size"), ==,
                    c->rmp_2m ? "2m" : "4k");
    g_assert_cmpstr(qdict_get_str(data, "reason"), ==, reason);
    g_assert_cmpint(qdict_get_bool(data, "write"), ==, c->write);
}

static void run_case(TestState *s, const MatrixCase *c)
{
    uint64_t spa = page_spa(c->io_page_size) + dma_offset(c->io_page_size);
    uint64_t iova = spa + IOVA_OFFSET;
    const char *reason = expected_fault(c);
    QDict *ev;

    /* no IOTLB invalidation: R5 says the RMP change counts at once */
    rmp_setup(s, c, spa, iova);

    if (c->write) {
        fill(s, SCRATCH_SPA, 0x11);
        dma_read(s, SCRATCH_IOVA);          /* edu buffer := pattern */
        fill(s, spa, 0x99);
        dma_write(s, iova);
        g_assert_cmpint(holds(s, spa, 0x11), ==, !reason);
    } else {
        fill(s, spa, 0x22);
        fill(s, SCRATCH_SPA, 0x33);
        dma_read(s, iova);                  /* edu buffer := target */
        dma_write(s, SCRATCH_IOVA);         /* scratch := edu buffer */
        g_assert_cmpint(holds(s, SCRATCH_SPA, 0x22), ==, !reason);
    }

    ev = take_rmp_fault(s);
    if (!reason) {
        g_assert_null(ev);
        expect_no_event(s);
        return;
    }
    g_assert_nonnull(ev);
    check_fault_event(ev, c, iova, spa, reason);
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID,
                 c->write ? EVT_FLAG_RW : 0, iova);
    /* the DMA faulted once: one event, one MSI */
    expect_no_event(s);
}

static void test_matrix(void)
{
    TestState *s = test_start(true, NULL);
    unsigned n = 0;

    for (unsigned i = 0; i < G_N_ELEMENTS(io_page_sizes); i++) {
        for (int rmp_2m = 0; rmp_2m < 2; rmp_2m++) {
            for (Owner o = 0; o < OWNER_MAX; o++) {
                for (int write = 0; write < 2; write++) {
                    MatrixCase c = {
                        .io_page_size = io_page_sizes[i],
                        .rmp_2m = rmp_2m,
                        .owner = o,
                        .write = write,
                    };

                    if (g_test_verbose()) {
                        g_test_message("IO page 0x%" PRIx64 ", RMP %s, %s, "
                                       "%s", c.io_page_size,
                                       rmp_2m ? "2M" : "4K", owner_names[o],
                                       write ? "write" : "read");
                    }
                    run_case(s, &c);
                    n++;
                }
            }
        }
    }
    g_assert_cmpuint(n, ==, 6 * 2 * OWNER_MAX * 2);
    test_end(s);
}

/* R5: the RMP is checked on IOTLB hits too (thread 003, the 2023 bug) */
static void test_rmp_change_after_iotlb_hit(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t region = page_spa(M2);
    uint64_t spa = region + 0x5000;
    uint64_t iova = spa + IOVA_OFFSET;
    QDict *ev;

    /* a 2M IO page over a 2M hypervisor RMP entry: DMA works */
    rmp_update(s, region, "2m", false, 0, 0, false);
    fill(s, SCRATCH_SPA, 0x44);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x44));
    g_assert_null(take_rmp_fault(s));

    /* KVM shares... no: the guest converts one 4K page to private */
    rmp_psmash(s, region);
    rmp_update(s, region + 0x1ff000, "4k", true, RMP_ASID, 0x1ff000, true);

    /* no IOTLB invalidation: the next DMA to a shared page faults */
    fill(s, SCRATCH_SPA, 0x55);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x44));
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"), ==,
                    "page-size-mismatch");
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, EVT_FLAG_RW, iova);

    /* the host re-forms the 2M entry: DMA works again, still no flush */
    rmp_update(s, region, "2m", false, 0, 0, false);
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x55));
    g_assert_null(take_rmp_fault(s));
    expect_no_event(s);

    /* unbinding a TEE-IO device counts at once too */
    spa = page_spa(K4);
    iova = spa + IOVA_OFFSET;
    rmp_update(s, spa, "4k", true, RMP_ASID, iova, true);
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'snp-iommu-bind-device',"
                             " 'arguments': { 'device': 'edu0', 'asid': %u"
                             " } }", RMP_ASID);
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x55));
    g_assert_null(take_rmp_fault(s));
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'snp-iommu-unbind-device',"
                             " 'arguments': { 'device': 'edu0' } }");
    dma_read(s, iova);
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"), ==,
                    "assigned");
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, 0, iova);
    test_end(s);
}

/* A full event log sets EventOverflow and drops events until cleared */
static void test_event_log_overflow(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t spa = page_spa(M2) + 0x3000;   /* fresh RMP: 4K entries */
    uint64_t iova = spa + IOVA_OFFSET;
    unsigned i;

    for (i = 0; i < EVTLOG_ENTRIES - 1; i++) {
        dma_read(s, iova);
        g_assert_cmphex(mmio_readq(s, MMIO_EVT_TAIL), ==, (i + 1) * 16);
        g_assert_cmphex(qtest_readq(s->qts, EVTLOG_ADDR + i * 16 + 8), ==,
                        iova);
    }
    g_assert_false(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_OVF);
    qtest_writel(s->qts, MSI_ADDR, 0);
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'query-status' }");
    while (qtest_qmp_event_ref(s->qts, "SNP_RMP_FAULT")) {
        /* drain */
    }

    /* the log is full (tail + 1 == head): overflow, with an MSI */
    dma_read(s, iova);
    g_assert_cmphex(mmio_readq(s, MMIO_EVT_TAIL), ==, i * 16);
    g_assert_true(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_OVF);
    g_assert_cmphex(qtest_readl(s->qts, MSI_ADDR), ==, MSI_DATA);
    /* the DMA was still aborted and reported through QMP */
    g_assert_nonnull(take_rmp_fault(s));
    /*
     * Logging stopped: EventLogRun is clear, which is what Linux's
     * amd_iommu_restart_log() waits for before it restarts the log.
     */
    g_assert_false(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_RUN);

    /*
     * Software drains the log and restarts it as Linux does: EventLogEn
     * off, EventOverflow cleared, EventLogEn on.  Logging resumes.
     */
    mmio_writeq(s, MMIO_EVT_HEAD, i * 16);
    mmio_writeq(s, MMIO_CONTROL, CTRL_IOMMU_EN | CTRL_CMDBUF_EN);
    mmio_writeq(s, MMIO_STATUS, STATUS_EVT_OVF | STATUS_EVT_INT);
    mmio_writeq(s, MMIO_CONTROL, CTRL_IOMMU_EN | CTRL_EVTLOG_EN |
                CTRL_EVTINT_EN | CTRL_CMDBUF_EN);
    g_assert_true(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_RUN);
    qtest_writel(s->qts, MSI_ADDR, 0);
    s->evt_tail = i * 16;
    dma_write(s, iova);
    g_assert_nonnull(take_rmp_fault(s));
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, EVT_FLAG_RW, iova);
    test_end(s);
}

/* DMA without translation (DTE V=0) is checked at 4K */
static void test_untranslated_dma(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t spa = page_spa(K4) + 0x100;
    QDict *ev;

    set_dte(s, EDU_DEVID, 0);
    fill(s, spa, 0x66);
    dma_read(s, spa);
    fill(s, spa, 0);
    dma_write(s, spa);
    g_assert_true(holds(s, spa, 0x66));
    g_assert_null(take_rmp_fault(s));

    rmp_update(s, spa & ~(K4 - 1), "4k", true, RMP_ASID, 0, true);
    dma_read(s, spa);
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"), ==,
                    "assigned");
    g_assert_cmpuint(qdict_get_uint(qdict_get_qdict(ev, "data"),
                                    "io-page-size"), ==, K4);
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, 0, spa);
    test_end(s);
}

/* V=1, TV=1, Mode=0 is an illegal DTE under SNP */
static void test_dte_mode0_illegal(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t spa = page_spa(K4) + 0x100;

    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(0) | PTE_IR | PTE_IW);
    fill(s, spa, 0x77);
    dma_write(s, spa);
    g_assert_false(holds(s, spa, 0x11));
    g_assert_true(holds(s, spa, 0x77));
    g_assert_null(take_rmp_fault(s));
    /* the request's address and direction, not the DTE's address */
    expect_event(s, EVT_ILLEGAL_DEV_TABLE, EDU_DEVID, EVT_FLAG_RW, spa);
    expect_no_event(s);
    test_end(s);
}

/* snp=off: stock amd-iommu, the RMP is not consulted */
static void test_snp_off(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t spa = page_spa(M2) + 0x3000;   /* 2M IO page over 4K RMP */

    g_assert_false(mmio_readq(s, MMIO_EFR) & EFR_SNP_SUP);
    rmp_update(s, spa & ~(K4 - 1), "4k", true, RMP_ASID, 0, true);
    fill(s, SCRATCH_SPA, 0x12);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, spa + IOVA_OFFSET);
    g_assert_true(holds(s, spa, 0x12));
    g_assert_null(take_rmp_fault(s));
    expect_no_event(s);
    test_end(s);
}

/* The IVRS IVHD type 11h EFR image, read from the ACPI tables in fw_cfg */
static uint64_t ivrs_efr(QTestState *qts)
{
    QFWCFG *fw_cfg = pc_fw_cfg_init(qts);
    size_t len = qfw_cfg_get_file(fw_cfg, "etc/acpi/tables", NULL, 0);
    g_autofree uint8_t *tables = g_malloc(len);
    uint64_t efr = 0;
    bool found = false;

    g_assert_cmpuint(qfw_cfg_get_file(fw_cfg, "etc/acpi/tables", tables,
                                      len), ==, len);
    for (size_t off = 0; off + 36 <= len && !found; off++) {
        uint32_t tlen;

        if (memcmp(tables + off, "IVRS", 4)) {
            continue;
        }
        tlen = ldl_le_p(tables + off + 4);
        for (size_t h = off + 48; h + 32 <= off + tlen;
             h += lduw_le_p(tables + h + 2)) {
            if (tables[h] == 0x11) {
                efr = ldq_le_p(tables + h + 24);
                found = true;
                break;
            }
        }
    }
    g_assert_true(found);
    pc_fw_cfg_uninit(fw_cfg);
    return efr;
}

static void test_efr(void)
{
    QTestState *qts;

    qts = qtest_init("-M q35 -object snp-rmp,id=rmp0 "
                     "-device amd-iommu,dma-remap=on,snp=on");
    g_assert_true(qtest_readq(qts, IOMMU_BASE + MMIO_EFR) & EFR_SNP_SUP);
    g_assert_true(ivrs_efr(qts) & EFR_SNP_SUP);
    qtest_quit(qts);

    qts = qtest_init("-M q35 -device amd-iommu,dma-remap=on");
    g_assert_false(qtest_readq(qts, IOMMU_BASE + MMIO_EFR) & EFR_SNP_SUP);
    g_assert_false(ivrs_efr(qts) & EFR_SNP_SUP);
    qtest_quit(qts);
}

static void G_GNUC_PRINTF(2, 4) assert_qmp_error(QTestState *qts,
                                                 const char *fmt,
                                                 const char *needle, ...)
{
    va_list ap;
    QDict *r, *err;

    va_start(ap, needle);
    r = qtest_vqmp(qts, fmt, ap);
    va_end(ap);
    err = qdict_get_qdict(r, "error");

    g_assert_nonnull(err);
    g_assert_nonnull(strstr(qdict_get_str(err, "desc"), needle));
    qobject_unref(r);
}

static void test_qmp_errors(void)
{
    QTestState *qts = qtest_init("-M q35 -m 512M -object snp-rmp,id=rmp0 "
                                 "-device amd-iommu,dma-remap=on" SNP_ON " "
                                 "-device edu,id=edu0");

    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 2097152, 'page-size': '2m', 'assigned': true,"
        " 'asid': 3, 'gpa': 4194304 } }");
    assert_qmp_error(qts, "{ 'execute': 'snp-rmp-update', 'arguments': {"
                     " 'spa': 2101248, 'page-size': '4k', 'assigned': false"
                     " } }", "psmash it first");
    assert_qmp_error(qts, "{ 'execute': 'snp-rmp-update', 'arguments': {"
                     " 'spa': 4096, 'page-size': '2m', 'assigned': false"
                     " } }", "not aligned");
    assert_qmp_error(qts, "{ 'execute': 'snp-rmp-update', 'arguments': {"
                     " 'spa': 1073741824, 'page-size': '4k',"
                     " 'assigned': false } }", "not system RAM");
    assert_qmp_error(qts, "{ 'execute': 'snp-rmp-psmash', 'arguments': {"
                     " 'spa': 4194304 } }", "not a 2M RMP entry");
    assert_qmp_error(qts, "{ 'execute': 'snp-rmp-update', 'arguments': {"
                     " 'rmp': 'nope', 'spa': 0, 'page-size': '4k',"
                     " 'assigned': false } }", "not an snp-rmp object");
    assert_qmp_error(qts, "{ 'execute': 'query-snp-rmp', 'arguments': {"
                     " 'spa': 17 } }", "not 4K aligned");
    assert_qmp_error(qts, "{ 'execute': 'query-snp-rmp', 'arguments': {"
                     " 'spa': 1099511627776 } }", "beyond RAM");
    assert_qmp_error(qts, "{ 'execute': 'snp-iommu-bind-device',"
                     " 'arguments': { 'device': 'nope', 'asid': 1 } }",
                     "not a PCI device");
    assert_qmp_error(qts, "{ 'execute': 'snp-iommu-bind-device',"
                     " 'arguments': { 'device': 'edu0', 'asid': 0 } }",
                     "ASID 0");
    assert_qmp_error(qts, "{ 'execute': 'snp-iommu-unbind-device',"
                     " 'arguments': { 'device': 'edu0' } }", "not bound");
    /* overlap: a 2M assign over an assigned 4K entry */
    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 8392704, 'page-size': '4k', 'assigned': true"
        " } }");
    assert_qmp_error(qts, "{ 'execute': 'snp-rmp-update', 'arguments': {"
                     " 'spa': 8388608, 'page-size': '2m', 'assigned': true"
                     " } }", "overlaps");

    /* none of the errors changed anything */
    snp_rmp_assert_entry(qts, 2101248, "2m", true, 3, 4194304 + 4096);
    snp_rmp_assert_entry(qts, 4096, "4k", false, 0, 0);
    snp_rmp_assert_entry(qts, 8388608, "4k", false, 0, 0);
    snp_rmp_assert_entry(qts, 8392704, "4k", true, 0, 0);
    qtest_quit(qts);
}

static void test_config_errors(void)
{
    const struct {
        const char *args;
        const char *error;
    } cases[] = {
        { "-device amd-iommu,snp=on", "needs dma-remap=on" },
        { "-device amd-iommu,dma-remap=on,snp=on", "no snp-rmp object" },
        { "-object snp-rmp,id=a -object snp-rmp,id=b "
          "-device amd-iommu,dma-remap=on,snp=on", "more than one" },
        { "-object snp-rmp,id=a -device amd-iommu,dma-remap=on,rmp=a",
          "'rmp' needs snp=on" },
    };

    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *cmd = g_strdup_printf("%s -M q35 -accel qtest "
                                               "-display none -S "
                                               "-monitor none %s",
                                               qtest_qemu_binary(NULL),
                                               cases[i].args);
        g_auto(GStrv) argv = NULL;
        g_autofree char *err = NULL;
        int status;

        g_assert_true(g_shell_parse_argv(cmd, NULL, &argv, NULL));
        g_assert_true(g_spawn_sync(NULL, argv, NULL,
                                   G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                                   NULL, &err, &status, NULL));
        /* QEMU refuses to start and says why */
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, cases[i].error));
    }
}

static void test_reset(void)
{
    QTestState *qts = qtest_init("-M q35 -m 512M -object snp-rmp,id=rmp0");

    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 2097152, 'page-size': '2m', 'assigned': true,"
        " 'asid': 3 } }");
    snp_rmp_assert_entry(qts, 2097152, "2m", true, 3, 0);
    qtest_qmp_assert_success(qts, "{ 'execute': 'system_reset' }");
    qtest_qmp_eventwait(qts, "RESET");
    snp_rmp_assert_entry(qts, 2097152, "4k", false, 0, 0);
    qtest_quit(qts);
}

static void test_migration(void)
{
    g_autofree char *tmp = g_dir_make_tmp("snp-rmp-XXXXXX", NULL);
    g_autofree char *file = g_build_filename(tmp, "state", NULL);
    QTestState *from, *to;
    QDict *r;
    const char *status;

    from = qtest_init("-M q35 -m 512M -object snp-rmp,id=rmp0");
    qtest_qmp_assert_success(from, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 2097152, 'page-size': '2m', 'assigned': true,"
        " 'asid': 3, 'gpa': 6291456, 'validated': true } }");
    qtest_qmp_assert_success(from, "{ 'execute': 'snp-rmp-psmash', "
        "'arguments': { 'spa': 2097152 } }");
    qtest_qmp_assert_success(from, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 2101248, 'page-size': '4k', 'assigned': false"
        " } }");
    qtest_qmp_assert_success(from, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 10485760, 'page-size': '2m', 'assigned': false"
        " } }");
    qtest_qmp_assert_success(from, "{ 'execute': 'snp-rmp-update', "
        "'arguments': { 'spa': 16384, 'page-size': '4k', 'assigned': true,"
        " 'asid': 9, 'gpa': 8192 } }");
    qtest_qmp_assert_success(from, "{ 'execute': 'migrate', 'arguments': {"
                             " 'uri': %s } }",
                             g_strdup_printf("file:%s", file));
    do {
        r = qtest_qmp(from, "{ 'execute': 'query-migrate' }");
        status = qdict_get_try_str(qdict_get_qdict(r, "return"), "status");
        g_assert_cmpstr(status, !=, "failed");
        if (g_str_equal(status, "completed")) {
            qobject_unref(r);
            break;
        }
        qobject_unref(r);
        g_usleep(10 * 1000);
    } while (true);
    qtest_quit(from);

    to = qtest_initf("-M q35 -m 512M -object snp-rmp,id=rmp0 "
                     "-incoming file:%s", file);
    do {
        r = qtest_qmp(to, "{ 'execute': 'query-status' }");
        status = qdict_get_str(qdict_get_qdict(r, "return"), "status");
        if (!g_str_equal(status, "inmigrate")) {
            qobject_unref(r);
            break;
        }
        qobject_unref(r);
        g_usleep(10 * 1000);
    } while (true);
    snp_rmp_assert_entry(to, 2097152, "4k", true, 3, 6291456);
    snp_rmp_assert_entry(to, 2101248, "4k", false, 0, 0);
    snp_rmp_assert_entry(to, 2105344, "4k", true, 3, 6291456 + 8192);
    snp_rmp_assert_entry(to, 10485760 + 4096, "2m", false, 0, 4096);
    snp_rmp_assert_entry(to, 16384, "4k", true, 9, 8192);
    snp_rmp_assert_entry(to, 20480, "4k", false, 0, 0);
    qtest_quit(to);
    unlink(file);
    rmdir(tmp);
}

/* Guest-controlled structures that are broken must not break QEMU */
static void test_hostile_guest(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t spa = page_spa(K4) + 0x100;

    /* DTE with Mode 7 (reserved): the DMA is aborted, no crash */
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(7) | s->root |
            PTE_IR | PTE_IW);
    fill(s, spa, 0x21);
    dma_write(s, spa + IOVA_OFFSET);
    g_assert_true(holds(s, spa, 0x21));

    /* a page table that points at itself: the walk ends at level 1 */
    qtest_writeq(s->qts, s->root + 64 * 8,
                 s->root | PTE_NL(2) | PTE_PR | PTE_IR | PTE_IW);
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(3) | s->root |
            PTE_IR | PTE_IW);
    dma_write(s, 64 * GiB);
    s->evt_tail = mmio_readq(s, MMIO_EVT_TAIL);

    /* a root pointer beyond RAM */
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(3) | 0xff00000000ULL |
            PTE_IR | PTE_IW);
    dma_write(s, spa + IOVA_OFFSET);
    g_assert_true(holds(s, spa, 0x21));

    /* an event log that is not RAM: events are lost, QEMU carries on */
    mmio_writeq(s, MMIO_EVTLOG, 0xfee00000ULL | 8ULL << 56);
    dma_write(s, spa + IOVA_OFFSET);
    mmio_writeq(s, MMIO_EVTLOG, 0xfffffffff000ULL | 8ULL << 56);
    dma_write(s, spa + IOVA_OFFSET);

    /* a command buffer beyond RAM */
    mmio_writeq(s, MMIO_CMDBUF, 0xfffffffff000ULL | 8ULL << 56);
    mmio_writeq(s, MMIO_CMD_TAIL, 0x40);
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'query-status' }");
    test_end(s);
}

/*
 * R1 inside one IO page: a 64K IO page is checked 4K by 4K, so a DMA that
 * crosses from a shared 4K page into an assigned one loses its second
 * half only, and the fault names the second page.
 */
static void test_check_per_4k_in_large_page(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t spa = page_spa(64 * KiB) + 0x1000 - DMA_LEN / 2;
    uint64_t iova = spa + IOVA_OFFSET;
    uint8_t half[DMA_LEN / 2];
    QDict *ev;

    rmp_update(s, page_spa(64 * KiB) + 0x1000, "4k", true, RMP_ASID, 0,
               true);
    fill(s, SCRATCH_SPA, 0x3c);
    dma_read(s, SCRATCH_IOVA);
    memset(half, 0xee, sizeof(half));
    qtest_memwrite(s->qts, spa, half, sizeof(half));
    qtest_memwrite(s->qts, spa + DMA_LEN / 2, half, sizeof(half));
    dma_write(s, iova);
    /* the first half arrived, the second did not */
    qtest_memread(s->qts, spa, half, sizeof(half));
    for (int i = 0; i < DMA_LEN / 2; i++) {
        g_assert_cmphex(half[i], ==, (uint8_t)(0x3c + i * 7));
    }
    qtest_memread(s->qts, spa + DMA_LEN / 2, half, sizeof(half));
    for (int i = 0; i < DMA_LEN / 2; i++) {
        g_assert_cmphex(half[i], ==, 0xee);
    }
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"), ==,
                    "assigned");
    g_assert_cmpuint(qdict_get_uint(qdict_get_qdict(ev, "data"),
                                    "io-page-size"), ==, 64 * KiB);
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, EVT_FLAG_RW,
                 iova + DMA_LEN / 2);
    expect_no_event(s);
    test_end(s);
}

/*
 * Events name the device by DeviceID, bus << 8 | devfn: put edu on bus 1
 * behind a root port (programmed here, as firmware would) and make it
 * fault, translated (IO_PAGE_FAULT) and under SNP (RMP_PAGE_FAULT).
 */
static void test_event_devid(void)
{
    TestState *s = g_new0(TestState, 1);
    QPCIDevice *port;
    uint64_t spa = page_spa(K4) + 0x100;
    uint16_t devid = 0x100;
    QDict *ev;

    s->qts = qtest_initf("-M q35 -m 2G -object snp-rmp,id=rmp0 "
                         "-device amd-iommu,dma-remap=on" SNP_ON " "
                         "-device pcie-root-port,id=rp1,addr=05.0,chassis=1 "
                         "-device edu,id=edu0,bus=rp1,dma_mask=%" PRIu64,
                         (uint64_t)(1ULL << 39) - 1);
    s->pcibus = qpci_new_pc(s->qts, NULL);
    port = qpci_device_find(s->pcibus, QPCI_DEVFN(5, 0));
    g_assert_nonnull(port);
    qpci_config_writeb(port, PCI_PRIMARY_BUS, 0);
    qpci_config_writeb(port, PCI_SECONDARY_BUS, 1);
    qpci_config_writeb(port, PCI_SUBORDINATE_BUS, 1);
    /* forward 0xe0000000-0xe00fffff, where libqos puts the first BAR */
    qpci_config_writew(port, PCI_MEMORY_BASE, 0xe000);
    qpci_config_writew(port, PCI_MEMORY_LIMIT, 0xe000);
    qpci_device_enable(port);
    iommu_setup(s, devid, 3);       /* DeviceID 0x100 is in the 3rd page */
    map_page(s, spa + IOVA_OFFSET - 0x100, spa - 0x100, K4);
    set_dte(s, devid, DTE_V | DTE_TV | DTE_MODE(3) | s->root |
            PTE_IR | PTE_IW);

    /* translated, not mapped: IO_PAGE_FAULT */
    dma_read(s, 0x40000000);
    g_assert_null(take_rmp_fault(s));
    expect_event(s, EVT_IO_PAGE_FAULT, devid, 0, 0x40000000);
    expect_no_event(s);

    /* mapped, but the page is assigned: RMP_PAGE_FAULT */
    rmp_update(s, spa & ~(K4 - 1), "4k", true, RMP_ASID, 0, true);
    dma_write(s, spa + IOVA_OFFSET);
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(ev, "data"), "devid"), ==,
                    devid);
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, devid, EVT_FLAG_RW,
                 spa + IOVA_OFFSET);
    g_free(port);
    test_end(s);
}

/* Defects of the device found by review and fuzzing (issue 8) */

static int count_rmp_faults(TestState *s)
{
    QDict *ev;
    int n = 0;

    qtest_qmp_assert_success(s->qts, "{ 'execute': 'query-status' }");
    while ((ev = qtest_qmp_event_ref(s->qts, "SNP_RMP_FAULT"))) {
        qobject_unref(ev);
        n++;
    }
    return n;
}

/*
 * A DMA to an unmapped IOVA faults once; once the host maps the page and
 * invalidates, the next DMA (here at IOVA + 64, right after the faulting
 * one) must go through.  Defect 2: it was dropped with no walk and no
 * event.  Defect 7: the fault on a non-present page has PR clear, RW set
 * for a write, and I clear (a DMA, not an interrupt).
 */
static void do_dma_after_fault(bool snp)
{
    TestState *s = test_start(snp, NULL);
    uint64_t iova = 0x5000000000ULL;
    uint64_t spa = page_spa(K4);

    fill(s, SCRATCH_SPA, 0x31);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, iova);
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, EVT_FLAG_RW, iova);
    expect_no_event(s);

    map_page(s, iova, spa, K4);
    inval_all_pages(s);
    fill(s, spa + 64, 0);
    dma_write(s, iova + 64);
    g_assert_true(holds(s, spa + 64, 0x31));
    expect_no_event(s);
    g_assert_cmpint(count_rmp_faults(s), ==, 0);
    test_end(s);
}

static void test_dma_after_fault_snp_on(void)
{
    do_dma_after_fault(true);
}

static void test_dma_after_fault_snp_off(void)
{
    do_dma_after_fault(false);
}

/*
 * Defect 3: with the IOMMU not enabled, one 64-byte DMA to an assigned
 * page is one faulting translation request: one SNP_RMP_FAULT, not one per
 * chunk the memory core splits the DMA into.
 */
static void test_disabled_one_event(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t spa = page_spa(K4) + 0x100;

    mmio_writeq(s, MMIO_CONTROL, CTRL_EVTLOG_EN | CTRL_EVTINT_EN |
                CTRL_CMDBUF_EN);
    rmp_update(s, spa & ~(K4 - 1), "4k", true, RMP_ASID, 0, true);
    dma_read(s, spa);
    g_assert_cmpint(count_rmp_faults(s), ==, 1);
    g_assert_cmphex(mmio_readq(s, MMIO_EVT_TAIL), <=, s->evt_tail + 16);
    test_end(s);
}

/*
 * SNP_RMP_FAULT is a QMP event that a guest triggers at will (issue 9,
 * "upstream shape"): at most rmp-fault-event-rate per second reach QMP,
 * the next one counts those held back, and the guest's event log keeps
 * every RMP_PAGE_FAULT.  With a rate of 1, three faults in a row give
 * one event; a second later the fourth gives one with suppressed=2.
 */
static void test_fault_event_rate(void)
{
    TestState *s = test_start_opts(",snp=on,rmp-fault-event-rate=1", NULL);
    uint64_t spa = page_spa(K4) + 0x100;
    uint64_t iova = spa + IOVA_OFFSET;
    QDict *ev;

    rmp_update(s, spa & ~(K4 - 1), "4k", true, RMP_ASID, 0, true);
    for (int i = 0; i < 3; i++) {
        dma_read(s, iova);
        expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, 0, iova);
    }
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_false(qdict_haskey(qdict_get_qdict(ev, "data"), "suppressed"));
    qobject_unref(ev);
    g_assert_null(take_rmp_fault(s));

    g_usleep(1100 * 1000);
    dma_read(s, iova);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, 0, iova);
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_assert_cmpuint(qdict_get_int(qdict_get_qdict(ev, "data"), "suppressed"),
                     ==, 2);
    qobject_unref(ev);
    test_end(s);
}

/*
 * Defect 4: a write through a read-only mapping is an IO_PAGE_FAULT on a
 * present page (PR and RW set), also when the translation was cached by
 * an earlier read: of the same 4K page (the IOTLB) or, under SNP, of
 * another 4K page of the same 64K IO page (the page-walk cache).
 */
static void do_cached_read_only(bool snp)
{
    TestState *s = test_start(snp, NULL);
    uint64_t spa = page_spa(64 * KiB);
    uint64_t iova = 0x5100000000ULL;
    uint64_t l2 = pt_next_table(s, s->root + ((iova >> 30) & 0x1ff) * 8, 2);
    uint64_t l1 = pt_next_table(s, l2 + ((iova >> 21) & 0x1ff) * 8, 1);

    /* a 64K IO page (NextLevel=7, bits 12-14 set), read-only */
    for (int i = 0; i < 16; i++) {
        qtest_writeq(s->qts, l1 + i * 8, spa | 0x7000 | PTE_NL(7) | PTE_PR |
                     PTE_IR);
    }
    inval_all_pages(s);
    fill(s, spa, 0x41);
    fill(s, spa + K4, 0x42);

    dma_read(s, iova);                 /* caches the read-only page */
    expect_no_event(s);
    fill(s, SCRATCH_SPA, 0x43);
    dma_read(s, SCRATCH_IOVA);

    /* the same 4K page: an IOTLB hit */
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x41));
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, EVT_FLAG_PR | EVT_FLAG_RW,
                 iova);

    /* the next 4K page of the same IO page */
    dma_read(s, iova);
    dma_write(s, iova + K4);
    g_assert_true(holds(s, spa + K4, 0x42));
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, EVT_FLAG_PR | EVT_FLAG_RW,
                 iova + K4);
    expect_no_event(s);
    test_end(s);
}

static void test_cached_read_only_snp_on(void)
{
    do_cached_read_only(true);
}

static void test_cached_read_only_snp_off(void)
{
    do_cached_read_only(false);
}

/*
 * Defect 5: after the DTE becomes invalid (V=0) and INVALIDATE_DEVTAB_ENTRY
 * runs, DMA passes untranslated: the IOMMU reads the DTE again, and no
 * translation of the old DTE may be used.
 */
static void do_dte_invalidated(bool snp)
{
    TestState *s = test_start(snp, NULL);
    uint64_t iova = 0x20000000;        /* RAM too, so V=0 DMA lands there */
    uint64_t spa = page_spa(K4);

    map_page(s, iova, spa, K4);
    inval_all_pages(s);
    fill(s, SCRATCH_SPA, 0x51);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x51));

    set_dte(s, EDU_DEVID, 0);
    fill(s, SCRATCH_SPA, 0x52);
    dma_read(s, SCRATCH_SPA);
    dma_write(s, iova);
    g_assert_true(holds(s, iova, 0x52));
    g_assert_true(holds(s, spa, 0x51));
    expect_no_event(s);
    test_end(s);
}

static void test_dte_invalidated_snp_on(void)
{
    do_dte_invalidated(true);
}

static void test_dte_invalidated_snp_off(void)
{
    do_dte_invalidated(false);
}

/*
 * Defect 9: a DTE with V=1, TV=1 and Mode 0 passes DMA untranslated, but
 * its IR and IW still apply (AMD IOMMU specification, "Device Table Entry
 * Format", IR/IW): with IW=0 a write is blocked and logged once, as an
 * IO_PAGE_FAULT with the DMA's address; reads pass.
 */
static void test_dte_mode0_permissions(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t spa = page_spa(K4) + 0x200;

    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(0) | PTE_IR);
    fill(s, spa, 0x61);
    dma_read(s, spa);
    expect_no_event(s);
    fill(s, spa, 0x62);
    dma_write(s, spa);
    g_assert_true(holds(s, spa, 0x62));
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, EVT_FLAG_PR | EVT_FLAG_RW,
                 spa);
    expect_no_event(s);

    /* IR and IW both set: plain pass-through */
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(0) | PTE_IR | PTE_IW);
    dma_write(s, spa);
    g_assert_true(holds(s, spa, 0x61));
    expect_no_event(s);
    test_end(s);
}

/*
 * Defect 10 (patch "Wrap COMMAND_HEAD before software can read it"): after
 * the last command of the buffer, COMMAND_HEAD reads 0, not the buffer
 * size.  cmd_submit() checks COMMAND_HEAD == COMMAND_TAIL after each.
 */
static void test_cmdbuf_head_wrap(void)
{
    TestState *s = test_start(false, NULL);

    /* set_dte() in test_start() used some entries: go round twice */
    for (int i = 0; i < 2 * 256; i++) {
        completion_wait(s);
    }
    g_assert_cmphex(mmio_readq(s, MMIO_CMD_HEAD), ==, s->cmd_tail);
    test_end(s);
}

/*
 * Defect 11: a COMMAND_TAIL beyond the buffer, or any tail without a
 * buffer, must not hang QEMU: no command runs, and QEMU answers.
 */
static void test_cmdbuf_tail_out_of_range(void)
{
    TestState *s = test_start(false, NULL);
    QTestState *qts;

    mmio_writeq(s, MMIO_CMD_TAIL, 0x10000);    /* buffer: 4K */
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'query-status' }");
    mmio_writeq(s, MMIO_CMD_TAIL, s->cmd_tail);
    completion_wait(s);                        /* still works */
    test_end(s);

    /* COMMAND_BASE never written */
    qts = qtest_init("-M q35 -device amd-iommu,dma-remap=on");
    qtest_writeq(qts, IOMMU_BASE + MMIO_CONTROL, CTRL_CMDBUF_EN);
    qtest_writeq(qts, IOMMU_BASE + MMIO_CMD_TAIL, 0x10);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    qtest_quit(qts);
}

/*
 * Defect 12: event logging enabled, EVENT_BASE never written: the log has
 * no room, so an event overflows it (EventOverflow), and QEMU lives on.
 */
static void test_evtlog_without_base(void)
{
    QTestState *qts = qtest_initf("-M q35 -m 2G -object snp-rmp,id=rmp0 "
                                  "-device amd-iommu,dma-remap=on" SNP_ON " "
                                  "-device edu,id=edu0,addr=04.0,"
                                  "dma_mask=%" PRIu64,
                                  (uint64_t)(1ULL << 39) - 1);
    TestState s = { .qts = qts };

    s.pcibus = qpci_new_pc(qts, NULL);
    s.edu = qpci_device_find(s.pcibus, EDU_DEVFN);
    qpci_device_enable(s.edu);
    s.edu_bar = qpci_iomap(s.edu, 0, NULL);
    qtest_qmp_assert_success(qts, "{ 'execute': 'snp-rmp-update', "
                             "'arguments': { 'spa': %" PRIu64 ", "
                             "'page-size': '4k', 'assigned': true } }",
                             page_spa(K4));
    qtest_writeq(qts, IOMMU_BASE + MMIO_CONTROL,
                 CTRL_IOMMU_EN | CTRL_EVTLOG_EN);
    dma_read(&s, page_spa(K4));
    g_assert_true(qtest_readq(qts, IOMMU_BASE + MMIO_STATUS) &
                  STATUS_EVT_OVF);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    g_free(s.edu);
    qpci_free_pc(s.pcibus);
    qtest_quit(qts);
}

/*
 * Defect 13: a NextLevel=7 PTE whose address bits are all set encodes no
 * page a table can hold: the DMA faults (IO_PAGE_FAULT), QEMU lives on.
 */
static void test_large_pte_all_ones(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t iova = 0x5200000000ULL;
    uint64_t l2 = pt_next_table(s, s->root + ((iova >> 30) & 0x1ff) * 8, 2);
    uint64_t l1 = pt_next_table(s, l2 + ((iova >> 21) & 0x1ff) * 8, 1);
    uint64_t ptes[] = {
        0x7ffffffffffff000ULL,          /* bits 12-62 */
        0xfffffffffffff000ULL,          /* bits 12-63 */
    };

    for (int i = 0; i < G_N_ELEMENTS(ptes); i++) {
        qtest_writeq(s->qts, l1, ptes[i] | PTE_NL(7) | PTE_PR);
        inval_all_pages(s);
        dma_read(s, iova);
        expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, 0, iova);
        expect_no_event(s);
    }
    test_end(s);
}

/*
 * difffuzz finding: a NextLevel=7 PTE whose encoded size is exactly one
 * entry of its table is that entry (Linux's generic_pt decoder,
 * amdv1pt_entry_num_contig_lg2(), reads it as a run of 2^0 entries).  At
 * level 2, address bits 19:12 set and bit 20 clear encode 2M (AMD IOMMU
 * specification, "Example Page Size Encodings"): the DMA lands in the 2M
 * page, as with a NextLevel=0 leaf.
 */
static void test_large_pte_run_of_one(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t iova = 0x5400000000ULL;
    uint64_t spa = page_spa(M2);
    uint64_t off = dma_offset(M2);
    uint64_t l2 = pt_next_table(s, s->root + ((iova >> 30) & 0x1ff) * 8, 2);

    qtest_writeq(s->qts, l2 + ((iova >> 21) & 0x1ff) * 8,
                 spa | 0xff000ULL | PTE_NL(7) | PTE_PR | PTE_IR | PTE_IW);
    inval_all_pages(s);
    fill(s, SCRATCH_SPA, 0x71);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, iova + off);
    expect_no_event(s);
    g_assert_true(holds(s, spa + off, 0x71));
    test_end(s);
}

/*
 * difffuzz finding: INVALIDATE_IOMMU_ALL invalidates the cached DTEs too
 * (AMD IOMMU specification, "INVALIDATE_IOMMU_ALL"; Linux sends it instead
 * of per-device INVALIDATE_DEVTAB_ENTRY when EFR.IASup is set,
 * amd_iommu_flush_all_caches()).  A device in pass-through (Mode 0) whose
 * DTE gets a page table must be translated after it.
 */
static void test_inval_all_rereads_dte(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t iova = 0x20000000;        /* RAM: pass-through lands there */
    uint64_t spa = page_spa(K4);

    g_assert_true(mmio_readq(s, MMIO_EFR) & EFR_IA_SUP);
    map_page(s, iova, spa, K4);
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(0) | PTE_IR | PTE_IW);
    fill(s, SCRATCH_SPA, 0x72);
    dma_read(s, SCRATCH_SPA);
    dma_write(s, iova);
    g_assert_true(holds(s, iova, 0x72));

    qtest_writeq(s->qts, DEVTAB_ADDR + EDU_DEVID * 32,
                 DTE_V | DTE_TV | DTE_MODE(3) | s->root | PTE_IR | PTE_IW);
    cmd_submit(s, CMD_INVAL_IOMMU_ALL << 60, 0);
    completion_wait(s);
    fill(s, SCRATCH_SPA, 0x73);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, iova);
    g_assert_true(holds(s, spa, 0x73));
    g_assert_true(holds(s, iova, 0x72));
    expect_no_event(s);
    test_end(s);
}

/*
 * Defect 14: edu drops a DMA that does not fit in its 4K buffer
 * (docs/specs/edu.rst) instead of overrunning it.  A transfer from RAM to
 * buffer offset 0xf00 of 0x200 bytes must leave the buffer as it was.
 */
static void test_edu_dma_out_of_range(void)
{
    TestState *s = test_start(false, NULL);
    uint8_t buf[DMA_LEN];

    set_dte(s, EDU_DEVID, 0);
    fill(s, SCRATCH_SPA, 0x71);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_SRC, SCRATCH_SPA);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_DST, EDU_BUF + 0xf00);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CNT, DMA_LEN);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CMD, EDU_DMA_START);
    qtest_clock_step(s->qts, 200 * 1000 * 1000);

    fill(s, SCRATCH_SPA, 0x72);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_SRC, SCRATCH_SPA);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_DST, EDU_BUF + 0xf00);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CNT, 0x200);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CMD, EDU_DMA_START);
    qtest_clock_step(s->qts, 200 * 1000 * 1000);
    g_assert_cmpuint(qpci_io_readq(s->edu, s->edu_bar, EDU_DMA_CMD) &
                     EDU_DMA_START, ==, 0);

    /* the buffer still holds the first transfer */
    qtest_memset(s->qts, SCRATCH_SPA + K4, 0, DMA_LEN);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_SRC, EDU_BUF + 0xf00);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_DST, SCRATCH_SPA + K4);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CNT, DMA_LEN);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CMD,
                   EDU_DMA_START | EDU_DMA_TO_RAM);
    qtest_clock_step(s->qts, 200 * 1000 * 1000);
    qtest_memread(s->qts, SCRATCH_SPA + K4, buf, sizeof(buf));
    for (int i = 0; i < DMA_LEN; i++) {
        g_assert_cmphex(buf[i], ==, (uint8_t)(0x71 + i * 7));
    }
    test_end(s);
}

/*
 * edu's factorial register (docs/specs/edu.rst: 0x08 takes n and gives
 * back n!, computed while status bit 0x01 is set) holds n! modulo 2^32.
 * The expected values are Python's math.factorial(n) % 2**32; from n = 34
 * on it is 0.  n = 0xffffffff used to take 2^32 multiplications: 4 s of
 * a host core with gcc -O2 (clang vectorizes the loop: 0.8 s, which this
 * deadline would miss).  A second is far more than the at most 34
 * multiplications and a thread wake-up take now.
 */
static void test_edu_factorial(void)
{
    static const struct {
        uint32_t n, fact;
    } cases[] = {
        { 0, 1 }, { 12, 0x1c8cfc00 }, { 13, 0x7328cc00 },
        { 33, 0x80000000 }, { 34, 0 }, { 0xffffffff, 0 },
    };
    TestState *s = test_start(false, NULL);

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        gint64 deadline = g_get_monotonic_time() + G_USEC_PER_SEC;

        qpci_io_writel(s->edu, s->edu_bar, EDU_FACT, cases[i].n);
        while (qpci_io_readl(s->edu, s->edu_bar, EDU_STATUS) &
               EDU_STATUS_COMPUTING) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            g_usleep(1000);
        }
        g_assert_cmphex(qpci_io_readl(s->edu, s->edu_bar, EDU_FACT), ==,
                        cases[i].fact);
    }
    test_end(s);
}

/*
 * The 2023 RMP #PF (thread "iommu/amd: Introduce Protection-domain flag
 * VFIO"), narrated: "make demo" runs this case alone.
 */
static void say_event(TestState *s)
{
    uint64_t q0 = qtest_readq(s->qts, EVTLOG_ADDR + s->evt_tail);
    uint64_t q1 = qtest_readq(s->qts, EVTLOG_ADDR + s->evt_tail + 8);
    uint16_t devid = q0 & 0xffff;

    g_test_message("    guest event log: AMD-Vi: Event logged [%s device="
                   "0000:%02x:%02x.%x vmg_tag=0x%04x, gpa=0x%" PRIx64
                   ", flags_rmp=0x%04x, flags=0x%04x]",
                   (q0 >> 60) == EVT_RMP_PAGE_FAULT ? "RMP_PAGE_FAULT"
                                                    : "OTHER",
                   devid >> 8, (devid >> 3) & 0x1f, devid & 7,
                   (unsigned)(q0 >> 32) & 0xffff, q1,
                   (unsigned)(q0 >> 16) & 0xff,
                   (unsigned)(q0 >> 48) & 0xfff);
}

static void say_fault(QDict *ev)
{
    QDict *d = qdict_get_qdict(ev, "data");

    g_test_message("    QMP SNP_RMP_FAULT: %s iova 0x%" PRIx64 " -> spa 0x%"
                   PRIx64 ", IO page 0x%" PRIx64 " checked at %s, RMP "
                   "entry %s: %s", qdict_get_str(d, "device"),
                   qdict_get_uint(d, "iova"), qdict_get_uint(d, "spa"),
                   qdict_get_uint(d, "io-page-size"),
                   qdict_get_str(d, "check-size"),
                   qdict_get_str(d, "rmp-page-size"),
                   qdict_get_str(d, "reason"));
}

static void test_demo_2023_bug(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t region = page_spa(M2);
    uint64_t iova_base = region + IOVA_OFFSET;
    uint64_t shared = region + 0x5000, private = region + 0x1ff000;
    QDict *ev;

    g_test_message("== RMP #PF after a 4K page-state change under a 2M "
                   "IO mapping (LKML, January 2023) ==");
    g_test_message("1. The host maps 2M of guest memory as one 2M IO "
                   "page: IOVA 0x%" PRIx64 " -> SPA 0x%" PRIx64
                   " (AMDv1 level-2 leaf)", iova_base, region);
    rmp_update(s, region, "2m", false, 0, 0, false);
    g_test_message("   The RMP holds the region as one 2M hypervisor-owned "
                   "entry (shared memory backed by a 2M page).");
    fill(s, SCRATCH_SPA, 0x5a);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, shared + IOVA_OFFSET);
    g_assert_true(holds(s, shared, 0x5a));
    g_assert_null(take_rmp_fault(s));
    g_test_message("2. edu writes 64 bytes to IOVA 0x%" PRIx64 ": the IO "
                   "walk ends at 2M, checked against a 2M RMP entry: the "
                   "data arrives.", shared + IOVA_OFFSET);

    g_test_message("3. The guest converts the 4K page at GPA 0x%" PRIx64
                   " to private: KVM PSMASHes the 2M RMP entry and "
                   "RMPUPDATEs that page (assigned, ASID %d).",
                   private + IOVA_OFFSET, RMP_ASID);
    rmp_psmash(s, region);
    rmp_update(s, private, "4k", true, RMP_ASID, private + IOVA_OFFSET,
               true);
    g_test_message("   Nobody touches the IO page table: it still maps "
                   "the region with one 2M page.");

    fill(s, SCRATCH_SPA, 0x6b);
    dma_read(s, SCRATCH_IOVA);
    dma_write(s, shared + IOVA_OFFSET);
    g_assert_false(holds(s, shared, 0x6b));
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_test_message("4. edu writes to the same, still shared, page: the walk "
                   "ends at 2M, the RMP region is now 4K entries: RMP "
                   "page fault, the DMA is lost.");
    say_fault(ev);
    say_event(s);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"), ==,
                    "page-size-mismatch");
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, EVT_FLAG_RW,
                 shared + IOVA_OFFSET);

    g_test_message("5. The fix: map the region with 4K IO pages, as the "
                   "RMP now is, and invalidate the IOTLB.");
    qtest_writeq(s->qts, s->root + ((iova_base >> 30) & 0x1ff) * 8, 0);
    for (uint64_t off = 0; off < M2; off += K4) {
        map_page(s, iova_base + off, region + off, K4);
    }
    inval_all_pages(s);
    dma_write(s, shared + IOVA_OFFSET);
    g_assert_true(holds(s, shared, 0x6b));
    g_assert_null(take_rmp_fault(s));
    g_test_message("   edu writes to the shared page again: 4K IO page, 4K "
                   "RMP entry, hypervisor-owned: the data arrives.");
    dma_write(s, private + IOVA_OFFSET);
    ev = take_rmp_fault(s);
    g_assert_nonnull(ev);
    g_test_message("   A DMA to the private page still faults, as it must:");
    say_fault(ev);
    qobject_unref(ev);
    expect_event(s, EVT_RMP_PAGE_FAULT, EDU_DEVID, EVT_FLAG_RW,
                 private + IOVA_OFFSET);
    test_end(s);
}

/*
 * Workloads for "make bench" (run with -m perf only): N DMAs of one 4K
 * page that hit the IOTLB, or that each walk the page table after an
 * INVALIDATE_IOMMU_PAGES.  scripts/bench-translate.sh counts the
 * instructions amdvi_translate() executes for them.
 */
#define BENCH_DMAS 400

static void bench_dma(bool snp, bool walk)
{
    TestState *s = test_start(snp, NULL);
    uint64_t iova = page_spa(K4) + IOVA_OFFSET;

    for (int i = 0; i < BENCH_DMAS; i++) {
        if (walk) {
            inval_all_pages(s);
        }
        edu_dma(s, iova, EDU_BUF, 0);
    }
    expect_no_event(s);
    test_end(s);
}

static void bench_hit_snp_off(void)
{
    bench_dma(false, false);
}

static void bench_hit_snp_on(void)
{
    bench_dma(true, false);
}

static void bench_walk_snp_off(void)
{
    bench_dma(false, true);
}

static void bench_walk_snp_on(void)
{
    bench_dma(true, true);
}

/*
 * The IOMMU's own structures placed over its own registers (choice,
 * docs/system/i386/amd-iommu-snp.rst: they must be RAM): the IOMMU never
 * writes its registers through an event, and a device table there is a
 * device table that cannot be read (DEV_TAB_HARDWARE_ERROR).
 */
#define EVT_DEV_TAB_HW_ERROR    0x3ULL

static void test_tables_in_own_mmio(void)
{
    TestState *s = test_start(false, NULL);

    /* an event log over DEVTAB_BASE: the event is lost, DEVTAB stays */
    mmio_writeq(s, MMIO_EVTLOG, IOMMU_BASE | 8ULL << 56);
    dma_read(s, 0x5300000000ULL);
    g_assert_cmphex(mmio_readq(s, MMIO_DEVTAB), ==, DEVTAB_ADDR);
    qtest_writel(s->qts, MSI_ADDR, 0);
    mmio_writeq(s, MMIO_STATUS, STATUS_EVT_INT | STATUS_EVT_OVF);

    /* a device table over the registers cannot be read */
    mmio_writeq(s, MMIO_EVTLOG, EVTLOG_ADDR | 8ULL << 56);
    s->evt_tail = 0;
    mmio_writeq(s, MMIO_DEVTAB, IOMMU_BASE);
    fill(s, page_spa(K4), 0x18);
    dma_write(s, page_spa(K4) + IOVA_OFFSET);
    g_assert_true(holds(s, page_spa(K4), 0x18));
    expect_event(s, EVT_DEV_TAB_HW_ERROR, EDU_DEVID, 0,
                 IOMMU_BASE + EDU_DEVID * 32);
    qtest_qmp_assert_success(s->qts, "{ 'execute': 'query-status' }");
    test_end(s);
}

/*
 * Findings of the differential fuzzer (tests/fuzz), checked against the
 * AMD IOMMU specification's event and table layouts and Linux's
 * drivers/iommu/amd.
 */

/* The event-log entry @q0/@q1 is next; DW1[27:16] flags in @flags_mask */
static void expect_raw_event(TestState *s, uint64_t q0, uint64_t q1,
                             uint64_t flags_mask)
{
    uint64_t mask = ~((~flags_mask & 0xfffULL) << 48);
    uint32_t tail = mmio_readq(s, MMIO_EVT_TAIL);

    g_assert_cmphex(tail, ==, (s->evt_tail + 16) % (EVTLOG_ENTRIES * 16));
    g_assert_cmphex(qtest_readq(s->qts, EVTLOG_ADDR + s->evt_tail) & mask,
                    ==, q0 & mask);
    g_assert_cmphex(qtest_readq(s->qts, EVTLOG_ADDR + s->evt_tail + 8), ==,
                    q1);
    s->evt_tail = tail;
    qtest_writel(s->qts, MSI_ADDR, 0);
    mmio_writeq(s, MMIO_STATUS, STATUS_EVT_INT);
    mmio_writeq(s, MMIO_EVT_HEAD, tail);
}

#define FZ_DOMID    0x1234ULL

/*
 * IO_PAGE_FAULT carries the DTE's DomainID in DW1[15:0]: Linux's
 * iommu_print_event() reads EVENT_DOMID_MASK_LO/HI and prints "domain=".
 */
static void test_iopf_domain_id(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t iova = SCRATCH_IOVA + 0x10000;     /* not mapped */

    qtest_writeq(s->qts, DEVTAB_ADDR + EDU_DEVID * 32 + 8, FZ_DOMID);
    inval_devtab_entry(s, EDU_DEVID);
    dma_read(s, iova);
    expect_raw_event(s, EDU_DEVID | FZ_DOMID << 32 | EVT_IO_PAGE_FAULT << 60,
                     iova, 0xfff);
    expect_no_event(s);
    test_end(s);
}

/*
 * The rights of a translation are the DTE's IR/IW ANDed with those of
 * every entry of the walk.  A write through a writable leaf under a DTE
 * (or a PDE) with IW=0 is an IO_PAGE_FAULT on a present page; under SNP
 * the walk's fault comes first, the RMP is checked on translations only.
 */
static void do_write_protect(bool snp, bool in_pde)
{
    TestState *s = test_start(snp, NULL);
    uint64_t l3e = s->root + ((SCRATCH_IOVA >> 30) & 0x1ff) * 8;

    fill(s, page_spa(K4), 0x51);
    dma_read(s, page_spa(K4) + IOVA_OFFSET);    /* edu's buffer: 0x51... */
    if (in_pde) {
        qtest_writeq(s->qts, l3e, qtest_readq(s->qts, l3e) & ~PTE_IW);
        inval_all_pages(s);
    } else {
        set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(3) | s->root |
                PTE_IR);
    }
    if (snp) {
        /* the page is guest-private too: the RMP would refuse the write */
        rmp_update(s, SCRATCH_SPA, "4k", true, RMP_ASID, 0, true);
    }
    fill(s, SCRATCH_SPA, 0x52);
    dma_write(s, SCRATCH_IOVA);
    g_assert_true(holds(s, SCRATCH_SPA, 0x52));
    g_assert_null(take_rmp_fault(s));
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, EVT_FLAG_PR | EVT_FLAG_RW,
                 SCRATCH_IOVA);
    expect_no_event(s);
    /* reads are allowed */
    if (snp) {
        rmp_update(s, SCRATCH_SPA, "4k", false, 0, 0, false);
    }
    dma_read(s, SCRATCH_IOVA);
    expect_no_event(s);
    test_end(s);
}

static void test_dte_write_protect_snp_off(void)
{
    do_write_protect(false, false);
}

static void test_dte_write_protect_snp_on(void)
{
    do_write_protect(true, false);
}

static void test_pde_write_protect(void)
{
    do_write_protect(false, true);
}

/*
 * A PDE may skip levels: a level-3 PDE with NextLevel=1 points straight
 * at a level-1 table, and IOVA bits 29:21 (the skipped level 2) must be
 * zero, else the request faults.
 */
static void test_level_skip(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t iova = 0x80000000ULL + 5 * K4;     /* L3 index 2, L1 index 5 */
    uint64_t root = pt_alloc(s);
    uint64_t l1 = pt_alloc(s);
    uint64_t spa = page_spa(K4);
    uint64_t rw = PTE_PR | PTE_IR | PTE_IW;

    qtest_writeq(s->qts, root + 2 * 8, l1 | PTE_NL(1) | rw);
    qtest_writeq(s->qts, l1 + 5 * 8, spa | rw);
    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(3) | root | PTE_IR |
            PTE_IW);

    fill(s, spa, 0x22);
    dma_read(s, iova);
    expect_no_event(s);
    fill(s, spa, 0);
    dma_write(s, iova);
    expect_no_event(s);
    g_assert_true(holds(s, spa, 0x22));

    /* a skipped IOVA bit set: IO_PAGE_FAULT (PR not pinned) */
    dma_read(s, iova + M2);
    expect_raw_event(s, EDU_DEVID | (uint64_t)DOMID << 32 |
                     EVT_IO_PAGE_FAULT << 60,
                     iova + M2, ~EVT_FLAG_PR);
    expect_no_event(s);
    test_end(s);
}

/*
 * ILLEGAL_DEV_TABLE_ENTRY names the request's address (DW2-DW3, printed
 * by Linux as "address=") and RW, like IO_PAGE_FAULT.  DTE Mode 7 is
 * reserved: ILLEGAL_DEV_TABLE_ENTRY with RZ=0 (invalid level encoding),
 * not a DMA dropped without a word.
 */
static void do_dte_mode7(bool snp)
{
    TestState *s = test_start(snp, NULL);
    uint64_t spa = page_spa(K4) + 0x300;

    set_dte(s, EDU_DEVID, DTE_V | DTE_TV | DTE_MODE(7) | s->root | PTE_IR |
            PTE_IW);
    fill(s, spa, 0x71);
    dma_write(s, spa);
    g_assert_true(holds(s, spa, 0x71));
    g_assert_null(take_rmp_fault(s));
    expect_raw_event(s, EDU_DEVID | EVT_ILLEGAL_DEV_TABLE << 60 |
                     EVT_FLAG_RW << 48, spa, 0xfff);
    expect_no_event(s);
    test_end(s);
}

static void test_dte_mode7_snp_off(void)
{
    do_dte_mode7(false);
}

static void test_dte_mode7_snp_on(void)
{
    do_dte_mode7(true);
}

/*
 * A new event log base takes effect at once, whatever STATUS says: here
 * while EventLogInt of an earlier event is still set.  The next event goes
 * to the new log.
 */
static void test_evtlog_new_base(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t new_log = EVTLOG_ADDR + 0x4000;

    dma_read(s, 0x5400000000ULL);           /* an IO_PAGE_FAULT */
    g_assert_true(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_INT);
    qtest_memset(s->qts, new_log, 0, K4);
    /* as Linux's iommu_enable_event_buffer(): base, then head and tail */
    mmio_writeq(s, MMIO_EVTLOG, new_log | 8ULL << 56);
    mmio_writeq(s, MMIO_EVT_HEAD, 0);
    mmio_writeq(s, MMIO_EVT_TAIL, 0);
    dma_read(s, 0x5400001000ULL);
    g_assert_cmphex(mmio_readq(s, MMIO_EVT_TAIL), ==, 16);
    g_assert_cmphex(qtest_readq(s->qts, new_log + 8), ==, 0x5400001000ULL);
    test_end(s);
}

/*
 * A system reset returns the IOMMU to its reset state whole (AMD IOMMU
 * specification: the MMIO registers reset to 0): no device table and no
 * event log of the previous boot stays in use.  Firmware or a kernel that
 * enables the IOMMU and the log in one CONTROL write then finds the log
 * running (EventLogRun).
 */
static void test_reset_forgets_tables(void)
{
    TestState *s = test_start(true, NULL);
    uint64_t new_log = EVTLOG_ADDR + 0x4000;
    uint64_t spa = page_spa(K4) + 0x300;

    dma_read(s, 0x5500000000ULL);           /* an event in the old log */
    g_assert_cmphex(mmio_readq(s, MMIO_EVT_TAIL), ==, 16);

    qtest_qmp_assert_success(s->qts, "{ 'execute': 'system_reset' }");
    qtest_qmp_eventwait(s->qts, "RESET");
    g_assert_cmphex(mmio_readq(s, MMIO_DEVTAB), ==, 0);
    /* edu lost its BAR and bus mastering with the reset */
    qpci_device_enable(s->edu);
    s->edu_bar = qpci_iomap(s->edu, 0, NULL);

    /* no DEVICE_TABLE written: DTEs read from 0, all V=0 */
    qtest_memset(s->qts, 0, 0, K4);
    qtest_memset(s->qts, new_log, 0, K4);
    mmio_writeq(s, MMIO_EVTLOG, new_log | 8ULL << 56);
    mmio_writeq(s, MMIO_EVT_HEAD, 0);
    mmio_writeq(s, MMIO_EVT_TAIL, 0);
    mmio_writeq(s, MMIO_CONTROL, CTRL_IOMMU_EN | CTRL_EVTLOG_EN);
    g_assert_true(mmio_readq(s, MMIO_STATUS) & STATUS_EVT_RUN);

    /* untranslated DMA to an assigned page: RMP_PAGE_FAULT, new log */
    rmp_update(s, spa & ~(K4 - 1), "4k", true, RMP_ASID, 0, true);
    dma_read(s, spa);
    g_assert_cmphex(qtest_readq(s->qts, new_log), ==,
                    EDU_DEVID | EVT_RMP_PAGE_FAULT << 60);
    g_assert_cmphex(qtest_readq(s->qts, new_log + 8), ==, spa);
    g_assert_cmphex(qtest_readq(s->qts, EVTLOG_ADDR + 16), ==, 0);
    test_end(s);
}

/*
 * One event per faulting DMA, not one per DMA the memory core splits into
 * accesses; but two DMAs are two requests.  A 4-byte DMA at X faults, the
 * driver reads the event, then a separate 4-byte DMA at X + 4 faults too:
 * two IO_PAGE_FAULTs (AMD IOMMU specification: one event per faulting
 * request).
 */
static void edu_dma_len(TestState *s, uint64_t src, uint64_t dst,
                        uint64_t cnt, uint64_t cmd)
{
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_SRC, src);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_DST, dst);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CNT, cnt);
    qpci_io_writeq(s->edu, s->edu_bar, EDU_DMA_CMD, cmd | EDU_DMA_START);
    qtest_clock_step(s->qts, 200 * 1000 * 1000);
}

static void test_two_dmas_two_events(void)
{
    TestState *s = test_start(false, NULL);
    uint64_t iova = 0x5600000000ULL;

    edu_dma_len(s, iova, EDU_BUF, 4, 0);
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, 0, iova);
    edu_dma_len(s, iova + 4, EDU_BUF, 4, 0);
    expect_event(s, EVT_IO_PAGE_FAULT, EDU_DEVID, 0, iova + 4);
    expect_no_event(s);
    test_end(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/amd-iommu-snp/matrix", test_matrix);
    qtest_add_func("/amd-iommu-snp/rmp-change-after-iotlb-hit",
                   test_rmp_change_after_iotlb_hit);
    qtest_add_func("/amd-iommu-snp/event-log-overflow",
                   test_event_log_overflow);
    qtest_add_func("/amd-iommu-snp/untranslated-dma", test_untranslated_dma);
    qtest_add_func("/amd-iommu-snp/dte-mode0-illegal",
                   test_dte_mode0_illegal);
    qtest_add_func("/amd-iommu-snp/snp-off", test_snp_off);
    qtest_add_func("/amd-iommu-snp/efr", test_efr);
    qtest_add_func("/amd-iommu-snp/qmp-errors", test_qmp_errors);
    qtest_add_func("/amd-iommu-snp/config-errors", test_config_errors);
    qtest_add_func("/amd-iommu-snp/reset", test_reset);
    qtest_add_func("/amd-iommu-snp/migration", test_migration);
    qtest_add_func("/amd-iommu-snp/hostile-guest", test_hostile_guest);
    qtest_add_func("/amd-iommu-snp/event-devid", test_event_devid);
    qtest_add_func("/amd-iommu-snp/check-per-4k-in-large-page",
                   test_check_per_4k_in_large_page);
    qtest_add_func("/amd-iommu-snp/demo/2023-rmp-fault", test_demo_2023_bug);
    qtest_add_func("/amd-iommu/dma-after-fault/snp-on",
                   test_dma_after_fault_snp_on);
    qtest_add_func("/amd-iommu/dma-after-fault/snp-off",
                   test_dma_after_fault_snp_off);
    qtest_add_func("/amd-iommu-snp/disabled-one-event",
                   test_disabled_one_event);
    qtest_add_func("/amd-iommu/cached-read-only/snp-on",
                   test_cached_read_only_snp_on);
    qtest_add_func("/amd-iommu/cached-read-only/snp-off",
                   test_cached_read_only_snp_off);
    qtest_add_func("/amd-iommu/dte-invalidated/snp-on",
                   test_dte_invalidated_snp_on);
    qtest_add_func("/amd-iommu/dte-invalidated/snp-off",
                   test_dte_invalidated_snp_off);
    qtest_add_func("/amd-iommu/dte-mode0-permissions",
                   test_dte_mode0_permissions);
    qtest_add_func("/amd-iommu/cmdbuf-head-wrap", test_cmdbuf_head_wrap);
    qtest_add_func("/amd-iommu/cmdbuf-tail-out-of-range",
                   test_cmdbuf_tail_out_of_range);
    qtest_add_func("/amd-iommu/evtlog-without-base",
                   test_evtlog_without_base);
    qtest_add_func("/amd-iommu/large-pte-all-ones", test_large_pte_all_ones);
    qtest_add_func("/amd-iommu-snp/fault-event-rate", test_fault_event_rate);
    qtest_add_func("/amd-iommu/large-pte-run-of-one",
                   test_large_pte_run_of_one);
    qtest_add_func("/amd-iommu/inval-all-rereads-dte",
                   test_inval_all_rereads_dte);
    qtest_add_func("/edu/dma-out-of-range", test_edu_dma_out_of_range);
    qtest_add_func("/edu/factorial", test_edu_factorial);
    qtest_add_func("/amd-iommu/tables-in-own-mmio", test_tables_in_own_mmio);
    qtest_add_func("/amd-iommu/evtlog-new-base", test_evtlog_new_base);
    qtest_add_func("/amd-iommu-snp/reset-forgets-tables",
                   test_reset_forgets_tables);
    qtest_add_func("/amd-iommu/two-dmas-two-events",
                   test_two_dmas_two_events);
    if (g_test_perf()) {
        qtest_add_func("/amd-iommu-snp/perf/hit-snp-off", bench_hit_snp_off);
        qtest_add_func("/amd-iommu-snp/perf/hit-snp-on", bench_hit_snp_on);
        qtest_add_func("/amd-iommu-snp/perf/walk-snp-off",
                       bench_walk_snp_off);
        qtest_add_func("/amd-iommu-snp/perf/walk-snp-on", bench_walk_snp_on);
    }
    qtest_add_func("/amd-iommu/fuzz/iopf-domain-id", test_iopf_domain_id);
    qtest_add_func("/amd-iommu/fuzz/dte-write-protect/snp-off",
                   test_dte_write_protect_snp_off);
    qtest_add_func("/amd-iommu/fuzz/dte-write-protect/snp-on",
                   test_dte_write_protect_snp_on);
    qtest_add_func("/amd-iommu/fuzz/pde-write-protect",
                   test_pde_write_protect);
    qtest_add_func("/amd-iommu/fuzz/level-skip", test_level_skip);
    qtest_add_func("/amd-iommu/fuzz/dte-mode7/snp-off",
                   test_dte_mode7_snp_off);
    qtest_add_func("/amd-iommu/fuzz/dte-mode7/snp-on",
                   test_dte_mode7_snp_on);
    return g_test_run();
}
