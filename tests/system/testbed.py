#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Whole-system tests: a real Linux host kernel on the fork.

The guest of the fork is the SNP host: its own AMD IOMMU driver programs
the emulated amd-iommu (snp=on), and snp-dma (tests/system/snp-dma.c)
maps memory through iommufd and makes edu DMA through vfio-pci.  This
harness plays KVM: it changes the RMP over QMP between the guest's steps,
and asserts the guest kernel's own log lines and the fork's SNP_RMP_FAULT
events.

A second boot adds a virtio-blk disk on an IOThread behind the amd-iommu
and hides the top of RAM from the guest kernel: viommu-notifier runs the
fork inside the guest with vfio-pci behind its own amd-iommu (snp=on must
refuse it), iothread-stress races the disk's DMA, translated outside the
BQL, against QMP changes of the RMP.  A scenario that ends with the fork
dead or hung prints a backtrace of its threads (gdb, core dumps).

Usage: testbed.py QEMU BZIMAGE INITRAMFS [--demo] [SCENARIO...]
Prints TAP and a closing "N passed, N failed" line.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

BOOT_TIMEOUT = 120
STEP_TIMEOUT = 30
KVM_PROBE_TIMEOUT = 10
INNER_TIMEOUT = 300
QMP_TIMEOUT = 60
M2 = 2 << 20
K4 = 4096
IOVA = 0x40000000           # 1G-aligned: any area size keeps its alignment
BUF_PAGES = 64              # snp-dma's buffer: 2M hugetlb pages


class TestbedError(Exception):
    pass


class TestbedHang(TestbedError):
    """No answer in time: the fork's threads are worth a look"""


class TestbedGone(TestbedError):
    """The fork exited: its core dump is worth a look"""


class Fork:
    """The fork running the test guest, with its console and QMP."""

    def __init__(self, qemu, kernel, initrd, accel, inner=None, snp=True,
                 extra=(), append=""):
        self.tmp = tempfile.mkdtemp(prefix="snp-testbed-")
        # the fork runs in self.tmp
        qemu, kernel, initrd = [os.path.abspath(p) for p in
                                (qemu, kernel, initrd)]
        self.qmp_path = os.path.join(self.tmp, "qmp.sock")
        self.inner_qtest_path = os.path.join(self.tmp, "inner-qtest.sock")
        self.inner_qmp_path = os.path.join(self.tmp, "inner-qmp.sock")
        self.console = []
        self.lines = queue.Queue()
        self.events = []
        args = [qemu, "-M", "q35", "-accel", accel, "-m", "3G", "-smp", "1",
                "-display", "none", "-monitor", "none", "-nodefaults",
                "-serial", "stdio",
                "-serial", "unix:%s,server=on,wait=off" %
                self.inner_qtest_path,
                "-serial", "unix:%s,server=on,wait=off" % self.inner_qmp_path,
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                "-kernel", kernel, "-initrd", initrd,
                # no_timer_check: as in snp-host-test.py
                "-append", "console=ttyS0 panic=-1 quiet loglevel=4 "
                "no_timer_check" +
                (" snp_inner=%s" % inner if inner else "") +
                (" " + append if append else ""),
                "-object", "snp-rmp,id=rmp0",
                "-device", "amd-iommu,dma-remap=on" +
                (",snp=on,rmp=rmp0,rmp-fault-event-rate=0" if snp else ""),
                "-device", "edu,id=edu0,addr=04.0,dma_mask=0xffffffffff",
                "-no-reboot"] + list(extra)
        args += ["-cpu", "host" if accel == "kvm" else "max"]
        self.qemu = qemu
        # a core dump, should the fork crash, lands in self.tmp
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=self.tmp,
                                     preexec_fn=_allow_core)
        threading.Thread(target=self._read_console, daemon=True).start()
        self.qmp = None
        deadline = time.time() + 10
        while time.time() < deadline and self.qmp is None:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.qmp_path)
                self.qmp = s
            except OSError:
                time.sleep(0.05)
        if self.qmp is None:
            raise TestbedError("no QMP socket from the fork")
        self.qmp.settimeout(QMP_TIMEOUT)    # a hung fork fails, not hangs
        self.qmp_file = self.qmp.makefile("rw")
        self._qmp_read()                # greeting
        self.execute("qmp_capabilities")

    def _read_console(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.console.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _qmp_read(self):
        try:
            line = self.qmp_file.readline()
        except OSError as e:            # socket.timeout included
            raise TestbedHang("QMP: %s" % (e or "timeout"))
        if not line:
            raise TestbedGone("QMP connection closed")
        return json.loads(line)

    def execute(self, cmd, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.qmp_file.write(json.dumps(msg) + "\n")
        self.qmp_file.flush()
        while True:
            r = self._qmp_read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise TestbedError("QMP %s: %s" % (cmd, r["error"]["desc"]))
            return r["return"]

    def take_events(self, name):
        self.execute("query-status")    # delivers pending events
        found = [e for e in self.events if e["event"] == name]
        self.events = [e for e in self.events if e["event"] != name]
        return found

    def wait_for(self, pattern, timeout):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TestbedHang("timeout waiting for %r" % pattern)
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise TestbedGone("the fork exited waiting for %r" % pattern)
            if rx.search(line):
                return line

    def cmd(self, line, timeout=STEP_TIMEOUT):
        """Send a command to snp-dma; return its answer after "ok"."""
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer = self.wait_for(r"^(ok|error)\b", timeout)
        if answer.startswith("error"):
            raise TestbedError("snp-dma %s: %s" % (line, answer))
        return answer[2:].strip()

    def log_since(self, mark):
        return self.console[mark:]

    def sh(self, command, timeout=STEP_TIMEOUT):
        """Run a shell command in the guest: (exit status, output lines)"""
        mark = len(self.console)
        answer = self.cmd("sh " + command, timeout)
        out = [l[2:] for l in self.console[mark:] if l.startswith("| ")]
        return int(answer.split()[1]), out

    def post_mortem(self):
        """What the fork's state says when a scenario failed: its exit, a
        backtrace of every thread (gdb on the live process, or on its
        core dump), and its own messages from the console."""
        out = []
        try:
            rc = self.proc.wait(timeout=5)      # its console may end first
        except subprocess.TimeoutExpired:
            rc = None
        gdb = ["gdb", "-batch", "-nx", "-ex", "thread apply all bt"]
        if rc is None:
            out.append("the fork is still running (pid %d); its threads:"
                       % self.proc.pid)
            cmdline = gdb + ["-p", str(self.proc.pid)]
        else:
            out.append("the fork exited with %s" %
                       ("signal %d" % -rc if rc < 0 else "status %d" % rc))
            cores = [c for c in os.listdir(self.tmp) if c.startswith("core")]
            cmdline = gdb + [self.qemu, os.path.join(self.tmp, cores[0])] \
                if cores else None
            if not cores:
                out.append("no core dump in %s" % self.tmp)
        if cmdline:
            try:
                r = subprocess.run(cmdline, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=120)
                out += [l for l in r.stdout.decode(errors="replace")
                        .splitlines() if l.startswith(("Thread", "#"))]
            except (OSError, subprocess.TimeoutExpired) as e:
                out.append("gdb: %s" % e)
        own = [l for l in self.console if "qemu-system" in l or
               "assert" in l.lower() or "Sanitizer" in l]
        if own:
            out.append("the fork's own messages (stderr):")
            out += own[-40:]
        return out

    def close(self):
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        self.proc.wait()


def _allow_core():
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                              resource.RLIM_INFINITY))


