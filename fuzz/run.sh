#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS, one after the other (never two at once), and prints
# per target the runs, execs/s, coverage (libFuzzer's cov/ft), corpus size (inputs kept) and
# crashes from libFuzzer's final stats. Exits non-zero if any target crashed. Called by `make fuzz`.
#
# usage: fuzz/run.sh SECONDS OUT_DIR [TARGET…]
# New corpus entries go to OUT_DIR/corpus/<target> (outside git); fuzz/seeds/<target> is only
# read. Crashing inputs land in OUT_DIR/artifacts/<target>/, logs in OUT_DIR/<target>.log.
set -uo pipefail

seconds=$1
out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(recovery_event jenkins_json custom_resource label_expr tree_param)
fi
# The same flags for build and run, so `run` finds the build up to date.
flags=(-s none -a --codegen-units 16 --target-dir "${CARGO_TARGET_DIR:?}")

cd "$here/.." || exit 2
cargo fuzz build "${flags[@]}" || exit 2

failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
    log="$out/$t.log"
    dict=()
    [ -f "$here/dicts/$t.dict" ] && dict=("-dict=$here/dicts/$t.dict")
    echo "fuzz: $t for ${seconds}s (log $log)"
    cargo fuzz run "${flags[@]}" "$t" "$out/corpus/$t" "$here/seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -artifact_prefix="$out/artifacts/$t/" "${dict[@]}" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(find "$out/artifacts/$t" -type f | wc -l)
    line=$(printf '%-16s runs=%-10s execs/s=%-7s cov=%-6s ft=%-6s corpus=%-6s crashes=%s' \
        "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        line="$line  FAILED (exit $rc; see $log)"
    fi
    echo "$line"
    summary+=("$line")
done
echo "---- fuzz summary (${seconds}s per target) ----"
printf '%s\n' "${summary[@]}"
exit "$failed"
