/*
 * QTest for the emulated AMD Secure Processor (-device amd-psp)
 *
 * The test plays Linux's ccp driver: it finds the PSP by its PCI ID, and
 * sends SEV firmware commands through the mailbox in BAR 2 as
 * drivers/crypto/ccp/sev-dev.c (__sev_do_cmd_locked) sends them.  Every
 * expected value comes from Linux (register offsets: sp-pci.c pspv4 and
 * sevv2; bit layouts: include/linux/psp.h, psp-dev.h, sev-dev.h; buffer
 * layouts and status codes: include/linux/psp-sev.h and
 * include/uapi/linux/psp-sev.h) or from AMD's SEV firmware
 * (github.com/amd/AMD-ASPFW: the platform state tables and the
 * dispatcher), as research/psp-facts.md records them.
 *
 * qtest has no TCG CPUs, so no SNP host here (snp-rmp,host=on needs TCG):
 * the SNP commands' effects on the RMP are tested with real kernels
 * (tests/system/snp-host-test.py).  Here: the PCI function, the mailbox,
 * the interrupt and the legacy SEV platform's state machine.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "libqtest.h"
#include "libqos/pci-pc.h"
#include "qobject/qdict.h"
#include "hw/pci/pci_regs.h"

/*
 * sp-pci.c: dev_vdata[5] (1022:14CA, Genoa) = pspv4 with sevv2, BAR 2;
 * dev_vdata[3] (1022:1486, Rome and Milan) = pspv2 with sevv2, BAR 2
 */
#define PSP_VENDOR          0x1022
#define PSP_DEVICE          0x14ca
#define PSP_DEVICE_MILAN    0x1486
#define PSP_BAR             2
#define PSP_DEVFN           QPCI_DEVFN(5, 0)

/* sp-pci.c: sevv2 and pspv4 register offsets */
#define REG_CMDRESP         0x10980
#define REG_CMDBUF_LO       0x109e0
#define REG_CMDBUF_HI       0x109e4
#define REG_FEATURE         0x109fc
#define REG_INTEN           0x10690
#define REG_INTSTS          0x10694

/* psp.h: PSP_CMDRESP_RESP, PSP_CMDRESP_STS; sev-dev.h: SEV_CMDRESP_IOC */
#define CMDRESP_RESP        (1u << 31)
#define CMDRESP_STS(v)      ((v) & 0xffff)
#define CMDRESP_IOC         (1u << 0)
/* sev-dev.h: SEV_CMD_COMPLETE, in the interrupt status */
#define INT_CMD_COMPLETE    (1u << 1)

/* psp-sev.h enum sev_cmd */
#define CMD_INIT            0x01
#define CMD_SHUTDOWN        0x02
#define CMD_PLATFORM_STATUS 0x04
#define CMD_DF_FLUSH        0x0a
#define CMD_GET_ID          0x0c
#define CMD_INIT_EX         0x0d
#define CMD_SNP_INIT        0x81
#define CMD_SNP_PLATFORM_STATUS 0x83

/* uapi psp-sev.h enum sev_ret_code */
#define RET_SUCCESS                 0x00
#define RET_INVALID_PLATFORM_STATE  0x01
#define RET_INVALID_CONFIG          0x03
#define RET_INVALID_LEN             0x04
#define RET_INVALID_ADDRESS         0x09
#define RET_INVALID_COMMAND         0x11

/* Guest memory the test uses */
#define CMDBUF_ADDR         0x100000ULL
#define STATUS_ADDR         0x101000ULL
#define MSI_ADDR            0x102000ULL
#define MSI_DATA            0x4321

typedef struct TestState {
    QTestState *qts;
    QPCIBus *pcibus;
    QPCIDevice *dev;
    QPCIBar bar;
} TestState;

