#!/bin/sh
# run-qtests.sh QEMU_SRC QEMU_BUILD: run snp-viommu's qtests and the QEMU
# qtests that its patches can break, with the built QEMU.  Prints each
# test case's TAP line and a closing "N passed, N failed" line.
# RUN_QTESTS="name ..." in the environment runs only those (the ASan build).
set -u
src=$1
build=$2
export QTEST_QEMU_BINARY="$build/qemu-system-x86_64"
export QTEST_QEMU_IMG=/bin/false

passed=0
failed=0
log=$(mktemp)
run() {
    name=$1
    shift
    case " ${RUN_QTESTS:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name $*"
    start=$(date +%s)
    # bios-tables-test finds its expected tables relative to the source
    if (cd "$src" && timeout 900 "$build/tests/qtest/$name" --tap "$@") \
            > "$log" 2>&1; then
        result=PASS
    else
        result=FAIL
        tail -30 "$log" | grep -Ev '^(ok|not ok) ' | sed 's/^/   /'
        # a crash or an abort counts even if no "not ok" line was printed
        grep -q '^not ok ' "$log" || failed=$((failed + 1))
    fi
    grep -E '^(ok|not ok) ' "$log" | sed 's/^/   /'
    passed=$((passed + $(grep -c '^ok ' "$log")))
    failed=$((failed + $(grep -c '^not ok ' "$log")))
    echo "   $result ($(( $(date +%s) - start )) s)"
}

run amd-iommu-snp-test
run vfio-rmp-sync-test
run snp-rmp-qmp-test
run amd-psp-test
# QEMU's own, under TCG or the qtest accelerator (see BUILD-FACTS.md)
run bios-tables-test -p /x86_64/acpi/q35/ivrs
run intel-iommu-test
run qom-test
run device-introspect-test
rm -f "$log"
echo "qtests: $passed passed, $failed failed"
[ "$failed" = 0 ]
