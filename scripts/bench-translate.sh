#!/bin/sh
# bench-translate.sh QEMU_BUILD: instructions amdvi_translate() executes per
# DMA translation with snp=off and snp=on, on the IOTLB-hit path and on the
# page-walk path.  Instruction counts (valgrind's callgrind, collecting
# inside amdvi_translate only) repeat exactly from run to run, unlike times
# on a busy 2-core machine.
set -eu
build=$1
test="$build/tests/qtest/amd-iommu-snp-test"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v valgrind >/dev/null ||
    { echo "bench-translate: valgrind is missing (apt-get install valgrind)"; exit 1; }

cat > "$work/qemu-system-x86_64" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --toggle-collect=amdvi_translate \\
    --compress-strings=no --compress-pos=no \\
    --callgrind-out-file="\$BENCH_OUT" "$build/qemu-system-x86_64" "\$@"
WRAP
chmod +x "$work/qemu-system-x86_64"

# Instructions per call of amdvi_translate in a callgrind profile
per_call() {
    awk '
        /^fn=/ { fn = $0 }
        /^cfn=.*amdvi_translate$/ { incall = 1; next }
        incall && /^calls=/ { split($0, a, "[= ]"); calls += a[2]; next }
        incall { incall = 0; if ($2 != "") ir += $2; next }
        /^summary:/ { total = $2 }
        END {
            if (!calls) { print "0 0 0"; exit }
            printf "%d %d %.1f\n", calls, ir, ir / calls
        }' "$1"
}

printf '%-10s %-8s %8s %14s %10s\n' path snp calls instructions per-call
for path in hit walk; do
    for snp in off on; do
        out="$work/$path-$snp.out"
        BENCH_OUT="$out" QTEST_QEMU_BINARY="$work/qemu-system-x86_64" \
            "$test" -m perf -p "/x86_64/amd-iommu-snp/perf/$path-snp-$snp" \
            > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
        set -- $(per_call "$out")
        printf '%-10s %-8s %8s %14s %10s\n' "$path" "$snp" "$1" "$2" "$3"
        eval "pc_${path}_$snp=$3"
    done
done
awk -v ho="$pc_hit_off" -v hn="$pc_hit_on" -v wo="$pc_walk_off" \
    -v wn="$pc_walk_on" 'BEGIN {
    printf "snp=on costs %+.1f%% on the IOTLB-hit path, %+.1f%% on the " \
           "page-walk path (instructions per translation)\n",
           (hn / ho - 1) * 100, (wn / wo - 1) * 100 }'