static void psp_start(TestState *s, const char *extra)
{
    uint8_t cap;

    s->qts = qtest_initf("-M q35 -m 512M -device amd-psp,id=psp0,"
                         "addr=05.0 %s", extra);
    s->pcibus = qpci_new_pc(s->qts, NULL);
    s->dev = qpci_device_find(s->pcibus, PSP_DEVFN);
    g_assert_nonnull(s->dev);
    qpci_device_enable(s->dev);
    s->bar = qpci_iomap(s->dev, PSP_BAR, NULL);

    /* single MSI, as ccp falls back to when MSI-X is not there */
    cap = qpci_find_capability(s->dev, PCI_CAP_ID_MSI, 0);
    g_assert_cmpint(cap, !=, 0);
    qpci_config_writel(s->dev, cap + PCI_MSI_ADDRESS_LO, MSI_ADDR);
    qpci_config_writel(s->dev, cap + PCI_MSI_ADDRESS_HI, 0);
    qpci_config_writew(s->dev, cap + PCI_MSI_DATA_64, MSI_DATA);
    qpci_config_writew(s->dev, cap + PCI_MSI_FLAGS,
                       qpci_config_readw(s->dev, cap + PCI_MSI_FLAGS) |
                       PCI_MSI_FLAGS_ENABLE);
    qtest_writel(s->qts, MSI_ADDR, 0);

    /* psp_dev_init: interrupts off, status cleared; psp_init: on */
    qpci_io_writel(s->dev, s->bar, REG_INTEN, 0);
    qpci_io_writel(s->dev, s->bar, REG_INTSTS, 0xffffffff);
    qpci_io_writel(s->dev, s->bar, REG_INTEN, 0xffffffff);
}

static void psp_stop(TestState *s)
{
    g_free(s->dev);
    qpci_free_pc(s->pcibus);
    qtest_quit(s->qts);
}

/*
 * __sev_do_cmd_locked: the buffer's address, low half then high half
 * (0 and 0 for a command without one), then the command with IOC; then
 * wait for the response bit.  Returns the status.
 */
static uint16_t psp_cmd(TestState *s, uint8_t cmd, uint64_t buf, bool ioc)
{
    uint32_t reg = 0;

    qpci_io_writel(s->dev, s->bar, REG_CMDBUF_LO, (uint32_t)buf);
    qpci_io_writel(s->dev, s->bar, REG_CMDBUF_HI, buf >> 32);
    qpci_io_writel(s->dev, s->bar, REG_CMDRESP,
                   (uint32_t)cmd << 16 | (ioc ? CMDRESP_IOC : 0));
    for (int i = 0; i < 1000; i++) {
        reg = qpci_io_readl(s->dev, s->bar, REG_CMDRESP);
        if (reg & CMDRESP_RESP) {
            break;
        }
        qtest_clock_step(s->qts, 1000);
    }
    g_assert_true(reg & CMDRESP_RESP);
    return CMDRESP_STS(reg);
}

/*
 * psp_irq_handler: read the interrupt status, write it back to clear it;
 * sev_irq_handler wants SEV_CMD_COMPLETE in it.
 */
static uint32_t psp_ack(TestState *s)
{
    uint32_t sts = qpci_io_readl(s->dev, s->bar, REG_INTSTS);

    qpci_io_writel(s->dev, s->bar, REG_INTSTS, sts);
    return sts;
}

/* The PCI function that ccp binds, and psp_get_capability's register */
static void test_identity(void)
{
    TestState s;

    psp_start(&s, "");
    g_assert_cmphex(qpci_config_readw(s.dev, PCI_VENDOR_ID), ==,
                    PSP_VENDOR);
    g_assert_cmphex(qpci_config_readw(s.dev, PCI_DEVICE_ID), ==,
                    PSP_DEVICE);
    /*
     * psp-dev.h union psp_cap_register: bit 0 sev; tee (1), dbc (2) and
     * security_reporting (7) clear, so ccp sends no TEE ring or HSTI
     * command that this PSP does not have.
     */
    g_assert_cmphex(qpci_io_readl(s.dev, s.bar, REG_FEATURE), ==, 0x1);
    /* sp_get_msix_irqs: MSI-X first */
    g_assert_cmpint(qpci_find_capability(s.dev, PCI_CAP_ID_MSIX, 0), !=, 0);
    psp_stop(&s);
}

/*
 * On a Milan (family 19h model 01h) the PSP is 1486, whose pspv2 data has
 * PLATFORM_FEATURE_HSTI: psp_init_hsti() queries HSTI through the
 * platform-access mailbox unless capability bit 7 (security_reporting) is
 * set, and a failure there fails the whole PSP.  Its CCP (ccpv5a) reads
 * Q_MASK_REG at 0: no queue, so ccp5_init() leaves the CCP unused.
 */
