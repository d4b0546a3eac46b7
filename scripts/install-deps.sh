#!/bin/sh
# Install the Debian packages that building and testing snp-viommu needs.
# Run as root: adds the apt sources the build relies on (bookworm-backports
# for meson >= 1.5 and qemu-system-data, sid deb-src for QEMU's source
# package) and installs what is missing.  As another user it prints the
# exact commands instead.  With --fuzzing it also wants what `make fuzz`
# needs: clang 14 and its compiler-rt (libFuzzer, ASan, UBSan).
set -eu

BUILD_PKGS="meson ninja-build pkgconf python3-venv libglib2.0-dev libfdt-dev \
dpkg-dev ccache seabios ipxe-qemu qemu-system-data valgrind"
BPO_PKGS="meson qemu-system-data"
if [ "${1:-}" = --fuzzing ]; then
    BUILD_PKGS="$BUILD_PKGS clang-14 libclang-rt-14-dev"
fi
SRC_FILE=/etc/apt/sources.list.d/snp-viommu.sources
. /etc/os-release

missing=""
for p in $BUILD_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
meson_ok=no
if command -v meson >/dev/null 2>&1 &&
   dpkg --compare-versions "$(meson --version)" ge 1.5; then
    meson_ok=yes
fi
if [ -z "$missing" ] && [ "$meson_ok" = yes ] && [ -f "$SRC_FILE" ]; then
    exit 0
fi

sources="Types: deb
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"

if [ "$(id -u)" != 0 ]; then
    echo "snp-viommu needs these packages; run as root:" >&2
    echo "  printf '%s\\n' '$(echo "$sources" | sed "s/'/'\\\\''/g")' > $SRC_FILE" >&2
    echo "  apt-get update" >&2
    echo "  apt-get install -y -t ${VERSION_CODENAME}-backports $BUILD_PKGS" >&2
    exit 1
fi

printf '%s\n' "$sources" > "$SRC_FILE"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -t "${VERSION_CODENAME}-backports" $BUILD_PKGS
