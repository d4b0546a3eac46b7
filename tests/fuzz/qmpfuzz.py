#!/usr/bin/python3
"""QMP fuzzer for the snp commands and the rmp-sync properties.

Random programs of QMP commands (snp-rmp-update, snp-rmp-psmash,
query-snp-rmp, snp-iommu-bind-device/unbind, query-rmp-sync, `info
snp-rmp`/`info rmp-sync`, qom-set/qom-get and object-add/object-del of
snp-rmp and iommufd objects with the rmp-sync properties, device_add of
vfio-pci with rmp-sync properties), interleaved with edu DMAs checked
against the RMP, system resets and migrations whose incoming stream is
corrupted, run against one QEMU (meant: the ASan+UBSan build) over QMP and
qtest.

  qmpfuzz.py --qemu build/qemu-asan/qemu-system-x86_64 [--seed S]
             [--programs N | --time SECONDS] [--corpus DIR] [--out DIR]
  qmpfuzz.py --qemu BIN --replay FILE.jsonl

Values are drawn from a dictionary of hostile numbers (0, 2^64-1, RAM and
hole boundaries, SPAs near 2^64, unaligned ones) and random ones, and now
and then of the wrong JSON type.  Programs start from the corpus
(tests/fuzz/corpus/qmp/*.jsonl, replayed as they are, then mutated) or
from scratch.

Findings:
- crash: QEMU dies (signal, ASan/UBSan report, abort) or stops answering;
- mismatch: a documented rule is broken: an snp-rmp-update or
  snp-rmp-psmash that fails changes an entry; one that succeeds does not
  leave the entry it set (page size and attributes); query-snp-rmp returns
  more entries than asked, or entries out of order; one edu DMA emits more
  than one SNP_RMP_FAULT event.
Each finding is written as a replayable program (--out, one JSON op per
line).  The last line is always
``fuzz: N executions, M crashes, K mismatches`` (N: programs).  SIGINT or
SIGTERM ends it the same way, without the program that ran at that moment.

SPDX-License-Identifier: GPL-2.0-or-later
"""

import argparse
import collections
import glob
import json
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qtest                                                # noqa: E402

K4 = 0x1000
M2 = 0x200000
GIG = 1 << 30
RAM_MB = 3072                   # q35: 2G below 4G, 1G above
LOW_TOP = 2 * GIG
HIGH_TOP = 4 * GIG + (RAM_MB * (1 << 20) - LOW_TOP)
EDU_DEVFN = 0x20
EDU_BAR = 0xe0000000
EDU_BUF = 0x40000
U64 = (1 << 64) - 1
U32 = (1 << 32) - 1

QEMU_ARGS = ["-M", "q35", "-m", "%dM" % RAM_MB,
             "-object", "snp-rmp,id=rmp0",
             "-object", "iommufd,id=fd0,rmp-sync=shared,rmp=rmp0",
             "-device", "amd-iommu,id=iommu0,dma-remap=on,snp=on,rmp=rmp0",
             "-device", "edu,id=edu0,addr=04.0,dma_mask=%d" % U64]

# amd-iommu cannot migrate: migrations run on a machine without it
MIG_ARGS = ["-M", "q35", "-m", "%dM" % RAM_MB,
            "-object", "snp-rmp,id=rmp0",
            "-object", "iommufd,id=fd0,rmp-sync=shared,rmp=rmp0"]

SPA_EDGES = [0, K4, 0x9f000, 0xa0000, 0xc0000, 0xf0000, 0x100000, M2,
             LOW_TOP - M2, LOW_TOP - K4, LOW_TOP, LOW_TOP + K4,
             0xe0000000, 0xfec00000, 0xfed80000, 0xfee00000,
             4 * GIG - M2, 4 * GIG, 4 * GIG + K4, HIGH_TOP - M2,
             HIGH_TOP - K4, HIGH_TOP, HIGH_TOP + K4, 1 << 40, 1 << 52,
             1 << 63, U64 - M2 + 1, U64 - K4 + 1, U64 - 0x3fffff,
             U64 & ~(M2 - 1), U64]


