# snp-viommu: the x86_64 devices its users and tests need.
# Selected by configure with --with-devices-x86_64=snp-viommu.
#
# QEMU 10.2 does not link with --without-default-devices on x86 (its ACPI
# code needs CXL host code that nothing selects), so the Kconfig defaults
# stay on and the boards and features we do not need are switched off.

CONFIG_Q35=y
CONFIG_AMD_IOMMU=y
CONFIG_VTD=y
CONFIG_TEST_DEVICES=y
CONFIG_EDU=y
CONFIG_PCI_TESTDEV=y
CONFIG_VFIO_PCI=y
CONFIG_IOMMUFD=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_SERIAL=y

CONFIG_ISAPC=n
CONFIG_I440FX=n
CONFIG_MICROVM=n
CONFIG_NITRO_ENCLAVE=n
CONFIG_XEN=n
CONFIG_HYPERV=n
CONFIG_SGX=n
CONFIG_TDX=n
CONFIG_QXL=n
