#!/bin/bash
# Runs every test suite of rvhost and prints one summary line
# "N passed, N failed" (a suite is one line of the table below).
# Assumes tools/setup.sh has run (CI's .ci/run does it).
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0
results=()
run() {
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then passed=$((passed + 1)); results+=("PASS  $name ($((SECONDS - t0)) s)")
  else failed=$((failed + 1)); results+=("FAIL  $name ($((SECONDS - t0)) s)"); fi
}
skip() { skipped=$((skipped + 1)); results+=("SKIP  $1: $2"); }

run "meson build" meson compile -C build
run "cargo fmt" cargo fmt --check
run "cargo clippy" cargo clippy --all-targets --quiet -- -D warnings
run "cargo test" cargo test --quiet
# The .so.25/.so.26 behaviour (abi-25-11 implies abi-24-11) on this DPDK.
run "cargo clippy, 24.11/25.11 ABI" cargo clippy --all-targets --quiet --features abi-25-11 -- -D warnings
run "cargo test, 24.11/25.11 ABI" cargo test --quiet --features abi-25-11
run "ABI: symbols and versions" tests/abi/symbols.sh build/librte_vhost.so.23
run "ABI: consumers load ours" tests/abi/consumers.sh build
for t in tests/abi/layout.sh tests/abi/examples.sh tests/abi/install.sh; do
  if [ -x "$t" ]; then run "ABI: $(basename "$t" .sh)" "$t" build; else skip "$t" "not present"; fi
done
if [ -x ffi-tests/run.sh ]; then
  run "C tests, stock librte_vhost" ffi-tests/run.sh
  run "C tests, rvhost" ffi-tests/run.sh "$PWD/build"
else
  skip "ffi-tests" "not present"
fi
# In-process datapath bench in its short form: every burst's counts and used
# rings and sampled payloads are checked, on both libraries (it fails on any
# mismatch; its timings are informative only).
run "microbench: datapath checked per burst, stock and rvhost" \
  tools/microbench.sh --rounds 1 --iters 20000 --sizes "64 1518" --out /tmp/rvhost-microbench-ci \
    --modes "split split-mrg packed packed-mrg split-iommu split-mrg-iommu packed-iommu packed-mrg-iommu"
# End-to-end (dpdk-testpmd pairs, QEMU guests): each runs stock and rvhost,
# rvhost must pass.
for t in tests/e2e/loopback_paths.py tests/e2e/reconnect.py tests/e2e/qemu_guest.py tests/e2e/vhost_blk.py \
    tests/e2e/vhost_crypto.py tests/e2e/migration.py tests/e2e/viommu.py; do
  run "e2e: $(basename "$t" .py)" timeout 900 python3 "$t" "$PWD/build"
done
# Shell end-to-end scripts, if any (each gets the build dir; exit status
# decides). A helper that is not a test says so in its first lines with the
# comment "# rvhost-e2e: helper" (e.g. guest-image.sh); one that needs more
# than 900 s says "# rvhost-e2e: timeout=SECONDS" (e.g. debian13.sh, whose
# first run makes its chroot).
for t in tests/e2e/*.sh; do
  [ -e "$t" ] || continue
  head -n 5 "$t" | grep -q '^# rvhost-e2e: helper' && continue
  limit=$(head -n 5 "$t" | sed -n 's/^# rvhost-e2e: timeout=\([0-9]*\)$/\1/p')
  run "e2e: $(basename "$t" .sh)" timeout "${limit:-900}" bash "$t" "$PWD/build"
done
# The benchmark's quick mode proves the main job runs (it never fails on speed).
run "bench --quick (main job)" timeout 600 python3 tests/e2e/bench.py "$PWD/build" --quick

echo
printf '%s\n' "${results[@]}"
echo
echo "suites: $passed passed, $failed failed, $skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