class Finding(Exception):
    def __init__(self, kind, what, detail=""):
        super().__init__("%s: %s" % (kind, what))
        self.kind = kind            # "crash" or "mismatch"
        self.what = what
        self.detail = detail


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------
class Values:
    def __init__(self, rng):
        self.r = rng

    def spa(self, align=None):
        r = self.r.random()
        if r < 0.45:
            v = self.r.choice(SPA_EDGES)
            if self.r.random() < 0.3:
                v = (v + self.r.choice([-M2, -K4, -1, 1, K4, M2])) & U64
        elif r < 0.9:
            base = self.r.choice([0, 0x100000, 4 * GIG])
            top = LOW_TOP if base < 4 * GIG else HIGH_TOP
            v = self.r.randrange(base, top)
        else:
            v = self.r.getrandbits(64)
        a = align or self.r.choice([K4, K4, M2, 1])
        if self.r.random() < 0.9:
            v &= ~(a - 1)
        return v

    def u32(self):
        return self.r.choice([0, 1, 2, 0xffff, 0x10000, 0x7fffffff,
                              0x80000000, U32, self.r.getrandbits(32),
                              self.r.randrange(0, 16)])

    def u64(self):
        return self.r.choice([0, 1, U64, 1 << 63, self.r.getrandbits(64),
                              self.spa()])

    def count(self):
        return self.r.choice([0, 1, 2, 511, 512, 513, 1024, 4096, 65536,
                              U32, self.r.randrange(0, 600)])

    def bad(self):
        """A value of the wrong JSON type or out of range."""
        return self.r.choice([-1, 1 << 64, -(1 << 63) - 1, 1.5, "0x1000",
                              "", None, [], {}, True, "x" * 300])

    def maybe_bad(self, v, p=0.04):
        return self.bad() if self.r.random() < p else v

    def rmp_id(self, ids):
        r = self.r.random()
        if r < 0.5:
            return None
        if r < 0.75:
            return "rmp0"
        if r < 0.9 and ids:
            return self.r.choice(ids)
        return self.r.choice(["rmp0", "nope", "", "fd0", "iommu0",
                              "/objects/rmp0", "edu0"])

    def device(self):
        return self.r.choice(["edu0", "edu0", "edu0", "nope", "", "iommu0",
                              "/machine/peripheral/edu0", "fd0", "rmp0",
                              "/machine/unattached/device[0]"])

    def policy(self):
        return self.r.choice(["off", "shared", "all", "all", "most", "",
                              "SHARED"])


# ---------------------------------------------------------------------------
# Program generator
# ---------------------------------------------------------------------------
def qmp_op(execute, **args):
    op = {"op": "qmp", "execute": execute}
    args = {k: v for k, v in args.items() if v is not None}
    if args:
        op["arguments"] = args
    return op


