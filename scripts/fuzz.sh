#!/bin/sh
# fuzz.sh BUILD SECONDS: the fuzzing campaigns of `make fuzz`.
#
#   1. generic-fuzz (libFuzzer, coverage-guided) on amd-iommu,snp=on + edu
#      + snp-rmp, built with clang, ASan and UBSan (BUILD/qemu-fuzz), for
#      SECONDS, in FUZZ_JOBS workers (default 1) that share one corpus;
#   2. at the same time, on another core, the differential fuzzer
#      (tests/fuzz/difffuzz.py) for SECONDS/2 and then the QMP fuzzer
#      (tests/fuzz/qmpfuzz.py) for SECONDS/2, both against the ASan+UBSan
#      build (BUILD/qemu-asan).
#
# Everything found is kept under BUILD/fuzz/ (logs, the grown generic-fuzz
# corpus, one reproducer per crash).  The last line is always
#   fuzz: N executions, M crashes, K mismatches
# (N: libFuzzer inputs + differential programs + QMP programs; M: crashing
# inputs or programs; K: unexplained mismatches).  The line before it,
# "campaign: ...", sums every run so far (BUILD/fuzz/campaign.tally, one
# line per run), so that a campaign can be spread over many runs.
# FUZZ_SEED=S makes the two Python fuzzers repeatable (default: the time).
set -u
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
top=$(cd "$(dirname "$0")/.." && pwd)
out="$build/fuzz"
mkdir -p "$out/generic-corpus" "$out/generic-crashes"
seed=${FUZZ_SEED:-$(date +%s)}
half=$(( (total + 1) / 2 ))
start=$(date +%s)

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

# collect PREFIX: move what a libFuzzer run left under PREFIX to
# generic-crashes/ (a slow unit, -report_slow_units, is wall clock and no
# crash: generic-slow/); print the names of the crash reproducers
collect() {
    for a in "$1"*; do
        [ -e "$a" ] || continue
        name=${a#"$1"}
        case $name in
        slow-unit-*)
            mkdir -p "$out/generic-slow"
            mv "$a" "$out/generic-slow/" ;;
        *)
            mv "$a" "$out/generic-crashes/$name"
            echo "$name" ;;
        esac
    done
}

# One generic-fuzz worker.  libFuzzer re-reads the shared corpus directory
# every second (-reload=1, its default), so the workers take up each
# other's finds; a run ends early only on a crash, and then the worker
# starts another one.  Its figures: generic-W.result, "EXECUTIONS CRASHES
# SECONDS".
generic() {
    w=$1
    log="$out/generic-$w.log"
    run="$out/generic-$w.run"
    art="$out/generic-$w-"
    execs=0
    crashes=0
    n=0
    : > "$log"
    collect "$art" > /dev/null     # left by a run that was killed
    while :; do
        left=$(( total - ($(date +%s) - start) ))
        [ "$left" -gt 0 ] || break
        n=$((n + 1))
        # -timeout: a hang of one input (while holding the BQL) is a crash
        "$fuzzer" --fuzz-target=generic-fuzz -max_total_time="$left" \
            -print_final_stats=1 -timeout=20 -rss_limit_mb=8192 \
            -artifact_prefix="$art" -close_fd_mask=1 \
            "$out/generic-corpus" $seeds > "$run" 2>&1 &
        echo $! > "$out/generic-$w.pid"
        wait $!
        rc=$?
        cat "$run" >> "$log"
        # libFuzzer prints its final stats on a crash too; if it died
        # before, count up to its last status line
        e=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run")
        [ -n "$e" ] || e=$(grep -o '^#[0-9]*' "$run" | tail -1 | tr -d '#')
        execs=$((execs + ${e:-0}))
        echo "=== run $n: exit $rc, ${e:-0} executions" >> "$log"
        found=$(collect "$art")
        if [ -n "$found" ]; then
            crashes=$((crashes + 1))
            echo "generic-fuzz: worker $w: $found" >> "$log"
            # libFuzzer keeps no crashing input in the corpus: a second
            # crash on the same input is a seed that crashes every start
            if grep -qx "$found" "$out/generic-$w.found" 2>/dev/null; then
                echo "generic-fuzz: worker $w stops: $found again"
                break
            fi
            echo "$found" >> "$out/generic-$w.found"
        elif [ "$rc" != 0 ]; then
            echo "generic-fuzz: worker $w stops: libFuzzer exited $rc" \
                 "with no reproducer (log: $log)"
            crashes=$((crashes + 1))
            break
        else
            break
        fi
    done
    echo "$execs $crashes $(( $(date +%s) - start ))" \
        > "$out/generic-$w.result"
}

