#!/usr/bin/python3
"""An independent reference model of the AMD IOMMU (host translation, v1
page tables) and of the SNP RMP checks of DESIGN.md section 2.

Written from the AMD I/O Virtualization Technology (IOMMU) Specification
(AMD pub 48882, rev 3.x; sections cited as "spec 2.2.3" etc.) and from
Linux's drivers/iommu/amd/ (amd_iommu_types.h, iommu.c, io_pgtable.c,
init.c) and drivers/iommu/generic_pt/fmt/amdv1.h, which encode what the
spec says in code: DTE and PTE bit positions, command encodings, event
decoding.  It does not derive from QEMU's hw/i386/amd_iommu.c.

Where the public documents are silent the model makes a *named choice*
(the CHOICES table below).  A choice is either strict (one outcome) or,
where the spec leaves it open, lenient (a set of outcomes): the comparator
accepts every outcome in the set.

Nondeterminism that the spec allows (what the IOTLB, the PDE cache and the
DTE cache hold before an invalidation) is modelled as sets of allowed
outcomes.  The runner resolves it by observing the device: it tells the
model which allowed outcome happened and the model follows it.

SPDX-License-Identifier: GPL-2.0-or-later
"""

M64 = (1 << 64) - 1
K4 = 0x1000
M2 = 0x200000

# ---------------------------------------------------------------------------
# Encodings (Linux drivers/iommu/amd/amd_iommu_types.h; spec 3.4 MMIO)
# ---------------------------------------------------------------------------
MMIO_DEVTAB = 0x0000        # spec 3.4.1 Device Table Base Address
MMIO_CMDBUF = 0x0008        # spec 3.4.2 Command Buffer Base Address
MMIO_EVTLOG = 0x0010        # spec 3.4.3 Event Log Base Address
MMIO_CONTROL = 0x0018       # spec 3.4.4 IOMMU Control
MMIO_EFR = 0x0030           # Extended Feature Register
MMIO_CMD_HEAD = 0x2000
MMIO_CMD_TAIL = 0x2008
MMIO_EVT_HEAD = 0x2010
MMIO_EVT_TAIL = 0x2018
MMIO_STATUS = 0x2020

# CONTROL bits (amd_iommu_types.h CONTROL_*)
CTRL_IOMMU_EN = 1 << 0
CTRL_EVTLOG_EN = 1 << 2
CTRL_EVTINT_EN = 1 << 3
CTRL_COMWAIT_EN = 1 << 4
CTRL_CMDBUF_EN = 1 << 12

# STATUS bits (amd_iommu_types.h MMIO_STATUS_*; spec 3.4.x IOMMU Status:
# bit 4 CmdBufRun)
ST_EVT_OVF = 1 << 0
ST_EVT_INT = 1 << 1
ST_COMWAIT_INT = 1 << 2
ST_EVT_RUN = 1 << 3
ST_CMD_RUN = 1 << 4
ST_W1C = ST_EVT_OVF | ST_EVT_INT | ST_COMWAIT_INT

# Head/tail pointers: bits 18:4 (spec 3.4.x: Command/Event Log Head/Tail
# Pointer; up to 32768 16-byte entries)
PTR_MASK = 0x7fff0
BASE_MASK = 0x000ffffffffff000      # bits 51:12
LEN_SHIFT = 56                      # ComLen / EventLen, bits 59:56

# Event codes (amd_iommu_types.h EVENT_TYPE_*)
EVT_ILL_DEV = 0x1
EVT_IO_FAULT = 0x2
EVT_ILL_CMD = 0x5
EVT_RMP_FAULT = 0xD
EVT_NAMES = {0x1: "ILLEGAL_DEV_TABLE_ENTRY", 0x2: "IO_PAGE_FAULT",
             0x3: "DEV_TAB_HARDWARE_ERROR", 0x4: "PAGE_TAB_HARDWARE_ERROR",
             0x5: "ILLEGAL_COMMAND_ERROR", 0x6: "COMMAND_HARDWARE_ERROR",
             0x7: "IOTLB_INV_TIMEOUT", 0x8: "INVALID_DEVICE_REQUEST",
             0x9: "INVALID_PPR_REQUEST", 0xD: "RMP_PAGE_FAULT",
             0xE: "RMP_HW_ERROR", 0x0: "none"}
# Event flags, DW1[27:16] (spec 2.5.3 IO_PAGE_FAULT Event; Linux
# amd_iommu_types.h EVENT_FLAG_RW/EVENT_FLAG_I and the 2021 report_iommu_fault
# thread for TR=0x100 and PR=0x010: "RW is only valid if ... PR")
EF_GN = 0x001
EF_NX = 0x002
EF_US = 0x004
EF_I = 0x008
EF_PR = 0x010
EF_RW = 0x020
EF_PE = 0x040
EF_RZ = 0x080
EF_TR = 0x100

# Commands (amd_iommu_types.h CMD_*; spec 2.4)
CMD_COMPL_WAIT = 0x1
CMD_INV_DEV_ENTRY = 0x2
CMD_INV_IOMMU_PAGES = 0x3
CMD_INV_IOTLB_PAGES = 0x4
CMD_INV_IRT = 0x5
CMD_INV_ALL = 0x8

