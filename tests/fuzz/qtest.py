#!/usr/bin/python3
"""A minimal qtest + QMP client (Python 3 standard library only).

The protocol is the one of QEMU's tests/qtest/libqtest.c: QEMU is started
with ``-qtest unix:QTEST_SOCK`` and ``-chardev socket,path=QMP_SOCK`` and
connects, as a client, to the two sockets this module listens on.  qtest is
line based: ``writeq ADDR VAL``, ``readq ADDR``, ``b64read ADDR LEN``,
``b64write ADDR LEN DATA``, ``memset``, ``outl``/``inl``, ``clock_step``; each
command is answered by one ``OK ...`` or ``FAIL ...`` line.  QMP is JSON, one
object per line; events may arrive between replies and are collected.

SPDX-License-Identifier: GPL-2.0-or-later
"""

import base64
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time


class QEMUHang(Exception):
    """QEMU did not answer within the timeout (a finding: a hang)."""


class QEMUDied(Exception):
    """QEMU closed its sockets or exited (a finding: a crash)."""


class QTestError(Exception):
    """qtest answered FAIL."""


class QMPError(Exception):
    def __init__(self, cmd, err):
        super().__init__("%s: %s" % (cmd, err))
        self.err = err


# The QEMUs of this process that are not closed yet, and how many a stop
# has cut short (see stop_on_signals)
_running = set()
stopped_by = None
cut_short = 0


def _stop(signum, frame):
    global stopped_by
    stopped_by = signum
    for q in list(_running):
        q.kill_for_stop()


