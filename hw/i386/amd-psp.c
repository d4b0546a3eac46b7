/*
 * The AMD Secure Processor (PSP) of an emulated SEV-SNP host
 * (-device amd-psp,rmp=rmp0)
 *
 * A PCI function that Linux's ccp driver binds as the PSP of the CPU's
 * generation (Linux drivers/crypto/ccp/sp-pci.c; research/psp-facts.md):
 * 1022:14CA (pspv4) on Genoa, family 19h models 10h and up; 1022:1486
 * (pspv2, with a CCP that has no queues) on Milan and Rome.  Both have the
 * SEV firmware's mailbox (sevv2) in BAR 2:
 *
 *   0x10980  SEV command/response: software writes the command ID in bits
 *            23:16 and IOC in bit 0; the firmware sets bit 31 (ready) and
 *            the status in bits 15:0 when the command is done
 *   0x109e0  the command buffer's address, low and high halves
 *   0x109e4
 *   0x10690  interrupt enable, 0x10694 interrupt status (write 1 to
 *            clear): bit 1 is "command complete"
 *   0x109fc  capabilities: bit 0 SEV; no TEE, no DBC; on 1486 also
 *            bit 7, security reporting, so that ccp asks no HSTI query of
 *            the platform-access mailbox this PSP does not have
 *
 * The firmware (hw/i386/sev-firmware.c) runs each command in a bottom
 * half, as the real PSP runs it on its own core: the vCPU that wrote the
 * command waits for the interrupt, and by the time the command completes
 * every CPU has dropped what the RMP changes forbid.  Commands this
 * firmware does not implement complete with INVALID_COMMAND and are
 * recorded: a trace event and the AMD_PSP_UNSUPPORTED_COMMAND QMP event.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"
#include "qapi/qapi-events-snp.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "system/address-spaces.h"
#include "system/runstate.h"
#include "qemu/bitmap.h"
#include "hw/i386/sev-firmware.h"
#include "hw/i386/snp-host.h"
#include "hw/i386/snp-rmp.h"
#include "hw/i386/amd_iommu-snp.h"
#include "cpu.h"
#include "trace.h"

#define TYPE_AMD_PSP "amd-psp"
OBJECT_DECLARE_SIMPLE_TYPE(AmdPspState, AMD_PSP)

#define PCI_DEVICE_ID_AMD_PSP_GENOA     0x14ca
#define PCI_DEVICE_ID_AMD_PSP_MILAN     0x1486

#define PSP_BAR                 2
#define PSP_BAR_SIZE            (128 * KiB)     /* covers 0x109fc */
#define PSP_MSIX_BAR            5
#define PSP_MSIX_VECTORS        2

/* 1486's CCP (ccp-dev-v5.c): no queue in the mask, so it stays unused */
#define CCP_REG_Q_MASK          0x00000
#define CCP_REG_REQID_CONFIG    0x00008

#define PSP_REG_INTEN           0x10690
#define PSP_REG_INTSTS          0x10694
#define PSP_REG_CMDRESP         0x10980
#define PSP_REG_CMDBUF_LO       0x109e0
#define PSP_REG_CMDBUF_HI       0x109e4
#define PSP_REG_TEE_INFO        0x109e8
#define PSP_REG_BOOTLOADER_INFO 0x109ec
#define PSP_REG_FEATURE         0x109fc

#define PSP_CMDRESP_RESP        (1u << 31)
#define PSP_CMDRESP_IOC         (1u << 0)
#define PSP_CMDRESP_CMD(v)      (((v) >> 16) & 0xff)
#define PSP_INT_CMD_COMPLETE    (1u << 1)
#define PSP_FEATURE_SEV         (1u << 0)
#define PSP_FEATURE_SECURITY_REPORTING  (1u << 7)

/* No version to show: Linux hides the sysfs attribute for all-ones */
#define PSP_NO_VERSION          0xffffffffu

struct AmdPspState {
    PCIDevice parent_obj;

    MemoryRegion mmio;
    QEMUBH *bh;
    SnpRmp *rmp;                /* "rmp" link */
    SevFirmware fw;

