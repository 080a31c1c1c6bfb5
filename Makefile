# The two entry points (see README.md):
#   make run    the demo: builds udrv, lists this machine's PCI devices, loads the sample modules
#   make test   installs dependencies, builds, runs every test (unit, fixtures, system)
# Others: make build, make asan (unit and system tests under AddressSanitizer + UBSan; not the
# packaging test, which the plain build runs), make asan-vm (the VM suite
# with that build: device paths under ASan, LSan and UBSan), make bench-micro (the drivers' instruction
# budgets, callgrind), make fuzz (every libFuzzer harness for FUZZ_SECONDS each, default 30; clang-16),
# make install PREFIX=DIR (the library, tools, udrvd, modules and SDK without building any test),
# make deb (the Debian packages udrv and libudrv-dev, in build-release/packages),
# make clean.

BUILD ?= build
RELEASE_BUILD ?= build-release
PREFIX ?= /usr/local
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: deps build run test asan asan-vm fuzz bench-micro install deb clean

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DUDRV_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) -LE "vm|packaging"

# The VM suite on the sanitizer build: the guest fails the suite on any sanitizer report. Slower under
# TCG (unoptimised, instrumented), hence the longer limit; its binaries (about 250 MB without debug
# info) take room to unpack, and each instrumented process keeps up to 256 MiB of freed memory in
# quarantine. In a guest of 2 GiB udrvd once vanished mid-suite without a sanitizer report or a word
# of its own (the kernel's OOM killer, most likely; the suite now prints its lines): 3 GiB.
asan-vm: asan
	@UDRV_VM_TIMEOUT=1800 UDRV_VM_MEM=3G tests/vm/run-suite.sh $(ASAN_BUILD)

# The drivers' instructions per operation on the device models (callgrind), checked against the
# committed baseline: bench/micro.sh.
bench-micro: build
	@bench/micro.sh $(BUILD) --check

# clang 14 cannot build the project's std::expected code; clang-16 can, told that libstdc++ 12 may use it.
fuzz: deps
	@scripts/install-deps.sh fuzz
	@CC=clang-16 CXX=clang++-16 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUDRV_FUZZ=ON -DUDRV_TESTS=OFF \
	  -DCMAKE_CXX_FLAGS="-Wno-macro-redefined -D__cpp_concepts=202002L" >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# For people who use udrv rather than develop it: no tests built (a few minutes instead of a dozen).
install: deps
	@cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUDRV_TESTS=OFF >/dev/null
	@cmake --build $(RELEASE_BUILD) -j $(JOBS)
	@cmake --install $(RELEASE_BUILD) --prefix $(PREFIX)

# Debian packages udrv and libudrv-dev (cmake/packaging.cmake) from a build without tests.
deb: deps
	@cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUDRV_TESTS=OFF >/dev/null
	@cmake --build $(RELEASE_BUILD) -j $(JOBS)
	@cd $(RELEASE_BUILD) && cpack -B $(CURDIR)/$(RELEASE_BUILD)/packages
	@ls $(RELEASE_BUILD)/packages/*.deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(RELEASE_BUILD)
