#!/usr/bin/env bash
# Fuzzes every parser with cargo-fuzz (libFuzzer) for SECONDS each (default 15), starting from the
# corpus kept in fuzz/corpus/. New inputs found go to a scratch folder, so the kept corpus only
# changes when someone minimizes a longer run into it (`cargo fuzz cmin`). A crash fails the
# script and leaves its input in fuzz/artifacts/.
#
# Needs cargo-fuzz (installed here if missing). The stable toolchain builds the instrumented
# targets with RUSTC_BOOTSTRAP=1 and no sanitizer (`-s none`): the parsers hold no unsafe code
# beyond SIMD loads, and coverage guidance is what finds the bad inputs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-15}"
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in csv jsonl lobster imc fix lines avro; do
    mkdir -p "$scratch/$target"
    echo "== fuzz $target for ${seconds}s"
    cargo fuzz run -s none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | grep -E "^(Done|stat::number_of_executed_units)|ERROR|panicked" || true
    # libFuzzer exits non-zero on a crash; the pipeline above hides it, so check for artifacts.
    if compgen -G "artifacts/$target/*" >/dev/null; then
        echo "fuzz $target found a failing input: $(ls artifacts/$target)" >&2
        exit 1
    fi
done
