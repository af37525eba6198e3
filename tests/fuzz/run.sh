#!/bin/sh
# Build the libFuzzer harnesses with clang and run each for SECONDS.
# Prints executions and crashes per harness; exits non-zero if any harness
# found a crash, leak or hang (its reproducer is kept in BUILD_DIR/artifacts).
#
# Usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR] [HARNESS...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-300}
build=${2:-$here/../../build-fuzz}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
harnesses=${*:-"linetable procmaps envattrs elf debug_offsets pycode probe_config di_api snapshot capture_wire"}

CC=${CC_FUZZ:-clang} cmake -S "$here" -B "$build" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

mkdir -p "$build/artifacts"
status=0
printf '%-15s %12s %8s\n' harness executions crashes
for h in $harnesses; do
	work=$build/corpus/$h	# new inputs land here, not in the checked-in seeds
	log=$build/fuzz_$h.log
	mkdir -p "$work"
	rc=0
	# Leaks and UBSan reports fail the run; -timeout catches hangs.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$build/fuzz_$h" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/artifacts/$h-" \
		"$work" "$here/corpus/$h" >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	crashes=0
	if [ $rc -ne 0 ]; then
		crashes=$(ls "$build/artifacts" | grep -c "^$h-" || true)
		[ "$crashes" -gt 0 ] || crashes=1
		status=1
	fi
	printf '%-15s %12s %8s\n' "$h" "${execs:-?}" "$crashes"
	if [ $rc -ne 0 ]; then
		echo "== fuzz_$h failed (exit $rc); last lines of $log:"
		tail -40 "$log"
	fi
done
exit $status