    uint32_t feature;           /* the capability register */
    uint32_t inten;
    uint32_t intsts;
    uint32_t cmdresp;
    bool cmdresp_ioc;           /* the command asked for an interrupt */
    uint32_t cmdbuf_lo;
    uint32_t cmdbuf_hi;
    bool busy;                  /* a command waits for the firmware */
    /* the unsupported IDs sent to QMP since reset: once each */
    DECLARE_BITMAP(reported, 256);
    VMChangeStateEntry *vmstate_change;
};

/* The machine's PSP: one, the master (ccp's psp_master) */
static AmdPspState *amd_psp;

/* SevFirmwareOps: what the firmware checks of the CPUs */
static bool amd_psp_cpus_ready(void *opaque, bool init_rmp,
                               uint64_t *rmp_base, uint64_t *rmp_end)
{
    const uint64_t need = SNP_SYSCFG_MEM_ENCRYPT | SNP_SYSCFG_SNP_EN |
                          SNP_SYSCFG_VMPL_EN | SNP_SYSCFG_MFDM;
    CPUX86State *first = NULL;
    CPUState *cs;

    CPU_FOREACH(cs) {
        CPUX86State *env = &X86_CPU(cs)->env;

        if ((env->msr_syscfg & need) != need ||
            !(env->msr_hwcr & SNP_HWCR_SMMLOCK) ||
            (init_rmp && env->vm_hsave)) {
            trace_amd_psp_cpu_not_ready(cs->cpu_index, env->msr_syscfg,
                                        env->msr_hwcr, env->vm_hsave);
            return false;
        }
        if (!first) {
            first = env;
        } else if (env->msr_syscfg != first->msr_syscfg ||
                   env->msr_rmp_base != first->msr_rmp_base ||
                   env->msr_rmp_end != first->msr_rmp_end) {
            trace_amd_psp_cpu_not_ready(cs->cpu_index, env->msr_syscfg,
                                        env->msr_hwcr, env->vm_hsave);
            return false;
        }
    }
    if (!first || (first->msr_rmp_base & (MiB - 1)) ||
        ((first->msr_rmp_end + 1) & (MiB - 1)) ||
        first->msr_rmp_end < first->msr_rmp_base) {
        return false;
    }
    *rmp_base = first->msr_rmp_base;
    *rmp_end = first->msr_rmp_end;
    return true;
}

static bool amd_psp_cpus_snp_enabled(void *opaque)
{
    CPUState *cs;

    CPU_FOREACH(cs) {
        if (!(X86_CPU(cs)->env.msr_syscfg & SNP_SYSCFG_SNP_EN)) {
            return false;
        }
    }
    return true;
}

static unsigned amd_psp_iommu_buffers(void *opaque, SnpRmpRange *ranges,
                                      unsigned max)
{
    AmdPspState *s = opaque;

    return amdvi_snp_firmware_buffers(s->rmp, ranges, max);
}

static void amd_psp_rmp_changed(void *opaque)
{
    snp_host_sync_tlbs();
}

static const SevFirmwareOps amd_psp_fw_ops = {
    .cpus_ready = amd_psp_cpus_ready,
    .cpus_snp_enabled = amd_psp_cpus_snp_enabled,
    .iommu_buffers = amd_psp_iommu_buffers,
    .rmp_changed = amd_psp_rmp_changed,
};

static void amd_psp_update_irq(AmdPspState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    if (!(s->intsts & s->inten & PSP_INT_CMD_COMPLETE)) {
        return;
    }
    /* message-signalled: one message per completion */
    if (msix_enabled(pdev)) {
        msix_notify(pdev, 0);
    } else if (msi_enabled(pdev)) {
        msi_notify(pdev, 0);
    }
}

