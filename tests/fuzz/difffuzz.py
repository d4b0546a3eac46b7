#!/usr/bin/python3
"""Differential fuzzer: random programs run on the fork's amd-iommu (over
qtest + QMP) and on the independent model (amdvi_model.py); results are
compared after every operation.

  difffuzz.py --qemu build/qemu/qemu-system-x86_64 --seed S --programs N
              [--time SECONDS] [--snp on|off|both] [--avoid A,B,...]
              [--known tests/fuzz/known-divergences.txt]

The last line is always ``fuzz: N executions, M crashes, K mismatches``
(K: mismatches that known-divergences.txt does not explain).  Exit status
is non-zero on a crash, a hang or an unexplained mismatch.  SIGINT or
SIGTERM ends it the same way, without the program that ran at that moment.

SPDX-License-Identifier: GPL-2.0-or-later
"""

import argparse
import fnmatch
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import amdvi_model as am                                    # noqa: E402
from amdvi_model import Model, Taint, K4, M2                # noqa: E402
import qtest                                                # noqa: E402

# ---------------------------------------------------------------------------
# The emulated machine and where the harness puts things (all RAM, >= 1M)
# ---------------------------------------------------------------------------
RAM_SIZE = 2 << 30
IOMMU_BASE = 0xfed80000
EDU_DEVFN = 0x20                # 00:04.0
EDU_DEVID = EDU_DEVFN
EDU_BAR = 0xe0000000
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_CNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_BUF = 0x40000               # tests/include/edu-regs.h
EDU_BUF_SIZE = 4096

DEVTAB = 0x100000
CMDBUF = 0x101000
EVT_AREA = 0x102000             # 0x102000-0x105fff
COMPLETION = 0x106000
MSI_ADDR = 0x106800
PATTERN = 0x107000
PT_POOL = 0x110000
PT_POOL_END = 0x200000
SMALL_DATA = 0x200000           # 4K/64K/1M pages
REGIONS_2M = [0x400000, 0x600000, 0x800000, 0xa00000]
GIG = 0x40000000

AVOIDABLE = {
    "cmdbuf-tail-oob": "COMMAND_TAIL at or beyond the buffer (defect 11)",
    "cmdbuf-len0": "command buffer length field < 8 (defect 11)",
    "evtlog-len0": "event log length field < 8 (defect 12)",
    "evtlog-ptr-oob": "event log head/tail beyond the log",
    "nl7-allones": "NextLevel=7 with address bits all ones (defect 13)",
    "nl7-reserved": "NextLevel=7 with reserved sizes",
    "edu-oob": "edu DMA outside its buffer (defect 14)",
    "rmp-spa-wrap": "snp-rmp-update/psmash with SPA near 2^64 (defect 1)",
    "readonly": "read-only / write-only mappings (defects 4, 7)",
    "mode0": "DTE Mode 0 (defect 9)",
    "dte-v0": "DTE V=0 / TV=0 after translation (defect 5)",
    "hostile-pte": "random PTE values",
    "level-skip": "PDEs that skip levels",
    "evt-overflow": "event log nearly full (overflow)",
}
CRASH_AVOID_DEFAULT = []


def event_diff(ev, dev_entry):
    """Which fields of a device's event entry differ from @ev."""
    q0, q1 = dev_entry
    d = []
    if (q0 ^ ev.q0) & 0xffff:
        d.append("devid(%#x)" % (q0 & 0xffff))
    if (q0 ^ ev.q0) & 0xf0000:
        d.append("dw0hi(%#x)" % ((q0 >> 16) & 0xf))
    if (q0 ^ ev.q0) & (0xffff << 32):
        d.append("domid(%#x)" % ((q0 >> 32) & 0xffff))
    if ((q0 ^ ev.q0) & ~ev.q0_dc) & (0xfff << 48):
        d.append("flags(%#05x)" % ((q0 >> 48) & 0xfff))
    if q1 != ev.q1:
        d.append("addr(%#x)" % q1)
    return "+".join(d) or "same?"


class Mismatch(Exception):
    def __init__(self, category, detail):
        super().__init__(category)
        self.category = category
        self.detail = detail


class Crash(Exception):
    def __init__(self, category, detail):
        super().__init__(category)
        self.category = category
        self.detail = detail


# ---------------------------------------------------------------------------
# Ops: tuples, replayable on a fresh machine
# ---------------------------------------------------------------------------
def fmt_op(op):
    k = op[0]
    if k == "mmio":
        names = {0: "DEVTAB", 8: "CMDBUF", 0x10: "EVTLOG", 0x18: "CONTROL",
                 0x2000: "CMD_HEAD", 0x2008: "CMD_TAIL", 0x2010: "EVT_HEAD",
                 0x2018: "EVT_TAIL", 0x2020: "STATUS"}
        return "mmio %s <- %#x" % (names.get(op[1], hex(op[1])), op[2])
    if k == "memq":
        return "memq [%#x] <- %#018x%s" % (op[1], op[2],
                                           " (%s)" % op[3] if op[3] else "")
    if k == "fillq":
        return "fillq [%#x] x%d <- %#018x%s" % (op[1], op[2], op[3],
                                                " (%s)" % op[4] if op[4] else "")
    if k == "mem":
        return "mem [%#x] <- %d bytes" % (op[1], len(op[2]))
    if k == "cmd":
        return "cmd " + ", ".join("%s(%#018x,%#018x)" % (
            {1: "COMPLETION_WAIT", 2: "INV_DEVTAB_ENTRY",
             3: "INV_IOMMU_PAGES", 8: "INV_ALL", 4: "INV_IOTLB_PAGES",
             5: "INV_IRT"}.get(q0 >> 60, "op%d" % (q0 >> 60)), q0, q1)
            for q0, q1 in op[1])
    if k == "dma":
        return "dma %s iova=%#x len=%#x bufoff=%#x" % (
            "write(buf->RAM)" if op[4] else "read(RAM->buf)", op[1], op[2],
            op[3])
    if k == "rmp_update":
        return "snp-rmp-update spa=%#x %s assigned=%s asid=%d gpa=%#x " \
            "validated=%s immutable=%s" % op[1:]
    if k == "psmash":
        return "snp-rmp-psmash spa=%#x" % op[1]
    if k == "bind":
        return "snp-iommu-bind-device edu0 asid=%d" % op[1]
    if k == "unbind":
        return "snp-iommu-unbind-device edu0"
    if k == "edu_raw":
        return "edu raw src=%#x dst=%#x cnt=%#x cmd=%#x" % op[1:]
    return repr(op)


