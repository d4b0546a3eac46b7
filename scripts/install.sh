#!/bin/sh
# install.sh install|uninstall QEMU_BUILD MANIFEST_DIR [DESTDIR]
#
# install: meson install of the fork's build (its configured prefix, under
# DESTDIR if given), then a manifest of what it put there: every file and
# link meson installed, and every directory that did not exist before.
# uninstall: removes exactly what that manifest lists, files first, then
# the directories it created, deepest first, when they are empty.
#
# One manifest per DESTDIR+prefix, kept in MANIFEST_DIR, so a staged
# install (make check's) and a real one do not forget each other.
set -eu
mode=$1
build=$2
manifests=$3
destdir=${4:-}

die() {
    echo "install: error: $*" >&2
    exit 1
}

prefix=$(sed -n 's/^PREFIX=//p' "$build/../config.mak" 2>/dev/null || true)
[ -n "$prefix" ] || die "no PREFIX in $build/../config.mak: run ./configure"
case "$destdir" in
""|/*) ;;
*) destdir=$(pwd)/$destdir ;;
esac
destdir=${destdir%/}
root="$destdir$prefix"
key=$(printf '%s' "$root" | sha256sum | cut -c1-16)
files="$manifests/$key.files"
dirs="$manifests/$key.dirs"

case "$mode" in
install)
    mkdir -p "$manifests"
    # The directories meson will install into (its dry run names them),
    # and their parents: those missing now are the ones install creates.
    missing=$(mktemp)
    trap 'rm -f "$missing"' EXIT
    DESTDIR="$destdir" meson install -C "$build" --no-rebuild --dry-run |
        sed -n 's/^Installing new directory \(.*\)$/\1/p
                s/^Installing .* to \(\/.*\)$/\1/p' | sort -u |
    while read -r d; do
        while [ "$d" != / ] && [ -n "$d" ] && [ ! -d "$d" ]; do
            echo "$d"
            d=$(dirname "$d")
        done
    done | sort -u > "$missing"
    # meson install honours DESTDIR from the environment
    DESTDIR="$destdir" meson install -C "$build" --no-rebuild --quiet ||
        die "meson install failed"
    # meson's log names each installed file as the final path, with
    # DESTDIR in front (one per line, comments start with #)
    grep -v '^#' "$build/meson-logs/install-log.txt" | sort -u > "$files.new"
    [ -s "$files.new" ] || die "meson installed nothing?"
    # merge with an earlier install to the same place
    if [ -f "$files" ]; then
        sort -u "$files" "$files.new" -o "$files.new"
    fi
    mv "$files.new" "$files"
    new_dirs=$(while read -r d; do [ -d "$d" ] && echo "$d"; done < "$missing")
    { [ -f "$dirs" ] && cat "$dirs"; [ -n "$new_dirs" ] && echo "$new_dirs"; } |
        sort -u > "$dirs.new" || true
    mv "$dirs.new" "$dirs"
    echo "install: $(wc -l < "$files") paths in $root (manifest: $files)"
    ;;
uninstall)
    [ -f "$files" ] || die "nothing installed in $root by this build ($files)"
    n=0
    while read -r f; do
        # meson also lists directories it installs: one that existed
        # before stays, one it created is in $dirs
        if [ -L "$f" ] || { [ -e "$f" ] && [ ! -d "$f" ]; }; then
            rm -f "$f"
            n=$((n + 1))
        fi
    done < "$files"
    # the directories install created, deepest first; one that holds
    # something else now stays
    if [ -f "$dirs" ]; then
        sort -r "$dirs" | while read -r d; do
            [ -n "$d" ] && rmdir "$d" 2>/dev/null || true
        done
    fi
    rm -f "$files" "$dirs"
    echo "uninstall: removed $n files from $root"
    ;;
*)
    die "usage: install.sh install|uninstall QEMU_BUILD MANIFEST_DIR [DESTDIR]"
    ;;
esac