static uint32_t check_platform_status(TestState *s, uint8_t state,
                                      bool es);

static void test_identity_milan(void)
{
    TestState s;

    psp_start(&s, "-cpu EPYC-Milan");
    g_assert_cmphex(qpci_config_readw(s.dev, PCI_DEVICE_ID), ==,
                    PSP_DEVICE_MILAN);
    g_assert_cmphex(qpci_io_readl(s.dev, s.bar, REG_FEATURE), ==, 0x81);
    g_assert_cmphex(qpci_io_readl(s.dev, s.bar, 0), ==, 0);
    check_platform_status(&s, 0, false);
    psp_stop(&s);
}

/*
 * PLATFORM_STATUS (struct sev_user_data_status, 12 bytes): api_major,
 * api_minor, state, flags (owner: byte 3 bit 0; ES: byte 4 bit 0), build
 * at byte 7, guest_count at 8.  The version must let Linux use SNP: 6.12
 * and 7.x ccp want API 1.51 for SNP (SNP_MIN_API_MINOR) and 1.52 for
 * SNP_INIT_EX (sev_version_greater_or_equal(1, 52)).  Returns the version
 * as major << 16 | minor << 8 | build.
 */
static uint32_t check_platform_status(TestState *s, uint8_t state, bool es)
{
    uint8_t out[12];

    memset(out, 0xaa, sizeof(out));
    qtest_memwrite(s->qts, CMDBUF_ADDR, out, sizeof(out));
    g_assert_cmphex(psp_cmd(s, CMD_PLATFORM_STATUS, CMDBUF_ADDR, true), ==,
                    RET_SUCCESS);
    qtest_memread(s->qts, CMDBUF_ADDR, out, sizeof(out));
    g_assert_cmpuint(out[0], ==, 1);
    g_assert_cmpuint(out[1], >=, 52);
    g_assert_cmpuint(out[2], ==, state);
    g_assert_cmpuint(out[3] & 1, ==, 0);            /* self-owned */
    g_assert_cmpuint(out[4] & 1, ==, es);
    g_assert_cmpuint(ldl_le_p(out + 8), ==, 0);     /* no guests */
    return out[0] << 16 | out[1] << 8 | out[7];
}

/* The mailbox's interrupt: only with IOC, and only while enabled */
static void test_interrupt(void)
{
    TestState s;

    psp_start(&s, "");
    check_platform_status(&s, 0, false);
    g_assert_cmphex(psp_ack(&s), ==, INT_CMD_COMPLETE);
    g_assert_cmphex(qtest_readl(s.qts, MSI_ADDR), ==, MSI_DATA);

    /* sev_wait_cmd_ioc's polled path: no IOC, no interrupt */
    qtest_writel(s.qts, MSI_ADDR, 0);
    g_assert_cmphex(psp_cmd(&s, CMD_PLATFORM_STATUS, CMDBUF_ADDR, false), ==,
                    RET_SUCCESS);
    g_assert_cmphex(psp_ack(&s), ==, 0);
    g_assert_cmphex(qtest_readl(s.qts, MSI_ADDR), ==, 0);

    /* interrupts disabled (psp_dev_init writes 0 to INTEN): status only */
    qpci_io_writel(s.dev, s.bar, REG_INTEN, 0);
    g_assert_cmphex(psp_cmd(&s, CMD_PLATFORM_STATUS, CMDBUF_ADDR, true), ==,
                    RET_SUCCESS);
    g_assert_cmphex(qtest_readl(s.qts, MSI_ADDR), ==, 0);
    g_assert_cmphex(psp_ack(&s), ==, INT_CMD_COMPLETE);
    psp_stop(&s);
}

/*
 * The legacy SEV platform, as kvm_amd's sev_platform_init drives it:
 * INIT (struct sev_data_init: flags, reserved, tmr_address, tmr_len) then
 * DF_FLUSH, and SHUTDOWN when it unloads.  ASPFW sev_plat.c: INIT only
 * from UNINIT, DF_FLUSH only once initialised, SHUTDOWN from any state.
 */
