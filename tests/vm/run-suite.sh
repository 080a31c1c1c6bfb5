#!/usr/bin/env bash
# ctest entry for the VM suite. Usage: run-suite.sh BUILD_DIR
set -euo pipefail
[ "${UDRV_SKIP_VM:-0}" = 1 ] && { echo "SKIP: UDRV_SKIP_VM=1"; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/vm.sh" run "$1" "$here/guest-tests.sh"