# ---------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------
class Generator:
    def __init__(self, rng, snp, avoid):
        self.r = rng
        self.snp = snp
        self.avoid = set(avoid)
        self.pt_next = PT_POOL
        self.shadow = {}            # addr -> qword the generator wrote
        self.ops = []
        self.maps = []              # (iova, size) the generator mapped
        self.mode = 3
        self.root = None
        self.domid = 1
        self.cmd_len = 8
        self.evt_len = 8

    def emit(self, op):
        self.ops.append(op)

    def memq(self, addr, val, why=""):
        self.shadow[addr] = val
        self.emit(("memq", addr, val, why))

    def alloc(self):
        if self.pt_next >= PT_POOL_END:
            return PT_POOL + self.r.randrange(0, PT_POOL_END - PT_POOL, K4)
        p = self.pt_next
        self.pt_next += K4
        return p

    def cmd(self, *cmds):
        self.emit(("cmd", list(cmds)))

    def perms(self):
        if "readonly" in self.avoid or self.r.random() < 0.75:
            return am.PTE_IR | am.PTE_IW
        return self.r.choice([am.PTE_IR, am.PTE_IW, 0])

    def dte(self, v=1, tv=1, mode=None, root=None, ir=1, iw=1, domid=None):
        mode = self.mode if mode is None else mode
        root = self.root if root is None else root
        domid = self.domid if domid is None else domid
        q0 = v | tv << 1 | mode << 9 | root | ir << 61 | iw << 62
        self.memq(DEVTAB + EDU_DEVID * 32 + 8, domid, "DTE[1] domid")
        self.memq(DEVTAB + EDU_DEVID * 32, q0, "DTE[0]")

    def table_of(self, pte_addr, level):
        """The next-level table under the PDE at @pte_addr (created)."""
        v = self.shadow.get(pte_addr, 0)
        if v & 1 and ((v >> 9) & 7) == level - 1 and level - 1 >= 1:
            return v & am.PM_ADDR_MASK
        t = self.alloc()
        self.emit(("fillq", t, 512, 0, "new table"))
        for i in range(512):
            self.shadow.pop(t + 8 * i, None)
        self.memq(pte_addr, t | (level - 1) << 9 | 1 | am.PTE_IR | am.PTE_IW,
                  "PDE L%d" % level)
        return t

    def map(self, iova, spa, size, perms, skip=False):
        skip = skip and "level-skip" not in self.avoid
        """Map @size at @iova: NextLevel=0 for 4K/2M/1G, NextLevel=7
        runs otherwise (as Linux's iommu_v1_map_pages writes them)."""
        if size >= GIG:
            leaf_level = 3
        elif size >= M2:
            leaf_level = 2
        else:
            leaf_level = 1
        if leaf_level > self.mode:
            return
        level, table = self.mode, self.root
        while level > leaf_level:
            a = table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8
            if skip and level == 3 and leaf_level == 1 and \
                    ((iova >> 21) & 0x1ff) == 0 and self.r.random() < 0.5:
                t = self.alloc()
                self.emit(("fillq", t, 512, 0, "new table"))
                self.memq(a, t | 1 << 9 | 1 | am.PTE_IR | am.PTE_IW,
                          "PDE L3 skipping to L1")
                table, level = t, 1
                break
            table = self.table_of(a, level)
            level -= 1
        lsize = 1 << (12 + 9 * (leaf_level - 1))
        idx = (iova >> (12 + 9 * (leaf_level - 1))) & 0x1ff
        if size == lsize:
            self.memq(table + idx * 8, spa | 1 | perms, "leaf %#x" % size)
        else:
            n = size // lsize
            v = ((spa | (size - 1)) & ~(size >> 1) & am.PM_ADDR_MASK) | \
                7 << 9 | 1 | perms
            idx &= ~(n - 1)
            self.emit(("fillq", table + idx * 8, n, v, "NL7 %#x" % size))
            for i in range(n):
                self.shadow[table + (idx + i) * 8] = v
        self.maps.append((iova, size))

    def rand_iova_base(self, size):
        lim = 1 << min(12 + 9 * self.mode, 40)
        r = self.r.random()
        if r < 0.6:
            base = self.r.randrange(0, 64) * size
        else:
            base = self.r.randrange(0, max(lim // size, 1)) * size
        return base % lim

    def rand_spa(self, size):
        r = self.r
        if size >= GIG:
            return GIG
        if size >= M2:
            c = [a for a in REGIONS_2M if a % size == 0]
            return r.choice(c)
        if r.random() < 0.5:
            return SMALL_DATA + r.randrange(0, M2 // size) * size
        reg = r.choice(REGIONS_2M)
        return reg + r.randrange(0, M2 // size) * size

    def rand_size(self):
        return self.r.choice([K4, K4, K4, 0x2000, 0x10000, 0x100000, M2, M2,
                              0x400000, GIG])

    # -- the program ------------------------------------------------------
    def setup(self):
        r = self.r
        self.emit(("mem", PATTERN, bytes(r.randrange(256)
                                          for _ in range(K4))))
        # fill edu's buffer while the IOMMU is off (untranslated)
        self.emit(("dma", PATTERN, K4, 0, False))
        self.emit(("fillq", DEVTAB, 512, 0, "device table"))
        self.emit(("mmio", am.MMIO_DEVTAB, DEVTAB))
        self.emit(("mmio", am.MMIO_CMDBUF, CMDBUF | 8 << 56))
        self.emit(("mmio", am.MMIO_EVTLOG, EVT_AREA | 8 << 56))
        self.emit(("mmio", am.MMIO_CMD_HEAD, 0))
        self.emit(("mmio", am.MMIO_CMD_TAIL, 0))
        self.emit(("mmio", am.MMIO_EVT_HEAD, 0))
        self.emit(("mmio", am.MMIO_EVT_TAIL, 0))
        self.mode = r.choice([3, 3, 3, 4, 2, 5, 6])
        self.domid = r.choice([1, 1, 2, 0xffff, 0x1234])
        self.root = self.alloc()
        self.emit(("fillq", self.root, 512, 0, "root table"))
        self.dte()
        self.emit(("mmio", am.MMIO_CONTROL,
                   am.CTRL_IOMMU_EN | am.CTRL_EVTLOG_EN | am.CTRL_EVTINT_EN |
                   am.CTRL_CMDBUF_EN | am.CTRL_COMWAIT_EN))
        self.cmd((2 << 60 | EDU_DEVID, 0))
        for _ in range(r.randrange(1, 5)):
            size = self.rand_size()
            self.map(self.rand_iova_base(size), self.rand_spa(size), size,
                     self.perms(), skip=True)

    def dma_iova(self):
        r = self.r
        if self.maps and r.random() < 0.85:
            iova, size = r.choice(self.maps)
            x = r.random()
            if x < 0.5:
                off = r.randrange(0, min(size, 0x10000))
            elif x < 0.8:
                off = r.randrange(0, size)
            else:
                off = size - r.randrange(1, 0x200)   # crosses the end
            return iova + off
        return r.randrange(0, 1 << 32) if r.random() < 0.7 else \
            r.randrange(0, 1 << 48)

    def op_dma(self):
        r = self.r
        iova = self.dma_iova()
        x = r.random()
        if x < 0.4:
            cnt = r.randrange(1, 65)
        elif x < 0.8:
            cnt = r.randrange(1, EDU_BUF_SIZE + 1)
        elif x < 0.95:
            cnt = EDU_BUF_SIZE
        else:
            cnt = 0
        if 0xfee00000 <= iova + cnt and iova <= 0xfeefffff:
            iova = 0x10000
        off = r.randrange(0, EDU_BUF_SIZE - cnt + 1)
        write = r.random() < 0.5
        self.emit(("dma", iova, cnt, off, write))
        if not write and r.random() < 0.5:
            self.emit(("dma", self.dma_iova(), cnt, off, True))

    def op_map(self):
        size = self.rand_size()
        self.map(self.rand_iova_base(size), self.rand_spa(size), size,
                 self.perms(), skip=True)

    def op_unmap(self):
        if not self.maps:
            return
        iova, size = self.r.choice(self.maps)
        # clear the leaf(s): find through the shadow
        level, table = self.mode, self.root
        while level >= 1:
            a = table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8
            v = self.shadow.get(a, 0)
            if not v & 1:
                return
            nl = (v >> 9) & 7
            if nl in (0, 7) or level == 1:
                if nl == 7:
                    lsize = 1 << (12 + 9 * (level - 1))
                    n = max(size // lsize, 1)
                    a0 = a & ~(n * 8 - 1)
                    self.emit(("fillq", a0, n, 0, "unmap NL7"))
                    for i in range(n):
                        self.shadow[a0 + 8 * i] = 0
                else:
                    self.memq(a, 0, "unmap")
                return
            if nl >= level:
                return
            table, level = v & am.PM_ADDR_MASK, nl

    def op_hostile_pte(self):
        r = self.r
        addrs = [a for a in self.shadow if PT_POOL <= a < PT_POOL_END]
        if not addrs:
            return
        a = r.choice(addrs)
        nl = r.choice([0, 0, 7, 7, 1, 2, 3, 4, 5, 6])
        addr = r.choice([self.rand_spa(K4), self.rand_spa(M2),
                         PT_POOL + r.randrange(0, PT_POOL_END - PT_POOL, K4),
                         r.randrange(0, 1 << 31) & ~0xfff])
        if nl == 7:
            if "nl7-allones" not in self.avoid and r.random() < 0.1:
                addr = am.PM_ADDR_MASK
            else:
                bits = r.randrange(0, 20)
                addr = (addr & ~((1 << (13 + bits)) - 1)) | \
                    ((1 << (12 + bits)) - 1) & ~0xfff
        v = (addr & am.PM_ADDR_MASK) | nl << 9 | r.choice([1, 1, 1, 0]) | \
            self.perms()
        if nl == 7 and "nl7-reserved" in self.avoid:
            return
        self.memq(a, v, "hostile PTE")

    def op_dte(self):
        r = self.r
        x = r.random()
        ir, iw = 1, 1
        if "readonly" not in self.avoid and r.random() < 0.2:
            ir, iw = r.randrange(2), r.randrange(2)
        if x < 0.3:
            self.dte(ir=ir, iw=iw)
        elif x < 0.45 and "dte-v0" not in self.avoid:
            self.dte(v=r.randrange(2), tv=r.randrange(2), ir=ir, iw=iw)
        elif x < 0.6 and "mode0" not in self.avoid:
            self.dte(mode=r.choice([0, 7]), ir=ir, iw=iw)
        elif x < 0.8:
            self.domid = r.choice([1, 2, 0xffff])
            self.dte(ir=ir, iw=iw)
        else:
            # a fresh, empty address space
            self.root = self.alloc()
            self.emit(("fillq", self.root, 512, 0, "new root"))
            self.maps = []
            self.dte(ir=ir, iw=iw)
        if r.random() < 0.8:
            self.cmd((2 << 60 | EDU_DEVID, 0))

    def op_inval(self):
        r = self.r
        c = []
        for _ in range(r.randrange(1, 4)):
            x = r.random()
            dom = self.domid if r.random() < 0.85 else r.choice([1, 2, 3])
            if x < 0.35:
                c.append((3 << 60 | dom << 32,
                          0x7ffffffffffff000 | 1 | r.randrange(2) << 1))
            elif x < 0.55 and self.maps:
                iova, size = r.choice(self.maps)
                a = iova + r.randrange(0, size, K4)
                c.append((3 << 60 | dom << 32, a | r.randrange(2) << 1))
            elif x < 0.65 and self.maps:
                iova, size = r.choice(self.maps)
                n = r.randrange(12, 31)
                a = (iova & ~((1 << (n + 1)) - 1)) | ((1 << n) - 1)
                c.append((3 << 60 | dom << 32,
                          (a & ~0xfff) | 1 | r.randrange(2) << 1))
            elif x < 0.8:
                c.append((2 << 60 | r.choice([EDU_DEVID, EDU_DEVID, 0x21]), 0))
            elif x < 0.9:
                c.append((8 << 60, 0))
            else:
                c.append((1 << 60 | COMPLETION | 1 |
                          (2 if r.random() < 0.3 else 0),
                          r.randrange(1 << 64)))
        self.cmd(*c)

    def op_evtlog(self):
        r = self.r
        x = r.random()
        if x < 0.3:
            ln = r.choice([8, 9]) if "evtlog-len0" in self.avoid or \
                r.random() < 0.95 else r.choice([0, 1, 7])
            base = r.choice([EVT_AREA, EVT_AREA + 0x2000])
            en = r.random() < 0.5
            self.emit(("mmio", am.MMIO_CONTROL, self.ctrl_without_evt()))
            self.emit(("mmio", am.MMIO_EVTLOG, base | ln << 56))
            if r.random() < 0.9:
                self.emit(("mmio", am.MMIO_EVT_HEAD, 0))
                self.emit(("mmio", am.MMIO_EVT_TAIL, 0))
            if en or r.random() < 0.8:
                self.emit(("mmio", am.MMIO_CONTROL, self.ctrl))
        elif x < 0.6 and "evt-overflow" not in self.avoid:
            # head just past the tail: the log is (nearly) full
            self.emit(("evt_head_rel", r.randrange(1, 4) * 16))
        else:
            self.emit(("evt_head_catchup",))

    def ctrl_without_evt(self):
        return self.ctrl & ~am.CTRL_EVTLOG_EN

    def op_control(self):
        r = self.r
        bits = [am.CTRL_IOMMU_EN, am.CTRL_EVTLOG_EN, am.CTRL_EVTINT_EN,
                am.CTRL_COMWAIT_EN, am.CTRL_CMDBUF_EN]
        v = self.ctrl
        for b in bits:
            if r.random() < 0.2:
                v ^= b
        self.ctrl = v
        self.emit(("mmio", am.MMIO_CONTROL, v))
        if r.random() < 0.5:
            # back to normal afterwards
            self.ctrl = FULL_CTRL
            self.emit(("mmio", am.MMIO_CONTROL, FULL_CTRL))

    def op_status(self):
        self.emit(("mmio", am.MMIO_STATUS, self.r.choice([1, 2, 4, 7])))

    def op_rmp(self):
        r = self.r
        reg = r.choice(REGIONS_2M + [GIG, GIG + M2 * r.randrange(1, 8)])
        x = r.random()
        asid = r.choice([1, 1, 2])
        if x < 0.3:
            assigned = r.random() < 0.6
            gpa = r.choice([0, reg, reg + (64 << 30)] +
                           [io for io, s in self.maps if s >= M2])
            if assigned:
                self.emit(("rmp_update", reg, "2m", True, asid, gpa & ~(M2 - 1),
                           r.random() < 0.7, r.random() < 0.05))
            else:
                self.emit(("rmp_update", reg, "2m", False, 0, 0, False,
                           False))
        elif x < 0.5:
            self.emit(("psmash", reg))
        elif x < 0.85:
            spa = reg + r.randrange(0, 512) * K4
            if self.maps and r.random() < 0.5:
                spa = reg + r.randrange(0, 4) * K4
            assigned = r.random() < 0.6
            gpa = r.choice([spa, 0] + [io for io, s in self.maps])
            if assigned:
                self.emit(("rmp_update", spa, "4k", True, asid,
                           gpa & ~0xfff, r.random() < 0.7, False))
            else:
                self.emit(("rmp_update", spa, "4k", False, 0, 0, False,
                           False))
        else:
            # hostile SPAs: unaligned, beyond RAM
            spa = r.choice([reg + 0x1000, RAM_SIZE, RAM_SIZE + M2,
                            1 << 40, reg + 0x10])
            if "rmp-spa-wrap" not in self.avoid and r.random() < 0.3:
                spa = 0xFFFFFFFFFFE00000
            if r.random() < 0.5:
                self.emit(("psmash", spa))
            else:
                self.emit(("rmp_update", spa, r.choice(["2m", "4k"]), False,
                           0, 0, False, False))

    def op_bind(self):
        if self.r.random() < 0.7:
            self.emit(("bind", self.r.choice([1, 1, 2])))
        else:
            self.emit(("unbind",))

    def op_edu_hostile(self):
        r = self.r
        if "edu-oob" in self.avoid:
            return
        self.emit(("edu_raw", EDU_BUF + r.randrange(0, 0x2000),
                   PATTERN, r.randrange(0, 0x3000), 1))

    def op_cmd_hostile(self):
        r = self.r
        if "cmdbuf-len0" not in self.avoid and r.random() < 0.3:
            self.emit(("mmio", am.MMIO_CMDBUF, CMDBUF | r.choice([0, 3]) << 56))
            self.emit(("mmio", am.MMIO_CMD_TAIL, r.randrange(0, 0x100, 16)))
        elif "cmdbuf-tail-oob" not in self.avoid:
            self.emit(("mmio", am.MMIO_CMD_TAIL,
                       r.choice([0x1000, 0x1010, 0x7fff0])))

    def program(self, n_ops):
        self.ctrl = FULL_CTRL
        self.setup()
        setup_len = len(self.ops)
        r = self.r
        table = [(self.op_dma, 30), (self.op_map, 10), (self.op_unmap, 5),
                 (self.op_inval, 10), (self.op_dte, 6), (self.op_evtlog, 4),
                 (self.op_control, 3), (self.op_status, 2),
                 (self.op_rmp, 10 if self.snp else 3), (self.op_bind, 2),
                 (self.op_hostile_pte, 0 if "hostile-pte" in self.avoid
                  else 4),
                 (self.op_edu_hostile, 0.3), (self.op_cmd_hostile, 0.3)]
        total = sum(w for _, w in table)
        while len(self.ops) - setup_len < n_ops:
            x = r.random() * total
            for f, w in table:
                x -= w
                if x < 0:
                    f()
                    break
        return self.ops[:setup_len], self.ops[setup_len:]


FULL_CTRL = am.CTRL_IOMMU_EN | am.CTRL_EVTLOG_EN | am.CTRL_EVTINT_EN | \
    am.CTRL_CMDBUF_EN | am.CTRL_COMWAIT_EN


# ---------------------------------------------------------------------------
# Runner + comparator
# ---------------------------------------------------------------------------
class Runner:
    def __init__(self, qemu_bin, snp, timeout, tolerate=()):
        self.tolerate = tolerate
        self.tolerated_seen = set()
        self.pending_tolerated = set()
        self.qemu_bin = qemu_bin
        self.snp = snp
        self.timeout = timeout

    def start(self):
        args = ["-M", "q35", "-m", "2G", "-object", "snp-rmp,id=rmp0",
                "-device", "amd-iommu,dma-remap=on%s" %
                (",snp=on,rmp-fault-event-rate=0" if self.snp else ""),
                "-device", "edu,id=edu0,addr=04.0,dma_mask=%d" % (2**64 - 1)]
        # DIFFFUZZ_QEMU_ARGS: extra arguments when debugging one program
        # (for example "-trace amdvi_*")
        args += os.environ.get("DIFFFUZZ_QEMU_ARGS", "").split()
        q = self.q = qtest.QEMU(self.qemu_bin, args, timeout=self.timeout)
        # edu: BAR0, memory + bus master
        q.pci_writel(EDU_DEVFN, 0x10, EDU_BAR)
        q.pci_writew(EDU_DEVFN, 0x04, 0x6)
        # the IOMMU's PCI function: capability header (NpCache), MSI
        npcache = True
        for slot in range(32):
            devfn = slot << 3
            idv = q.pci_readl(devfn, 0)
            if idv == 0x14191022:
                ptr = q.pci_readl(devfn, 0x34) & 0xff
                while ptr:
                    hdr = q.pci_readl(devfn, ptr)
                    cid = hdr & 0xff
                    if cid == 0x0f:
                        npcache = bool(hdr & (1 << 26))
                    elif cid == 0x05:
                        q.pci_writel(devfn, ptr + 4, MSI_ADDR)
                        q.pci_writel(devfn, ptr + 8, 0)
                        q.pci_writew(devfn, ptr + 12, 0x4a5b)
                        fl = q.pci_readw(devfn, ptr + 2)
                        q.pci_writew(devfn, ptr + 2, fl | 1)
                    ptr = (hdr >> 8) & 0xff
                break
        efr = q.readq(IOMMU_BASE + am.MMIO_EFR)
        self.m = Model(RAM_SIZE, self.snp, EDU_DEVID, npcache=npcache,
                       efr=efr)
        self.hcmd_tail = 0
        self.hcmd_len = 8
        self.compare_ok = True
        if self.snp and not (efr & am.EFR_SNP):
            raise Mismatch("efr-snpsup", "snp=on but EFR=%#x lacks SNPSup "
                           "(DESIGN R7)" % efr)

    # -- helpers -----------------------------------------------------------
    def mm(self, fn, *a):
        """Run a model step unless tainted; a Taint stops the comparison."""
        if not self.compare_ok:
            return None
        try:
            return fn(*a)
        except Taint:
            self.compare_ok = False
            return None

    def dev_regs(self):
        q = self.q
        return (q.readq(IOMMU_BASE + am.MMIO_STATUS),
                q.readq(IOMMU_BASE + am.MMIO_EVT_TAIL),
                q.readq(IOMMU_BASE + am.MMIO_CMD_HEAD))

    def check_regs(self, where):
        st, tail, head = self.dev_regs()
        if not self.compare_ok:
            return
        m = self.m
        if (st & am.ST_W1C) != (m.status & am.ST_W1C):
            raise Mismatch("status:%#x->%#x" % (m.status & am.ST_W1C,
                                                st & am.ST_W1C),
                           "%s: STATUS %#x, model expects W1C bits %#x" %
                           (where, st, m.status & am.ST_W1C))
        run = am.ST_EVT_RUN | am.ST_CMD_RUN
        if (st & run) != (m.status_value() & run):
            raise Mismatch("status-run:%#x->%#x" % (m.status_value() & run,
                                                    st & run),
                           "%s: STATUS %#x, model expects run bits %#x" %
                           (where, st, m.status_value() & run))
        if tail != m.evt_tail:
            raise Mismatch("evt-tail", "%s: EVENT_TAIL %#x, model %#x" %
                           (where, tail, m.evt_tail))
        if head != m.cmd_head:
            raise Mismatch("cmd-head", "%s: COMMAND_HEAD %#x, model %#x" %
                           (where, head, m.cmd_head))

    # -- ops ------------------------------------------------------------------
    def run_op(self, op):
        k = op[0]
        q, m = self.q, self.m
        if k == "mmio":
            reg, val = op[1], op[2]
            if reg == am.MMIO_CMDBUF:
                self.hcmd_len = (val >> 56) & 0xf
            if reg == am.MMIO_CMD_TAIL:
                self.hcmd_tail = val & am.PTR_MASK
            q.writeq(IOMMU_BASE + reg, val)
            self.mm(m.mmio_write, reg, val)
            if reg in (am.MMIO_EVTLOG, am.MMIO_CMDBUF) and self.compare_ok:
                # BASE_WRITE_POINTERS (lenient): the pointers stay, or
                # both become 0
                hr, tr = (am.MMIO_EVT_HEAD, am.MMIO_EVT_TAIL) \
                    if reg == am.MMIO_EVTLOG else \
                    (am.MMIO_CMD_HEAD, am.MMIO_CMD_TAIL)
                h = q.readq(IOMMU_BASE + hr)
                t = q.readq(IOMMU_BASE + tr)
                if h == 0 and t == 0:
                    if reg == am.MMIO_EVTLOG:
                        m.evt_head = m.evt_tail = 0
                    else:
                        m.cmd_head = m.cmd_tail = 0
                        self.hcmd_tail = 0
            self.check_regs(fmt_op(op))
            if reg in (am.MMIO_CONTROL, am.MMIO_CMD_TAIL):
                self.check_completion()
        elif k == "memq":
            q.writeq(op[1], op[2])
            self.mm(m.writeq, op[1], op[2])
        elif k == "fillq":
            data = (op[3] & am.M64).to_bytes(8, "little") * op[2]
            q.memwrite(op[1], data)
            self.mm(m.write, op[1], data)
        elif k == "mem":
            q.memwrite(op[1], op[2])
            self.mm(m.write, op[1], op[2])
        elif k == "cmd":
            ln = self.hcmd_len if self.hcmd_len >= 8 else 8
            size = (1 << ln) * 16
            t = self.hcmd_tail % size
            for q0, q1 in op[1]:
                q.writeq(CMDBUF + t, q0)
                q.writeq(CMDBUF + t + 8, q1)
                self.mm(m.writeq, CMDBUF + t, q0)
                self.mm(m.writeq, CMDBUF + t + 8, q1)
                t = (t + 16) % size
            self.run_op(("mmio", am.MMIO_CMD_TAIL, t))
        elif k == "evt_head_rel":
            if not self.compare_ok:
                return
            n = m.evtlog_entries() * 16 or 4096
            self.run_op(("mmio", am.MMIO_EVT_HEAD, (m.evt_tail + op[1]) % n))
        elif k == "evt_head_catchup":
            if not self.compare_ok:
                return
            self.run_op(("mmio", am.MMIO_EVT_HEAD, m.evt_tail))
        elif k == "dma":
            self.dma(op[1], op[2], op[3], op[4])
        elif k == "edu_raw":
            self.edu_start(op[1], op[2], op[3], op[4])
            self.compare_ok = False
        elif k in ("rmp_update", "psmash"):
            self.rmp_op(op)
        elif k in ("bind", "unbind"):
            try:
                if k == "bind":
                    q.qmp("snp-iommu-bind-device", device="edu0", asid=op[1])
                else:
                    q.qmp("snp-iommu-unbind-device", device="edu0")
                ok = True
            except qtest.QMPError:
                ok = False
            if ok:                                  # QMP_BIND_RESULT
                m.bound_asid = op[1] if k == "bind" else None
        else:
            raise ValueError(op)

    def check_completion(self):
        if not self.compare_ok:
            return
        got = self.q.readq(COMPLETION)
        exp = self.m.readq(COMPLETION)
        if got != exp:
            raise Mismatch("completion-store",
                           "COMPLETION_WAIT store: device %#x, model %#x" %
                           (got, exp))

    def edu_start(self, src, dst, cnt, cmd):
        q = self.q
        q.writeq(EDU_BAR + EDU_DMA_SRC, src)
        q.writeq(EDU_BAR + EDU_DMA_DST, dst)
        q.writeq(EDU_BAR + EDU_DMA_CNT, cnt)
        q.writeq(EDU_BAR + EDU_DMA_CMD, cmd)
        q.clock_step(100 * 1000 * 1000 + 1)
        busy = q.readq(EDU_BAR + EDU_DMA_CMD) & 1
        if busy:
            raise Crash("edu-busy", "edu DMA did not complete")

    def rmp_op(self, op):
        q, m = self.q, self.m
        if op[0] == "rmp_update":
            spa, ps, assigned, asid, gpa, val, imm = op[1:]
            args = {"spa": spa, "page-size": ps, "assigned": assigned}
            if assigned:
                args.update({"asid": asid, "gpa": gpa, "validated": val,
                             "immutable": imm})
            exp = self.mm(m.rmp_update, spa, ps, assigned, asid, gpa, val,
                          imm)
            name = "snp-rmp-update"
        else:
            spa = op[1]
            args = {"spa": spa}
            exp = self.mm(m.rmp_psmash, spa)
            name = "snp-rmp-psmash"
        try:
            q.qmp(name, **args)
            got = "ok"
        except qtest.QMPError as e:
            got = "error"
            err = e.err
        if exp is None:
            return
        if exp != "either" and exp != got:
            raise Mismatch("qmp:%s:%s->%s" % (name, exp, got),
                           "%s: model %s, QEMU %s%s" % (
                               fmt_op(op), exp, got,
                               (" (%s)" % err.get("desc")) if got == "error"
                               else ""))
        if got == "ok":
            if op[0] == "rmp_update":
                m.rmp_apply_update(spa, ps, assigned,
                                   asid if assigned else 0,
                                   gpa if assigned else 0,
                                   val if assigned else False,
                                   imm if assigned else False)
            else:
                m.rmp_apply_psmash(spa)
        # compare the whole 2M region
        if spa & 0xfff or spa + M2 > RAM_SIZE:
            return
        base = spa & ~(M2 - 1)
        res = q.qmp("query-snp-rmp", spa=base, count=512)
        exp_q = m.rmp_query(base, 512)
        for a, b in zip(res, exp_q):
            if a != b:
                raise Mismatch("rmp-state", "%s: query-snp-rmp %r, model %r"
                               % (fmt_op(op), a, b))

    # -- DMA ------------------------------------------------------------------
    def dma(self, iova, cnt, off, write):
        q, m = self.q, self.m
        if write:
            self.edu_start(EDU_BUF + off, iova, cnt, 3)
        else:
            self.edu_start(iova, EDU_BUF + off, cnt, 1)
        events = q.take_events("SNP_RMP_FAULT") if self.snp else []
        if not self.compare_ok:
            self.dev_regs()
            return
        try:
            self.dma_compare(iova, cnt, off, write, events)
        except Taint:
            self.compare_ok = False
            return
        self.check_regs("after DMA")

    def dma_compare(self, iova, cnt, off, write, qevents):
        q, m = self.q, self.m
        # the device's event log as it is now
        dev_tail = q.readq(IOMMU_BASE + am.MMIO_EVT_TAIL)
        n = m.evtlog_entries()
        base = m.evtlog & am.BASE_MASK
        log = None
        if n and m.is_ram(base, n * 16):
            log = q.memread(base, n * 16)
        tail0 = m.evt_tail
        written = set()
        if log is not None and n:
            p = tail0
            guard = 0
            while p != (dev_tail & am.PTR_MASK) and guard < n:
                written.add(p)
                p = (p + 16) % (n * 16)
                guard += 1
        # An event that finds the log full only sets EventOverflow: the
        # device's STATUS tells whether some chunk of this DMA logged one.
        dev_ovf = bool(q.readq(IOMMU_BASE + am.MMIO_STATUS) & am.ST_EVT_OVF)
        qi = 0
        memcache = {}

        def devmem(a, ln):
            key = (a, ln)
            if key not in memcache:
                memcache[key] = q.memread(a, ln)
            return memcache[key]

        pos_chunks = []
        a, left, boff = iova, cnt, off
        while left > 0:
            ln = min(left, K4 - (a & 0xfff))
            pos_chunks.append((a, ln, boff))
            a += ln
            boff += ln
            left -= ln
        for (ca, ln, boff) in pos_chunks:
            outs = m.request_outcomes(ca & am.M64, write)
            pos = m.log_event_position()
            dev_entry = None
            if isinstance(pos, int) and log is not None and pos in written:
                e = log[pos:pos + 16]
                dev_entry = (int.from_bytes(e[:8], "little"),
                             int.from_bytes(e[8:], "little"))
            dev_q = qevents[qi] if qi < len(qevents) else None
            dev_q_mine = dev_q is not None and \
                dev_q["data"].get("iova") == ca
            dev_evt_mine = dev_entry is not None and dev_entry[1] == ca and \
                (dev_entry[0] >> 60) in (1, 2, 0xD)
            good = []
            self.pending_tolerated = set()
            for o in outs:
                if not self.consistent(o, pos, dev_entry, dev_evt_mine,
                                       dev_q, dev_q_mine, write, ln, boff,
                                       devmem):
                    continue
                if pos == "overflow" and o.event is not None and \
                        not dev_ovf:
                    continue
                good.append(o)
            # Several outcomes may agree with what can be observed (no
            # event is visible while logging is off, or at an overflow).
            # Follow the one with evidence: a write whose new bytes are in
            # memory at its SPA happened.  Else, if EventOverflow got set,
            # an outcome that logs here (the overflow may also be a later
            # chunk's; at most one chunk overflows, logging stops after
            # it: OVERFLOW_HALTS_LOGGING).
            def rank(g):
                if g.kind == "ok" and write and \
                        self.write_seen(g.spa, ln, boff, devmem):
                    return 0
                if pos == "overflow" and dev_ovf and g.event is not None:
                    return 1
                return 2
            good.sort(key=rank)
            if not good:
                raise self.classify(ca, ln, write, outs, pos, dev_entry,
                                    dev_evt_mine, dev_q, dev_q_mine, devmem,
                                    boff)
            o = good[0]
            for g in good:
                m.note_walk(g)
            self.tolerated_seen |= self.pending_tolerated
            if o.event is not None and pos is not None:
                if pos == "overflow":
                    m.commit_event(None)
                else:
                    m.commit_event(log[pos:pos + 16])
            if o.rmp is not None and dev_q_mine:
                qi += 1
            buf = m.edu_buf
            if o.kind == "ok":
                if write:
                    data = bytearray(devmem(o.spa, ln))
                    m.write(o.spa, bytes(data))
                else:
                    src = m.read(o.spa, ln)
                    for i in range(ln):
                        buf[boff + i] = src[i]
            elif not write:
                for i in range(ln):
                    buf[boff + i] = None        # FAULTED_READ_DATA_UNSPEC.
            if not write and len(good) > 1:
                # several reads possible: keep only what they agree on
                for g in good[1:]:
                    src = m.read(g.spa, ln) if g.kind == "ok" else None
                    for i in range(ln):
                        if src is None or buf[boff + i] != src[i]:
                            buf[boff + i] = None
        if qi < len(qevents):
            raise Mismatch("qmp-event-extra",
                           "DMA %s iova=%#x len=%#x: unexpected %r" %
                           ("write" if write else "read", iova, cnt,
                            qevents[qi]["data"]))

    def write_seen(self, spa, ln, boff, devmem):
        """True if a DMA write of ln bytes of the buffer at boff to spa
        changed memory: a byte the model holds differs from the device's,
        which holds the buffer's byte (or any byte where the buffer's is
        unspecified, after a faulted read)."""
        m = self.m
        got = devmem(spa, ln)
        old = m.read(spa, ln)
        return any(got[i] != old[i] and (b is None or got[i] == b)
                   for i, b in enumerate(m.edu_buf[boff:boff + ln]))

    def consistent(self, o, pos, dev_entry, dev_evt_mine, dev_q, dev_q_mine,
                   write, ln, boff, devmem):
        m = self.m
        # the event log
        if o.event is not None:
            if isinstance(pos, int):
                if dev_entry is None:
                    return False
                if not o.event.matches(*dev_entry):
                    tol = self.tolerated(o.event, dev_entry)
                    if tol is None:
                        return False
                    self.pending_tolerated.add(tol)
        else:
            if dev_evt_mine:
                return False
        # the QMP event
        if o.rmp is not None:
            if not dev_q_mine:
                return False
            d = dev_q["data"]
            exp = dict(o.rmp)
            reasons = exp.pop("reasons")
            for key, v in exp.items():
                if d.get(key) != v:
                    return False
            if d.get("reason") not in reasons:
                return False
        elif dev_q_mine:
            return False
        # memory
        if o.kind == "ok" and write:
            got = devmem(o.spa, ln)
            for i in range(ln):
                b = m.edu_buf[boff + i]
                if b is not None and got[i] != b:
                    return False
        return True

    def tolerated(self, ev, dev_entry):
        """A known-divergence 'tolerate:' line that explains the difference
        between the expected event @ev and the device's entry, or None."""
        diff = event_diff(ev, dev_entry)
        fields = [f.split("(")[0] for f in diff.split("+")]
        names = []
        for f in fields:
            name = "%s:%s" % (ev.name(), f)
            if not any(fnmatch.fnmatchcase(name, pat) and
                       (snp is None or snp == self.snp)
                       for snp, pat, _ in self.tolerate):
                return None
            names.append(name)
        return "tolerated " + "+".join(names) + " " + diff

    def classify(self, ca, ln, write, outs, pos, dev_entry, dev_evt_mine,
                 dev_q, dev_q_mine, devmem, boff):
        m = self.m
        exp = sorted({(o.event.name() if o.event else o.kind) +
                      ("[%s]" % ",".join(sorted(o.tags)) if o.tags else "")
                      for o in outs})
        if dev_entry is not None and not dev_evt_mine:
            code = dev_entry[0] >> 60
            for o in outs:
                if o.event is not None and o.event.code == code:
                    dev_evt_mine = True
                    break
        if dev_evt_mine:
            code = dev_entry[0] >> 60
            obs = am.EVT_NAMES.get(code, hex(code))
            for o in outs:
                if o.event is not None and o.event.code == code and \
                        isinstance(pos, int):
                    obs += "." + event_diff(o.event, dev_entry)
                    break
        elif dev_q_mine:
            obs = "RMP(qmp only)"
        else:
            found = False
            if write:
                for o in outs:
                    if o.kind == "ok" or o.spa is not None:
                        got = devmem(o.spa, ln)
                        if all(b is None or got[i] == b for i, b in
                               enumerate(m.edu_buf[boff:boff + ln])):
                            found = True
            obs = "ok" if found else ("no-event" if not write else "lost")
            if isinstance(pos, int) and dev_entry is not None:
                obs += "+other-event(%s)" % am.EVT_NAMES.get(
                    dev_entry[0] >> 60, "?")
        if dev_q is not None and not dev_q_mine and any(
                o.rmp for o in outs):
            obs += "+qmp-for-other-iova"
        cat = "dma-%s:%s->%s" % ("write" if write else "read",
                                 "|".join(exp), obs)
        lines = ["request iova=%#x len=%#x %s" %
                 (ca, ln, "write" if write else "read"),
                 "model allows:"] + ["  %r" % o for o in outs]
        lines.append("device: event-log entry at model tail %s: %s" % (
            pos, "none" if dev_entry is None else
            "q0=%#018x q1=%#018x (%s flags=%#05x)" % (
                dev_entry[0], dev_entry[1],
                am.EVT_NAMES.get(dev_entry[0] >> 60, "?"),
                (dev_entry[0] >> 48) & 0xfff)))
        lines.append("device: next SNP_RMP_FAULT: %r" %
                     (dev_q["data"] if dev_q else None))
        return Mismatch(cat, "\n".join(lines))

    def final_compare(self):
        if not self.compare_ok:
            return
        m, q = self.m, self.q
        for pg in sorted(m.watch):
            a = pg << 12
            got = q.memread(a, K4)
            exp = m.read(a, K4)
            if got != exp:
                i = next(i for i in range(K4) if got[i] != exp[i])
                raise Mismatch("memory", "page %#x differs at +%#x: device "
                               "%s, model %s" % (a, i, got[i:i + 16].hex(),
                                                 exp[i:i + 16].hex()))

    def run(self, setup, ops):
        """Run a program; returns None, or raises Mismatch/Crash."""
        self.q = None
        cur = (-1, ("start",))
        try:
            self.start()
            for i, op in enumerate(setup + ops):
                cur = (i - len(setup), op)
                self.run_op(op)
            cur = (len(ops), ("final",))
            self.final_compare()
        except (qtest.QEMUHang, qtest.QEMUDied) as e:
            if self.q is None:      # it did not come up
                raise Crash("%s:start" % ("hang" if isinstance(
                    e, qtest.QEMUHang) else "crash"), str(e))
            rc = self.q.exit_status()
            what = "hang" if isinstance(e, qtest.QEMUHang) and rc is None \
                else "crash(rc=%s)" % rc
            c = Crash("%s:%s" % (what, cur[1][0]),
                      "op %d: %s: %s\n%s" % (cur[0], fmt_op(cur[1]), e,
                                             self.q.stderr_text()[-1500:]))
            c.qemu = self.q         # was it a stop that killed it?
            raise c
        except Mismatch as e:
            e.op_index = cur[0]
            e.op = cur[1]
            raise
        finally:
            if self.q is not None:
                self.qtest_ops = self.q.ops
                self.q.close()


# ---------------------------------------------------------------------------
# Known divergences, minimisation, main loop
# ---------------------------------------------------------------------------
def load_known(path):
    known = []
    if not path or not os.path.exists(path):
        return known
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pat, _, reason = line.partition(" ")
            snp = None
            if pat.startswith("snp=on:") or pat.startswith("snp=off:"):
                snp, _, pat = pat.partition(":")
                snp = snp == "snp=on"
            known.append((snp, pat, reason.strip()))
    return known


def split_known(known):
    """'tolerate:EVENT:FIELD' lines mask event fields (the run goes on);
    the others explain a mismatch category (the run stops there)."""
    tol = [(s, p[len("tolerate:"):], r) for s, p, r in known
           if p.startswith("tolerate:")]
    cats = [(s, p, r) for s, p, r in known if not p.startswith("tolerate:")]
    return tol, cats


def explain(known, snp, category):
    for s, pat, reason in known:
        if (s is None or s == snp) and fnmatch.fnmatchcase(category, pat):
            return reason
    return None


TOLERATE = []


def run_once(args, snp, setup, ops, tol_out=None):
    r = Runner(args.qemu, snp, args.timeout, TOLERATE)
    try:
        r.run(setup, ops)
        return None, getattr(r, "qtest_ops", 0)
    except (Mismatch, Crash) as e:
        return e, getattr(r, "qtest_ops", 0)
    finally:
        if tol_out is not None:
            tol_out |= r.tolerated_seen


def minimize(args, snp, setup, ops, category, budget_s):
    """Delta debugging over the random ops, keeping the same category."""
    t0 = time.monotonic()
    cur = list(ops)
    # cut what follows the failing op first
    chunk = max(len(cur) // 2, 1)
    while chunk >= 1 and time.monotonic() - t0 < budget_s:
        i = 0
        changed = False
        while i < len(cur) and time.monotonic() - t0 < budget_s:
            cand = cur[:i] + cur[i + chunk:]
            e, _ = run_once(args, snp, setup, cand)
            if qtest.stopped_by is not None:
                return cur          # stopped: the smallest one so far
            if e is not None and e.category == category:
                cur = cand
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return cur


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--programs", type=int, default=10)
    ap.add_argument("--ops", type=int, default=40)
    ap.add_argument("--time", type=float, default=0)
    ap.add_argument("--snp", choices=["on", "off", "both"], default="both")
    ap.add_argument("--avoid", default="",
                    help="comma-separated: " + ", ".join(sorted(AVOIDABLE)))
    ap.add_argument("--known", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "known-divergences.txt"))
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds a QEMU may take to answer one command")
    ap.add_argument("--minimize", type=float, default=60.0,
                    help="seconds to spend minimising each new category")
    ap.add_argument("--stop-on-first", action="store_true")
    ap.add_argument("--program-index", type=int, default=None,
                    help="run only this program (with --seed)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    avoid = [a for a in args.avoid.split(",") if a]
    for a in avoid:
        if a not in AVOIDABLE:
            ap.error("unknown --avoid %s (known: %s)" %
                     (a, ", ".join(sorted(AVOIDABLE))))
    tol, known = split_known(load_known(args.known))
    TOLERATE[:] = tol
    tolerated = {}
    qtest.stop_on_signals()

    t0 = time.monotonic()
    execs = crashes = unexplained = 0
    qops = 0
    cats = {}           # (snp, category) -> [count, first report, known]
    idxs = [args.program_index] if args.program_index is not None else \
        range(args.programs)
    for idx in idxs:
        if args.time and time.monotonic() - t0 > args.time:
            break
        if qtest.stopped_by is not None:
            break
        snp = {"on": True, "off": False}.get(args.snp, idx % 2 == 1)
        rng = random.Random(args.seed * 1000003 + idx)
        gen = Generator(rng, snp, avoid)
        setup, ops = gen.program(args.ops)
        tseen = set()
        cut = qtest.cut_short
        e, n = run_once(args, snp, setup, ops, tseen)
        if not isinstance(e, Mismatch) and qtest.cut_by_stop(e, cut):
            break               # it did not finish
        for t in tseen:
            k = ("on" if snp else "off", t.split(" ")[1])
            if k not in tolerated:
                tolerated[k] = [0, "seed %d program %d: %s" % (
                    args.seed, idx, t)]
            tolerated[k][0] += 1
        execs += 1
        qops += n
        if e is None:
            if args.verbose:
                print("program %d (snp=%s): ok" % (idx, "on" if snp else
                                                   "off"))
            continue
        is_crash = isinstance(e, Crash)
        key = ("on" if snp else "off", e.category)
        reason = explain(known, snp, e.category)
        if is_crash:
            crashes += 1
        elif reason is None:
            unexplained += 1
        if key in cats:
            cats[key][0] += 1
            continue
        cats[key] = [1, None, reason, is_crash]
        print("=" * 72)
        print("%s: seed %d program %d snp=%s category %s%s" % (
            "CRASH" if is_crash else "MISMATCH", args.seed, idx, key[0],
            e.category, (" [known: %s]" % reason) if reason else ""))
        print(e.detail)
        at = getattr(e, "op_index", None)
        if not is_crash and at is not None:
            print("at op %d: %s" % (at, fmt_op(e.op)))
        if args.minimize > 0 and not reason:
            mini = minimize(args, snp, setup, ops, e.category, args.minimize)
        else:
            mini = ops[:(at + 1) if at is not None and at >= 0 else len(ops)]
        if args.verbose:
            print("setup:")
            for i, op in enumerate(setup):
                print("  s%2d %s" % (i, fmt_op(op)))
        print("program (setup of %d ops omitted; replay with --seed %d "
              "--program-index %d):" % (len(setup), args.seed, idx))
        for i, op in enumerate(mini):
            print("  %3d %s" % (i, fmt_op(op)))
        sys.stdout.flush()
        if args.stop_on_first:
            break
    el = time.monotonic() - t0
    print("=" * 72)
    if qtest.stopped_by is not None:
        print("stopped by signal %d; a program cut short is not counted" %
              qtest.stopped_by)
    if tolerated:
        print("tolerated event differences (snp, programs, what, first):")
        for (snp, what), (cnt, first) in sorted(tolerated.items()):
            print("  snp=%-3s %4d  %s\n        %s" % (snp, cnt, what, first))
    print("categories (snp, count, category, status):")
    for (snp, cat), (cnt, _, reason, is_crash) in sorted(cats.items()):
        st = "CRASH" if is_crash else ("known: " + reason if reason
                                       else "NEW/unexplained")
        print("  snp=%-3s %4d  %s  [%s]" % (snp, cnt, cat, st))
    print("throughput: %.2f programs/s, %.0f qtest ops/s (%.1fs)" % (
        execs / el if el else 0, qops / el if el else 0, el))
    print("fuzz: %d executions, %d crashes, %d mismatches" % (
        execs, crashes, unexplained))
    return 1 if crashes or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