class Generator:
    def __init__(self, rng):
        self.r = rng
        self.v = Values(rng)
        self.rmps = ["rmp0"]
        self.fds = ["fd0"]
        self.n = 0
        self.recent = []            # SPAs of recent snp-rmp-updates

    def spa(self, align=K4):
        if self.recent and self.r.random() < 0.5:
            v = self.r.choice(self.recent)
            if self.r.random() < 0.3:
                v += self.r.randrange(0, 512) * K4
            return v & ~(align - 1)
        return self.v.spa(align)

    def _opt(self, v, p=0.5):
        return v if self.r.random() < p else None

    def op(self):
        r, v = self.r, self.v
        k = r.choices(
            ["update", "psmash", "query", "bind", "unbind", "edu",
             "rmp-obj", "fd-obj", "qom", "vfio", "hmp", "query-sync",
             "reset", "raw"],
            [30, 10, 12, 6, 3, 14, 4, 4, 6, 2, 4, 2, 1, 2])[0]
        if k == "update":
            size = r.choice(["4k", "2m"]) if r.random() > 0.02 else "1g"
            spa = self.spa(M2 if size == "2m" else K4)
            self.recent = (self.recent + [spa])[-8:]
            return qmp_op("snp-rmp-update",
                          rmp=v.rmp_id(self.rmps),
                          spa=v.maybe_bad(spa),
                          **{"page-size": size},
                          assigned=v.maybe_bad(r.random() < 0.6),
                          asid=self._opt(v.maybe_bad(v.u32())),
                          gpa=self._opt(v.maybe_bad(v.u64())),
                          validated=self._opt(r.random() < 0.5),
                          immutable=self._opt(r.random() < 0.2, 0.2))
        if k == "psmash":
            return qmp_op("snp-rmp-psmash", rmp=v.rmp_id(self.rmps),
                          spa=v.maybe_bad(self.spa(M2)))
        if k == "query":
            return qmp_op("query-snp-rmp", rmp=v.rmp_id(self.rmps),
                          spa=v.maybe_bad(self.spa()),
                          count=self._opt(v.maybe_bad(v.count()), 0.7))
        if k == "bind":
            return qmp_op("snp-iommu-bind-device", device=v.device(),
                          asid=v.maybe_bad(v.u32()))
        if k == "unbind":
            return qmp_op("snp-iommu-unbind-device", device=v.device())
        if k == "edu":
            lo = r.random() < 0.8
            addr = self.spa(1) if not lo else r.randrange(0x100000, 0x4000000)
            return {"op": "edu", "addr": addr,
                    "off": r.choice([0, 0, 0x800, 0xfff, 0x1000,
                                     r.randrange(0, 0x2000)]),
                    "cnt": r.choice([1, 8, 64, 0x200, 0x1000, 0x1001,
                                     r.randrange(1, 0x1000)]),
                    "write": r.random() < 0.5}
        if k == "rmp-obj":
            if r.random() < 0.6:
                self.n += 1
                oid = "rmp%d" % self.n
                self.rmps.append(oid)
                args = {"qom-type": "snp-rmp", "id": oid}
                if r.random() < 0.3:
                    args["shadow"] = v.maybe_bad(r.random() < 0.5)
                if r.random() < 0.3:
                    args["asid"] = v.maybe_bad(v.u32())
                return qmp_op("object-add", **args)
            return qmp_op("object-del", id=r.choice(self.rmps + ["fd0"]))
        if k == "fd-obj":
            if r.random() < 0.6:
                self.n += 1
                oid = "fd%d" % self.n
                self.fds.append(oid)
                args = {"qom-type": "iommufd", "id": oid}
                if r.random() < 0.8:
                    args["rmp-sync"] = v.policy()
                if r.random() < 0.6:
                    args["rmp"] = r.choice(self.rmps + ["nope", "fd0", ""])
                if r.random() < 0.4:
                    args["rmp-sync-hitless"] = v.maybe_bad(r.random() < .5)
                return qmp_op("object-add", **args)
            return qmp_op("object-del", id=r.choice(self.fds))
        if k == "qom":
            if r.random() < 0.5:
                path = r.choice(self.rmps)
                prop, val = r.choice([("asid", v.u32()),
                                      ("shadow", r.random() < 0.5)])
            else:
                path = r.choice(self.fds)
                prop, val = r.choice([
                    ("rmp-sync", v.policy()),
                    ("rmp", r.choice(self.rmps + ["nope", ""])),
                    ("rmp-sync-hitless", r.random() < 0.5)])
            if r.random() < 0.3:
                return qmp_op("qom-get", path=path, property=prop)
            return qmp_op("qom-set", path=path, property=prop,
                          value=v.maybe_bad(val, 0.1))
        if k == "vfio":
            args = {"driver": "vfio-pci", "id": "vf%d" % r.randrange(4),
                    "rmp-sync": v.policy(),
                    "rmp": r.choice(self.rmps + ["nope"])}
            if r.random() < 0.5:
                args["iommufd"] = r.choice(self.fds)
            args["sysfsdev" if r.random() < 0.5 else "host"] = \
                r.choice(["/nonexistent", "/", "0000:00:01.0", "zz"])
            return qmp_op("device_add", **args)
        if k == "hmp":
            a = r.choice(["", " %#x" % v.spa(), " %#x %d" % (v.spa(),
                          v.count()), " %d" % r.randrange(-5, 5),
                          " zz", " 0x1000 -1", " %#x %#x" % (v.spa(),
                                                             v.u64())])
            cmd = r.choice(["info snp-rmp" + a, "info rmp-sync" + a,
                            "info snp-rmp" + a])
            return qmp_op("human-monitor-command", **{"command-line": cmd})
        if k == "query-sync":
            return qmp_op("query-rmp-sync")
        if k == "reset":
            return qmp_op("system_reset")
        # raw: a known command with arguments of the wrong shape
        cmd = r.choice(["snp-rmp-update", "snp-rmp-psmash", "query-snp-rmp",
                        "snp-iommu-bind-device", "snp-iommu-unbind-device",
                        "query-rmp-sync"])
        args = {}
        for name in r.sample(["spa", "page-size", "assigned", "asid", "gpa",
                              "count", "device", "rmp", "bogus"],
                             r.randrange(0, 5)):
            args[name] = v.bad() if r.random() < 0.6 else v.u64()
        return {"op": "qmp", "execute": cmd, "arguments": args}

    def program(self, n):
        prog = [self.op() for _ in range(n)]
        if self.r.random() < 0.15:
            prog.append({"op": "migrate", "seed": self.r.getrandbits(32),
                         "flips": self.r.choice([0, 1, 2, 4, 16])})
        return prog

    def mutate(self, prog, n):
        prog = [dict(op) for op in prog]
        for _ in range(self.r.randrange(1, 6)):
            what = self.r.random()
            i = self.r.randrange(len(prog) + 1)
            if what < 0.4 or not prog:
                prog.insert(i, self.op())
            elif what < 0.6:
                del prog[min(i, len(prog) - 1)]
            else:
                op = prog[min(i, len(prog) - 1)]
                a = op.get("arguments")
                if isinstance(a, dict) and a:
                    a = dict(a)
                    key = self.r.choice(list(a))
                    cur = a[key]
                    if isinstance(cur, bool) or self.r.random() < 0.1:
                        a[key] = self.v.bad() if self.r.random() < .3 \
                            else (not cur if isinstance(cur, bool) else cur)
                    elif isinstance(cur, int):
                        a[key] = self.r.choice([
                            self.v.spa(), self.v.u32(), cur ^ (1 << self.r.
                                                               randrange(64)),
                            (cur + self.r.choice([-K4, K4, M2, -M2])) & U64])
                    op["arguments"] = a
        return prog[:max(n * 2, 8)]


