#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The installed fork, as a user starts it: installed-test.py ROOT

ROOT is the installed prefix (DESTDIR + PREFIX).  Checks, each a TAP line:
the binary runs without -M (QEMU's default machine for x86_64 is "pc"),
user networking, VNC and the seccomp sandbox together on q35 with an
e1000e whose option ROM comes from Debian's ipxe-qemu, SeaBIOS from
Debian's seabios actually running, the display back-ends Debian's build
has, our devices, and QEMU's tools.  The expected values are QEMU's and
Debian's, not ours: the default machine and the ROM names are QEMU's
(hw/i386/pc_piix.c, hw/net/e1000e.c), the display list is Debian's
configure line (debian/control).
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

TIMEOUT = 60


class Fail(Exception):
    pass


def run(args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TIMEOUT, **kw)
    return r.returncode, r.stdout.decode(errors="replace")


class Qemu:
    """The installed qemu-system-x86_64 with a QMP socket."""

    def __init__(self, binary, args, tmp):
        self.qmp_path = os.path.join(tmp, "qmp.sock")
        self.log = os.path.join(tmp, "stderr.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [binary, "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
                + args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            self._connect()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _connect(self):
        deadline = time.time() + TIMEOUT
        self.sock = None
        while self.sock is None:
            if self.proc.poll() is not None:
                raise Fail("exited %d: %s" % (self.proc.returncode,
                                               self.output()))
            if time.time() > deadline:
                raise Fail("no QMP socket: %s" % self.output())
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.qmp_path)
                self.sock = s
            except OSError:
                time.sleep(0.05)
        self.sock.settimeout(TIMEOUT)
        self.f = self.sock.makefile("rw")
        self.f.readline()
        self.execute("qmp_capabilities")

    def output(self):
        with open(self.log) as f:
            return f.read().strip()

    def execute(self, cmd, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise Fail("%s: %s" % (cmd, r["error"]["desc"]))
            return r["return"]

    def quit(self):
        try:
            self.execute("quit")
        except (OSError, ValueError, Fail):
            pass
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_default_machine(qemu, tmp):
    """No -M: the machine QEMU marks as x86_64's default, pc (i440fx)."""
    q = Qemu(qemu, ["-display", "none", "-nodefaults", "-S"], tmp)
    try:
        default = [m for m in q.execute("query-machines")
                   if m.get("is-default")]
        if len(default) != 1 or default[0].get("alias") != "pc":
            raise Fail("default machine %s, QEMU's x86_64 default is pc"
                       % default)
        typ = q.execute("qom-get", path="/machine", property="type")
        if typ != default[0]["name"] + "-machine":
            raise Fail("started %s, not the default %s" %
                       (typ, default[0]["name"]))
        return "started %s" % typ
    finally:
        q.quit()


def test_user_vnc_sandbox_firmware(qemu, tmp):
    """q35 with -netdev user, e1000e, -vnc :0 and -sandbox on: SeaBIOS and
    SeaVGABIOS from Debian's seabios run (their debug console says so, with
    Debian's version), and e1000e's option ROM from Debian's ipxe-qemu runs
    (SeaBIOS then looks up the boot order for its PCI slot)."""
    bios_log = os.path.join(tmp, "seabios.log")
    # display :0 (port 5900) unless it is taken: to=99 tries up to :99
    q = Qemu(qemu, ["-M", "q35", "-m", "256M", "-nodefaults",
                    "-display", "none", "-vnc", ":0,to=99",
                    "-sandbox", "on", "-device", "VGA,addr=01.0",
                    "-netdev", "user,id=n0",
                    "-device", "e1000e,netdev=n0,id=nic0,addr=02.0",
                    "-chardev", "file,id=dbg,path=%s" % bios_log,
                    "-device", "isa-debugcon,iobase=0x402,chardev=dbg"],
             tmp)
    try:
        vnc = q.execute("query-vnc")
        if not vnc.get("enabled") or \
                not 5900 <= int(vnc.get("service", 0)) <= 5999:
            raise Fail("VNC not on a display of its own: %s" % vnc)
        rom = q.execute("qom-get", path="/machine/peripheral/nic0",
                        property="romfile")
        if rom != "efi-e1000e.rom":
            raise Fail("e1000e's romfile is %r" % rom)
        info = q.execute("human-monitor-command", **{"command-line":
                                                     "info network"})
        if not re.search(r"\bn0: .*user", info):
            raise Fail("no user netdev: %s" % info)
        want = ["SeaBIOS (version ", "Start SeaVGABIOS (version ",
                "Searching bootorder for: /pci@i0cf8/*@2", "Booting from"]
        deadline = time.time() + TIMEOUT
        text = ""
        while time.time() < deadline:
            with open(bios_log, errors="replace") as f:
                text = f.read()
            if all(w in text for w in want):
                break
            time.sleep(0.2)
        else:
            raise Fail("SeaBIOS log lacks %s: %r" %
                       ([w for w in want if w not in text], text[-300:]))
        versions = re.findall(r"\(version ([^)]*)\)", text)
        if not versions or not all("-debian-" in v for v in versions):
            raise Fail("not Debian's SeaBIOS: %s" % versions)
        q.execute("query-status")
        return "SeaBIOS and SeaVGABIOS %s, e1000e ROM ran, VNC on %s, " \
            "sandbox on" % (versions[0], vnc["service"])
    finally:
        q.quit()
        # QEMU's seccomp filter kills the process on a forbidden call:
        # it must have exited by quit, not by SIGSYS
        if q.proc.returncode not in (0, None):
            raise Fail("exit status %s: %s" % (q.proc.returncode, q.output()))


def test_displays(qemu, tmp):
    """-display help lists Debian's display back-ends, not only none."""
    rc, out = run([qemu, "-display", "help"])
    names = out.split()
    want = ["gtk", "sdl", "curses", "egl-headless", "dbus", "none"]
    missing = [d for d in want if d not in names]
    if rc or missing:
        raise Fail("rc %d, missing %s in: %s" % (rc, missing, out))
    return "displays: %s" % " ".join(n for n in names
                                     if n in want or n == "spice-app")


def test_our_devices(qemu, tmp):
    """amd-iommu has snp, and snp-rmp exists."""
    rc, out = run([qemu, "-device", "amd-iommu,help"])
    if rc or "snp=" not in out or "rmp=" not in out:
        raise Fail("amd-iommu,help: %s" % out)
    rc, out = run([qemu, "-object", "snp-rmp,help"])
    if rc or "snp-rmp options" not in out:
        raise Fail("snp-rmp,help: %s" % out)
    return "amd-iommu snp=, rmp=; snp-rmp"


def test_tools(root, tmp):
    """qemu-img, qemu-io, qemu-nbd and qemu-storage-daemon are installed
    and work on an image."""
    img = os.path.join(tmp, "t.qcow2")
    bindir = os.path.join(root, "bin")
    rc, out = run([os.path.join(bindir, "qemu-img"), "create", "-f", "qcow2",
                   img, "64M"])
    if rc:
        raise Fail("qemu-img create: %s" % out)
    rc, out = run([os.path.join(bindir, "qemu-io"), "-c",
                   "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k", img])
    if rc or "read 65536/65536" not in out:
        raise Fail("qemu-io: %s" % out)
    rc, out = run([os.path.join(bindir, "qemu-img"), "info",
                   "--output=json", img])
    if rc or json.loads(out).get("virtual-size") != 64 << 20:
        raise Fail("qemu-img info: %s" % out)
    for tool in ("qemu-nbd", "qemu-storage-daemon"):
        rc, out = run([os.path.join(bindir, tool), "--version"])
        if rc:
            raise Fail("%s --version: %s" % (tool, out))
    return "qemu-img, qemu-io, qemu-nbd, qemu-storage-daemon"


def main(argv):
    root = os.path.abspath(argv[1])
    qemu = os.path.join(root, "bin", "qemu-system-x86_64")
    tests = [("default machine without -M", test_default_machine, qemu),
             ("-netdev user, -vnc :0, -sandbox on, SeaBIOS and ROMs",
              test_user_vnc_sandbox_firmware, qemu),
             ("-display help", test_displays, qemu),
             ("our devices", test_our_devices, qemu),
             ("QEMU's tools", test_tools, root)]
    print("1..%d" % len(tests))
    failed = 0
    for i, (name, fn, arg) in enumerate(tests, 1):
        tmp = tempfile.mkdtemp(prefix="snp-installed-")
        try:
            detail = fn(arg, tmp)
            print("ok %d %s # %s" % (i, name, detail), flush=True)
        except (Fail, OSError, subprocess.TimeoutExpired, ValueError) as e:
            failed += 1
            print("not ok %d %s: %s" % (i, name, e), flush=True)
        finally:
            subprocess.run(["rm", "-rf", tmp])
    print("installed: %d passed, %d failed" % (len(tests) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
