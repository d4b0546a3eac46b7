#!/usr/bin/python3
"""Smoke test of the non-x86 build (make check-build-other).

Issue 9 defect 7: the common code of snp-viommu must build and make sense
without the x86 target.  On qemu-system-aarch64 (virt, with VFIO and
iommufd, so that the rmp-sync engine and its VFIO glue are linked):
  - the snp QAPI commands exist (the schema is the same everywhere, as
    QEMU's misc-i386 commands are) and fail with a clear error;
  - query-rmp-sync works and lists no container; "info rmp-sync" too;
  - an iommufd backend with rmp-sync asks for a granularity source, of
    which an Arm build has none today (Arm CCA's GPT could be one);
  - -object snp-rmp does not exist.
In qemu-storage-daemon, whose schema includes qom.json, no snp command
may appear.  QEMU's tools must run.

SPDX-License-Identifier: GPL-2.0-or-later
"""

import json
import subprocess
import sys

failures = []


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def qmp_session(argv, commands, timeout=60):
    """Run @argv with a QMP monitor on stdio; return the replies."""
    lines = [json.dumps({"execute": "qmp_capabilities"})]
    lines += [json.dumps(c) for c in commands]
    lines.append(json.dumps({"execute": "quit"}))
    p = subprocess.run(argv, input="\n".join(lines) + "\n", text=True,
                       capture_output=True, timeout=timeout)
    replies = []
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "return" in msg or "error" in msg:
            replies.append(msg)
    # the greeting has neither; capabilities answers first
    return replies[1:1 + len(commands)], p


def run_refused(argv):
    """Run QEMU that should refuse @argv at startup; never hang."""
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 0, "", "(still running)")


def main():
    bld = sys.argv[1]
    aarch64 = [bld + "/qemu-system-aarch64", "-M", "virt", "-nodefaults",
               "-display", "none", "-accel", "tcg", "-S", "-qmp", "stdio"]

    r, p = qmp_session(aarch64, [
        {"execute": "query-rmp-sync"},
        {"execute": "snp-rmp-update",
         "arguments": {"spa": 0, "page-size": "4k", "assigned": False}},
        {"execute": "query-snp-iommu-bindings"},
        {"execute": "human-monitor-command",
         "arguments": {"command-line": "info rmp-sync"}},
    ])
    check(len(r) == 4, "aarch64: 4 replies (stderr: %s)" % p.stderr.strip())
    if len(r) == 4:
        check(r[0].get("return") == [], "aarch64: query-rmp-sync is []")
        check("not available" in r[1].get("error", {}).get("desc", ""),
              "aarch64: snp-rmp-update: %s" % r[1])
        check("not available" in r[2].get("error", {}).get("desc", ""),
              "aarch64: query-snp-iommu-bindings: %s" % r[2])
        check("no VFIO container" in r[3].get("return", ""),
              "aarch64: info rmp-sync: %s" % r[3])

    p = run_refused(aarch64[:-2] + ["-object",
                                    "iommufd,id=fd0,rmp-sync=shared"])
    check(p.returncode != 0 and
          "no object that gives page granularity" in p.stderr,
          "aarch64: iommufd rmp-sync without a source: %s" %
          p.stderr.strip())
    p = run_refused(aarch64[:-2] + ["-object", "snp-rmp,id=rmp0"])
    check(p.returncode != 0 and "invalid object type: snp-rmp" in
          p.stderr.lower(),
          "aarch64: no snp-rmp object: %s" % p.stderr.strip())

    qsd = [bld + "/storage-daemon/qemu-storage-daemon", "--chardev",
           "stdio,id=m", "--monitor", "m"]
    r, p = qmp_session(qsd, [{"execute": "query-qmp-schema"}])
    names = [e.get("name") for e in r[0].get("return", [])] if r else []
    check(len(names) > 0, "qemu-storage-daemon: query-qmp-schema")
    for cmd in ("snp-rmp-update", "snp-rmp-psmash", "query-snp-rmp",
                "snp-iommu-bind-device", "query-rmp-sync"):
        check(cmd not in names, "qemu-storage-daemon: no %s" % cmd)

    for tool in ("qemu-img", "qemu-io", "qemu-nbd"):
        p = subprocess.run([bld + "/" + tool, "--version"],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "%s --version" % tool)

    print("check-build-other: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