# DTE (amd_iommu_types.h DTE_FLAG_*, DEV_ENTRY_MODE_*; spec 2.2.2.2)
DTE_V = 1 << 0
DTE_TV = 1 << 1
DTE_IR = 1 << 61
DTE_IW = 1 << 62
# PTE (amd_iommu_types.h IOMMU_PTE_*; spec 2.2.3)
PTE_PR = 1 << 0
PTE_FC = 1 << 60
PTE_IR = 1 << 61
PTE_IW = 1 << 62
PM_ADDR_MASK = 0x000ffffffffff000

# EFR bits
EFR_IA = 1 << 6             # INVALIDATE_IOMMU_ALL supported
EFR_SNP = 1 << 63

# ---------------------------------------------------------------------------
# Named choices: where the public documents are silent.  'lenient' ones are
# accepted either way by the comparator (a set of outcomes).
# ---------------------------------------------------------------------------
# q35's legacy window: VGA (0xa0000-0xbffff) and the PAM BIOS shadow
# (0xc0000-0xfffff, read-only to DMA while firmware has not opened it)
LEGACY_HOLE_START = 0xa0000
LEGACY_HOLE_END = 0x100000

CHOICES = {
    "LEGACY_HOLE_NOT_RAM":
        "0xa0000-0xfffff is not RAM for a DMA on q35 (VGA window, PAM "
        "BIOS shadow that drops writes): a program that DMAs there is "
        "not compared further (taint).",
    "TV0_BLOCKS":
        "DTE V=1,TV=0: bits 127:2 are not valid, so there is no "
        "translation and no permission: the request is blocked without an "
        "event.  Linux relies on it: amd_iommu_make_clear_dte() builds the "
        "DTE of a blocked (detached) device as V=1 alone, and under SNP "
        "init_device_table_dma() leaves every unused DTE at V=1,TV=0 to "
        "keep their DMA out.",
    "V0_PASSTHROUGH":
        "DTE V=0: the request passes untranslated (spec 2.2.2.2; Linux's "
        "init_device_table_dma sets V=1 to block DMA of unknown devices).",
    "MODE7_ILLEGAL":
        "DTE Mode 7 is reserved (spec 2.2.2.2): ILLEGAL_DEV_TABLE_ENTRY.",
    "PASSTHROUGH_CHECKED_4K":
        "Untranslated DMA under snp=on is RMP-checked at 4K with "
        "io-page-size 4096 (DESIGN R5, docs 'choice').",
    "ONE_EVENT_PER_4K":
        "A DMA is one translation request per 4K IOVA page it touches; a "
        "fault logs one event per such page and loses only that page's "
        "part (docs 'One event per faulting DMA').",
    "FAULTED_READ_DATA_UNSPECIFIED":
        "The bytes a faulted DMA read leaves in the device's buffer are "
        "not specified (PCIe: completion with UR/CA).",
    "LEAF_LOW_ADDR_BITS_IGNORED":
        "Address bits of a leaf below its page size are ignored (Linux "
        "iommu_v1_iova_to_phys masks them).",
    "NL7_RESERVED_SIZES":
        "A NextLevel=7 PTE whose encoded size is below its level's "
        "default size, larger than what its table covers, or whose "
        "address bits 51:12 are all ones is reserved (spec Table 14): "
        "outcome unspecified, the model stops comparing (taint).",
    "LEVEL1_ALWAYS_LEAF":
        "A present level-1 entry is a leaf whatever its NextLevel, 4K "
        "unless NextLevel=7 (Linux generic_pt/fmt/amdv1.h "
        "amdv1pt_load_entry_raw: level 0 entries are always OA entries).",
    "NEXTLEVEL_NOT_LOWER_FAULTS":
        "A PDE whose NextLevel is not lower than its own level faults "
        "(IO_PAGE_FAULT; PR/RZ/PE flags not pinned).",
    "LEVEL_SKIP":
        "A PDE may skip levels (spec 2.2.3); the IOVA bits of skipped "
        "levels must be zero, else IO_PAGE_FAULT (flags not pinned).",
    "IOVA_ABOVE_MODE_FAULTS":
        "An IOVA above what the DTE's Mode covers faults with "
        "IO_PAGE_FAULT, PR=0.",
    "MODE0_PERM_FAULT_FLAGS":
        "A Mode 0 access that the DTE's IR/IW forbid logs IO_PAGE_FAULT "
        "(issue 8 defect 9); PR is not pinned, RW follows the access "
        "when PR=1.",
    "NP_RW_UNPINNED":
        "RW of an IO_PAGE_FAULT is only meaningful when PR=1 (spec 2.5.3): "
        "for not-present faults RW is not compared.  PE is never compared.",
    "ILLDTE_FLAGS":
        "ILLEGAL_DEV_TABLE_ENTRY: I=0, TR=0 compared; RW/PR/RZ/PE not.",
    "EVENT_NEEDS_IOMMU_EN":
        "Events are logged only with IommuEn=1 and EventLogEn=1.",
    "EVTLOG_FULL_AT_N_MINUS_1":
        "The event log holds N-1 entries: an event that would make the "
        "tail equal the head overflows (spec 3.4.x; Linux keeps one slot "
        "free in the command buffer likewise).",
    "OVERFLOW_HALTS_LOGGING":
        "After an overflow the event is dropped, EventOverflow is set and "
        "logging stops until EventLogEn goes 0->1 (Linux "
        "amd_iommu_restart_event_logging).",
    "EVTINT_NEEDS_EN":
        "STATUS.EventLogInt is set when an event is written and "
        "EventIntEn=1.",
    "BASE_WRITE_POINTERS":
        "Writing a log/buffer base register leaves head/tail unchanged or "
        "resets both to 0 (lenient; Linux writes them explicitly after the "
        "base, iommu_enable_event_buffer).",
    "LEN_RESERVED":
        "ComLen/EventLen below 8 (256 entries) are reserved; a head/tail "
        "beyond the buffer is undefined: the model stops comparing "
        "(taint) when such a buffer is used.",
    "CMDBUF_NEEDS_IOMMU_EN":
        "Commands are processed only with CmdBufEn=1 and IommuEn=1.",
    "NO_SPECULATIVE_FILL":
        "Caches (DTE, PDE, IOTLB) are filled only by the walks of DMAs; "
        "an INVALIDATE_DEVTAB_ENTRY may re-read the DTE at once.",
    "CACHES_KEPT_ON_DISABLE":
        "Disabling the IOMMU does not flush its caches.",
    "INV_PAGES_GN_NOOP":
        "INVALIDATE_IOMMU_PAGES with GN=1 invalidates guest (PASID) "
        "translations only: no effect on host translations.",
    "RMP_REASON_ORDER":
        "Page-size mismatch is reported before ownership; among the "
        "ownership reasons of a bound device any failing one may be "
        "reported (lenient).",
    "RMP_BOUND_SHARED_OK":
        "A bound device may touch hypervisor-owned pages (docs 'choice').",
    "RMP_UPDATE_IMMUTABLE":
        "snp-rmp-update over an immutable entry: error or success "
        "(lenient).",
    "RMP_2M_OVER_ASSIGNED_2M":
        "snp-rmp-update 2m assigned=true over a region that is already an "
        "assigned 2M entry: error (overlap) or success (lenient).",
    "RMP_NON_RAM_UNCHECKED":
        "DMA to addresses that are not RAM is not RMP-checked; the model "
        "does not predict what such DMA does (taint).",
    "INTERRUPT_RANGE":
        "IOVAs in 0xfee00000-0xfeefffff are interrupt requests (spec "
        "2.2.5): not modelled (taint).",
    "QMP_BIND_RESULT":
        "snp-iommu-bind-device / unbind: success or error accepted; the "
        "binding follows the device's answer.",
}