class LineChannel:
    """A line protocol over one of the fork's serial ports."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(STEP_TIMEOUT)
        self.buf = b""

    def send(self, line):
        self.sock.sendall((line + "\n").encode())

    def recv(self, timeout=STEP_TIMEOUT):
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TestbedHang("no answer on %s" % self.sock.getpeername())
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise TestbedError("%s closed" % self.sock.getpeername())
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip("\r")


class InnerVMM:
    """The fork running inside the guest as edu's VMM: qtest and QMP."""

    def __init__(self, fork):
        self.qt = LineChannel(fork.inner_qtest_path)
        self.qmp = LineChannel(fork.inner_qmp_path)
        self.f = fork

    def qtest(self, cmd, timeout=STEP_TIMEOUT):
        self.qt.send(cmd)
        while True:
            r = self.qt.recv(timeout)
            if r.startswith("OK") or r.startswith("FAIL"):
                break
        if not r.startswith("OK"):
            raise TestbedError("inner qtest %s: %s" % (cmd, r))
        return r[2:].strip()

    def execute(self, cmd, **args):
        self.seq = getattr(self, "seq", 0) + 1
        msg = {"execute": cmd, "id": self.seq}
        if args:
            msg["arguments"] = args
        self.qmp.send(json.dumps(msg))
        while True:
            line = self.qmp.recv(10)
            try:
                r = json.loads(line)
            except ValueError:
                continue
            # answers to noise on the line before the VMM opened it carry
            # no id of ours
            if r.get("id") == self.seq and ("return" in r or "error" in r):
                break
        if "error" in r:
            raise TestbedError("inner QMP %s: %s" % (cmd, r["error"]["desc"]))
        return r["return"]

    def connect(self, timeout):
        """Wait for the inner VMM's QMP, then set up edu's BAR."""
        deadline = time.time() + timeout
        while True:
            try:
                self.execute("qmp_capabilities")
                break
            except TestbedError as e:
                if "already" in str(e):
                    break
                if time.time() > deadline:
                    raise TestbedError("the inner VMM never answered QMP: %s"
                                       % e)
        # edu at 00:05.0: BAR0 at 0xe0000000, memory and bus master on
        cfg = 0x80000000 | (5 << 11)
        self.qtest("outl 0xcf8 %#x" % (cfg | 0x10))
        self.qtest("outl 0xcfc 0xe0000000")
        self.qtest("outl 0xcf8 %#x" % (cfg | 0x4))
        self.qtest("outw 0xcfc 0x6")

    def dma(self, src, dst, cmd):
        bar = 0xe0000000
        self.qtest("writeq %#x %#x" % (bar + 0x80, src))
        self.qtest("writeq %#x %#x" % (bar + 0x88, dst))
        self.qtest("writeq %#x 64" % (bar + 0x90))
        self.qtest("writeq %#x %#x" % (bar + 0x98, cmd | 1))
        deadline = time.time() + STEP_TIMEOUT
        while int(self.qtest("readq %#x" % (bar + 0x98)), 16) & 1:
            if time.time() > deadline:
                raise TestbedError("inner edu DMA never completed")
            time.sleep(0.05)

    def write_dma(self, gpa, seed):
        """edu DMA-writes a pattern to @gpa; did it arrive?"""
        pattern = bytes((seed + i * 7) & 0xff for i in range(64))
        scratch = 0x100000
        self.qtest("write %#x 64 0x%s" % (scratch, pattern.hex()))
        self.dma(scratch, 0x40000, 0)
        self.qtest("write %#x 64 0x%s" % (gpa, "00" * 64))
        self.dma(0x40000, gpa, 2)
        return self.qtest("read %#x 64" % gpa) == "0x" + pattern.hex()


