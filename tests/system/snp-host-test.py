#!/usr/bin/env python3
"""snp-host-test: unmodified Linux kernels boot as an SEV-SNP host on the
fork (-object snp-rmp,host=on, TCG) and bring SNP up by themselves.

Kernels (--kernels, all by default):
  6.12     Debian's linux-image-6.12.117+deb12-amd64 (bookworm-security);
  7.2      Debian's linux-binary/linux-modules 7.2.13+deb14-amd64 (sid);
  testbed  the test bed's own 7.2.8 kernel (tests/system/build-testbed.sh,
           tests/system/guest-kernel.config: everything built in).

What it checks, each against what Linux itself prints or the hardware
layout (research/cpu-snp-host-facts.md gives the sources), with host=on:
  - arch/x86/virt/svm/sev.c finds the RMP table that the firmware
    reserved: "SEV-SNP: RMP table physical range [base - end]", with base
    and end the e820-reserved range at the top of low RAM (6.12
    snp_probe_rmptable_info, 7.2 probe_contiguous_rmptable_info);
  - drivers/iommu/amd/init.c:iommu_snp_enable runs the IOMMU in SNP mode:
    "AMD-Vi: IOMMU SNP support enabled." (6.12 and 7.2: in 7.2
    snp_rmptable_init only maps the table, so the line does not need
    SNPEn);
  - SYSCFG (MSR 0xC0010010) on every CPU, read through /dev/cpu/N/msr:
    MemEncryptionModEn (23) always (the firmware's part); MFDM (19), SNPEn
    (24), VMPLEn (25) set by 6.12's snp_rmptable_init at boot, but in 7.1+
    only by snp_prepare(), which only ccp calls before SNP_INIT: without a
    PSP they stay clear;
  - query-snp-rmp: once SNPEn is set, the RMP table's own pages are
    firmware pages and RAM is hypervisor-owned;
  - 6.12: a host write to a page the kernel made a firmware page
    (tests/system/snp-rmp-pf, rmp_make_private as ccp's
    rmp_mark_pages_firmware does) is an RMP #PF: arch/x86/mm/fault.c's
    report, and the RMP entry that snp_dump_hva_rmpentry dumps decodes as
    the entry query-snp-rmp shows.
With --psp (-device amd-psp,rmp=rmp0; the PSP's SEV firmware): ccp's
"SEV API:" and "SEV-SNP API:" lines, kvm_amd's "SEV-SNP enabled (ASIDs
...)", and on 7.x SNPEn/MFDM/VMPLEn in SYSCFG.
Every kernel boots and loads its modules without a WARNING (with
DESIGN.md's "-cpu EPYC-Genoa,-hypervisor" kvm_amd WARNs: see CPU below).  With host=off, that the same kernels find no SNP: the default
stays today's machine.  Boot times (QEMU start to the initramfs' init, and to
the end of the checks) are printed, not asserted.

Usage: snp-host-test.py [--psp] [--kernels LIST] [--testbed BZIMAGE]
                        [--cpu MODEL] QEMU WORKDIR
"""

import argparse
import glob
import gzip
import json
import lzma
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Debian's own kernels, unmodified (BUILD-FACTS.md): 6.12 from
# bookworm-security, 7.2.13 from sid (its linux-image package is a stub:
# the kernel is in linux-binary-*, the modules in linux-modules-*)
KERNEL_612 = "linux-image-6.12.117+deb12-amd64"
HEADERS_612 = ["linux-headers-6.12.117+deb12-amd64",
               "linux-headers-6.12.117+deb12-common",
               "linux-kbuild-6.12.117+deb12"]
RELEASE_72 = "7.2.13+deb14-amd64"
KERNEL_72 = ["linux-binary-" + RELEASE_72, "linux-modules-" + RELEASE_72]
# Debian's kernels' compiler (6.12's config: CONFIG_CC_VERSION_TEXT)
GCC_612 = "gcc-12"
BOOT_TIMEOUT = 300
# DESIGN.md section 7: a family 19h (Zen 4) CPU, no hypervisor bit
# (6.12/7.2 arch/x86/kernel/cpu/amd.c:bsp_determine_snp); --cpu changes it.
# With the SVM features every SEV-capable AMD CPU has (CPUID Fn8000_000A
# EDX: LbrVirt bit 1, FlushByAsid bit 6, DecodeAssists bit 7): with SEV in
# CPUID but without them, kvm_amd's sev_hardware_setup WARNs
# ("WARN_ON_ONCE(!boot_cpu_has(X86_FEATURE_DECODEASSISTS))", then
# FLUSHBYASID, then "LBRV must be present for SEV-ES support"; 6.12 and
# 7.2) and gives up on SEV.  EPYC-Genoa-v2 lists LBRV and FlushByASID, no
# QEMU model lists DecodeAssists (docs/system/i386/amd-iommu-snp-host.rst)
CPU = "EPYC-Genoa-v2,-hypervisor,+decodeassists"