# ---------------------------------------------------------------------------
# Runner and oracle
# ---------------------------------------------------------------------------
class Runner:
    def __init__(self, args):
        self.args = args
        self.q = None
        self.tmpdir = tempfile.mkdtemp(prefix="qmpfuzz-")
        self.stats = {}             # command -> [succeeded, refused]
        self.reasons = {}           # (command, error) -> count (-v)

    def start(self, extra=()):
        q = qtest.QEMU(self.args.qemu, QEMU_ARGS + list(extra),
                       timeout=self.args.timeout)
        try:
            q.pci_writel(EDU_DEVFN, 0x10, EDU_BAR)
            q.pci_writew(EDU_DEVFN, 0x04, 0x6)
        except BaseException:
            q.close()
            raise
        return q

    def close(self):
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def crash(self, q, what):
        time.sleep(0.2)
        rc = q.exit_status() if q else None
        err = q.stderr_text() if q else ""
        f = Finding("crash", what + (" (rc %s)" % rc if rc is not None
                                     else ""), err)
        f.qemu = q                  # was it a stop that killed it?
        return f

    def count(self, cmd, ok):
        self.stats.setdefault(cmd, [0, 0])[0 if ok else 1] += 1

    def snapshot(self, q, rmp, spa):
        """The entries of the 2M region around @spa, or the error."""
        base = spa & ~(M2 - 1) if isinstance(spa, int) else spa
        a = {"spa": base, "count": 512}
        if rmp is not None:
            a["rmp"] = rmp
        try:
            return ("ok", q.qmp("query-snp-rmp", **a))
        except qtest.QMPError as e:
            return ("err", e.err.get("desc"))

    def run(self, prog):
        """Run @prog; returns the number of QMP commands, or raises."""
        q = None
        try:
            q = self.start()
            for i, op in enumerate(prog):
                try:
                    if op["op"] == "migrate":
                        self.migrate(prog[:i], op)
                    else:
                        self.one(q, op)
                except Finding as f:
                    f.op_index = i
                    raise
                except (qtest.QEMUDied, qtest.QEMUHang, OSError) as e:
                    f = self.crash(q, "%s at op %d (%s)" % (
                        type(e).__name__, i, op.get("execute", op["op"])))
                    f.op_index = i
                    raise f
            q.qmp("query-status")
            return q.ops
        except (qtest.QEMUDied, qtest.QEMUHang, OSError) as e:
            raise self.crash(q, "%s: %s" % (type(e).__name__, e))
        finally:
            if q:
                q.close()

    def one(self, q, op):
        kind = op["op"]
        if kind == "edu":
            return self.edu(q, op)
        cmd, a = op["execute"], op.get("arguments", {})
        check = cmd in ("snp-rmp-update", "snp-rmp-psmash") and \
            isinstance(a, dict) and isinstance(a.get("spa"), int) and \
            0 <= a["spa"] <= U64 and not isinstance(a["spa"], bool)
        rmp = a.get("rmp") if isinstance(a, dict) else None
        if check:
            before = self.snapshot(q, rmp, a["spa"])
        try:
            if isinstance(a, dict) and a:
                res = q.qmp(cmd, **a)
            else:
                res = q.qmp(cmd)
            ok = True
        except qtest.QMPError as e:
            ok = False
            res = e.err
        self.stats.setdefault(cmd, [0, 0])[0 if ok else 1] += 1
        if not ok and self.args.verbose and isinstance(res, dict):
            import re
            d = re.sub(r"0x[0-9a-f]+|\d+", "N", str(res.get("desc")))
            self.reasons[(cmd, d)] = self.reasons.get((cmd, d), 0) + 1
        if cmd == "query-snp-rmp" and ok:
            n = a.get("count", 1)
            if not isinstance(res, list) or len(res) > max(n, 0):
                raise Finding("mismatch", "query-snp-rmp-count",
                              "%d entries for count %s" % (len(res), n))
            spas = [e["spa"] for e in res]
            if spas != sorted(spas) or len(set(spas)) != len(spas):
                raise Finding("mismatch", "query-snp-rmp-order", str(spas))
        if not check:
            return
        after = self.snapshot(q, rmp, a["spa"])
        if not ok:
            if before != after:
                raise Finding("mismatch", cmd + ":error-changed-rmp",
                              "%s failed (%s) and changed the RMP" %
                              (cmd, res.get("desc") if isinstance(res, dict)
                               else res))
            return
        if after[0] != "ok":
            raise Finding("mismatch", cmd + ":query-after-success",
                          "query after a successful %s: %s" % (cmd, after))
        ents = {e["spa"]: e for e in after[1]}
        if cmd == "snp-rmp-psmash":
            bad = [e for e in after[1] if e["page-size"] != "4k"]
            if bad:
                raise Finding("mismatch", "psmash:not-4k",
                              "entry after PSMASH: %s" % bad[0])
            return
        e = ents.get(a["spa"])
        want = {"page-size": a["page-size"], "assigned": a["assigned"],
                "asid": a.get("asid", 0), "gpa": a.get("gpa", 0),
                "validated": bool(a.get("validated")),
                "immutable": bool(a.get("immutable"))}
        got = {k: e.get(k) for k in want} if e else None
        if got != want:
            raise Finding("mismatch", "update:entry-differs",
                          "after snp-rmp-update %s: entry %s" % (want, got))

    def edu(self, q, op):
        """One edu DMA between RAM at op["addr"] and edu's buffer."""
        q.take_events()
        off = op["off"] & 0xfff
        cnt = op["cnt"]
        if op["write"]:         # edu buffer -> RAM
            src, dst, cmd = EDU_BUF + off, op["addr"], 0x3
        else:
            src, dst, cmd = op["addr"], EDU_BUF + off, 0x1
        q.writeq(EDU_BAR + 0x80, src)
        q.writeq(EDU_BAR + 0x88, dst)
        q.writeq(EDU_BAR + 0x90, cnt)
        q.writeq(EDU_BAR + 0x98, cmd)
        q.clock_step(100 * 1000 * 1000 + 1)
        evs = q.take_events("SNP_RMP_FAULT")
        # One event per faulting request.  A request never crosses a 4K
        # boundary (PCI Express Base Specification, 2.2.7: a memory request
        # must not cross a 4-KB boundary), so a DMA over n 4K pages is n
        # requests: at most one event for each page it touches.
        pages = collections.Counter(e["data"]["iova"] >> 12 for e in evs)
        first, last = op["addr"] >> 12, (op["addr"] + max(cnt, 1) - 1) >> 12
        if any(n > 1 for n in pages.values()) or \
                any(p < first or p > last for p in pages):
            raise Finding("mismatch", "dma:events-per-dma",
                          "%d SNP_RMP_FAULT events for one DMA over 4K "
                          "pages 0x%x-0x%x: %s" % (len(evs), first, last,
                                                   evs[:2]))

    def migrate(self, before, op):
        """Replay the RMP changes of @before on a machine that can migrate,
        save its state to a file, flip bytes of the snp-rmp section, load
        it into a second QEMU: that must fail cleanly or load."""
        path = os.path.join(self.tmpdir, "mig")
        try:
            os.unlink(path)
        except OSError:
            pass
        q = qtest.QEMU(self.args.qemu, MIG_ARGS, timeout=self.args.timeout)
        try:
            return self._migrate(q, path, before, op)
        except (qtest.QEMUDied, qtest.QEMUHang, OSError) as e:
            raise self.crash(q, "outgoing migration: %s: %s" % (
                type(e).__name__, e))
        finally:
            q.close()

    def _migrate(self, q, path, before, op):
        for o in before:
            if o.get("execute") in ("snp-rmp-update", "snp-rmp-psmash") \
                    and isinstance(o.get("arguments"), dict):
                a = dict(o["arguments"])
                if a.get("rmp") not in (None, "rmp0"):
                    continue
                try:
                    q.qmp(o["execute"], **a)
                except qtest.QMPError:
                    pass
        q.qmp("migrate", uri="file:" + path)
        deadline = time.monotonic() + 30
        while True:
            st = q.qmp("query-migrate").get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                raise Finding("crash", "migrate-hang", "status " + st)
            time.sleep(0.05)
        if st != "completed":
            return
        data = bytearray(open(path, "rb").read())
        rng = random.Random(op["seed"])
        at = data.find(b"snp-rmp")
        if at >= 0:
            for _ in range(op["flips"]):
                i = at + rng.randrange(0, min(400, len(data) - at))
                data[i] = rng.choice([0, 0xff, rng.getrandbits(8),
                                      data[i] ^ (1 << rng.randrange(8))])
        with open(path, "wb") as f:
            f.write(data)
        q2 = None
        try:
            q2 = qtest.QEMU(self.args.qemu, MIG_ARGS +
                            ["-incoming", "defer"], timeout=self.args.timeout)
            try:
                q2.qmp("migrate-incoming", uri="file:" + path,
                       **{"exit-on-error": False})
            except qtest.QMPError:
                self.count("migrate-incoming", False)
                return
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                st = q2.qmp("query-migrate").get("status")
                if st in ("completed", "failed"):
                    break
                time.sleep(0.05)
            self.count("migrate-incoming", st == "completed")
            q2.qmp("query-snp-rmp", spa=0, count=16)
        except (qtest.QEMUDied, qtest.QEMUHang, OSError) as e:
            f = self.crash(q2, "incoming migration: %s: %s" % (
                type(e).__name__, e))
            raise f
        finally:
            if q2:
                q2.close()


