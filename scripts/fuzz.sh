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
# inputs or programs; K: unexplained mismatches).  The line before it sums
# every run so far (BUILD/fuzz/campaign.tally, one line per run), so that a
# campaign can be spread over many runs.  FUZZ_SEED=S makes the two Python
# fuzzers repeatable (default: the time).
set -u
build=$1
total=$2
top=$(cd "$(dirname "$0")/.." && pwd)
out="$build/fuzz"
mkdir -p "$out/generic-corpus" "$out/generic-crashes"
seed=${FUZZ_SEED:-$(date +%s)}
half=$(( (total + 1) / 2 ))
jobs=${FUZZ_JOBS:-1}
# libFuzzer reads the corpus only when it starts: a worker restarts this
# often to take up what the other workers found
chunk=${FUZZ_CHUNK:-900}
for v in "FUZZ_JOBS=$jobs" "FUZZ_CHUNK=$chunk" "FUZZ_TIME=$total"; do
    case ${v#*=} in
    '' | *[!0-9]* | 0 | 0*)
        echo "fuzz.sh: $v: a positive number is needed" >&2
        exit 2 ;;
    esac
done

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

generic() {
    w=$1
    log="$out/generic-$w.log"
    start=$(date +%s)
    execs=0
    crashes=0
    n=0
    : > "$log"
    while :; do
        left=$(( total - ($(date +%s) - start) ))
        [ "$left" -gt 0 ] || break
        t=$(( left < chunk ? left : chunk ))
        n=$((n + 1))
        art="$out/generic-$w-run$n-"
        # -timeout: a hang of one input (while holding the BQL) is a crash
        "$fuzzer" --fuzz-target=generic-fuzz -max_total_time="$t" \
            -print_final_stats=1 -timeout=20 -rss_limit_mb=8192 \
            -artifact_prefix="$art" -close_fd_mask=1 \
            "$out/generic-corpus" $seeds >> "$log" 2>&1
        rc=$?
        e=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        # a crashing run prints no final stats: count from its last status
        [ -n "$e" ] || e=0
        # a slow unit (-report_slow_units, wall clock: a loaded machine
        # writes them) is kept apart and is no crash
        for a in "$art"slow-unit-*; do
            [ -e "$a" ] || continue
            mkdir -p "$out/generic-slow"
            mv "$a" "$out/generic-slow/"
            echo "generic-fuzz: slow input $a" >> "$log"
        done
        if ls "$art"* >/dev/null 2>&1; then
            e=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
            crashes=$((crashes + 1))
            for a in "$art"*; do
                cp "$a" "$out/generic-crashes/"
                echo "generic-fuzz: crash input $a" >> "$log"
            done
        elif [ "$rc" != 0 ]; then
            echo "generic-fuzz: exited $rc without an artifact" >> "$log"
            crashes=$((crashes + 1))
            break
        fi
        execs=$((execs + ${e:-0}))
        # mark where the next run's figures start
        echo "=== run $n: $e executions" >> "$log"
        sed -i 's/^stat::number_of_executed_units/old::number_of_executed_units/' \
            "$log"
        # a run that executed nothing would only repeat itself
        [ "${e:-0}" -gt 0 ] || break
    done
    echo "$execs $crashes" > "$out/generic-$w.result"
}

gpids=
if [ -x "$fuzzer" ]; then
    rm -f "$out"/generic-*.result
    gstart=$(date +%s)
    w=0
    while [ "$w" -lt "$jobs" ]; do
        w=$((w + 1))
        generic "$w" &
        gpids="$gpids $!"
    done
else
    echo "fuzz.sh: $fuzzer is missing (make fuzz builds it)" >&2
    echo "fuzz: 0 executions, 1 crashes, 0 mismatches" > "$out/generic.result"
fi

# -- 2. differential fuzzer, then the QMP fuzzer --------------------------
asan="$build/qemu-asan/qemu-system-x86_64"
echo "fuzz.sh: seed $seed, $total s (generic-fuzz) and $half s +" \
     "$half s (difffuzz, qmpfuzz)"
/usr/bin/python3 "$top/tests/fuzz/difffuzz.py" --qemu "$asan" \
    --seed "$seed" --programs 1000000000 --time "$half" --minimize 60 \
    > "$out/difffuzz.log" 2>&1
grep -E '^(CRASH|MISMATCH)' "$out/difffuzz.log" | sed 's/^/difffuzz: /'
/usr/bin/python3 "$top/tests/fuzz/qmpfuzz.py" --qemu "$asan" \
    --seed "$seed" --time "$half" --out "$out/qmpfuzz" \
    > "$out/qmpfuzz.log" 2>&1
grep -E '^(CRASH|MISMATCH|reproducer)' "$out/qmpfuzz.log" | \
    sed 's/^/qmpfuzz: /'

if [ -n "$gpids" ]; then
    wait $gpids
    execs=0 crashes=0
    for r in "$out"/generic-*.result; do
        [ -e "$r" ] || continue
        set -- $(cat "$r")
        execs=$((execs + $1)) crashes=$((crashes + $2))
    done
    secs=$(( $(date +%s) - gstart ))
    {
        echo "fuzz: $execs executions, $crashes crashes, 0 mismatches"
        echo "generic-fuzz: $execs executions in $secs s, $jobs workers" \
             "($(( execs / (secs > 0 ? secs : 1) )) exec/s), $crashes crashes"
    } > "$out/generic.result"
fi
sed -n '2p' "$out/generic.result"
for f in "$out"/generic-crashes/*; do
    [ -e "$f" ] && echo "generic-fuzz: reproducer $f"
done
grep '^throughput' "$out/difffuzz.log" | sed 's/^/difffuzz: /'
grep '^throughput' "$out/qmpfuzz.log" | sed 's/^/qmpfuzz: /'

N=0 M=0 K=0
tally="$(date -u +%Y-%m-%dT%H:%M:%SZ) $total"
for r in "$out/generic.result" "$out/difffuzz.log" "$out/qmpfuzz.log"; do
    line=$(grep '^fuzz: ' "$r" | tail -1)
    if [ -z "$line" ]; then
        echo "fuzz.sh: $(basename "$r") has no result line (log: $r)"
        M=$((M + 1))
        tally="$tally 0"
        continue
    fi
    set -- $(echo "$line" | sed 's/[^0-9 ]//g')
    N=$((N + $1)) M=$((M + $2)) K=$((K + $3))
    tally="$tally $1"
done

# the campaign: DATE SECONDS GENERIC DIFFERENTIAL QMP CRASHES MISMATCHES
echo "$tally $M $K" >> "$out/campaign.tally"
awk '{ n++; s += $2; g += $3; d += $4; q += $5; m += $6; k += $7 }
     END { printf "fuzz: campaign of %d runs, %d s: %d generic-fuzz " \
                  "executions, %d differential programs, %d QMP programs, " \
                  "%d crashes, %d mismatches\n", n, s, g, d, q, m, k }' \
    "$out/campaign.tally"
echo "fuzz: $N executions, $M crashes, $K mismatches"