# SYSCFG (MSR 0xC0010010) bits, arch/x86/include/asm/msr-index.h (6.12, 7.2)
SYSCFG_MFDM = 1 << 19
SYSCFG_MEM_ENCRYPT = 1 << 23
SYSCFG_SNP_EN = 1 << 24
SYSCFG_VMPL_EN = 1 << 25

# The start of every test init: busybox, /proc, /sys, /dev and say()
INIT_PRELUDE = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
# The markers go through printk: a record reaches the console whole, where
# an echo to the console can be split by a kernel message printed meanwhile
# (level 4, under the console's 7: do not boot these with "quiet")
say() {
    if [ -c /dev/kmsg ]; then echo "$*" > /dev/kmsg; else echo "$*"; fi
}
"""

INIT = INIT_PRELUDE + r"""say "snp-host-test: init"
for m in /lib/modules/*.ko; do
    [ -e "$m" ] || continue
    insmod "$m" $(cat "${m%.ko}.args" 2>/dev/null)
    say "snp-host-test: insmod ${m##*/}: $?"
done
for c in /dev/cpu/[0-9]*; do
    [ -e "$c/msr" ] || continue
    n=${c#/dev/cpu/}
    v=$(dd if=$c/msr bs=8 count=1 skip=$((0xC0010010)) iflag=skip_bytes \
        2>/dev/null | od -An -tx8 | tr -d ' ')
    say "snp-host-test: cpu $n syscfg 0x$v"
done
say "snp-host-test: modules loaded"
# last: a module that may oops (the RMP #PF), killing its insmod
for m in /lib/modules/last/*.ko; do
    [ -e "$m" ] || continue
    insmod "$m"
    say "snp-host-test: insmod ${m##*/}: $?"
