#!/usr/bin/python3
"""Tests of how `make fuzz` (scripts/fuzz.sh) ends, and of how the Python
fuzzers stop.

  fuzz-sh-test.py [--tree DIR] [--qemu BIN] [-v] [TEST...]

fuzz.sh runs in a copy of DIR (default: this checkout) whose fuzzers are
fakes: a libFuzzer that writes what real libFuzzer writes (status lines
"#N", "stat::number_of_executed_units: N" on exit, on SIGINT and SIGTERM
too, exit status 72 then; artifacts under -artifact_prefix) and Python
fuzzers that print the `fuzz: N executions, M crashes, K mismatches` line.
Each fake records what it did, so that the figures fuzz.sh prints can be
checked against what ran.  What a run must do (README.md, `make fuzz`):
- end within FUZZ_TIME, though libFuzzer replays its whole corpus before
  it checks -max_total_time (it has no bound on the replay);
- end with the `fuzz:` line and the right figures when SIGINT (Ctrl-C: the
  terminal signals the whole foreground process group) or SIGTERM (kill,
  or timeout(1), which signals the whole process group) comes at any
  point, during the sum-up too;
- count a crash once per reproducer, and a run that died with none;
- leave no process behind.
With --qemu, the real difffuzz.py and qmpfuzz.py are also stopped with
SIGINT and SIGTERM: each must print its `fuzz:` line within seconds and
leave no QEMU running.

SPDX-License-Identifier: GPL-2.0-or-later
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

FAKE_LIBFUZZER = r'''#!/usr/bin/python3
import os, signal, sys, time
mode = os.environ["FAKE_LF"]
state = os.environ["FAKE_STATE"]
prefix = [a.split("=", 1)[1] for a in sys.argv if
          a.startswith("-artifact_prefix=")][0]
count = 0


def record(n):
    """What ran, for the test (atomically: a SIGKILL may come)."""
    path = os.path.join(state, "lf-%d" % os.getpid())
    with open(path + ".tmp", "w") as f:
        f.write("%d\n" % n)
    os.replace(path + ".tmp", path)


def finish(code, interrupted=False):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if interrupted:
        print("==%d== libFuzzer: run interrupted; exiting" % os.getpid())
    print("stat::number_of_executed_units: %d" % count)
    sys.stdout.flush()
    record(count)
    open(os.path.join(state, "ended-lf-%d" % os.getpid()), "w").close()
    os._exit(code)


def crash(name, n):
    global count
    count = n
    with open(prefix + name, "w") as f:
        f.write("input\n")
    print("==%d== ERROR: libFuzzer: deadly signal" % os.getpid())
    finish(1)


# real libFuzzer sets its handlers only once QEMU is up (about 0.5 s):
# until then SIGINT and SIGTERM have their default action
record(0)
time.sleep(float(os.environ.get("FAKE_LF_START", "0")))


def stopped(signum, frame):
    if mode == "report-on-stop":    # an ASan report the stop cuts short
        print("==%d==ERROR: AddressSanitizer: heap-buffer-overflow on "
              "address 0x602000000011" % os.getpid())
    finish(72, True)


signal.signal(signal.SIGINT, stopped)
signal.signal(signal.SIGTERM, stopped)
started = os.path.join(state, "started-" + os.path.basename(prefix))
first = not os.path.exists(started)
open(started, "w").close()
if mode in ("replay", "report-on-stop"):    # longer than the run
    # as generic-fuzz forks a child per input, one that outlives it
    if os.fork() == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
        os._exit(0)
    while True:
        count += 1
        record(count)           # what ran, if a SIGKILL comes
        if count % 64 == 0:
            print("#%d\tpulse  cov: 1 ft: 1 corp: 1/1b" % count)
            sys.stdout.flush()
        time.sleep(0.002)
elif mode == "crash-once" and first:
    crash("crash-0123abcd", 10)
elif mode == "crash-always":
    crash("crash-feedface", 5)
elif mode == "die":
    count = 7
    print("#7\tINITED cov: 1 ft: 1 corp: 1/1b")
    sys.stdout.flush()
    record(7)
    open(os.path.join(state, "ended-lf-%d" % os.getpid()), "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(0.2)
count = 1000
finish(0)
'''

FAKE_PYTHON_FUZZER = r'''#!/usr/bin/python3
import os, signal, sys, time
name = os.path.basename(sys.argv[0]).split(".")[0]
state = os.environ["FAKE_STATE"]
quick = {"difffuzz": 7, "qmpfuzz": 3}[name]
count = 0


def finish(*_):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("fuzz: %d executions, 0 crashes, 0 mismatches" % count)
    sys.stdout.flush()
    with open(os.path.join(state, "py-" + name), "w") as f:
        f.write("%d\n" % count)
    open(os.path.join(state, "ended-" + name), "w").close()
    os._exit(0)


signal.signal(signal.SIGINT, finish)
signal.signal(signal.SIGTERM, finish)
if os.environ["FAKE_PY"] == "long":     # ignores --time
    while True:
        time.sleep(0.1)
        count += 1
count = quick
finish()
'''

# a command of PATH that, on its FAKE_K-th call (whose arguments hold
# FAKE_MATCH) after FAKE_ENDED fuzzers ended, sends FAKE_SIG to its process
# group (as Ctrl-C or timeout(1) would), and then does its job
WRAPPER = r'''#!/bin/sh
ended=0
for f in "$FAKE_STATE"/ended-*; do
    [ ! -e "$f" ] || ended=$((ended + 1))
done
case "$*" in *"${FAKE_MATCH-}"*) ;; *) ended=-1 ;; esac
if [ "$ended" -ge "$FAKE_ENDED" ]; then
    i=1
    while [ -d "$FAKE_STATE/call-$i" ] || \
            ! MKDIR "$FAKE_STATE/call-$i" 2>/dev/null; do
        i=$((i + 1))
    done
    if [ "$i" = "$FAKE_K" ]; then
        echo "${0##*/} $*" > "$FAKE_STATE/fired"
        kill -"$FAKE_SIG" 0
    fi
fi
exec REAL "$@"
'''
WRAPPED = ("awk", "basename", "cat", "date", "grep", "mv", "sed", "sort",
           "tail", "tr", "wc")

# a "QEMU" that connects to qtest.py's two sockets and then resets them
# (FAKE_QEMU=reset: it died) or sends nothing (hang: it hangs)
FAKE_QEMU = r'''#!/usr/bin/python3
import os, socket, sys, time
a = sys.argv
paths = [a[a.index("-qtest") + 1][len("unix:"):],
         a[a.index("-chardev") + 1].split("path=")[1].split(",")[0]]
socks = []
for p in paths:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(p)
    socks.append(s)
if os.environ["FAKE_QEMU"] == "reset":
    # greet, and close with the client's qmp_capabilities unread: its
    # recv() then fails with ECONNRESET
    socks[1].sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
    time.sleep(0.3)
    socks[1].close()
    time.sleep(0.5)
    sys.exit(1)
time.sleep(3600)
'''

FUZZ_LINE = re.compile(r"^fuzz: (\d+) executions, (\d+) crashes, "
                       r"(\d+) mismatches$")


class Failure(Exception):
    pass


def default_signals():
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def running_under(path):
    """Processes (but this one) whose command line names @path."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if path in cmd:
            found.append((int(pid), cmd))
    return found