def load_corpus(d):
    progs = []
    for p in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
        with open(p) as f:
            ops = [json.loads(ln) for ln in f if ln.strip() and
                   not ln.lstrip().startswith("#")]
        progs.append((os.path.basename(p), ops))
    return progs


def save(out, name, prog, f):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name + ".jsonl")
    with open(path, "w") as fh:
        fh.write("# %s: %s\n" % (f.kind, f.what))
        for ln in (f.detail or "").strip().splitlines()[-40:]:
            fh.write("#   %s\n" % ln)
        for op in prog:
            fh.write(json.dumps(op) + "\n")
    return path


def minimize(runner, prog, f, budget):
    """Drop ops while the same finding (kind, what) remains."""
    t0 = time.monotonic()
    key = (f.kind, f.what.split(" at op")[0].split(" (rc")[0])
    if getattr(f, "op_index", None) is not None:
        prog = prog[:f.op_index + 1]
    i = 0
    while i < len(prog) and time.monotonic() - t0 < budget and \
            qtest.stopped_by is None:
        cand = prog[:i] + prog[i + 1:]
        try:
            runner.run(cand)
        except Finding as g:
            if qtest.stopped_by is not None:
                break           # stopped: the smallest one so far
            if (g.kind, g.what.split(" at op")[0].split(" (rc")[0]) == key:
                prog = cand
                continue
        i += 1
    return prog


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--programs", type=int, default=20)
    ap.add_argument("--ops", type=int, default=60)
    ap.add_argument("--time", type=float, default=0,
                    help="run for this many seconds (then --programs "
                    "is ignored)")
    ap.add_argument("--corpus", default=os.path.join(here, "corpus", "qmp"))
    ap.add_argument("--out", default="qmpfuzz-findings")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--minimize", type=float, default=60.0)
    ap.add_argument("--replay", help="run this program (.jsonl) once")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    qtest.stop_on_signals()         # before Runner() makes its directory
    runner = Runner(args)
    try:
        return fuzz(args, runner)
    finally:
        runner.close()


