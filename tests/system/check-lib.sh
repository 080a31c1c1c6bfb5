# What the system test scripts share (sourced): check NAME EXPECTED_RC PATTERN COMMAND... runs COMMAND,
# wants its exit status and its output (stdout and stderr) to match the extended regular expression;
# the counts are summed up by summary, whose status is the script's.
fails=0 passes=0
check() {
  local name=$1 want_rc=$2 pattern=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $name (exit $rc, wanted $want_rc; output must match: $pattern)"; echo "$out" | sed 's/^/    /'
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}
summary() {
  echo "$passes passed, $fails failed"
  [ "$fails" -eq 0 ]
}