static void amd_psp_run(void *opaque)
{
    AmdPspState *s = opaque;
    uint8_t cmd = PSP_CMDRESP_CMD(s->cmdresp);
    uint64_t buf = ((uint64_t)s->cmdbuf_hi << 32) | s->cmdbuf_lo;
    uint16_t status;

    /* a stopped VM's command runs when it runs again (vm_state_change) */
    if (!s->busy || !runstate_is_running()) {
        return;
    }
    status = sev_firmware_command(&s->fw, cmd, buf);
    if (status == SEV_RET_INVALID_COMMAND) {
        const char *name = sev_firmware_command_name(cmd);

        trace_amd_psp_unsupported(cmd, name ?: "?");
        /* a guest may send them in a loop: QMP hears of each ID once */
        if (!test_and_set_bit(cmd, s->reported)) {
            qapi_event_send_amd_psp_unsupported_command(DEVICE(s)->id ?: "",
                                                        cmd, name);
        }
    }
    s->busy = false;
    s->cmdresp = PSP_CMDRESP_RESP | (cmd << 16) | status;
    if (s->cmdresp_ioc) {
        s->intsts |= PSP_INT_CMD_COMPLETE;
        amd_psp_update_irq(s);
    }
}

static uint64_t amd_psp_read(void *opaque, hwaddr addr, unsigned size)
{
    AmdPspState *s = opaque;
    uint32_t val = 0;

    switch (addr) {
    case PSP_REG_INTEN:
        val = s->inten;
        break;
    case PSP_REG_INTSTS:
        val = s->intsts;
        break;
    case PSP_REG_CMDRESP:
        val = s->cmdresp;
        break;
    case PSP_REG_CMDBUF_LO:
        val = s->cmdbuf_lo;
        break;
    case PSP_REG_CMDBUF_HI:
        val = s->cmdbuf_hi;
        break;
    case PSP_REG_TEE_INFO:
    case PSP_REG_BOOTLOADER_INFO:
        val = PSP_NO_VERSION;
        break;
    case PSP_REG_FEATURE:
        val = s->feature;
        break;
    case CCP_REG_Q_MASK:
        break;
    default:
        qemu_log_mask(LOG_UNIMP, "amd-psp: read of register 0x%" HWADDR_PRIx
                      "\n", addr);
        break;
    }
    trace_amd_psp_read(addr, val);
    return val;
}

static void amd_psp_write(void *opaque, hwaddr addr, uint64_t val,
                          unsigned size)
{
    AmdPspState *s = opaque;

    trace_amd_psp_write(addr, val);
    switch (addr) {
    case PSP_REG_INTEN:
        s->inten = val;
        amd_psp_update_irq(s);
        break;
    case PSP_REG_INTSTS:
        s->intsts &= ~val;
        break;
    case PSP_REG_CMDRESP:
        if (s->busy) {
            qemu_log_mask(LOG_GUEST_ERROR, "amd-psp: command 0x%x written "
                          "while command 0x%x runs: ignored\n",
                          PSP_CMDRESP_CMD((uint32_t)val),
                          PSP_CMDRESP_CMD(s->cmdresp));
            break;
        }
        s->cmdresp = val & ~PSP_CMDRESP_RESP;
        s->cmdresp_ioc = val & PSP_CMDRESP_IOC;
        s->busy = true;
        qemu_bh_schedule(s->bh);
        break;
    case PSP_REG_CMDBUF_LO:
        if (!s->busy) {
            s->cmdbuf_lo = val;
        }
        break;
    case PSP_REG_CMDBUF_HI:
        if (!s->busy) {
            s->cmdbuf_hi = val;
        }
        break;
    case CCP_REG_REQID_CONFIG:
        break;
    default:
        qemu_log_mask(LOG_UNIMP, "amd-psp: write of 0x%" PRIx64 " to "
                      "register 0x%" HWADDR_PRIx "\n", val, addr);
        break;
    }
}

static const MemoryRegionOps amd_psp_mmio_ops = {
    .read = amd_psp_read,
    .write = amd_psp_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
    .impl = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
};

/* A command that a migration brought along runs once the VM does */
static void amd_psp_vm_state_change(void *opaque, bool running,
                                    RunState state)
{
    AmdPspState *s = opaque;

    if (running && s->busy) {
        qemu_bh_schedule(s->bh);
    }
}

