#!/bin/sh
# fuzz.sh BUILD SECONDS: the fuzzing campaigns of `make fuzz`.
#
#   1. generic-fuzz (libFuzzer, coverage-guided) on amd-iommu,snp=on + edu
#      + snp-rmp, built with clang, ASan and UBSan (BUILD/qemu-fuzz), for
#      SECONDS, in FUZZ_JOBS workers (default 1) that share one corpus;
#   2. at the same time, on another core, the differential fuzzer
#      (tests/fuzz/difffuzz.py) for the first half of SECONDS and then the
#      QMP fuzzer (tests/fuzz/qmpfuzz.py) for the rest, both against the
#      ASan+UBSan build (BUILD/qemu-asan).
#
# SECONDS bounds the run: each fuzzer gets SIGTERM at its deadline
# (timeout(1)) and sums up, libFuzzer too while it still replays its
# corpus, which it does before it ever looks at -max_total_time.
# Everything found is kept under BUILD/fuzz/ (logs, the grown generic-fuzz
# corpus, one reproducer per crash).  The last line is always
#   fuzz: N executions, M crashes, K mismatches
# (N: libFuzzer inputs + differential programs + QMP programs; M: crashing
# inputs or programs; K: unexplained mismatches), also when SIGINT,
# SIGTERM or SIGHUP stops the run early.  The line before it, "campaign:
# ...", sums every run so far (BUILD/fuzz/campaign.tally, one line per
# run), so that a campaign can be spread over many runs.
# FUZZ_SEED=S makes the two Python fuzzers repeatable (default: the time).
set -u
# a stop before the real trap below: remembered, acted on once it is set
early=
trap 'early=1' HUP INT TERM
build=${1-}
total=${2-}
jobs=${FUZZ_JOBS:-1}
for v in "FUZZ_TIME=$total" "FUZZ_JOBS=$jobs"; do
    case ${v#*=} in
    '' | *[!0-9]* | 0*)
        echo "fuzz.sh: $v: a positive number is needed" >&2
        exit 2 ;;
    esac
