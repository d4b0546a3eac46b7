# snp-viommu: AMD SEV-SNP RMP checks in QEMU's amd-iommu, without SNP
# hardware.  See README.md.
#
#   make          build the fork and run the demonstration (the main job)
#   make check    build and run every test
#   make bench    print the benchmark figures
#   make fuzz     the fuzzing campaigns (FUZZ_TIME=SECONDS; see README.md)
#   make install  install the fork (PREFIX=/usr/local, DESTDIR=)
#   make uninstall  remove what make install installed there

BUILD    ?= build
QEMU_SRC  = subprojects/qemu
QEMU_BLD  = $(BUILD)/qemu
CORE_BLD  = $(BUILD)/core
export CCACHE_DIR ?= $(CURDIR)/$(BUILD)/ccache

# PREFIX=DIR on the command line changes the build's prefix (configure
# --prefix); otherwise it stays what it was (not from the environment)
CLI_PREFIX = $(if $(filter command line,$(origin PREFIX)),$(PREFIX))
CONFIGURE = ./configure --build-dir=$(CURDIR)/$(BUILD) \
            $(if $(CLI_PREFIX),"--prefix=$(CLI_PREFIX)")
BUILT_PREFIX = $$(sed -n 's/^PREFIX=//p' $(BUILD)/config.mak)

QTESTS    = amd-iommu-snp-test vfio-rmp-sync-test snp-rmp-qmp-test bios-tables-test intel-iommu-test qom-test \
            device-introspect-test
# all: the emulator, its modules, QEMU's tools and manual, and the qtests
NINJA_TARGETS = all $(addprefix tests/qtest/,$(QTESTS))

# The sanitizer build (configure --sanitize): ASan + UBSan without recovery
ASAN_BLD  = $(BUILD)/qemu-asan
CORE_ASAN = $(BUILD)/core-asan
# The hardware-agnostic core under ThreadSanitizer: its stress tests
CORE_TSAN = $(BUILD)/core-tsan
ASAN_QTESTS = amd-iommu-snp-test vfio-rmp-sync-test snp-rmp-qmp-test \
              amd-psp-test
# QEMU's own teardown leaks are not ours: leak checks run on the unit tests
SAN_ENV   = ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The differential fuzzer's seeded set, as make check runs it
DIFFFUZZ_SEEDED = --seed 1 --programs 60 --minimize 0

# The fuzzing build (configure --fuzzing): clang-14, libFuzzer, ASan, UBSan
FUZZ_BLD  = $(BUILD)/qemu-fuzz
# make fuzz runs this long (seconds); the default is a long campaign
FUZZ_TIME ?= 28800
# generic-fuzz workers (they share one corpus)
FUZZ_JOBS ?= 1

# A non-x86 system emulator and QEMU's tools (configure --other)
OTHER_BLD = $(BUILD)/qemu-other
OTHER_TARGETS = qemu-system-aarch64 qemu-img qemu-io qemu-nbd \
                storage-daemon/qemu-storage-daemon

SYS_BLD   = $(BUILD)/system
TESTBED   = /usr/bin/python3 tests/system/testbed.py \
            $(QEMU_BLD)/qemu-system-x86_64 $(SYS_BLD)/bzImage \
            $(SYS_BLD)/initramfs.gz

.PHONY: all build testbed demo demo-qtest check check-unit check-qtest check-tsan \
        check-system bench checkpatch clean build-asan check-asan \
        check-asan-unit check-asan-qtest check-asan-difffuzz \
        check-asan-qmpfuzz build-fuzz fuzz check-fuzz-script \
        check-build-other install \
        uninstall check-install check-libvirt check-snp-host \
        check-snp-host-psp check-snp-host-dma check-svm

all: build demo