/*
 * The PSP of the CPU model's generation (Linux sp-pci.c): Rome (family 17h
 * models 30h and up) and Milan (19h, models below 10h) have 1486; Naples
 * (17h, below 30h) has 1456, whose older mailbox this device does not
 * emulate (0); Genoa and the rest have 14CA.
 */
static uint16_t amd_psp_device_id(void)
{
    uint32_t version = first_cpu ? X86_CPU(first_cpu)->env.cpuid_version
                                 : 0;
    uint32_t family = x86_cpu_family(version);
    uint32_t model = x86_cpu_model(version);

    if (family == 0x17) {
        return model >= 0x30 ? PCI_DEVICE_ID_AMD_PSP_MILAN : 0;
    }
    if (family == 0x19 && model < 0x10) {
        return PCI_DEVICE_ID_AMD_PSP_MILAN;
    }
    return PCI_DEVICE_ID_AMD_PSP_GENOA;
}

static void amd_psp_realize(PCIDevice *pdev, Error **errp)
{
    AmdPspState *s = AMD_PSP(pdev);

    uint16_t device_id = amd_psp_device_id();

    if (amd_psp) {
        error_setg(errp, "amd-psp: the machine has a PSP already");
        return;
    }
    if (!device_id) {
        error_setg(errp, "amd-psp: the CPU model is a Naples (family 17h "
                   "before model 30h), whose PSP (1022:1456) is not "
                   "emulated: use a Rome, Milan or Genoa model");
        return;
    }
    if (s->rmp && !s->rmp->host) {
        error_setg(errp, "amd-psp: the RMP '%s' is not an SNP host's: give "
                   "it host=on", object_get_canonical_path_component(
                       OBJECT(s->rmp)));
        return;
    }
    pdev->config[PCI_INTERRUPT_PIN] = 0;    /* ccp needs MSI-X or MSI */
    s->feature = PSP_FEATURE_SEV;
    if (device_id == PCI_DEVICE_ID_AMD_PSP_MILAN) {
        /*
         * 1486's driver data has the HSTI platform feature: without
         * security reporting ccp queries HSTI through a mailbox this PSP
         * lacks, and a failed query fails the PSP (psp_init_hsti).  With
         * it, ccp shows the security attributes: all clear here.
         */
        pci_config_set_device_id(pdev->config, device_id);
        s->feature |= PSP_FEATURE_SECURITY_REPORTING;
    }
    memory_region_init_io(&s->mmio, OBJECT(s), &amd_psp_mmio_ops, s,
                          "amd-psp-mmio", PSP_BAR_SIZE);
    pci_register_bar(pdev, PSP_BAR, PCI_BASE_ADDRESS_SPACE_MEMORY, &s->mmio);
    if (msix_init_exclusive_bar(pdev, PSP_MSIX_VECTORS, PSP_MSIX_BAR,
                                errp)) {
        return;
    }
    for (unsigned i = 0; i < PSP_MSIX_VECTORS; i++) {
        msix_vector_use(pdev, i);
    }
    if (msi_init(pdev, 0, 1, true, false, errp)) {
        msix_uninit_exclusive_bar(pdev);
        return;
    }
    s->bh = qemu_bh_new_guarded(amd_psp_run, s,
                                &DEVICE(pdev)->mem_reentrancy_guard);
    s->fw.rmp = s->rmp;
    s->fw.as = &address_space_memory;
    s->fw.ops = &amd_psp_fw_ops;
    s->fw.opaque = s;
    sev_firmware_reset(&s->fw);
    s->vmstate_change = qemu_add_vm_change_state_handler(
        amd_psp_vm_state_change, s);
    amd_psp = s;
}

static void amd_psp_exit(PCIDevice *pdev)
{
    AmdPspState *s = AMD_PSP(pdev);

    qemu_del_vm_change_state_handler(s->vmstate_change);
    qemu_bh_delete(s->bh);
    amd_psp = NULL;
    msi_uninit(pdev);
    msix_uninit_exclusive_bar(pdev);
}