done
case $0 in */*) top=${0%/*}/.. ;; *) top=.. ;; esac
out="$build/fuzz"

# prepare: a fresh BUILD/fuzz for this run (nothing an earlier run left
# may be read as this run's) and $start.  A signal to the whole process
# group can kill mkdir, rm or date: then it runs once more.
prepare() {
    mkdir -p "$out/generic-corpus" "$out/generic-crashes"
    rm -f "$out/fuzz.stop" "$out/generic.result" "$out"/generic-*.result \
          "$out"/generic-*.found
    : > "$out/difffuzz.log"
    : > "$out/qmpfuzz.log"
    start=$(date +%s)
}
prepare
[ -z "$early" ] || prepare
case $start in '' | *[!0-9]*) start=$(date +%s) ;; esac
case $start in '' | *[!0-9]*) echo "fuzz.sh: date failed" >&2; exit 2 ;; esac

# clock: set $now to the time.  A signal to the whole process group can
# kill date; $now is then the start, and only a stop's path follows.
clock() {
    now=$(date +%s)
    case $now in '' | *[!0-9]*) now=$start ;; esac
}

# Ctrl-C or kill: stop the fuzzers, then sum up what they did
interrupted=
pypid=
workers=
stop() {
    trap '' HUP INT TERM
    trapped=1
    interrupted=1
    : > "$out/fuzz.stop"
    [ -z "$pypid" ] || kill -TERM "$pypid" 2>/dev/null
    halt_workers
}
halt_workers() {
    for wp in $workers; do
        [ -e "$out/generic-${wp%:*}.result" ] || kill -TERM "${wp#*:}" 2>/dev/null
    done
}
# HUP: the terminal is gone; the fuzzers, in process groups of their own,
# would not get it
trap stop HUP INT TERM
[ -z "$early" ] || stop

seed=${FUZZ_SEED:-$start}
half=$(( (total + 1) / 2 ))

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# -- 1. generic-fuzz -------------------------------------------------------
# The configuration travels in the environment (generic_fuzz.c reads it),
# so no QEMU file needs a change; tests/fuzz/generic-fuzz-amd-iommu-snp.env
# is the one place it is written.
. "$top/tests/fuzz/generic-fuzz-amd-iommu-snp.env"
export QEMU_FUZZ_ARGS QEMU_FUZZ_OBJECTS
fuzzer="$build/qemu-fuzz/qemu-fuzz-x86_64"
seeds="$top/tests/fuzz/corpus/generic-fuzz-amd-iommu-snp"
[ -d "$seeds" ] || seeds=

# keep FILE NAME: file a libFuzzer artifact under its NAME: a slow unit
# (-report_slow_units: wall clock, no crash) in generic-slow/, a crash
# reproducer in generic-crashes/, and print a reproducer's name
keep() {
    case $2 in
    slow-unit-*)
        mkdir -p "$out/generic-slow"
        mv "$1" "$out/generic-slow/$2" ;;
    *)
        mv "$1" "$out/generic-crashes/$2"
        echo "$2" ;;
    esac
}

# what starts a report of ASan, UBSan or libFuzzer (a crash, a hang)
report='ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:'

# collect PREFIX: keep what a libFuzzer run left under PREFIX; print the
# names of the crash reproducers
collect() {
    for a in "$1"*; do
        [ -e "$a" ] || continue
        keep "$a" "${a#"$1"}"
    done
}

# One generic-fuzz worker.  libFuzzer re-reads the shared corpus directory
# every second (-reload=1, its default), so the workers take up each
# other's finds; a run ends early only on a crash, and then the worker
# starts another one.  Its figures: generic-W.result, "EXECUTIONS DEATHS
# SECONDS" (DEATHS: runs that ended with no reproducer), and the names of
# its reproducers in generic-W.found.  A stop (fuzz.stop, then TERM
# from stop()) ends it, counted.  TERM is ignored, and so by its sed, grep
# and mv, except while it runs libFuzzer: a TERM to the whole group
# (timeout(1) around make) must not kill what counts and keeps the finds.
#
# Every stop and deadline reaches libFuzzer as SIGTERM, which it sums up
# on (exit 72), like SIGINT; a TERM that comes before libFuzzer has set
# its handler ends it (143), and that is a stop too, not a crash.
generic() {
    w=$1
    log="$out/generic-$w.log"
    run="$out/generic-$w.run"
    art="$out/generic-$w-"
    execs=0
    deaths=0
    n=0
    trap '' HUP TERM
    : > "$log"
    : > "$out/generic-$w.found"
    while [ ! -e "$out/fuzz.stop" ]; do
        clock
        left=$(( start + total - now ))
        [ "$left" -gt 0 ] || break
        n=$((n + 1))
        : > "$run"
        # -timeout: a hang of one input (while holding the BQL) is a
        # crash.  timeout(1) sends TERM at the deadline, KILL if
        # libFuzzer has not ended 30 s later; it runs libFuzzer in a
        # process group of its own, which only this worker signals.
        fp=
        trap 'trapped=1; [ -z "$fp" ] || kill -TERM "$fp" 2>/dev/null' TERM
        spawn timeout --preserve-status -k 30 "$left" \
            "$fuzzer" --fuzz-target=generic-fuzz -max_total_time="$left" \
            -print_final_stats=1 -timeout=20 -rss_limit_mb=8192 \
            -artifact_prefix="$art" -close_fd_mask=1 \
            "$out/generic-corpus" $seeds > "$run" 2>&1
        fp=$!
        # a stop that came before $fp was set left fuzz.stop first
        [ ! -e "$out/fuzz.stop" ] || kill -TERM "$fp" 2>/dev/null
        waitfor "$fp"
        rc=$?
        trap '' TERM
        reap "$fp" KILL
        clock
        # stopped, or its time is up: libFuzzer summed up on our TERM
        # (72), or our TERM came before its handler (143)
        cut=
        if [ -e "$out/fuzz.stop" ] || [ "$now" -ge $((start + total)) ]
        then
            case $rc in 72 | 143) cut=1 ;; esac
        fi
        cat "$run" >> "$log"
        # libFuzzer prints its final stats on a crash and on SIGTERM too
        # (twice on a UBSan report); if it was killed, count up to its
        # last status line
        e=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run" | tail -n 1)
        [ -n "$e" ] || e=$(grep -o '^#[0-9]*' "$run" | tail -n 1 | tr -d '#')
        case $e in '' | *[!0-9]*) e=0 ;; esac
        execs=$((execs + e))
        echo "=== run $n: exit $rc, $e executions" >> "$log"
        found=$(collect "$art")
        if [ -n "$found" ]; then
            echo "generic-fuzz: worker $w: $found" >> "$log"
            # libFuzzer keeps no crashing input in the corpus: a second
            # crash on the same input is a seed that crashes every start
            if echo "$found" | grep -qxF -f "$out/generic-$w.found"; then
                echo "generic-fuzz: worker $w stops: $found again"
                break
            fi
            echo "$found" >> "$out/generic-$w.found"
        elif [ -n "$cut" ] && grep -qE "$report" "$run"; then
            # the stop cut a crash report short, before its reproducer
            echo "generic-fuzz: worker $w: a crash report with no" \
                 "reproducer (log: $log)"
            deaths=$((deaths + 1))
            break
        elif [ "$rc" = 0 ] || [ -n "$cut" ]; then
            break           # its time is up, or stopped
        else
            echo "generic-fuzz: worker $w stops: libFuzzer exited $rc" \
                 "with no reproducer (log: $log)"
            deaths=$((deaths + 1))
            break
        fi
    done
    clock
    echo "$execs $deaths $(( now - start ))" > "$out/generic-$w.result"
}

# spawn COMMAND...: run COMMAND in the background ($!) so that a stop
# cannot be lost: stop() leaves fuzz.stop, then sends TERM.  A TERM that
# comes before the subshell has reset the trap it inherited is lost, but
# fuzz.stop is there by then; one that comes after ends it (143) until
# COMMAND (timeout(1)) has set its handler, which passes it on.  (Not
# SIGINT: a background command starts with SIGINT ignored.)
spawn() {
    (
        trap '' HUP             # stop() passes a hangup on, as TERM
        trap - TERM
        [ ! -e "$out/fuzz.stop" ] || exit 143
        exec "$@"
    ) &
}

# reap PID SIGNAL: end what is left of the process group that timeout(1)
# PID made.  coreutils 9.1's timeout can exit on a TERM that comes just
# after its fork() and leave its command running, orphaned.  A Python
# fuzzer sums up on TERM and stops its QEMUs; libFuzzer gets KILL, so that
# the inputs it forked end with it.
reap() {
    kill -s "$2" -- "-$1" 2>/dev/null
}

# waitfor PID: wait until the child PID has ended, and return its
# status.  A trap (each sets $trapped) interrupts wait with a status above
# 128, even when the child has just ended, so wait again: dash returns the
# status of an ended child to every later wait.
waitfor() {
    while :; do
        trapped=
        wait "$1"
        st=$?
        [ -n "$trapped" ] && [ "$st" -gt 128 ] || return "$st"
    done
}

for a in "$out"/generic-[0-9]*-*; do
    [ -e "$a" ] || continue
    f=$(keep "$a" "${a#"$out"/generic-[0-9]*-}")
    [ -z "$f" ] || \
        echo "generic-fuzz: left by an earlier run: $out/generic-crashes/$f"
done
echo "fuzz.sh: seed $seed, $total s (generic-fuzz, $jobs workers) and" \
     "$half s + $((total - half)) s (difffuzz, qmpfuzz)"
started=0
if [ -x "$fuzzer" ]; then
    inputs=0
    for f in "$out/generic-corpus"/* ${seeds:+"$seeds"/*}; do
        [ ! -e "$f" ] || inputs=$((inputs + 1))
    done
    [ "$inputs" = 0 ] || \
        echo "fuzz.sh: generic-fuzz first replays corpus and seeds ($inputs" \
             "inputs, each one an execution); a short run may end within it"
    w=0
    while [ "$w" -lt "$jobs" ] && [ -z "$interrupted" ]; do
        w=$((w + 1))
        generic "$w" &
        workers="$workers $w:$!"
        started=$((started + 1))
    done
    # stopped between a fork and its entry in $workers
    [ -z "$interrupted" ] || halt_workers
else
    echo "fuzz.sh: $fuzzer is missing (make fuzz builds it)" >&2
fi

# python DEADLINE FUZZER ARGS...: run FUZZER until DEADLINE: --time, and
# a TERM from timeout(1) for the program that runs then (the fuzzer sums
# up on SIGINT or SIGTERM); $pyrc: its status (124: the deadline came).
# timeout runs it in a process group of its own, so that only stop()
# signals it, once.
python() {
    d=$1
    shift
    pyrc=
    clock
    [ -z "$interrupted" ] || return 0
    left=$(( d - now ))
    if [ "$left" -le 0 ]; then
        echo "fuzz.sh: no time left to start it"
        echo "fuzz: 0 executions, 0 crashes, 0 mismatches"
        return 0
    fi
    spawn timeout -k 60 "$left" /usr/bin/python3 "$@" --time "$left"
    pypid=$!
    [ -z "$interrupted" ] || kill -TERM "$pypid" 2>/dev/null
    waitfor "$pypid"
    pyrc=$?
    reap "$pypid" TERM
    pypid=
}

# -- 2. differential fuzzer, then the QMP fuzzer --------------------------
asan="$build/qemu-asan/qemu-system-x86_64"
python $((start + half)) "$top/tests/fuzz/difffuzz.py" --qemu "$asan" \
    --seed "$seed" --programs 1000000000 --minimize 60 \
    > "$out/difffuzz.log" 2>&1
diffrc=$pyrc
python $((start + total)) "$top/tests/fuzz/qmpfuzz.py" --qemu "$asan" \
    --seed "$seed" --out "$out/qmpfuzz" > "$out/qmpfuzz.log" 2>&1
qmprc=$pyrc

ended=
for wp in $workers; do
    waitfor "${wp#*:}"
    ended="$ended ${wp%:*}:$?"
done

# -- the sum-up --------------------------------------------------------------
# Every fuzzer has ended.  From here on HUP, INT and TERM are ignored, by
# this shell and by what it runs (grep, sort, awk): a late Ctrl-C, or the
# TERM that timeout(1) sends to the whole process group, must not cut the
# sum short.  It takes well under a second.
trap '' HUP INT TERM
grep -E '^(CRASH|MISMATCH)' "$out/difffuzz.log" | sed 's/^/difffuzz: /'
grep -E '^(CRASH|MISMATCH|reproducer)' "$out/qmpfuzz.log" | \
    sed 's/^/qmpfuzz: /'
execs=0
crashes=0
secs=0
if [ -x "$fuzzer" ]; then
    deaths=0
    for ws in $ended; do
        w=${ws%:*}
        e= d= t=
        [ -s "$out/generic-$w.result" ] && read e d t < "$out/generic-$w.result"
        if [ -z "$t" ] &&
            case ${ws#*:} in 129 | 130 | 143) : ;; *) false ;; esac
        then
            # a stop signal, before its trap was set: no crash
            echo "fuzz.sh: generic-fuzz worker $w was stopped before it" \
                 "could sum up"
            d=0
        elif [ -z "$t" ]; then
            echo "fuzz.sh: generic-fuzz worker $w left no result" \
                 "(log: $out/generic-$w.log)"
            d=1
        fi
        execs=$((execs + ${e:-0})) deaths=$((deaths + d))
        [ "${t:-0}" -le "$secs" ] || secs=$t
    done
    # a crash is a reproducer: the same one found twice is one
    found=$(cat "$out"/generic-*.found 2>/dev/null | sort -u)
    crashes=$deaths
    for f in $found; do
        crashes=$((crashes + 1))
    done
else
    found=
    crashes=1
fi
{
    echo "fuzz: $execs executions, $crashes crashes, 0 mismatches"
    echo "generic-fuzz: $execs executions in $secs s by $started workers" \
         "($(( execs / (secs > 0 ? secs : 1) )) exec/s), $crashes crashes"
} > "$out/generic.result"
sed -n '2p' "$out/generic.result"
for f in $found; do
    echo "generic-fuzz: reproducer $out/generic-crashes/$f"
done
grep '^throughput' "$out/difffuzz.log" | sed 's/^/difffuzz: /'
grep '^throughput' "$out/qmpfuzz.log" | sed 's/^/qmpfuzz: /'

N=0 M=0 K=0
counts=
for rr in generic.result:0 difffuzz.log:$diffrc qmpfuzz.log:$qmprc; do
    r=$out/${rr%:*}
    line=$(grep '^fuzz: ' "$r" | tail -n 1)
    # a Python fuzzer not started (a stop came first), ended by our TERM
    # (the deadline: 124) before it had set its handler (143), or a
    # spawn() subshell that a HUP or INT to the group ended before its
    # first command (129, 130: dash resets the traps of a subshell)
    if [ -z "$line" ] &&
        case ${rr#*:} in '' | 124 | 129 | 130 | 143) : ;; *) false ;; esac
    then
        counts="$counts 0"          # stopped before it could sum up
        continue
    elif [ -z "$line" ]; then
        echo "fuzz.sh: $(basename "$r") has no result line (log: $r)"
        M=$((M + 1))
        counts="$counts 0"
        continue
    fi
    set -- $(echo "$line" | sed 's/[^0-9 ]//g')
    N=$((N + $1)) M=$((M + $2)) K=$((K + $3))
    counts="$counts $1"
done

# campaign.tally, one line per run:
#   DATE SECONDS JOBS GENERIC DIFFERENTIAL QMP CRASHES MISMATCHES
# (SECONDS as run; GENERIC, DIFFERENTIAL, QMP: executions, programs)
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(( $(date +%s) - start )) $started$counts" \
     "$M $K" >> "$out/campaign.tally"
awk 'NF == 8 { n++; s += $2; g += $4; d += $5; q += $6; m += $7; k += $8 }
     END { printf "campaign: %d runs, %.0f s: %.0f generic-fuzz " \
                  "executions, %.0f differential programs, %.0f QMP " \
                  "programs, %.0f crashes, %.0f mismatches " \
                  "(tally: %s)\n", n, s, g, d, q, m, k, FILENAME }' \
    "$out/campaign.tally"
[ -z "$interrupted" ] || echo "fuzz.sh: interrupted"
echo "fuzz: $N executions, $M crashes, $K mismatches"
