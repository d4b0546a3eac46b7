/*
 * The SEV firmware of the emulated AMD Secure Processor (PSP)
 *
 * The commands of AMD's SEV and SEV-SNP firmware ABI that a host kernel
 * issues while its PSP driver (ccp) and KVM load, with their effects on
 * the platform state and on the RMP.  The mailbox (registers, interrupt)
 * is the device's (hw/i386/amd-psp.c); what the firmware must know of the
 * CPUs and the IOMMU comes through SevFirmwareOps, so that this file knows
 * nothing of either.
 *
 * Keys, certificates and measurements are deterministic stand-ins: the
 * emulated PSP is for debugging host software, it protects nothing.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_SEV_FIRMWARE_H
#define HW_I386_SEV_FIRMWARE_H

#include "system/memory.h"
#include "hw/i386/snp-rmp-table.h"

/*
 * Command IDs (Linux include/linux/psp-sev.h, enum sev_cmd; AMD's SEV
 * API 55766 and SEV-SNP firmware ABI 56860)
 */
#define SEV_CMD_INIT                    0x01
#define SEV_CMD_SHUTDOWN                0x02
#define SEV_CMD_PLATFORM_STATUS         0x04
#define SEV_CMD_DF_FLUSH                0x0a
#define SEV_CMD_INIT_EX                 0x0d
#define SEV_CMD_SNP_INIT                0x81
#define SEV_CMD_SNP_SHUTDOWN            0x82
#define SEV_CMD_SNP_PLATFORM_STATUS     0x83
#define SEV_CMD_SNP_DF_FLUSH            0x84
#define SEV_CMD_SNP_INIT_EX             0x85
#define SEV_CMD_SNP_SHUTDOWN_EX         0x86
#define SEV_CMD_SNP_PAGE_RECLAIM        0xc7
#define SEV_CMD_SNP_FEATURE_INFO        0xce

/* Status codes (Linux include/uapi/linux/psp-sev.h, enum sev_ret_code) */
#define SEV_RET_SUCCESS                 0x00
#define SEV_RET_INVALID_PLATFORM_STATE  0x01
#define SEV_RET_INVALID_CONFIG          0x03
#define SEV_RET_INVALID_LEN             0x04
#define SEV_RET_INVALID_ADDRESS         0x09
#define SEV_RET_INVALID_COMMAND         0x11
#define SEV_RET_INVALID_PARAM           0x16
#define SEV_RET_INVALID_PAGE_SIZE       0x19
#define SEV_RET_INVALID_PAGE_STATE      0x1a
#define SEV_RET_RMP_INIT_REQUIRED       0x20

/* Platform states (PLATFORM_STATUS byte 2; SNP_PLATFORM_STATUS byte 2) */
#define SEV_STATE_UNINIT                0
#define SEV_STATE_INIT                  1
#define SEV_STATE_WORKING               2

/*
 * The firmware version it reports: API 1.55, build 25, as AMD's
 * published Genoa SEV firmware (github.com/amd/AMD-ASPFW, README).
 * Linux 6.12 and 7.x need API 1.51 for SNP, 1.52 for SNP_INIT_EX.
 */
#define SEV_FW_API_MAJOR                1
#define SEV_FW_API_MINOR                55
#define SEV_FW_BUILD                    25

#define SEV_FW_MAX_IOMMU_RANGES         8

typedef struct SnpRmp SnpRmp;

typedef struct SevFirmwareOps {
    /*
     * SNP_INIT's checks of the processors: on every CPU SYSCFG has
     * MemEncryptionModEn, SNPEn, VMPLEn and MFDM and is the same, HWCR
     * has SMMLOCK, RMP_BASE and RMP_END are the same, and (when the RMP
     * is initialised) VM_HSAVE_PA is 0.  Fills the RMP's place.
     */
    bool (*cpus_ready)(void *opaque, bool init_rmp, uint64_t *rmp_base,
                       uint64_t *rmp_end);
    /* Has every CPU SNPEn set?  (SEV INIT refuses then, before SNP_INIT) */
    bool (*cpus_snp_enabled)(void *opaque);
    /*
     * The IOMMUs' enabled event and PPR logs and completion-wait pages,
     * which SNP_INIT makes the IOMMU's firmware pages.  Returns how many
     * ranges it put in @ranges (at most @max).
     */
    unsigned (*iommu_buffers)(void *opaque, SnpRmpRange *ranges,
                              unsigned max);
    /* The RMP changed: no CPU may keep a translation that it forbids */
    void (*rmp_changed)(void *opaque);
} SevFirmwareOps;

typedef struct SevFirmware {
    /* set by the owner */
    SnpRmp *rmp;                /* NULL: SNP commands fail */
    AddressSpace *as;           /* the PSP's view of system memory */
    const SevFirmwareOps *ops;
    void *opaque;

    /* state (migrated by the owner) */
    uint8_t sev_state;          /* SEV_STATE_* */
    bool sev_es;                /* INIT with SEV-ES: the TMR is set */
    uint8_t snp_state;          /* SEV_STATE_UNINIT or SEV_STATE_INIT */
    bool rmp_initialized;
    uint32_t guest_count;
    uint32_t n_iommu;           /* the IOMMU's firmware ranges */
    SnpRmpRange iommu[SEV_FW_MAX_IOMMU_RANGES];
} SevFirmware;

/* Power-on state: everything uninitialised */
void sev_firmware_reset(SevFirmware *fw);

/*
 * Run command @cmd with its command buffer at @buf (0 for the commands
 * that take none): the status for the mailbox.  Never fails otherwise.
 * SEV_RET_INVALID_COMMAND means exactly "not implemented": no command
 * that is returns it.
 */
uint16_t sev_firmware_command(SevFirmware *fw, uint8_t cmd, uint64_t buf);

/* The command's name in Linux's enum sev_cmd (NULL if it has none here) */
const char *sev_firmware_command_name(uint8_t cmd);

#endif
