#!/bin/sh
# install.sh install|uninstall QEMU_BUILD PREFIX [DESTDIR]
#
# install: meson install of the fork's build, already built (nothing is
# rebuilt: `make install` may run as root on a tree built by a user), into
# PREFIX, which must be the build's configured prefix, under DESTDIR if
# given.  It refuses to overwrite a file that is not its own (a file of
# Debian's qemu packages with PREFIX=/usr, say).  Then it writes a manifest
# of what it put there, inside the install:
#   PREFIX/share/snp-viommu/installed-files   every file and link installed
#   PREFIX/share/snp-viommu/created-dirs      every directory it created
# The manifest names final paths, without DESTDIR: a staged install
# (packaging) ships it as it will be on the target.
# uninstall: removes exactly what that manifest lists (and the manifest),
# then the directories install created, deepest first, when they are empty.
# The manifest lives in the install, so make clean or a fresh clone can
# still uninstall.
set -eu
mode=$1
build=$2
prefix=$3
destdir=${4:-}

die() {
    echo "install: error: $*" >&2
    exit 1
}

case "$prefix" in
/*) ;;
*) die "PREFIX must be an absolute path, not '$prefix'" ;;
esac
# normalised without following links (-s): the paths are the install's
if [ -n "$destdir" ]; then
    destdir=$(realpath -ms "$destdir")
    [ "$destdir" != / ] || destdir=
fi
prefix=$(realpath -ms "$prefix")
[ "$prefix" != / ] || die "PREFIX=/ is not a prefix"
root="$destdir$prefix"
mdir="$root/share/snp-viommu"
files="$mdir/installed-files"
dirs="$mdir/created-dirs"

case "$mode" in
install)
    configured=$(meson introspect --buildoptions "$build" |
        python3 -c 'import json, sys
print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')
    [ "$configured" = "$prefix" ] ||
        die "the build's prefix is $configured: make PREFIX=$prefix first"
    # (ninja -n cannot tell: qemu-version.h is regenerated on every run)
    [ -x "$build/qemu-system-x86_64" ] && [ -f "$build/docs/docs.stamp" ] ||
        die "$build is not built: run make first"
    # What meson will install, as final paths: a file there that is not
    # in our manifest belongs to someone else.
    mine=$(mktemp)
    missing=$(mktemp)
    trap 'rm -f "$mine" "$missing"' EXIT
    [ -f "$files" ] && sed "s|^|$destdir|" "$files" > "$mine"
    meson introspect --installed "$build" |
        DESTDIR="$destdir" python3 -c 'import json, os, sys
dest = os.environ["DESTDIR"]
mine = set(open(sys.argv[1]).read().split("\n"))
bad = []
for src, dst in json.load(sys.stdin).items():
    pairs = [(src, dst)]
    if os.path.isdir(src):
        pairs = [(os.path.join(d, f), os.path.join(dst, os.path.relpath(
                     os.path.join(d, f), src)))
                 for d, _, fs in os.walk(src) for f in fs]
    for _, d in pairs:
        p = dest + d
        if (os.path.lexists(p) and not os.path.isdir(p)) and p not in mine:
            bad.append(p)
if bad:
    print("install: error: would overwrite %d files that are not from this "
          "install, e.g. %s" % (len(bad), ", ".join(sorted(bad)[:3])),
          file=sys.stderr)
    sys.exit(1)' "$mine" || exit 1
    # The directories meson will install into (its dry run names them),
    # and their parents: those missing now are the ones install creates.
    DESTDIR="$destdir" meson install -C "$build" --no-rebuild --dry-run |
        sed -n 's/^Installing new directory \(.*\)$/\1/p
                s/^Installing .* to \(\/.*\)$/\1/p' | sort -u |
    { cat; echo "$mdir"; } |
    while read -r d; do
        while [ "$d" != / ] && [ -n "$d" ] && [ ! -d "$d" ]; do
            echo "$d"
            d=$(dirname "$d")
        done
    done | sort -u > "$missing"
    rc=0
    DESTDIR="$destdir" meson install -C "$build" --no-rebuild --quiet ||
        rc=$?
    # meson writes its log into the build even as root: leave it the
    # build's owner's, or their next install (make check) cannot write it
    log="$build/meson-logs/install-log.txt"
    chown --reference="$build" "$log" 2>/dev/null || true
    # The manifest, also after a failed install: what it did install is
    # ours to retry over and to uninstall.  meson's log names each
    # installed path with DESTDIR in front (comments start with #); an
    # earlier install to the same place is merged.
    without_destdir() {
        awk -v d="$destdir" 'd != "" && index($0, d) == 1 {
            print substr($0, length(d) + 1); next } { print }'
    }
    mkdir -p "$mdir"
    { grep -v '^#' "$log"; cat "$mine"; echo "$files"; echo "$dirs"; } |
        grep -v '^$' | without_destdir | sort -u > "$files.new"
    mv "$files.new" "$files"
    { [ -f "$dirs" ] && sed "s|^|$destdir|" "$dirs"
      while read -r d; do [ -d "$d" ] && echo "$d"; done < "$missing"; } |
        without_destdir | grep -v '^$' | sort -u > "$dirs.new" || true
    mv "$dirs.new" "$dirs"
    [ "$rc" = 0 ] || die "meson install failed; what it installed is in $files"
    echo "install: $(wc -l < "$files") paths in $root (manifest: $files)"
    ;;
uninstall)
    [ -f "$files" ] || die "no snp-viommu install in $root (no $files)"
    created=$(sed "s|^|$destdir|" "$dirs" 2>/dev/null | sort -r || true)
    n=0
    # the manifest lists itself: it goes last, with the rest
    while read -r f; do
        # meson also lists directories it installs: one that existed
        # before stays, one it created is in created-dirs
        if [ -L "$f" ] || { [ -e "$f" ] && [ ! -d "$f" ]; }; then
            rm -f "$f"
            n=$((n + 1))
        fi
    done <<EOF
$(sed "s|^|$destdir|" "$files")
EOF
    echo "$created" | while read -r d; do
        [ -n "$d" ] && rmdir "$d" 2>/dev/null || true
    done
    echo "uninstall: removed $n files from $root"
    ;;
*)
    die "usage: install.sh install|uninstall QEMU_BUILD PREFIX [DESTDIR]"
    ;;
esac
