#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a bounded time each, on stable Rust.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 45) each
#   scripts/fuzz.sh senml dates     only these targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Stable rustc accepts the nightly
# flags cargo-fuzz passes with RUSTC_BOOTSTRAP=1. Each target starts from
# fuzz/seeds/<target>/ and fuzz/regressions/<target>/ (its corpus grows in
# fuzz/corpus/, ignored by git). A crash is copied to fuzz/regressions/<target>/,
# which tests/codec/fuzz_regressions.rs runs in every `cargo test`; the script then
# exits 1. Not run by CI (about 6 minutes for every target): run it before a release
# and after touching a parser.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-45}"
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 2
fi

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -O

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target"
  for dir in "seeds/$target" "regressions/$target"; do
    if compgen -G "$dir/*" >/dev/null; then cp -n "$dir"/* "corpus/$target/"; fi
  done
  rm -rf "artifacts/$target"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  if ! cargo fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 2>"artifacts-$target.log"; then
    failed+=("$target")
    tail -40 "artifacts-$target.log" >&2
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "artifacts-$target.log" | sed "s/^/fuzz: $target /" || true
  if compgen -G "artifacts/$target/*" >/dev/null; then
    for found in "artifacts/$target"/*; do
      cp "$found" "regressions/$target/$(basename "$found")"
      echo "fuzz: $target kept $(basename "$found") in fuzz/regressions/$target/" >&2
    done
  fi
  rm -f "artifacts-$target.log"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