# configure is re-run whenever our tree or the patch series changes; it
# only redoes what changed (see scripts/graft.sh).
$(BUILD)/config.mak: configure scripts/graft.sh scripts/install-deps.sh \
                     patches/series $(wildcard patches/*.patch)
	$(CONFIGURE)

build: $(BUILD)/config.mak
	$(CONFIGURE) >/dev/null
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

check: check-unit check-qtest check-system check-snp-host check-snp-host-psp \
       check-snp-host-dma check-svm \
       check-install \
       check-libvirt check-asan check-tsan check-fuzz-script

# The SVM features TCG implements for KVM's SEV support (NRIPS,
# DecodeAssists, FlushByASID, LBRV), on a bare-metal test kernel
SVM_TEST_BLD = $(BUILD)/tcg-svm
$(SVM_TEST_BLD)/svm-test.bin: tests/tcg-svm/boot.S tests/tcg-svm/svm-test.c \
                              tests/tcg-svm/svm-test.ld tests/tcg-svm/Makefile
	$(MAKE) -f tests/tcg-svm/Makefile O=$(CURDIR)/$(SVM_TEST_BLD) CC=gcc

check-svm: build $(SVM_TEST_BLD)/svm-test.bin
	tests/tcg-svm/run.sh $(QEMU_BLD)/qemu-system-x86_64 \
	    $(SVM_TEST_BLD)/svm-test.bin

# Linux boots as an SEV-SNP host on the fork (TCG): Debian's own 6.12
# (with an RMP #PF provoked by tests/system/snp-rmp-pf, built against
# Debian's 6.12 headers) and 7.2.13 kernels, and the test bed's 7.2.8.
# check-snp-host-psp adds the PSP (-device amd-psp) and what needs it.
SNP_HOST_TEST = /usr/bin/python3 tests/system/snp-host-test.py \
	    --testbed $(CURDIR)/$(SYS_BLD)/bzImage \
	    $(CURDIR)/$(QEMU_BLD)/qemu-system-x86_64 $(CURDIR)/$(BUILD)/snp-host-check
check-snp-host: testbed
	$(SNP_HOST_TEST)

check-snp-host-psp: testbed
	$(SNP_HOST_TEST) --psp
	$(SNP_HOST_TEST) --psp --kernels 6.12 \
	    --cpu EPYC-Milan,-hypervisor,+lbrv,+flushbyasid,+decodeassists

# DMA through Debian 6.12's DMA API on the SNP host: what arrives, what the
# IOMMU stops (firmware pages, 2M IO pages over 4K RMP), nohugepages
check-snp-host-dma: build
	/usr/bin/python3 tests/system/snp-host-dma-test.py \
	    $(CURDIR)/$(QEMU_BLD)/qemu-system-x86_64 $(CURDIR)/$(BUILD)/snp-host-dma

# make install installs what make built (it builds nothing: it may run as
# root over a user's tree) and honours DESTDIR; the manifest of what it
# installed is kept in the install, for make uninstall
install:
	@test -f $(BUILD)/config.mak || { echo "make install: run make first" >&2; exit 1; }
	scripts/install.sh install $(QEMU_BLD) "$(or $(CLI_PREFIX),$(BUILT_PREFIX))" "$(DESTDIR)"

uninstall:
	@test -n "$(CLI_PREFIX)" || test -f $(BUILD)/config.mak || \
	    { echo "make uninstall: say PREFIX=" >&2; exit 1; }
	scripts/install.sh uninstall $(QEMU_BLD) "$(or $(CLI_PREFIX),$(BUILT_PREFIX))" "$(DESTDIR)"

# A staged install (DESTDIR) that make check runs: the installed fork's
# features, firmware, default machine and tools, uninstall, and libvirt
STAGE     = $(CURDIR)/$(BUILD)/install-check
check-install: build
	MAKE="$(MAKE)" tests/install/install-test.sh $(BUILD) $(STAGE)

check-libvirt: check-install testbed
	/usr/bin/python3 tests/system/libvirt-test.py \
	    $(STAGE)$(BUILT_PREFIX)/bin/qemu-system-x86_64 \
	    $(SYS_BLD)/bzImage $(SYS_BLD)/initramfs.gz $(CURDIR)/$(BUILD)/libvirt-check

# gcc's TSan warns about atomic_thread_fence (the model's seqlock): no -Werror
check-tsan: build
	@test -f $(CORE_TSAN)/build.ninja || meson setup $(CORE_TSAN) . \
	    -Db_sanitize=thread -Dwerror=false -Dc_args=-g >/dev/null
	ninja -C $(CORE_TSAN)
	TSAN_OPTIONS=halt_on_error=1 meson test -C $(CORE_TSAN) \
	    --print-errorlogs --timeout-multiplier 10 \
	    test-snp-rmp-table-threads test-rmp-sync-threads

# The same tree under ASan + UBSan: unit tests, our qtests, the
# differential fuzzer's seeded set and the QMP fuzzer's corpus
build-asan: build
	./configure --build-dir=$(CURDIR)/$(BUILD) --sanitize >/dev/null
	ninja -C $(ASAN_BLD) qemu-system-x86_64 \
	    $(addprefix tests/qtest/,$(ASAN_QTESTS))
	ninja -C $(CORE_ASAN)

check-asan: check-asan-unit check-asan-qtest check-asan-difffuzz \
            check-asan-qmpfuzz

check-asan-unit: build-asan
	meson test -C $(CORE_ASAN) --print-errorlogs --timeout-multiplier 10

check-asan-qtest: build-asan
	$(SAN_ENV) RUN_QTESTS="$(ASAN_QTESTS)" \
	    scripts/run-qtests.sh $(QEMU_SRC) $(CURDIR)/$(ASAN_BLD)

check-asan-difffuzz: build-asan
	$(SAN_ENV) /usr/bin/python3 tests/fuzz/difffuzz.py \
	    --qemu $(ASAN_BLD)/qemu-system-x86_64 $(DIFFFUZZ_SEEDED)

check-asan-qmpfuzz: build-asan
	$(SAN_ENV) /usr/bin/python3 tests/fuzz/qmpfuzz.py \
	    --qemu $(ASAN_BLD)/qemu-system-x86_64 --seed 1 --programs 8 \
	    --out $(BUILD)/qmpfuzz-check

# Fuzzing: generic-fuzz (libFuzzer) with the differential and QMP fuzzers
build-fuzz: build-asan
	./configure --build-dir=$(CURDIR)/$(BUILD) --sanitize --fuzzing \
	    >/dev/null
	ninja -C $(FUZZ_BLD) qemu-fuzz-x86_64

fuzz: build-fuzz
	@FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz.sh $(CURDIR)/$(BUILD) $(FUZZ_TIME)

# How make fuzz ends (deadlines, Ctrl-C, kill, crash counting: fake
# fuzzers), and the real Python fuzzers on SIGINT and SIGTERM
check-fuzz-script: build
	/usr/bin/python3 tests/fuzz/fuzz-sh-test.py \
	    --qemu $(QEMU_BLD)/qemu-system-x86_64

bench: testbed
	$(CORE_BLD)/bench-snp-rmp
	$(CORE_BLD)/bench-rmp-sync
	scripts/bench-translate.sh $(CURDIR)/$(QEMU_BLD)
	/usr/bin/python3 tests/bench/snp-host-bench.py \
	    $(CURDIR)/$(QEMU_BLD)/qemu-system-x86_64 $(CURDIR)/$(BUILD)/snp-host-bench
	$(TESTBED) --bench

checkpatch: $(BUILD)/config.mak
	$(QEMU_SRC)/scripts/checkpatch.pl --no-tree -f \
	    $$(git ls-files '*.c' '*.h')
	$(QEMU_SRC)/scripts/checkpatch.pl --no-tree patches/*.patch

clean:
	rm -rf $(BUILD)

# The common code stands without the x86 target: build qemu-system-aarch64
# (virt, VFIO, iommufd) and QEMU's tools, then smoke-test them
check-build-other: $(BUILD)/config.mak
	./configure --build-dir=$(CURDIR)/$(BUILD) --other >/dev/null
	ninja -C $(OTHER_BLD) $(OTHER_TARGETS)
	/usr/bin/python3 tests/other/smoke.py $(OTHER_BLD)
