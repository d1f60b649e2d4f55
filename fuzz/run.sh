#!/usr/bin/env bash
# Builds and runs each fuzz target for SECONDS (default 10), then prints per target the
# executions, exec/s and coverage libFuzzer reported. Exits 1 when a target crashed (the input
# is kept in fuzz/artifacts/<target>/) or a saved regression input crashes again.
#
#   fuzz/run.sh [SECONDS]
#
# Environment:
#   SLUICE_FUZZ_TARGETS   targets to run (default: all five, see README.md)
#   SLUICE_CORPUS         shared corpus to derive extra seeds from (default ../shared/corpus
#                         beside the repository; skipped when absent)
#   SLUICE_FUZZ_JOBS      libFuzzer -jobs (default: one process)
#   SLUICE_FUZZ_FLAGS     more libFuzzer flags, e.g. "-only_ascii=1"
#   SLUICE_FUZZ_DEBUG_ASSERTIONS=1  build with debug assertions and overflow checks
#
# Stable Rust only: cargo-fuzz passes nightly-only flags (-Z, -Cpasses=sancov-module), which
# RUSTC_BOOTSTRAP=1 allows on a stable toolchain; `--sanitizer none` avoids the nightly-only
# ASan runtime. Everything built or generated goes to fuzz/target (and fuzz/corpus for what the
# fuzzer learns), so a clean clone rebuilds it all.
set -euo pipefail

seconds=${1:-10}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$fuzz_dir")
cd "$fuzz_dir"
targets=${SLUICE_FUZZ_TARGETS:-mail_edit events config dsn_forward milter}
shared=${SLUICE_CORPUS:-$root/../shared/corpus}
export RUSTC_BOOTSTRAP=1
# Cargo's own output is enough; colours make the logs hard to grep.
export CARGO_TERM_COLOR=never

cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    echo "== installing cargo-fuzz $cargo_fuzz_version"
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

# 16 codegen units instead of cargo-fuzz's 1: the targets link wasmtime and the AWS SDK, and a
# single unit per crate makes the build several times slower for little fuzzing speed.
build_flags=(--sanitizer none --codegen-units 16)
# Release without debug assertions by default: mail-parser 0.11.9 has a debug_assert that a
# wrapped message reaches (regressions/mail_edit/mail-parser-debug-assert-invalid-part-id);
# Sluice catches the panic, but libFuzzer aborts on any panic. SLUICE_FUZZ_DEBUG_ASSERTIONS=1
# turns them (and overflow checks) on.
if [[ ${SLUICE_FUZZ_DEBUG_ASSERTIONS:-0} == 1 ]]; then build_flags+=(-a); else build_flags+=(-O); fi
# mail_edit needs only sluice-mail: without the default features it skips wasmtime and the AWS
# SDK (see Cargo.toml), so running only it is a much cheaper build.
flags_for() { if [[ $1 == mail_edit ]]; then echo --no-default-features; fi; }
start=$(date +%s)
echo "== building: $targets"
# shellcheck disable=SC2086
for t in $targets; do
    cargo fuzz build "${build_flags[@]}" $(flags_for "$t") "$t"
done
echo "== built in $(( $(date +%s) - start )) s"

gen=target/seeds
logs=target/logs
rm -rf "$gen" && mkdir -p "$gen" "$logs"

# Seeds from the shared corpus, with the parameter bytes each target expects in front.
prefix_each() { # TARGET TAG PREFIX(printf format) FILES...
    local t=$1 tag=$2 p=$3 f
    shift 3
    mkdir -p "$gen/$t"
    for f in "$@"; do
        # shellcheck disable=SC2059
        [[ -f $f ]] && { printf "$p"; cat "$f"; } >"$gen/$t/$tag-$(basename "$f")"
    done
    return 0
}
if [[ -d $shared ]]; then
    emls=("$shared"/eml/*.eml "$shared"/ses/*.eml)
    # mail_edit: four edits (banner top with HTML, add-header, set-header, prefix-subject),
    # and one (banner bottom, text only). See src/mail_edit.rs for the layout.
    prefix_each mail_edit four '\x03\x00\x4a\x01\x10\x02\x33\x04\x00' "${emls[@]}"
    prefix_each mail_edit one '\x00\x00\x05\x00\x00\x00\x00\x00\x00' "${emls[@]}"
    # dsn_forward: one refused recipient and a plain rewrite; two recipients and a prefix.
    prefix_each dsn_forward plain '\x00\x00\x00\x00' "${emls[@]}"
    prefix_each dsn_forward prefixed '\x01\x00\x00\x01' "${emls[@]}"
    prefix_each events raw '\x00' "$shared"/ses/*.json
else
    echo "== no shared corpus at $shared: committed seeds only"
fi
mkdir -p "$gen/config"
for f in "$root"/deploy/*.toml "$root"/plugins/*.toml "$root"/plugins/*/fixtures/*.toml; do
    [[ -f $f ]] && cp "$f" "$gen/config/$(echo "${f#"$root"/}" | tr / _)"
done

failed=()
summary=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dirs=("corpus/$t" "seeds/$t")
    [[ -d $gen/$t ]] && dirs+=("$gen/$t")
    flags=(-max_total_time="$seconds" -timeout=10 -max_len=65536 -print_final_stats=1
        -artifact_prefix="artifacts/$t/")
    [[ -f dicts/$t.dict ]] && flags+=(-dict="dicts/$t.dict")
    [[ -n ${SLUICE_FUZZ_JOBS:-} ]] && flags+=(-jobs="$SLUICE_FUZZ_JOBS" -workers="$SLUICE_FUZZ_JOBS")
    # shellcheck disable=SC2206
    flags+=(${SLUICE_FUZZ_FLAGS:-})
    log=$logs/$t.log
    echo "== $t: ${seconds}s"
    status=ok
    # Saved findings first: each must run clean once fixed.
    regressions=(regressions/"$t"/*)
    if [[ -e ${regressions[0]} ]]; then
        if ! cargo fuzz run "${build_flags[@]}" $(flags_for "$t") "$t" "${regressions[@]}" -- -runs=1 >"$logs/$t.regressions.log" 2>&1; then
            status="REGRESSION CRASHES (see $logs/$t.regressions.log)"
            grep -m1 -A2 "panicked at" "$logs/$t.regressions.log" || true
        fi
    fi
    if ! cargo fuzz run "${build_flags[@]}" $(flags_for "$t") "$t" "${dirs[@]}" -- "${flags[@]}" >"$log" 2>&1; then
        status="${status#ok}${status:+ }CRASH (input in fuzz/artifacts/$t/, log $log)"
        status=${status# }
        grep -m1 -A4 "panicked at" "$log" || tail -n 20 "$log"
    fi
    [[ $status == ok ]] || failed+=("$t")
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([^ ]+).*/cov \1, ft \2, corpus \3/p' <<<"$last")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -n 1)
    summary+=("$(printf '%-12s %10s execs %8s exec/s   %s   %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-no cov: line}" "$status")")
done

echo "== summary (${seconds}s per target, $(( $(date +%s) - start )) s in all)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "== FAILED: ${failed[*]}" >&2
    exit 1
fi