class Taint(Exception):
    """The model cannot predict the outcome (a named choice says so)."""


def lowest_zero_bit(v, start):
    b = start
    while (v >> b) & 1:
        b += 1
    return b


class Event:
    """An event-log entry the model expects: q0, q1 and don't-care masks."""

    def __init__(self, code, devid, flags, addr, flags_dc=0, domid=0):
        self.code = code
        self.q0 = (devid & 0xffff) | ((domid & 0xffff) << 32) | \
            ((flags & 0xfff) << 48) | (code << 60)
        self.q1 = addr & M64
        self.q0_dc = (flags_dc & 0xfff) << 48
        self.flags = flags
        self.flags_dc = flags_dc

    def matches(self, q0, q1):
        return (q0 & ~self.q0_dc) == (self.q0 & ~self.q0_dc) and \
            q1 == self.q1

    def same_but_flags(self, q0, q1):
        m = ~(0xfff << 48) & M64
        return (q0 & m) == (self.q0 & m) and q1 == self.q1

    def name(self):
        return EVT_NAMES.get(self.code, hex(self.code))

    def __repr__(self):
        return "%s(q0=%#018x q1=%#018x flags=%#05x dontcare=%#05x)" % (
            self.name(), self.q0, self.q1, self.flags, self.flags_dc)


class Outcome:
    """One allowed outcome of one 4K translation request of a DMA."""

    def __init__(self, kind, spa=None, io_size=None, event=None,
                 rmp=None, path=(), leaf=None, dte=None, why="", tags=()):
        self.tags = set(tags)
        self.kind = kind            # 'ok', 'fault', 'blocked' (no event)
        self.spa = spa
        self.io_size = io_size
        self.event = event          # Event or None
        self.rmp = rmp              # dict of the SNP_RMP_FAULT or None
        self.path = path            # ((key, pte), ...) walked PDEs
        self.leaf = leaf            # tlb entry to cache, or None
        self.dte = dte
        self.why = why

    def __repr__(self):
        s = self.kind
        if self.spa is not None:
            s += " spa=%#x" % self.spa
        if self.io_size:
            s += " io_size=%#x" % self.io_size
        if self.event:
            s += " event=%r" % (self.event,)
        if self.rmp:
            s += " rmp=%r" % (self.rmp,)
        if self.why:
            s += " (%s)" % self.why
        return s