def kill_under(path):
    for pid, _ in running_under(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def check_nothing_left(path, what):
    """Fail (and kill them) if processes that name @path still run."""
    time.sleep(0.3)
    left = running_under(path)
    if left:
        kill_under(path)
        raise Failure("%s: left running:\n%s" % (
            what, "\n".join("%d: %s" % p for p in left)))


class Sandbox:
    """A copy of the tree with fake fuzzers, and one run of fuzz.sh."""

    def __init__(self, tree, lf="quick", py="quick"):
        self.dir = tempfile.mkdtemp(prefix="fuzz-sh-test-")
        top = os.path.join(self.dir, "top")
        os.makedirs(os.path.join(top, "scripts"))
        os.makedirs(os.path.join(top, "tests", "fuzz"))
        shutil.copy(os.path.join(tree, "scripts", "fuzz.sh"),
                    os.path.join(top, "scripts"))
        shutil.copy(os.path.join(tree, "tests", "fuzz",
                                 "generic-fuzz-amd-iommu-snp.env"),
                    os.path.join(top, "tests", "fuzz"))
        for name in ("difffuzz.py", "qmpfuzz.py"):
            self._script(os.path.join(top, "tests", "fuzz", name),
                         FAKE_PYTHON_FUZZER)
        self.build = os.path.join(self.dir, "build")
        os.makedirs(os.path.join(self.build, "qemu-fuzz"))
        self._script(os.path.join(self.build, "qemu-fuzz",
                                  "qemu-fuzz-x86_64"), FAKE_LIBFUZZER)
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        self.script = os.path.join(top, "scripts", "fuzz.sh")
        self.env = dict(os.environ, FAKE_LF=lf, FAKE_PY=py,
                        FAKE_STATE=self.state, FUZZ_SEED="1")

    @staticmethod
    def _script(path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)

    def wrap(self, sig, k, ended, commands=WRAPPED, match=""):
        """Put WRAPPER in front of the commands fuzz.sh runs."""
        wdir = os.path.join(self.dir, "wrap")
        os.makedirs(wdir)
        for cmd in commands:
            real = shutil.which(cmd)
            self._script(os.path.join(wdir, cmd),
                         WRAPPER.replace("REAL", real).replace(
                             "MKDIR", shutil.which("mkdir")))
        self.env.update(PATH=wdir + ":" + self.env["PATH"], FAKE_SIG=sig,
                        FAKE_K=str(k), FAKE_ENDED=str(ended),
                        FAKE_MATCH=match)

    def start(self, seconds, jobs):
        env = dict(self.env, FUZZ_JOBS=str(jobs))
        self.t0 = time.monotonic()
        # its own session: signals to "its process group" reach only it;
        # and the signals of a terminal's foreground job, whatever started
        # this test (a background job starts with SIGINT ignored, and dash
        # cannot trap a signal ignored on entry)
        self.proc = subprocess.Popen(
            ["/bin/sh", self.script, self.build, str(seconds)], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_signals)

    def finish(self, limit):
        try:
            out, _ = self.proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            kill_under(self.dir)
            out, _ = self.proc.communicate()
            raise Failure("fuzz.sh still ran after %d s:\n%s" %
                          (limit, out.decode(errors="replace")[-2000:]))
        self.elapsed = time.monotonic() - self.t0
        self.out = out.decode(errors="replace")
        return self.out

    def ran(self):
        """Executions the fakes did, by what they wrote."""
        n = 0
        for f in os.listdir(self.state):
            if (f.startswith("lf-") or f.startswith("py-")) and \
                    not f.endswith(".tmp"):
                with open(os.path.join(self.state, f)) as fh:
                    text = fh.read()
                if not text.strip().isdigit():
                    raise Failure("a fake left %s: %r" % (f, text))
                n += int(text)
        return n

    def check_end(self, executions, crashes, mismatches=0):
        lines = self.out.rstrip("\n").split("\n")
        m = FUZZ_LINE.match(lines[-1])
        if not m:
            raise Failure("the last line is not the fuzz: line:\n" +
                          self.out[-2000:])
        got = tuple(int(x) for x in m.groups())
        want = (executions, crashes, mismatches)
        if got != want:
            raise Failure("%s, expected %d executions, %d crashes, %d "
                          "mismatches:\n%s" % ((lines[-1],) + want +
                                               (self.out[-2000:],)))
        check_nothing_left(self.dir, "fuzz.sh")

    def remove(self):
        kill_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def sandbox(args, **kw):
    return Sandbox(args.tree, **kw)


# -- the tests --------------------------------------------------------------
def bounded(args, seconds, lf_start):
    """A run of SECONDS while libFuzzer's replay, and the Python fuzzers,
    would run on: it must end within SECONDS (and a few for the sum-up)
    with what they did, and no crash."""
    s = sandbox(args, lf="replay", py="long")
    s.env["FAKE_LF_START"] = str(lf_start)
    try:
        s.start(seconds, 2)
        s.finish(60)
        s.check_end(s.ran(), 0)
        if s.elapsed > seconds + 3:
            raise Failure("FUZZ_TIME=%d took %.1f s" % (seconds, s.elapsed))
        if not [f for f in os.listdir(s.state) if f.startswith("lf-")]:
            raise Failure("libFuzzer did not start:\n" + s.out)
        return "%.1f s, %d executions" % (s.elapsed, s.ran())
    finally:
        s.remove()


def test_time_bounds_the_replay(args):
    """Every fuzzer gets TERM at its deadline and sums up."""
    return bounded(args, 4, 0)


def stop(args, how, after=3.0, lf_start=0.0):
    s = sandbox(args, lf="replay", py="long")
    s.env["FAKE_LF_START"] = str(lf_start)
    try:
        s.start(600, 2)
        time.sleep(after)
        t = time.monotonic()
        if how == "INT to the group":
            os.killpg(s.proc.pid, signal.SIGINT)
        elif how == "TERM to the group":
            os.killpg(s.proc.pid, signal.SIGTERM)
        elif how == "HUP to the group":
            os.killpg(s.proc.pid, signal.SIGHUP)
        else:
            os.kill(s.proc.pid, signal.SIGTERM)
        s.finish(60)
        took = time.monotonic() - t
        s.check_end(s.ran(), 0)
        if "fuzz.sh: interrupted" not in s.out:
            raise Failure("no 'fuzz.sh: interrupted':\n" + s.out)
        if took > 3:
            raise Failure("it took %.1f s to stop" % took)
        return "stopped in %.1f s, %d executions" % (took, s.ran())
    finally:
        s.remove()


def test_ctrl_c(args):
    """SIGINT to the process group (Ctrl-C) while everything runs."""
    return stop(args, "INT to the group")


def test_kill(args):
    """SIGTERM to fuzz.sh alone (kill)."""
    return stop(args, "TERM to fuzz.sh")


def test_timeout_around_it(args):
    """SIGTERM to the process group (timeout(1) around make fuzz)."""
    return stop(args, "TERM to the group")


def test_hangup(args):
    """SIGHUP to the process group (the terminal is gone): the fuzzers, in
    process groups of their own, must be stopped too."""
    return stop(args, "HUP to the group")


def test_stop_while_starting(args):
    """Ctrl-C and kill while libFuzzer starts (no handler yet, as real
    libFuzzer until QEMU is up) and while fuzz.sh forks: no crash, and the
    stop is not lost."""
    res = []
    for how in ("INT to the group", "TERM to fuzz.sh"):
        for after in (0.05, 0.3):
            res.append("%s at %.2f s: %s" % (how, after, stop(
                args, how, after=after, lf_start=1.0)))
    return "; ".join(res)


def test_stop_as_a_fuzzer_starts(args):
    """SIGINT, SIGTERM or SIGHUP to the group just before the timeout(1)
    of each fuzzer that starts (libFuzzer 1 and 2, difffuzz) is exec'd:
    no crash, the stop is not lost, nothing is left running."""
    for match in ("generic-1-", "generic-2-", "difffuzz.py"):
        for sig in ("INT", "TERM", "HUP"):
            s = sandbox(args, lf="replay", py="long")
            s.env["FAKE_LF_START"] = "0.5"
            try:
                s.wrap(sig, 1, 0, commands=("timeout",), match=match)
                s.start(600, 2)
                try:
                    s.finish(30)
                    if not os.path.exists(os.path.join(s.state, "fired")):
                        raise Failure("it never started")
                    s.check_end(s.ran(), 0)
                except Failure as e:
                    raise Failure("SIG%s as %s starts: %s" % (sig, match, e))
                if s.elapsed > 5:
                    raise Failure("SIG%s as %s starts: %.1f s" %
                                  (sig, match, s.elapsed))
            finally:
                s.remove()
    return "ok"


def test_deadline_while_starting(args):
    """The deadline comes while libFuzzer starts (no handler yet)."""
    return bounded(args, 2, 4)


def test_signal_while_summing_up(args):
    """SIGINT, SIGTERM or SIGHUP to the group at each command that runs
    after the last fuzzer ended (the workers' counting, the sum-up), the
    three in turn: the figures stay whole and the fuzz: line is the last
    one."""
    points = 0
    for k in range(1, 200):
        sig = ("INT", "TERM", "HUP")[k % 3]
        s = sandbox(args)
        try:
            s.wrap(sig, k, 2 + 2)
            s.start(30, 2)
            s.finish(60)
            if not os.path.exists(os.path.join(s.state, "fired")):
                break
            with open(os.path.join(s.state, "fired")) as f:
                at = f.read().strip()
            try:
                s.check_end(2 * 1000 + 7 + 3, 0)
            except Failure as e:
                raise Failure("SIG%s at call %d (%s): %s" % (sig, k, at, e))
            points += 1
        finally:
            s.remove()
    if points < 20:
        raise Failure("only %d commands after the fuzzers ended" % points)
    return "%d points" % points


def test_report_cut_by_the_deadline(args):
    """The deadline comes while libFuzzer prints a crash report, before
    it could write the reproducer: a crash all the same."""
    s = sandbox(args, lf="report-on-stop")
    try:
        s.start(3, 1)
        s.finish(60)
        s.check_end(s.ran(), 1)
        return "ok"
    finally:
        s.remove()


def test_crash_counted_once(args):
    """Two workers find the same reproducer, then run on: one crash."""
    s = sandbox(args, lf="crash-once")
    try:
        s.start(30, 2)
        s.finish(60)
        s.check_end(2 * (10 + 1000) + 7 + 3, 1)
        if not os.path.exists(os.path.join(s.build, "fuzz", "generic-crashes",
                                           "crash-0123abcd")):
            raise Failure("no reproducer in generic-crashes/:\n" + s.out)
        return "ok"
    finally:
        s.remove()


def test_crash_every_start(args):
    """A seed that crashes at every start: each worker stops after the
    second time; one crash."""
    s = sandbox(args, lf="crash-always")
    try:
        s.start(30, 2)
        s.finish(60)
        s.check_end(2 * 2 * 5 + 7 + 3, 1)
        return "ok"
    finally:
        s.remove()


def test_death_without_reproducer(args):
    """libFuzzer killed by a signal, no reproducer: a crash per worker,
    its executions counted up to its last status line."""
    s = sandbox(args, lf="die")
    try:
        s.start(30, 2)
        s.finish(60)
        s.check_end(2 * 7 + 7 + 3, 2)
        return "ok"
    finally:
        s.remove()


def python_stop(args, fuzzer, sig, after):
    tmp = tempfile.mkdtemp(prefix="fuzz-stop-test-")
    try:
        cmd = ["/usr/bin/python3", os.path.join(args.tree, "tests", "fuzz",
                                                fuzzer),
               "--qemu", args.qemu, "--seed", "3", "--time", "600"]
        if fuzzer == "difffuzz.py":
            cmd += ["--programs", "1000000"]
        else:
            cmd += ["--out", os.path.join(tmp, "out")]
        # TMPDIR: every QEMU's socket path, so its command line, names tmp
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT,
                             env=dict(os.environ, TMPDIR=tmp),
                             start_new_session=True)
        time.sleep(after)
        t = time.monotonic()
        p.send_signal(sig)
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise Failure("%s still ran 30 s after signal %d" % (fuzzer, sig))
        took = time.monotonic() - t
        out = out.decode(errors="replace")
        last = out.rstrip("\n").split("\n")[-1]
        m = FUZZ_LINE.match(last)
        if not m or int(m.group(1)) == 0 or m.group(2) != "0":
            raise Failure("%s, signal %d: last line %r:\n%s" %
                          (fuzzer, sig, last, out[-2000:]))
        if took > 10:
            raise Failure("%s took %.1f s to stop" % (fuzzer, took))
        check_nothing_left(tmp, fuzzer)
        return "%s, signal %d at %.1f s: %s in %.1f s" % (
            fuzzer, sig, after, last, took)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_python_fuzzers_stop(args):
    """The real difffuzz.py and qmpfuzz.py on SIGINT and on SIGTERM, at
    a few moments (a QEMU that starts, a program that runs)."""
    if not args.qemu:
        return "skipped (no --qemu)"
    return "; ".join(python_stop(args, f, s, t)
                     for f in ("difffuzz.py", "qmpfuzz.py")
                     for s, t in ((signal.SIGINT, 1.5),
                                  (signal.SIGTERM, 3.0)))


