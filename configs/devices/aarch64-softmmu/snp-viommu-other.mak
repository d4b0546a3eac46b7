# SPDX-License-Identifier: GPL-2.0-or-later
#
# snp-viommu: an Arm build that proves the common code stands alone
# (make check-build-other): the virt board with PCI, VFIO and iommufd, so
# that the rmp-sync engine and its VFIO glue are compiled and linked
# without the x86 target.  Selected with --without-default-devices.

CONFIG_ARM_VIRT=y
CONFIG_VFIO_PCI=y
CONFIG_IOMMUFD=y
CONFIG_PCI_TESTDEV=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
# hw/acpi/cxl.c needs the CXL host code (as on x86), which needs PXB, the
# CXL memory device and, for its root port type, the PCIe root port
CONFIG_PXB=y
CONFIG_CXL=y
CONFIG_CXL_MEM_DEVICE=y
CONFIG_PCIE_PORT=y
