#!/usr/bin/env python3
"""snp-host-bench: what the emulated SNP host costs TCG (make bench).

Boots Debian's 6.12 kernel (which sets SNPEn at boot) with snp-rmp host=on
and host=off, and in each runs memloop (tests/bench/memloop.c): a
memory-bound loop whose every 4K page misses the softmmu TLB, so every
access pays the TLB fill, where the RMP check of host writes runs.  The RMP
is as the kernel left it: hypervisor-owned but for the RMP table's own
pages.  Prints the loop's best and median pass, the overhead of host=on,
and the boot times.  A benchmark: figures, no pass or fail.

Usage: snp-host-bench.py QEMU WORKDIR [RUNS]
"""

import importlib.util
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "snp_host_test", os.path.join(HERE, "..", "system", "snp-host-test.py"))
sht = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sht)

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "snp-host-bench: init"
/bin/memloop
echo "snp-host-bench: done"
poweroff -f
"""


def run(qemu, vmlinuz, cpio, host, workdir):
    m = sht.Machine(qemu, vmlinuz, cpio, host, workdir, smp=1)
    try:
        boot = m.wait_for(r"snp-host-bench: init")
        m.wait_for(r"memloop: page")
        m.wait_for(r"snp-host-bench: done")
    finally:
        m.close(os.path.join(workdir, "console-%s.log" %
                             ("on" if host else "off")))
    res = {"boot": boot}
    for line in m.console:
        g = re.search(r"memloop: (\w+) best (\d+) us median (\d+) us", line)
        if g:
            res[g.group(1)] = (int(g.group(2)), int(g.group(3)))
    return res


def main():
    qemu, workdir = os.path.abspath(sys.argv[1]), os.path.abspath(
        sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    os.makedirs(workdir, exist_ok=True)
    memloop = os.path.join(workdir, "memloop")
    subprocess.run(["gcc", "-O2", "-static", "-o", memloop,
                    os.path.join(HERE, "memloop.c")], check=True)
    vmlinuz, _ = sht.fetch_612(sht.cache_dir())
    cpio = sht.build_initramfs(workdir, [], init=INIT, binaries=[memloop])
    results = {True: [], False: []}
    for _ in range(runs):
        for host in (False, True):
            results[host].append(run(qemu, vmlinuz, cpio, host, workdir))
    print("snp-host-bench: Debian 6.12, TCG, 1 vCPU, memloop 192 MiB, "
          "best of %d runs (us per pass; write/read: a byte per 64-byte "
          "line, page: a byte per 4K page):" % runs)
    for mode in ("write", "read", "page"):
        off = min(r[mode][0] for r in results[False])
        on = min(r[mode][0] for r in results[True])
        print("  %-5s host=off %8d  host=on (SNPEn) %8d  overhead %+.1f%%" %
              (mode, off, on, 100.0 * (on - off) / off))
    print("  boot to init: host=off %.1f s, host=on %.1f s (best of %d)" %
          (min(r["boot"] for r in results[False]),
           min(r["boot"] for r in results[True]), runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