class Scenario:
    def __init__(self, fork, demo):
        self.f = fork
        self.demo = demo
        self.seed = 0x10

    def say(self, text):
        if self.demo:
            print(text, flush=True)

    def boot(self, vfio=True):
        self.f.wait_for("SNP-TESTBED READY", BOOT_TIMEOUT)
        dev = [l for l in self.f.console if l.startswith("vfio devices:")]
        if not dev or "vfio" not in dev[-1].split(":", 1)[1]:
            raise TestbedError("no VFIO cdev in the guest")
        if not vfio:
            return              # the inner VMM owns edu
        self.f.cmd("setup vfio0")
        # the SPA of each 2M hugetlb page of snp-dma's buffer
        self.pages = [int(self.f.cmd("pa %#x" % (i * M2)), 16)
                      for i in range(BUF_PAGES)]
        # a scratch page, mapped 4K, for loading edu's buffer
        self.scratch_off = (BUF_PAGES - 1) * M2
        self.scratch_iova = 0x7000000
        self.f.cmd("map %#x %#x %#x" % (self.scratch_iova, self.scratch_off,
                                        K4))

    def adjacent_pair(self):
        """Offset of two hugetlb pages that form a 4M-aligned 4M, or None"""
        for i in range(BUF_PAGES - 2):
            if self.pages[i] % (2 * M2) == 0 and \
                    self.pages[i + 1] == self.pages[i] + M2:
                return i * M2
        return None

    def rmp(self, spa, size, assigned=False, **kw):
        self.f.execute("snp-rmp-update", spa=spa, **{"page-size": size},
                       assigned=assigned, **kw)

    def write_dma(self, iova, off):
        """edu writes a fresh pattern to iova; did it arrive at buf[off]?"""
        self.seed = (self.seed + 0x31) & 0xff
        self.f.cmd("fill %#x %d" % (self.scratch_off, self.seed))
        self.f.cmd("dma-read %#x" % self.scratch_iova)
        self.f.cmd("dma-write %#x" % iova)
        return self.f.cmd("check %#x %d" % (off, self.seed)) == "matches"

    def expect_fault(self, mark, iova, reason, io_page_size):
        events = self.f.take_events("SNP_RMP_FAULT")
        if not events:
            raise TestbedError("no SNP_RMP_FAULT for iova %#x" % iova)
        d = events[-1]["data"]
        # io_page_size None: any IO page of 2M or more (a power of two),
        # checked at 2M; how large depends on how contiguous the guest's
        # hugetlb pages happen to be (the AMD v1 table's power-of-two sizes)
        size_ok = (d["io-page-size"] == io_page_size if io_page_size else
                   d["io-page-size"] >= M2 and
                   not d["io-page-size"] & (d["io-page-size"] - 1) and
                   d["check-size"] == "2m")
        if (d["iova"], d["reason"]) != (iova, reason) or not size_ok:
            raise TestbedError("unexpected SNP_RMP_FAULT %s" % d)
        gpa = "gpa=0x%x" % iova
        line = None
        deadline = time.time() + STEP_TIMEOUT
        while time.time() < deadline and line is None:
            for l in self.f.log_since(mark):
                if "RMP_PAGE_FAULT" in l and gpa in l:
                    line = l
            time.sleep(0.1)
        if line is None:
            raise TestbedError("the guest kernel logged no RMP_PAGE_FAULT "
                               "for %s" % gpa)
        self.say("    fork:  SNP_RMP_FAULT %s iova %#x spa %#x, IO page %#x "
                 "checked at %s, RMP %s: %s" %
                 (d["device"], d["iova"], d["spa"], d["io-page-size"],
                  d["check-size"], d["rmp-page-size"], d["reason"]))
        self.say("    guest: %s" % line.strip())
        return d

    def expect_no_fault(self):
        events = self.f.take_events("SNP_RMP_FAULT")
        if events:
            raise TestbedError("unexpected SNP_RMP_FAULT %s" % events[-1])