# Ctrl-C or kill: stop the workers (so that they start nothing new), then
# their fuzzers
stop() {
    trap - INT TERM
    [ -z "$gpids" ] || kill $gpids 2>/dev/null
    for p in "$out"/generic-*.pid; do
        [ -e "$p" ] && kill -KILL "$(cat "$p")" 2>/dev/null
    done
    exit 130
}

gpids=
trap stop INT TERM
rm -f "$out"/generic-*.result "$out"/generic-*.pid "$out"/generic-*.found
if [ -x "$fuzzer" ]; then
    w=0
    while [ "$w" -lt "$jobs" ]; do
        w=$((w + 1))
        generic "$w" &
        gpids="$gpids $!"
    done
else
    echo "fuzz.sh: $fuzzer is missing (make fuzz builds it)" >&2
fi

# -- 2. differential fuzzer, then the QMP fuzzer --------------------------
asan="$build/qemu-asan/qemu-system-x86_64"
echo "fuzz.sh: seed $seed, $total s (generic-fuzz, $jobs workers) and" \
     "$half s + $half s (difffuzz, qmpfuzz)"
/usr/bin/python3 "$top/tests/fuzz/difffuzz.py" --qemu "$asan" \
    --seed "$seed" --programs 1000000000 --time "$half" --minimize 60 \
    > "$out/difffuzz.log" 2>&1
grep -E '^(CRASH|MISMATCH)' "$out/difffuzz.log" | sed 's/^/difffuzz: /'
/usr/bin/python3 "$top/tests/fuzz/qmpfuzz.py" --qemu "$asan" \
    --seed "$seed" --time "$half" --out "$out/qmpfuzz" \
    > "$out/qmpfuzz.log" 2>&1
grep -E '^(CRASH|MISMATCH|reproducer)' "$out/qmpfuzz.log" | \
    sed 's/^/qmpfuzz: /'

execs=0
crashes=0
secs=0
if [ -n "$gpids" ]; then
    wait $gpids
    w=0
    while [ "$w" -lt "$jobs" ]; do
        w=$((w + 1))
        e= c= t=
        [ -s "$out/generic-$w.result" ] && read e c t < "$out/generic-$w.result"
        if [ -z "$c" ]; then
            echo "fuzz.sh: generic-fuzz worker $w left no result" \
                 "(log: $out/generic-$w.log)"
            c=1
        fi
        execs=$((execs + ${e:-0})) crashes=$((crashes + c))
        [ "${t:-0}" -le "$secs" ] || secs=$t
    done
else
    crashes=1
fi
{
    echo "fuzz: $execs executions, $crashes crashes, 0 mismatches"
    echo "generic-fuzz: $execs executions in $secs s by $jobs workers" \
         "($(( execs / (secs > 0 ? secs : 1) )) exec/s), $crashes crashes"
} > "$out/generic.result"
sed -n '2p' "$out/generic.result"
for f in "$out"/generic-crashes/*; do
    [ -e "$f" ] && echo "generic-fuzz: reproducer $f"
done
grep '^throughput' "$out/difffuzz.log" | sed 's/^/difffuzz: /'
grep '^throughput' "$out/qmpfuzz.log" | sed 's/^/qmpfuzz: /'

N=0 M=0 K=0
counts=
for r in "$out/generic.result" "$out/difffuzz.log" "$out/qmpfuzz.log"; do
    line=$(grep '^fuzz: ' "$r" | tail -1)
    if [ -z "$line" ]; then
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
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(( $(date +%s) - start )) $jobs$counts" \
     "$M $K" >> "$out/campaign.tally"
awk '{ n++; s += $2; g += $4; d += $5; q += $6; m += $7; k += $8 }
     END { printf "campaign: %d runs, %.0f s: %.0f generic-fuzz " \
                  "executions, %.0f differential programs, %.0f QMP " \
                  "programs, %.0f crashes, %.0f mismatches " \
                  "(tally: %s)\n", n, s, g, d, q, m, k, FILENAME }' \
    "$out/campaign.tally"
echo "fuzz: $N executions, $M crashes, $K mismatches"