def stop_on_signals():
    """Make SIGINT and SIGTERM stop the fuzzer cleanly, not with a
    traceback: they SIGKILL every running QEMU of this process (its own
    session, so they get no signal of the terminal), whatever waits on one
    returns at once, and stopped_by says that the caller should sum up and
    end.  Later QEMUs are killed as they start.  A QEMU that this killed,
    and whose stderr holds no crash report, is .cut once closed (and adds
    one to cut_short): a crash of that QEMU is none, and a program that
    ran it did not finish."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop)


def cut_by_stop(finding, cut_before):
    """Whether a stop cut short the program that ended with @finding
    (None: it ran to its end; a Mismatch is never a stop's doing): the
    QEMU of a crash (finding.qemu) is .cut, or, when no QEMU is known,
    any QEMU was cut since cut_short was @cut_before."""
    q = getattr(finding, "qemu", None)
    return q.cut if q is not None else cut_short != cut_before


def crash_report(text):
    """Whether QEMU's stderr @text holds a sanitizer report or a failed
    assertion."""
    return any(marker in text for marker in (
        "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
        "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehavior",
        "Assertion `", "assertion failed", "code should not be reached",
        "hardware error"))


class QEMU:
    """One QEMU process under qtest, with its QMP monitor."""

    def __init__(self, binary, args, timeout=10.0, log=None):
        self.timeout = timeout
        self.tmpdir = tempfile.mkdtemp(prefix="difffuzz-")
        qsock_path = os.path.join(self.tmpdir, "qtest.sock")
        msock_path = os.path.join(self.tmpdir, "qmp.sock")
        self._listeners = []
        lq = self._listen(qsock_path)
        lm = self._listen(msock_path)
        cmd = [binary, "-qtest", "unix:" + qsock_path,
               "-qtest-log", "/dev/null",
               "-chardev", "socket,path=%s,id=char0" % msock_path,
               "-mon", "chardev=char0,mode=control",
               "-machine", "accel=qtest", "-display", "none",
               "-nodefaults"] + list(args)
        self.cmdline = cmd
        self.stderr_path = os.path.join(self.tmpdir, "stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._stderr,
                                     start_new_session=True)
        self.stop_killed = False
        self.cut = False
        _running.add(self)
        if stopped_by is not None:
            self.kill_for_stop()
        self.ops = 0
        self.qbuf = b""
        self.mbuf = b""
        self.events = []
        # a QEMU that does not come up (or a stop) must not outlive this
        try:
            try:
                self.qs = self._accept(lq)
                self.ms = self._accept(lm)
            finally:
                lq.close()
                lm.close()
            greeting = self._qmp_read()
            if "QMP" not in greeting:
                raise QEMUDied("no QMP greeting: %r" % greeting)
            self.qmp("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    # -- plumbing --------------------------------------------------------
    def _listen(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        s.settimeout(self.timeout)
        return s

    def _accept(self, lsock):
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise QEMUDied("QEMU exited at start (rc %s): %s" %
                               (self.proc.returncode, self.stderr_text()))
            try:
                lsock.settimeout(0.2)
                conn, _ = lsock.accept()
                conn.setblocking(True)
                return conn
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise QEMUHang("QEMU did not connect")

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def _recv_line(self, sock, bufname):
        buf = getattr(self, bufname)
        deadline = time.monotonic() + self.timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                setattr(self, bufname, buf)
                raise QEMUHang("no answer within %.1fs" % self.timeout)
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                continue
            try:
                data = sock.recv(1 << 20)
            except OSError as e:            # ECONNRESET: it died
                setattr(self, bufname, buf)
                raise QEMUDied("socket: %s" % e)
            if not data:
                setattr(self, bufname, buf)
                raise QEMUDied("socket closed")
            buf += data
        line, _, rest = buf.partition(b"\n")
        setattr(self, bufname, rest)
        return line.decode()

    # -- qtest ------------------------------------------------------------
    def cmd(self, line):
        self.ops += 1
        try:
            self.qs.sendall(line.encode() + b"\n")
        except OSError:
            raise QEMUDied("socket closed on send")
        while True:
            ans = self._recv_line(self.qs, "qbuf")
            if ans.startswith("IRQ"):
                continue
            break
        if ans.startswith("OK"):
            return ans[3:]
        raise QTestError("%s -> %s" % (line, ans))

    def writeq(self, addr, val):
        self.cmd("writeq 0x%x 0x%x" % (addr, val & (2**64 - 1)))

    def writel(self, addr, val):
        self.cmd("writel 0x%x 0x%x" % (addr, val & 0xffffffff))

    def readq(self, addr):
        return int(self.cmd("readq 0x%x" % addr), 16)

    def readl(self, addr):
        return int(self.cmd("readl 0x%x" % addr), 16)

    def memread(self, addr, size):
        if size == 0:
            return b""
        return base64.b64decode(self.cmd("b64read 0x%x 0x%x" % (addr, size)))

    def memwrite(self, addr, data):
        if not data:
            return
        self.cmd("b64write 0x%x 0x%x %s" %
                 (addr, len(data), base64.b64encode(data).decode()))

    def memset(self, addr, size, val):
        self.cmd("memset 0x%x 0x%x 0x%x" % (addr, size, val))

    def outl(self, port, val):
        self.cmd("outl 0x%x 0x%x" % (port, val))

    def outw(self, port, val):
        self.cmd("outw 0x%x 0x%x" % (port, val))

    def inl(self, port):
        return int(self.cmd("inl 0x%x" % port), 16)

    def inw(self, port):
        return int(self.cmd("inw 0x%x" % port), 16)

    def clock_step(self, ns):
        return self.cmd("clock_step %d" % ns)

    # PCI configuration space through ports 0xcf8/0xcfc
    def _cfg_addr(self, devfn, reg):
        return 0x80000000 | (devfn << 8) | (reg & 0xfc)

    def pci_readl(self, devfn, reg):
        self.outl(0xcf8, self._cfg_addr(devfn, reg))
        return self.inl(0xcfc)

    def pci_writel(self, devfn, reg, val):
        self.outl(0xcf8, self._cfg_addr(devfn, reg))
        self.outl(0xcfc, val)

    def pci_readw(self, devfn, reg):
        self.outl(0xcf8, self._cfg_addr(devfn, reg))
        return self.inw(0xcfc + (reg & 2))

    def pci_writew(self, devfn, reg, val):
        self.outl(0xcf8, self._cfg_addr(devfn, reg))
        self.outw(0xcfc + (reg & 2), val)

    # -- QMP --------------------------------------------------------------
    def _qmp_read(self):
        while True:
            line = self._recv_line(self.ms, "mbuf").strip()
            if line:
                return json.loads(line)

    def qmp(self, cmd, **args):
        """Execute @cmd; returns its result; raises QMPError on error."""
        self.ops += 1
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        try:
            self.ms.sendall(json.dumps(msg).encode() + b"\n")
        except OSError:
            raise QEMUDied("QMP socket closed on send")
        while True:
            obj = self._qmp_read()
            if "event" in obj:
                self.events.append(obj)
                continue
            if "error" in obj:
                raise QMPError(cmd, obj["error"])
            return obj.get("return")

    def take_events(self, name=None):
        """The events received so far (after a QMP round trip)."""
        self.qmp("query-status")
        evs = [e for e in self.events if name is None or e["event"] == name]
        self.events = [e for e in self.events
                       if not (name is None or e["event"] == name)]
        return evs

    # -- end --------------------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL this QEMU if it still runs; whether it did."""
        if self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            return False
        return True

    def kill_for_stop(self):
        if self.kill():
            self.stop_killed = True

    def close(self):
        global cut_short
        _running.discard(self)
        for s in (getattr(self, "qs", None), getattr(self, "ms", None)):
            if s:
                try:
                    s.close()
                except OSError:
                    pass
        self.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.close()
        if self.stop_killed and self.proc.returncode == -signal.SIGKILL:
            try:
                with open(self.stderr_path, "rb") as f:
                    report = crash_report(f.read().decode(errors="replace"))
            except OSError:
                report = False
            if not report:
                self.cut = True
                cut_short += 1
        for f in os.listdir(self.tmpdir):
            try:
                os.unlink(os.path.join(self.tmpdir, f))
            except OSError:
                pass
        try:
            os.rmdir(self.tmpdir)
        except OSError:
            pass

    def exit_status(self):
        """None while running; the return code (negative: signal)."""
        return self.proc.poll()
