#!/usr/bin/env python3
"""snp-host-test: an unmodified Debian kernel boots as an SEV-SNP host on
the fork (-object snp-rmp,host=on, TCG) and brings SNP up by itself.

What it checks, each against what Linux itself prints or the hardware
layout (research/cpu-snp-host-facts.md gives the sources):
  - arch/x86/virt/svm/sev.c finds the RMP table that the firmware
    reserved: "SEV-SNP: RMP table physical range [base - end]", with base
    and end the e820-reserved range at the top of low RAM;
  - drivers/iommu/amd/init.c runs the IOMMU in SNP mode:
    "AMD-Vi: IOMMU SNP support enabled.";
  - every CPU reads SYSCFG (MSR 0xC0010010) back with MemEncryptionModEn
    (23), MFDM (19), SNPEn (24) and VMPLEn (25) set: no kernel prints it;
  - the RMP that the kernel cleared is the IOMMU's: query-snp-rmp shows
    the RMP table's own pages as firmware pages (assigned, immutable) and
    RAM as hypervisor pages.
And, with host=off, that the same kernel finds no SNP: the default stays
today's machine.

Usage: snp-host-test.py QEMU WORKDIR
"""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Debian's own kernel, unmodified (BUILD-FACTS.md: bookworm-security)
KERNEL_612 = "linux-image-6.12.117+deb12-amd64"
BOOT_TIMEOUT = 240

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in /lib/modules/*.ko; do insmod "$m"; done
for c in /dev/cpu/[0-9]*; do
    n=${c#/dev/cpu/}
    v=$(dd if=$c/msr bs=8 count=1 skip=$((0xC0010010)) iflag=skip_bytes \
        2>/dev/null | od -An -tx8 | tr -d ' ')
    echo "snp-host-test: cpu $n syscfg 0x$v"
done
echo "snp-host-test: done"
poweroff -f
"""


def fetch_kernel(cache, package):
    """The kernel package's vmlinuz and module tree, from the cache."""
    root = os.path.join(cache, package)
    if not os.path.isdir(root):
        os.makedirs(cache, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=cache)
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, tmp + "/root"], check=True)
        os.rename(tmp + "/root", root)
        shutil.rmtree(tmp)
    vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))[0]
    return vmlinuz, glob.glob(os.path.join(root, "lib", "modules", "*"))[0]


def build_initramfs(out, moddir, modules):
    """busybox, the init above, and @modules (decompressed, in order)."""
    root = os.path.join(out, "initramfs")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "lib/modules"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    with open(os.path.join(root, "init"), "w") as f:
        f.write(INIT)
    os.chmod(os.path.join(root, "init"), 0o755)
    for i, m in enumerate(modules):
        src = glob.glob(os.path.join(moddir, "kernel", m + ".ko*"))[0]
        dst = os.path.join(root, "lib", "modules", "%02d.ko" % i)
        with open(dst, "wb") as f:
            cmd = ["xz", "-dc", src] if src.endswith(".xz") else ["cat", src]
            subprocess.run(cmd, stdout=f, check=True)
    cpio = os.path.join(out, "initramfs.cpio")
    files = subprocess.run(["find", "."], cwd=root, check=True,
                           stdout=subprocess.PIPE).stdout
    with open(cpio, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                       input=files, stdout=f, check=True)
    return cpio


class Machine:
    def __init__(self, qemu, kernel, initrd, host, workdir, smp=2):
        self.qmp_path = os.path.join(workdir, "qmp-%d.sock" % host)
        args = [qemu, "-M", "q35", "-accel", "tcg", "-m", "1G",
                "-smp", str(smp), "-cpu", "EPYC-Genoa,-hypervisor",
                "-display", "none", "-nodefaults", "-serial", "stdio",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                "-object", "snp-rmp,id=rmp0" + (",host=on" if host else ""),
                "-device", "amd-iommu,dma-remap=on,snp=on,rmp=rmp0",
                "-kernel", kernel, "-initrd", initrd, "-no-reboot",
                "-append", "console=ttyS0 panic=-1"]
        self.start = time.time()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=workdir)
        self.console = []
        self.qmp = None
        for _ in range(200):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.qmp_path)
                self.qmp = s.makefile("rw")
                break
            except OSError:
                time.sleep(0.05)
        if not self.qmp:
            raise RuntimeError("no QMP socket: %s" % self.read_rest())
        self.qmp.readline()
        self.execute("qmp_capabilities")

    def execute(self, cmd, **args):
        self.qmp.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
        self.qmp.flush()
        while True:
            r = json.loads(self.qmp.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (cmd, r["error"]["desc"]))

    def wait_for(self, pattern):
        rx = re.compile(pattern)
        deadline = time.time() + BOOT_TIMEOUT
        while time.time() < deadline:
            raw = self.proc.stdout.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip()
            self.console.append(line)
            if rx.search(line):
                return line
        raise RuntimeError("no %r on the console" % pattern)

    def read_rest(self):
        out, _ = self.proc.communicate(timeout=60)
        return out.decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def find(console, pattern):
    rx = re.compile(pattern)
    return [m for m in (rx.search(l) for l in console) if m]


failures = []


def check(ok, what):
    print("%s: %s" % ("PASS" if ok else "FAIL", what))
    if not ok:
        failures.append(what)


def run_host(qemu, kernel, initrd, workdir):
    m = Machine(qemu, kernel, initrd, True, workdir)
    try:
        m.wait_for(r"snp-host-test: done")
        boot = time.time() - m.start
        con = m.console
        rng = find(con, r"SEV-SNP: RMP table physical range "
                        r"\[0x([0-9a-f]+) - 0x([0-9a-f]+)\]")
        e820 = find(con, r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] "
                         r"reserved")
        check(rng, "the kernel finds the RMP table "
                   "(SEV-SNP: RMP table physical range)")
        if rng:
            base, end = (int(x, 16) for x in rng[0].groups())
            check(any(int(a, 16) <= base and end <= int(b, 16)
                      for a, b in (e.groups() for e in e820)),
                  "the RMP table 0x%x-0x%x lies in an e820-reserved range"
                  % (base, end))
            check(base % (2 << 20) == 0 and (end + 1) % (2 << 20) == 0,
                  "the RMP table is 2M-aligned at both ends (no "
                  "'Reserving start/end of RMP table' fixup)")
            check(not find(con, r"Reserving start/end of RMP table"),
                  "no e820 fixup was needed")
        check(find(con, r"AMD-Vi: IOMMU SNP support enabled"),
              "AMD-Vi: IOMMU SNP support enabled.")
        check(not find(con, r"SNP cannot be supported|RMP initialization "
                            r"failed|does not cover full system RAM"),
              "no SNP setup failure")
        sys_cfg = find(con, r"snp-host-test: cpu (\d+) syscfg 0x([0-9a-f]+)")
        check(len(sys_cfg) == 2, "SYSCFG read on both CPUs")
        for s in sys_cfg:
            v = int(s.group(2), 16)
            want = (1 << 19) | (1 << 23) | (1 << 24) | (1 << 25)
            check(v & want == want, "cpu %s SYSCFG 0x%x has MFDM, "
                  "MemEncryptionModEn, SNPEn, VMPLEn" % (s.group(1), v))
        if rng:
            e = m.execute("query-snp-rmp", spa=base, count=2)
            check(all(x["assigned"] and x["immutable"] and not x["asid"]
                      for x in e), "the RMP's own pages are firmware pages "
                  "(assigned, immutable, ASID 0)")
            e = m.execute("query-snp-rmp", spa=16 << 20)[0]
            check(not e["assigned"] and e["page-size"] == "4k",
                  "RAM the kernel cleared is hypervisor-owned, 4K")
        print("boot time, host=on: %.1f s" % boot)
        return boot
    finally:
        m.close()
        if failures:
            print("\n".join("console: " + l for l in m.console[-60:]))


def run_plain(qemu, kernel, initrd, workdir):
    m = Machine(qemu, kernel, initrd, False, workdir)
    try:
        m.wait_for(r"snp-host-test: done")
        boot = time.time() - m.start
        check(not find(m.console, r"RMP table physical range"),
              "host=off: the kernel finds no RMP")
        for s in find(m.console, r"snp-host-test: cpu (\d+) syscfg "
                                 r"0x([0-9a-f]+)"):
            check(int(s.group(2), 16) == 0,
                  "host=off: cpu %s SYSCFG reads 0 as before" % s.group(1))
        print("boot time, host=off: %.1f s" % boot)
        return boot
    finally:
        m.close()


def main():
    qemu, workdir = sys.argv[1:3]
    os.makedirs(workdir, exist_ok=True)
    cache = os.path.join(os.environ.get("SNP_VIOMMU_CACHE") or
                         os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                      os.path.expanduser("~/.cache"),
                                      "snp-viommu"), "snp-host")
    kernel, moddir = fetch_kernel(cache, KERNEL_612)
    initrd = build_initramfs(workdir, moddir, ["arch/x86/kernel/msr"])
    run_host(qemu, kernel, initrd, workdir)
    run_plain(qemu, kernel, initrd, workdir)
    print("snp-host-test: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
