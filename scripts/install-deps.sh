#!/bin/sh
# Install the Debian packages that building and testing snp-viommu needs.
# Run as root: adds the apt sources the build relies on (bookworm-backports
# for meson >= 1.5, qemu-system-data and libvirt, sid deb-src for QEMU's
# source package) and installs what is missing.  As another user it prints the
# exact commands instead.  With --fuzzing it also wants what `make fuzz`
# needs: clang 14 and its compiler-rt (libFuzzer, ASan, UBSan).
set -eu

BUILD_PKGS="ninja-build pkgconf python3-venv libglib2.0-dev libfdt-dev \
dpkg-dev ccache seabios ipxe-qemu valgrind"
# The libraries of Debian's qemu-system-x86 feature set (debian/control's
# Build-Depends-Arch, less libblkio-dev and libxen-dev: no libblkio in
# Debian 12, and the fork builds no Xen), and Sphinx for QEMU's manual.
FEATURE_PKGS="zlib1g-dev flex bison python3-distlib python3-sphinx \
python3-sphinx-rtd-theme libcapstone-dev libaio-dev libjack-dev libpulse-dev \
libasound2-dev libpipewire-0.3-dev libbpf-dev libbrlapi-dev libcap-ng-dev \
libattr1-dev libcurl4-gnutls-dev libfuse3-dev libgnutls28-dev libgtk-3-dev \
libvte-2.91-dev libiscsi-dev libncurses-dev libvirglrenderer-dev libepoxy-dev \
libdrm-dev libgbm-dev libnfs-dev libnuma-dev libcacard-dev libpixman-1-dev \
librbd-dev libglusterfs-dev libsasl2-dev libsdl2-dev libseccomp-dev \
libslirp-dev libspice-server-dev librdmacm-dev libibverbs-dev libibumad-dev \
liburing-dev libusb-1.0-0-dev libusbredirparser-dev libssh-dev libzstd-dev \
libvdeplug-dev nettle-dev libudev-dev libjpeg-dev libpng-dev libpmem-dev"
# From bookworm-backports: meson >= 1.5, qemu-system-data 10.x and libvirt
# 11.3 (libvirtd, its QEMU driver and virsh: make check's libvirt test;
# the QEMU driver also pulls in Debian's own qemu-system-x86).
BPO_PKGS="meson qemu-system-data libvirt-daemon libvirt-daemon-driver-qemu \
libvirt-clients"
if [ "${1:-}" = --fuzzing ]; then
    BUILD_PKGS="$BUILD_PKGS clang-14 libclang-rt-14-dev"
fi
SRC_FILE=/etc/apt/sources.list.d/snp-viommu.sources
. /etc/os-release

missing=""
for p in $BUILD_PKGS $FEATURE_PKGS $BPO_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
# bookworm's own versions are installed packages too, but too old
version_ok() {
    v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null) &&
        dpkg --compare-versions "$v" ge "$2"
}
versions_ok=no
if command -v meson >/dev/null 2>&1 &&
   dpkg --compare-versions "$(meson --version)" ge 1.5 &&
   version_ok qemu-system-data 1:10 &&
   version_ok libvirt-daemon 11.3 &&
   version_ok libvirt-daemon-driver-qemu 11.3 &&
   version_ok libvirt-clients 11.3; then
    versions_ok=yes
fi
if [ -z "$missing" ] && [ "$versions_ok" = yes ] && [ -f "$SRC_FILE" ]; then
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
    printf "  printf '%%s\\\\n' '%s' > %s\n" \
        "$(printf '%s' "$sources" | sed "s/'/'\\\\''/g")" "$SRC_FILE" >&2
    echo "  apt-get update" >&2
    echo "  apt-get install -y --no-install-recommends $BUILD_PKGS $FEATURE_PKGS" >&2
    echo "  apt-get install -y --no-install-recommends -t ${VERSION_CODENAME}-backports $BPO_PKGS" >&2
    exit 1
fi

printf '%s\n' "$sources" > "$SRC_FILE"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    $BUILD_PKGS $FEATURE_PKGS
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t "${VERSION_CODENAME}-backports" $BPO_PKGS
