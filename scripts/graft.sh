#!/bin/sh
# graft.sh TOP QEMU_SRC: link snp-viommu's new files into QEMU's source tree
# and bring the applied hook patches in line with patches/series.
#
# New files are symlinked, so an edit in our tree is seen by the next ninja
# run without re-grafting.  Patches are tracked in QEMU_SRC/.snp-viommu/:
# when the series changes, only the patches from the first changed one on
# are reverted and re-applied, so unrelated QEMU files keep their timestamps
# and the build stays incremental.

set -eu
top=$1
src=$2
state="$src/.snp-viommu"
mkdir -p "$state/applied"

die() {
    echo "graft: error: $*" >&2
    exit 1
}

# 1. New files.
(cd "$top" &&
 find backends hw include qapi stubs system target tests docs configs -type f \
     2>/dev/null) |
while read -r f; do
    dst="$src/$f"
    if [ -e "$dst" ] && [ ! -L "$dst" ]; then
        die "$f exists in QEMU's tree: change it with a patch, not a new file"
    fi
    mkdir -p "$(dirname "$dst")"
    ln -sfn "$top/$f" "$dst"
done
# Links left behind by files that were removed or renamed.
find "$src" -path "$src/.snp-viommu" -prune -o -type l -print |
while read -r l; do
    case "$(readlink "$l")" in
    "$top"/*) [ -e "$l" ] || rm -f "$l" ;;
    esac
done

# 2. Patches.
series="$top/patches/series"
wanted=$(grep -v '^[[:space:]]*\(#\|$\)' "$series" 2>/dev/null || true)
applied=$(cat "$state/series" 2>/dev/null || true)

# Length of the common prefix of identical patches.
keep=0
i=0
for p in $wanted; do
    i=$((i + 1))
    old=$(echo "$applied" | sed -n "${i}p")
    [ "$old" = "$p" ] && cmp -s "$top/patches/$p" "$state/applied/$p" || break
    keep=$i
done

n=$(echo "$applied" | grep -c . || true)
while [ "$n" -gt "$keep" ]; do
    p=$(echo "$applied" | sed -n "${n}p")
    echo "graft: reverting $p"
    patch -d "$src" -p1 -R -s --no-backup-if-mismatch < "$state/applied/$p" ||
        die "cannot revert $p: remove subprojects/qemu and re-run configure"
    rm -f "$state/applied/$p"
    n=$((n - 1))
done
echo "$applied" | head -n "$keep" | grep . > "$state/series.new" || true
mv "$state/series.new" "$state/series"

i=0
for p in $wanted; do
    i=$((i + 1))
    [ "$i" -gt "$keep" ] || continue
    echo "graft: applying $p"
    patch -d "$src" -p1 -s -N --no-backup-if-mismatch < "$top/patches/$p" ||
        die "$p does not apply to $(cat "$src/VERSION")"
    cp "$top/patches/$p" "$state/applied/$p"
    echo "$p" >> "$state/series"
done