def fuzz(args, runner):
    if args.replay:
        with open(args.replay) as fh:
            prog = [json.loads(ln) for ln in fh
                    if ln.strip() and not ln.lstrip().startswith("#")]
        try:
            n = runner.run(prog)
            print("replay: ok (%d commands)" % n)
            print("fuzz: 1 executions, 0 crashes, 0 mismatches")
            return 0
        except Finding as f:
            print("%s: %s\n%s" % (f.kind.upper(), f.what, f.detail))
            print("fuzz: 1 executions, %d crashes, %d mismatches" % (
                f.kind == "crash", f.kind == "mismatch"))
            return 1

    rng = random.Random(args.seed)
    gen = Generator(rng)
    corpus = load_corpus(args.corpus)
    t0 = time.monotonic()
    execs = crashes = mismatches = cmds = 0
    seen = {}
    idx = 0
    while True:
        if args.time:
            if time.monotonic() - t0 > args.time:
                break
        elif idx >= args.programs:
            break
        if qtest.stopped_by is not None:
            break
        if idx < len(corpus):
            name, prog = corpus[idx]
        elif corpus and rng.random() < 0.3:
            name, base = rng.choice(corpus)
            prog = gen.mutate(base, args.ops)
            name = "mut-" + name
        else:
            gen.rmps, gen.fds, gen.recent = ["rmp0"], ["fd0"], []
            prog = gen.program(args.ops)
            name = "gen"
        idx += 1
        cut = qtest.cut_short
        try:
            n, f = runner.run(prog), None
        except Finding as found:
            n, f = 0, found
        if (f is None or f.kind == "crash") and qtest.cut_by_stop(f, cut):
            break               # it did not finish
        execs += 1
        cmds += n
        if f is None:
            if args.verbose:
                print("program %d (%s): ok" % (idx - 1, name))
            continue
        key = (f.kind, f.what.split(" at op")[0].split(" (rc")[0])
        if f.kind == "crash":
            crashes += 1
        else:
            mismatches += 1
        if key in seen:
            seen[key] += 1
            continue
        seen[key] = 1
        mini = minimize(runner, prog, f, args.minimize)
        path = save(args.out, "%s-%d-%d" % (f.kind, args.seed, idx - 1),
                    mini, f)
        print("=" * 72)
        print("%s: %s (program %d, %s)" % (f.kind.upper(), f.what,
                                           idx - 1, name))
        print("\n".join((f.detail or "").strip().splitlines()[-25:]))
        print("reproducer (%d ops): %s" % (len(mini), path))
        print("  replay: %s --qemu %s --replay %s" % (
            sys.argv[0], args.qemu, path))
        sys.stdout.flush()
    el = time.monotonic() - t0
    print("=" * 72)
    if qtest.stopped_by is not None:
        print("stopped by signal %d; a program cut short is not counted" %
              qtest.stopped_by)
    print("commands (succeeded/refused): " + ", ".join(
        "%s %d/%d" % (c, o, e) for c, (o, e) in sorted(runner.stats.items())))
    for (kind, what), n in sorted(seen.items()):
        print("  %-8s %5d  %s" % (kind, n, what))
    for (c, d), n in sorted(runner.reasons.items(), key=lambda x: -x[1]):
        print("  refused %5d  %s: %s" % (n, c, d[:100]))
    print("throughput: %.2f programs/s, %.0f commands/s (%.1fs)" % (
        execs / el if el else 0, cmds / el if el else 0, el))
    print("fuzz: %d executions, %d crashes, %d mismatches" % (
        execs, crashes, mismatches))
    return 1 if crashes or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
