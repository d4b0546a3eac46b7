# snp-viommu: AMD SEV-SNP RMP checks in QEMU's amd-iommu, without SNP
# hardware.  See README.md.
#
#   make          build the fork and run the demonstration (the main job)
#   make check    build and run every test
#   make bench    print the benchmark figures

BUILD    ?= build
QEMU_SRC  = subprojects/qemu
QEMU_BLD  = $(BUILD)/qemu
CORE_BLD  = $(BUILD)/core
export CCACHE_DIR ?= $(CURDIR)/$(BUILD)/ccache

QTESTS    = amd-iommu-snp-test vfio-rmp-sync-test snp-rmp-qmp-test bios-tables-test intel-iommu-test qom-test \
            device-introspect-test
NINJA_TARGETS = qemu-system-x86_64 $(addprefix tests/qtest/,$(QTESTS))

SYS_BLD   = $(BUILD)/system
TESTBED   = /usr/bin/python3 tests/system/testbed.py \
            $(QEMU_BLD)/qemu-system-x86_64 $(SYS_BLD)/bzImage \
            $(SYS_BLD)/initramfs.gz

.PHONY: all build testbed demo demo-qtest check check-unit check-qtest \
        check-system bench checkpatch clean

all: build demo

# configure is re-run whenever our tree or the patch series changes; it
# only redoes what changed (see scripts/graft.sh).
$(BUILD)/config.mak: configure scripts/graft.sh scripts/install-deps.sh \
                     patches/series $(wildcard patches/*.patch)
	./configure --build-dir=$(CURDIR)/$(BUILD)

build: $(BUILD)/config.mak
	./configure --build-dir=$(CURDIR)/$(BUILD) >/dev/null
	ninja -C $(QEMU_BLD) $(NINJA_TARGETS)
	@test -f $(CORE_BLD)/build.ninja || meson setup $(CORE_BLD) .
	ninja -C $(CORE_BLD)

testbed: build
	tests/system/build-testbed.sh $(CURDIR)/$(SYS_BLD) \
	    $(CURDIR)/$(QEMU_BLD)/qemu-system-x86_64

# The 2023 RMP #PF, reproduced by a real Linux host kernel on the fork
demo: testbed
	@$(TESTBED) --demo 2023-bug

# The same bug driven by a qtest, without a kernel
demo-qtest: build
	@QTEST_QEMU_BINARY=$(QEMU_BLD)/qemu-system-x86_64 \
	    $(QEMU_BLD)/tests/qtest/amd-iommu-snp-test \
	    -p /x86_64/amd-iommu-snp/demo/2023-rmp-fault | \
	    sed -n 's/^# \([0-9= ]\)/\1/p; /^ok/p; /^not ok/p'

check-unit: build
	meson test -C $(CORE_BLD) --print-errorlogs

check-qtest: build
	scripts/run-qtests.sh $(QEMU_SRC) $(CURDIR)/$(QEMU_BLD)

check-system: testbed
	$(TESTBED)

check: check-unit check-qtest check-system

bench: testbed
	$(CORE_BLD)/bench-snp-rmp
	$(CORE_BLD)/bench-rmp-sync
	scripts/bench-translate.sh $(CURDIR)/$(QEMU_BLD)
	$(TESTBED) --bench

checkpatch: $(BUILD)/config.mak
	$(QEMU_SRC)/scripts/checkpatch.pl --no-tree -f \
	    $$(git ls-files '*.c' '*.h')
	$(QEMU_SRC)/scripts/checkpatch.pl --no-tree patches/*.patch

clean:
	rm -rf $(BUILD)
