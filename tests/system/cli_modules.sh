#!/usr/bin/env bash
# The udrv tool on the sample modules: modinfo prints every field without loading anything, insmod loads
# with parameters and dependencies, and bad input gets a clear error and a non-zero exit.
# Usage: cli_modules.sh UDRV_BINARY SAMPLE_MODULE_DIR TEST_MODULE_DIR
set -uo pipefail
udrv=$1 samples=$2 tests=$3
. "$(dirname "$0")/check-lib.sh"

for m in hello params provider consumer; do
  check "modinfo $m name" 0 "^name: +udrv_sample_$m$" "$udrv" modinfo "$samples/udrv_sample_$m.so"
  check "modinfo $m license" 0 "^license: +(GPL|MIT)$" "$udrv" modinfo "$samples/udrv_sample_$m.so"
  check "modinfo $m author" 0 "^author: +The udrv developers$" "$udrv" modinfo "$samples/udrv_sample_$m.so"
  check "modinfo $m abi" 0 "^abi: +1$" "$udrv" modinfo "$samples/udrv_sample_$m.so"
done
check "modinfo params parm" 0 "^parm: +count:How many greetings to log \(0-100\) \(int64, default 1\)$" "$udrv" modinfo "$samples/udrv_sample_params.so"
check "modinfo consumer depends" 0 "^depends: +udrv_sample_provider$" "$udrv" modinfo "$samples/udrv_sample_consumer.so"
check "modinfo -F" 0 "^udrv_sample_provider$" "$udrv" modinfo -F depends "$samples/udrv_sample_consumer.so"
check "modinfo ramdisk alias" 0 "^alias: +of:N\*T\*Cudrv,ramdisk$" "$udrv" modinfo "$samples/udrv_ramdisk.so"
check "modinfo --json" 0 '"name": "udrv_sample_params"' "$udrv" modinfo --json "$samples/udrv_sample_params.so"
# JSON as data: numbers as numbers, defaults typed, each parameter once (not again as parm/parmtype text).
check "modinfo --json numbers" 0 '"abi": 1,' "$udrv" modinfo --json "$samples/udrv_sample_params.so"
check "modinfo --json typed defaults" 0 '"default": 1,' "$udrv" modinfo --json "$samples/udrv_sample_params.so"
check "modinfo --json bool default" 0 '"default": false,' "$udrv" modinfo --json "$samples/udrv_sample_params.so"
out=$("$udrv" modinfo --json "$samples/udrv_sample_params.so" 2>&1)
if grep -qE '"parm(type|default)?"' <<<"$out"; then echo "FAIL: modinfo --json lists parameters twice"; fails=$((fails + 1)); else passes=$((passes + 1)); fi
check "modinfo does not run code" 0 "^name: +test_failinit$" "$udrv" modinfo "$tests/test_failinit.so"
check "modinfo non-module" 1 "no udrv_modinfo section: not a udrv module" "$udrv" modinfo "$tests/test_nomodinfo.so"
check "modinfo not ELF" 1 "not an ELF file" "$udrv" modinfo /etc/hostname
# Hostile strings: invalid UTF-8 becomes U+FFFD in JSON (it used to abort: nlohmann type_error 316) and
# control bytes are escaped in text (an ESC [2J would have cleared the terminal).
check "modinfo --json with invalid UTF-8" 0 $'"description": "caf\xef\xbf\xbd \\\\u001b\\[2J cleared\\?"' "$udrv" modinfo --json "$tests/test_hostile.so"
check "modinfo text escapes control bytes" 0 '^description: +caf\\xe9 \\x1b\[2J cleared\?$' "$udrv" modinfo "$tests/test_hostile.so"
check "modinfo text escapes broken UTF-8" 0 '^author: +\\xff\\xfe$' "$udrv" modinfo "$tests/test_hostile.so"
check "modinfo --ids-like device input" 1 "not a regular file \(a character device\)" "$udrv" modinfo /dev/zero
check "lspci --ids /dev/zero" 1 "/dev/zero: not a regular file \(a character device\): refusing to read it as pci.ids" "$udrv" lspci --ids /dev/zero

check "insmod hello" 0 "udrv_sample_hello: goodbye" "$udrv" insmod "$samples/udrv_sample_hello.so"
# Log lines carry seconds since the process started, marked "+" (dmesg counts from boot).
check "log timestamps are marked process-relative" 0 "^\[\+ +[0-9]+\.[0-9]{6}\] udrv_sample_hello: goodbye" "$udrv" insmod "$samples/udrv_sample_hello.so"
check "insmod params" 0 "\[3/3\] hello, bus!" "$udrv" insmod "$samples/udrv_sample_params.so" count=3 who=bus loud=y
check "insmod by name with deps" 0 "udrv_sample_provider +[0-9]+ +1 udrv_sample_consumer" env UDRV_MODULE_PATH="$samples" "$udrv" insmod udrv_sample_consumer
check "insmod several" 0 "udrv_sample_params +[0-9]+ +0" "$udrv" insmod "$samples/udrv_sample_hello.so" -- "$samples/udrv_sample_params.so" count=0
check "insmod builtin" 0 "udrv_ramdisk +builtin" "$udrv" insmod udrv_ramdisk
check "insmod taint" 0 "Tainted: P" "$udrv" insmod "$tests/test_proprietary.so"
check "insmod bad param" 1 "unknown parameter 'colour'" "$udrv" insmod "$samples/udrv_sample_params.so" colour=red
check "insmod bad value" 1 "parameter 'count' expects int64, got 'lots'" "$udrv" insmod "$samples/udrv_sample_params.so" count=lots
check "insmod failing init" 1 "init failed: count=101 is out of range" "$udrv" insmod "$samples/udrv_sample_params.so" count=101
check "insmod bad abi" 1 "built for udrv module ABI 99" "$udrv" insmod "$tests/test_badabi.so"
check "insmod cycle" 1 "dependency cycle: test_cycle_a -> test_cycle_b -> test_cycle_a" "$udrv" insmod "$tests/test_cycle_a.so"
check "insmod missing" 1 "module nope not found" "$udrv" insmod nope
check "insmod no args" 1 "insmod needs a MODULE" "$udrv" insmod

# The command line: one exit status for every usage error (2), the word that is wrong named.
check "unknown command" 2 "udrv: usage: 'frobnicate' is not a command of 'udrv' \(commands: lspci, modinfo, " "$udrv" frobnicate
check "unknown nvme command" 2 "'frob' is not a command of 'udrv nvme' \(commands: list, " "$udrv" nvme frob
check "no command" 2 "'udrv' needs a command" "$udrv"
check "unknown option" 2 "see 'udrv lspci --help'" "$udrv" lspci --bogus
check "--version" 0 "^udrv [0-9]+\.[0-9]+\.[0-9]+ \(module ABI 1\)$" "$udrv" --version
check "--help" 0 "^Usage: .*udrv" "$udrv" --help

summary
