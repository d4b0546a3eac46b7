#!/bin/sh
# build-testbed.sh OUT QEMU: the whole-system test guest, from Debian packages
# only: a kernel from Debian's linux source package (pinned below, from
# sid) with the AMD IOMMU driver, iommufd and the VFIO cdev built in,
# busybox-static, and snp-dma, packed into an initramfs.  Everything is
# cached in OUT; the download in the snp-viommu cache.
set -eu
LINUX_DEB_VERSION=7.2.8-1
LINUX_VERSION=7.2.8

top=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
qemu=$2                 # the fork: the guest runs it as an inner VMM too
cache="${SNP_VIOMMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snp-viommu}/linux"
src="$out/linux-$LINUX_VERSION"
mkdir -p "$out" "$cache"

for p in bc flex bison libelf-dev libssl-dev busybox-static cpio rsync; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="${missing:-} $p"
done
if [ -n "${missing:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    else
        echo "build-testbed: run: apt-get install -y$missing" >&2
        exit 1
    fi
fi

# The kernel is rebuilt (incrementally, in the same tree) when its options
# change: bzImage.stamp records the config it was built from
stamp="$LINUX_DEB_VERSION $(sha256sum < "$top/tests/system/guest-kernel.config")"
if [ ! -f "$out/bzImage" ] || [ "$(cat "$out/bzImage.stamp" 2>/dev/null)" != "$stamp" ]; then
    orig="$cache/linux_$LINUX_VERSION.orig.tar.xz"
    if [ ! -f "$orig" ]; then
        (cd "$cache" && apt-get source --download-only "linux=$LINUX_DEB_VERSION") >&2
    fi
    dsc="$cache/linux_$LINUX_DEB_VERSION.dsc"
    sum=$(sed -n '/^Checksums-Sha256:/,/^[^ ]/s/^ \([0-9a-f]\{64\}\) [0-9]* \(linux_.*orig.tar.xz\)$/\1  \2/p' "$dsc")
    (cd "$cache" && echo "$sum" | sha256sum --quiet -c -)
    if [ ! -d "$src" ]; then
        tar -xf "$orig" -C "$out"
    fi
    make -C "$src" -s tinyconfig
    "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" \
        "$top/tests/system/guest-kernel.config" >/dev/null
    make -C "$src" -s olddefconfig
    for o in IOMMUFD VFIO_DEVICE_CDEV AMD_IOMMU VFIO_PCI HUGETLB_PAGE \
             SMP X86_MSR KVM KVM_AMD KVM_AMD_SEV AMD_MEM_ENCRYPT \
             CRYPTO_DEV_CCP CRYPTO_DEV_CCP_DD CRYPTO_DEV_SP_PSP; do
        grep -q "^CONFIG_$o=y" "$src/.config" ||
            { echo "build-testbed: CONFIG_$o did not stick" >&2; exit 1; }
    done
    make -C "$src" -s -j"$(nproc)" bzImage
    cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
    echo "$stamp" > "$out/bzImage.stamp"
fi

if [ ! -d "$out/headers" ]; then
    make -C "$src" -s headers_install INSTALL_HDR_PATH="$out/headers"
fi

root="$out/initramfs"
rm -rf "$root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys"
cp /bin/busybox "$root/bin/busybox"
gcc -static -O2 -Wall -Werror -I"$out/headers/include" \
    -o "$root/bin/snp-dma" "$top/tests/system/snp-dma.c"
cp "$top/tests/system/init" "$root/init"
# the fork, its libraries and firmware, for the inner-VMM scenarios
mkdir -p "$root/share" "$root/lib64" "$root/lib/x86_64-linux-gnu"
cp "$qemu" "$root/bin/qemu-system-x86_64"
for lib in $(ldd "$qemu" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}'); do
    cp -L "$lib" "$root$lib"
done
# A build with modules has -accel qtest as one; the binary looks for it in
# its module directory relative to its own: PREFIX/bin is /bin here, so
# PREFIX/X is /X.  (qemu-bundle/PREFIX mirrors the installed tree.)
prefix=$(sed -n 's/^PREFIX=//p' "$(dirname "$qemu")/../config.mak" 2>/dev/null)
bundle=$(dirname "$qemu")/qemu-bundle$prefix
mod=$(cd "$bundle" 2>/dev/null && find . -name accel-qtest-x86_64.so | head -1)
if [ -z "$prefix" ] || [ -z "$mod" ]; then
    echo "build-testbed: no accel-qtest module under $bundle" >&2
    exit 1
fi
mkdir -p "$root/$(dirname "$mod")"
cp -L "$bundle/$mod" "$root/$mod"
cp -L /usr/share/seabios/bios-256k.bin "$root/share/"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initramfs.gz"
echo "build-testbed: $out/bzImage $out/initramfs.gz"
