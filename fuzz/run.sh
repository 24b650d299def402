#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each.
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Corpora grow in
# fuzz/corpus/TARGET; a failing input is saved in fuzz/artifacts/TARGET and the script exits 1.
# Minimize one with `cargo +nightly fuzz tmin TARGET fuzz/artifacts/TARGET/crash-…` and keep it
# as a regression test on stable next to the code it broke.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build --release
status=0
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s"
  mkdir -p "corpus/$target"
  # -rss_limit_mb keeps one target from taking the machine; one job, one worker.
  if ! cargo +nightly fuzz run --release "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>"/tmp/authgate-fuzz-$target.log"; then
    echo "fuzz: $target FAILED; see /tmp/authgate-fuzz-$target.log and fuzz/artifacts/$target" >&2
    tail -40 "/tmp/authgate-fuzz-$target.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "/tmp/authgate-fuzz-$target.log" | tail -1 || true
  fi
done
exit "$status"