done
say "snp-host-test: done"
read -t 120 line
poweroff -f
"""


def cache_dir():
    return os.path.join(os.environ.get("SNP_VIOMMU_CACHE") or
                        os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                     os.path.expanduser("~/.cache"),
                                     "snp-viommu"), "snp-host")


def sid_apt_options(cache):
    """apt options for a private index of sid's binary packages: Debian 7.2
    kernels are only in sid, and a sid 'deb' line in the system's sources
    would offer sid upgrades to every package.  apt-get update writes only
    under cache."""
    base = os.path.join(cache, "sid-apt")
    parts = os.path.join(base, "sources.list.d")
    if not os.path.isdir(parts):
        for d in ("lists/partial", "cache/archives/partial", "sources.list.d"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        with open(os.path.join(parts, "sid.sources"), "w") as f:
            f.write("Types: deb\nURIs: http://deb.debian.org/debian\n"
                    "Suites: sid\nComponents: main\nArchitectures: amd64\n"
                    "Signed-By: /usr/share/keyrings/"
                    "debian-archive-keyring.gpg\n")
    return ["-o", "Dir::Etc::SourceList=/dev/null",
            "-o", "Dir::Etc::SourceParts=" + parts,
            "-o", "Dir::State::Lists=" + os.path.join(base, "lists"),
            "-o", "Dir::Cache=" + os.path.join(base, "cache"),
            "-o", "APT::Architectures::=amd64"]


def apt_download(dest, packages, opts=()):
    """apt-get download @packages; extract them (dpkg-deb -x, no install)
    into dest, kept in the cache."""
    if os.path.isdir(dest):
        return dest
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent)
    cmd = ["apt-get", "-q"] + list(opts) + ["download"] + packages
    lists = [o.split("=", 1)[1] for o in opts
             if o.startswith("Dir::State::Lists=")]
    if lists and not glob.glob(os.path.join(lists[0], "*_Packages*")):
        subprocess.run(["apt-get", "-q"] + list(opts) + ["update"],
                       check=True, stdout=subprocess.DEVNULL)
    if subprocess.run(cmd, cwd=tmp, stdout=subprocess.DEVNULL).returncode:
        if not opts:
            raise RuntimeError("apt-get download %s failed" % packages)
        # a private index (sid) may be missing or stale: update it, retry
        subprocess.run(["apt-get", "-q"] + list(opts) + ["update"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    for deb in sorted(glob.glob(os.path.join(tmp, "*.deb"))):
        subprocess.run(["dpkg-deb", "-x", deb, tmp + "/root"], check=True)
    os.rename(tmp + "/root", dest)
    shutil.rmtree(tmp)
    return dest


def fetch_612(cache):
    root = apt_download(os.path.join(cache, KERNEL_612), [KERNEL_612])
    vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))[0]
    return vmlinuz, glob.glob(os.path.join(root, "lib", "modules", "*"))[0]


def fetch_72(cache):
    root = apt_download(os.path.join(cache, "linux-" + RELEASE_72),
                        KERNEL_72, sid_apt_options(cache))
    moddir = os.path.join(root, "usr", "lib", "modules", RELEASE_72)
    return os.path.join(moddir, "vmlinuz"), moddir


def ensure_packages(packages):
    """Install what is missing (as build-testbed.sh does), as root."""
    missing = [p for p in packages if b"ok installed" not in subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL).stdout]
    if not missing:
        return
    if os.getuid() != 0:
        raise RuntimeError("snp-host-test: run: apt-get install -y "
                           + " ".join(missing))
    subprocess.run(["apt-get", "install", "-y", "-q"] + missing, check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def headers_612(cache):
    """Debian's kbuild tree for 6.12.117 (linux-headers-*-amd64, -common,
    linux-kbuild-6.12.117+deb12), extracted, not installed: its absolute
    paths (the amd64 Makefile includes /usr/src/...-common/Makefile, and
    lib/modules/*/build and source) are made to point into the cache."""
    root = os.path.join(cache, "linux-headers-6.12.117+deb12")
    if not os.path.isdir(root):
        apt_download(root, HEADERS_612)
        for link in glob.glob(os.path.join(root, "lib/modules/*/*")):
            target = os.readlink(link)
            if os.path.islink(link) and target.startswith("/"):
                os.unlink(link)
                os.symlink(os.path.relpath(root + target,
                                           os.path.dirname(link)), link)
        mk = glob.glob(os.path.join(root, "usr/src/linux-headers-*-amd64",
                                    "Makefile"))[0]
        with open(mk) as f:
            text = f.read()
        with open(mk, "w") as f:
            f.write(re.sub(r"^include /usr/src/", "include %s/usr/src/" % root,
                           text, flags=re.M))
    return glob.glob(os.path.join(root, "usr/src/linux-headers-*-amd64"))[0]


def build_rmp_pf_module(cache, workdir):
    """tests/system/snp-rmp-pf against Debian's 6.12 headers, with the
    compiler Debian built 6.12.117 with (gcc-12; the headers' Makefile
    names x86_64-linux-gnu-gcc-12).  No BTF: pahole is not needed."""
    ensure_packages([GCC_612, "make"])
    kdir = headers_612(cache)
    want = re.search(r'^CONFIG_CC_VERSION_TEXT="(.*)"$',
                     open(os.path.join(kdir, ".config")).read(), re.M)[1]
    have = subprocess.run(["x86_64-linux-gnu-" + GCC_612, "--version"],
                          stdout=subprocess.PIPE, check=True
                          ).stdout.decode().splitlines()[0]
    if have != want:
        print("note: 6.12 was built with '%s', the module with '%s'"
              % (want, have))
    src = os.path.join(workdir, "snp-rmp-pf")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(os.path.join(TOP, "tests/system/snp-rmp-pf"), src)
    subprocess.run(["nice", "make", "-s", "-C", kdir, "M=" + src,
                    "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(src, "snp_rmp_pf.ko")


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True,
                              stdout=subprocess.PIPE).stdout
    return data


def modinfo(data):
    """The .modinfo section of an ELF64 module: key=value strings."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)

    def section(i):
        name, _, _, _, off, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size
    strtab = section(shstrndx)[1]
    for i in range(shnum):
        name, off, size = section(i)
        if data[strtab + name:data.index(b"\0", strtab + name)] == \
                b".modinfo":
            return dict(kv.split("=", 1) for kv in
                        data[off:off + size].decode(errors="replace")
                        .split("\0") if "=" in kv)
    return {}


def resolve_modules(moddir, names):
    """@names and what they depend on, dependencies first.  Debian's 7.2
    .debs ship no modules.dep: each module's .modinfo 'depends=' says it.
    Returns [(name, decompressed bytes)]; names built in are skipped (no
    file): their 'depends' is empty."""
    index = {}
    for path in glob.glob(os.path.join(moddir, "kernel", "**", "*.ko*"),
                          recursive=True):
        base = os.path.basename(path).split(".ko")[0]
        index[base.replace("-", "_")] = path
    order, seen = [], set()

    def visit(name):
        name = name.replace("-", "_")
        if name in seen or name not in index:
            return
        seen.add(name)
        data = read_module(index[name])
        for dep in filter(None, modinfo(data).get("depends", "").split(",")):
            visit(dep)
        order.append((name, data))
    for n in names:
        visit(n)
    return order


def build_initramfs(out, modules, last=(), init=INIT, binaries=()):
    """busybox, @init (the init above), @modules [(name, bytes)] loaded in
    order, then the .ko files @last; @binaries go to /bin."""
    root = os.path.join(out, "initramfs")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "lib/modules/last"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for path in binaries:
        shutil.copy(path, os.path.join(root, "bin"))
    with open(os.path.join(root, "init"), "w") as f:
        f.write(init)
    os.chmod(os.path.join(root, "init"), 0o755)
    # busybox insmod takes the module file as is (init_module, no
    # decompression): modules are stored decompressed
    for i, (name, data) in enumerate(modules):
        with open(os.path.join(root, "lib", "modules",
                               "%02d-%s.ko" % (i, name)), "wb") as f:
            f.write(data)
    for path in last:
        shutil.copy(path, os.path.join(root, "lib", "modules", "last"))
    cpio = os.path.join(out, "initramfs.cpio")
    files = subprocess.run(["find", "."], cwd=root, check=True,
                           stdout=subprocess.PIPE).stdout
    with open(cpio, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                       input=files, stdout=f, check=True)
    return cpio


class Machine:
    def __init__(self, qemu, kernel, initrd, host, workdir, psp=False,
                 smp=2, extra=(), append="", wrapper=(), cpu=None):
        """@extra: more QEMU options; @append: more kernel arguments;
        @wrapper: a command to run QEMU under (nice)"""
        self.qmp_path = os.path.join(workdir, "qmp-%d.sock" % host)
        self.events = []
        args = [*wrapper, qemu, "-M", "q35", "-accel", "tcg", "-m", "1G",
                "-smp", str(smp), "-cpu", cpu or CPU,
                "-display", "none", "-nodefaults", "-serial", "stdio",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                "-object", "snp-rmp,id=rmp0" + (",host=on" if host else ""),
                "-device", "amd-iommu,dma-remap=on,snp=on,rmp=rmp0",
                "-kernel", kernel, "-initrd", initrd, "-no-reboot",
                # no_timer_check: a loaded host can starve TCG long enough
                # for setup_IO_APIC's timer check to panic the kernel
                # ("timer doesn't work through Interrupt-remapped IO-APIC")
                "-append", ("console=ttyS0 panic=-1 no_timer_check " +
                            append).strip(),
                *extra]
        if psp:
            args += ["-device", "amd-psp,rmp=rmp0"]
        self.start = time.time()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=workdir)
        self.console = []
        self.pending = b""
        self.qmp = None
        for _ in range(200):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(BOOT_TIMEOUT)
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
            if "event" in r:
                self.events.append(r)
            elif "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (cmd, r["error"]["desc"]))

    def wait_for(self, pattern):
        """Console lines until one matches: a hung QEMU is an error after
        BOOT_TIMEOUT, not a hung test."""
        rx = re.compile(pattern)
        deadline = time.time() + BOOT_TIMEOUT
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.pending:
                raw, self.pending = self.pending.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip()
                self.console.append(line)
                if rx.search(line):
                    return time.time() - self.start
            left = deadline - time.time()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.pending += chunk
        raise RuntimeError("no %r on the console" % pattern)

    def read_rest(self):
        out, _ = self.proc.communicate(timeout=60)
        return out.decode(errors="replace")

    def release(self):
        """init waits after its checks (for QMP queries): let it power off"""
        try:
            self.proc.stdin.write(b"\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def close(self, log=None):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if log:
            with open(log, "w") as f:
                f.write("\n".join(self.console) + "\n")


def find(console, pattern):
    rx = re.compile(pattern)
    return [m for m in (rx.search(l) for l in console) if m]


failures = []
boot_times = []


def check(ok, what):
    print("%s: %s" % ("PASS" if ok else "FAIL", what))
    if not ok:
        failures.append(what)
    return ok


class Kernel:
    """name, vmlinuz, initramfs; snp_at_boot: SNPEn is set at boot without
    a PSP (6.12's snp_rmptable_init); rmp_pf: the RMP #PF module is in the
    initramfs."""
    def __init__(self, name, vmlinuz, initrd, snp_at_boot, rmp_pf=False):
        self.name, self.vmlinuz, self.initrd = name, vmlinuz, initrd
        self.snp_at_boot, self.rmp_pf = snp_at_boot, rmp_pf


def check_no_warning(k, con, tag):
    """No WARN/BUG splat while the kernel booted and loaded its modules
    (kernel/panic.c:__warn "WARNING: ..."; lib/bug.c); the RMP #PF module
    comes after "snp-host-test: modules loaded"."""
    end = next((i for i, l in enumerate(con)
                if "snp-host-test: modules loaded" in l), len(con))
    w = [l for l in con[:end] if re.search(r"WARNING:|kernel BUG|Oops", l)]
    check(not w, "%s %s: no kernel WARNING while booting%s" %
          (k.name, tag, (": " + w[0].strip()) if w else ""))


def check_insmods(k, con, tag):
    for m in find(con, r"snp-host-test: insmod (\d+-(\w+)\.ko): (\d+)"):
        check(m.group(3) == "0", "%s %s: insmod %s" % (k.name, tag,
                                                        m.group(2)))


def check_rmp_pf(k, m):
    """6.12: the RMP #PF of a host write to a firmware page, as
    arch/x86/mm/fault.c (6.12.117) reports it."""
    con = m.console
    ours = find(con, r"snp_rmp_pf: pfn 0x([0-9a-f]+) is a firmware page, "
                     r"writing to it at ([0-9a-f]+)")
    if not check(ours, "%s: snp_rmp_pf made a page a firmware page "
                 "(rmp_make_private)" % k.name):
        return
    pfn, va = int(ours[0].group(1), 16), ours[0].group(2)
    # show_fault_oops: the faulting address (%px), as the module printed it
    check(find(con, r"BUG: unable to handle page fault for address: %s$"
               % va), "%s: BUG: unable to handle page fault for address: %s"
          % (k.name, va))
    # show_fault_oops: U (bit 2) clear, W (bit 1) set, in kernel mode
    check(find(con, r"#PF: supervisor write access in kernel mode"),
          "%s: #PF: supervisor write access in kernel mode" % k.name)
    # the error code (asm/trap_pf.h): P (bit 0, the page is present), W
    # (bit 1), RMP (bit 31, X86_PF_RMP) = 0x80000003; show_fault_oops
    # names it "RMP violation" (P set, RSVD and PK clear, RMP set)
    check(find(con, r"#PF: error_code\(0x80000003\) - RMP violation$"),
          "%s: #PF: error_code(0x80000003) - RMP violation" % k.name)
    # page_fault_oops -> __die("Oops") -> __die_header (dumpstack.c):
    # "Oops: %s: %04lx" with err & 0xffff
    check(find(con, r"Oops: Oops: 0003 \[#1\]"),
          "%s: Oops: Oops: 0003 [#1]" % k.name)
    check(find(con, r"RIP: 0010:snp_rmp_pf_init\+"),
          "%s: the oops is in snp_rmp_pf_init (RIP)" % k.name)
    # show_fault_oops -> snp_dump_hva_rmpentry -> dump_rmpentry
    # (arch/x86/virt/svm/sev.c, pr_fmt "SEV-SNP: "), the assigned case:
    # "PFN 0x%llx, RMP entry: [0x%016llx - 0x%016llx]", raw lo and hi
    dump = find(con, r"SEV-SNP: PFN 0x%x, RMP entry: "
                     r"\[0x([0-9a-f]{16}) - 0x([0-9a-f]{16})\]" % pfn)
    if not check(dump, "%s: SEV-SNP: PFN 0x%x, RMP entry: [...]"
                 % (k.name, pfn)):
        return
    lo = int(dump[0].group(1), 16)
    # struct rmpentry (arch/x86/virt/svm/sev.c, 6.12; the Zen3/4 PPR
    # layout): assigned 0, pagesize 1, immutable 2, gpa 50:12, asid
    # 60:51, vmsa 61, validated 62.  rmp_make_private(pfn, 0, 4K, 0,
    # true) asks for assigned, 4K, immutable, gpa 0, asid 0.
    raw = {"assigned": lo & 1, "pagesize": (lo >> 1) & 1,
           "immutable": (lo >> 2) & 1, "gpa": (lo >> 12) & ((1 << 39) - 1),
           "asid": (lo >> 51) & 0x3ff, "vmsa": (lo >> 61) & 1,
           "validated": (lo >> 62) & 1}
    check(raw == {"assigned": 1, "pagesize": 0, "immutable": 1, "gpa": 0,
                  "asid": 0, "vmsa": 0, "validated": 0},
          "%s: the dumped entry 0x%016x is a firmware page: %s"
          % (k.name, lo, raw))
    e = m.execute("query-snp-rmp", spa=pfn << 12)[0]
    check(e["assigned"] == bool(raw["assigned"]) and
          e["immutable"] == bool(raw["immutable"]) and
          e["asid"] == raw["asid"] and e["gpa"] == raw["gpa"] << 12 and
          e["validated"] == bool(raw["validated"]) and
          e["page-size"] == ("2m" if raw["pagesize"] else "4k"),
          "%s: query-snp-rmp for PFN 0x%x agrees with the kernel's dump: %s"
          % (k.name, pfn, e))


def check_psp(k, con):
    """--psp: ccp (drivers/crypto/ccp/sev-dev.c, 6.12 and 7.2, dev_info):
    "SEV API:%d.%d build:%d" after legacy INIT, "SEV-SNP API:%d.%d
    build:%d" after SNP_INIT; kvm_amd (arch/x86/kvm/svm/sev.c:
    sev_hardware_setup, pr_fmt "kvm_amd: "): "SEV-SNP %s (ASIDs %u - %u)"
    with "enabled" and SNP ASIDs 1 .. min_sev_asid - 1, min_sev_asid being
    the first ASID of the "SEV %s (ASIDs %u - %u)" line."""
    check(find(con, r"ccp [0-9a-f:.]+: SEV-SNP API:\d+\.\d+ build:\d+"),
          "%s --psp: ccp: SEV-SNP API:" % k.name)
    check(find(con, r"ccp [0-9a-f:.]+: SEV API:\d+\.\d+ build:\d+"),
          "%s --psp: ccp: SEV API:" % k.name)
    sev = find(con, r"kvm_amd: SEV enabled \(ASIDs (\d+) - (\d+)\)")
    if check(sev, "%s --psp: kvm_amd: SEV enabled (ASIDs ...)" % k.name):
        n = int(sev[0].group(1)) - 1
        check(n >= 1 and find(con, r"kvm_amd: SEV-SNP enabled \(ASIDs 1 - "
                              r"%d\)" % n),
              "%s --psp: kvm_amd: SEV-SNP enabled (ASIDs 1 - %d)"
              % (k.name, n))


def firmware_runs(m, workdir, base, end):
    """The runs [start, pages] of firmware pages (assigned, immutable, ASID
    0: ccp's rmp_mark_pages_firmware, 6.12/7.2 drivers/crypto/ccp/
    sev-dev.c) outside the RMP table, read from the table in RAM: 16 KiB
    of bookkeeping, then 16 bytes per 4K page (struct rmpentry, 6.12
    arch/x86/virt/svm/sev.c: assigned bit 0, immutable bit 2, ASID bits
    60:51)."""
    dump = os.path.join(workdir, "rmp.bin")
    m.execute("pmemsave", val=base, size=end + 1 - base, filename=dump)
    with open(dump, "rb") as f:
        table = f.read()
    runs, start = [], None
    count = (base - 0) >> 12        # the pages below the table
    for pfn in range(count + 1):
        off = 0x4000 + pfn * 16
        lo = (int.from_bytes(table[off:off + 8], "little")
              if pfn < count and off + 8 <= len(table) else 0)
        fw = lo & 5 == 5 and not (lo >> 51) & 0x3ff
        if fw and start is None:
            start = pfn
        elif not fw and start is not None:
            runs.append((start << 12, pfn - start))
            start = None
    return runs


def check_firmware_pages(k, m, workdir, base, end):
    """--psp: the kernel's firmware pages, in the table it reads (below
    the table itself: RAM above 4G, which these machines lack, is not
    scanned) and in query-snp-rmp.  6.12/7.2 sev-dev.c: with SNP
    initialised, the SEV-ES TMR is SNP_TMR_SIZE (2 MiB), allocated as one
    naturally aligned block (__snp_alloc_firmware_pages, get_order) and
    made firmware-owned; SNP_INIT gives the IOMMU its event log, which
    drivers/iommu/amd/init.c (amd_iommu_apply_erratum_snp, family 19h
    only: "Increase Event log size to 0x80000") makes 512 KiB."""
    runs = firmware_runs(m, workdir, base, end)
    two_m = 2 << 20
    tmr = [a for a, n in runs
           if -(-a // two_m) * two_m + two_m <= a + (n << 12)]
    check(tmr, "%s --psp: a 2M-aligned block of 512 firmware pages (the "
          "SEV-ES TMR) in the RMP table: %s"
          % (k.name, [(hex(a), n) for a, n in runs][:8]))
    # The IOMMU's event log, from its Event Log Base Address register
    # (MMIO 0x10 of the amd-iommu at 0xfed80000: base bits 51:12, EventLen
    # bits 59:56, 2^EventLen entries of 16 bytes; AMD IOMMU spec 3.4.4):
    # SNP_INIT made it the IOMMU's (ASPFW set_iommu_table_state).
    out = m.execute("human-monitor-command",
                    **{"command-line": "xp /1gx 0xfed80010"})
    reg = int(out.split(":")[1].split()[0], 16)
    evt, evt_len = reg & 0x000ffffffffff000, 16 << ((reg >> 56) & 0xf)
    check(evt and evt_len == 512 << 10,
          "%s --psp: the IOMMU's event log is 512 KiB (0x%x at 0x%x)"
          % (k.name, evt_len, evt))
    e = m.execute("query-snp-rmp", spa=evt, count=evt_len >> 12)
    check(evt and all(x["assigned"] and x["immutable"] and not x["asid"]
                      for x in e),
          "%s --psp: the IOMMU's event log pages are firmware pages"
          % k.name)
    for a, n in runs[:16]:
        e = m.execute("query-snp-rmp", spa=a, count=n)
        check(len(e) == n and all(x["assigned"] and x["immutable"] and
                                  not x["asid"] for x in e),
              "%s --psp: query-snp-rmp shows the %d firmware pages at "
              "0x%x" % (k.name, n, a))


def run_host(qemu, k, workdir, psp):
    m = Machine(qemu, k.vmlinuz, k.initrd, True, workdir, psp)
    try:
        init = m.wait_for(r"snp-host-test: init")
        done = m.wait_for(r"snp-host-test: done")
        con = m.console
        rng = find(con, r"SEV-SNP: RMP table physical range "
                        r"\[0x([0-9a-f]+) - 0x([0-9a-f]+)\]")
        # arch/x86/kernel/e820.c:e820__print_table, E820_TYPE_RESERVED:
        # "reserved" in 6.12, " device reserved" in 7.2
        e820 = find(con, r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] "
                         r"+(device )?reserved$")
        check(rng, "%s: the kernel finds the RMP table "
                   "(SEV-SNP: RMP table physical range)" % k.name)
        if rng:
            base, end = (int(x, 16) for x in rng[0].groups())
            check(any(int(a, 16) <= base and end <= int(b, 16)
                      for a, b, _ in (e.groups() for e in e820)),
                  "%s: the RMP table 0x%x-0x%x lies in an e820-reserved "
                  "range" % (k.name, base, end))
            check(base % (2 << 20) == 0 and (end + 1) % (2 << 20) == 0,
                  "%s: the RMP table is 2M-aligned at both ends (no "
                  "'Reserving start/end of RMP table' fixup)" % k.name)
            check(not find(con, r"Reserving start/end of RMP table"),
                  "%s: no e820 fixup was needed" % k.name)
        check(find(con, r"AMD-Vi: IOMMU SNP support enabled"),
              "%s: AMD-Vi: IOMMU SNP support enabled." % k.name)
        check(not find(con, r"SNP cannot be supported|RMP initialization "
                            r"failed|does not cover full system RAM|"
                            r"SNP init failed"),
              "%s: no SNP setup failure" % k.name)
        check_insmods(k, con, "host=on")
        check_no_warning(k, con, "host=on")
        snp_on = k.snp_at_boot or psp
        sys_cfg = find(con, r"snp-host-test: cpu (\d+) syscfg 0x([0-9a-f]+)")
        check(len(sys_cfg) == 2, "%s: SYSCFG read on both CPUs" % k.name)
        for s in sys_cfg:
            v = int(s.group(2), 16)
            check(v & SYSCFG_MEM_ENCRYPT, "%s: cpu %s SYSCFG 0x%x has "
                  "MemEncryptionModEn" % (k.name, s.group(1), v))
            want = SYSCFG_MFDM | SYSCFG_SNP_EN | SYSCFG_VMPL_EN
            if snp_on:
                check(v & want == want, "%s: cpu %s SYSCFG 0x%x has MFDM, "
                      "SNPEn, VMPLEn" % (k.name, s.group(1), v))
            else:
                # 7.1+: only snp_prepare() (ccp, before SNP_INIT) sets them
                check(v & want == 0, "%s: cpu %s SYSCFG 0x%x: no MFDM, "
                      "SNPEn, VMPLEn without a PSP (7.x snp_prepare)"
                      % (k.name, s.group(1), v))
        if rng and snp_on:
            e = m.execute("query-snp-rmp", spa=base, count=2)
            check(all(x["assigned"] and x["immutable"] and not x["asid"]
                      for x in e), "%s: the RMP's own pages are firmware "
                  "pages (assigned, immutable, ASID 0)" % k.name)
            e = m.execute("query-snp-rmp", spa=16 << 20)[0]
            check(not e["assigned"] and e["page-size"] == "4k",
                  "%s: RAM the kernel cleared is hypervisor-owned, 4K"
                  % k.name)
        if k.rmp_pf:
            check_rmp_pf(k, m)
        if psp:
            check_psp(k, con)
            if rng:
                check_firmware_pages(k, m, workdir, base, end)
        print("%s boot time, host=on%s: %.1f s to init, %.1f s to the "
              "end of the checks" % (k.name, " --psp" if psp else "",
                                     init, done))
        boot_times.append((k.name, "host=on", init, done))
        m.release()
    finally:
        m.close(os.path.join(workdir, "console-host-on.log"))
        if failures:
            print("\n".join("console: " + l for l in m.console[-80:]))


def run_plain(qemu, k, workdir):
    m = Machine(qemu, k.vmlinuz, k.initrd, False, workdir)
    try:
        init = m.wait_for(r"snp-host-test: init")
        done = m.wait_for(r"snp-host-test: done")
        con = m.console
        check(not find(con, r"RMP table physical range"),
              "%s host=off: the kernel finds no RMP" % k.name)
        check(not find(con, r"IOMMU SNP support enabled"),
              "%s host=off: no IOMMU SNP mode" % k.name)
        check_insmods(k, con, "host=off")
        check_no_warning(k, con, "host=off")
        for s in find(con, r"snp-host-test: cpu (\d+) syscfg "
                           r"0x([0-9a-f]+)"):
            check(int(s.group(2), 16) == 0, "%s host=off: cpu %s SYSCFG "
                  "reads 0 as before" % (k.name, s.group(1)))
        if k.rmp_pf:
            check(find(con, r"snp_rmp_pf: no host SEV-SNP") and
                  not find(con, r"RMP violation"),
                  "%s host=off: no host SNP, no RMP #PF" % k.name)
        print("%s boot time, host=off: %.1f s to init, %.1f s to the end "
              "of the checks" % (k.name, init, done))
        boot_times.append((k.name, "host=off", init, done))
        m.release()
    finally:
        m.close(os.path.join(workdir, "console-host-off.log"))
        if failures:
            print("\n".join("console: " + l for l in m.console[-60:]))


# The modules each Debian kernel loads: msr (/dev/cpu/N/msr), ccp (the
# PSP driver), kvm and kvm_amd (sev_hardware_setup: SNP_INIT via ccp),
# and what they depend on
MODULES = ["msr", "ccp", "kvm", "kvm_amd"]


def main():
    global CPU
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("qemu")
    ap.add_argument("workdir")
    ap.add_argument("--psp", action="store_true",
                    help="add -device amd-psp,rmp=rmp0 and check what "
                         "needs the PSP")
    ap.add_argument("--kernels", default="6.12,7.2,testbed")
    ap.add_argument("--cpu", default=CPU, help="-cpu (default %(default)s)")
    ap.add_argument("--testbed", help="the test bed's bzImage (default: "
                    "QEMU's build dir/../system/bzImage)")
    a = ap.parse_args()
    a.qemu = os.path.abspath(a.qemu)
    CPU = a.cpu
    workdir = os.path.abspath(a.workdir)
    if a.psp and not re.search(rb'^name "amd-psp"', subprocess.run(
            [a.qemu, "-device", "help"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL).stdout, re.M):
        print("snp-host-test: --psp: %s has no amd-psp device" % a.qemu)
        return 1
    os.makedirs(workdir, exist_ok=True)
    cache = cache_dir()
    kernels = []
    for name in a.kernels.split(","):
        out = os.path.join(workdir, name)
        os.makedirs(out, exist_ok=True)
        if name == "6.12":
            vmlinuz, moddir = fetch_612(cache)
            pf = build_rmp_pf_module(cache, out)
            kernels.append(Kernel(name, vmlinuz, build_initramfs(
                out, resolve_modules(moddir, MODULES), [pf]), True, True))
        elif name == "7.2":
            vmlinuz, moddir = fetch_72(cache)
            kernels.append(Kernel(name, vmlinuz, build_initramfs(
                out, resolve_modules(moddir, MODULES)), False))
        elif name == "testbed":
            bz = os.path.abspath(a.testbed or os.path.join(os.path.dirname(
                a.qemu), "..", "system", "bzImage"))
            if not os.path.exists(bz):
                check(False, "testbed: no %s (make testbed)" % bz)
                continue
            # everything built in (guest-kernel.config): no modules
            kernels.append(Kernel(name, bz, build_initramfs(out, []), False))
        else:
            ap.error("unknown kernel %s" % name)
    for k in kernels:
        print("== %s: %s" % (k.name, k.vmlinuz))
        run_host(a.qemu, k, os.path.join(workdir, k.name), a.psp)
        run_plain(a.qemu, k, os.path.join(workdir, k.name))
    print("boot times (TCG, 2 vCPUs, 1 GiB; QEMU start to init / to the "
          "end of the checks):")
    for name, mode, init, done in boot_times:
        print("  %-8s %-8s %5.1f s %5.1f s" % (name, mode, init, done))
    print("snp-host-test: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
