#!/bin/sh
# install-test.sh BUILD STAGE: make install into DESTDIR=STAGE, check the
# installed fork (installed-test.py), make uninstall, and check that it
# removed exactly what make install had put there: a file and an empty
# directory that were there before stay, nothing else remains; and that
# make install refuses to overwrite a file that is not its own.  Leaves
# the fork installed in STAGE again, for the libvirt test.
# BUILD is make's BUILD (relative to the top of the tree); STAGE absolute.
set -eu
build=$1
stage=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
make=${MAKE:-make}
prefix=$(sed -n 's/^PREFIX=//p' "$build/config.mak")
root="$stage$prefix"
fail() {
    echo "install-test: FAIL: $*" >&2
    exit 1
}

# a stage from an earlier run: forget it through its own manifest
$make -s BUILD="$build" uninstall DESTDIR="$stage" >/dev/null 2>&1 || true
rm -rf "$stage"

# what was there before: a foreign file in bin, an empty directory
mkdir -p "$root/bin" "$root/share/empty-before"
echo "not the fork's" > "$root/bin/not-ours"

# a file that is someone else's (Debian's qemu-img under PREFIX=/usr, say)
echo "someone else's" > "$root/bin/qemu-img"
if $make -s BUILD="$build" install DESTDIR="$stage" 2>/dev/null; then
    fail "make install overwrote a file that was not its own"
fi
[ "$(cat "$root/bin/qemu-img")" = "someone else's" ] ||
    fail "the refused make install changed $root/bin/qemu-img"
[ ! -e "$root/bin/qemu-system-x86_64" ] ||
    fail "the refused make install installed something"
rm "$root/bin/qemu-img"
echo "ok make install refuses to overwrite a file that is not its own"

$make -s BUILD="$build" install DESTDIR="$stage"
# once more over itself: its own files are no obstacle
$make -s BUILD="$build" install DESTDIR="$stage" >/dev/null
[ -x "$root/bin/qemu-system-x86_64" ] || fail "no $root/bin/qemu-system-x86_64"
for f in qemu-img qemu-io qemu-nbd qemu-storage-daemon; do
    [ -x "$root/bin/$f" ] || fail "$f not installed"
done
# the manual (--enable-docs), with our pages and our QAPI module in it
for f in share/doc/qemu/system/i386/amd-iommu-snp.html \
         share/doc/qemu/system/i386/amd-iommu-snp-libvirt.html \
         share/doc/qemu/interop/qemu-qmp-ref.html; do
    [ -f "$root/$f" ] || fail "$f not installed"
done
grep -q "snp-rmp-update" "$root/share/doc/qemu/interop/qemu-qmp-ref.html" ||
    fail "the QMP reference lacks snp-rmp-update"

/usr/bin/python3 tests/install/installed-test.py "$root"

$make -s BUILD="$build" uninstall DESTDIR="$stage"
left=$(cd "$stage" && find . -mindepth 1 | sort | tr '\n' ' ')
want=$(cd "$stage" && for d in "$prefix" "$prefix/bin" "$prefix/bin/not-ours" \
        "$prefix/share" "$prefix/share/empty-before"; do
        p=.$d
        while [ "$p" != . ]; do echo "$p"; p=$(dirname "$p"); done
    done | sort -u | tr '\n' ' ')
[ "$left" = "$want" ] ||
    fail "after make uninstall: [$left], expected [$want]"
echo "ok make uninstall removed what make install put in $root, and only that"

$make -s BUILD="$build" install DESTDIR="$stage"
echo "install-test: passed"
