#!/bin/sh
# run.sh QEMU IMAGE [CPU]: run the SVM feature test under TCG; exit 0 if
# every check passed.  The test reports on COM1 and through isa-debug-exit
# (QEMU exits with 1 when the test wrote 0, i.e. passed).
#
# SPDX-License-Identifier: GPL-2.0-or-later
set -u
qemu=$1
image=$2
# EPYC-Genoa-v2 lists LBRV and FlushByASID (v1 does not); no QEMU CPU
# model lists DecodeAssists, although the real processors have it
cpu=${3:-EPYC-Genoa-v2,+decodeassists}
out=$(timeout 60 "$qemu" -accel tcg -M pc -cpu "$cpu" -m 128M \
      -L /usr/share/qemu -L /usr/share/seabios \
      -display none -vga none -monitor none -serial stdio -no-reboot \
      -device isa-debug-exit,iobase=0xf4,iosize=4 \
      -kernel "$image" 2>/dev/null)
status=$?
printf '%s\n' "$out"
if [ $status -eq 1 ] && printf '%s\n' "$out" | grep -q 'passed: PASS$'; then
    echo "check-svm: PASS"
    exit 0
fi
echo "check-svm: FAIL (QEMU exit status $status)"
exit 1