# runs FUZZER with ARGS, sending itself SIGTERM just before its QEMU
# number N starts: the stop comes between two programs
STOP_BEFORE_QEMU = r'''
import os, runpy, signal, sys
fuzzer, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, os.path.dirname(fuzzer))
import qtest
real, calls = qtest.subprocess.Popen, [0]


def popen(*a, **k):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*a, **k)


qtest.subprocess.Popen = popen
sys.argv = [fuzzer] + sys.argv[3:]
runpy.run_path(fuzzer, run_name="__main__")
'''


def test_python_stop_between_programs(args):
    """A stop that comes after a program ended and before the next QEMU
    started: that QEMU is killed at once, and is no crash."""
    if not args.qemu:
        return "skipped (no --qemu)"
    res = []
    for fuzzer in ("difffuzz.py", "qmpfuzz.py"):
        tmp = tempfile.mkdtemp(prefix="fuzz-stop-test-")
        try:
            cmd = ["/usr/bin/python3", "-c", STOP_BEFORE_QEMU,
                   os.path.join(args.tree, "tests", "fuzz", fuzzer), "3",
                   "--qemu", args.qemu, "--seed", "3", "--programs", "10",
                   "--minimize", "0"]
            if fuzzer == "qmpfuzz.py":
                cmd += ["--out", os.path.join(tmp, "out")]
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120,
                               env=dict(os.environ, TMPDIR=tmp))
            out = p.stdout.decode(errors="replace")
            last = out.rstrip("\n").split("\n")[-1]
            m = FUZZ_LINE.match(last)
            if not m or m.groups() != ("2", "0", "0"):
                raise Failure("%s: last line %r, expected 2 executions, "
                              "0 crashes:\n%s" % (fuzzer, last, out[-2000:]))
            check_nothing_left(tmp, fuzzer)
            res.append("%s: %s" % (fuzzer, last))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return "; ".join(res)