static void test_sev_platform(void)
{
    TestState s;
    uint8_t init[20] = { 0 };
    uint8_t init_ex[36] = { 0 };

    psp_start(&s, "");
    check_platform_status(&s, 0, false);
    g_assert_cmphex(psp_cmd(&s, CMD_DF_FLUSH, 0, true), ==,
                    RET_INVALID_PLATFORM_STATE);

    qtest_memwrite(s.qts, CMDBUF_ADDR, init, sizeof(init));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT, CMDBUF_ADDR, true), ==,
                    RET_SUCCESS);
    check_platform_status(&s, 1, false);
    g_assert_cmphex(psp_cmd(&s, CMD_INIT, CMDBUF_ADDR, true), ==,
                    RET_INVALID_PLATFORM_STATE);
    g_assert_cmphex(psp_cmd(&s, CMD_DF_FLUSH, 0, true), ==, RET_SUCCESS);
    g_assert_cmphex(psp_cmd(&s, CMD_SHUTDOWN, 0, true), ==, RET_SUCCESS);
    check_platform_status(&s, 0, false);
    g_assert_cmphex(psp_cmd(&s, CMD_SHUTDOWN, 0, true), ==, RET_SUCCESS);

    /*
     * INIT with SEV-ES and a TMR: 1M, 1M-aligned, without SNP (Linux
     * SEV_TMR_SIZE; ASPFW sev_es.c: INVALID_LENGTH, INVALID_ADDRESS);
     * flags other than SEV_INIT_FLAGS_SEV_ES are reserved (ASPFW
     * init_cmd_buf_valid: INVALID_CONFIG).
     */
    stl_le_p(init, 1 | 2);
    stq_le_p(init + 8, 0x200000);
    stl_le_p(init + 16, 0x100000);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init, sizeof(init));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT, CMDBUF_ADDR, true), ==,
                    RET_INVALID_CONFIG);
    stl_le_p(init, 1);
    stl_le_p(init + 16, 0x200000);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init, sizeof(init));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT, CMDBUF_ADDR, true), ==,
                    RET_INVALID_LEN);
    stq_le_p(init + 8, 0x280000);
    stl_le_p(init + 16, 0x100000);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init, sizeof(init));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT, CMDBUF_ADDR, true), ==,
                    RET_INVALID_ADDRESS);
    check_platform_status(&s, 0, false);
    stq_le_p(init + 8, 0x200000);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init, sizeof(init));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT, CMDBUF_ADDR, true), ==,
                    RET_SUCCESS);
    check_platform_status(&s, 1, true);
    g_assert_cmphex(psp_cmd(&s, CMD_SHUTDOWN, 0, true), ==, RET_SUCCESS);

    /*
     * INIT_EX (struct sev_data_init_ex): length must be 36, the NV buffer
     * 32K (ASPFW sev_mcmd_init_common)
     */
    stl_le_p(init_ex, 35);
    stq_le_p(init_ex + 24, 0x300000);
    stl_le_p(init_ex + 32, 32 * 1024);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init_ex, sizeof(init_ex));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT_EX, CMDBUF_ADDR, true), ==,
                    RET_INVALID_LEN);
    stl_le_p(init_ex, 36);
    stq_le_p(init_ex + 24, 0x300800);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init_ex, sizeof(init_ex));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT_EX, CMDBUF_ADDR, true), ==,
                    RET_INVALID_ADDRESS);
    stq_le_p(init_ex + 24, 0x300000);
    qtest_memwrite(s.qts, CMDBUF_ADDR, init_ex, sizeof(init_ex));
    g_assert_cmphex(psp_cmd(&s, CMD_INIT_EX, CMDBUF_ADDR, true), ==,
                    RET_SUCCESS);
    check_platform_status(&s, 1, false);
    psp_stop(&s);
}

/*
 * SNP without an SNP host.  SNP_PLATFORM_STATUS answers (Linux 7.x asks
 * before anything else, snp_get_platform_data): struct
 * sev_user_data_snp_status, 32 bytes: api_major, api_minor, state (0:
 * UNINIT), is_rmp_initialized, build_id (u32 at 4), feature_info (flags
 * bit 3 at 8: SNP_FEATURE_INFO is there, as firmware 1.55 sets it).  The
 * SNP_INIT checks of the CPUs fail: INVALID_CONFIG (ASPFW
 * snp_mcmd_init_common).
 */