class RmpEntry:
    __slots__ = ("assigned", "asid", "gpa", "validated", "immutable")

    def __init__(self, assigned=False, asid=0, gpa=0, validated=False,
                 immutable=False):
        self.assigned = assigned
        self.asid = asid
        self.gpa = gpa
        self.validated = validated
        self.immutable = immutable

    def copy(self):
        return RmpEntry(self.assigned, self.asid, self.gpa, self.validated,
                        self.immutable)


class Model:
    def __init__(self, ram_size, snp, devid, npcache=True, efr=0,
                 device_name="edu0"):
        self.ram_size = ram_size
        self.snp = snp
        self.devid = devid
        self.device_name = device_name
        self.npcache = npcache
        self.efr = efr
        self.mem = {}               # page number -> bytearray(4096)
        self.watch = set()          # pages the comparator should check
        # registers
        self.devtab = 0
        self.cmdbuf = 0
        self.evtlog = 0
        self.control = 0
        self.cmd_head = 0
        self.cmd_tail = 0
        self.evt_head = 0
        self.evt_tail = 0
        self.status = 0
        self.evt_halted = False
        # caches (sets of what may be visible, see NO_SPECULATIVE_FILL)
        self.dte_seen = set()       # DTEs of self.devid possibly cached
        self.pde = {}               # (domid, level, iova>>shift) -> {pte}
        self.tlb = []               # [domid, base, size, kind, spa, ir, iw]
        # RMP (DESIGN section 3): per 4K page, and the 2M regions
        self.rmp = {}
        self.rmp2m = set()
        self.bound_asid = None
        # edu's DMA buffer (None: unknown byte)
        self.edu_buf = [0] * 4096
        self.tainted = None

    # -- memory -----------------------------------------------------------
    def is_ram(self, addr, size=1):
        # LEGACY_HOLE_NOT_RAM
        if addr < LEGACY_HOLE_END and addr + size > LEGACY_HOLE_START:
            return False
        return addr >= 0 and addr + size <= self.ram_size

    def read(self, addr, size):
        out = bytearray()
        while size > 0:
            pg, off = addr >> 12, addr & 0xfff
            n = min(size, K4 - off)
            p = self.mem.get(pg)
            out += p[off:off + n] if p else bytes(n)
            addr += n
            size -= n
        return bytes(out)

    def write(self, addr, data):
        i = 0
        while i < len(data):
            pg, off = (addr + i) >> 12, (addr + i) & 0xfff
            n = min(len(data) - i, K4 - off)
            p = self.mem.get(pg)
            if p is None:
                p = self.mem[pg] = bytearray(K4)
            p[off:off + n] = data[i:i + n]
            self.watch.add(pg)
            i += n

    def readq(self, addr):
        return int.from_bytes(self.read(addr, 8), "little")

    def writeq(self, addr, val):
        self.write(addr, (val & M64).to_bytes(8, "little"))

    def taint(self, why):
        if not self.tainted:
            self.tainted = why
        raise Taint(why)

    # -- DTE ----------------------------------------------------------------
    def dte_addr(self):
        return (self.devtab & BASE_MASK) + self.devid * 32

    def current_dte(self):
        a = self.dte_addr()
        if not self.is_ram(a, 32):
            self.taint("device table outside RAM")
        return (self.readq(a), self.readq(a + 8))

    def dte_candidates(self):
        cur = self.current_dte()
        return [cur] + [d for d in self.dte_seen if d != cur]

    # -- event log (spec 2.5, 3.4.3) ------------------------------------------
    def evtlog_entries(self):
        ln = (self.evtlog >> LEN_SHIFT) & 0xf
        return 1 << ln if ln >= 8 else 0

    def evtlog_active(self):
        # EVENT_NEEDS_IOMMU_EN, OVERFLOW_HALTS_LOGGING
        return (self.control & CTRL_IOMMU_EN) and \
            (self.control & CTRL_EVTLOG_EN) and not self.evt_halted

    def log_event_position(self):
        """Where the next event goes: offset, or None (dropped/overflow)."""
        if not self.evtlog_active():
            return None
        n = self.evtlog_entries()
        if n == 0:
            self.taint("event log length reserved (LEN_RESERVED)")
        size = n * 16
        if self.evt_head >= size or self.evt_tail >= size:
            self.taint("event log head/tail beyond the log (LEN_RESERVED)")
        if (self.evt_tail + 16) % size == self.evt_head:
            return "overflow"
        return self.evt_tail

    def commit_event(self, entry_bytes):
        """Log an event (the device's actual bytes, already matched)."""
        pos = self.log_event_position()
        if pos is None:
            return
        if pos == "overflow":
            self.status |= ST_EVT_OVF
            self.evt_halted = True
            return
        base = self.evtlog & BASE_MASK
        if not self.is_ram(base + pos, 16):
            self.taint("event log outside RAM")
        self.write(base + pos, entry_bytes)
        size = self.evtlog_entries() * 16
        self.evt_tail = (self.evt_tail + 16) % size
        if self.control & CTRL_EVTINT_EN:       # EVTINT_NEEDS_EN
            self.status |= ST_EVT_INT

    def status_value(self):
        v = self.status & ST_W1C
        if self.evtlog_active():
            v |= ST_EVT_RUN
        if (self.control & CTRL_IOMMU_EN) and (self.control & CTRL_CMDBUF_EN):
            v |= ST_CMD_RUN
        return v

    # -- MMIO writes -----------------------------------------------------------
    def mmio_write(self, reg, val):
        """Returns nothing; command processing happens on tail/control."""
        val &= M64
        if reg == MMIO_DEVTAB:
            self.devtab = val
        elif reg == MMIO_CMDBUF:
            self.cmdbuf = val               # BASE_WRITE_POINTERS
        elif reg == MMIO_EVTLOG:
            self.evtlog = val
        elif reg == MMIO_CONTROL:
            old = self.control
            self.control = val
            if (val & CTRL_EVTLOG_EN) and not (old & CTRL_EVTLOG_EN):
                self.evt_halted = False     # OVERFLOW_HALTS_LOGGING
            self.run_commands()
        elif reg == MMIO_CMD_HEAD:
            self.cmd_head = val & PTR_MASK
        elif reg == MMIO_CMD_TAIL:
            self.cmd_tail = val & PTR_MASK
            self.run_commands()
        elif reg == MMIO_EVT_HEAD:
            self.evt_head = val & PTR_MASK
        elif reg == MMIO_EVT_TAIL:
            self.evt_tail = val & PTR_MASK
        elif reg == MMIO_STATUS:
            self.status &= ~(val & ST_W1C)

    # -- command buffer (spec 2.4) ------------------------------------------------
    def run_commands(self):
        # CMDBUF_NEEDS_IOMMU_EN
        if not ((self.control & CTRL_CMDBUF_EN) and
                (self.control & CTRL_IOMMU_EN)):
            return
        if self.cmd_head == self.cmd_tail:
            return
        ln = (self.cmdbuf >> LEN_SHIFT) & 0xf
        if ln < 8:
            self.taint("command buffer length reserved (LEN_RESERVED)")
        size = (1 << ln) * 16
        if self.cmd_tail >= size or self.cmd_head >= size:
            self.taint("command head/tail beyond the buffer (LEN_RESERVED)")
        base = self.cmdbuf & BASE_MASK
        while self.cmd_head != self.cmd_tail:
            a = base + self.cmd_head
            if not self.is_ram(a, 16):
                self.taint("command buffer outside RAM")
            self.exec_command(a, self.readq(a), self.readq(a + 8))
            self.cmd_head = (self.cmd_head + 16) % size

    def exec_command(self, addr, q0, q1):
        op = (q0 >> 60) & 0xf
        if op == CMD_COMPL_WAIT:
            # spec 2.4.1; Linux build_completion_wait: DW0 bit0 s, bit1 i,
            # store address bits 51:3 in DW0[31:3] and DW1[19:0], data DW2-3
            store_addr = q0 & 0x000ffffffffffff8
            if q0 & 1:
                if not self.is_ram(store_addr, 8):
                    self.taint("COMPLETION_WAIT store outside RAM")
                self.writeq(store_addr, q1)
            if q0 & 2:
                self.status |= ST_COMWAIT_INT
        elif op == CMD_INV_DEV_ENTRY:
            # spec 2.4.2: DW0[15:0] DeviceID; NO_SPECULATIVE_FILL lets the
            # IOMMU re-read the DTE at once
            if (q0 & 0xffff) == self.devid:
                self.dte_seen = {self.current_dte()}
        elif op == CMD_INV_IOMMU_PAGES:
            # spec 2.4.3; Linux build_inv_iommu_pages/build_inv_address:
            # DW1[15:0] DomainID, DW2 bit0 S, bit1 PDE, bit2 GN, address
            # bits 63:12 in DW2[31:12]/DW3.  S=1: the size is given by the
            # lowest clear address bit at or above 12.
            domid = (q0 >> 32) & 0xffff
            s, pde, gn = q1 & 1, (q1 >> 1) & 1, (q1 >> 2) & 1
            addr = q1 & ~0xfff & M64
            if gn:
                return                  # INV_PAGES_GN_NOOP
            if s:
                b = lowest_zero_bit(addr, 12)
                size = 1 << (b + 1) if b < 63 else 1 << 64
                start = addr & ~(size - 1) & M64
            else:
                size, start = K4, addr
            self.invalidate_pages(domid, start, size, pde)
        elif op == CMD_INV_ALL:
            # spec 2.4.8 INVALIDATE_IOMMU_ALL (EFR IASup)
            self.dte_seen = {self.current_dte()}
            self.pde = {}
            self.tlb = []
        elif op in (CMD_INV_IOTLB_PAGES, CMD_INV_IRT):
            pass        # device IOTLB / interrupt table: nothing modelled
        else:
            self.taint("illegal command opcode %d (ILLEGAL_COMMAND_ERROR "
                       "not modelled)" % op)

    def invalidate_pages(self, domid, start, size, pde):
        end = start + size

        def overlaps(b, s):
            return b < end and start < b + s
        self.tlb = [e for e in self.tlb
                    if not (e[0] == domid and overlaps(e[1], e[2]))]
        if pde:
            for key in list(self.pde):
                d, level, pfx = key
                shift = 12 + 9 * (level - 1)
                if d == domid and overlaps(pfx << shift, 1 << shift):
                    del self.pde[key]
        else:
            # a cached not-present leaf is a PTE too
            for key in list(self.pde):
                d, level, pfx = key
                shift = 12 + 9 * (level - 1)
                if d == domid and overlaps(pfx << shift, 1 << shift):
                    vals = {v for v in self.pde[key] if v & PTE_PR}
                    if vals:
                        self.pde[key] = vals
                    else:
                        del self.pde[key]

    # -- translation (spec 2.2) ----------------------------------------------------
    def translate(self, iova, write):
        """Allowed outcomes, before the RMP check, of one request."""
        if 0xfee00000 <= iova <= 0xfeefffff:
            self.taint("IOVA in the interrupt range (INTERRUPT_RANGE)")
        if not (self.control & CTRL_IOMMU_EN):
            return [Outcome("ok", spa=iova, io_size=None, why="IOMMU off")]
        outs = []
        cands = self.dte_candidates()
        for dte in cands:
            o_dte = self.translate_dte(dte, iova, write)
            if dte != cands[0]:
                for o in o_dte:
                    o.tags.add("stale-dte")
            outs += o_dte
        return outs

    def translate_dte(self, dte, iova, write):
        q0, q1 = dte
        devid = self.devid
        if not (q0 & DTE_V):                    # V0_PASSTHROUGH
            return [Outcome("ok", spa=iova, dte=dte, why="V=0", tags=["V0"])]
        if not (q0 & DTE_TV):                   # TV0_BLOCKS
            return [Outcome("blocked", dte=dte, why="TV=0", tags=["TV0"])]
        mode = (q0 >> 9) & 7
        domid = q1 & 0xffff
        rw = EF_RW if write else 0
        dte_ir, dte_iw = (q0 >> 61) & 1, (q0 >> 62) & 1
        if mode == 7 or (mode == 0 and self.snp):
            # MODE7_ILLEGAL; DESIGN R5 (Mode 0 illegal under SNP); ILLDTE_FLAGS
            ev = Event(EVT_ILL_DEV, devid, rw, iova,
                       flags_dc=EF_RW | EF_PR | EF_RZ | EF_PE)
            return [Outcome("fault", event=ev, dte=dte,
                            why="illegal DTE mode %d" % mode,
                            tags=["mode%d" % mode])]
        if mode == 0:
            # Issue 8 defect 9 / spec: Mode 0 applies the DTE's IR/IW
            if (dte_iw if write else dte_ir):
                return [Outcome("ok", spa=iova, dte=dte, why="Mode 0",
                                tags=["mode0"])]
            ev = Event(EVT_IO_FAULT, devid, EF_PR | rw, iova, domid=domid,
                       flags_dc=EF_PR | EF_RW | EF_PE)   # MODE0_PERM_FAULT_FLAGS
            return [Outcome("fault", event=ev, dte=dte,
                            why="Mode 0 DTE permission", tags=["mode0"])]
        outs = []
        # IOTLB hits: leaf translations cached for this domain
        for e in self.tlb:
            d, base, size, kind, spa, ir, iw = e
            if d != domid or not (base <= iova < base + size):
                continue
            if kind == "np":
                o = self.np_fault(iova, write, domid, dte, "cached np")
                o.tags.add("iotlb")
                outs.append(o)
                continue
            o = self.leaf_outcome(iova, write, domid, dte, spa, size,
                                  ir & dte_ir, iw & dte_iw, (), None, "IOTLB")
            o.tags.add("iotlb")
            outs.append(o)
        # IOVA_ABOVE_MODE_FAULTS
        if mode < 6 and (iova >> (12 + 9 * mode)) != 0:
            outs.append(self.np_fault(iova, write, domid, dte,
                                      "IOVA above mode", pr_dc=True))
            return outs
        root = q0 & PM_ADDR_MASK
        self.walk(outs, dte, domid, iova, write, mode, root, dte_ir, dte_iw,
                  1, 1, (), set())
        return outs

    def np_fault(self, iova, write, domid, dte, why, pr_dc=False):
        # NP_RW_UNPINNED
        ev = Event(EVT_IO_FAULT, self.devid, EF_RW if write else 0, iova,
                   domid=domid,
                   flags_dc=EF_RW | EF_PE | (EF_PR | EF_RZ if pr_dc else 0))
        return Outcome("fault", event=ev, dte=dte, why=why)

    def leaf_outcome(self, iova, write, domid, dte, spa_base, size, ir, iw,
                     path, leaf, why):
        if not (iw if write else ir):
            ev = Event(EVT_IO_FAULT, self.devid,
                       EF_PR | (EF_RW if write else 0), iova, domid=domid,
                       flags_dc=EF_PE)
            return Outcome("fault", event=ev, dte=dte, path=path, leaf=leaf,
                           why="permission (%s)" % why)
        spa = spa_base | (iova & (size - 1))
        return Outcome("ok", spa=spa, io_size=size, dte=dte, path=path,
                       leaf=leaf, why=why)

    def walk(self, outs, dte, domid, iova, write, level, table, dte_ir,
             dte_iw, ir, iw, path, tags):
        n0 = len(outs)
        self.walk1(outs, dte, domid, iova, write, level, table, dte_ir,
                   dte_iw, ir, iw, path, tags)
        for o in outs[n0:]:
            o.tags |= tags

    def walk1(self, outs, dte, domid, iova, write, level, table, dte_ir,
              dte_iw, ir, iw, path, tags):
        shift = 12 + 9 * (level - 1)
        idx = (iova >> shift) & 0x1ff
        a = table + idx * 8
        if not self.is_ram(a, 8):
            self.taint("page table outside RAM")
        key = (domid, level, iova >> shift)
        vals = [self.readq(a)]
        for v in self.pde.get(key, ()):
            if v not in vals:
                vals.append(v)
        for v in vals:
            p = path + ((key, v),)
            tg = set(tags)
            if v != vals[0]:
                tg.add("stale-pde")
            n0 = len(outs)
            if not (v & PTE_PR):
                o = self.np_fault(iova, write, domid, dte,
                                  "not present at level %d" % level)
                o.path = p
                if self.npcache:
                    o.leaf = None
                self._app(outs, tg, o)
                continue
            nl = (v >> 9) & 7
            if level == 1 and nl != 7:
                nl = 0                          # LEVEL1_ALWAYS_LEAF
            vir = ir & ((v >> 61) & 1)
            viw = iw & ((v >> 62) & 1)
            if nl in (0, 7):
                default = 1 << shift
                if nl == 0:
                    size = default
                else:
                    # spec Table 14; Linux PTE_PAGE_SIZE
                    if (v & PM_ADDR_MASK) == PM_ADDR_MASK:
                        self.taint("NextLevel=7 with address bits all ones "
                                   "(NL7_RESERVED_SIZES)")
                    b = lowest_zero_bit(v | 0xfff, 12)
                    size = 1 << (b + 1)
                    if size < default or size > (1 << (shift + 9)):
                        self.taint("NextLevel=7 size %#x at level %d "
                                   "(NL7_RESERVED_SIZES)" % (size, level))
                # LEAF_LOW_ADDR_BITS_IGNORED
                spa_base = v & PM_ADDR_MASK & ~(size - 1)
                base = iova & ~(size - 1)
                leaf = [domid, base, size, "map", spa_base, vir, viw]
                if nl == 7:
                    tg.add("nl7")
                self._app(outs, tg, self.leaf_outcome(
                    iova, write, domid, dte, spa_base, size,
                    vir & dte_ir, viw & dte_iw, p, leaf,
                    "walk L%d NL%d" % (level, nl)))
                continue
            if nl >= level:                     # NEXTLEVEL_NOT_LOWER_FAULTS
                o = self.np_fault(iova, write, domid, dte,
                                  "NextLevel %d at level %d" % (nl, level),
                                  pr_dc=True)
                o.path = p
                self._app(outs, tg, o)
                continue
            if nl < level - 1:                  # LEVEL_SKIP
                lo = 12 + 9 * nl
                hi = shift
                if (iova >> lo) & ((1 << (hi - lo)) - 1):
                    o = self.np_fault(iova, write, domid, dte,
                                      "skipped level bits set", pr_dc=True)
                    o.path = p
                    self._app(outs, tg, o)
                    continue
            if nl < level - 1:
                tg.add("skip")
            self.walk(outs, dte, domid, iova, write, nl, v & PM_ADDR_MASK,
                      dte_ir, dte_iw, vir, viw, p, tg)

    @staticmethod
    def _app(outs, tags, o):
        o.tags |= tags
        outs.append(o)

    # -- RMP (DESIGN sections 2 and 3) ----------------------------------------------
    def rmp_entry(self, spa):
        return self.rmp.get(spa >> 12) or RmpEntry()

    def rmp_check(self, iova, spa, io_size, write):
        """None if allowed, else a dict describing the SNP_RMP_FAULT."""
        if not self.snp:
            return None
        if not self.is_ram(spa):
            self.taint("DMA to non-RAM SPA %#x (RMP_NON_RAM_UNCHECKED)" % spa)
        untranslated = io_size is None
        s = K4 if untranslated else io_size     # PASSTHROUGH_CHECKED_4K
        g = M2 if s >= M2 else K4               # R1
        region_2m = (spa >> 21) in self.rmp2m
        rmp_ps = "2m" if region_2m else "4k"
        reasons = None
        if (g == M2) != region_2m:              # R2
            reasons = {"page-size-mismatch"}
        else:
            e = self.rmp_entry(spa & ~(g - 1))
            if e.assigned:                      # R3
                if self.bound_asid is None:
                    reasons = {"assigned"}
                else:                           # R4, RMP_REASON_ORDER
                    r = set()
                    if e.asid != self.bound_asid:
                        r.add("asid-mismatch")
                    if e.gpa != (iova & ~(g - 1)):
                        r.add("gpa-mismatch")
                    if not e.validated:
                        r.add("not-validated")
                    if r:
                        reasons = r | {"assigned"}
        if reasons is None:
            return None
        return {"device": self.device_name, "devid": self.devid,
                "iova": iova, "spa": spa, "io-page-size": s,
                "check-size": "2m" if g == M2 else "4k",
                "rmp-page-size": rmp_ps, "reasons": reasons,
                "write": bool(write)}

    def rmp_outcomes(self, outs, iova, write):
        """Apply the RMP check to each 'ok' outcome (DESIGN R1-R6)."""
        res = []
        for o in outs:
            if o.kind != "ok":
                res.append(o)
                continue
            if not self.is_ram(o.spa):
                self.taint("DMA to non-RAM SPA %#x" % o.spa)
            f = self.rmp_check(iova, o.spa, o.io_size, write)
            if f is None:
                res.append(o)
                continue
            # R6: RMP_PAGE_FAULT, flags_rmp 0, vmg_tag 0, RW for a write
            ev = Event(EVT_RMP_FAULT, self.devid, EF_RW if write else 0,
                       iova)
            res.append(Outcome("fault", spa=o.spa, io_size=o.io_size,
                               event=ev, rmp=f, path=o.path, leaf=o.leaf,
                               dte=o.dte, why="RMP " + "/".join(
                                   sorted(f["reasons"])), tags=o.tags))
        return res

    def request_outcomes(self, iova, write):
        return self.rmp_outcomes(self.translate(iova, write), iova, write)

    def note_walk(self, o):
        """The device used outcome @o: its walk may now be cached."""
        if o.dte is not None:
            self.dte_seen.add(o.dte)
        for key, v in o.path:
            if (v & PTE_PR) and ((v >> 9) & 7) not in (0, 7):
                self.pde.setdefault(key, set()).add(v)
            elif not (v & PTE_PR) and self.npcache:
                self.pde.setdefault(key, set()).add(v)
        if o.leaf is not None and o.leaf not in self.tlb:
            self.tlb.append(list(o.leaf))

    # -- RMP operations (DESIGN section 3) ----------------------------------------
    def rmp_update(self, spa, psize, assigned, asid=0, gpa=0,
                   validated=False, immutable=False):
        """'ok', 'error' or 'either' (lenient; the runner follows QEMU)."""
        size = M2 if psize == "2m" else K4
        if spa & (size - 1) or spa < 0 or spa + size > self.ram_size \
                or spa > M64:
            return "error"
        region = spa >> 21
        lenient = False
        if psize == "4k":
            if region in self.rmp2m:
                return "error"          # psmash first
            if self.rmp_entry(spa).immutable:
                lenient = True          # RMP_UPDATE_IMMUTABLE
        else:
            first = spa >> 12
            ents = [self.rmp.get(first + i) for i in range(512)]
            if any(e is not None and e.immutable for e in ents):
                lenient = True
            if assigned and any(e is not None and e.assigned for e in ents):
                if region in self.rmp2m:
                    lenient = True      # RMP_2M_OVER_ASSIGNED_2M
                else:
                    return "error"      # overlap
        return "either" if lenient else "ok"

    def rmp_apply_update(self, spa, psize, assigned, asid=0, gpa=0,
                         validated=False, immutable=False):
        if psize == "4k":
            self.rmp[spa >> 12] = RmpEntry(assigned, asid, gpa, validated,
                                           immutable)
            return
        first = spa >> 12
        for i in range(512):
            # DESIGN 3: "sets all 512 entries (GPA increments by 4K)", the
            # hypervisor's reclaim (assigned=false) included
            self.rmp[first + i] = RmpEntry(assigned, asid, gpa + i * K4,
                                           validated, immutable)
        self.rmp2m.add(spa >> 21)

    def rmp_psmash(self, spa):
        if spa & (M2 - 1) or spa < 0 or spa + M2 > self.ram_size:
            return "error"
        if (spa >> 21) not in self.rmp2m:
            return "error"
        return "ok"

    def rmp_apply_psmash(self, spa):
        self.rmp2m.discard(spa >> 21)

    def rmp_query(self, spa, count):
        """What query-snp-rmp should return (DESIGN section 3)."""
        out = []
        for i in range(count):
            a = spa + i * K4
            e = self.rmp_entry(a)
            out.append({"spa": a,
                        "page-size": "2m" if (a >> 21) in self.rmp2m
                        else "4k",
                        "assigned": e.assigned, "asid": e.asid,
                        "gpa": e.gpa, "validated": e.validated,
                        "immutable": e.immutable})
        return out
