# snp-viommu: the few x86_64 devices its users and tests need.
# Selected by configure with --without-default-devices
# --with-devices-x86_64=snp-viommu.

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
