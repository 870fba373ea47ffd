#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that take untrusted text (label selectors,
# manifest files, query templates), with AFL++ through afl.rs on stable Rust. Each
# target runs for FUZZ_SECONDS (default 60) from the seeds in fuzz/corpus/<target>;
# any crash fails the run and is printed. Installs cargo-afl from crates.io the first time.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
targets=(selector manifest template)

if ! command -v cargo-afl >/dev/null; then
  cargo install --locked cargo-afl --version "^0.18"
fi
# Builds the AFL++ runtime unless it is there already (installing cargo-afl builds it too);
# if it is missing for good, the build below says so.
cargo afl config --build >/dev/null 2>&1 || true
cargo afl build --release --locked
target_dir="${CARGO_TARGET_DIR:-target}/release"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
failed=0
for target in "${targets[@]}"; do
  out="$(mktemp -d)"
  log="$(mktemp)"
  echo "== fuzzing $target for ${seconds}s"
  cargo afl fuzz -V "$seconds" -i "corpus/$target" -o "$out" "$target_dir/$target" >"$log" 2>&1 || {
    echo "afl-fuzz failed for $target:"; tail -20 "$log"; failed=1; continue; }
  rm -f "$log"
  grep -E "^(execs_done|corpus_count|saved_crashes|saved_hangs)" "$out/default/fuzzer_stats" | tr '\n' ' '; echo
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' | wc -l)
  if [ "$crashes" -gt 0 ]; then
    mkdir -p "crashes/$target"
    cp "$out"/default/crashes/id:* "crashes/$target/"
    echo "$target: $crashes crashing input(s), kept in fuzz/crashes/$target (replay: $target_dir/$target < FILE):"
    for input in "$out"/default/crashes/id:*; do
      echo "--- $input"; head -c 400 "$input" | od -c | head -5
    done
    failed=1
  fi
  rm -rf "$out"
done
exit "$failed"