def scenario_2023_bug(s):
    """Thread 003: a 2M IO page over an RMP region smashed to 4K."""
    f = s.f
    spa = s.pages[0]
    if spa % M2:
        raise TestbedError("buffer not 2M aligned: %#x" % spa)
    s.say("1. The host maps 2M of memory as one iommufd area: IOVA %#x -> "
          "SPA %#x; the RMP holds the region as one 2M hypervisor-owned "
          "entry." % (IOVA, spa))
    s.rmp(spa, "2m")
    f.cmd("map %#x 0 %#x" % (IOVA, M2))
    if not s.write_dma(IOVA + 0x5000, 0x5000):
        raise TestbedError("DMA through the 2M IO page failed")
    s.expect_no_fault()
    s.say("2. edu writes to IOVA %#x: 2M IO page, 2M RMP entry: the data "
          "arrives." % (IOVA + 0x5000))
    s.say("3. KVM, for a guest converting one 4K page to private, PSMASHes "
          "the 2M RMP entry and assigns that page (QMP).")
    f.execute("snp-rmp-psmash", spa=spa)
    s.rmp(spa + 0x1ff000, "4k", assigned=True, asid=1,
          gpa=IOVA + 0x1ff000, validated=True)
    mark = len(f.console)
    if s.write_dma(IOVA + 0x5000, 0x5000):
        raise TestbedError("DMA through a 2M IO page over 4K RMP arrived")
    s.say("4. edu writes to the same, still shared, page: the DMA is lost.")
    s.expect_fault(mark, IOVA + 0x5000, "page-size-mismatch", M2)
    s.say("5. The fix: remap the 2M as 4K-checked areas (two 1M areas).")
    f.cmd("unmap %#x %#x" % (IOVA, M2))
    f.cmd("map %#x 0 %#x" % (IOVA, M2 // 2))
    f.cmd("map %#x %#x %#x" % (IOVA + M2 // 2, M2 // 2, M2 // 2))
    if not s.write_dma(IOVA + 0x5000, 0x5000):
        raise TestbedError("DMA after the remap failed")
    s.expect_no_fault()
    s.say("   edu writes again: the data arrives.")
    f.cmd("unmap %#x %#x" % (IOVA, M2))
    s.rmp(spa, "2m")


def scenario_page_size_rules(s):
    """Thread 000: 4K IO pages over 2M RMP fault; 2M and 4M work."""
    f = s.f
    base_off = s.adjacent_pair()
    if base_off is None:
        raise TestbedError("no two hugetlb pages form a 4M: cannot test 4M "
                           "IO pages")
    spa = s.pages[base_off // M2]
    iova = IOVA + 0x10000000
    s.rmp(spa, "2m")
    s.rmp(spa + M2, "2m")
    # 4K-checked pages (two 1M areas) over a 2M RMP entry
    f.cmd("map %#x %#x %#x" % (iova, base_off, M2 // 2))
    f.cmd("map %#x %#x %#x" % (iova + M2 // 2, base_off + M2 // 2, M2 // 2))
    mark = len(f.console)
    if s.write_dma(iova + 0x3000, base_off + 0x3000):
        raise TestbedError("4K-checked DMA over a 2M RMP entry arrived")
    s.say("4K IO pages over a 2M RMP entry:")
    s.expect_fault(mark, iova + 0x3000, "page-size-mismatch", M2 // 2)
    f.cmd("unmap %#x %#x" % (iova, M2))
    # one 2M area: works
    f.cmd("map %#x %#x %#x" % (iova, base_off, M2))
    if not s.write_dma(iova + 0x3000, base_off + 0x3000):
        raise TestbedError("2M DMA over a 2M RMP entry failed")
    s.expect_no_fault()
    s.say("2M IO page over a 2M RMP entry: the data arrives.")
    f.cmd("unmap %#x %#x" % (iova, M2))
    # one 4M area over two 2M entries: works (checked as 2M)
    f.cmd("map %#x %#x %#x" % (iova, base_off, 2 * M2))
    if not s.write_dma(iova + M2 + 0x3000, base_off + M2 + 0x3000):
        raise TestbedError("4M DMA over 2M RMP entries failed")
    s.expect_no_fault()
    s.say("4M IO page over 2M RMP entries: the data arrives.")
    # smash the second 2M: the 4M page faults there, not retried at 4K
    f.execute("snp-rmp-psmash", spa=spa + M2)
    mark = len(f.console)
    if s.write_dma(iova + M2 + 0x3000, base_off + M2 + 0x3000):
        raise TestbedError("4M DMA over a smashed region arrived")
    s.say("4M IO page over a region smashed to 4K (no retry at 4K):")
    d = s.expect_fault(mark, iova + M2 + 0x3000, "page-size-mismatch",
                       2 * M2)
    if d["check-size"] != "2m" or d["rmp-page-size"] != "4k":
        raise TestbedError("wrong sizes in %s" % d)
    f.cmd("unmap %#x %#x" % (iova, 2 * M2))


def engine_in_the_loop(s, mode):
    """The fork as edu's VMM in the guest, rmp-sync=MODE (on iommufd; on a
    type1 container with legacy-; hitless- for rmp-sync-hitless=on): the
    harness converts pages and smashes and re-forms RMP entries in the
    emulated hardware and in the VMM's snp-rmp; edu DMAs after each step."""
    f = s.f
    v = InnerVMM(f)
    v.connect(INNER_TIMEOUT)
    container = "legacy" if mode.startswith("legacy-") else "iommufd"
    mode = mode[len("legacy-"):] if container == "legacy" else mode
    hitless = mode.startswith("hitless-")
    mode = mode[len("hitless-"):] if hitless else mode
    region = 0x2000000                  # a 2M region of the inner guest

    def spa(gpa):
        return int(f.cmd("pa-file /dev/hugepages/inner-ram %#x" % gpa), 16)

    def both_rmp(at, size, **kw):
        kw.setdefault("assigned", False)
        f.execute("snp-rmp-update", spa=spa(at), **{"page-size": size},
                  **kw)
        v.execute("snp-rmp-update", spa=at, **{"page-size": size}, **kw)

    def both_psmash(gpa):
        f.execute("snp-rmp-psmash", spa=spa(gpa))
        v.execute("snp-rmp-psmash", spa=gpa)

    def stats():
        info = v.execute("query-rmp-sync")
        return info[0] if info else {}

    faults = []

    def dma(gpa, expect):
        s.seed = (s.seed + 0x31) & 0xff
        arrived = v.write_dma(gpa, s.seed)
        faults.extend(f.take_events("SNP_RMP_FAULT"))
        if arrived != expect:
            raise TestbedError("DMA to GPA %#x %s (rmp-sync=%s), faults %s"
                               % (gpa, "arrived" if arrived else "was lost",
                                  mode, faults[-1:]))

    mark = len(f.console)
    # 1. fresh RMP (4K entries, all shared): mapped 4K-checked
    if mode == "off":
        # QEMU maps the hugetlb-backed RAM whole: 2M (or larger, where
        # the guest's hugetlb pages are contiguous) IO pages over 4K RMP
        dma(region + 0x5000, False)
        f.events.extend(faults)
        s.say("rmp-sync=off: QEMU maps RAM whole, 2M IO pages over 4K RMP "
              "entries:")
        s.expect_fault(mark, region + 0x5000, "page-size-mismatch", None)
        return
    dma(region + 0x5000, True)
    st = stats()
    s.say("step 1, fresh RMP: DMA arrives; %s" % st)
    if (st.get("container-type") != container or
            st.get("devices") != ["edu0"] or st.get("hitless") != hitless):
        raise TestbedError("not the %s container of edu0 (hitless %s): %s"
                           % (container, hitless, st))
    try:
        v.execute("object-del", id="rmp0")
        raise TestbedError("the snp-rmp object was deleted under rmp-sync")
    except TestbedError as e:
        if "in use" not in str(e):
            raise
    hmp = v.execute("human-monitor-command",
                    **{"command-line": "info rmp-sync"})
    head = ("legacy container" if container == "legacy" else
            "iommufd fd0 IOAS %d" % st["ioas-id"])
    head += " (%s%s) of edu0: " % (mode, ", hitless" if hitless else "")
    if not hmp.startswith(head):
        raise TestbedError("info rmp-sync: %r, expected %r..." % (hmp, head))
    if st.get("regions-2m", 0) != 0:
        raise TestbedError("2M areas over a 4K RMP: %s" % st)
    # 2. KVM forms a 2M entry (guest asked for 2M, region uniform)
    both_rmp(region, "2m")
    dma(region + 0x5000, True)
    st = stats()
    s.say("step 2, RMP 2M: DMA arrives; %s" % st)
    if st.get("regions-2m", 0) < 1:
        raise TestbedError("no 2M area over a 2M RMP entry: %s" % st)
    # 3. the guest converts one 4K page to private: KVM smashes
    private = region + 0x1ff000
    both_psmash(region)
    both_rmp(private, "4k", assigned=True, asid=1, gpa=private,
             validated=True)
    dma(region + 0x5000, True)
    st = stats()
    s.say("step 3, smashed, one page private: DMA to a shared page "
          "arrives; %s" % st)
    if mode == "all":
        f.execute("snp-iommu-bind-device", device="edu0", asid=1)
        dma(private, True)
        s.say("        TEE-IO: edu bound to ASID 1 reaches the private "
              "page too")
        f.execute("snp-iommu-unbind-device", device="edu0")
    # 4. shared again, re-formed as 2M
    both_rmp(private, "4k")
    both_rmp(region, "2m")
    dma(region + 0x7000, True)
    st = stats()
    s.say("step 4, re-formed 2M: DMA arrives; %s" % st)
    if st.get("regions-2m", 0) < 1 or st.get("errors", 0):
        raise TestbedError("after re-forming: %s" % st)
    s.say("unmap-then-map windows: %d (%d pages), longest %d us" %
          (st["windows"], st["window-pages"], st["window-us-max"]))
    if mode == "shared":
        # 5. a page of a 4K-RMP region goes private: its RMP entry keeps
        # its size, so hitless keeps its neighbours mapped throughout
        page = region + M2 + 0x3000
        before = stats()
        both_rmp(page, "4k", assigned=True, asid=1, gpa=page, validated=True)
        dma(page + 0x1000, True)
        st = stats()
        cut = st["windows"] - before["windows"]
        s.say("step 5, a page of a 4K region private: DMA to its neighbour "
              "arrives; windows %d -> %d (%d pages), ioctls %d -> %d" %
              (before["windows"], st["windows"],
               st["window-pages"] - before["window-pages"],
               before["ioctls"], st["ioctls"]))
        if cut != (0 if hitless else 1):
            raise TestbedError("%d windows for an unchanged RMP size "
                               "(hitless %s)" % (cut, hitless))
        both_rmp(page, "4k")
        dma(page, True)
    if faults:
        raise TestbedError("RMP faults with rmp-sync=%s: %s" % (mode, faults))
    logged = [l for l in f.log_since(mark) if "RMP_PAGE_FAULT" in l]
    if logged:
        raise TestbedError("the guest kernel logged %s" % logged[0])


# The virtio-blk boot: a disk on an IOThread behind the amd-iommu, and the
# top of guest RAM hidden from the guest kernel (mem=) for the harness to
# change the RMP of while the disk's DMA goes on.  -m 3G on q35: 2G below
# 4G, 1G from 4G on.
RAM_END = 0x140000000
HAMMER_BASE = 0x130000000           # [HAMMER_BASE, RAM_END): not the guest's
DISK_MB = 64
STRESS_SECS = 30


def blk_boot_args(tmp):
    img = os.path.join(tmp, "disk.img")
    with open(img, "wb") as fimg:
        fimg.truncate(DISK_MB << 20)
    extra = ["-machine", "dump-guest-core=off",
             "-object", "iothread,id=io0",
             "-drive", "file=%s,if=none,id=d0,format=raw,cache=none,"
             "aio=threads" % img,
             "-device", "virtio-blk-pci,drive=d0,iothread=io0,"
             "iommu_platform=on,disable-legacy=on"]
    # iommu.strict=1: an IOTLB invalidation after every unmap, so that the
    # guest's own commands race the IOThread's lookups too
    append = "mem=%dM iommu.strict=1" % (HAMMER_BASE >> 20)
    return img, extra, append


def guest_edu(f):
    for l in f.console:
        m = re.match(r"edu (\S+) -> .*vfio-pci", l)
        if m:
            return m.group(1)
    raise TestbedError("edu is not bound to vfio-pci in the guest")


NOTIFIER_ERROR = ("device 00.05.0 maps guest IO page tables into the host "
                  "IOMMU, which bypasses the RMP checks of amd-iommu snp=on")


def scenario_viommu_notifier(s):
    """Defect 6: vfio-pci behind the fork's own amd-iommu, in the guest
    (the inner fork, on the guest's real vfio-pci edu): with snp=on its MAP
    notifier is refused with a clear error, on a type1 container and on
    iommufd; with snp=off the same command line starts (control)."""
    f = s.f
    edu = guest_edu(f)
    for container in ("legacy", "iommufd"):
        for snp in (True, False):
            dev = "vfio-pci,host=%s,id=edu0,addr=05.0" % edu
            backend = ""
            if container == "iommufd":
                backend = "-object iommufd,id=fd0 "
                dev += ",iommufd=fd0"
            qmp = "'%s'" % "' '".join(json.dumps({"execute": c}) for c in
                                      ("qmp_capabilities", "query-pci",
                                       "quit"))
            cmd = ("printf '%%s\\n' %s | timeout %d /bin/qemu-system-x86_64 "
                   "-L /share -M q35 -accel qtest -display none -nodefaults "
                   "-m 64M -qmp stdio -object snp-rmp,id=rmp0 "
                   "-device amd-iommu,dma-remap=on,%s %s-device %s" %
                   (qmp, STEP_TIMEOUT, "snp=on,rmp=rmp0" if snp else "snp=off",
                    backend, dev))
            t0 = time.time()
            rc, out = f.sh(cmd, STEP_TIMEOUT + 30)
            took = time.time() - t0
            text = "\n".join(out)
            what = "snp=%s, %s" % ("on" if snp else "off", container)
            if rc >= 124:
                raise TestbedError("inner fork (%s): exit %d (timeout or "
                                   "signal): %s" % (what, rc, text[-2000:]))
            if snp:
                if rc == 0 or NOTIFIER_ERROR not in text:
                    raise TestbedError("inner fork (%s) was not refused with "
                                       "%r: exit %d: %s" %
                                       (what, NOTIFIER_ERROR, rc,
                                        text[-2000:]))
                if '"qdev_id": "edu0"' in text:
                    raise TestbedError("inner fork (%s) realized vfio-pci: %s"
                                       % (what, text[-2000:]))
                line = [l for l in out if NOTIFIER_ERROR in l][0]
                s.say("    %s: refused in %.1f s, exit %d: %s" %
                      (what, took, rc, line))
            else:
                if rc != 0 or '"qdev_id": "edu0"' not in text or \
                        "bypasses the RMP" in text:
                    raise TestbedError("inner fork (%s) did not start with "
                                       "vfio-pci edu0: exit %d: %s" %
                                       (what, rc, text[-2000:]))
                s.say("    %s: started in %.1f s, query-pci lists edu0" %
                      (what, took))


def scenario_iothread_stress(s):
    """Defect 8: virtio-blk on an IOThread translates through the amd-iommu
    (snp=on) outside the BQL while QMP changes the RMP of RAM the guest
    does not use: verified O_DIRECT writes and reads in the guest for
    30 s (STRESS_SECS) against snp-rmp-update (2M and 4K, assigned and
    not), snp-rmp-psmash and query-snp-rmp in a loop.  A stress test, not
    a proof; a crash or hang prints the fork's threads."""
    f = s.f
    # the hammered RAM is the fork's and not the guest kernel's
    f.execute("query-snp-rmp", spa=RAM_END - K4, count=1)
    rc, iomem = f.sh("grep 'System RAM' /proc/iomem")
    for l in iomem:
        lo, hi = [int(x, 16) for x in l.split()[0].split("-")]
        if hi >= HAMMER_BASE and lo < RAM_END:
            raise TestbedError("the guest kernel uses %s" % l)
    if rc or not iomem:
        raise TestbedError("no System RAM in the guest's /proc/iomem")
    stop = threading.Event()
    hammer = {"ops": 0, "rounds": 0, "error": None}
    regions = (RAM_END - HAMMER_BASE) // M2

    def hammer_rmp():
        i = 0
        try:
            while not stop.is_set():
                r = HAMMER_BASE + (i % regions) * M2
                page = r + ((i * 37) % 512) * K4
                f.execute("snp-rmp-update", spa=r, assigned=False,
                          **{"page-size": "2m"})
                f.execute("query-snp-rmp", spa=r, count=4)
                f.execute("snp-rmp-psmash", spa=r)
                f.execute("snp-rmp-update", spa=page, assigned=True, asid=1,
                          gpa=page - HAMMER_BASE, validated=True,
                          **{"page-size": "4k"})
                f.execute("query-snp-rmp", spa=r, count=512)
                f.execute("snp-rmp-update", spa=page, assigned=False,
                          **{"page-size": "4k"})
                f.execute("snp-rmp-update", spa=r, assigned=False,
                          **{"page-size": "2m"})
                if i % 8 == 7:
                    # smashed again and left at 4K, as it started
                    f.execute("snp-rmp-psmash", spa=r)
                hammer["ops"] += 7 + (i % 8 == 7)
                i += 1
                hammer["rounds"] = i
        except TestbedError as e:
            hammer["error"] = e

    t = threading.Thread(target=hammer_rmp, daemon=True)
    mark = len(f.console)
    t0 = time.time()
    t.start()
    try:
        answer = f.cmd("stress-dev /dev/vda %d %d" % (STRESS_SECS, 0x5eed),
                       STRESS_SECS + 90)
    finally:
        stop.set()
        t.join(QMP_TIMEOUT + 5)
    took = time.time() - t0
    if t.is_alive():
        raise TestbedHang("the QMP hammer hangs (%d ops done)" %
                          hammer["ops"])
    if hammer["error"]:
        raise type(hammer["error"])("QMP failed after %d RMP operations: %s"
                                    % (hammer["ops"], hammer["error"]))
    writes, reads, wmb, rmb, bad = [int(x) for x in answer.split()]
    s.say("    %.1f s: the guest wrote %d MiB in %d requests and read %d MiB "
          "in %d, all verified, %d mismatches; QMP ran %d RMP operations "
          "on %#x-%#x meanwhile (%.0f/s)" %
          (took, wmb, writes, rmb, reads, bad, hammer["ops"], HAMMER_BASE,
           RAM_END - 1, hammer["ops"] / took))
    if bad:
        lines = [l for l in f.log_since(mark) if l.startswith("# ")]
        raise TestbedError("%d blocks read back wrong: %s" %
                           (bad, "; ".join(lines[:4])))
    if hammer["ops"] < 1000:
        raise TestbedError("only %d RMP operations during the I/O" %
                           hammer["ops"])
    events = f.take_events("SNP_RMP_FAULT")
    if events:
        raise TestbedError("%d SNP_RMP_FAULT events, first %s" %
                           (len(events), events[0]["data"]))
    logged = [l for l in f.log_since(mark) if "RMP_PAGE_FAULT" in l or
              "IO_PAGE_FAULT" in l or "Event logged" in l]
    if logged:
        raise TestbedError("the guest kernel logged %s" % logged[0])
    f.execute("query-status")           # still alive and answering


SCENARIOS = {
    "2023-bug": scenario_2023_bug,
    "page-size-rules": scenario_page_size_rules,
    "viommu-notifier": scenario_viommu_notifier,
    "iothread-stress": scenario_iothread_stress,
}
# the scenarios of the virtio-blk boot: snp-dma leaves edu alone
BLK_SCENARIOS = ["viommu-notifier", "iothread-stress"]
INNER_SCENARIOS = ["shared", "all", "off", "legacy-shared", "hitless-shared",
                   "legacy-hitless-shared"]


def kvm_boots(qemu, kernel, initrd):
    """Does this host's KVM boot the test kernel far enough to print?"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not usable"
    proc = subprocess.Popen([qemu, "-M", "q35", "-accel", "kvm", "-cpu",
                             "host", "-m", "512M", "-display", "none",
                             "-monitor", "none", "-nodefaults", "-serial",
                             "stdio", "-kernel", kernel, "-initrd", initrd,
                             "-append", "console=ttyS0 earlyprintk=ttyS0",
                             "-no-reboot"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    deadline = time.time() + KVM_PROBE_TIMEOUT
    os.set_blocking(proc.stdout.fileno(), False)
    while time.time() < deadline and b"Linux version" not in out:
        time.sleep(0.2)
        out += proc.stdout.read() or b""
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    if b"Linux version" in out:
        return True, ""
    return False, ("KVM printed nothing in %d s: %s" %
                   (KVM_PROBE_TIMEOUT,
                    out.decode(errors="replace").strip()[-200:] or
                    "no console output"))


def run_boot(qemu, kernel, initrd, accel, demo, names, inner, first,
             blk=False):
    """Boot the guest once and run @names in it; returns (passed, failed)"""
    passed = failed = 0
    start = time.time()
    img = None
    extra, append = [], ""
    if blk:
        img, extra, append = blk_boot_args(tempfile.mkdtemp(
            prefix="snp-testbed-blk-", dir="/dev/shm"))
    try:
        f = Fork(qemu, kernel, initrd, accel, inner, extra=extra,
                 append=append)
    except BaseException:
        if img:
            os.unlink(img)
            os.rmdir(os.path.dirname(img))
        raise
    s = Scenario(f, demo)
    try:
        s.boot(vfio=not inner and not blk)
        if demo:
            print("booted in %.1f s (%s)" % (time.time() - start, accel))
        for i, name in enumerate(names, first):
            t_scenario = time.time()
            try:
                if inner:
                    if demo:
                        print("== %s: %s" % (name,
                              engine_in_the_loop.__doc__.replace("MODE",
                                                                 inner)))
                    engine_in_the_loop(s, inner)
                else:
                    if demo:
                        print("== %s: %s" % (name, SCENARIOS[name].__doc__))
                    SCENARIOS[name](s)
                print("ok %d - %s (%.1f s)" % (i, name,
                                               time.time() - t_scenario),
                      flush=True)
                passed += 1
            except TestbedError as e:
                print("not ok %d - %s: %s" % (i, name, e))
                print("# last console lines:")
                for l in f.console[-20:]:
                    print("#   " + l)
                if f.proc.poll() is not None or \
                        isinstance(e, (TestbedHang, TestbedGone)):
                    for l in f.post_mortem():
                        print("#   " + l)
                else:
                    own = [l for l in f.console if "qemu-system" in l]
                    if own:
                        print("# the fork's own messages (stderr):")
                        for l in own[-40:]:
                            print("#   " + l)
                failed += 1
    except TestbedError as e:
        print("not ok - boot: %s" % e)
        print("# last console lines:")
        for l in f.console[-30:]:
            print("#   " + l)
        failed += len(names)
    finally:
        f.close()
        if img:
            os.unlink(img)
            os.rmdir(os.path.dirname(img))
    return passed, failed


def bench(qemu, kernel, initrd, accel, rounds=6, reps=3, size_mb=256):
    """virtio-blk (iommu_platform=on) reads through the amd-iommu: MB/s
    with snp=on and snp=off, boots alternating so that drift of the
    machine hits both alike."""
    img = os.path.join(tempfile.mkdtemp(prefix="snp-bench-",
                                        dir="/dev/shm"), "disk.img")
    with open(img, "wb") as fimg:
        fimg.write(os.urandom(1 << 20) * size_mb)
    extra = ["-drive", "file=%s,if=none,id=d0,format=raw,cache=none,"
             "aio=threads" % img,
             "-device", "virtio-blk-pci,drive=d0,iommu_platform=on,"
             "disable-legacy=on"]
    results = {False: [], True: []}
    sums = set()
    for _ in range(rounds):
        for snp in (False, True):
            f = Fork(qemu, kernel, initrd, accel, snp=snp, extra=extra)
            try:
                f.wait_for("SNP-TESTBED READY", BOOT_TIMEOUT)
                f.cmd("read-dev /dev/vda", 300)         # warm up
                for _ in range(reps):
                    total, secs, csum = f.cmd("read-dev /dev/vda",
                                              300).split()
                    if int(total) != size_mb << 20:
                        raise TestbedError("read %s bytes" % total)
                    sums.add(csum)
                    results[snp].append(int(total) / float(secs) /
                                        (1 << 20))
                if f.take_events("SNP_RMP_FAULT"):
                    raise TestbedError("RMP faults during the benchmark")
            finally:
                f.close()
    os.unlink(img)
    os.rmdir(os.path.dirname(img))
    if len(sums) != 1:
        raise TestbedError("the image read back differently: %s" % sums)
    n = rounds * reps
    print("virtio-blk (iommu_platform=on) read of a %d MiB RAM-backed "
          "image through the amd-iommu, %s, %d boots x %d reads each:" %
          (size_mb, accel, rounds, reps))
    med = {}
    for snp in (False, True):
        r = sorted(results[snp])
        med[snp] = r[n // 2]
        print("  snp=%-3s  median %7.1f MB/s  min %7.1f  max %7.1f" %
              ("on" if snp else "off", med[snp], r[0], r[-1]))
    print("  snp=on costs %.1f%% of the throughput (medians; data "
          "identical in all reads)" % ((1 - med[True] / med[False]) * 100))
    return 0


def main(argv):
    if "--bench" in argv:
        argv = [a for a in argv if a != "--bench"]
        accel = os.environ.get("SNP_TESTBED_ACCEL", "auto")
        if accel == "auto":
            accel = "kvm" if kvm_boots(*argv[1:4])[0] else "tcg"
        return bench(*argv[1:4], accel)
    demo = "--demo" in argv
    argv = [a for a in argv if a != "--demo"]
    qemu, kernel, initrd = argv[1:4]
    names = argv[4:] or (list(SCENARIOS) +
                         ["engine-" + m for m in INNER_SCENARIOS])
    accel = os.environ.get("SNP_TESTBED_ACCEL", "auto")
    if accel == "auto":
        ok, why = kvm_boots(qemu, kernel, initrd)
        accel = "kvm" if ok else "tcg"
        if not ok:
            print("# KVM not used: %s; running under TCG" % why)
    print("1..%d" % len(names))
    plain = [n for n in names if not n.startswith("engine-") and
             n not in BLK_SCENARIOS]
    blk = [n for n in names if n in BLK_SCENARIOS]
    passed = failed = 0
    if plain:
        p, fl = run_boot(qemu, kernel, initrd, accel, demo, plain, None, 1)
        passed, failed = passed + p, failed + fl
    if blk:
        p, fl = run_boot(qemu, kernel, initrd, accel, demo, blk, None,
                         passed + failed + 1, blk=True)
        passed, failed = passed + p, failed + fl
    for n in names:
        if n.startswith("engine-"):
            p, fl = run_boot(qemu, kernel, initrd, accel, demo, [n],
                             n[len("engine-"):], passed + failed + 1)
            passed, failed = passed + p, failed + fl
    print("system: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