def test_qtest_start_failures(args):
    """qtest.QEMU when QEMU dies (connection reset) or hangs while it
    starts: QEMUDied or QEMUHang, and no process left running."""
    sys.path.insert(0, os.path.join(args.tree, "tests", "fuzz"))
    import qtest
    tmp = tempfile.mkdtemp(prefix="fuzz-qtest-test-")
    try:
        fake = os.path.join(tmp, "qemu")
        Sandbox._script(fake, FAKE_QEMU)
        res = []
        for mode, want in (("reset", qtest.QEMUDied),
                           ("hang", qtest.QEMUHang)):
            os.environ["FAKE_QEMU"] = mode
            try:
                qtest.QEMU(fake, ["-name", tmp], timeout=1.0)
                raise Failure("%s: QEMU() returned" % mode)
            except want:
                pass
            except Exception as e:
                raise Failure("%s: %s instead of %s" % (
                    mode, type(e).__name__, want.__name__))
            check_nothing_left(tmp, "qtest.QEMU, " + mode)
            res.append("%s: %s" % (mode, want.__name__))
        return ", ".join(res)
    finally:
        os.environ.pop("FAKE_QEMU", None)
        shutil.rmtree(tmp, ignore_errors=True)


TESTS = [test_time_bounds_the_replay, test_ctrl_c, test_kill,
         test_timeout_around_it, test_hangup, test_stop_while_starting,
         test_stop_as_a_fuzzer_starts, test_deadline_while_starting,
         test_signal_while_summing_up,
         test_report_cut_by_the_deadline,
         test_crash_counted_once, test_crash_every_start,
         test_death_without_reproducer, test_qtest_start_failures,
         test_python_fuzzers_stop, test_python_stop_between_programs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", default=os.path.dirname(os.path.dirname(HERE)),
                    help="the tree whose fuzz.sh and fuzzers are tested")
    ap.add_argument("--qemu", help="a qemu-system-x86_64 for the Python "
                    "fuzzers' stop test")
    ap.add_argument("tests", nargs="*")
    args = ap.parse_args()
    names = [t.__name__[len("test_"):] for t in TESTS]
    for name in args.tests:
        if name not in names:
            ap.error("no test %s (tests: %s)" % (name, ", ".join(names)))
    failed = 0
    for t in TESTS:
        name = t.__name__[len("test_"):]
        if args.tests and name not in args.tests:
            continue
        try:
            print("ok   %s: %s" % (name, t(args)))
        except Failure as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
        sys.stdout.flush()
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
