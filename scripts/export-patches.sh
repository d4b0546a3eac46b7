#!/bin/sh
# export-patches.sh GIT_TREE [BASE]: write the commits of a QEMU git tree
# since BASE (default: the first commit, the pristine source) to patches/
# and patches/series.  For maintainers who keep the hook patches as a
# git branch on top of the unpacked QEMU source.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
tree=$1
base=${2:-$(git -C "$tree" rev-list --max-parents=0 HEAD)}
rm -f "$top"/patches/*.patch
git -C "$tree" format-patch -q --no-signature --zero-commit -N \
    "$base..HEAD" -o "$top/patches"
(cd "$top/patches" && ls ./*.patch | sed 's|^\./||' > series)