static void test_snp_without_host(void)
{
    TestState s;
    uint8_t out[32];
    uint32_t version;

    psp_start(&s, "");
    version = check_platform_status(&s, 0, false);
    qtest_writeq(s.qts, CMDBUF_ADDR, STATUS_ADDR);
    g_assert_cmphex(psp_cmd(&s, CMD_SNP_PLATFORM_STATUS, CMDBUF_ADDR, true),
                    ==, RET_SUCCESS);
    qtest_memread(s.qts, STATUS_ADDR, out, sizeof(out));
    /*
     * One firmware: 7.x takes the API version from here first, then from
     * PLATFORM_STATUS (sev_get_api_version); build_id's low byte is the
     * build (snp_get_platform_data).
     */
    g_assert_cmphex(out[0] << 16 | out[1] << 8 | (ldl_le_p(out + 4) & 0xff),
                    ==, version);
    g_assert_cmpuint(out[2], ==, 0);
    g_assert_cmpuint(out[3] & 1, ==, 0);
    g_assert_cmphex(ldl_le_p(out + 8) & (1u << 3), ==, 1u << 3);
    g_assert_cmpuint(ldl_le_p(out + 12), ==, 0);
    g_assert_cmphex(psp_cmd(&s, CMD_SNP_INIT, 0, true), ==,
                    RET_INVALID_CONFIG);
    psp_stop(&s);
}

/*
 * A command the firmware does not implement: INVALID_COMMAND, as ASPFW's
 * sev_dispatch_master answers an ID without a handler; the device says
 * so through QMP.
 */
static void test_unsupported(void)
{
    TestState s;
    QDict *ev;

    psp_start(&s, "");
    g_assert_cmphex(psp_cmd(&s, CMD_GET_ID, CMDBUF_ADDR, true), ==,
                    RET_INVALID_COMMAND);
    ev = qtest_qmp_eventwait_ref(s.qts, "AMD_PSP_UNSUPPORTED_COMMAND");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "device"),
                    ==, "psp0");
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(ev, "data"), "command"),
                    ==, CMD_GET_ID);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "name"),
                    ==, "GET_ID");
    qobject_unref(ev);
    /* QMP hears of each ID once (a guest may loop on it) */
    g_assert_cmphex(psp_cmd(&s, CMD_GET_ID, CMDBUF_ADDR, true), ==,
                    RET_INVALID_COMMAND);
    /* an ID Linux does not know either */
    g_assert_cmphex(psp_cmd(&s, 0xfe, 0, true), ==, RET_INVALID_COMMAND);
    ev = qtest_qmp_eventwait_ref(s.qts, "AMD_PSP_UNSUPPORTED_COMMAND");
    g_assert_false(qdict_haskey(qdict_get_qdict(ev, "data"), "name"));
    qobject_unref(ev);
    /* the firmware still works */
    check_platform_status(&s, 0, false);
    psp_stop(&s);
}

/* Refused with a clear error: exit status 1, the reason on stderr */
static void expect_refused(const char *args, const char *why)
{
    g_autofree char *cmd = g_strdup_printf("timeout 30 %s -M q35 "
                                           "-accel qtest "
                                           "-display none -nodefaults %s "
                                           "-S",
                                           getenv("QTEST_QEMU_BINARY"),
                                           args);
    g_autofree char *err = NULL;
    g_autoptr(GError) gerr = NULL;
    int status;

    g_assert_true(g_spawn_command_line_sync(cmd, NULL, &err, &status,
                                            &gerr));
    g_assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_assert_nonnull(strstr(err, why));
}

/* The RMP must be an SNP host's; a machine has one PSP */
static void test_refused(void)
{
    expect_refused("-object snp-rmp,id=rmp0 -device amd-psp,rmp=rmp0",
                   "host=on");
    expect_refused("-device amd-psp -device amd-psp", "PSP already");
    /* Naples (family 17h model 01h): sp-pci.c's 1456 has sevv1 */
    expect_refused("-cpu EPYC -device amd-psp", "Naples");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/amd-psp/identity", test_identity);
    qtest_add_func("/amd-psp/identity-milan", test_identity_milan);
    qtest_add_func("/amd-psp/interrupt", test_interrupt);
    qtest_add_func("/amd-psp/sev-platform", test_sev_platform);
    qtest_add_func("/amd-psp/snp-without-host", test_snp_without_host);
    qtest_add_func("/amd-psp/unsupported", test_unsupported);
    qtest_add_func("/amd-psp/refused", test_refused);
    return g_test_run();
}