static void amd_psp_reset(DeviceState *dev)
{
    AmdPspState *s = AMD_PSP(dev);

    qemu_bh_cancel(s->bh);
    s->inten = 0;
    s->intsts = 0;
    s->cmdresp = 0;
    s->cmdresp_ioc = false;
    s->cmdbuf_lo = 0;
    s->cmdbuf_hi = 0;
    s->busy = false;
    bitmap_zero(s->reported, 256);
    sev_firmware_reset(&s->fw);
}

static int amd_psp_post_load(void *opaque, int version_id)
{
    AmdPspState *s = opaque;

    /* a command still busy runs when the VM does: vm_state_change */
    if (s->fw.n_iommu > SEV_FW_MAX_IOMMU_RANGES ||
        s->fw.sev_state > SEV_STATE_WORKING ||
        s->fw.snp_state > SEV_STATE_INIT) {
        return -EINVAL;
    }
    return 0;
}

static const VMStateDescription vmstate_snp_rmp_range = {
    .name = "amd-psp/range",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT64(start, SnpRmpRange),
        VMSTATE_UINT64(size, SnpRmpRange),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription vmstate_amd_psp = {
    .name = TYPE_AMD_PSP,
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = amd_psp_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, AmdPspState),
        VMSTATE_MSIX(parent_obj, AmdPspState),
        VMSTATE_UINT32(inten, AmdPspState),
        VMSTATE_UINT32(intsts, AmdPspState),
        VMSTATE_UINT32(cmdresp, AmdPspState),
        VMSTATE_BOOL(cmdresp_ioc, AmdPspState),
        VMSTATE_UINT32(cmdbuf_lo, AmdPspState),
        VMSTATE_UINT32(cmdbuf_hi, AmdPspState),
        VMSTATE_BOOL(busy, AmdPspState),
        VMSTATE_UINT8(fw.sev_state, AmdPspState),
        VMSTATE_BOOL(fw.sev_es, AmdPspState),
        VMSTATE_UINT8(fw.snp_state, AmdPspState),
        VMSTATE_BOOL(fw.rmp_initialized, AmdPspState),
        VMSTATE_UINT32(fw.guest_count, AmdPspState),
        VMSTATE_UINT32(fw.n_iommu, AmdPspState),
        VMSTATE_STRUCT_ARRAY(fw.iommu, AmdPspState, SEV_FW_MAX_IOMMU_RANGES,
                             1, vmstate_snp_rmp_range, SnpRmpRange),
        VMSTATE_END_OF_LIST()
    }
};

static const Property amd_psp_properties[] = {
    DEFINE_PROP_LINK("rmp", AmdPspState, rmp, TYPE_SNP_RMP, SnpRmp *),
};

static void amd_psp_class_init(ObjectClass *oc, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(oc);

    k->realize = amd_psp_realize;
    k->exit = amd_psp_exit;
    k->vendor_id = PCI_VENDOR_ID_AMD;
    k->device_id = PCI_DEVICE_ID_AMD_PSP_GENOA;
    k->revision = 0;
    k->class_id = PCI_CLASS_CRYPT_OTHER;
    dc->desc = "AMD Secure Processor (PSP) with the SEV firmware mailbox";
    dc->vmsd = &vmstate_amd_psp;
    device_class_set_legacy_reset(dc, amd_psp_reset);
    device_class_set_props(dc, amd_psp_properties);
    /* part of the platform, as the RMP it serves */
    dc->hotpluggable = false;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
}

static const TypeInfo amd_psp_info = {
    .name = TYPE_AMD_PSP,
    .parent = TYPE_PCI_DEVICE,
    .instance_size = sizeof(AmdPspState),
    .class_init = amd_psp_class_init,
    .interfaces = (const InterfaceInfo[]) {
        { INTERFACE_CONVENTIONAL_PCI_DEVICE },
        { },
    },
};

static void amd_psp_register_types(void)
{
    type_register_static(&amd_psp_info);
}

type_init(amd_psp_register_types)
